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
use common::{eventually, get, instant_value, now_ms, remote_write, urlencode, Running};
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
    instant_value(a, "sum(count_over_time(steer_total[1h]))", t)
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

/// A pseudo-random value, so the files are as large as real counters' would be uneven.
fn noise(series: u64, k: u64) -> f64 {
    let x = (series * 1_000_003 + k).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The value of the first sample of `name` on `a`'s `/metrics`.
fn own_metric(a: &Running, name: &str) -> f64 {
    common::sample(&get(&a.url("/metrics")).1, name).unwrap_or(0.0)
}

#[test]
fn a_query_node_reads_only_the_pages_a_query_needs_and_answers_as_local_disk() {
    let Some(s3) = S3::start("telltale") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut ingester = start(
        &s3,
        &dir.path().join("ingester"),
        &["--flush-interval", "1h", "--flush-samples", "100000000"],
    );
    // 1,000 series of 1,000 noisy samples, 15 s apart, ending an hour ago: a file of
    // several of the page cache's 1 MiB blocks.
    let end = now_ms() / 1000 * 1000 - 3_600_000;
    let start_ms = end - 999 * 15_000;
    for chunk in 0..10u64 {
        let series: Vec<TimeSeries> = (chunk * 100..chunk * 100 + 100)
            .map(|i| {
                let pod = format!("pod-{i}");
                let samples: Vec<(i64, f64)> = (0..1000u64)
                    .map(|k| (start_ms + k as i64 * 15_000, noise(i, k)))
                    .collect();
                TimeSeries::new(&[("__name__", "noise"), ("pod", &pod)], &samples)
            })
            .collect();
        let body = WriteRequest { timeseries: series }.encode_body();
        assert_eq!(remote_write(&ingester.url("/api/v1/write"), &body).0, 204);
    }
    // SIGTERM flushes the head and uploads the files before exiting.
    let status = ingester.terminate(Duration::from_secs(120)).expect("exits");
    assert!(status.success(), "{status}");
    let stored: u64 = walk(&dir.path().join("ingester/data"))
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert!(
        stored > 4 << 20,
        "{stored} bytes: too small to tell pages apart"
    );
    let ingester = start(&s3, &dir.path().join("ingester"), &[]);

    let node_dir = dir.path().join("node");
    let node = start(&s3, &node_dir, &["--read-only"]);
    // The node holds placeholders, not the files.
    let local = walk(&node_dir.join("data"));
    assert!(!local.is_empty());
    for p in &local {
        let head = std::fs::read(p).unwrap();
        assert!(
            head.starts_with(b"telltale remote object\n"),
            "{}",
            p.display()
        );
    }

    let range = |q: &str| {
        format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=60",
            urlencode(q),
            start_ms / 1000,
            end / 1000
        )
    };
    let one = range("noise{pod=\"pod-417\"}");
    let (code, body) = get(&node.url(&one));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, get(&ingester.url(&one)).1);
    assert!(body.contains("pod-417"), "{body}");
    let read = own_metric(&node, "telltale_aggregator_object_store_read_bytes_total");
    eprintln!("one series of 1,000: read {read} of {stored} bytes");
    assert!(read > 0.0);
    assert!(
        read < stored as f64 / 2.0,
        "one series of 1,000 read {read} of {stored} bytes"
    );

    // Asked again, it comes from the page cache.
    let misses = own_metric(&node, "telltale_aggregator_object_store_cache_misses_total");
    assert_eq!(get(&node.url(&one)).1, body);
    assert_eq!(
        own_metric(&node, "telltale_aggregator_object_store_read_bytes_total"),
        read
    );
    assert_eq!(
        own_metric(&node, "telltale_aggregator_object_store_cache_misses_total"),
        misses
    );
    assert!(own_metric(&node, "telltale_aggregator_object_store_cache_hits_total") > 0.0);

    // Queries over every series answer as local disk does, with the cache on disk and
    // with none.
    let bare = start(
        &s3,
        &dir.path().join("bare"),
        &["--read-only", "--cache-max-bytes", "0"],
    );
    for q in [
        "sum(rate(noise[5m]))",
        "max by (pod) (max_over_time(noise[30m]))",
        "count(noise > 0.5)",
    ] {
        let want = get(&ingester.url(&range(q))).1;
        assert!(want.contains("\"values\""), "{q}: {want}");
        assert_eq!(get(&node.url(&range(q))).1, want, "{q}");
        assert_eq!(
            get(&bare.url(&range(q))).1,
            want,
            "{q} without a disk cache"
        );
    }
    let cached = own_metric(&node, "telltale_aggregator_object_store_cache_bytes");
    assert!(
        cached > 0.0 && cached <= 4.0 * (1u64 << 30) as f64,
        "{cached}"
    );
    assert_eq!(
        own_metric(&bare, "telltale_aggregator_object_store_cache_bytes"),
        0.0
    );
}

/// Every file under `dir`, hidden ones left out.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
