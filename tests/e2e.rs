//! The whole pipeline as real processes: an aggregator, alerting, and two collectors (one
//! reading a fixture node with `--cluster-state` against the stand-in Kubernetes API, one
//! reading this machine), a real SMTP server (aiosmtpd, STARTTLS and AUTH) and Prometheus
//! 2.42 scraping both collectors. A policy fires and its email arrives; the bill of the
//! finished test pods is exact; a SIGKILL of the aggregator loses nothing, the collectors'
//! queues filling the outage; Prometheus and the aggregator agree.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::cluster::{self, finished_pod, NODE};
use common::kube_api::FakeApi;
use common::peers::{self, Smtp};
use common::{
    eventually, free_port, get, now_seconds, spawn, spawn_cmd, spawn_on, telltale, urlencode,
};
use common::{Prometheus, Running};
use serde_json::Value;
use telltale_collector::fixture::{Driver, Node, Version};

const WAIT: Duration = Duration::from_secs(60);

/// An instant query's `result` from any Prometheus API (empty while it cannot answer).
fn query(base: &str, q: &str, time: f64) -> Vec<Value> {
    let url = format!("{base}/api/v1/query?query={}&time={time}", urlencode(q));
    common::try_get(&url)
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

/// `result` as label `by` → value.
fn by(result: &[Value], label: &str) -> BTreeMap<String, f64> {
    result
        .iter()
        .map(|r| {
            (
                r["metric"][label].as_str().unwrap_or_default().to_owned(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// A range vector's samples by node: (seconds, value).
fn raw(base: &str, q: &str, time: f64) -> BTreeMap<String, Vec<(f64, f64)>> {
    query(base, q, time)
        .iter()
        .map(|r| {
            let points = r["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_f64().unwrap(),
                        p[1].as_str().unwrap().parse().unwrap(),
                    )
                })
                .collect();
            (
                r["metric"]["node"].as_str().unwrap_or_default().to_owned(),
                points,
            )
        })
        .collect()
}

fn aggregator(dir: &Path, listen: &str) -> Running {
    let mut cmd = telltale();
    cmd.arg("aggregator")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--prices")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prices.yml"));
    spawn_on(cmd, listen)
}

#[test]
fn collectors_to_aggregator_to_alarm_email_bill_and_prometheus() {
    let d = tempfile::tempdir().unwrap();
    let Some(certs) = peers::certs(d.path()) else {
        return;
    };
    let listen = format!("127.0.0.1:{}", free_port());
    let mut agg = aggregator(d.path(), &listen);
    let base = format!("http://{listen}");
    let write = format!("{base}/api/v1/write");

    // Finished pods of `batch` on node-2, seen by the cluster-state collector: three of
    // 2 cores / 4 GiB for 240 s and one with nothing set (the price table's default pod,
    // 1 core / 2 GiB) for 30 s.
    let t0 = now_seconds() as i64;
    let mut batch: Vec<Value> = (0..3)
        .map(|i| {
            finished_pod(
                "batch",
                &format!("job-{i}"),
                Some(("2", "4Gi")),
                t0 - 300,
                t0 - 60,
            )
        })
        .collect();
    batch.push(finished_pod("batch", "tiny", None, t0 - 100, t0 - 70));
    let node = Node::new(d.path(), Version::V2, Driver::Systemd).unwrap();
    let api = FakeApi::start();
    cluster::populate(&api, &node, batch);
    let kubeconfig = api.kubeconfig(d.path());
    let node1 = cluster::spawn_collector(
        &node,
        &kubeconfig,
        &[
            "--cluster-state",
            "--interval",
            "1s",
            "--remote-write",
            &write,
            "--buffer-dir",
            d.path().join("buffer-1").to_str().unwrap(),
        ],
    );
    let node2 = spawn(&[
        "collector",
        "--no-kube",
        "--node-name",
        "node-2",
        "--interval",
        "1s",
        "--remote-write",
        &write,
        "--buffer-dir",
        d.path().join("buffer-2").to_str().unwrap(),
    ]);
    let Some(prom) = Prometheus::start(
        d.path(),
        |_| {
            format!(
                "global: {{scrape_interval: 1s}}\nscrape_configs:\n- job_name: telltale-collector\n  honor_labels: true\n  static_configs: [{{targets: ['{}', '{}']}}]\n",
                node1.addr, node2.addr
            )
        },
        &[],
    ) else {
        return;
    };

    // A policy on node-1's memory, mailed over STARTTLS with AUTH.
    let smtp = Smtp::start(
        0,
        "starttls",
        Some(&certs),
        Some("alerts:s3cret"),
        &d.path().join("mail"),
    );
    let policies = d.path().join("policies.yml");
    std::fs::write(
        &policies,
        format!(
            "receivers:\n  - name: mail\n    email: {{ to: [ops@example.com] }}\npolicies:\n  - name: node-memory-used\n    metric: node_memory_utilization\n    scope: {{ node: {NODE} }}\n    statistic: last\n    period: 1s\n    condition: \"> 0.01\"\n    consecutive: 2\n    repeat: once\n    receivers: [mail]\n"
        ),
    )
    .unwrap();
    std::fs::write(d.path().join("password"), "s3cret\n").unwrap();
    let mut cmd = telltale();
    cmd.arg("alerting")
        .arg("--policies")
        .arg(&policies)
        .args(["--query-url", &base, "--remote-write-url", &write])
        .args([
            "--smtp-url",
            &format!("smtp://alerts@localhost:{}?tls=starttls", smtp.port),
        ])
        .arg("--smtp-password-file")
        .arg(d.path().join("password"))
        .arg("--state-dir")
        .arg(d.path().join("alerting"))
        .env("SSL_CERT_FILE", &certs.ca);
    let _alerting = spawn_cmd(cmd);

    // The alarm email.
    let mail =
        eventually(WAIT, || smtp.mails().into_iter().next()).expect("the alarm email arrives");
    let subject = mail["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("[FIRING] node-memory-used") && subject.contains(NODE),
        "{subject}"
    );
    assert_eq!(mail["auth_user"], "alerts");
    assert_eq!(mail["tls"], true);

    // The bill of the finished pods, exactly.
    let bill = eventually(WAIT, || {
        let (status, body) = get(&format!(
            "{base}/api/v1/billing?start={}&end={t0}&by=namespace",
            t0 - 3600
        ));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == "batch" && g["cpu_core_seconds"] == "1470")
            .cloned()
    })
    .expect("the batch pods billed");
    // 3 x 240 s x (2 x 0.000004976 + 4 x 0.000002073) + 30 s x (0.000004976 + 2 x 0.000002073)
    assert_eq!(bill["cost_exact"], "0.01340934", "{bill}");
    assert_eq!(bill["memory_gib_seconds"], "2940", "{bill}");

    // Prometheus (scraping) and the aggregator (fed by remote write) agree.
    let agree = [
        ("sum by (node) (node_memory_MemTotal_bytes)", "node"),
        ("count by (node) (node_cpu_seconds_total)", "node"),
        (
            "sum by (namespace) (kube_pod_container_resource_requests{resource=\"cpu\"})",
            "namespace",
        ),
    ];
    let compare = |t: f64| -> Vec<(BTreeMap<String, f64>, BTreeMap<String, f64>)> {
        agree
            .iter()
            .map(|(q, label)| {
                (
                    by(&query(&base, q, t), label),
                    by(&query(&prom.url, q, t), label),
                )
            })
            .collect()
    };
    eventually(WAIT, || {
        compare(now_seconds() - 3.0)
            .iter()
            .all(|(ours, theirs)| ours.len() >= 2 && ours == theirs)
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "Prometheus and the aggregator disagree on {agree:?}:\n{:#?}",
            compare(now_seconds() - 3.0)
        )
    });

    // SIGKILL the aggregator: what it accepted survives, and what the collectors collected
    // while it was down arrives from their queues once it is back.
    let count = |t: f64| by(&query(&base, "count_over_time(node_load1[1h])", t), "node");
    let before_kill = now_seconds().floor() - 1.5;
    // Until every sample up to then has been shipped (the count stops moving).
    let accepted = eventually(WAIT, || {
        let a = count(before_kill);
        std::thread::sleep(Duration::from_millis(500));
        (a.len() == 2 && count(before_kill) == a).then_some(a)
    })
    .expect("samples of both nodes");
    agg.child.kill().unwrap();
    agg.child.wait().unwrap();
    let killed_at = now_seconds().floor();
    std::thread::sleep(Duration::from_secs(5));
    let _agg = aggregator(d.path(), &listen);
    let after = count(before_kill);
    for (node, n) in &accepted {
        assert!(
            after.get(node).is_some_and(|a| a >= n),
            "nothing accepted is lost: {accepted:?} then {after:?}"
        );
    }
    // Every snapshot taken around the outage arrives: over the 12 s around it, each node's
    // own cycle counter (shipped in the same snapshots as its samples) goes up by one from
    // sample to sample, from the window's start to its end, and node_load1 has a sample
    // at each of those times. (A cycle the loaded machine skipped is in neither.)
    let end = killed_at + 8.5;
    let check = || -> Result<(), String> {
        let cycles = raw(&base, "telltale_collector_cycles_total[12s]", end);
        let load = raw(&base, "node_load1[12s]", end);
        if cycles.len() != 2 {
            return Err(format!("cycles of {:?}", cycles.keys()));
        }
        for (node, c) in &cycles {
            let gaps = c.windows(2).any(|w| w[1].1 != w[0].1 + 1.0);
            let edges = c.first().is_some_and(|f| f.0 <= end - 10.0)
                && c.last().is_some_and(|l| l.0 >= end - 2.0);
            let times: Vec<f64> = c.iter().map(|p| p.0).collect();
            let load_times: Vec<f64> = load
                .get(node)
                .map(|l| l.iter().map(|p| p.0).collect())
                .unwrap_or_default();
            if gaps || !edges || times != load_times {
                return Err(format!(
                    "{node}: cycles {c:?}, node_load1 at {load_times:?}"
                ));
            }
        }
        Ok(())
    };
    let mut last = Ok(());
    eventually(WAIT, || {
        last = check();
        (now_seconds() > end + 2.0 && last.is_ok()).then_some(())
    })
    .unwrap_or_else(|| panic!("the outage's samples: {last:?}"));
}
