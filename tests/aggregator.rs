//! The aggregator's remote-write ingest, black-box: the real binary, a real Prometheus 2.42
//! writing to it, SIGKILL during sustained ingest, and bad input.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{duckdb, eventually, get, spawn, Running};
use telltale_model::remote::{TimeSeries, WriteRequest};

fn aggregator(data: &Path, extra: &[&str]) -> Running {
    let d = data.display().to_string();
    let mut args = vec!["aggregator", "--data-dir", &d];
    args.extend_from_slice(extra);
    spawn(&args)
}

/// POSTs `body` with the remote-write headers (or `headers` instead): (status, message).
fn post(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Result<(u16, String), String> {
    let mut req = ureq::post(url).timeout(Duration::from_secs(10));
    let defaults = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    for (k, v) in defaults {
        if !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)) {
            req = req.set(k, v);
        }
    }
    for (k, v) in headers {
        req = req.set(k, v);
    }
    match req.send_bytes(body) {
        Ok(r) => Ok((r.status(), r.into_string().unwrap_or_default())),
        Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

/// One stored sample: sorted labels, timestamp, value bits.
type Stored = (Vec<(String, String)>, i64, u64);

/// A bad request: body, headers, expected status, words the message must hold.
type Case<'a> = (Vec<u8>, Vec<(&'a str, &'a str)>, u16, &'a str);

/// Every sample in the data directory's WAL.
fn stored(data: &Path) -> BTreeSet<Stored> {
    let mut out = BTreeSet::new();
    telltale_aggregator::store::wal::replay(
        &telltale_aggregator::store::layout::wal_dir(data),
        |body| {
            let req = WriteRequest::decode_body(body).unwrap();
            for ts in req.timeseries {
                let mut l: Vec<(String, String)> =
                    ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
                l.sort();
                for s in ts.samples {
                    out.insert((l.clone(), s.timestamp, s.value.to_bits()));
                }
            }
        },
    )
    .unwrap();
    out
}

fn key(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    l.sort();
    l
}

#[test]
fn accepted_samples_are_durable_exactly_and_bad_requests_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = aggregator(dir.path(), &[]);
    let url = a.url("/api/v1/write");
    let stale = f64::from_bits(telltale_model::prom::STALE_NAN_BITS);
    let good = WriteRequest {
        timeseries: vec![
            TimeSeries::new(
                &[("__name__", "x"), ("cluster", "c1"), ("pod", "p\"1")],
                &[
                    (1000, 1.5),
                    (2000, f64::NAN),
                    (3000, f64::INFINITY),
                    (4000, stale),
                ],
            ),
            // Unsorted labels are fine.
            TimeSeries::new(&[("zone", "z"), ("__name__", "y")], &[(1000, 0.0)]),
        ],
    };
    assert_eq!(post(&url, &good.encode_body(), &[]).unwrap().0, 204);
    let bad_labels = |labels: &[(&str, &str)]| {
        WriteRequest {
            timeseries: vec![TimeSeries::new(labels, &[(1, 1.0)])],
        }
        .encode_body()
    };
    let huge = "v".repeat(telltale_aggregator::ingest::MAX_LABEL_VALUE + 1);
    let cases: Vec<Case> = vec![
        (b"not snappy".to_vec(), vec![], 400, "snappy"),
        (
            snap::raw::Encoder::new().compress_vec(&[0xff; 16]).unwrap(),
            vec![],
            400,
            "protobuf",
        ),
        (
            bad_labels(&[("__name__", "x"), ("", "v")]),
            vec![],
            400,
            "empty name",
        ),
        (
            bad_labels(&[("__name__", "x"), ("a", "1"), ("a", "2")]),
            vec![],
            400,
            "twice",
        ),
        (bad_labels(&[("a", "1")]), vec![], 400, "__name__"),
        (
            bad_labels(&[("__name__", "x"), ("big", &huge)]),
            vec![],
            400,
            "over 16384",
        ),
        (
            good.encode_body(),
            vec![("Content-Encoding", "gzip")],
            415,
            "snappy",
        ),
        (
            good.encode_body(),
            vec![("Content-Type", "application/json")],
            415,
            "Content-Type",
        ),
    ];
    for (body, headers, status, words) in cases {
        let (got, msg) = post(&url, &body, &headers).unwrap();
        assert_eq!(got, status, "{msg}");
        assert!(msg.contains(words), "{words:?} not in {msg:?}");
    }
    // Over the body limit.
    let big = vec![0u8; telltale_aggregator::ingest::MAX_BODY + 1];
    assert_eq!(post(&url, &big, &[]).map(|r| r.0).unwrap_or(413), 413);
    let (_, metrics) = get(&a.url("/metrics"));
    assert!(
        metrics.contains("telltale_aggregator_samples_ingested_total 5"),
        "{metrics}"
    );
    assert!(metrics.contains("telltale_aggregator_requests_rejected_total{reason=\"labels\"} 4"));
    drop(a);
    let got = stored(dir.path());
    assert_eq!(got.len(), 5, "only the good request: {got:?}");
    let x = key(&[("__name__", "x"), ("cluster", "c1"), ("pod", "p\"1")]);
    for (t, v) in [
        (1000, 1.5),
        (2000, f64::NAN),
        (3000, f64::INFINITY),
        (4000, stale),
    ] {
        assert!(got.contains(&(x.clone(), t, v.to_bits())), "{t}");
    }
    assert!(got.contains(&(
        key(&[("__name__", "y"), ("zone", "z")]),
        1000,
        0f64.to_bits()
    )));
}

#[test]
fn tokens_limit_writers_to_their_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(&tokens, "edge-secret: [edge-1, edge-2]\n").unwrap();
    let a = aggregator(
        &dir.path().join("data"),
        &["--auth-tokens", tokens.to_str().unwrap()],
    );
    let url = a.url("/api/v1/write");
    let req = |cluster: &str| {
        WriteRequest {
            timeseries: vec![
                TimeSeries::new(&[("__name__", "up"), ("cluster", "edge-1")], &[(1, 1.0)]),
                TimeSeries::new(&[("__name__", "up"), ("cluster", cluster)], &[(1, 1.0)]),
            ],
        }
        .encode_body()
    };
    let auth = [("Authorization", "Bearer edge-secret")];
    assert_eq!(post(&url, &req("edge-1"), &[]).unwrap().0, 401);
    assert_eq!(
        post(&url, &req("edge-1"), &[("Authorization", "Bearer nope")])
            .unwrap()
            .0,
        401
    );
    let (status, msg) = post(&url, &req("core"), &auth).unwrap();
    assert_eq!(status, 403, "{msg}");
    assert!(msg.contains("\"core\""), "{msg}");
    assert_eq!(post(&url, &req("edge-2"), &auth).unwrap().0, 204);
    drop(a);
    let got = stored(&dir.path().join("data"));
    let clusters: BTreeSet<String> = got
        .iter()
        .flat_map(|(l, _, _)| {
            l.iter()
                .filter(|(n, _)| n == "cluster")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(
        clusters,
        BTreeSet::from(["edge-1".to_string(), "edge-2".to_string()])
    );
}

#[test]
fn sigkill_during_sustained_ingest_loses_no_acknowledged_sample() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // Recent timestamps: well within retention.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    // (writer, timestamp) of every sample acknowledged with 204.
    let acked: Arc<Mutex<BTreeSet<(String, i64)>>> = Arc::default();
    for round in 0..20 {
        let mut a = aggregator(dir.path(), &[]);
        let url = a.url("/api/v1/write");
        let mut writers = Vec::new();
        for w in 0..4 {
            let (url, acked) = (url.clone(), acked.clone());
            writers.push(std::thread::spawn(move || {
                let name = format!("r{round}w{w}");
                for batch in 0..10_000i64 {
                    let samples: Vec<(i64, f64)> = (0..100)
                        .map(|i| (base + batch * 100 + i, i as f64))
                        .collect();
                    let body = WriteRequest {
                        timeseries: vec![TimeSeries::new(
                            &[("__name__", "load"), ("writer", &name)],
                            &samples,
                        )],
                    }
                    .encode_body();
                    match post(&url, &body, &[]) {
                        Ok((204, _)) => {
                            let mut g = acked.lock().unwrap();
                            for (t, _) in samples {
                                g.insert((name.clone(), t));
                            }
                        }
                        _ => return,
                    }
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(50 + rand(400)));
        a.child.kill().unwrap(); // SIGKILL
        a.child.wait().unwrap();
        for w in writers {
            w.join().unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20 * 100,
        "the writers got through: {}",
        acked.len()
    );
    let got: BTreeSet<(String, i64)> = stored(dir.path())
        .into_iter()
        .map(|(l, t, _)| {
            let w = l.iter().find(|(n, _)| n == "writer").unwrap().1.clone();
            (w, t)
        })
        .collect();
    let missing: Vec<_> = acked.difference(&got).take(5).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    // A last start replays the WAL into the head, and SIGTERM writes it all to Parquet.
    let mut a = aggregator(dir.path(), &[]);
    let status = a
        .terminate(Duration::from_secs(120))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(
        stored(dir.path()).is_empty(),
        "the WAL was retired after the flush"
    );
    let glob = format!("{}/data/day=*/*.parquet", dir.path().display());
    if let Some(rows) = duckdb(&format!(
        "SELECT count(*) FROM (SELECT DISTINCT labels, timestamp FROM read_parquet('{glob}'))"
    )) {
        assert_eq!(rows, vec![got.len().to_string()]);
    }
}

#[test]
fn prometheus_2_42_remote_writes_samples_we_store_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let a = aggregator(&dir.path().join("data"), &[]);
    let write = a.url("/api/v1/write");
    let Some(prom) = common::Prometheus::start(
        dir.path(),
        |port| {
            format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\nremote_write:\n  - url: {write}\n    queue_config:\n      batch_send_deadline: 1s\n"
        )
        },
        &[],
    ) else {
        return;
    };
    // Prometheus's own view of a series that changes every scrape, over 10 s.
    let raw = eventually(Duration::from_secs(90), || {
        let v = prom.query(r#"scrape_samples_scraped{job="self"}[10s]"#);
        let values = v["data"]["result"][0]["values"].as_array()?.clone();
        (values.len() >= 5).then_some(values)
    })
    .expect("Prometheus never scraped itself");
    // Give remote write time to send those.
    std::thread::sleep(Duration::from_secs(4));
    drop(prom);
    drop(a);
    let got = stored(&dir.path().join("data"));
    let ours: BTreeMap<i64, u64> = got
        .iter()
        .filter(|(l, _, _)| {
            l.iter()
                .any(|(n, v)| n == "__name__" && v == "scrape_samples_scraped")
                && l.iter().any(|(n, v)| n == "job" && v == "self")
        })
        .map(|(_, t, v)| (*t, *v))
        .collect();
    for pair in raw {
        let t = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
        let v: f64 = pair[1].as_str().unwrap().parse().unwrap();
        assert_eq!(
            ours.get(&t),
            Some(&v.to_bits()),
            "sample at {t} differs or is missing"
        );
    }
}

fn hex(v: f64) -> String {
    v.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn sigterm_flushes_to_day_partitions_that_duckdb_reads_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut a = aggregator(&data, &[]);
    let url = a.url("/api/v1/write");
    let day = 86_400_000i64;
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Noon today (UTC), so the day partitions are known.
    let now = wall / day * day + day / 2;
    let (today, late_day) = (
        telltale_model::calendar::day_name(now / day),
        telltale_model::calendar::day_name(now / day - 30),
    );
    let stale = f64::from_bits(telltale_model::prom::STALE_NAN_BITS);
    let cpu = [
        ("__name__", "node_load1"),
        ("cluster", "c1"),
        ("node", "n\"1"),
    ];
    let mem = [
        ("__name__", "container_memory_working_set_bytes"),
        ("pod", "p1"),
    ];
    let points = [
        (now, 0.5),
        (now + 15_000, 1.25),
        (now + 30_000, f64::NAN),
        (now + 45_000, stale),
    ];
    let late = [(now - 30 * day, 7.0)];
    let body = |s: Vec<TimeSeries>| WriteRequest { timeseries: s }.encode_body();
    assert_eq!(
        post(&url, &body(vec![TimeSeries::new(&cpu, &points)]), &[])
            .unwrap()
            .0,
        204
    );
    // 30 days late, and an exact duplicate of what came before.
    assert_eq!(
        post(
            &url,
            &body(vec![
                TimeSeries::new(&mem, &late),
                TimeSeries::new(&cpu, &points[..1])
            ]),
            &[]
        )
        .unwrap()
        .0,
        204
    );
    // Older than the 90-day retention: accepted, counted, not stored.
    let ancient = [(wall - 100 * day, 1.0)];
    assert_eq!(
        post(&url, &body(vec![TimeSeries::new(&mem, &ancient)]), &[])
            .unwrap()
            .0,
        204
    );
    let (_, metrics) = get(&a.url("/metrics"));
    assert!(
        metrics.contains("telltale_aggregator_samples_too_old_total 1"),
        "{metrics}"
    );
    let status = a
        .terminate(Duration::from_secs(120))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
    let days: BTreeSet<String> = std::fs::read_dir(data.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        days,
        BTreeSet::from([format!("day={late_day}"), format!("day={today}")])
    );
    // What the WAL held is now in the files: a restart replays nothing.
    assert!(stored(&data).is_empty());
    let glob = format!("{}/data/day=*/*.parquet", data.display());
    let Some(rows) = duckdb(&format!(
        "SELECT day, metric, labels, epoch_ms(timestamp), value FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY metric, labels, timestamp"
    )) else {
        return;
    };
    let mut want = vec![format!(
        "{late_day}\tcontainer_memory_working_set_bytes\t{{\"pod\":\"p1\"}}\t{}\t{}",
        now - 30 * day,
        hex(7.0)
    )];
    for (t, v) in points {
        want.push(format!(
            "{today}\tnode_load1\t{{\"cluster\":\"c1\",\"node\":\"n\\\"1\"}}\t{t}\t{}",
            hex(v)
        ));
    }
    assert_eq!(rows, want);
}

#[test]
fn flushes_compact_and_a_corrupt_file_is_moved_aside_while_ingest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let part = data.join("data").join("day=2026-11-20");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(
        part.join("part-1-0.parquet"),
        b"PAR1 not a parquet file PAR1",
    )
    .unwrap();
    let mut a = aggregator(&data, &["--flush-interval", "1s"]);
    let moved = eventually(Duration::from_secs(10), || {
        a.log()
            .into_iter()
            .find(|l| l.contains("ERROR") && l.contains("moved aside"))
    });
    assert!(moved.is_some(), "{:?}", a.log());
    assert!(data
        .join("corrupt/day=2026-11-20/part-1-0.parquet")
        .is_file());
    let url = a.url("/api/v1/write");
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Several flushes' worth of writes into today's partition.
    for round in 0..4i64 {
        let body = WriteRequest {
            timeseries: vec![TimeSeries::new(
                &[("__name__", "rounds")],
                &[(wall - 60_000 + round * 1000, round as f64)],
            )],
        }
        .encode_body();
        assert_eq!(post(&url, &body, &[]).unwrap().0, 204);
        std::thread::sleep(Duration::from_millis(1300));
    }
    let today = telltale_model::calendar::day_name(wall.div_euclid(86_400_000));
    let dir_today = data.join("data").join(format!("day={today}"));
    let one = eventually(Duration::from_secs(20), || {
        let n = std::fs::read_dir(&dir_today).ok()?.count();
        (n == 1).then_some(())
    });
    assert!(
        one.is_some(),
        "the flushes were not compacted into one file"
    );
    let flushes = a
        .log()
        .iter()
        .filter(|l| l.contains("flushed the head to Parquet"))
        .count();
    assert!(flushes >= 2, "{flushes} flushes: nothing to compact");
    let (_, metrics) = get(&a.url("/metrics"));
    assert!(
        metrics.contains("telltale_aggregator_corrupt_files_total 1"),
        "{metrics}"
    );
    // Files and bytes per partition are what is on disk once compaction is done.
    let file_bytes = std::fs::read_dir(&dir_today)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>();
    let want = [
        format!("telltale_aggregator_partition_files{{day=\"{today}\"}} 1"),
        format!("telltale_aggregator_partition_bytes{{day=\"{today}\"}} {file_bytes}"),
    ];
    let shown = eventually(Duration::from_secs(10), || {
        let (_, metrics) = get(&a.url("/metrics"));
        want.iter().all(|w| metrics.contains(w)).then_some(())
    });
    assert!(
        shown.is_some(),
        "{want:?} not in {}",
        get(&a.url("/metrics")).1
    );
    drop(a);
    let glob = format!("{}/data/day=*/*.parquet", data.display());
    if let Some(rows) = duckdb(&format!(
        "SELECT value FROM read_parquet('{glob}') WHERE metric = 'rounds' ORDER BY timestamp"
    )) {
        let want: Vec<String> = (0..4).map(|r| hex(r as f64)).collect();
        assert_eq!(rows, want);
    }
}

#[test]
fn import_backfills_text_and_openmetrics_and_reports_what_it_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let day = 86_400_000i64;
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = wall / day * day - 10 * day + 3_600_000; // ten days ago, 01:00 UTC
    let prom = dir.path().join("a.prom");
    std::fs::write(
        &prom,
        format!(
            "# HELP up Up.\n# TYPE up gauge\nup{{job=\"a\"}} 1 {t0}\nup{{job=\"a\"}} 0 {}\nup{{job=\"b\"}} 1\nnot a line\n",
            t0 + 15_000
        ),
    )
    .unwrap();
    let om = dir.path().join("b.om");
    std::fs::write(
        &om,
        format!(
            "# TYPE temp gauge\ntemp{{room=\"x\"}} 21.5 {}.5\n# EOF\n",
            (t0 + day) / 1000
        ),
    )
    .unwrap();
    let out = common::telltale()
        .args([
            "import",
            prom.to_str().unwrap(),
            om.to_str().unwrap(),
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "some lines were refused: {stdout}"
    );
    assert!(stdout.contains("imported 3 samples"), "{stdout}");
    assert!(stdout.contains("rejected 2"), "{stdout}");
    assert!(stdout.contains("a.prom:5: no timestamp"), "{stdout}");
    assert!(stdout.contains("a.prom:6:"), "{stdout}");
    let glob = format!("{}/data/day=*/*.parquet", data.display());
    if let Some(rows) = duckdb(&format!(
        "SELECT metric, labels, epoch_ms(timestamp), value FROM read_parquet('{glob}') ORDER BY timestamp"
    )) {
        assert_eq!(
            rows,
            vec![
                format!("up\t{{\"job\":\"a\"}}\t{t0}\t{}", hex(1.0)),
                format!("up\t{{\"job\":\"a\"}}\t{}\t{}", t0 + 15_000, hex(0.0)),
                format!("temp\t{{\"room\":\"x\"}}\t{}\t{}", (t0 + day) / 1000 * 1000 + 500, hex(21.5)),
            ]
        );
    }
    // A clean file imports with exit 0.
    let clean = dir.path().join("c.prom");
    std::fs::write(&clean, format!("up{{job=\"c\"}} 1 {t0}\n")).unwrap();
    let out = common::telltale()
        .args(["import", clean.to_str().unwrap(), "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A missing file is a usage error.
    let out = common::telltale()
        .args(["import", "/nonexistent.prom", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
