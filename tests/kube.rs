//! Black-box tests of the collector's Kubernetes names, against a stand-in API server that
//! speaks the API's list and watch formats (tests/common/kube_api.rs), so the real kube
//! client runs end to end.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::cluster;
use common::kube_api::{pod, FakeApi};
use common::{eventually, get, Running};
use telltale_collector::fixture::{self, container_id, Driver, Node, Runtime, Version};

/// A fixture node with 4 pods (3, 3, 2 and 2 containers; each pod's first container is its
/// sandbox), and the API's view of them: pod p is `shop/web-p` with containers `app1`...
fn cluster() -> (tempfile::TempDir, Node, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new(dir.path(), Version::V2, Driver::Systemd).unwrap();
    fixture::populate(&node, 4, 10, Runtime::Containerd).unwrap();
    (dir, node, cluster::web_pods())
}

fn start(node: &Node, kubeconfig: &std::path::Path) -> Running {
    cluster::spawn_collector(node, kubeconfig, &["--interval", "200ms"])
}

/// The `container_memory_usage_bytes` line of the cgroup whose `name` (runtime id) is `id`.
fn usage_line(c: &Running, id: &str) -> Option<String> {
    let text = get(&c.url("/metrics")).1;
    let want = format!("name=\"{id}\"");
    text.lines()
        .find(|l| l.starts_with("container_memory_usage_bytes{") && l.contains(&want))
        .map(str::to_owned)
}

fn wait_for(c: &Running, id: &str, needle: &str) -> Option<String> {
    eventually(Duration::from_secs(20), || {
        usage_line(c, id).filter(|l| l.contains(needle))
    })
}

#[test]
fn names_are_joined_onto_cgroup_series() {
    let (d, node, pods) = cluster();
    let api = FakeApi::start();
    api.set_pods(pods);
    let c = start(&node, &api.kubeconfig(d.path()));
    let app = wait_for(&c, &container_id(1), "namespace=\"shop\"").expect("names never arrived");
    assert!(
        app.contains(r#"container="app1",id="#)
            && app.contains(r#"image="registry.example/app:1.1""#)
            && app.contains(r#"pod="web-0""#),
        "{app}"
    );
    let sandbox = usage_line(&c, &container_id(0)).unwrap();
    assert!(
        sandbox.contains(r#"container="POD""#) && sandbox.contains(r#"pod="web-0""#),
        "{sandbox}"
    );
    let text = get(&c.url("/metrics")).1;
    let pod_level = text
        .lines()
        .find(|l| {
            l.starts_with("container_memory_usage_bytes{")
                && l.contains("name=\"\"")
                && l.contains("pod=\"web-2\"")
        })
        .expect("pod-level series named");
    assert!(
        pod_level.contains(r#"container="",id="/kubepods.slice/"#),
        "{pod_level}"
    );
    let net = text.lines().find(|l| {
        l.starts_with("container_network_receive_bytes_total{") && l.contains("pod=\"web-3\"")
    });
    assert!(
        net.is_some_and(|l| l.contains("namespace=\"shop\"") && l.contains("interface=\"eth0\""))
    );
    // The client asked for this node's pods only, then watched from the list's version.
    let reqs = api.requests();
    assert!(
        reqs.iter()
            .any(|r| r.contains("fieldSelector=spec.nodeName=node-1") && !r.contains("watch=")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.contains("watch=true") && r.contains("resourceVersion=")),
        "{reqs:?}"
    );
    assert_eq!(get(&c.url("/readyz")), (200, "ready\n".into()));
}

#[test]
fn watch_events_and_a_410_relist_bring_new_names() {
    let (d, node, mut pods) = cluster();
    let api = FakeApi::start();
    let last = pods.pop().unwrap();
    let third = pods.pop().unwrap();
    api.set_pods(pods);
    let c = start(&node, &api.kubeconfig(d.path()));
    wait_for(&c, &container_id(1), "pod=\"web-0\"").expect("listed names");
    assert!(
        usage_line(&c, &container_id(7)).is_some_and(|l| l.contains("pod=\"\"")),
        "web-3 is not known yet"
    );
    // A pod arriving on the watch stream.
    eventually(Duration::from_secs(10), || {
        api.requests()
            .iter()
            .any(|r| r.contains("watch=true"))
            .then_some(())
    })
    .unwrap();
    api.bookmark();
    api.event("ADDED", third);
    wait_for(&c, &container_id(7), "pod=\"web-2\"").expect("ADDED names");
    // The watch expires (410 Gone); the client lists again and finds a pod it never saw.
    api.set_pods(vec![]);
    api.event("ADDED", last.clone());
    let lists_before = api
        .requests()
        .iter()
        .filter(|r| !r.contains("watch="))
        .count();
    api.expire();
    let relisted = eventually(Duration::from_secs(20), || {
        (api.requests()
            .iter()
            .filter(|r| !r.contains("watch="))
            .count()
            > lists_before)
            .then_some(())
    });
    assert!(
        relisted.is_some(),
        "no list after 410: {:?}",
        api.requests()
    );
    wait_for(&c, &container_id(9), "pod=\"web-3\"").expect("names after relist");
    // A pod deleted from the API: its cgroups keep the names for the retention cycles (the
    // cgroup may outlive the object briefly), then lose them.
    api.event("DELETED", last);
    wait_for(&c, &container_id(9), "pod=\"\"").expect("names gone after DELETED");
}

#[test]
fn api_server_refusing_then_back() {
    let (d, node, pods) = cluster();
    let api = FakeApi::start();
    api.set_pods(pods);
    // 403: the ClusterRole is missing. (503 is retried inside kube-client before the
    // watcher sees it; the state machine is the same once it does.)
    api.set_failing(Some(403));
    let mut c = start(&node, &api.kubeconfig(d.path()));
    let degraded = eventually(Duration::from_secs(20), || {
        let (code, body) = get(&c.url("/readyz"));
        (code == 200 && body.contains("degraded: kubernetes") && body.contains("403"))
            .then_some(body)
    });
    assert!(degraded.is_some(), "/readyz never said degraded");
    // Collection never stops: node and cgroup series are served, without names.
    let text = get(&c.url("/metrics")).1;
    assert!(text.contains("node_cpu_seconds_total{"));
    assert!(usage_line(&c, &container_id(1)).is_some_and(|l| l.contains("pod=\"\"")));
    api.set_failing(None);
    wait_for(&c, &container_id(1), "pod=\"web-0\"").expect("names after the API came back");
    let ready = eventually(Duration::from_secs(20), || {
        (get(&c.url("/readyz")).1 == "ready\n").then_some(())
    });
    assert!(ready.is_some());
    let logs = c.log();
    let degraded_lines = logs
        .iter()
        .filter(|l| l.contains("degraded: kubernetes"))
        .count();
    assert_eq!(degraded_lines, 1, "logged once per state change: {logs:#?}");
    assert!(logs
        .iter()
        .any(|l| l.contains("kubernetes: connected again")));
}

#[test]
fn without_a_configuration_the_collector_still_collects() {
    let (d, node, _) = cluster();
    let missing = d.path().join("no-such-kubeconfig");
    let c = start(&node, &missing);
    let body = eventually(Duration::from_secs(10), || {
        let (code, body) = get(&c.url("/readyz"));
        (code == 200).then_some(body)
    })
    .unwrap();
    assert!(
        body.contains("degraded: kubernetes") && body.contains("no-such-kubeconfig"),
        "{body}"
    );
    assert!(usage_line(&c, &container_id(1)).is_some());
}

#[test]
fn cluster_state_exports_every_pod_of_the_cluster() {
    let (d, node, mut pods) = cluster();
    let elsewhere = pod(
        "ci",
        "build-1",
        "uid-elsewhere",
        "node-2",
        &[("build", "golang:1.23", "feedbeef00")],
    );
    pods.push(elsewhere);
    let api = FakeApi::start();
    api.set_pods(pods);
    api.set_objects(
        "/api/v1/nodes",
        vec![serde_json::json!({"kind": "Node", "apiVersion": "v1", "metadata": {"name": "node-2", "resourceVersion": "5"},
            "status": {"conditions": [{"type": "Ready", "status": "False"}], "allocatable": {"cpu": "3800m"}}})],
    );
    api.set_objects(
        "/apis/apps/v1/deployments",
        vec![serde_json::json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "6"},
            "spec": {"replicas": 4, "selector": {}, "template": {}}, "status": {"availableReplicas": 4}})],
    );
    let c = cluster::spawn_collector(
        &node,
        &api.kubeconfig(d.path()),
        &[
            "--cluster-state",
            "--interval",
            "200ms",
            "--cluster",
            "prod",
        ],
    );
    let info = eventually(Duration::from_secs(20), || {
        let text = get(&c.url("/metrics")).1;
        text.contains(r#"pod="build-1""#).then_some(text)
    })
    .expect("kube_pod_info for the other node's pod");
    let id = r#"cluster="prod",namespace="ci",pod="build-1",uid="uid-elsewhere""#;
    for line in [
        format!(
            r#"kube_pod_info{{{id},node="node-2",host_ip="10.0.0.11",pod_ip="10.244.1.7",created_by_kind="ReplicaSet",created_by_name="build-1-rs"}} 1"#
        ),
        format!(r#"kube_pod_status_phase{{{id},phase="Running"}} 1"#),
        format!(
            r#"kube_pod_container_resource_requests{{{id},container="build",node="node-2",resource="cpu",unit="core"}} 0.1"#
        ),
        format!(
            r#"kube_pod_container_resource_requests{{{id},container="build",node="node-2",resource="memory",unit="byte"}} 134217728"#
        ),
        format!(r#"kube_pod_start_time{{{id}}} 1795428001"#),
    ] {
        assert!(info.lines().any(|l| l == line), "missing {line}");
    }
    let web = info
        .lines()
        .filter(|l| l.starts_with("kube_pod_info{") && l.contains("namespace=\"shop\""))
        .count();
    assert_eq!(web, 4, "every pod once");
    // This node's cgroups are still named.
    wait_for(&c, &container_id(1), "pod=\"web-0\"").expect("names");
}

#[test]
fn a_pod_that_lived_three_seconds_between_cycles_is_seen_once_then_goes() {
    let (d, node, pods) = cluster();
    let api = FakeApi::start();
    api.set_pods(pods);
    let c = cluster::spawn_collector(
        &node,
        &api.kubeconfig(d.path()),
        &["--cluster-state", "--interval", "1s"],
    );
    eventually(Duration::from_secs(20), || {
        get(&c.url("/metrics"))
            .1
            .contains(r#"pod="web-0""#)
            .then_some(())
    })
    .unwrap();
    eventually(Duration::from_secs(10), || {
        api.requests()
            .iter()
            .any(|r| r.contains("watch=true") && !r.contains("fieldSelector"))
            .then_some(())
    })
    .expect("cluster-wide pod watch");
    // Started at 10:00:01, its only container finished at 10:00:04; created and deleted
    // within one collection interval.
    let mut short = pod(
        "batch",
        "short-1",
        "uid-short",
        "node-2",
        &[("run", "busybox:1.36", "5a5a5a5a5a5a")],
    );
    api.event("ADDED", short.clone());
    short["status"]["phase"] = serde_json::json!("Succeeded");
    short["status"]["containerStatuses"][0]["state"] = serde_json::json!({"terminated": {"exitCode": 0, "startedAt": "2026-11-23T10:00:01Z", "finishedAt": "2026-11-23T10:00:04Z"}});
    short["metadata"]["deletionTimestamp"] = serde_json::json!("2026-11-23T10:00:05Z");
    api.event("MODIFIED", short.clone());
    api.event("DELETED", short);
    let id = r#"cluster="default",namespace="batch",pod="short-1",uid="uid-short""#;
    let (mut seen, mut gone_after_seen) = (0, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline && !gone_after_seen {
        let text = get(&c.url("/metrics")).1;
        let infos = text
            .lines()
            .filter(|l| l.starts_with("kube_pod_info{") && l.contains("pod=\"short-1\""))
            .count();
        assert!(infos <= 1, "one series per pod, got {infos}");
        if infos == 1 {
            seen += 1;
            for line in [
                format!("kube_pod_start_time{{{id}}} 1795428001"),
                format!("kube_pod_completion_time{{{id}}} 1795428004"),
                format!("kube_pod_deletion_timestamp{{{id}}} 1795428005"),
                format!(r#"kube_pod_status_phase{{{id},phase="Succeeded"}} 1"#),
            ] {
                assert!(text.lines().any(|l| l == line), "missing {line}");
            }
        } else if seen > 0 {
            gone_after_seen = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen > 0,
        "a pod that lived between two cycles was never exported"
    );
    assert!(
        gone_after_seen,
        "the departed pod must leave after its retention cycles"
    );
}

#[test]
fn api_server_unavailable_then_back() {
    let (d, node, pods) = cluster();
    let api = FakeApi::start();
    api.set_pods(pods);
    api.set_failing(Some(503));
    let c = start(&node, &api.kubeconfig(d.path()));
    // Collection goes on: cgroup series arrive without names and keep being refreshed.
    let first = eventually(Duration::from_secs(10), || {
        let text = get(&c.url("/metrics")).1;
        common::sample(&text, "telltale_collector_cycles_total")
            .filter(|_| usage_line(&c, &container_id(1)).is_some())
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let later = common::sample(
        &get(&c.url("/metrics")).1,
        "telltale_collector_cycles_total",
    )
    .unwrap();
    assert!(
        later > first,
        "collection must not stop while the API is unavailable"
    );
    assert!(usage_line(&c, &container_id(1)).is_some_and(|l| l.contains("pod=\"\"")));
    assert!(get(&c.url("/readyz")).1.contains("degraded: kubernetes"));
    api.set_failing(None);
    wait_for(&c, &container_id(1), "pod=\"web-0\"").expect("names after the API came back");
}
