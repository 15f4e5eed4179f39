//! The aggregator with `--object-store` on a real S3-compatible server (moto_server),
//! black-box: files land in the bucket, a machine lost with its disk comes back whole on
//! an empty data directory, and a bucket that stops answering loses nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::s3::S3;
use common::{eventually, get, sample, spawn_cmd, urlencode, Running};
use telltale_model::remote::{TimeSeries, WriteRequest};

const DAY: i64 = 86_400_000;

/// `telltale aggregator` on `data`, its files kept in `prefix` of the bucket.
fn aggregator(s3: &S3, data: &Path, prefix: &str, extra: &[&str]) -> Running {
    let mut c = s3.telltale();
    c.args(["aggregator", "--data-dir"])
        .arg(data)
        .args(["--flush-interval", "1s", "--object-store"])
        .arg(format!("s3://{}/{prefix}", s3.bucket))
        .args(extra);
    spawn_cmd(c)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Writes `series` counters of `points` samples a minute apart ending at `end` (ms).
fn write(a: &Running, name: &str, series: usize, points: i64, end: i64) {
    let ts: Vec<TimeSeries> = (0..series)
        .map(|i| {
            let pod = format!("pod-{i}");
            let samples: Vec<(i64, f64)> = (0..points)
                .map(|k| {
                    (
                        end - (points - 1 - k) * 60_000,
                        (i as i64 * 1000 + k) as f64,
                    )
                })
                .collect();
            TimeSeries::new(&[("__name__", name), ("pod", &pod)], &samples)
        })
        .collect();
    let body = WriteRequest { timeseries: ts }.encode_body();
    let r = ureq::post(&a.url("/api/v1/write"))
        .set("Content-Type", "application/x-protobuf")
        .set("Content-Encoding", "snappy")
        .set("X-Prometheus-Remote-Write-Version", "0.1.0")
        .send_bytes(&body)
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// The answers a user would compare: instant and range queries at fixed times.
fn answers(a: &Running, at: i64) -> Vec<String> {
    let t = at as f64 / 1000.0;
    let mut out = Vec::new();
    for q in [
        "count_over_time(steer_total[3d])",
        "sum(steer_total)",
        "sum by (pod) (increase(steer_total[1d]))",
    ] {
        let (code, body) = get(&a.url(&format!("/api/v1/query?query={}&time={t}", urlencode(q))));
        assert_eq!(code, 200, "{q}: {body}");
        out.push(body);
    }
    let (code, body) = get(&a.url(&format!(
        "/api/v1/query_range?query={}&start={}&end={t}&step=3600",
        urlencode("sum(steer_total)"),
        t - 2.0 * 86_400.0
    )));
    assert_eq!(code, 200, "{body}");
    out.push(body);
    out
}

/// Samples the WAL in `data` would replay.
fn in_wal(data: &Path) -> usize {
    let mut n = 0;
    telltale_aggregator::store::wal::replay(
        &telltale_aggregator::store::layout::wal_dir(data),
        |body| {
            let req = WriteRequest::decode_body(body).unwrap();
            n += req
                .timeseries
                .iter()
                .map(|t| t.samples.len())
                .sum::<usize>();
        },
    )
    .unwrap();
    n
}

fn metric(a: &Running, name: &str) -> Option<f64> {
    sample(&get(&a.url("/metrics")).1, name)
}

/// Flushed files land in the bucket under the day layout, the WAL lets go of their
/// samples only then, and an aggregator on an empty directory (the machine and its disk
/// lost, the first one killed without a flush) answers exactly what the first did.
#[test]
fn a_lost_machine_comes_back_whole_from_the_bucket() {
    let Some(s3) = S3::start("telltale") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let mut a = aggregator(&s3, &first, "cluster-a", &[]);
    let end = now_ms() / 60_000 * 60_000;
    // Yesterday and today: two day partitions.
    write(&a, "steer_total", 20, 120, end - DAY);
    write(&a, "steer_total", 20, 120, end);
    let days = [
        telltale_model::calendar::day_name((end - DAY) / DAY),
        telltale_model::calendar::day_name(end / DAY),
    ];
    let uploaded = eventually(Duration::from_secs(60), || {
        let keys = s3.keys("cluster-a/");
        let have = days.iter().all(|d| {
            keys.iter()
                .any(|k| k.starts_with(&format!("cluster-a/data/day={d}/")))
        });
        (have && in_wal(&first) == 0).then_some(keys)
    })
    .expect("the day files in the bucket and the WAL retired");
    assert!(
        uploaded
            .iter()
            .all(|k| k.starts_with("cluster-a/data/") || k.starts_with("cluster-a/billing/")),
        "{uploaded:?}"
    );
    assert!(uploaded
        .iter()
        .all(|k| !k.contains("/wal/") && !k.contains(".tmp")));
    assert_eq!(metric(&a, "telltale_aggregator_object_store_up"), Some(1.0));
    let want = answers(&a, end);
    assert!(want[0].contains("\"240\""), "{}", want[0]);

    // The machine is lost: killed, its disk gone.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    std::fs::remove_dir_all(&first).unwrap();

    let second = dir.path().join("second");
    let mut b = aggregator(&s3, &second, "cluster-a", &[]);
    assert_eq!(answers(&b, end), want);
    assert!(
        b.log()
            .iter()
            .any(|l| l.contains("restored files from the object store")),
        "{:?}",
        b.log()
    );
    // Another prefix is another store: nothing there.
    let mut other = aggregator(&s3, &dir.path().join("other"), "cluster-b", &[]);
    let (_, body) = get(&other.url("/api/v1/query?query=count(steer_total)"));
    assert!(body.contains("\"result\":[]"), "{body}");
    other.terminate(Duration::from_secs(30));
    b.terminate(Duration::from_secs(30));
}

/// The bucket stops answering (the server is stopped): ingest goes on, the files stay on
/// local disk and the WAL keeps their samples, the gauge says the bucket is down; once it
/// answers again the files go up and the WAL lets go. Nothing acknowledged is lost: an
/// aggregator on an empty directory then answers every sample.
#[test]
fn a_bucket_that_stops_answering_loses_nothing() {
    let Some(s3) = S3::start("telltale") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let quick = [
        "--object-store-option",
        "timeout=2s",
        "--object-store-option",
        "connect_timeout=1s",
    ];
    let mut a = aggregator(&s3, &first, "edge", &quick);
    let end = now_ms() / 60_000 * 60_000;
    write(&a, "steer_total", 5, 10, end - 3_600_000);
    eventually(Duration::from_secs(60), || {
        (metric(&a, "telltale_aggregator_object_store_uploaded_files_total")? >= 1.0
            && in_wal(&first) == 0)
            .then_some(())
    })
    .expect("the first flush uploaded");

    s3.pause(true);
    let before: BTreeSet<String> = s3_files(&first);
    write(&a, "steer_total", 5, 50, end);
    // Flushed to local disk, not in the bucket: the WAL keeps the samples.
    eventually(Duration::from_secs(60), || {
        (s3_files(&first) != before
            && metric(&a, "telltale_aggregator_object_store_up") == Some(0.0))
        .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "a flush while the bucket is down, and the gauge says so: files {:?} then {:?}, up {:?}\n{}",
            before,
            s3_files(&first),
            metric(&a, "telltale_aggregator_object_store_up"),
            a.log().join("\n")
        )
    });
    assert_eq!(in_wal(&first), 5 * 50);
    assert!(
        a.log()
            .iter()
            .any(|l| l.contains("the object store cannot be reached")),
        "{:?}",
        a.log()
    );

    s3.pause(false);
    eventually(Duration::from_secs(120), || {
        (metric(&a, "telltale_aggregator_object_store_up") == Some(1.0)
            && metric(&a, "telltale_aggregator_object_store_pending_files") == Some(0.0)
            && in_wal(&first) == 0)
            .then_some(())
    })
    .expect("uploaded once the bucket answers, and the WAL retired");
    let keys = s3.keys("edge/data/");
    for f in s3_files(&first) {
        assert!(keys.contains(&format!("edge/{f}")), "{f} not in {keys:?}");
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();

    let b = aggregator(&s3, &dir.path().join("second"), "edge", &[]);
    let (_, body) = get(&b.url(&format!(
        "/api/v1/query?query={}&time={}",
        urlencode("sum(count_over_time(steer_total[2d]))"),
        end as f64 / 1000.0
    )));
    assert!(body.contains("\"300\""), "{body}");
}

/// The Parquet files under `data/` of a data directory, as keys.
fn s3_files(data: &Path) -> BTreeSet<String> {
    telltale_aggregator::store::layout::mirrored_files(data)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("data/"))
        .collect()
}
