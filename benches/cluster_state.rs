//! `--cluster-state` at scale (issue "Kubernetes awareness"): the real `telltale collector`
//! against the stand-in API server (tests/common/kube_api.rs) serving 5,000 pods on 500
//! nodes, with 500 Deployments and their ReplicaSets. Reports RSS, CPU per collection cycle,
//! exposition size and encode time, against the targets.
//!
//! `cargo bench --bench cluster_state`

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed benchmark

#[path = "../tests/common/kube_api.rs"]
#[allow(dead_code)]
mod kube_api;

mod common;
use common::process_cpu;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const NODES: usize = 500;
const PODS: usize = 5_000;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `url` as text; the body may be larger than ureq's `into_string` limit.
fn try_get(url: &str) -> Option<String> {
    let r = ureq::get(url)
        .timeout(Duration::from_secs(30))
        .call()
        .ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut r.into_reader(), &mut text).ok()?;
    Some(text)
}

fn get(url: &str) -> String {
    try_get(url).unwrap()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn rss_mib(pid: u32) -> f64 {
    common::status_kib(pid, "VmRSS") as f64 / 1024.0
}

fn main() {
    let api = kube_api::FakeApi::start();
    let nodes = (0..NODES)
        .map(|n| json!({"kind": "Node", "apiVersion": "v1", "metadata": {"name": format!("node-{n}"), "resourceVersion": "1",
            "labels": {"kubernetes.io/hostname": format!("node-{n}")}},
            "spec": {"podCIDR": format!("10.{}.{}.0/24", n / 256, n % 256)},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"},
                {"type": "DiskPressure", "status": "False"}, {"type": "PIDPressure", "status": "False"}],
                "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
                "allocatable": {"cpu": "7800m", "memory": "31Gi", "pods": "110", "ephemeral-storage": "95Gi"},
                "addresses": [{"type": "InternalIP", "address": format!("10.0.{}.{}", n / 256, n % 256)}]}}))
        .collect();
    api.set_objects("/api/v1/nodes", nodes);
    let deployments = PODS / 10;
    let pods = (0..PODS)
        .map(|p| {
            let d = p % deployments;
            let c = [(format!("app-{d}"), "registry.example/app:1".to_owned(), format!("{p:012x}a")), ("sidecar".to_owned(), "envoy:1.30".to_owned(), format!("{p:012x}b"))];
            let refs: Vec<(&str, &str, &str)> = c.iter().map(|(a, b, x)| (a.as_str(), b.as_str(), x.as_str())).collect();
            let mut pod = kube_api::pod(&format!("ns-{}", d % 50), &format!("app-{d}-{p}"), &format!("uid-{p}"), &format!("node-{}", p % NODES), &refs);
            pod["metadata"]["annotations"] = json!({"eks.tke.cloud.tencent.com/cpu": "1", "kubectl.kubernetes.io/restartedAt": "x"});
            pod
        })
        .collect();
    api.set_pods(pods);
    let rs = (0..deployments)
        .map(|d| json!({"kind": "ReplicaSet", "apiVersion": "apps/v1", "metadata": {"name": format!("app-{d}-rs"), "namespace": format!("ns-{}", d % 50),
            "resourceVersion": "1", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("app-{d}"), "uid": format!("d{d}"), "controller": true}]},
            "spec": {"selector": {}}}))
        .collect();
    api.set_objects("/apis/apps/v1/replicasets", rs);
    let deps = (0..deployments)
        .map(|d| json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": format!("app-{d}"), "namespace": format!("ns-{}", d % 50), "resourceVersion": "1"},
            "spec": {"replicas": 10, "selector": {}, "template": {}}, "status": {"availableReplicas": 10}}))
        .collect();
    api.set_objects("/apis/apps/v1/deployments", deps);

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_telltale"))
        .args([
            "collector",
            "--cluster-state",
            "--interval",
            "1s",
            "--node-name",
            "node-0",
            "--listen",
            &listen,
        ])
        .args(["--sys-root", dir.path().to_str().unwrap()]) // no cgroups: the state is what is measured
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = Proc(child);
    let url = format!("http://{listen}/metrics");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut text = String::new();
    while Instant::now() < deadline {
        if let Some(t) = try_get(&url) {
            text = t;
            if text
                .lines()
                .filter(|l| l.starts_with("kube_pod_info{"))
                .count()
                == PODS
                && text
                    .lines()
                    .filter(|l| l.starts_with("kube_node_info{"))
                    .count()
                    == NODES
            {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("kube_pod_info{"))
            .count(),
        PODS,
        "every pod exported"
    );
    let pid = c.0.id();
    let (cpu0, cycles0) = (
        process_cpu(pid),
        metric(&text, "telltale_collector_cycles_total"),
    );
    std::thread::sleep(Duration::from_secs(20));
    let text = get(&url);
    let (cpu1, cycles1) = (
        process_cpu(pid),
        metric(&text, "telltale_collector_cycles_total"),
    );
    let per_cycle = (cpu1 - cpu0).as_secs_f64() / (cycles1 - cycles0);
    let series = metric(&text, "telltale_collector_series");
    let bytes = metric(&text, "telltale_collector_exposition_bytes");
    let encode = metric(
        &text,
        "telltale_collector_cycle_duration_seconds_sum{phase=\"encode\"}",
    ) / metric(
        &text,
        "telltale_collector_cycle_duration_seconds_count{phase=\"encode\"}",
    );
    println!(
        "cluster-state ({PODS} pods, {NODES} nodes, {deployments} deployments and replicasets): RSS {:.1} MiB (target <= 150); CPU per cycle {:.1} ms over {} cycles (target <= 100); {series} series, exposition {:.1} MB, encode {:.1} ms (mean wall time)",
        rss_mib(pid),
        per_cycle * 1e3,
        cycles1 - cycles0,
        bytes / 1e6,
        encode * 1e3
    );
}
