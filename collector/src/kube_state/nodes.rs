//! The `kube_node_*` families under kube-state-metrics' names and labels: info, whether
//! the node is schedulable, its conditions, and its capacity and allocatable resources.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use telltale_model::{LabelSet, MetricKind, Sink};

use super::labels::resource;

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
