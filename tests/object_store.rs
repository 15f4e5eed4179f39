//! The aggregator with `--object-store` on a real S3-compatible server (moto_server),
//! black-box: files land in the bucket, a machine lost with its disk comes back whole on
//! an empty data directory, and a bucket that stops answering loses nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::s3::S3;
use common::{eventually, get, instant_value, now_ms, remote_write, sample, urlencode, Running};
use telltale_model::remote::{TimeSeries, WriteRequest};

const DAY: i64 = 86_400_000;

/// `telltale aggregator` on `data`, its files kept in `prefix` of the bucket, flushing
/// every second.
fn aggregator(s3: &S3, data: &Path, prefix: &str, extra: &[&str]) -> Running {
    s3.aggregator(data, prefix, &[&["--flush-interval", "1s"], extra].concat())
}

/// Writes `series` counters of `points` samples `every` ms apart ending at `end` (ms):
/// (status, message).
fn try_write(a: &Running, series: usize, points: i64, every: i64, end: i64) -> (u16, String) {
    let ts: Vec<TimeSeries> = (0..series)
        .map(|i| {
            let pod = format!("pod-{i}");
            let samples: Vec<(i64, f64)> = (0..points)
                .map(|k| (end - (points - 1 - k) * every, (i as i64 * 1000 + k) as f64))
                .collect();
            TimeSeries::new(&[("__name__", "steer_total"), ("pod", &pod)], &samples)
        })
        .collect();
    remote_write(
        &a.url("/api/v1/write"),
        &WriteRequest { timeseries: ts }.encode_body(),
    )
}

/// [`try_write`] of samples a minute apart, which must be accepted.
fn write(a: &Running, series: usize, points: i64, end: i64) {
    let (code, body) = try_write(a, series, points, 60_000, end);
    assert_eq!(code, 204, "{body}");
}

/// The series the collector exports for one pod of `shop` that ran 600 s from `start`
/// (ms) with 2 cores and 4 GiB requested, every 15 s.
fn post_pod(a: &Running, start: i64) {
    let at: Vec<i64> = (0..=40).map(|i| start + i * 15_000).collect();
    let id = [
        ("cluster", "c1"),
        ("namespace", "shop"),
        ("pod", "api-0"),
        ("uid", "u-0"),
    ];
    let series = |name: &str, extra: &[(&str, &str)], v: f64, at: &[i64]| {
        let mut l: Vec<(&str, &str)> = vec![("__name__", name)];
        l.extend(id);
        l.extend_from_slice(extra);
        let samples: Vec<(i64, f64)> = at.iter().map(|&t| (t, v)).collect();
        TimeSeries::new(&l, &samples)
    };
    let stop = start + 600_000;
    let requests = [("container", "app"), ("unit", "core"), ("resource", "cpu")];
    let memory = [
        ("container", "app"),
        ("unit", "byte"),
        ("resource", "memory"),
    ];
    let body = WriteRequest {
        timeseries: vec![
            series("kube_pod_start_time", &[], (start / 1000) as f64, &at),
            series(
                "kube_pod_completion_time",
                &[],
                (stop / 1000) as f64,
                &at[at.len() - 1..],
            ),
            series("kube_pod_container_resource_requests", &requests, 2.0, &at),
            series(
                "kube_pod_container_resource_requests",
                &memory,
                4.0 * 1_073_741_824.0,
                &at,
            ),
        ],
    }
    .encode_body();
    let (code, text) = remote_write(&a.url("/api/v1/write"), &body);
    assert_eq!(code, 204, "{text}");
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
    write(&a, 20, 120, end - DAY);
    write(&a, 20, 120, end);
    // A pod that ran ten minutes at 03:00 two days ago: its hour settles at once.
    let billed_day = (end / DAY - 2) * DAY;
    post_pod(&a, billed_day + 3 * 3_600_000);
    let days = [
        telltale_model::calendar::day_name((end - DAY) / DAY),
        telltale_model::calendar::day_name(end / DAY),
    ];
    let record = format!(
        "cluster-a/billing/day={}/hour=03.parquet",
        telltale_model::calendar::day_name(billed_day / DAY)
    );
    let uploaded = eventually(Duration::from_secs(60), || {
        let keys = s3.keys("cluster-a/");
        let have = days.iter().all(|d| {
            keys.iter()
                .any(|k| k.starts_with(&format!("cluster-a/data/day={d}/")))
        });
        (have && keys.contains(&record) && in_wal(&first) == 0).then_some(keys)
    })
    .unwrap_or_else(|| {
        panic!(
            "the day files and {record} in the bucket, and the WAL retired: {:?}\n{}",
            s3.keys("cluster-a/"),
            a.log().join("\n")
        )
    });
    let bill = |a: &Running| {
        get(&a.url(&format!(
            "/api/v1/billing?start={}&end={}&by=namespace",
            billed_day / 1000,
            billed_day / 1000 + 86_400
        )))
        .1
    };
    let want_bill = bill(&a);
    assert!(want_bill.contains("\"shop\""), "{want_bill}");
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
    assert_eq!(bill(&b), want_bill);
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
    write(&a, 5, 10, end - 3_600_000);
    eventually(Duration::from_secs(60), || {
        (metric(&a, "telltale_aggregator_object_store_uploaded_files_total")? >= 1.0
            && in_wal(&first) == 0)
            .then_some(())
    })
    .expect("the first flush uploaded");

    s3.pause(true);
    let before: BTreeSet<String> = s3_files(&first);
    write(&a, 5, 50, end);
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

/// While the bucket does not answer the WAL grows; from `--wal-max-bytes` remote write
/// answers 503 (senders keep the samples), and takes writes again once the bucket holds
/// the files and the WAL let go. Every sample acknowledged is then in the bucket.
#[test]
fn past_wal_max_bytes_remote_write_answers_503_until_the_bucket_is_back() {
    let Some(s3) = S3::start("telltale") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let flags = [
        "--object-store-option",
        "timeout=2s",
        "--object-store-option",
        "connect_timeout=1s",
        "--wal-max-bytes",
        "32KiB",
    ];
    let mut a = aggregator(&s3, &first, "full", &flags);
    let end = now_ms() / 1000 * 1000;
    s3.pause(true);
    // Each request: 5 series of 50 samples a second apart, all at new times.
    let mut accepted = 0;
    let mut refused = None;
    for k in 0..400 {
        let (code, body) = try_write(&a, 5, 50, 1000, end - k * 50_000);
        match code {
            204 => accepted += 250,
            503 => {
                refused = Some((k, body));
                break;
            }
            other => panic!("{other}: {body}"),
        }
    }
    let (k, body) = refused.expect("a 503 once the WAL holds --wal-max-bytes");
    assert!(body.contains("--wal-max-bytes"), "{body}");
    assert!(accepted > 0);
    assert!(metric(&a, "telltale_aggregator_wal_size_bytes").unwrap() >= 32_768.0);

    s3.pause(false);
    let back = eventually(Duration::from_secs(120), || {
        let (code, _) = try_write(&a, 5, 50, 1000, end - k * 50_000);
        (code == 204).then_some(())
    });
    back.expect("writes taken again once the bucket holds the files");
    accepted += 250;
    eventually(Duration::from_secs(120), || {
        (metric(&a, "telltale_aggregator_object_store_pending_files") == Some(0.0)
            && in_wal(&first) == 0)
            .then_some(())
    })
    .expect("everything uploaded and the WAL retired");
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let b = aggregator(&s3, &dir.path().join("second"), "full", &[]);
    let (_, body) = get(&b.url(&format!(
        "/api/v1/query?query={}&time={}",
        urlencode("sum(count_over_time(steer_total[30d]))"),
        end as f64 / 1000.0
    )));
    assert!(
        body.contains(&format!("\"{accepted}\"")),
        "{accepted}: {body}"
    );
}

/// The Parquet files under `data/` of a data directory, as keys.
fn s3_files(data: &Path) -> BTreeSet<String> {
    telltale_aggregator::store::layout::mirrored_files(data)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("data/"))
        .collect()
}

/// Unusable object store settings stop the aggregator at start with a usage error (exit
/// 2) naming what is wrong; nothing is asked of any server.
#[test]
fn bad_object_store_settings_are_usage_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let cases: [(&[&str], &str); 6] = [
        (&["--object-store", "ftp://host/x"], "use s3://"),
        (
            &[
                "--object-store",
                "s3://b/p",
                "--object-store-option",
                "no_such_setting=1",
            ],
            "unknown option \"no_such_setting\"",
        ),
        (
            &["--object-store-option", "region=eu-west-1"],
            "given without --object-store",
        ),
        (&["--object-store-option", "novalue"], "is not key=value"),
        (
            &["--object-store", "s3://b/p", "--replica", "a b"],
            "replica",
        ),
        (
            &["--ingesters", "http://127.0.0.1:1"],
            "only a --read-only query node asks ingesters",
        ),
    ];
    for (flags, words) in cases {
        let out = common::telltale()
            .args(["aggregator", "--data-dir", &d, "--listen", "127.0.0.1:0"])
            .args(flags)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(words), "{flags:?}: {words:?} not in {err}");
    }
}

/// SIGKILL while a large file's multipart upload is half sent (a proxy in front of the
/// bucket holds its second part): the bucket shows no object under the file's key, only
/// an unfinished upload, which no reader takes. Restarted, the aggregator uploads the file
/// whole, and every sample is counted once.
#[test]
fn killed_inside_a_multipart_upload_leaves_no_object_a_reader_takes() {
    let Some(s3) = S3::start("telltale") else {
        return;
    };
    let proxy = s3.holding(|sent| sent.contains("partNumber=2"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let flags = ["--flush-interval", "1h", "--flush-samples", "100000000"];
    let mut a = s3.aggregator_via(&proxy.url(), &data, "mp", &flags);
    // 2,000 series of 1,200 uneven samples a second apart: one file past the 16 MiB from
    // which uploads go in parts.
    let end = now_ms() / 1000 * 1000 - 3_600_000;
    let (series, points) = (2000u64, 1200u64);
    for chunk in 0..series / 100 {
        let ts: Vec<TimeSeries> = (chunk * 100..chunk * 100 + 100)
            .map(|i| {
                let pod = format!("pod-{i}");
                let samples: Vec<(i64, f64)> = (0..points)
                    .map(|k| {
                        let x = (i * 1_000_003 + k).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                        (end - (points - 1 - k) as i64 * 1000, (x >> 11) as f64)
                    })
                    .collect();
                TimeSeries::new(&[("__name__", "uneven"), ("pod", &pod)], &samples)
            })
            .collect();
        let body = WriteRequest { timeseries: ts }.encode_body();
        assert_eq!(remote_write(&a.url("/api/v1/write"), &body).0, 204);
    }
    // SIGTERM flushes the head to a file and uploads it: the proxy holds the second part.
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&a.child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    if eventually(Duration::from_secs(180), || proxy.held().then_some(())).is_none() {
        panic!(
            "the upload's second part was not sent:\n{}",
            a.log().join("\n")
        );
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();

    let unfinished = s3.unfinished_uploads();
    assert_eq!(unfinished.len(), 1, "{unfinished:?}");
    let key = &unfinished[0];
    assert!(key.ends_with(".parquet"), "{key}");
    let local = s3_files(&data);
    assert!(
        local.contains(key.trim_start_matches("mp/")),
        "{key} is not the file"
    );
    assert!(
        !s3.keys("mp/").contains(key),
        "{key} is visible half uploaded"
    );

    // A query node over the bucket takes nothing partial.
    let count = |q: &Running| instant_value(q, "sum(count_over_time(uneven[2h]))", end);
    let q = s3.aggregator(
        &dir.path().join("q"),
        "mp",
        &["--read-only", "--refresh-interval", "1s"],
    );
    assert_eq!(count(&q), None);
    assert_eq!(
        metric(&q, "telltale_aggregator_corrupt_files_total"),
        Some(0.0)
    );

    // Restarted (the bucket answering), it uploads the file whole.
    let _a = s3.aggregator(&data, "mp", &flags);
    eventually(Duration::from_secs(120), || {
        s3.keys("mp/").contains(key).then_some(())
    })
    .expect("the file uploaded after the restart");
    let all = (series * points) as f64;
    let counted = eventually(Duration::from_secs(60), || {
        (count(&q) == Some(all)).then_some(())
    });
    assert!(counted.is_some(), "{:?} of {all}", count(&q));
    assert_eq!(
        metric(&q, "telltale_aggregator_corrupt_files_total"),
        Some(0.0)
    );
}
