//! The Kubernetes manifests under deploy/, each document parsed into its API type (for the
//! deploy tests, which include this file by path: other tests do not need k8s-openapi).

use std::path::Path;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::Deserialize;

/// One document of a manifest file, parsed into its API type.
#[derive(Debug)]
pub enum Object {
    Namespace(Box<Namespace>),
    ServiceAccount(Box<ServiceAccount>),
    ClusterRole(Box<ClusterRole>),
    ClusterRoleBinding(Box<ClusterRoleBinding>),
    DaemonSet(Box<DaemonSet>),
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
    Service(Box<Service>),
    ConfigMap(Box<ConfigMap>),
    Secret(Box<Secret>),
    PersistentVolumeClaim(Box<PersistentVolumeClaim>),
}

/// Every document of every `*.yaml` file directly in `dir`, by file name, each with
/// "path: Kind"; a kind no test knows fails.
pub fn parse(dir: &Path) -> Vec<(String, Object)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
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
                "StatefulSet" => Object::StatefulSet(Box::new(serde_yaml::from_value(v).unwrap())),
                "ConfigMap" => Object::ConfigMap(Box::new(serde_yaml::from_value(v).unwrap())),
                "Secret" => Object::Secret(Box::new(serde_yaml::from_value(v).unwrap())),
                "PersistentVolumeClaim" => {
                    Object::PersistentVolumeClaim(Box::new(serde_yaml::from_value(v).unwrap()))
                }
                other => panic!("{at}: no test knows kind {other:?}"),
            };
            out.push((at, obj));
        }
    }
    assert!(!out.is_empty(), "no manifest in {}", dir.display());
    out
}
