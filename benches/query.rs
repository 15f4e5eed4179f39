//! Query latency, ours against Prometheus 2.42 on the same data in the same run.
//!
//! `cargo bench --bench query` (BENCH_DAYS=N for a shorter history, default 7;
//! BENCH_LONG_DAYS=N for the long single-series query, default 90, 0 to skip it;
//! BENCH_DATA=DIR keeps the generated days in DIR and reuses them on the next run, which
//! then takes minutes instead of half an hour; the data ends at the last midnight before
//! it was made, and the queries end there too).
//!
//! The data: 10,000 series at 15 s for 7 days ending at the last UTC midnight: 9,000
//! counters `bench_requests_total{namespace (50), pod}` and 1,000 classic histogram
//! buckets `bench_latency_seconds_bucket{namespace, pod (100), le (10)}`. Ours: one
//! compacted Parquet file per day, as `partition::write_day` writes them. Prometheus:
//! TSDB blocks built by `promtool tsdb create-blocks-from openmetrics` (24 h blocks) from
//! the same samples as OpenMetrics text. Both serve over HTTP on loopback; each query runs
//! once to warm up, then 5 times alternating between the two, and the median wall time of
//! each is compared. The answers are compared too (series and points), so a fast wrong
//! answer does not pass.
//!
//! The long query reads one series over `BENCH_LONG_DAYS` days at a 1 h step from a second
//! store of the same 10,000 series sampled every 5 minutes (90 days at 15 s would be 5
//! billion rows to generate; a single-series read touches the same footer and a page or
//! two of each day either way). Its target is absolute: ≤ 100 ms.
//!
//! Then, with moto_server installed (PyPI `moto[server]`), both stores are uploaded to an
//! S3 bucket on it by an aggregator with `--object-store`, and each query is asked of a
//! fresh `--read-only` query node reading the bucket in place: its first run (cold: empty
//! page cache) and the median of 5 more (warm) against the local-disk median above.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed benchmark

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use telltale_aggregator::store::head::SeriesKey;
use telltale_aggregator::store::partition;
use telltale_model::calendar::DAY_MS;

mod common;
use common::{dir_bytes, Killed};

const COUNTERS: usize = 9_000;
const NAMESPACES: usize = 50;
const HISTOGRAM_PODS: usize = 100;
const BOUNDS: [&str; 10] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
];
const STEP_MS: i64 = 15_000;

/// One series: its metric, labels (sorted by name) and how its value grows per step.
struct Spec {
    metric: &'static str,
    labels: Vec<(&'static str, String)>,
    per_step: f64,
}

fn specs() -> Vec<Spec> {
    let mut out = Vec::with_capacity(COUNTERS + HISTOGRAM_PODS * BOUNDS.len());
    for i in 0..COUNTERS {
        out.push(Spec {
            metric: "bench_requests_total",
            labels: vec![
                ("namespace", format!("ns-{:02}", i % NAMESPACES)),
                ("pod", format!("pod-{i:05}")),
            ],
            per_step: 1.0 + (i % 7) as f64 * 0.5,
        });
    }
    for p in 0..HISTOGRAM_PODS {
        for (b, le) in BOUNDS.iter().enumerate() {
            out.push(Spec {
                metric: "bench_latency_seconds_bucket",
                labels: vec![
                    ("le", le.to_string()),
                    ("namespace", format!("ns-{:02}", p % NAMESPACES)),
                    ("pod", format!("hpod-{p:03}")),
                ],
                // Cumulative: each bound holds more than the one below it.
                per_step: (b as f64 + 1.0) * (1.0 + (p % 5) as f64),
            });
        }
    }
    out
}

/// The value of a series at step `n` since the epoch: a counter with a small wobble and a
/// reset every 6 h (so rates handle resets).
fn value(spec: &Spec, n: i64) -> f64 {
    let since_reset = n % (6 * 240);
    since_reset as f64 * spec.per_step + ((n % 4) as f64) * 0.25
}

fn labels_json(spec: &Spec) -> String {
    let pairs: Vec<String> = spec
        .labels
        .iter()
        .map(|(n, v)| format!("\"{n}\":\"{v}\""))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// Writes day `day` of every series, sampled every `every` ms, as one Parquet file.
fn write_ours(dir: &Path, specs: &[Spec], day: i64, every: i64) {
    let start = day * DAY_MS;
    let series: Vec<(SeriesKey, Vec<(i64, u64)>)> = specs
        .iter()
        .map(|s| {
            let key = SeriesKey {
                metric: s.metric.into(),
                labels: labels_json(s).into(),
            };
            let points = (0..DAY_MS / every)
                .map(|k| {
                    let t = start + k * every;
                    (t, value(s, t / STEP_MS).to_bits())
                })
                .collect();
            (key, points)
        })
        .collect();
    partition::write_day(dir, day, series, "part-0-bench.parquet").unwrap();
}

/// Writes day `day` of every series as OpenMetrics text (families contiguous).
fn write_text(path: &Path, specs: &[Spec], day: i64) {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let start = day * DAY_MS;
    let mut family = "";
    for s in specs {
        if s.metric != family {
            family = s.metric;
            let (name, kind) = match family {
                "bench_requests_total" => ("bench_requests", "counter"),
                _ => ("bench_latency_seconds", "histogram"),
            };
            writeln!(w, "# TYPE {name} {kind}").unwrap();
        }
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(n, v)| format!("{n}=\"{v}\""))
            .collect();
        let head = format!("{}{{{}}}", s.metric, labels.join(","));
        for k in 0..DAY_MS / STEP_MS {
            let t = start + k * STEP_MS;
            writeln!(
                w,
                "{head} {} {}.{:03}",
                value(s, t / STEP_MS),
                t / 1000,
                t % 1000
            )
            .unwrap();
        }
    }
    writeln!(w, "# EOF").unwrap();
    w.flush().unwrap();
}

fn start_ours(data: &Path) -> (Killed, String) {
    let (ours, url) = common::start_aggregator(data);
    common::wait_idle(ours.0.id(), Duration::from_secs(120), 1, "the aggregator");
    (ours, url)
}

/// Waits until process `pid` has used under 5% of a core for a second (the aggregator
/// settles billing from the files at start), up to two minutes.
fn start_prometheus(dir: &Path, tsdb: &Path) -> Option<(Killed, String)> {
    common::start_prometheus(
        dir,
        tsdb,
        &["--storage.tsdb.retention.time=400d".to_string()],
    )
}

/// The body of a range query's answer.
fn answer(agent: &ureq::Agent, url: &str, q: &str, start: i64, end: i64, step: &str) -> String {
    agent
        .post(&format!("{url}/api/v1/query_range"))
        .send_form(&[
            ("query", q),
            ("start", &(start / 1000).to_string()),
            ("end", &(end / 1000).to_string()),
            ("step", step),
        ])
        .unwrap_or_else(|e| panic!("{url}: {q}: {e}"))
        .into_string()
        .unwrap()
}

/// Runs a range query: (wall time, series, points).
fn query(
    agent: &ureq::Agent,
    url: &str,
    q: &str,
    start: i64,
    end: i64,
    step: &str,
) -> (Duration, usize, usize) {
    let begin = Instant::now();
    let body = answer(agent, url, q, start, end, step);
    let took = begin.elapsed();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let result = v["data"]["result"].as_array().unwrap();
    let points = result
        .iter()
        .map(|s| s["values"].as_array().unwrap().len())
        .sum();
    (took, result.len(), points)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let days: i64 = std::env::var("BENCH_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let long_days: i64 = std::env::var("BENCH_LONG_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(90);
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let kept = std::env::var("BENCH_DATA")
        .ok()
        .map(std::path::PathBuf::from);
    let data = kept.clone().unwrap_or_else(|| work.path().to_owned());
    let specs = specs();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let made = std::fs::read_to_string(data.join("last-day"))
        .ok()
        .and_then(|d| d.trim().parse::<i64>().ok());
    let last_day = made.unwrap_or(now.div_euclid(DAY_MS) - 1);
    let first_day = last_day - days + 1;
    let end = (last_day + 1) * DAY_MS - STEP_MS;
    println!(
        "query: {} series x {days} days at 15 s = {} samples",
        specs.len(),
        specs.len() as i64 * days * DAY_MS / STEP_MS
    );

    let ours_dir = data.join("ours");
    let blocks = data.join("prometheus");
    let text = work.path().join("day.om");
    let started = Instant::now();
    let mut promtool_ok = true;
    let days_to_write = if made.is_some() {
        println!("  reusing the data in {}", data.display());
        0..0
    } else {
        first_day..last_day + 1
    };
    for day in days_to_write {
        write_ours(&ours_dir, &specs, day, STEP_MS);
        if promtool_ok {
            write_text(&text, &specs, day);
            let status = Command::new("promtool")
                .args([
                    "tsdb",
                    "create-blocks-from",
                    "openmetrics",
                    "--quiet",
                    "--max-block-duration=24h",
                ])
                .arg(&text)
                .arg(&blocks)
                .status();
            promtool_ok = matches!(status, Ok(s) if s.success());
            let _ = std::fs::remove_file(&text);
        }
    }
    if kept.is_some() && made.is_none() && promtool_ok {
        std::fs::write(data.join("last-day"), last_day.to_string()).unwrap();
    }
    let (ours_bytes, _) = dir_bytes(&ours_dir);
    println!(
        "  data written in {:.0?}: ours {:.0} MiB{}",
        started.elapsed(),
        ours_bytes as f64 / (1 << 20) as f64,
        if promtool_ok {
            format!(
                ", Prometheus {:.0} MiB",
                dir_bytes(&blocks).0 as f64 / (1 << 20) as f64
            )
        } else {
            String::new()
        }
    );

    let (ours_proc, ours_url) = start_ours(&ours_dir);
    let prom = if promtool_ok {
        start_prometheus(&data, &blocks)
    } else {
        None
    };
    if prom.is_none() {
        println!("  anchor: promtool or prometheus failed or is not installed (apt-get install prometheus)");
    }
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .build();
    let six_hours = end - 6 * 3_600_000;
    let cases: [(&str, &str, i64, &str); 4] = [
        ("one series, 7 d at 5 m", "bench_requests_total{pod=\"pod-00042\"}", end - 7 * DAY_MS, "300"),
        ("sum by namespace of rate, 6 h at 1 m", "sum by (namespace) (rate(bench_requests_total[5m]))", six_hours, "60"),
        ("topk(10) of rate, 6 h at 1 m", "topk(10, rate(bench_requests_total[5m]))", six_hours, "60"),
        (
            "histogram_quantile(0.9), 6 h at 1 m",
            "histogram_quantile(0.9, sum by (namespace, le) (rate(bench_latency_seconds_bucket[5m])))",
            six_hours,
            "60",
        ),
    ];
    for (name, q, start, step) in cases {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let (_, s, p) = query(&agent, &ours_url, q, start, end, step);
        let anchor = prom.as_ref().map(|(_, url)| {
            let (_, ps, pp) = query(&agent, url, q, start, end, step);
            (url.clone(), ps, pp)
        });
        for _ in 0..5 {
            ours.push(query(&agent, &ours_url, q, start, end, step).0);
            if let Some((url, _, _)) = &anchor {
                theirs.push(query(&agent, url, q, start, end, step).0);
            }
        }
        let m = median(ours);
        match anchor {
            Some((_, ps, pp)) => {
                let pm = median(theirs);
                let same = if (s, p) == (ps, pp) {
                    "same answer size"
                } else {
                    "ANSWERS DIFFER"
                };
                println!(
                    "  {name}: ours {m:.1?}, Prometheus {pm:.1?}: {:.2}x (target <= 1.0x); {s} series, {p} points; {same} (Prometheus {ps} series, {pp} points)",
                    m.as_secs_f64() / pm.as_secs_f64()
                );
            }
            None => println!("  {name}: ours {m:.1?}; {s} series, {p} points"),
        }
    }
    drop(prom);
    drop(ours_proc);
    let moto = common::Moto::start("bench");
    if let Some(moto) = &moto {
        println!("  object store: the same files in an S3 bucket on moto_server, read by a fresh --read-only query node, against a fresh aggregator on the local files (goals: warm <= 1.2x, cold <= 3x)");
        upload(moto, &ours_dir, "query");
        for (name, q, start, step) in cases {
            bucket_case(
                moto,
                "query",
                &ours_dir,
                &agent,
                (name, q, start, end, step),
            );
        }
    } else {
        println!(
            "  object store: moto_server is not installed (python3 -m pip install 'moto[server]')"
        );
    }

    if long_days > 0 {
        let long_dir = work.path().join("long");
        let started = Instant::now();
        for day in (last_day - long_days + 1)..=last_day {
            write_ours(&long_dir, &specs, day, 300_000);
        }
        println!(
            "  long store: {} series x {long_days} days at 5 m written in {:.0?}",
            specs.len(),
            started.elapsed()
        );
        let (long, long_url) = start_ours(&long_dir);
        let q = "bench_requests_total{pod=\"pod-00042\"}";
        let start = end - long_days * DAY_MS;
        let (first, s, p) = query(&agent, &long_url, q, start, end, "3600");
        let runs: Vec<Duration> = (0..5)
            .map(|_| query(&agent, &long_url, q, start, end, "3600").0)
            .collect();
        println!(
            "  one series, {long_days} d at 1 h: first {first:.1?}, then median {:.1?} (target <= 100 ms); {s} series, {p} points",
            median(runs)
        );
        drop(long);
        if let Some(moto) = &moto {
            upload(moto, &long_dir, "long");
            let name = format!("one series, {long_days} d at 1 h");
            bucket_case(
                moto,
                "long",
                &long_dir,
                &agent,
                (&name, q, start, end, "3600"),
            );
        }
    }
}

/// Puts the files of the store in `dir` into the bucket under `prefix`: an aggregator
/// with `--object-store` uploads them; it is stopped once it has.
fn upload(moto: &common::Moto, dir: &Path, prefix: &str) {
    let target = format!("s3://bench/{prefix}");
    let (_up, url) = common::start_aggregator_env(dir, &["--object-store", &target], &moto.env());
    let begin = Instant::now();
    loop {
        let text = own_metrics(&url);
        let want = dir_bytes(&dir.join("data")).0 as f64;
        let sent = metric(
            &text,
            "telltale_aggregator_object_store_uploaded_bytes_total",
        );
        if sent >= want && metric(&text, "telltale_aggregator_object_store_pending_files") == 0.0 {
            println!(
                "    {prefix}: {:.0} MiB uploaded in {:.0?}",
                sent / (1 << 20) as f64,
                begin.elapsed()
            );
            return;
        }
        assert!(
            begin.elapsed() < Duration::from_secs(1800),
            "{prefix}: uploaded {sent} of {want} bytes in 30 minutes"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One query asked of two fresh processes: an aggregator on the local files in
/// `local_dir` and a query node over the bucket's `prefix` holding the same files. Each
/// answers once (cold: its footer cache, and the node's page cache, empty; the local
/// files are in the kernel's page cache either way), then 5 more times (warm, median).
/// The answers must be the same, byte for byte.
fn bucket_case(
    moto: &common::Moto,
    prefix: &str,
    local_dir: &Path,
    agent: &ureq::Agent,
    (name, q, start, end, step): (&str, &str, i64, i64, &str),
) {
    let run = |url: &str| {
        let (cold, _, _) = query(agent, url, q, start, end, step);
        let warm = median(
            (0..5)
                .map(|_| query(agent, url, q, start, end, step).0)
                .collect(),
        );
        (cold, warm, answer(agent, url, q, start, end, step))
    };
    let (local, local_url) = start_ours(local_dir);
    let (local_cold, local_warm, want) = run(&local_url);
    drop(local);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let target = format!("s3://bench/{prefix}");
    let (node, url) = common::start_aggregator_env(
        dir.path(),
        &["--read-only", "--object-store", &target],
        &moto.env(),
    );
    let (cold, warm, got) = run(&url);
    let text = own_metrics(&url);
    let read = metric(&text, "telltale_aggregator_object_store_read_bytes_total");
    let reads = metric(&text, "telltale_aggregator_object_store_reads_total");
    drop(node);
    let same = if got == want {
        "same answer"
    } else {
        "ANSWERS DIFFER"
    };
    println!(
        "    {name}: cold {cold:.1?} vs {local_cold:.1?} = {:.2}x (goal <= 3x), warm {warm:.1?} vs {local_warm:.1?} = {:.2}x (goal <= 1.2x); {:.1} MiB in {reads} range reads from the bucket; {same}",
        cold.as_secs_f64() / local_cold.as_secs_f64(),
        warm.as_secs_f64() / local_warm.as_secs_f64(),
        read / (1 << 20) as f64,
    );
}

/// The `/metrics` page of the process at `url`.
fn own_metrics(url: &str) -> String {
    ureq::get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap()
}

/// The value of the unlabelled series `name` on a `/metrics` page (-1 when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        .unwrap_or(-1.0)
}
