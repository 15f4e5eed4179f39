//! The workload families under kube-state-metrics' names: desired and ready replicas of
//! Deployments, DaemonSets and StatefulSets, failed Job pods, and the owners of ReplicaSets
//! and Jobs. Every series carries `namespace` and the object's own label.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use telltale_model::{LabelSet, MetricKind, Sink};

use super::labels::sample_owners;

/// The workload objects of one cycle.
pub struct Workloads {
    /// ReplicaSets.
    pub replicasets: Vec<Arc<ReplicaSet>>,
    /// Deployments.
    pub deployments: Vec<Arc<Deployment>>,
    /// DaemonSets.
    pub daemonsets: Vec<Arc<DaemonSet>>,
    /// StatefulSets.
    pub statefulsets: Vec<Arc<StatefulSet>>,
    /// Jobs.
    pub jobs: Vec<Arc<Job>>,
}

/// The `namespace` and `<kind>` labels of a namespaced object.
fn named(
    base: &LabelSet,
    kind: &str,
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<LabelSet> {
    Some(base.with([
        (
            "namespace".to_owned(),
            m.namespace.clone().unwrap_or_default(),
        ),
        (kind.to_owned(), m.name.clone()?),
    ]))
}

/// One gauge family with one sample per object, labelled `namespace` and `<label>`.
fn per_object<K: kube::Resource>(
    sink: &mut dyn Sink,
    base: &LabelSet,
    (name, help, label): (&str, &str, &str),
    objects: &[Arc<K>],
    value: impl Fn(&K) -> i32,
) {
    sink.family(name, help, MetricKind::Gauge);
    for o in objects {
        if let Some(l) = named(base, label, o.meta()) {
            sink.sample(&l, &[], f64::from(value(o)));
        }
    }
}

/// Deployment, DaemonSet, StatefulSet, Job and ReplicaSet families.
pub fn emit_workloads(w: &Workloads, base: &LabelSet, sink: &mut dyn Sink) {
    let deployments = &w.deployments;
    per_object(
        sink,
        base,
        (
            "kube_deployment_spec_replicas",
            "Number of desired pods for a deployment.",
            "deployment",
        ),
        deployments,
        |d| d.spec.replicas.unwrap_or(1),
    );
    per_object(
        sink,
        base,
        (
            "kube_deployment_status_replicas_available",
            "The number of available replicas per deployment.",
            "deployment",
        ),
        deployments,
        |d| {
            d.status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
        },
    );
    per_object(
        sink,
        base,
        (
            "kube_daemonset_status_desired_number_scheduled",
            "The number of nodes that should be running the daemon pod.",
            "daemonset",
        ),
        &w.daemonsets,
        |d| d.status.as_ref().map_or(0, |s| s.desired_number_scheduled),
    );
    per_object(sink, base, ("kube_daemonset_status_number_ready", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.", "daemonset"), &w.daemonsets, |d| {
        d.status.as_ref().map_or(0, |s| s.number_ready)
    });
    per_object(
        sink,
        base,
        (
            "kube_statefulset_replicas",
            "Number of desired pods for a StatefulSet.",
            "statefulset",
        ),
        &w.statefulsets,
        |s| s.spec.replicas.unwrap_or(1),
    );
    per_object(
        sink,
        base,
        (
            "kube_statefulset_status_replicas_ready",
            "The number of ready replicas per StatefulSet.",
            "statefulset",
        ),
        &w.statefulsets,
        |s| {
            s.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        },
    );
    per_object(
        sink,
        base,
        (
            "kube_job_status_failed",
            "The number of pods which reached Phase Failed.",
            "job_name",
        ),
        &w.jobs,
        |j| j.status.as_ref().and_then(|s| s.failed).unwrap_or(0),
    );
    owner_family(
        sink,
        base,
        (
            "kube_replicaset_owner",
            "Information about the ReplicaSet's owner.",
            "replicaset",
        ),
        w.replicasets.iter().map(|r| &r.metadata),
    );
    owner_family(
        sink,
        base,
        (
            "kube_job_owner",
            "Information about the Job's owner.",
            "job_name",
        ),
        w.jobs.iter().map(|j| &j.metadata),
    );
}

/// One `kube_*_owner` family: (name, help, the object's label) and the objects.
fn owner_family<'o>(
    sink: &mut dyn Sink,
    base: &LabelSet,
    (name, help, label): (&str, &str, &str),
    objects: impl Iterator<Item = &'o k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
) {
    sink.family(name, help, MetricKind::Gauge);
    for m in objects {
        let Some(l) = named(base, label, m) else {
            continue;
        };
        sample_owners(sink, &l, m.owner_references.as_deref().unwrap_or_default());
    }
}
