//! Replicas: two ingesting aggregators on one bucket (a real S3-compatible server,
//! moto_server), fed the same samples as a collector shipping to both would. Each
//! sample counts once on either replica and on a query node; a sample only one replica
//! got is answered by the other once its file is in the bucket; days are compacted under
//! leases while both flush; retention takes a whole day out of the bucket; a replica
//! killed mid-way leaves nothing a reader would take.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::s3::S3;
use common::{eventually, get, instant_value, now_ms, remote_write, sample, Running};
use telltale_model::remote::{TimeSeries, WriteRequest};

const DAY: i64 = 86_400_000;

fn replica(s3: &S3, data: &Path, name: &str) -> Running {
    s3.aggregator(
        data,
        "fleet",
        &["--replica", name, "--flush-interval", "1s"],
    )
}

/// A query node over the replicas' bucket.
fn query_node(s3: &S3, data: &Path) -> Running {
    s3.aggregator(data, "fleet", &["--read-only"])
}

/// 10 series (`pod-0`..`pod-9`), one sample each at every time of `times`.
fn body(times: &[i64]) -> Vec<u8> {
    let series: Vec<TimeSeries> = (0..10)
        .map(|i| {
            let pod = format!("pod-{i}");
            let samples: Vec<(i64, f64)> = times.iter().map(|&t| (t, (t % 1000) as f64)).collect();
            TimeSeries::new(&[("__name__", "steer_total"), ("pod", &pod)], &samples)
        })
        .collect();
    WriteRequest { timeseries: series }.encode_body()
}

fn send(a: &Running, body: &[u8]) {
    let (code, text) = remote_write(&a.url("/api/v1/write"), body);
    assert_eq!(code, 204, "{text}");
}

/// Samples of `steer_total` over the last three days as `a` counts them.
fn count(a: &Running, at: i64) -> Option<f64> {
    instant_value(a, "sum(count_over_time(steer_total[3d]))", at)
}

fn settled(a: &Running) -> bool {
    let text = get(&a.url("/metrics")).1;
    sample(&text, "telltale_aggregator_object_store_pending_files") == Some(0.0)
        && sample(&text, "telltale_aggregator_head_samples") == Some(0.0)
}

#[test]
fn two_replicas_count_every_sample_once_and_compact_under_leases() {
    let Some(s3) = S3::start("telltale") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&s3, &dir.path().join("a"), "a");
    let b = replica(&s3, &dir.path().join("b"), "b");
    let at = now_ms() / 1000 * 1000;
    // Twelve batches to both, a second apart (so each replica flushes small files and
    // compacts while the other flushes), half yesterday and half today, each at new
    // times: 12 x 10 series x 30 samples.
    let mut sent = 0;
    for k in 0..12 {
        let day = if k % 2 == 0 { at - DAY } else { at };
        let times: Vec<i64> = (0..30)
            .map(|j| day - 3_600_000 + k * 60_000 + j * 1000)
            .collect();
        let body = body(&times);
        send(&a, &body);
        send(&b, &body);
        sent += 300;
        std::thread::sleep(Duration::from_millis(700));
    }
    // One batch only B got (A was away for it): A answers it once B's file is up.
    let only_b: Vec<i64> = (0..30).map(|j| at - 600_000 + j * 1000).collect();
    send(&b, &body(&only_b));
    sent += 300;
    let quiet = eventually(Duration::from_secs(90), || {
        (settled(&a)
            && settled(&b)
            && count(&a, at) == Some(sent as f64)
            && count(&b, at) == Some(sent as f64))
        .then_some(())
    });
    assert!(
        quiet.is_some(),
        "{sent} samples: A counts {:?}, B counts {:?}",
        count(&a, at),
        count(&b, at)
    );
    // Compaction runs after every flush while days have small files; once they are
    // merged the leases are all given back.
    let compacted = eventually(Duration::from_secs(60), || {
        let keys = s3.keys("fleet/");
        let merged = keys.iter().any(|k| {
            k.contains("-c") && (k.ends_with("-ra.parquet") || k.ends_with("-rb.parquet"))
        });
        (merged && keys.iter().all(|k| !k.contains("leases/"))).then_some(())
    });
    assert!(compacted.is_some(), "{:?}", s3.keys("fleet/"));

    // A query node over the bucket alone counts each sample once.
    let q = query_node(&s3, &dir.path().join("q"));
    assert_eq!(count(&q, at), Some(sent as f64));
    assert!(
        !q.early.iter().any(|l| l.contains("unreadable")),
        "{:?}",
        q.early
    );
}

/// A replica killed while it uploads and compacts leaves nothing partial: a query node
/// over the bucket reads every object, and counts what the other replica holds.
#[test]
fn a_replica_killed_mid_way_leaves_nothing_a_reader_would_take() {
    let Some(s3) = S3::start("telltale") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut a = replica(&s3, &dir.path().join("a"), "a");
    let b = replica(&s3, &dir.path().join("b"), "b");
    let at = now_ms() / 1000 * 1000;
    let mut sent = 0;
    for k in 0..16 {
        let times: Vec<i64> = (0..50)
            .map(|j| at - 7_200_000 + k * 60_000 + j * 1000)
            .collect();
        let body = body(&times);
        if k == 10 {
            // Mid-way: flushing, uploading and compacting every second.
            a.child.kill().unwrap();
            a.child.wait().unwrap();
        }
        if k < 10 {
            send(&a, &body);
        }
        send(&b, &body);
        sent += 500;
        std::thread::sleep(Duration::from_millis(400));
    }
    eventually(Duration::from_secs(90), || settled(&b).then_some(()))
        .expect("B uploaded everything");
    let q = query_node(&s3, &dir.path().join("q"));
    assert_eq!(count(&q, at), Some(sent as f64));
    let (_, metrics) = get(&q.url("/metrics"));
    assert_eq!(
        sample(&metrics, "telltale_aggregator_corrupt_files_total"),
        Some(0.0),
        "{:?}",
        q.early
    );
}

/// Retention on two replicas: a day past `--retention` leaves the bucket whole (every
/// replica's parts of it), once, while newer days stay; both replicas and a query node
/// then count exactly the days kept.
#[test]
fn retention_deletes_a_whole_day_from_the_bucket_once() {
    let Some(s3) = S3::start("telltale") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    let mut a = replica(&s3, &da, "a");
    let mut b = replica(&s3, &db, "b");
    let at = now_ms() / 1000 * 1000;
    let old_day = telltale_model::calendar::day_name((at - 3 * DAY) / DAY);
    let old: Vec<i64> = (0..30).map(|j| at - 3 * DAY + j * 1000).collect();
    let new: Vec<i64> = (0..30).map(|j| at - 600_000 + j * 1000).collect();
    for times in [&old, &new] {
        let body = body(times);
        send(&a, &body);
        send(&b, &body);
    }
    // The raw day (its rollups have retentions of their own).
    let day_keys = |day: &str| s3.keys(&format!("fleet/data/day={day}/"));
    let both = eventually(Duration::from_secs(90), || {
        let keys = day_keys(&old_day);
        (settled(&a)
            && settled(&b)
            && keys.iter().any(|k| k.ends_with("-ra.parquet"))
            && keys.iter().any(|k| k.ends_with("-rb.parquet")))
        .then_some(())
    });
    assert!(both.is_some(), "{:?}", day_keys(&old_day));
    let wide = |a: &Running| instant_value(a, "sum(count_over_time(steer_total[5d]))", at);
    assert_eq!(wide(&a), Some(600.0));

    // Both restart keeping two days: each drops the old day on start, and the bucket
    // with them.
    for r in [&mut a, &mut b] {
        assert!(r.terminate(Duration::from_secs(60)).unwrap().success());
    }
    let flags = |name: &'static str| {
        [
            "--replica",
            name,
            "--flush-interval",
            "1s",
            "--retention",
            "2d",
        ]
    };
    let a = s3.aggregator(&da, "fleet", &flags("a"));
    let b = s3.aggregator(&db, "fleet", &flags("b"));
    let gone = eventually(Duration::from_secs(60), || {
        day_keys(&old_day).is_empty().then_some(())
    });
    assert!(gone.is_some(), "{:?}", day_keys(&old_day));
    let today = telltale_model::calendar::day_name((at - 600_000) / DAY);
    assert!(!day_keys(&today).is_empty(), "the day kept stays");
    let q = query_node(&s3, &dir.path().join("q"));
    for r in [&a, &b, &q] {
        assert_eq!(wide(r), Some(300.0));
    }
    for mut r in [a, b] {
        let log = r.log().join("\n");
        assert!(!log.contains("ERROR"), "{log}");
    }
}

/// Whether `line` is the request line of a PUT of a file replica `a`'s compaction wrote
/// (`part-<stamp>-c<count>-ra.parquet`).
fn puts_a_compacted_file(sent: &str) -> bool {
    sent.lines().any(|l| {
        l.starts_with("PUT ")
            && l.split("-c").skip(1).any(|rest| {
                let digits = rest.chars().take_while(char::is_ascii_digit).count();
                digits > 0 && rest[digits..].starts_with("-ra.parquet")
            })
    })
}

/// Replica A is killed while the file its compaction merged is being uploaded (a proxy in
/// front of the bucket holds that upload): the parts it merged are all still in the
/// bucket, so a query node counts every sample once; restarted, A uploads the merged file
/// and lets go of the parts, and every count stays exact.
#[test]
fn a_replica_killed_during_a_compaction_s_upload_loses_and_duplicates_nothing() {
    let Some(s3) = S3::start("telltale") else {
        return;
    };
    let proxy = s3.holding(puts_a_compacted_file);
    let dir = tempfile::tempdir().unwrap();
    let da = dir.path().join("a");
    let flags = ["--replica", "a", "--flush-interval", "1s"];
    let mut a = s3.aggregator_via(&proxy.url(), &da, "fleet", &flags);
    let b = replica(&s3, &dir.path().join("b"), "b");
    let at = now_ms() / 1000 * 1000;
    let mut sent = 0;
    for k in 0..40 {
        if proxy.held() {
            break;
        }
        let times: Vec<i64> = (0..20)
            .map(|j| at - 7_200_000 + k * 60_000 + j * 1000)
            .collect();
        let body = body(&times);
        send(&a, &body);
        send(&b, &body);
        sent += 200;
        std::thread::sleep(Duration::from_millis(700));
    }
    eventually(Duration::from_secs(60), || proxy.held().then_some(()))
        .expect("A compacted and uploads the merged file");
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let merged: Vec<String> = s3
        .keys("fleet/data/")
        .into_iter()
        .filter(|k| puts_a_compacted_file(&format!("PUT /{k}")))
        .collect();
    eventually(Duration::from_secs(90), || settled(&b).then_some(()))
        .expect("B uploaded everything");
    let q = query_node(&s3, &dir.path().join("q"));
    assert_eq!(
        count(&q, at),
        Some(sent as f64),
        "merged files up: {merged:?}"
    );

    // Restarted, A uploads what its compaction wrote and drops the parts it replaced.
    let a = replica(&s3, &da, "a");
    let q2 = query_node(&s3, &dir.path().join("q2"));
    let exact = eventually(Duration::from_secs(90), || {
        (settled(&a)
            && count(&a, at) == Some(sent as f64)
            && count(&b, at) == Some(sent as f64)
            && count(&q2, at) == Some(sent as f64))
        .then_some(())
    });
    assert!(
        exact.is_some(),
        "{sent}: A {:?}, B {:?}, a new query node {:?}",
        count(&a, at),
        count(&b, at),
        count(&q2, at)
    );
    let up = s3.keys("fleet/data/");
    assert!(
        up.iter()
            .any(|k| puts_a_compacted_file(&format!("PUT /{k}"))),
        "A's merged file in the bucket: {up:?}"
    );
}
