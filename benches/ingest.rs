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
//!
//! The same run is repeated with `--object-store` on an S3 bucket served by moto_server
//! (PyPI `moto[server]`): receiving CPU per sample against local disk (goal: within 10%),
//! and the flush's upload throughput from the aggregator's own log line.

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

/// One run of our aggregator over the same requests.
struct Ours {
    /// Samples per CPU-second while receiving.
    rate: f64,
    rss_kib: u64,
    /// CPU of the SIGTERM flush (and, with a bucket, its upload), per sample held.
    flush_per_sample: f64,
    held: usize,
    flush_secs: f64,
    parquet: u64,
    /// With a bucket: bytes and seconds of the upload the flush's sync logged.
    upload: Option<(u64, f64)>,
}

impl Ours {
    fn per_sample_with_flush(&self) -> f64 {
        1.0 / (1.0 / self.rate + self.flush_per_sample)
    }

    fn print(&self, who: &str, rounds_n: usize) {
        println!(
            "  {who}: {:.0} k samples per CPU-second (target >= 500 k); RSS {:.0} MiB with {} series in the head = {:.2} KiB per series",
            self.rate / 1e3,
            self.rss_kib as f64 / 1024.0,
            NODES * SERIES,
            self.rss_kib as f64 / (NODES * SERIES) as f64
        );
        println!(
            "    flush of the head ({} samples, {} per series) to Parquet: {:.2} s CPU = {:.2} us per sample; ingest and flush together: {:.0} k samples per CPU-second",
            self.held,
            rounds_n + 1,
            self.flush_secs,
            self.flush_per_sample * 1e6,
            self.per_sample_with_flush() / 1e3
        );
        println!(
            "    the flush wrote {} bytes of Parquet = {:.2} bytes per sample (each series' labels once per file: a day at 15 s is in the storage bench)",
            self.parquet,
            self.parquet as f64 / self.held as f64
        );
    }
}

/// Starts our aggregator with `flags` and `env`, posts the warm-up round and the
/// measured rounds, then SIGTERMs it and measures the flush (and upload) it does.
fn run_ours(
    warm: &[Vec<u8>],
    rounds: &[Vec<Vec<u8>>],
    flags: &[String],
    env: &[(&str, String)],
) -> Ours {
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut ours = Command::new(env!("CARGO_BIN_EXE_telltale"))
        .args(["aggregator", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(flags)
        .envs(env.iter().map(|(k, v)| (k, v)))
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
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let url = format!("http://{addr}/api/v1/write");
    wait_ready(&format!("http://{addr}/healthz"));
    let rate = measure(&ours, &url, warm, rounds);
    let rss_kib = status_kib(ours.id(), "VmRSS");
    // The flush: SIGTERM writes the whole head to Parquet (and uploads it), then the
    // process exits; its CPU is still readable while it is a zombie (not yet waited for).
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
    let held = (rounds.len() + 1) * NODES * SERIES;
    let (parquet, _) = dir_bytes(&data.path().join("data"));
    // "uploaded to the object store files=.. bytes=.. seconds=..", summed.
    let mut upload = None;
    for line in rx
        .try_iter()
        .filter(|l| l.contains("uploaded to the object store"))
    {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let (b, s) = upload.unwrap_or((0, 0.0));
        upload = Some((b + field("bytes=") as u64, s + field("seconds=")));
    }
    Ours {
        rate,
        rss_kib,
        flush_per_sample: flush.as_secs_f64() / held as f64,
        held,
        flush_secs: flush.as_secs_f64(),
        parquet,
        upload,
    }
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

    // Ours: the release binary, data on a real disk; then again with every file also
    // uploaded to an S3 bucket (moto_server), the same requests.
    let local = run_ours(&warm, &rounds, &[], &[]);
    local.print("telltale aggregator", rounds_n);
    match common::Moto::start("bench") {
        Some(moto) => {
            let flags = [
                "--object-store".to_string(),
                "s3://bench/ingest".to_string(),
            ];
            let bucket = run_ours(&warm, &rounds, &flags, &moto.env());
            bucket.print("with --object-store (S3 on moto_server)", rounds_n);
            println!(
                "  --object-store / local disk: receiving {:.2}x the CPU per sample (goal <= 1.10x); with the flush and its upload {:.2}x",
                local.rate / bucket.rate,
                local.per_sample_with_flush() / bucket.per_sample_with_flush()
            );
            if let Some((bytes, secs)) = bucket.upload {
                println!(
                    "  the flush's upload: {:.1} MiB in {secs:.2} s = {:.1} MiB/s (moto_server is Python, on the same 2 cores)",
                    bytes as f64 / 1048576.0,
                    bytes as f64 / 1048576.0 / secs
                );
            }
        }
        None => println!(
            "  --object-store: moto_server is not installed (python3 -m pip install 'moto[server]')"
        ),
    }
    let ours_rate = local.rate;

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
