//! Every manifest under deploy/ parses into the Kubernetes API types, and says what the
//! collector needs and no more.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::Deserialize;

/// Each document of each deploy/*.yaml file, parsed into its API type.
#[derive(Debug)]
enum Object {
    Namespace(Box<Namespace>),
    ServiceAccount(Box<ServiceAccount>),
    ClusterRole(Box<ClusterRole>),
    ClusterRoleBinding(Box<ClusterRoleBinding>),
    DaemonSet(Box<DaemonSet>),
    Deployment(Box<Deployment>),
    Service(Box<Service>),
}

fn manifests() -> Vec<(String, Object)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for path in files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_yaml::Value::deserialize(doc).unwrap();
            let kind = v["kind"].as_str().unwrap_or_default().to_owned();
            let at = format!("{}: {kind}", path.display());
            let obj = match kind.as_str() {
                "Namespace" => Object::Namespace(Box::new(serde_yaml::from_value(v).unwrap())),
                "ServiceAccount" => {
                    Object::ServiceAccount(Box::new(serde_yaml::from_value(v).unwrap()))
                }
                "ClusterRole" => Object::ClusterRole(Box::new(serde_yaml::from_value(v).unwrap())),
                "ClusterRoleBinding" => {
                    Object::ClusterRoleBinding(Box::new(serde_yaml::from_value(v).unwrap()))
                }
                "DaemonSet" => Object::DaemonSet(Box::new(serde_yaml::from_value(v).unwrap())),
                "Service" => Object::Service(Box::new(serde_yaml::from_value(v).unwrap())),
                "Deployment" => Object::Deployment(Box::new(serde_yaml::from_value(v).unwrap())),
                other => panic!("{at}: no test knows kind {other:?}"),
            };
            out.push((at, obj));
        }
    }
    assert!(!out.is_empty());
    out
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
        "Service",
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
            Object::Service(s) => Some(s),
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
            Object::Deployment(d) => Some(d),
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
