//! Every manifest under deploy/ parses into the Kubernetes API types, says what each role
//! needs and no more, and the pieces (manifests, the Dockerfile, the Prometheus and
//! Grafana configuration) point at each other.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;
#[path = "common/manifests.rs"]
mod manifests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Probe, Service, Volume};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use manifests::Object;

fn manifests() -> Vec<(String, Object)> {
    manifests::parse(&repo().join("deploy"))
}

#[test]
fn every_manifest_parses_into_api_types() {
    let all = manifests();
    let kinds: Vec<&str> = all
        .iter()
        .map(|(at, _)| at.rsplit(": ").next().unwrap())
        .collect();
    for want in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "DaemonSet",
        "Deployment",
        "StatefulSet",
        "Service",
        "ConfigMap",
        "PersistentVolumeClaim",
    ] {
        assert!(kinds.contains(&want), "no {want} in deploy/");
    }
}

#[test]
fn roles_only_read_and_never_secrets() {
    for (at, obj) in manifests() {
        let Object::ClusterRole(role) = obj else {
            continue;
        };
        for rule in role.rules.unwrap_or_default() {
            for verb in &rule.verbs {
                assert!(
                    ["get", "list", "watch"].contains(&verb.as_str()),
                    "{at}: verb {verb}"
                );
            }
            let resources = rule.resources.unwrap_or_default();
            assert!(
                !resources.iter().any(|r| r == "secrets" || r == "*"),
                "{at}: {resources:?}"
            );
        }
    }
}

#[test]
fn the_daemonset_reads_the_host_read_only_and_knows_its_node() {
    let ds = manifests()
        .into_iter()
        .find_map(|(_, o)| match o {
            Object::DaemonSet(d) => Some(d),
            _ => None,
        })
        .unwrap();
    let pod = ds.spec.template.spec.unwrap();
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap();
    assert_eq!(args[0], "collector");
    for flag in [
        "--proc-root=/host/proc",
        "--sys-root=/host/sys",
        "--rootfs=/host/root",
    ] {
        assert!(
            args.iter().any(|a| a == flag),
            "{flag} missing from {args:?}"
        );
    }
    let mounts = c.volume_mounts.clone().unwrap();
    for path in ["/host/proc", "/host/sys", "/host/root"] {
        let m = mounts
            .iter()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("{path} not mounted"));
        assert_eq!(m.read_only, Some(true), "{path} must be read-only");
    }
    let node_name = c
        .env
        .clone()
        .unwrap()
        .into_iter()
        .find(|e| e.name == "NODE_NAME")
        .unwrap();
    let field = node_name.value_from.unwrap().field_ref.unwrap().field_path;
    assert_eq!(field, "spec.nodeName");
    let res = c.resources.clone().unwrap();
    assert!(res
        .requests
        .is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory")));
    assert!(res.limits.is_some_and(|r| r.contains_key("memory")));
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("telltale-collector")
    );
}

#[test]
fn the_pieces_point_at_each_other() {
    let all: Vec<Object> = manifests().into_iter().map(|(_, o)| o).collect();
    let ns = all.iter().find_map(|o| match o {
        Object::Namespace(n) => n.metadata.name.clone(),
        _ => None,
    });
    let sa = all
        .iter()
        .find_map(|o| match o {
            Object::ServiceAccount(s) => {
                Some((s.metadata.name.clone(), s.metadata.namespace.clone()))
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(
        sa.1, ns,
        "the ServiceAccount lives in the telltale namespace"
    );
    let binding = all
        .iter()
        .find_map(|o| match o {
            Object::ClusterRoleBinding(b) => Some(b),
            _ => None,
        })
        .unwrap();
    let subject = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!((Some(subject.name.clone()), subject.namespace.clone()), sa);
    let role = all.iter().find_map(|o| match o {
        Object::ClusterRole(r) => r.metadata.name.clone(),
        _ => None,
    });
    assert_eq!(Some(binding.role_ref.name.clone()), role);
    let ds_labels = all
        .iter()
        .find_map(|o| match o {
            Object::DaemonSet(d) => d.spec.template.metadata.as_ref()?.labels.clone(),
            _ => None,
        })
        .unwrap();
    let svc = all
        .iter()
        .find_map(|o| match o {
            Object::Service(s) if s.metadata.name.as_deref() == Some("telltale-collector") => {
                Some(s)
            }
            _ => None,
        })
        .unwrap();
    let selector = svc.spec.as_ref().unwrap().selector.clone().unwrap();
    assert!(
        selector.iter().all(|(k, v)| ds_labels.get(k) == Some(v)),
        "the Service selects the collectors"
    );
    let ann = svc.metadata.annotations.clone().unwrap();
    assert_eq!(
        ann.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        ann.get("prometheus.io/port").map(String::as_str),
        Some("9101")
    );
}

#[test]
fn cluster_state_runs_once_and_reads_only_what_it_exports() {
    let all = manifests();
    let dep = all
        .iter()
        .find_map(|(_, o)| match o {
            Object::Deployment(d)
                if d.metadata.name.as_deref() == Some("telltale-cluster-state") =>
            {
                Some(d)
            }
            _ => None,
        })
        .unwrap();
    let spec = &dep.spec;
    assert_eq!(spec.replicas, Some(1), "exactly one cluster-state replica");
    let pod = spec.template.spec.as_ref().unwrap();
    assert!(pod.containers[0]
        .args
        .as_ref()
        .unwrap()
        .iter()
        .any(|a| a == "--cluster-state"));
    let role = all
        .iter()
        .find_map(|(_, o)| match o {
            Object::ClusterRole(r)
                if r.metadata.name.as_deref() == Some("telltale-cluster-state") =>
            {
                Some(r)
            }
            _ => None,
        })
        .unwrap();
    let mut resources: Vec<String> = role
        .rules
        .iter()
        .flatten()
        .flat_map(|r| r.resources.clone().unwrap_or_default())
        .collect();
    resources.sort();
    assert_eq!(
        resources,
        [
            "daemonsets",
            "deployments",
            "jobs",
            "nodes",
            "pods",
            "replicasets",
            "statefulsets"
        ]
    );
}

// ---- the roles' workloads, and what their flags name ----

/// A workload's pod template and where it came from.
struct Workload {
    kind: &'static str,
    name: String,
    namespace: String,
    selector: BTreeMap<String, String>,
    template: PodTemplateSpec,
}

impl Workload {
    fn at(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    fn pod(&self) -> &PodSpec {
        self.template.spec.as_ref().unwrap()
    }

    fn labels(&self) -> BTreeMap<String, String> {
        self.template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default()
    }

    /// App and init containers.
    fn containers(&self) -> impl Iterator<Item = &Container> {
        let pod = self.pod();
        pod.containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
    }

    /// The one container running `telltale <role>`.
    fn running(&self, role: &str) -> Option<&Container> {
        self.pod().containers.iter().find(|c| role_of(c) == role)
    }
}

fn workloads(all: &[(String, Object)]) -> Vec<Workload> {
    all.iter()
        .filter_map(|(_, o)| {
            let (kind, meta, selector, template) = match o {
                Object::DaemonSet(d) => {
                    ("DaemonSet", &d.metadata, &d.spec.selector, &d.spec.template)
                }
                Object::Deployment(d) => (
                    "Deployment",
                    &d.metadata,
                    &d.spec.selector,
                    &d.spec.template,
                ),
                Object::StatefulSet(s) => (
                    "StatefulSet",
                    &s.metadata,
                    &s.spec.selector,
                    &s.spec.template,
                ),
                _ => return None,
            };
            Some(Workload {
                kind,
                name: meta.name.clone().unwrap(),
                namespace: meta.namespace.clone().unwrap(),
                selector: selector.match_labels.clone().unwrap_or_default(),
                template: template.clone(),
            })
        })
        .collect()
}

/// The one workload with a container running `telltale <role>`, and that container.
fn the_one_running(all: &[(String, Object)], role: &str) -> (Workload, Container) {
    let mut found: Vec<(Workload, Container)> = workloads(all)
        .into_iter()
        .filter_map(|w| {
            let c = w.running(role)?.clone();
            Some((w, c))
        })
        .collect();
    let names: Vec<String> = found.iter().map(|(w, _)| w.at()).collect();
    assert_eq!(found.len(), 1, "one workload runs {role}, not {names:?}");
    found.pop().unwrap()
}

fn services(all: &[(String, Object)]) -> Vec<&Service> {
    all.iter()
        .filter_map(|(_, o)| match o {
            Object::Service(s) => Some(&**s),
            _ => None,
        })
        .collect()
}

fn args_of(c: &Container) -> Vec<String> {
    c.args.clone().unwrap_or_default()
}

/// The subcommand a container runs (the image's ENTRYPOINT is `telltale`).
fn role_of(c: &Container) -> String {
    args_of(c).first().cloned().unwrap_or_default()
}

/// The values of `--name` in `args`, written `--name=value` or `--name value`.
fn flag(args: &[String], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == name {
            out.extend(it.next().cloned());
        } else if let Some(v) = a.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            out.push(v.to_owned());
        }
    }
    out
}

/// A flag's value as the kubelet passes it: each `$(NAME)` replaced by the container's
/// environment variable (a literal, or a key of a ConfigMap of the manifests), then split
/// at commas as the collector splits a list.
fn expand(all: &[(String, Object)], ns: &str, c: &Container, value: &str) -> Vec<String> {
    let mut out = value.to_owned();
    while let Some(start) = out.find("$(") {
        let end = start + out[start..].find(')').expect("a closing parenthesis");
        let name = &out[start + 2..end];
        let var = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("container {}: $({name}) is set by no env", c.name));
        let text = match (&var.value, &var.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                let key = from
                    .config_map_key_ref
                    .as_ref()
                    .unwrap_or_else(|| panic!("$({name}): only ConfigMap keys are followed"));
                all.iter()
                    .find_map(|(_, o)| match o {
                        Object::ConfigMap(m)
                            if m.metadata.name.as_deref() == Some(key.name.as_str())
                                && m.metadata.namespace.as_deref() == Some(ns) =>
                        {
                            m.data.as_ref()?.get(&key.key).cloned()
                        }
                        _ => None,
                    })
                    .unwrap_or_else(|| {
                        panic!("$({name}): ConfigMap {} has no key {}", key.name, key.key)
                    })
            }
            (None, None) => String::new(),
        };
        out.replace_range(start..=end, &text);
    }
    out.split(',').map(str::to_owned).collect()
}

/// The value of a flag given at most once.
fn one_flag(c: &Container, name: &str) -> Option<String> {
    let mut v = flag(&args_of(c), name);
    assert!(
        v.len() <= 1,
        "container {}: {name} given {} times",
        c.name,
        v.len()
    );
    v.pop()
}

/// The port `c` serves on: its `--listen`, else its role's default (docs/interfaces.md).
fn listen_port(c: &Container) -> i32 {
    match one_flag(c, "--listen") {
        Some(l) => {
            let addr: std::net::SocketAddr = l
                .parse()
                .unwrap_or_else(|e| panic!("container {}: --listen {l}: {e}", c.name));
            assert!(
                addr.ip().is_unspecified(),
                "container {}: --listen {l} is unreachable from the kubelet and Services",
                c.name
            );
            i32::from(addr.port())
        }
        None => match role_of(c).as_str() {
            "collector" => 9101,
            "aggregator" => 9201,
            "alerting" => 9301,
            other => panic!(
                "container {} runs {other:?}: no known --listen default",
                c.name
            ),
        },
    }
}

/// The container port `p` means in `c` (a number, or the name of one of its ports).
fn port_in(c: &Container, p: &IntOrString) -> Option<i32> {
    match p {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name))
            .map(|cp| cp.container_port),
    }
}

/// The mount of `c` that holds `path`, and `path` relative to it ("" for the mount
/// itself); the deepest when mounts nest.
fn mount_for(
    c: &Container,
    path: &str,
) -> Option<(k8s_openapi::api::core::v1::VolumeMount, String)> {
    c.volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let base = m.mount_path.trim_end_matches('/');
            let rel = if path == base {
                Some("")
            } else {
                path.strip_prefix(base).and_then(|r| r.strip_prefix('/'))
            };
            rel.map(|r| (m.clone(), r.to_owned()))
        })
        .max_by_key(|(m, _)| m.mount_path.len())
}

fn pod_volume<'a>(pod: &'a PodSpec, name: &str) -> Option<&'a Volume> {
    pod.volumes.iter().flatten().find(|v| v.name == name)
}

/// What `path` is in container `c` of `w` when it lies on a ConfigMap volume: the
/// ConfigMap's name, the files there (name → contents; every file of the volume for a
/// directory), and whether `path` is a directory.
fn config_map_at(
    all: &[(String, Object)],
    w: &Workload,
    c: &Container,
    path: &str,
) -> (String, BTreeMap<String, String>, bool) {
    let at = format!("{} container {}: {path}", w.at(), c.name);
    let (m, rel) = mount_for(c, path).unwrap_or_else(|| panic!("{at} is on no volume"));
    let source = pod_volume(w.pod(), &m.name)
        .and_then(|v| v.config_map.clone())
        .unwrap_or_else(|| panic!("{at}: volume {} is not a ConfigMap", m.name));
    let map = all
        .iter()
        .find_map(|(_, o)| match o {
            Object::ConfigMap(cm)
                if cm.metadata.name.as_deref() == Some(&source.name)
                    && cm.metadata.namespace.as_deref() == Some(&w.namespace) =>
            {
                Some(cm)
            }
            _ => None,
        })
        .unwrap_or_else(|| {
            panic!(
                "{at}: no ConfigMap {}/{} in deploy/",
                w.namespace, source.name
            )
        });
    let data = map.data.clone().unwrap_or_default();
    let in_volume: BTreeMap<String, String> = match &source.items {
        Some(items) => items
            .iter()
            .map(|i| {
                let text = data.get(&i.key).unwrap_or_else(|| {
                    panic!("{at}: ConfigMap {} has no key {}", source.name, i.key)
                });
                (i.path.clone(), text.clone())
            })
            .collect(),
        None => data,
    };
    let rel = match &m.sub_path {
        Some(sub) if rel.is_empty() => sub.clone(),
        Some(sub) => format!("{sub}/{rel}"),
        None => rel,
    };
    if rel.is_empty() {
        return (source.name, in_volume, true);
    }
    if let Some(text) = in_volume.get(&rel) {
        let file = rel.rsplit('/').next().unwrap().to_owned();
        return (source.name, [(file, text.clone())].into(), false);
    }
    let prefix = format!("{rel}/");
    let files: BTreeMap<String, String> = in_volume
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v.clone())))
        .collect();
    assert!(
        !files.is_empty(),
        "{at}: ConfigMap {} has no such file",
        source.name
    );
    (source.name, files, true)
}

/// A URL of a Service inside the cluster: (service, namespace, port, path). `from_ns` is
/// the namespace a bare service name resolves in ("" outside the cluster's pods).
fn service_url(url: &str, from_ns: &str) -> (String, String, i32, String) {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("{url} is not a URL"));
    assert!(scheme == "http" || scheme == "https", "{url}");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().unwrap_or_else(|_| panic!("{url}: port {p}"))),
        None => (authority, if scheme == "https" { 443 } else { 80 }),
    };
    let parts: Vec<&str> = host.split('.').collect();
    assert!(
        matches!(
            &parts[parts.len().min(2)..],
            [] | ["svc"] | ["svc", "cluster", "local"]
        ),
        "{url}: {host} is not a Service's DNS name"
    );
    let ns = parts.get(1).copied().unwrap_or(from_ns);
    (parts[0].to_owned(), ns.to_owned(), port, path.to_owned())
}

/// The Service in front of the aggregator: (name, namespace, port).
fn aggregator_service(all: &[(String, Object)]) -> (String, String, i32) {
    let (w, c) = the_one_running(all, "aggregator");
    let labels = w.labels();
    let svc = services(all)
        .into_iter()
        .find(|s| {
            s.metadata.namespace.as_deref() == Some(&w.namespace)
                && s.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
        })
        .unwrap_or_else(|| panic!("no Service selects {}", w.at()));
    let listen = listen_port(&c);
    let port = svc
        .spec
        .as_ref()
        .unwrap()
        .ports
        .iter()
        .flatten()
        .find(|p| {
            port_in(
                &c,
                p.target_port.as_ref().unwrap_or(&IntOrString::Int(p.port)),
            ) == Some(listen)
        })
        .unwrap_or_else(|| panic!("no port of the aggregator's Service reaches {listen}"))
        .port;
    (
        svc.metadata.name.clone().unwrap(),
        w.namespace.clone(),
        port,
    )
}

/// The final stage of the Dockerfile, as far as the manifests rely on it.
struct Image {
    /// `USER uid:gid`.
    user: (i64, i64),
    /// `EXPOSE` ports.
    expose: BTreeSet<i32>,
    /// `ENTRYPOINT`, as written.
    entrypoint: String,
}

fn dockerfile() -> Image {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let last_stage = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .fold(Vec::new(), |mut stage, l| {
            if l.starts_with("FROM ") {
                stage.clear();
            }
            stage.push(l.to_owned());
            stage
        });
    let instruction = |name: &str| -> Vec<String> {
        last_stage
            .iter()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::trim))
            .map(str::to_owned)
            .collect()
    };
    let user = instruction("USER")
        .pop()
        .expect("the image sets USER (else it runs as root)");
    let (uid, gid) = user.split_once(':').unwrap_or((&user, &user));
    let id = |s: &str| -> i64 {
        s.parse()
            .unwrap_or_else(|_| panic!("USER {user}: numeric, so that runAsNonRoot can verify it"))
    };
    Image {
        user: (id(uid), id(gid)),
        expose: instruction("EXPOSE")
            .iter()
            .flat_map(|l| l.split_whitespace())
            .map(|p| p.trim_end_matches("/tcp").parse().unwrap())
            .collect(),
        entrypoint: instruction("ENTRYPOINT").pop().expect("ENTRYPOINT"),
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_file(path: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---- the tests ----

#[test]
fn the_aggregator_keeps_its_data_on_a_volume_claim_of_a_statefulset() {
    let all = manifests();
    let (w, c) = the_one_running(&all, "aggregator");
    assert_eq!(
        w.kind,
        "StatefulSet",
        "{}: the data needs a stable volume",
        w.at()
    );
    let sts = all
        .iter()
        .find_map(|(_, o)| match o {
            Object::StatefulSet(s) if s.metadata.name.as_deref() == Some(&w.name) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        sts.spec.replicas,
        Some(1),
        "one writer owns the WAL and the partitions"
    );
    let data_dir = one_flag(&c, "--data-dir").expect("--data-dir (the default is relative)");
    let (mount, _) = mount_for(&c, &data_dir)
        .unwrap_or_else(|| panic!("--data-dir {data_dir} is on no volume: the root is read-only"));
    assert_ne!(mount.read_only, Some(true), "{data_dir} must be writable");
    assert!(
        pod_volume(w.pod(), &mount.name).is_none(),
        "a pod volume named {} would stand in for the claim",
        mount.name
    );
    let claim = sts
        .spec
        .volume_claim_templates
        .iter()
        .flatten()
        .find(|t| t.metadata.name.as_deref() == Some(&mount.name))
        .unwrap_or_else(|| {
            panic!(
                "{data_dir} is mounted from {}, no volumeClaimTemplate",
                mount.name
            )
        });
    let spec = claim.spec.as_ref().unwrap();
    assert!(spec
        .access_modes
        .iter()
        .flatten()
        .any(|m| m == "ReadWriteOnce"));
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .expect("the claim requests storage");
    let bytes = telltale_model::quantity::parse(&storage.0).unwrap();
    assert!(
        bytes >= f64::from(1u32 << 30),
        "{} is too small for months of samples",
        storage.0
    );
    // SIGTERM flushes the head to Parquet; the kubelet must wait for it.
    let grace = w.pod().termination_grace_period_seconds.unwrap_or(30);
    assert!(grace >= 60, "terminationGracePeriodSeconds {grace} < 60");
    let governing = sts.spec.service_name.clone().expect("serviceName");
    assert!(
        services(&all)
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some(&governing)
                && s.metadata.namespace == Some(w.namespace.clone())),
        "serviceName {governing} is no Service in {}",
        w.namespace
    );
}

#[test]
fn every_container_runs_as_non_root_with_a_read_only_root() {
    let image = dockerfile();
    assert_ne!(image.user.0, 0, "the image's USER is root");
    let all = manifests();
    let ws = workloads(&all);
    assert!(
        ws.len() >= 4,
        "collector, cluster state, aggregator, alerting"
    );
    for w in &ws {
        let pod_sc = w.pod().security_context.clone().unwrap_or_default();
        assert_ne!(w.pod().host_pid, Some(true), "{}", w.at());
        for c in w.containers() {
            let at = format!("{} container {}", w.at(), c.name);
            let sc = c.security_context.clone().unwrap_or_default();
            let uid = sc
                .run_as_user
                .or(pod_sc.run_as_user)
                .unwrap_or(image.user.0);
            assert_ne!(uid, 0, "{at} runs as root");
            assert_ne!(
                sc.run_as_non_root.or(pod_sc.run_as_non_root),
                Some(false),
                "{at}"
            );
            assert_eq!(
                sc.read_only_root_filesystem,
                Some(true),
                "{at}: root filesystem writable"
            );
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{at}");
            assert_ne!(sc.privileged, Some(true), "{at}");
            let caps = sc.capabilities.clone().unwrap_or_default();
            assert!(
                caps.drop.iter().flatten().any(|d| d == "ALL"),
                "{at}: capabilities must drop ALL"
            );
            assert!(
                caps.add.unwrap_or_default().is_empty(),
                "{at} adds capabilities"
            );
        }
    }
}

#[test]
fn every_port_and_probe_agrees_with_the_listen_flag() {
    let all = manifests();
    for w in workloads(&all) {
        let annotations = w
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        let mut listening = BTreeSet::new();
        for c in &w.pod().containers {
            let at = format!("{} container {}", w.at(), c.name);
            let port = listen_port(c);
            listening.insert(port);
            let ports = c.ports.clone().unwrap_or_default();
            assert!(!ports.is_empty(), "{at} declares no port");
            for p in &ports {
                assert_eq!(
                    p.container_port, port,
                    "{at}: port {:?} but --listen is {port}",
                    p.name
                );
            }
            let serves: &[&str] = match role_of(c).as_str() {
                "collector" | "aggregator" => &["/healthz", "/readyz"],
                "alerting" => &["/healthz"],
                other => panic!("{at} runs {other:?}"),
            };
            assert!(c.readiness_probe.is_some(), "{at} has no readiness probe");
            assert!(c.liveness_probe.is_some(), "{at} has no liveness probe");
            let probes: [(&str, &Option<Probe>); 3] = [
                ("readiness", &c.readiness_probe),
                ("liveness", &c.liveness_probe),
                ("startup", &c.startup_probe),
            ];
            for (kind, probe) in probes {
                let Some(probe) = probe else { continue };
                let get = probe
                    .http_get
                    .as_ref()
                    .unwrap_or_else(|| panic!("{at}: the {kind} probe is not an HTTP GET"));
                assert_eq!(
                    port_in(c, &get.port),
                    Some(port),
                    "{at}: the {kind} probe's port {:?} is not --listen's {port}",
                    get.port
                );
                let path = get.path.as_deref().unwrap_or("/");
                assert!(
                    serves.contains(&path),
                    "{at}: {kind} probe on {path}, not served"
                );
            }
        }
        if let Some(p) = annotations.get("prometheus.io/port") {
            assert!(
                listening.contains(&p.parse().unwrap()),
                "{}: prometheus.io/port {p}, but it listens on {listening:?}",
                w.at()
            );
        }
    }
}

#[test]
fn services_select_the_pods_they_front_on_the_ports_they_listen_on() {
    let all = manifests();
    let ws = workloads(&all);
    for w in &ws {
        let labels = w.labels();
        assert!(!w.selector.is_empty(), "{} selects nothing", w.at());
        assert!(
            w.selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "{}: its selector does not match its own pods",
            w.at()
        );
    }
    for s in services(&all) {
        let name = s.metadata.name.clone().unwrap();
        let ns = s.metadata.namespace.clone().unwrap();
        let spec = s.spec.as_ref().unwrap();
        let selector = spec.selector.clone().unwrap_or_default();
        assert!(!selector.is_empty(), "Service {name} selects nothing");
        let fronted: Vec<&Workload> = ws
            .iter()
            .filter(|w| {
                let labels = w.labels();
                w.namespace == ns && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect();
        let names: Vec<String> = fronted.iter().map(|w| w.at()).collect();
        assert_eq!(
            names.len(),
            1,
            "Service {name} must front one workload: {names:?}"
        );
        let w = fronted[0];
        let mut targets = BTreeSet::new();
        let ports = spec.ports.clone().unwrap_or_default();
        assert!(!ports.is_empty(), "Service {name} has no port");
        for p in &ports {
            let target = p.target_port.clone().unwrap_or(IntOrString::Int(p.port));
            let (c, n) = w
                .pod()
                .containers
                .iter()
                .find_map(|c| {
                    let n = port_in(c, &target)?;
                    c.ports
                        .iter()
                        .flatten()
                        .any(|cp| cp.container_port == n)
                        .then_some((c, n))
                })
                .unwrap_or_else(|| {
                    panic!(
                        "Service {name} port {} targets {target:?}, not a port of {}",
                        p.port,
                        w.at()
                    )
                });
            assert_eq!(
                n,
                listen_port(c),
                "Service {name} port {} reaches {n}",
                p.port
            );
            targets.insert(n);
        }
        let annotations = s.metadata.annotations.clone().unwrap_or_default();
        if let Some(p) = annotations.get("prometheus.io/port") {
            // Prometheus scrapes the endpoints (pod IPs) on this port.
            assert!(
                targets.contains(&p.parse().unwrap()),
                "Service {name}: prometheus.io/port {p}, but the pods listen on {targets:?}"
            );
        }
    }
    for (_, o) in &all {
        let Object::StatefulSet(sts) = o else {
            continue;
        };
        let governing = sts.spec.service_name.clone().unwrap_or_default();
        let labels = sts.spec.template.metadata.clone().unwrap().labels.unwrap();
        assert!(
            services(&all)
                .iter()
                .any(|s| s.metadata.name.as_deref() == Some(&governing)
                    && s.metadata.namespace == sts.metadata.namespace
                    && s.spec
                        .as_ref()
                        .and_then(|s| s.selector.as_ref())
                        .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))),
            "StatefulSet {:?}: serviceName {governing:?} is no Service selecting it",
            sts.metadata.name
        );
    }
}

#[test]
fn everything_that_writes_or_queries_names_the_aggregator_service() {
    let all = manifests();
    let (svc, ns, port) = aggregator_service(&all);
    let check = |at: &str, url: &str, from_ns: &str, want_path: &str| {
        let (s, n, p, path) = service_url(url, from_ns);
        assert_eq!(
            (s.as_str(), n.as_str(), p),
            (svc.as_str(), ns.as_str(), port),
            "{at}: {url} is not the aggregator's Service {svc}.{ns}:{port}"
        );
        assert_eq!(path.trim_end_matches('/'), want_path, "{at}: {url}");
    };
    let mut alerting = 0;
    for w in workloads(&all) {
        for c in &w.pod().containers {
            let at = format!("{} container {}", w.at(), c.name);
            let args = args_of(c);
            let remote_write: Vec<String> = flag(&args, "--remote-write")
                .iter()
                .flat_map(|v| expand(&all, &w.namespace, c, v))
                .collect();
            for url in &remote_write {
                check(&at, url, &w.namespace, "/api/v1/write");
            }
            match role_of(c).as_str() {
                "collector" if remote_write.is_empty() => {
                    eprintln!("NOTE: {at} has no --remote-write: it only serves /metrics");
                }
                "alerting" => {
                    alerting += 1;
                    let query = one_flag(c, "--query-url").expect("--query-url");
                    check(&at, &query, &w.namespace, "");
                    let write = one_flag(c, "--remote-write-url").expect("--remote-write-url");
                    check(&at, &write, &w.namespace, "/api/v1/write");
                }
                _ => {}
            }
        }
    }
    assert_eq!(alerting, 1, "one alerting container");
    // From outside the namespace (Prometheus, Grafana), the name carries it.
    let prometheus = yaml_file("deploy/prometheus.yml");
    let writes = prometheus["remote_write"]
        .as_sequence()
        .expect("remote_write");
    assert!(!writes.is_empty());
    for w in writes {
        check(
            "deploy/prometheus.yml remote_write",
            w["url"].as_str().unwrap(),
            "",
            "/api/v1/write",
        );
    }
    let datasources = yaml_file("deploy/grafana/datasource.yaml");
    let telltale = datasources["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|d| d["uid"].as_str() == Some("telltale"))
        .expect("a datasource with uid telltale");
    assert_eq!(telltale["type"].as_str(), Some("prometheus"));
    check(
        "deploy/grafana/datasource.yaml",
        telltale["url"].as_str().unwrap(),
        "",
        "",
    );
    let dashboards = yaml_file("deploy/grafana/dashboards.yaml");
    assert!(
        dashboards["providers"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p["type"].as_str() == Some("file")
                && p["options"]["path"].as_str() == Some("/var/lib/grafana/dashboards/telltale")),
        "a file provider for /var/lib/grafana/dashboards/telltale"
    );
}

#[test]
fn alerting_runs_once_and_keeps_its_state_on_a_claim() {
    let all = manifests();
    let (w, c) = the_one_running(&all, "alerting");
    let state = one_flag(&c, "--state-dir").expect("--state-dir (the default is relative)");
    let (mount, _) = mount_for(&c, &state)
        .unwrap_or_else(|| panic!("--state-dir {state} is on no volume: the root is read-only"));
    assert_ne!(mount.read_only, Some(true));
    match w.kind {
        "Deployment" => {
            let d = all
                .iter()
                .find_map(|(_, o)| match o {
                    Object::Deployment(d) if d.metadata.name.as_deref() == Some(&w.name) => Some(d),
                    _ => None,
                })
                .unwrap();
            assert_eq!(d.spec.replicas, Some(1), "two replicas would notify twice");
            let strategy = d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref());
            assert_eq!(
                strategy,
                Some("Recreate"),
                "the old pod must let go of the state"
            );
            let claim = pod_volume(w.pod(), &mount.name)
                .and_then(|v| v.persistent_volume_claim.as_ref())
                .unwrap_or_else(|| panic!("{state} is not on a PersistentVolumeClaim"));
            let pvc = all
                .iter()
                .find_map(|(_, o)| match o {
                    Object::PersistentVolumeClaim(p)
                        if p.metadata.name.as_deref() == Some(&claim.claim_name)
                            && p.metadata.namespace.as_deref() == Some(&w.namespace) =>
                    {
                        Some(p)
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no PersistentVolumeClaim {}", claim.claim_name));
            let modes = pvc
                .spec
                .as_ref()
                .unwrap()
                .access_modes
                .clone()
                .unwrap_or_default();
            assert!(modes.iter().any(|m| m == "ReadWriteOnce"), "{modes:?}");
        }
        "StatefulSet" => {
            let s = all
                .iter()
                .find_map(|(_, o)| match o {
                    Object::StatefulSet(s) if s.metadata.name.as_deref() == Some(&w.name) => {
                        Some(s)
                    }
                    _ => None,
                })
                .unwrap();
            assert_eq!(s.spec.replicas, Some(1), "two replicas would notify twice");
            assert!(s.spec.volume_claim_templates.iter().flatten().any(|t| t
                .metadata
                .name
                .as_deref()
                == Some(&mount.name)));
        }
        other => panic!("alerting runs in a {other}"),
    }
}

#[test]
fn the_policies_config_map_holds_policies_alerting_accepts() {
    use telltale_alerting::policy::{Receiver, Rules};
    let all = manifests();
    let (w, c) = the_one_running(&all, "alerting");
    let policies = one_flag(&c, "--policies").expect("--policies");
    let (name, files, is_dir) = config_map_at(&all, &w, &c, &policies);
    assert_eq!(name, "telltale-policies");
    let dir = tempfile::tempdir().unwrap();
    for (file, text) in &files {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let path = if is_dir {
        dir.path().to_owned()
    } else {
        dir.path().join(files.keys().next().unwrap())
    };
    // What `telltale alerting --policies` loads at start and on every reload.
    let rules = Rules::load(&path).unwrap_or_else(|e| panic!("ConfigMap {name}: {e}"));
    assert!(!rules.groups.is_empty(), "ConfigMap {name} holds no policy");
    assert!(
        rules
            .receivers
            .values()
            .any(|r| matches!(r, Receiver::Email { .. })),
        "ConfigMap {name} has no email receiver"
    );
    // Email goes through --smtp-url with the password from the telltale-smtp Secret.
    let smtp = one_flag(&c, "--smtp-url").expect("--smtp-url");
    let userinfo = smtp
        .split_once("://")
        .and_then(|(_, r)| r.split_once('@'))
        .map(|(u, _)| u);
    assert!(
        !userinfo.is_some_and(|u| u.contains(':')),
        "--smtp-url {smtp} carries a password: use --smtp-password-file"
    );
    let from = one_flag(&c, "--smtp-from").unwrap_or_else(|| "telltale@localhost".into());
    if let Err(e) = telltale_alerting::notify::Smtp::new(&smtp, &from, None) {
        panic!("--smtp-url {smtp} --smtp-from {from}: {e}");
    }
    let password = one_flag(&c, "--smtp-password-file").expect("--smtp-password-file");
    let (mount, rel) = mount_for(&c, &password)
        .unwrap_or_else(|| panic!("--smtp-password-file {password} is on no volume"));
    let secret = pod_volume(w.pod(), &mount.name)
        .and_then(|v| v.secret.clone())
        .unwrap_or_else(|| panic!("{password} is not on a Secret volume"));
    assert_eq!(secret.secret_name.as_deref(), Some("telltale-smtp"));
    let key = match &secret.items {
        Some(items) => items.iter().find(|i| i.path == rel).map(|i| i.key.clone()),
        None => Some(rel),
    };
    assert_eq!(
        key.as_deref(),
        Some("password"),
        "{password}: the Secret's key"
    );
}

#[test]
fn the_prices_config_map_is_billing_md_s_table_as_the_aggregator_reads_it() {
    use telltale_aggregator::billing::prices::Prices;
    let all = manifests();
    let (w, c) = the_one_running(&all, "aggregator");
    let path = one_flag(&c, "--prices").expect("--prices");
    let (name, files, is_dir) = config_map_at(&all, &w, &c, &path);
    assert_eq!(name, "telltale-prices");
    assert!(!is_dir, "--prices {path} names a directory");
    let (file, text) = files.into_iter().next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(file);
    std::fs::write(&copy, text).unwrap();
    let prices = Prices::load(&copy).unwrap_or_else(|e| panic!("ConfigMap {name}: {e}"));
    assert_eq!(prices, Prices::default(), "docs/billing.md's example table");
}

#[test]
fn every_manifest_runs_the_image_the_dockerfile_builds() {
    let image = dockerfile();
    assert_eq!(image.entrypoint, r#"["telltale"]"#);
    let all = manifests();
    let mut names = BTreeSet::new();
    for w in workloads(&all) {
        let pod_sc = w.pod().security_context.clone().unwrap_or_default();
        if let Some(uid) = pod_sc.run_as_user {
            assert_eq!(
                uid,
                image.user.0,
                "{}: runAsUser is not the image's USER",
                w.at()
            );
        }
        if let Some(gid) = pod_sc.fs_group {
            assert_eq!(
                gid,
                image.user.1,
                "{}: fsGroup is not the image's group",
                w.at()
            );
        }
        for c in w.containers() {
            let at = format!("{} container {}", w.at(), c.name);
            names.insert(
                c.image
                    .clone()
                    .unwrap_or_else(|| panic!("{at} names no image")),
            );
            assert!(c.command.is_none(), "{at} replaces the ENTRYPOINT");
            assert!(
                ["collector", "aggregator", "alerting"].contains(&role_of(c).as_str()),
                "{at} runs {:?}",
                role_of(c)
            );
            for p in c.ports.iter().flatten() {
                assert!(
                    image.expose.contains(&p.container_port),
                    "{at}: port {} is not EXPOSEd",
                    p.container_port
                );
            }
        }
    }
    assert_eq!(names.len(), 1, "one image for every role: {names:?}");
    let name = names.pop_first().unwrap();
    assert!(name.starts_with("ghcr.io/telltale/telltale:"), "{name}");
}

#[test]
fn no_manifest_holds_a_secret_value() {
    for (at, o) in manifests() {
        let Object::Secret(s) = o else { continue };
        assert!(
            s.data.unwrap_or_default().is_empty() && s.string_data.unwrap_or_default().is_empty(),
            "{at}: a Secret with values in the repository"
        );
    }
}

#[test]
fn prometheus_discovers_the_telltale_namespace() {
    let all = manifests();
    let annotated: BTreeSet<String> = services(&all)
        .iter()
        .filter(|s| {
            s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("prometheus.io/scrape"))
                .is_some_and(|v| v == "true")
        })
        .map(|s| s.metadata.namespace.clone().unwrap())
        .collect();
    assert!(!annotated.is_empty());
    let prometheus = yaml_file("deploy/prometheus.yml");
    let jobs = prometheus["scrape_configs"].as_sequence().unwrap();
    let endpoints: Vec<&serde_yaml::Value> = jobs
        .iter()
        .flat_map(|j| {
            j["kubernetes_sd_configs"]
                .as_sequence()
                .into_iter()
                .flatten()
        })
        .filter(|sd| sd["role"].as_str() == Some("endpoints"))
        .collect();
    assert!(
        !endpoints.is_empty(),
        "no kubernetes_sd_configs with role endpoints"
    );
    for ns in &annotated {
        assert!(
            endpoints.iter().any(|sd| sd["namespaces"]["names"]
                .as_sequence()
                .is_some_and(|n| n.iter().any(|n| n.as_str() == Some(ns)))),
            "no endpoints discovery in namespace {ns}"
        );
    }
}

/// The keys Prometheus 2.42 knows in a `kubernetes_sd_configs` entry (the ones
/// deploy/prometheus.yml may use), for a promtool built without Kubernetes discovery.
fn check_kubernetes_sd(sd: &serde_yaml::Value) {
    let known = [
        "role",
        "namespaces",
        "selectors",
        "api_server",
        "kubeconfig_file",
        "attach_metadata",
    ];
    for k in sd.as_mapping().expect("a mapping").keys() {
        assert!(
            known.contains(&k.as_str().unwrap()),
            "kubernetes_sd_configs: unknown key {k:?}"
        );
    }
    let roles = [
        "node",
        "service",
        "pod",
        "endpoints",
        "endpointslice",
        "ingress",
    ];
    let role = sd["role"].as_str().expect("kubernetes_sd_configs: role");
    assert!(roles.contains(&role), "kubernetes_sd_configs: role {role}");
    if let Some(ns) = sd.get("namespaces") {
        for k in ns.as_mapping().unwrap().keys() {
            let k = k.as_str().unwrap();
            assert!(
                ["names", "own_namespace"].contains(&k),
                "namespaces: unknown key {k}"
            );
        }
        for n in ns["names"].as_sequence().into_iter().flatten() {
            assert!(
                n.as_str().is_some_and(|n| !n.is_empty()),
                "namespaces.names: {n:?}"
            );
        }
    }
}

#[test]
fn the_prometheus_example_passes_promtool() {
    let Some(promtool) = common::tool("promtool") else {
        return;
    };
    let file = repo().join("deploy/prometheus.yml");
    let dir = tempfile::tempdir().unwrap();
    let check = |path: &Path| {
        std::process::Command::new(&promtool)
            .args(["check", "config"])
            .arg(path)
            .output()
            .unwrap()
    };
    // Debian's Prometheus is built without Kubernetes discovery.
    let probe = dir.path().join("kubernetes-sd.yml");
    std::fs::write(
        &probe,
        "scrape_configs:\n  - job_name: k\n    kubernetes_sd_configs:\n      - role: pod\n",
    )
    .unwrap();
    let checked = if check(&probe).status.success() {
        file
    } else {
        eprintln!(
            "SKIPPED (in part): this promtool has no kubernetes_sd_configs (Debian builds it \
             without); deploy/prometheus.yml is checked with static_configs in their place, \
             and their keys here"
        );
        let mut config = yaml_file("deploy/prometheus.yml");
        for job in config["scrape_configs"].as_sequence_mut().unwrap() {
            let job = job.as_mapping_mut().unwrap();
            if let Some(sd) = job.remove("kubernetes_sd_configs") {
                sd.as_sequence()
                    .expect("kubernetes_sd_configs: a list")
                    .iter()
                    .for_each(check_kubernetes_sd);
                job.insert(
                    "static_configs".into(),
                    serde_yaml::from_str("[{targets: ['placeholder:80']}]").unwrap(),
                );
            }
        }
        let copy = dir.path().join("prometheus.yml");
        std::fs::write(&copy, serde_yaml::to_string(&config).unwrap()).unwrap();
        copy
    };
    let out = check(&checked);
    assert!(
        out.status.success(),
        "promtool check config {}:\n{}{}",
        checked.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
