//! Which pod and container a cgroup belongs to, read from its path alone.
//!
//! cgroupfs driver: `kubepods[/burstable|/besteffort]/pod<uid>/<id>`;
//! systemd driver: `kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_with_underscores>.slice/<runtime>-<id>.scope`
//! with runtime prefixes `cri-containerd-`, `crio-`, `docker-`. The kubepods root may sit
//! below another cgroup (kubelet's `--cgroup-root`). CRI-O's `crio-conmon-<id>.scope` holds
//! the runtime monitor, not a container.

/// What a cgroup is, as far as its path tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A container of a pod: the pod's UID (with dashes) and the runtime's container id.
    Container {
        /// Pod UID, e.g. `0f6c1a52-7bd8-4c2a-9f0e-3a8a6f1d2b11`.
        pod_uid: String,
        /// Runtime container id (64 hex digits for containerd, CRI-O and Docker).
        container_id: String,
    },
    /// The pod-level cgroup.
    Pod {
        /// Pod UID.
        pod_uid: String,
    },
    /// Anything else: QoS slices, system services, runtime monitors, nested cgroups.
    Other,
}

impl Identity {
    /// Whether cgroups below this one are of no interest (containers are leaves).
    pub fn is_container(&self) -> bool {
        matches!(self, Identity::Container { .. })
    }
}

/// Parses a cgroup path relative to the hierarchy root (`/kubepods/...`).
pub fn parse(rel: &str) -> Identity {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let Some(kube) = parts.iter().position(|p| p.contains("kubepods")) else {
        return Identity::Other;
    };
    let Some((pod_at, pod_uid)) = parts
        .iter()
        .enumerate()
        .skip(kube)
        .find_map(|(i, p)| pod_uid(p).map(|u| (i, u)))
    else {
        return Identity::Other;
    };
    match parts.len() - pod_at {
        1 => Identity::Pod { pod_uid },
        2 => match container_id(parts[pod_at + 1]) {
            Some(id) => Identity::Container {
                pod_uid,
                container_id: id.to_owned(),
            },
            None => Identity::Other,
        },
        _ => Identity::Other,
    }
}

fn pod_uid(part: &str) -> Option<String> {
    if let Some(slice) = part.strip_suffix(".slice") {
        // kubepods-burstable-pod<uid_>.slice, kubepods-pod<uid_>.slice
        if !slice.contains("kubepods") {
            return None;
        }
        let at = slice.rfind("-pod")?;
        let uid = &slice[at + 4..];
        return valid_uid(uid).then(|| uid.replace('_', "-"));
    }
    let uid = part.strip_prefix("pod")?;
    valid_uid(uid).then(|| uid.to_owned())
}

fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_')
}

fn container_id(part: &str) -> Option<&str> {
    let name = part.strip_suffix(".scope").unwrap_or(part);
    if name.starts_with("crio-conmon-") {
        return None;
    }
    let id = ["cri-containerd-", "crio-", "docker-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    (id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f6c1a52-7bd8-4c2a-9f0e-3a8a6f1d2b11";
    const UID_: &str = "0f6c1a52_7bd8_4c2a_9f0e_3a8a6f1d2b11";
    const ID: &str = "4a5e0c3ff1b2d6e7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1";

    fn container() -> Identity {
        Identity::Container {
            pod_uid: UID.into(),
            container_id: ID.into(),
        }
    }

    #[test]
    fn cgroupfs_driver() {
        assert_eq!(
            parse(&format!("/kubepods/burstable/pod{UID}/{ID}")),
            container()
        );
        assert_eq!(parse(&format!("/kubepods/pod{UID}/{ID}")), container());
        assert_eq!(
            parse(&format!("/kubepods/besteffort/pod{UID}")),
            Identity::Pod {
                pod_uid: UID.into()
            }
        );
        assert_eq!(
            parse(&format!("/kubepods/burstable/pod{UID}/crio-{ID}")),
            container()
        );
        assert_eq!(parse("/kubepods/burstable"), Identity::Other);
        assert_eq!(parse("/kubepods"), Identity::Other);
    }

    #[test]
    fn systemd_driver_and_runtimes() {
        for rt in ["cri-containerd", "crio", "docker"] {
            let p = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/{rt}-{ID}.scope");
            assert_eq!(parse(&p), container(), "{p}");
        }
        let guaranteed =
            format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope");
        assert_eq!(parse(&guaranteed), container());
        let pod = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"
        );
        assert_eq!(
            parse(&pod),
            Identity::Pod {
                pod_uid: UID.into()
            }
        );
    }

    #[test]
    fn other_cgroups() {
        let conmon = format!("/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{ID}.scope");
        assert_eq!(parse(&conmon), Identity::Other);
        assert_eq!(parse("/system.slice/containerd.service"), Identity::Other);
        assert_eq!(
            parse(&format!("/system.slice/docker-{ID}.scope")),
            Identity::Other
        );
        let nested = format!("/kubepods/pod{UID}/{ID}/inner");
        assert_eq!(parse(&nested), Identity::Other);
        let under_root =
            format!("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_}.slice");
        assert_eq!(
            parse(&under_root),
            Identity::Pod {
                pod_uid: UID.into()
            }
        );
        assert_eq!(
            parse(&format!("/user.slice/user-pod{UID_}.slice")),
            Identity::Other
        );
        let kubelet_root = format!("/kubelet/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(parse(&kubelet_root), container());
    }
}
