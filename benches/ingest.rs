//! Remote-write ingest: samples per CPU-second through `/api/v1/write`, ours against
//! Prometheus 2.42 with `--web.enable-remote-write-receiver`, on the same requests in one
//! run.
//!
//! `cargo bench --bench ingest` (BENCH_ROUNDS=N scrapes per node, default 8). Payloads are
//! collector-shaped (the shape BENCHMARKS.md describes): 100 nodes x 3,000 series with 10 labels each, 2,000
//! samples per request, one sample per series per request. The first round creates the
//! series in both receivers and is not measured; the CPU of each receiver process
//! (utime + stime from /proc) is measured over the other rounds, posted by two client
//! threads. The measured rounds stay under the default flush size (5M samples), so
//! that figure is the receiving path (WAL and head), as Prometheus's is; the flush to
//! Parquet is measured after it, as the CPU a SIGTERM's flush of everything takes.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed benchmark

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use telltale_model::remote::{Label, Sample, TimeSeries, WriteRequest};

mod common;
use common::{dir_bytes, process_cpu, remote_write, status_kib, wait_ready, PrometheusReceiver};

const NODES: usize = 100;
const SERIES: usize = 3000;
const BATCH: usize = 2000;

/// One round: every node's 3,000 series once, at `ts`, as 2,000-sample request bodies.
/// Labels are sorted by name, as the remote-write specification asks of senders and as
/// Prometheus and the collector send them.
fn round(ts: i64) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    for n in 0..NODES {
        for s in 0..SERIES {
            let (pod, container) = (s / 30, s % 30);
            let l = |name: &str, value: String| Label {
                name: name.into(),
                value,
            };
            batch.push(TimeSeries {
                labels: vec![
                    l("__name__", format!("container_metric_{}", s % 40)),
                    l("cluster", "bench".into()),
                    l("container", format!("c{container}")),
                    l("id", format!("/kubepods/pod{n:04}-{pod:03}/c{container}")),
                    l(
                        "image",
                        format!("registry.example/app-{}:1.{}", pod % 7, pod % 3),
                    ),
                    l("job", "telltale".into()),
                    l("name", format!("{n:04}{pod:03}{container:02}")),
                    l("namespace", format!("ns-{}", pod % 10)),
                    l("node", format!("node-{n:03}")),
                    l("pod", format!("pod-{n:03}-{pod:03}")),
                ],
                samples: vec![Sample {
                    value: (ts / 1000 + s as i64) as f64 * 1.5,
                    timestamp: ts,
                }],
            });
            if batch.len() == BATCH {
                bodies.push(
                    WriteRequest {
                        timeseries: std::mem::take(&mut batch),
                    }
                    .encode_body(),
                );
            }
        }
    }
    bodies
}

fn post_all(url: &str, bodies: &[Vec<u8>]) {
    let half = bodies.len() / 2;
    std::thread::scope(|s| {
        for part in [&bodies[..half], &bodies[half..]] {
            s.spawn(move || {
                let agent = ureq::AgentBuilder::new().build();
                for b in part {
                    remote_write(&agent, url, b);
                }
            });
        }
    });
}

/// Posts the warm-up round, then the measured rounds; returns samples per CPU-second.
fn measure(child: &Child, url: &str, warm: &[Vec<u8>], rounds: &[Vec<Vec<u8>>]) -> f64 {
    post_all(url, warm);
    let before = process_cpu(child.id());
    let mut samples = 0;
    for r in rounds {
        post_all(url, r);
        samples += r.len() * BATCH;
    }
    std::thread::sleep(Duration::from_millis(300));
    let cpu = process_cpu(child.id()) - before;
    samples as f64 / cpu.as_secs_f64()
}

fn main() {
    let rounds_n: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        / 15_000
        * 15_000
        - 3_600_000;
    let warm = round(start);
    let rounds: Vec<Vec<Vec<u8>>> = (1..=rounds_n)
        .map(|r| round(start + 15_000 * r as i64))
        .collect();
    let samples = rounds_n * NODES * SERIES;
    let bytes: usize = rounds.iter().flatten().map(Vec::len).sum();
    println!(
        "ingest: {NODES} nodes x {SERIES} series, {rounds_n} measured rounds = {samples} samples in {} requests ({:.1} bytes per sample, snappy)",
        rounds.iter().map(Vec::len).sum::<usize>(),
        bytes as f64 / samples as f64
    );

    // Ours: the release binary, data on a real disk.
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut ours = Command::new(env!("CARGO_BIN_EXE_telltale"))
        .args(["aggregator", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("TELLTALE_LOG", "warn,telltale_aggregator=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = ours.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("aggregator exited").unwrap();
        if let Some(a) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
        {
            break a.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let url = format!("http://{addr}/api/v1/write");
    wait_ready(&format!("http://{addr}/healthz"));
    let ours_rate = measure(&ours, &url, &warm, &rounds);
    let rss_kib = status_kib(ours.id(), "VmRSS");
    println!(
        "  telltale aggregator: {:.0} k samples per CPU-second (target >= 500 k); RSS {:.0} MiB with {} series in the head = {:.2} KiB per series",
        ours_rate / 1e3,
        rss_kib as f64 / 1024.0,
        NODES * SERIES,
        rss_kib as f64 / (NODES * SERIES) as f64
    );
    // The flush: SIGTERM writes the whole head to Parquet, then the process exits; its
    // CPU is still readable while it is a zombie (not yet waited for).
    let before = process_cpu(ours.id());
    let pid = ours.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let stat = format!("/proc/{pid}/stat");
    while !std::fs::read_to_string(&stat)
        .unwrap()
        .split(") ")
        .nth(1)
        .is_some_and(|s| s.starts_with('Z'))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let flush = process_cpu(ours.id()) - before;
    let _ = ours.wait();
    let held = (rounds_n + 1) * NODES * SERIES;
    let flush_per_sample = flush.as_secs_f64() / held as f64;
    let (parquet, _) = dir_bytes(&data.path().join("data"));
    println!(
        "  flush of the head ({held} samples, {} per series) to Parquet: {:.2} s CPU = {:.2} us per sample; ingest and flush together: {:.0} k samples per CPU-second",
        rounds_n + 1,
        flush.as_secs_f64(),
        flush_per_sample * 1e6,
        1.0 / (1.0 / ours_rate + flush_per_sample) / 1e3
    );
    println!(
        "  the flush wrote {parquet} bytes of Parquet = {:.2} bytes per sample (each series' labels once per file: a day at 15 s is in the storage bench)",
        parquet as f64 / held as f64
    );

    // The anchor.
    let Some(prom) = PrometheusReceiver::start() else {
        println!("  anchor: prometheus is not installed (apt-get install prometheus)");
        return;
    };
    let prom_rate = measure(&prom.child, &prom.write_url, &warm, &rounds);
    drop(prom);
    println!(
        "  anchor: Prometheus 2.42 {:.0} k samples per CPU-second; ours / Prometheus = {:.2}x (target >= 3x)",
        prom_rate / 1e3,
        ours_rate / prom_rate
    );
}
