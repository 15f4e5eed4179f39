//! A small Kubernetes cluster for black-box tests of the whole pipeline: the stand-in API
//! server ([`FakeApi`]) listing node-1, its pods and one object of each workload kind,
//! and node-1's fixture cgroups and procfs for a collector to read.

use std::path::Path;

use serde_json::{json, Value};
use telltale_collector::fixture::{self, container_id, pod_uid, Node, Runtime};

use super::kube_api::{pod, FakeApi};
use super::{spawn, Running};

/// The fixture node's name.
pub const NODE: &str = "node-1";

/// Fills `node` with the cgroups of 4 pods (10 containers, sandboxes included) of
/// Deployment `web` in `shop`, and `api` with those pods plus `more` (pods on other nodes,
/// finished ones), node-1, a ReplicaSet per pod owned by `web`, `web`, a DaemonSet, a
/// StatefulSet and a Job.
pub fn populate(api: &FakeApi, node: &Node, more: Vec<Value>) {
    fixture::populate(node, 4, 10, Runtime::Containerd).expect("fixture cgroups");
    let mut pods = web_pods();
    let replicasets: Vec<Value> = (0..4)
        .map(|p| json!({"kind": "ReplicaSet", "apiVersion": "apps/v1",
            "metadata": {"name": format!("web-{p}-rs"), "namespace": "shop", "uid": format!("rs-{p}"), "resourceVersion": "7",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "dep-web", "controller": true}]},
            "spec": {"replicas": 1, "selector": {}}, "status": {"replicas": 1}}))
        .collect();
    pods.extend(more);
    api.set_pods(pods);
    api.set_objects("/apis/apps/v1/replicasets", replicasets);
    api.set_objects(
        "/api/v1/nodes",
        vec![json!({"kind": "Node", "apiVersion": "v1",
            "metadata": {"name": NODE, "uid": "node-uid-1", "resourceVersion": "5", "labels": {"kubernetes.io/hostname": NODE}},
            "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"}],
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "3800m", "memory": "7Gi", "pods": "110"},
                "nodeInfo": {"kernelVersion": "6.1.0", "osImage": "Debian GNU/Linux 12", "containerRuntimeVersion": "containerd://1.7.0",
                    "kubeletVersion": "v1.28.3", "kubeProxyVersion": "v1.28.3", "machineID": "m", "systemUUID": "s", "bootID": "b",
                    "operatingSystem": "linux", "architecture": "amd64"}}})],
    );
    api.set_objects(
        "/apis/apps/v1/deployments",
        vec![json!({"kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": {"name": "web", "namespace": "shop", "uid": "dep-web", "resourceVersion": "6"},
            "spec": {"replicas": 4, "selector": {}, "template": {}}, "status": {"availableReplicas": 4, "replicas": 4}})],
    );
    api.set_objects(
        "/apis/apps/v1/daemonsets",
        vec![json!({"kind": "DaemonSet", "apiVersion": "apps/v1",
            "metadata": {"name": "telltale-collector", "namespace": "telltale", "uid": "ds-1", "resourceVersion": "8"},
            "spec": {"selector": {}, "template": {}},
            "status": {"desiredNumberScheduled": 1, "numberReady": 1, "currentNumberScheduled": 1, "numberMisscheduled": 0}})],
    );
    api.set_objects(
        "/apis/apps/v1/statefulsets",
        vec![json!({"kind": "StatefulSet", "apiVersion": "apps/v1",
            "metadata": {"name": "telltale-aggregator", "namespace": "telltale", "uid": "sts-1", "resourceVersion": "9"},
            "spec": {"replicas": 1, "selector": {}, "template": {}, "serviceName": "telltale-aggregator"},
            "status": {"replicas": 1, "readyReplicas": 1}})],
    );
    api.set_objects(
        "/apis/batch/v1/jobs",
        vec![json!({"kind": "Job", "apiVersion": "batch/v1",
            "metadata": {"name": "report-1", "namespace": "batch", "uid": "job-1", "resourceVersion": "10"},
            "spec": {"template": {}}, "status": {"failed": 0, "succeeded": 1}})],
    );
}

/// The API's view of the pods `fixture::populate(node, 4, 10, ..)` creates cgroups for:
/// pod p is `shop/web-p` on node-1 (pods 0 and 1 with 3 containers, 2 and 3 with 2, each
/// pod's first container its sandbox), application containers `app1`... with image
/// `registry.example/app:1.<n>`.
pub fn web_pods() -> Vec<Value> {
    let mut pods = Vec::new();
    let mut next = 0;
    for p in 0..4 {
        let count = if p < 2 { 3 } else { 2 };
        let ids: Vec<String> = (next..next + count).map(container_id).collect();
        next += count;
        let apps: Vec<(String, String, String)> = ids[1..]
            .iter()
            .enumerate()
            .map(|(i, id)| {
                (
                    format!("app{}", i + 1),
                    format!("registry.example/app:1.{}", i + 1),
                    id.clone(),
                )
            })
            .collect();
        let refs: Vec<(&str, &str, &str)> = apps
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
            .collect();
        pods.push(pod("shop", &format!("web-{p}"), &pod_uid(p), NODE, &refs));
    }
    pods
}

/// `telltale collector` reading the fixture `node` as node-1, against the API server of
/// `kubeconfig`, with `extra` flags (which should set `--interval`).
pub fn spawn_collector(node: &Node, kubeconfig: &Path, extra: &[&str]) -> Running {
    let mut args = vec![
        "collector".to_owned(),
        "--node-name".into(),
        NODE.into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
    ];
    args.extend(node.root_flags());
    args.extend(extra.iter().map(|a| a.to_string()));
    spawn(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A pod of `namespace` on another node that ran from `start` to `finish` (unix seconds)
/// and succeeded; one container requesting `requests` (cpu, memory) if given.
pub fn finished_pod(
    namespace: &str,
    name: &str,
    requests: Option<(&str, &str)>,
    start: i64,
    finish: i64,
) -> Value {
    let time = |s: i64| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s as u64);
        humantime::format_rfc3339_seconds(t).to_string()
    };
    let resources = match requests {
        Some((cpu, memory)) => json!({"requests": {"cpu": cpu, "memory": memory}}),
        None => json!({}),
    };
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"), "resourceVersion": "1000",
            "creationTimestamp": time(start - 1)},
        "spec": {"nodeName": "node-2", "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "registry.example/job:1", "resources": resources}]},
        "status": {"phase": "Succeeded", "hostIP": "10.0.0.12", "podIP": "10.244.2.9", "startTime": time(start),
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "main", "image": "registry.example/job:1", "imageID": "registry.example/job@sha256:0",
                "containerID": format!("containerd://{name}"), "ready": false, "restartCount": 0, "started": false,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": time(start), "finishedAt": time(finish)}},
                "lastState": {}}]}
    })
}
