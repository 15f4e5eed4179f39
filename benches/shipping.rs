//! The remote-write disk queue over a simulated six-hour outage of a 250-container node.
//!
//! `cargo bench --bench shipping` (BENCH_CYCLES=N for a shorter outage; default 1,440 =
//! six hours at 15 s). The fixture node's counters advance between cycles the way a busy
//! node's do (CPU and I/O counters every cycle, memory in page steps, throttling now and
//! then), the real collector collects each cycle, and the snapshot goes through the
//! shipper's append path (parse the exposition, encode, write a segment). Reported:
//! - append: samples per CPU-second on one core (target >= 1M), and bytes on disk per
//!   buffered sample (target <= 4);
//! - replay: samples per CPU-second to turn the queue back into remote-write requests
//!   (labels encoded once per series, protobuf, snappy), as the dispatcher does, against Prometheus 2.42's CPU per sample to ingest the
//!   same requests (the anchor, measured in this run): replay is limited by the receiver
//!   when the ratio is well below 1.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed benchmark

use std::time::{Duration, UNIX_EPOCH};

use telltale_collector::fixture::{Driver, Node, Version};
use telltale_collector::ship::queue::{Config, Queue};
use telltale_collector::ship::reader::{Item, Reader};
use telltale_collector::ship::{snapshot_samples, to_labels};
use telltale_collector::Collector;
use telltale_model::remote::Body;

mod common;
use common::workload::Workload;
use common::{fixture_dir, process_cpu, remote_write, thread_cpu, PrometheusReceiver};

const PODS: usize = 110;
const CONTAINERS: usize = 250;
const BATCH: usize = 2000;

fn main() {
    let cycles: usize = std::env::var("BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1440);
    let fixture_dir = fixture_dir();
    let node = Node::new(fixture_dir.path(), Version::V2, Driver::Systemd).unwrap();
    let mut work = Workload::new(&node, PODS, CONTAINERS);

    // The queue lives on a real disk, as it would on a node.
    let queue_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let max_bytes = 1u64 << 30;
    let mut queue = Queue::open(Config {
        dir: queue_dir.path().to_owned(),
        max_bytes,
        max_age: Duration::from_secs(72 * 3600),
        segment_bytes: Config::segment_bytes_for(max_bytes),
        fsync_every: Duration::from_secs(1),
        shards: 1,
    })
    .unwrap();
    let mut collector = Collector::new(
        &node.options("bench", "node-1"),
        prometheus::Registry::new(),
    )
    .unwrap();
    collector.index_samples(true);

    let start = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let mut append_cpu = Duration::ZERO;
    let mut appended = 0u64;
    let mut series = 0usize;
    for c in 0..cycles {
        work.step(&node);
        let now = start + Duration::from_secs(15 * c as u64);
        let snap = collector.collect(now);
        let t0 = thread_cpu();
        // As the shipper does it.
        let samples = snapshot_samples(&snap);
        let done = queue.append(snap.timestamp_ms, &samples, now);
        append_cpu += thread_cpu() - t0;
        appended += done.samples;
        series = samples.len();
        assert_eq!(done.dropped_full + done.dropped_age, 0);
    }
    queue.sync();
    let disk: u64 = std::fs::read_dir(queue_dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();

    // Replay: queue -> remote-write request bodies, as the dispatcher builds them.
    let mut reader = Reader::new(queue.positions());
    let mut labels: Vec<Option<Box<[u8]>>> = Vec::new();
    let mut batch = Body::default();
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut replayed = 0u64;
    let mut body_bytes = 0u64;
    let t0 = thread_cpu();
    loop {
        match reader.next(&queue) {
            Item::Sample {
                id,
                timestamp_ms,
                bits,
                ..
            } => {
                let idx = id as usize;
                if labels.len() <= idx {
                    labels.resize(idx + 1, None);
                }
                let l = labels[idx].get_or_insert_with(|| to_labels(reader.key(id)));
                batch.push(l, timestamp_ms, f64::from_bits(bits));
                replayed += 1;
                if batch.samples() == BATCH {
                    let body = batch.finish();
                    body_bytes += body.len() as u64;
                    // Keep the first ones for the receiver anchor.
                    if bodies.len() < 100 {
                        bodies.push(body);
                    }
                }
            }
            Item::SegmentEnd { .. } => labels.clear(),
            Item::Pending { .. } => break,
            Item::Gone | Item::Corrupt(_) => panic!("queue lost data during the benchmark"),
        }
    }
    let replay_cpu = thread_cpu() - t0;
    assert_eq!(replayed, appended, "replay returns every appended sample");

    let anchor = prometheus_ingest(&bodies);

    let append_rate = appended as f64 / append_cpu.as_secs_f64();
    let replay_rate = replayed as f64 / replay_cpu.as_secs_f64();
    println!("shipping: {cycles} cycles of {series} series at 15 s ({:.1} h outage), {CONTAINERS} containers", cycles as f64 * 15.0 / 3600.0);
    println!(
        "  append: {appended} samples in {:.2} s CPU = {:.2} M samples/s (target >= 1 M)",
        append_cpu.as_secs_f64(),
        append_rate / 1e6
    );
    println!(
        "  on disk: {disk} bytes = {:.2} bytes per buffered sample (target <= 4)",
        disk as f64 / appended as f64
    );
    println!(
        "  replay to requests: {:.2} s CPU = {:.0} k samples/s; {:.1} bytes per sample on the wire",
        replay_cpu.as_secs_f64(),
        replay_rate / 1e3,
        body_bytes as f64 / replayed as f64
    );
    if let Some((samples, cpu)) = anchor {
        let prom_rate = samples as f64 / cpu.as_secs_f64();
        println!(
            "  anchor: Prometheus 2.42 ingests the same requests at {:.0} k samples per CPU-second; replay costs {:.2}x its CPU per sample",
            prom_rate / 1e3,
            prom_rate / replay_rate
        );
    }
}

/// Posts `bodies` to a Prometheus 2.42 remote-write receiver started for the purpose;
/// returns (samples, Prometheus CPU time spent on them). None if Prometheus is missing.
fn prometheus_ingest(bodies: &[Vec<u8>]) -> Option<(u64, Duration)> {
    let prom = PrometheusReceiver::start()?;
    let agent = ureq::AgentBuilder::new().build();
    let post = |body: &Vec<u8>| remote_write(&agent, &prom.write_url, body);
    // The series are created by the first snapshot's requests; measure once they exist.
    let per_snapshot = bodies.len().min(6);
    for b in &bodies[..per_snapshot] {
        post(b);
    }
    let before = process_cpu(prom.child.id());
    let mut samples = 0u64;
    for b in &bodies[per_snapshot..] {
        post(b);
        samples += BATCH as u64;
    }
    // Let Prometheus finish its accounting (CPU ticks are 10 ms).
    std::thread::sleep(Duration::from_millis(200));
    let cpu = process_cpu(prom.child.id()) - before;
    Some((samples, cpu))
}
