//! This node's pods, watched so that cgroup series get their namespace, pod, container and
//! image names.
//!
//! The view holds the pods scheduled here (`fieldSelector=spec.nodeName=<node>`). Names are
//! keyed by pod UID and container ID, which never change meaning, so while the API server
//! is unreachable a name can be missing but never wrong.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::kube_watch::{watch, View};

/// The names of one pod's objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNames {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Runtime container id (without the `containerd://` scheme) → (container name, image).
    pub containers: HashMap<String, (String, String)>,
    /// Every container of the pod (init and ephemeral included) has a running or finished
    /// instance with a known id, so another container cgroup of this pod is its sandbox.
    pub all_ids_known: bool,
}

impl PodNames {
    /// Names from a pod object; `None` without a UID.
    pub fn from_pod(pod: &Pod) -> Option<(String, PodNames)> {
        let uid = pod.metadata.uid.clone()?;
        let mut names = PodNames {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            pod: pod.metadata.name.clone().unwrap_or_default(),
            containers: HashMap::new(),
            all_ids_known: true,
        };
        let spec_count = pod.spec.as_ref().map_or(0, |s| {
            s.containers.len()
                + s.init_containers.as_ref().map_or(0, Vec::len)
                + s.ephemeral_containers.as_ref().map_or(0, Vec::len)
        });
        let mut with_ids = 0;
        if let Some(st) = &pod.status {
            let statuses = st
                .container_statuses
                .iter()
                .chain(&st.init_container_statuses)
                .chain(&st.ephemeral_container_statuses)
                .flatten();
            for cs in statuses {
                let mut known = false;
                for id in container_ids(cs) {
                    known = true;
                    names
                        .containers
                        .insert(id.to_owned(), (cs.name.clone(), cs.image.clone()));
                }
                with_ids += usize::from(known);
            }
        }
        names.all_ids_known = spec_count > 0 && with_ids >= spec_count;
        Some((uid, names))
    }
}

/// The current and the previous instance's ids of a container status (a restarted
/// container's old cgroup may still be there for a moment).
fn container_ids(cs: &ContainerStatus) -> impl Iterator<Item = &str> {
    let last = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.container_id.as_deref());
    cs.container_id
        .as_deref()
        .into_iter()
        .chain(last)
        .filter_map(strip_scheme)
}

/// `containerd://abc` → `abc` (also `cri-o://`, `docker://`).
fn strip_scheme(id: &str) -> Option<&str> {
    let id = id.split_once("://").map_or(id, |(_, rest)| rest);
    (!id.is_empty()).then_some(id)
}

/// A live view of pods.
pub type Kube = View<Pod>;

impl Kube {
    /// Names by pod UID for every pod in the store, and for pods deleted within the last
    /// cycles (their cgroups may outlive them briefly).
    pub fn names(&self) -> HashMap<String, PodNames> {
        self.objects_with_departed()
            .iter()
            .filter_map(|p| PodNames::from_pod(p))
            .collect()
    }
}

/// Watches the pods of `node` until `cancel`; the returned view fills as events arrive.
pub fn watch_node_pods(client: Client, node: &str, cancel: CancellationToken) -> Kube {
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    watch(Api::all(client), config, cancel)
}

/// Watches every pod of the cluster (`--cluster-state`) until `cancel`.
pub fn watch_all_pods(client: Client, cancel: CancellationToken) -> Kube {
    watch(Api::all(client), watcher::Config::default(), cancel)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::kube_watch::RETAIN_CYCLES;

    #[test]
    fn names_from_a_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1"},
            "spec": {"containers": [{"name": "app"}, {"name": "side"}], "initContainers": [{"name": "init"}]},
            "status": {
                "containerStatuses": [
                    {"name": "app", "image": "nginx:1.25", "imageID": "", "ready": true, "restartCount": 1,
                     "containerID": "containerd://aaa",
                     "lastState": {"terminated": {"exitCode": 1, "containerID": "containerd://old"}}},
                    {"name": "side", "image": "envoy:1", "imageID": "", "ready": true, "restartCount": 0,
                     "containerID": "cri-o://bbb"}
                ],
                "initContainerStatuses": [
                    {"name": "init", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
                     "containerID": "docker://ccc"}
                ]
            }
        }))
        .unwrap();
        let (uid, n) = PodNames::from_pod(&pod).unwrap();
        assert_eq!(uid, "u-1");
        assert_eq!((n.namespace.as_str(), n.pod.as_str()), ("shop", "web-1"));
        assert_eq!(
            n.containers.get("aaa"),
            Some(&("app".into(), "nginx:1.25".into()))
        );
        assert_eq!(
            n.containers.get("old"),
            Some(&("app".into(), "nginx:1.25".into()))
        );
        assert_eq!(n.containers.get("bbb").map(|c| c.0.as_str()), Some("side"));
        assert_eq!(n.containers.get("ccc").map(|c| c.0.as_str()), Some("init"));
        assert!(n.all_ids_known);
        let mut waiting = pod.clone();
        waiting
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[1]
            .container_id = None;
        assert!(!PodNames::from_pod(&waiting).unwrap().1.all_ids_known);
    }

    #[test]
    fn departed_pods_are_exported_for_exactly_the_retention_cycles() {
        let view = Kube::unavailable("test".into());
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p", "namespace": "n", "uid": "u"}}),
        )
        .unwrap();
        view.depart(Arc::new(pod.clone()));
        view.depart(Arc::new(pod)); // a second report of the same pod is not a second pod
        for cycle in 0..RETAIN_CYCLES {
            assert_eq!(view.objects_with_departed().len(), 1, "cycle {cycle}");
            assert!(view.names().contains_key("u"));
            view.age_departed();
        }
        assert!(view.objects_with_departed().is_empty());
    }
}
