//! A query node (`telltale aggregator --read-only`) over a real S3-compatible server
//! (moto_server), black-box: it answers from the files the ingesting aggregator put in
//! the bucket, plus that aggregator's newest samples over remote read (`--ingesters`),
//! each sample once; it takes no writes; it keeps answering from the bucket when the
//! ingester is gone.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::s3::S3;
use common::{eventually, get, now_ms, remote_write, urlencode, Running};
use telltale_model::remote::{TimeSeries, WriteRequest};

fn start(s3: &S3, data: &Path, extra: &[&str]) -> Running {
    s3.aggregator(data, "site", extra)
}

/// One sample of each of 10 series (`pod-0`..`pod-9`) at every time of `times`.
fn write(a: &Running, times: &[i64]) -> u16 {
    let series: Vec<TimeSeries> = (0..10)
        .map(|i| {
            let pod = format!("pod-{i}");
            let samples: Vec<(i64, f64)> = times.iter().map(|&t| (t, (t / 1000) as f64)).collect();
            TimeSeries::new(&[("__name__", "steer_total"), ("pod", &pod)], &samples)
        })
        .collect();
    let body = WriteRequest { timeseries: series }.encode_body();
    remote_write(&a.url("/api/v1/write"), &body).0
}

/// `sum(count_over_time(steer_total[1h]))` at `t` (ms), if there is an answer.
fn count(a: &Running, t: i64) -> Option<f64> {
    let (_, body) = get(&a.url(&format!(
        "/api/v1/query?query={}&time={}",
        urlencode("sum(count_over_time(steer_total[1h]))"),
        t as f64 / 1000.0
    )));
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn a_query_node_answers_from_the_bucket_and_the_ingesters_newest_samples() {
    let Some(s3) = S3::start("telltale") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Flushes when its head holds 200 samples (the first write), else not for an hour:
    // what comes after stays in its head, out of the bucket.
    let flags = ["--flush-interval", "1h", "--flush-samples", "200"];
    let mut ingester = start(&s3, &dir.path().join("ingester"), &flags);
    // 20 samples a series, 15 s apart, ten minutes ago.
    let base = now_ms() / 1000 * 1000 - 600_000;
    let older: Vec<i64> = (0..20).map(|k| base + k * 15_000).collect();
    assert_eq!(write(&ingester, &older), 204);
    eventually(Duration::from_secs(60), || {
        (!s3.keys("site/data/").is_empty()).then_some(())
    })
    .expect("the ingester's files in the bucket");

    let node_dir = dir.path().join("node");
    let ingesters = ingester.url("");
    let node = start(
        &s3,
        &node_dir,
        &[
            "--read-only",
            "--refresh-interval",
            "1s",
            "--ingesters",
            &ingesters,
        ],
    );
    assert_eq!(write(&node, &[base]), 405);
    // From its files and the ingester alike, each sample counted once.
    let now = now_ms();
    assert_eq!(count(&node, now), Some(200.0));

    // Written a second ago: the ingester holds them, the bucket does not yet.
    let fresh = now_ms() / 1000 * 1000 - 1000;
    assert_eq!(write(&ingester, &[fresh]), 204);
    let at = fresh + 500;
    assert_eq!(count(&node, at), Some(210.0));
    for q in [
        "steer_total",
        "sum by (pod) (rate(steer_total[10m]))",
        "max_over_time(steer_total[1h])",
    ] {
        let path = format!(
            "/api/v1/query?query={}&time={}",
            urlencode(q),
            at as f64 / 1000.0
        );
        assert_eq!(get(&node.url(&path)).1, get(&ingester.url(&path)).1, "{q}");
    }

    // Without the ingester's answer the fresh samples are not there yet.
    let alone = start(&s3, &dir.path().join("alone"), &["--read-only"]);
    assert_eq!(count(&alone, at), Some(200.0));

    // The ingester stops (SIGTERM: it flushes and uploads its head): the node answers
    // from the bucket alone.
    let status = ingester.terminate(Duration::from_secs(60)).expect("exits");
    assert!(status.success(), "{status}");
    let from_bucket = eventually(Duration::from_secs(30), || {
        (count(&node, at) == Some(210.0)).then_some(())
    });
    assert!(from_bucket.is_some(), "{:?}", count(&node, at));
    // A query node writes nothing to the bucket.
    assert!(s3
        .keys("site/")
        .iter()
        .all(|k| k.starts_with("site/data/") || k.starts_with("site/billing/")));
}
