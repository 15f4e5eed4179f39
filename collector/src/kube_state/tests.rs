//! The node and workload families for a small cluster, with kube-state-metrics' labels
//! and values.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use telltale_model::{LabelSet, TextEncoder};

use super::nodes::emit_nodes;
use super::workloads::{emit_workloads, Workloads};

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
