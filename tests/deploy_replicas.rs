//! deploy/replicated/: two aggregator replicas on one object store bucket, collectors
//! shipping to both, and query nodes. Applied after deploy/, it replaces objects of the
//! same names, so each replacement must be an update the API server takes, and the names
//! the pieces use for each other (pod DNS names under the governing Service, the Secret,
//! the ConfigMap the collectors read) must resolve to what the manifests make.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;
#[path = "common/manifests.rs"]
mod manifests;

use std::path::Path;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Service};
use manifests::Object;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// deploy/ with deploy/replicated/ applied over it: an object of the same kind, name and
/// namespace is replaced.
fn applied() -> Vec<(String, Object)> {
    let mut all = manifests::parse(&repo().join("deploy"));
    for (at, obj) in manifests::parse(&repo().join("deploy/replicated")) {
        let id = identity(&obj);
        all.retain(|(_, o)| identity(o) != id);
        all.push((at, obj));
    }
    all
}

/// Kind, namespace and name.
fn identity(o: &Object) -> (String, String, String) {
    let (kind, meta) = match o {
        Object::StatefulSet(x) => ("StatefulSet", &x.metadata),
        Object::Deployment(x) => ("Deployment", &x.metadata),
        Object::DaemonSet(x) => ("DaemonSet", &x.metadata),
        Object::Service(x) => ("Service", &x.metadata),
        Object::ConfigMap(x) => ("ConfigMap", &x.metadata),
        Object::Secret(x) => ("Secret", &x.metadata),
        Object::Namespace(x) => ("Namespace", &x.metadata),
        Object::ServiceAccount(x) => ("ServiceAccount", &x.metadata),
        Object::ClusterRole(x) => ("ClusterRole", &x.metadata),
        Object::ClusterRoleBinding(x) => ("ClusterRoleBinding", &x.metadata),
        Object::PersistentVolumeClaim(x) => ("PersistentVolumeClaim", &x.metadata),
    };
    (
        kind.to_owned(),
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn statefulset<'a>(all: &'a [(String, Object)], name: &str) -> &'a StatefulSet {
    all.iter()
        .find_map(|(_, o)| match o {
            Object::StatefulSet(s) if s.metadata.name.as_deref() == Some(name) => Some(&**s),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no StatefulSet {name}"))
}

fn service<'a>(all: &'a [(String, Object)], name: &str) -> &'a Service {
    all.iter()
        .find_map(|(_, o)| match o {
            Object::Service(s) if s.metadata.name.as_deref() == Some(name) => Some(&**s),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Service {name}"))
}

fn config_map<'a>(all: &'a [(String, Object)], name: &str) -> &'a ConfigMap {
    all.iter()
        .find_map(|(_, o)| match o {
            Object::ConfigMap(m) if m.metadata.name.as_deref() == Some(name) => Some(&**m),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ConfigMap {name}"))
}

fn container(spec: &k8s_openapi::api::core::v1::PodTemplateSpec) -> &Container {
    &spec.spec.as_ref().unwrap().containers[0]
}

/// The values of `--name=value` in the container's arguments.
fn flag(c: &Container, name: &str) -> Vec<String> {
    let prefix = format!("{name}=");
    c.args
        .iter()
        .flatten()
        .filter_map(|a| a.strip_prefix(&prefix).map(str::to_owned))
        .chain(
            c.args
                .iter()
                .flatten()
                .filter(|a| *a == name)
                .map(|_| String::new()),
        )
        .collect()
}

/// The URL of replica `i` of the aggregator StatefulSet at `path`: its pod's DNS name
/// under the governing Service, on that Service's port.
fn replica_url(all: &[(String, Object)], sts: &StatefulSet, i: i32, path: &str) -> String {
    let governing = sts.spec.service_name.clone().unwrap();
    let svc = service(all, &governing);
    let spec = svc.spec.as_ref().unwrap();
    assert_eq!(
        spec.cluster_ip.as_deref(),
        Some("None"),
        "{governing} must be headless for pods to have DNS names"
    );
    let port = spec.ports.as_ref().unwrap()[0].port;
    format!(
        "http://{}-{i}.{governing}.{}.svc:{port}{path}",
        sts.metadata.name.as_deref().unwrap(),
        sts.metadata.namespace.as_deref().unwrap()
    )
}

/// The Secret a container takes its whole environment from.
fn secret_env(c: &Container) -> Vec<String> {
    c.env_from
        .iter()
        .flatten()
        .filter_map(|e| e.secret_ref.as_ref().map(|s| s.name.clone()))
        .collect()
}

/// `telltale aggregator --help`: the environment variables the flags read.
fn help() -> String {
    common::run_ok(common::telltale().args(["aggregator", "--help"]))
}

#[test]
fn the_replicas_replace_the_single_aggregator_with_an_update_the_api_server_takes() {
    let base = manifests::parse(&repo().join("deploy"));
    let all = applied();
    let one = statefulset(&base, "telltale-aggregator");
    let two = statefulset(&all, "telltale-aggregator");
    let (a, b) = (&one.spec, &two.spec);
    assert!(b.replicas.unwrap_or(1) >= 2, "replicas {:?}", b.replicas);
    // A StatefulSet's selector, governing Service and claims cannot change.
    assert_eq!(a.selector, b.selector);
    assert_eq!(a.service_name, b.service_name);
    assert_eq!(
        serde_json::to_value(&a.volume_claim_templates).unwrap(),
        serde_json::to_value(&b.volume_claim_templates).unwrap()
    );
    let c = container(&b.template);
    // Each replica is named after its pod (stable across restarts) ...
    let replica = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "TELLTALE_REPLICA")
        .expect("TELLTALE_REPLICA");
    let field = replica.value_from.as_ref().unwrap().field_ref.as_ref();
    assert_eq!(field.unwrap().field_path, "metadata.name");
    // ... and reads the bucket and its credentials from a Secret no manifest holds.
    assert_eq!(secret_env(c), ["telltale-object-store"]);
    assert!(!all
        .iter()
        .any(|(_, o)| matches!(o, Object::Secret(s) if s.metadata.name.as_deref() == Some("telltale-object-store"))));
    let help = help();
    for var in ["TELLTALE_REPLICA", "TELLTALE_OBJECT_STORE"] {
        assert!(
            help.contains(&format!("env: {var}=")),
            "--help names no {var}"
        );
    }
    let text = std::fs::read_to_string(repo().join("deploy/replicated/aggregator.yaml")).unwrap();
    for key in [
        "TELLTALE_OBJECT_STORE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        assert!(text.contains(key), "the Secret's {key} is not explained");
    }
    // The rest of the pod is the single aggregator's: the same flags and volumes.
    let c1 = container(&a.template);
    assert_eq!(c.args, c1.args);
    assert_eq!(c.volume_mounts, c1.volume_mounts);
    let grace = b
        .template
        .spec
        .as_ref()
        .unwrap()
        .termination_grace_period_seconds;
    assert!(
        grace.unwrap_or(30) >= 60,
        "{grace:?}: the last flush uploads"
    );
}

#[test]
fn collectors_ship_to_every_replica_by_its_pod_name() {
    let all = applied();
    let sts = statefulset(&all, "telltale-aggregator");
    let replicas = sts.spec.replicas.unwrap();
    let collectors = all
        .iter()
        .find_map(|(_, o)| match o {
            Object::DaemonSet(d) => Some(&**d),
            _ => None,
        })
        .map(|d: &DaemonSet| container(&d.spec.template).clone())
        .unwrap();
    assert_eq!(flag(&collectors, "--remote-write"), ["$(REMOTE_WRITE)"]);
    let from = collectors
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "REMOTE_WRITE")
        .and_then(|e| e.value_from.as_ref()?.config_map_key_ref.clone())
        .expect("REMOTE_WRITE from a ConfigMap");
    let urls: Vec<String> = config_map(&all, &from.name).data.as_ref().unwrap()[&from.key]
        .split(',')
        .map(str::to_owned)
        .collect();
    let want: Vec<String> = (0..replicas)
        .map(|i| replica_url(&all, sts, i, "/api/v1/write"))
        .collect();
    assert_eq!(urls, want);
    // The governing Service fronts the aggregator pods on the port they listen on.
    let governing = service(&all, sts.spec.service_name.as_ref().unwrap());
    let labels = sts.spec.template.metadata.as_ref().unwrap().labels.clone();
    let selector = governing.spec.as_ref().unwrap().selector.clone().unwrap();
    assert!(selector
        .iter()
        .all(|(k, v)| labels.as_ref().unwrap().get(k) == Some(v)));
    let listen = flag(container(&sts.spec.template), "--listen");
    let port = governing.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port;
    assert!(
        listen[0].ends_with(&format!(":{port}")),
        "{listen:?} vs {port}"
    );
}

#[test]
fn query_nodes_read_the_same_bucket_and_ask_every_replica() {
    let all = applied();
    let sts = statefulset(&all, "telltale-aggregator");
    let replicas = sts.spec.replicas.unwrap();
    let query: &Deployment = all
        .iter()
        .find_map(|(_, o)| match o {
            Object::Deployment(d) if d.metadata.name.as_deref() == Some("telltale-query") => {
                Some(&**d)
            }
            _ => None,
        })
        .expect("a telltale-query Deployment");
    let spec = &query.spec;
    let c = container(&spec.template);
    assert_eq!(c.args.as_ref().unwrap()[0], "aggregator");
    assert_eq!(flag(c, "--read-only"), [""]);
    assert_eq!(
        secret_env(c),
        secret_env(container(&sts.spec.template)),
        "the same bucket as the replicas"
    );
    let ingesters: Vec<String> = flag(c, "--ingesters")[0]
        .split(',')
        .map(str::to_owned)
        .collect();
    let want: Vec<String> = (0..replicas)
        .map(|i| replica_url(&all, sts, i, ""))
        .collect();
    assert_eq!(ingesters, want);
    // Its data directory is scratch, bounded, and holds the page cache.
    let data = &flag(c, "--data-dir")[0];
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| &m.mount_path == data)
        .expect("--data-dir on a volume");
    let volume = spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap();
    let scratch = volume.empty_dir.as_ref().expect("an emptyDir");
    let limit = telltale_model::quantity::parse(&scratch.size_limit.as_ref().unwrap().0).unwrap();
    let cache = flag(c, "--cache-max-bytes")[0]
        .trim_end_matches("GiB")
        .parse::<f64>()
        .unwrap();
    assert!(
        cache * f64::from(1u32 << 30) < limit,
        "the page cache fits its volume"
    );
    // A Service fronts it.
    let svc = service(&all, "telltale-query");
    let selector = svc.spec.as_ref().unwrap().selector.clone().unwrap();
    let labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
}
