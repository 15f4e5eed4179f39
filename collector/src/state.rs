//! Cluster state from the Kubernetes API under kube-state-metrics' names (`--cluster-state`,
//! run in exactly one replica): pods, nodes, ReplicaSets, Deployments, DaemonSets,
//! StatefulSets and Jobs, each from its own watcher and reflector.
//!
//! Families are written family by family over the reflectors' objects; label values come
//! from the objects the reflectors already hold.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use kube::Client;
use tokio_util::sync::CancellationToken;

use crate::kube_watch::{watch_all, Health, View, Watchable};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use telltale_model::{LabelSet, MetricKind, Sink};

use telltale_model::quantity;

/// `Running` and the other phases, each its own series (value 0 or 1).
const PHASES: [&str; 5] = ["Pending", "Succeeded", "Failed", "Running", "Unknown"];

/// Which pod annotations become `kube_pod_annotations` labels: exact keys, or prefixes
/// ending in `*`.
#[derive(Debug, Clone)]
pub struct AnnotationAllowlist(Vec<String>);

impl AnnotationAllowlist {
    /// From a comma-separated list (`eks.tke.cloud.tencent.com/*,team`).
    pub fn parse(list: &str) -> Self {
        AnnotationAllowlist(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    fn allows(&self, key: &str) -> bool {
        self.0.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => p == key,
        })
    }
}

/// A label name from a Kubernetes key, as kube-state-metrics writes it: `prefix_` then the
/// key with every character other than ASCII letters, digits and `_` replaced by `_`.
pub fn sanitize(prefix: &str, key: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + key.len());
    out.push_str(prefix);
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

fn seconds(t: &Time) -> f64 {
    t.0.as_second() as f64 + f64::from(t.0.subsec_nanosecond()) / 1e9
}

/// (resource label, unit label, value) per kube-state-metrics' conventions.
fn resource(name: &str, q: &str) -> Option<(String, &'static str, f64)> {
    let v = quantity::parse(q)?;
    let unit = match name {
        "cpu" => "core",
        "memory" | "ephemeral-storage" | "storage" => "byte",
        n if n.starts_with("hugepages-") => "byte",
        _ => "integer",
    };
    Some((sanitize("", name), unit, v))
}

/// The latest `finishedAt` when every container has terminated, else None.
fn completion_time(pod: &Pod) -> Option<f64> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    if statuses.is_empty() {
        return None;
    }
    let mut latest: Option<f64> = None;
    for cs in statuses {
        let finished = cs
            .state
            .as_ref()?
            .terminated
            .as_ref()?
            .finished_at
            .as_ref()
            .map(seconds)?;
        latest = Some(latest.map_or(finished, |l: f64| l.max(finished)));
    }
    latest
}

/// Writes every `kube_pod_*` family for `pods`. `base` holds the `cluster` label.
pub fn emit_pods(
    pods: &[Arc<Pod>],
    base: &LabelSet,
    allow: &AnnotationAllowlist,
    sink: &mut dyn Sink,
) {
    use MetricKind::{Counter, Gauge};
    // One label set per pod: cluster, namespace, pod, uid.
    let ids: Vec<(LabelSet, &Pod)> = pods
        .iter()
        .filter_map(|p| {
            let m = &p.metadata;
            let labels = base.with([
                ("namespace", m.namespace.clone().unwrap_or_default()),
                ("pod", m.name.clone()?),
                ("uid", m.uid.clone()?),
            ]);
            Some((labels, p.as_ref()))
        })
        .collect();
    let node_of = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };

    sink.family("kube_pod_info", "Information about pod.", Gauge);
    for (l, p) in &ids {
        let st = p.status.as_ref();
        let ip = |f: fn(&k8s_openapi::api::core::v1::PodStatus) -> Option<&String>| {
            st.and_then(f).cloned().unwrap_or_default()
        };
        let controller = p
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        let node = node_of(p);
        let host_ip = ip(|s| s.host_ip.as_ref());
        let pod_ip = ip(|s| s.pod_ip.as_ref());
        let extra = [
            ("node", node.as_str()),
            ("host_ip", host_ip.as_str()),
            ("pod_ip", pod_ip.as_str()),
            (
                "created_by_kind",
                controller.map_or("<none>", |o| o.kind.as_str()),
            ),
            (
                "created_by_name",
                controller.map_or("<none>", |o| o.name.as_str()),
            ),
        ];
        sink.sample(l, &extra, 1.0);
    }

    sink.family(
        "kube_pod_owner",
        "Information about the Pod's owner.",
        Gauge,
    );
    for (l, p) in &ids {
        let owners = p.metadata.owner_references.as_deref().unwrap_or_default();
        sample_owners(sink, l, owners);
    }

    sink.family(
        "kube_pod_labels",
        "Kubernetes labels converted to Prometheus labels.",
        Gauge,
    );
    for (l, p) in &ids {
        let pairs: Vec<(String, &str)> = p
            .metadata
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (sanitize("label_", k), v.as_str()))
            .collect();
        let extra: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        sink.sample(l, &extra, 1.0);
    }

    sink.family(
        "kube_pod_annotations",
        "Kubernetes annotations converted to Prometheus labels (allowlisted keys).",
        Gauge,
    );
    for (l, p) in &ids {
        let pairs: Vec<(String, &str)> = p
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| allow.allows(k))
            .map(|(k, v)| (sanitize("annotation_", k), v.as_str()))
            .collect();
        let extra: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        sink.sample(l, &extra, 1.0);
    }

    sink.family("kube_pod_status_phase", "The pods current phase.", Gauge);
    for (l, p) in &ids {
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Unknown");
        for ph in PHASES {
            sink.sample(l, &[("phase", ph)], f64::from(u8::from(ph == phase)));
        }
    }

    sink.family(
        "kube_pod_status_ready",
        "Describes whether the pod is ready to serve requests.",
        Gauge,
    );
    for (l, p) in &ids {
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
        if let Some(c) = ready {
            for (label, status) in [("true", "True"), ("false", "False"), ("unknown", "Unknown")] {
                sink.sample(
                    l,
                    &[("condition", label)],
                    f64::from(u8::from(c.status == status)),
                );
            }
        }
    }

    type When = fn(&Pod) -> Option<f64>;
    let times: [(&str, &str, When); 3] = [
        (
            "kube_pod_start_time",
            "Start time in unix timestamp for a pod.",
            |p| p.status.as_ref()?.start_time.as_ref().map(seconds),
        ),
        (
            "kube_pod_completion_time",
            "Completion time in unix timestamp for a pod.",
            completion_time,
        ),
        (
            "kube_pod_deletion_timestamp",
            "Unix deletion timestamp.",
            |p| p.metadata.deletion_timestamp.as_ref().map(seconds),
        ),
    ];
    for (name, help, get) in times {
        sink.family(name, help, Gauge);
        for (l, p) in &ids {
            if let Some(t) = get(p) {
                sink.sample(l, &[], t);
            }
        }
    }

    sink.family(
        "kube_pod_container_status_restarts_total",
        "The number of container restarts per container.",
        Counter,
    );
    for (l, p) in &ids {
        for cs in p
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
        {
            sink.sample(l, &[("container", &cs.name)], f64::from(cs.restart_count));
        }
    }

    sink.family(
        "kube_pod_container_status_waiting_reason",
        "Describes the reason the container is currently in waiting state.",
        Gauge,
    );
    for (l, p) in &ids {
        for cs in p
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
        {
            if let Some(reason) = cs
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
            {
                sink.sample(l, &[("container", &cs.name), ("reason", reason)], 1.0);
            }
        }
    }

    type Pick = fn(
        &Container,
    ) -> Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >;
    let resources: [(&str, &str, bool, Pick); 4] = [
        (
            "kube_pod_container_resource_requests",
            "The number of requested resource by a container.",
            false,
            |c| c.resources.as_ref()?.requests.as_ref(),
        ),
        (
            "kube_pod_container_resource_limits",
            "The number of requested limit resource by a container.",
            false,
            |c| c.resources.as_ref()?.limits.as_ref(),
        ),
        (
            "kube_pod_init_container_resource_requests",
            "The number of requested resource by an init container.",
            true,
            |c| c.resources.as_ref()?.requests.as_ref(),
        ),
        (
            "kube_pod_init_container_resource_limits",
            "The number of requested limit resource by an init container.",
            true,
            |c| c.resources.as_ref()?.limits.as_ref(),
        ),
    ];
    for (name, help, init, pick) in resources {
        sink.family(name, help, Gauge);
        for (l, p) in &ids {
            let Some(spec) = p.spec.as_ref() else {
                continue;
            };
            let node = node_of(p);
            let containers = if init {
                spec.init_containers.as_deref().unwrap_or_default()
            } else {
                &spec.containers
            };
            for c in containers {
                for (res, q) in pick(c).into_iter().flatten() {
                    if let Some((resource, unit, v)) = resource(res, &q.0) {
                        let extra = [
                            ("container", c.name.as_str()),
                            ("node", &node),
                            ("resource", &resource),
                            ("unit", unit),
                        ];
                        sink.sample(l, &extra, v);
                    }
                }
            }
        }
    }
}

/// Every view `--cluster-state` exports from.
pub struct ClusterState {
    pods: View<Pod>,
    nodes: View<Node>,
    replicasets: View<ReplicaSet>,
    deployments: View<Deployment>,
    daemonsets: View<DaemonSet>,
    statefulsets: View<StatefulSet>,
    jobs: View<Job>,
    allow: AnnotationAllowlist,
    base: LabelSet,
}

impl ClusterState {
    /// Starts one watcher per kind; without a client every view says why it is empty.
    pub fn watch(
        client: Result<&Client, &str>,
        cancel: &CancellationToken,
        allow: AnnotationAllowlist,
        cluster: &str,
    ) -> Self {
        fn view<K: Watchable>(
            client: Result<&Client, &str>,
            cancel: &CancellationToken,
        ) -> View<K> {
            match client {
                Ok(c) => watch_all(c.clone(), cancel.clone()),
                Err(why) => View::unavailable(why.to_owned()),
            }
        }
        ClusterState {
            pods: view(client, cancel),
            nodes: view(client, cancel),
            replicasets: view(client, cancel),
            deployments: view(client, cancel),
            daemonsets: view(client, cancel),
            statefulsets: view(client, cancel),
            jobs: view(client, cancel),
            allow,
            base: LabelSet::new([("cluster", cluster)]),
        }
    }

    /// The views, for health reporting.
    pub fn health(&self) -> Vec<Arc<dyn Health>> {
        vec![
            Arc::new(self.pods.clone()),
            Arc::new(self.nodes.clone()),
            Arc::new(self.replicasets.clone()),
            Arc::new(self.deployments.clone()),
            Arc::new(self.daemonsets.clone()),
            Arc::new(self.statefulsets.clone()),
            Arc::new(self.jobs.clone()),
        ]
    }

    /// Writes every state family; each call is a cycle. Deleted pods are exported for
    /// [`RETAIN_CYCLES`](crate::kube_watch::RETAIN_CYCLES) more calls in their final state (with
    /// completion and deletion times).
    pub fn emit(&self, sink: &mut dyn Sink) {
        emit_pods(
            &self.pods.objects_with_departed(),
            &self.base,
            &self.allow,
            sink,
        );
        emit_nodes(&self.nodes.objects(), &self.base, sink);
        emit_workloads(
            &Workloads {
                replicasets: self.replicasets.objects(),
                deployments: self.deployments.objects(),
                daemonsets: self.daemonsets.objects(),
                statefulsets: self.statefulsets.objects(),
                jobs: self.jobs.objects(),
            },
            &self.base,
            sink,
        );
        // A cycle has passed for every view: departed objects are kept for a bounded number
        // of cycles only (workload families do not export them, but must not hoard them).
        self.pods.age_departed();
        self.nodes.age_departed();
        self.replicasets.age_departed();
        self.deployments.age_departed();
        self.daemonsets.age_departed();
        self.statefulsets.age_departed();
        self.jobs.age_departed();
    }
}

/// One sample per owner reference (kube-state-metrics' owner families), or a single
/// `<none>` sample for an object without owners.
fn sample_owners(sink: &mut dyn Sink, labels: &LabelSet, owners: &[OwnerReference]) {
    if owners.is_empty() {
        let none = [
            ("owner_kind", "<none>"),
            ("owner_name", "<none>"),
            ("owner_is_controller", "<none>"),
        ];
        sink.sample(labels, &none, 1.0);
    }
    for o in owners {
        let ctl = if o.controller == Some(true) {
            "true"
        } else {
            "false"
        };
        sink.sample(
            labels,
            &[
                ("owner_kind", &o.kind),
                ("owner_name", &o.name),
                ("owner_is_controller", ctl),
            ],
            1.0,
        );
    }
}

/// `kube_node_*` families.
pub fn emit_nodes(nodes: &[Arc<Node>], base: &LabelSet, sink: &mut dyn Sink) {
    use MetricKind::Gauge;
    let ids: Vec<(LabelSet, &Node)> = nodes
        .iter()
        .filter_map(|n| Some((base.with([("node", n.metadata.name.clone()?)]), n.as_ref())))
        .collect();
    sink.family("kube_node_info", "Information about a cluster node.", Gauge);
    for (l, n) in &ids {
        let st = n.status.as_ref();
        let info = st.and_then(|s| s.node_info.as_ref());
        let field = |f: fn(&k8s_openapi::api::core::v1::NodeSystemInfo) -> &String| {
            info.map_or("", |i| f(i).as_str())
        };
        let internal_ip = st
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map_or("", |a| a.address.as_str());
        let spec = n.spec.as_ref();
        let extra = [
            ("kernel_version", field(|i| &i.kernel_version)),
            ("os_image", field(|i| &i.os_image)),
            (
                "container_runtime_version",
                field(|i| &i.container_runtime_version),
            ),
            ("kubelet_version", field(|i| &i.kubelet_version)),
            ("internal_ip", internal_ip),
            (
                "pod_cidr",
                spec.and_then(|s| s.pod_cidr.as_deref()).unwrap_or(""),
            ),
            (
                "provider_id",
                spec.and_then(|s| s.provider_id.as_deref()).unwrap_or(""),
            ),
        ];
        sink.sample(l, &extra, 1.0);
    }
    sink.family(
        "kube_node_spec_unschedulable",
        "Whether a node can schedule new pods.",
        Gauge,
    );
    for (l, n) in &ids {
        let u = n
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        sink.sample(l, &[], f64::from(u8::from(u)));
    }
    sink.family(
        "kube_node_status_condition",
        "The condition of a cluster node.",
        Gauge,
    );
    for (l, n) in &ids {
        for c in n.status.iter().flat_map(|s| s.conditions.iter().flatten()) {
            for (label, status) in [("true", "True"), ("false", "False"), ("unknown", "Unknown")] {
                sink.sample(
                    l,
                    &[("condition", &c.type_), ("status", label)],
                    f64::from(u8::from(c.status == status)),
                );
            }
        }
    }
    type Amounts = fn(
        &k8s_openapi::api::core::v1::NodeStatus,
    ) -> Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >;
    let amounts: [(&str, &str, Amounts); 2] = [
        (
            "kube_node_status_capacity",
            "The capacity for different resources of a node.",
            |s| s.capacity.as_ref(),
        ),
        (
            "kube_node_status_allocatable",
            "The allocatable for different resources of a node that are available for scheduling.",
            |s| s.allocatable.as_ref(),
        ),
    ];
    for (name, help, pick) in amounts {
        sink.family(name, help, Gauge);
        for (l, n) in &ids {
            for (res, q) in n.status.as_ref().and_then(pick).into_iter().flatten() {
                if let Some((resource, unit, v)) = resource(res, &q.0) {
                    sink.sample(l, &[("resource", &resource), ("unit", unit)], v);
                }
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use telltale_model::TextEncoder;

    fn pods(json: serde_json::Value) -> Vec<Arc<Pod>> {
        serde_json::from_value::<Vec<Pod>>(json)
            .unwrap()
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    fn text(pods: &[Arc<Pod>]) -> String {
        let mut enc = TextEncoder::default();
        let allow = AnnotationAllowlist::parse("eks.tke.cloud.tencent.com/*");
        emit_pods(pods, &LabelSet::new([("cluster", "c1")]), &allow, &mut enc);
        String::from_utf8(enc.take()).unwrap()
    }

    #[test]
    fn pod_families_with_kube_state_metrics_labels_and_values() {
        let p = pods(serde_json::json!([{
            "metadata": {"name": "api-7d9-x", "namespace": "shop", "uid": "u1",
                "labels": {"app": "api", "app.kubernetes.io/part-of": "shop"},
                "annotations": {"eks.tke.cloud.tencent.com/cpu": "4", "other": "no"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-7d9", "uid": "r", "controller": true}]},
            "spec": {"nodeName": "n1",
                "containers": [{"name": "app", "resources": {"requests": {"cpu": "250m", "memory": "128Mi", "nvidia.com/gpu": "1"}, "limits": {"memory": "1Gi"}}}],
                "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "1"}}}]},
            "status": {"phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.1.0.5", "startTime": "2026-11-23T10:00:01Z",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        }]));
        let t = text(&p);
        let id = r#"cluster="c1",namespace="shop",pod="api-7d9-x",uid="u1""#;
        for line in [
            format!(
                r#"kube_pod_info{{{id},node="n1",host_ip="10.0.0.1",pod_ip="10.1.0.5",created_by_kind="ReplicaSet",created_by_name="api-7d9"}} 1"#
            ),
            format!(
                r#"kube_pod_owner{{{id},owner_kind="ReplicaSet",owner_name="api-7d9",owner_is_controller="true"}} 1"#
            ),
            format!(
                r#"kube_pod_labels{{{id},label_app="api",label_app_kubernetes_io_part_of="shop"}} 1"#
            ),
            format!(
                r#"kube_pod_annotations{{{id},annotation_eks_tke_cloud_tencent_com_cpu="4"}} 1"#
            ),
            format!(r#"kube_pod_status_phase{{{id},phase="Running"}} 1"#),
            format!(r#"kube_pod_status_phase{{{id},phase="Pending"}} 0"#),
            format!(r#"kube_pod_status_ready{{{id},condition="false"}} 1"#),
            format!(r#"kube_pod_status_ready{{{id},condition="true"}} 0"#),
            format!(r#"kube_pod_start_time{{{id}}} 1795428001"#),
            format!(r#"kube_pod_container_status_restarts_total{{{id},container="app"}} 3"#),
            format!(
                r#"kube_pod_container_status_waiting_reason{{{id},container="app",reason="CrashLoopBackOff"}} 1"#
            ),
            format!(
                r#"kube_pod_container_resource_requests{{{id},container="app",node="n1",resource="cpu",unit="core"}} 0.25"#
            ),
            format!(
                r#"kube_pod_container_resource_requests{{{id},container="app",node="n1",resource="memory",unit="byte"}} 134217728"#
            ),
            format!(
                r#"kube_pod_container_resource_requests{{{id},container="app",node="n1",resource="nvidia_com_gpu",unit="integer"}} 1"#
            ),
            format!(
                r#"kube_pod_container_resource_limits{{{id},container="app",node="n1",resource="memory",unit="byte"}} 1073741824"#
            ),
            format!(
                r#"kube_pod_init_container_resource_requests{{{id},container="init",node="n1",resource="cpu",unit="core"}} 1"#
            ),
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line}\nin\n{t}");
        }
        assert!(
            !t.contains("annotation_other"),
            "only allowlisted annotations"
        );
        assert!(!t.contains("kube_pod_completion_time"), "still running");
    }

    #[test]
    fn completion_and_deletion_times() {
        let p = pods(serde_json::json!([{
            "metadata": {"name": "job-x", "namespace": "ci", "uid": "u2", "deletionTimestamp": "2026-11-23T10:05:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "a", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-23T10:00:03Z"}}},
                {"name": "b", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-23T10:00:04Z"}}}]}
        }]));
        let t = text(&p);
        let id = r#"cluster="c1",namespace="ci",pod="job-x",uid="u2""#;
        assert!(
            t.contains(&format!("kube_pod_completion_time{{{id}}} 1795428004\n")),
            "{t}"
        );
        assert!(
            t.contains(&format!("kube_pod_deletion_timestamp{{{id}}} 1795428300\n")),
            "{t}"
        );
        assert!(t.contains(&format!(r#"kube_pod_owner{{{id},owner_kind="<none>",owner_name="<none>",owner_is_controller="<none>"}} 1"#)));
    }

    fn objects<K: serde::de::DeserializeOwned>(json: serde_json::Value) -> Vec<Arc<K>> {
        serde_json::from_value::<Vec<K>>(json)
            .unwrap()
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    #[test]
    fn node_and_workload_families_for_a_small_cluster() {
        let nodes: Vec<Arc<Node>> = objects(serde_json::json!([{
            "metadata": {"name": "n2"},
            "spec": {"unschedulable": true, "podCIDR": "10.244.2.0/24"},
            "status": {
                "conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}],
                "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "3800m", "memory": "15Gi"},
                "addresses": [{"type": "InternalIP", "address": "10.0.0.12"}],
                "nodeInfo": {"kernelVersion": "6.1.0", "osImage": "Debian 12", "containerRuntimeVersion": "containerd://1.7",
                    "kubeletVersion": "v1.31.0", "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": "",
                    "operatingSystem": "linux", "architecture": "amd64"}
            }
        }]));
        let w = Workloads {
            deployments: objects(
                serde_json::json!([{"metadata": {"name": "api", "namespace": "shop"}, "spec": {"replicas": 2,
                "selector": {}, "template": {}}, "status": {"availableReplicas": 1}}]),
            ),
            replicasets: objects(
                serde_json::json!([{"metadata": {"name": "api-7d9", "namespace": "shop",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "uid": "d", "controller": true}]},
                "spec": {"selector": {}}}]),
            ),
            daemonsets: objects(
                serde_json::json!([{"metadata": {"name": "agent", "namespace": "kube-system"}, "spec": {"selector": {}, "template": {}},
                "status": {"desiredNumberScheduled": 3, "numberReady": 2, "currentNumberScheduled": 3, "numberMisscheduled": 0}}]),
            ),
            statefulsets: objects(
                serde_json::json!([{"metadata": {"name": "db", "namespace": "shop"}, "spec": {"replicas": 3,
                "selector": {}, "template": {}, "serviceName": "db"}, "status": {"replicas": 3, "readyReplicas": 3}}]),
            ),
            jobs: objects(
                serde_json::json!([{"metadata": {"name": "migrate", "namespace": "shop",
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "cj1", "controller": true}]},
                "spec": {"template": {}},
                "status": {"succeeded": 1, "failed": 2, "completionTime": "2026-11-23T10:00:04Z"}}]),
            ),
        };
        let base = LabelSet::new([("cluster", "c1")]);
        let mut enc = TextEncoder::default();
        emit_nodes(&nodes, &base, &mut enc);
        emit_workloads(&w, &base, &mut enc);
        let t = String::from_utf8(enc.take()).unwrap();
        let n = r#"cluster="c1",node="n2""#;
        for line in [
            format!(r#"kube_node_info{{{n},kernel_version="6.1.0",os_image="Debian 12",container_runtime_version="containerd://1.7",kubelet_version="v1.31.0",internal_ip="10.0.0.12",pod_cidr="10.244.2.0/24",provider_id=""}} 1"#),
            format!(r#"kube_node_spec_unschedulable{{{n}}} 1"#),
            format!(r#"kube_node_status_condition{{{n},condition="Ready",status="false"}} 1"#),
            format!(r#"kube_node_status_condition{{{n},condition="Ready",status="true"}} 0"#),
            format!(r#"kube_node_status_condition{{{n},condition="DiskPressure",status="false"}} 1"#),
            format!(r#"kube_node_status_capacity{{{n},resource="cpu",unit="core"}} 4"#),
            format!(r#"kube_node_status_capacity{{{n},resource="pods",unit="integer"}} 110"#),
            format!(r#"kube_node_status_allocatable{{{n},resource="cpu",unit="core"}} 3.8"#),
            format!(r#"kube_node_status_allocatable{{{n},resource="memory",unit="byte"}} 16106127360"#),
            r#"kube_deployment_spec_replicas{cluster="c1",namespace="shop",deployment="api"} 2"#.to_owned(),
            r#"kube_deployment_status_replicas_available{cluster="c1",namespace="shop",deployment="api"} 1"#.to_owned(),
            r#"kube_daemonset_status_desired_number_scheduled{cluster="c1",namespace="kube-system",daemonset="agent"} 3"#.to_owned(),
            r#"kube_daemonset_status_number_ready{cluster="c1",namespace="kube-system",daemonset="agent"} 2"#.to_owned(),
            r#"kube_statefulset_replicas{cluster="c1",namespace="shop",statefulset="db"} 3"#.to_owned(),
            r#"kube_statefulset_status_replicas_ready{cluster="c1",namespace="shop",statefulset="db"} 3"#.to_owned(),
            r#"kube_job_status_failed{cluster="c1",namespace="shop",job_name="migrate"} 2"#.to_owned(),
            r#"kube_replicaset_owner{cluster="c1",namespace="shop",replicaset="api-7d9",owner_kind="Deployment",owner_name="api",owner_is_controller="true"} 1"#.to_owned(),
            r#"kube_job_owner{cluster="c1",namespace="shop",job_name="migrate",owner_kind="CronJob",owner_name="nightly",owner_is_controller="true"} 1"#.to_owned(),
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line}\nin\n{t}");
        }
    }

    #[test]
    fn every_view_forgets_departed_objects_after_the_retention_cycles() {
        let cancel = CancellationToken::new();
        let cs = ClusterState::watch(
            Err("no client in this test"),
            &cancel,
            AnnotationAllowlist::parse(""),
            "c1",
        );
        let node: Node = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "gone", "uid": "n-uid"}}),
        )
        .unwrap();
        let job: Job = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "j", "namespace": "x", "uid": "j-uid"}}),
        )
        .unwrap();
        cs.nodes.depart(Arc::new(node));
        cs.jobs.depart(Arc::new(job));
        for _ in 0..crate::kube_watch::RETAIN_CYCLES {
            cs.emit(&mut TextEncoder::default());
        }
        assert!(cs.nodes.objects_with_departed().is_empty());
        assert!(cs.jobs.objects_with_departed().is_empty());
    }
}
