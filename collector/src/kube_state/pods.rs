//! The `kube_pod_*` families under kube-state-metrics' names and labels: info, owners,
//! labels, allowlisted annotations, phase, readiness, start/completion/deletion times,
//! container restarts and waiting reasons, and container resource requests and limits.
//! Every series carries `namespace`, `pod` and `uid`.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use telltale_model::{LabelSet, MetricKind, Sink};

use super::labels::{resource, sample_owners, sanitize, seconds, AnnotationAllowlist};

/// `Running` and the other phases, each its own series (value 0 or 1).
const PHASES: [&str; 5] = ["Pending", "Succeeded", "Failed", "Running", "Unknown"];

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

#[cfg(test)]
mod tests {
    use telltale_model::TextEncoder;

    use super::*;

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
}
