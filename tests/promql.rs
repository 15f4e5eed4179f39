//! Differential PromQL test: the aggregator's `/api/v1/query` and `/api/v1/query_range`
//! against a real Prometheus 2.42 holding the same samples.
//!
//! A deterministic synthetic data set (counters with resets, gauges, classic histograms, a
//! gap, stale markers, a late series; ~40 series, 3 h at 15 s) is remote-written, in time
//! order, to both. Every query of `tests/promql/corpus.txt` is then evaluated, on both, by
//! form-encoded POST: as instant queries at the data's start, its middle, inside the gap,
//! within and after the lookback past its end, and as range queries over the whole span at
//! a 60 s and a 37 s step. Answers must agree: HTTP status and `errorType` (not the error
//! message), resultType, series by label set (order ignored, except that the values of a
//! top-level `sort`/`sort_desc` instant vector must come in the same order), timestamps,
//! values within 1e-6 relative / 1e-9 absolute, NaN = NaN, infinities exactly.
//!
//! Corpus syntax: one query a line; blank lines and lines starting with `#` are ignored.
//! `${T}`, `${T+N}` and `${T-N}` stand for the data's base time (Unix seconds, an hour
//! boundary) plus or minus N seconds, e.g. `x @ ${T+3600}`.
//!
//! `tests/promql/known_differences.txt` lists the corpus lines allowed to differ, each after
//! a `#` line saying why. The test fails when any other query differs and when a listed
//! query agrees again (so the list only shrinks).
//!
//! Environment:
//! - `TELLTALE_PROMQL_AGAINST=prometheus`: self-check; "ours" is a second Prometheus 2.42
//!   loaded the same way, every query must agree and the known-differences list is not used.
//!   Default (`aggregator`): "ours" is `telltale aggregator`.
//! - `TELLTALE_PROMQL_ONLY=substring`: only the corpus lines containing it (for debugging).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;
use telltale_model::prom::STALE_NAN_BITS;
use telltale_model::remote::{TimeSeries, WriteRequest};

/// Selects what "ours" is: `aggregator` (default) or `prometheus` (self-check).
const AGAINST_ENV: &str = "TELLTALE_PROMQL_AGAINST";
/// Restricts the run to corpus lines containing this substring.
const ONLY_ENV: &str = "TELLTALE_PROMQL_ONLY";
/// Sample interval of the data set, seconds.
const INTERVAL_S: i64 = 15;
/// Span of the data set, seconds (samples at 0, 15, ..., SPAN_S after the base).
const SPAN_S: i64 = 3 * 3600;
/// Width of the time slice carried by one remote-write request, seconds.
const SLICE_S: i64 = 600;
/// Concurrent query workers.
const WORKERS: usize = 4;
/// Relative tolerance for values.
const REL_TOL: f64 = 1e-6;
/// Absolute tolerance for values (near zero).
const ABS_TOL: f64 = 1e-9;

// ---------------------------------------------------------------------------------------
// The data set

/// A deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x1234_5678)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One series: labels (sorted by name) and (timestamp ms, value) samples, oldest first.
struct Series {
    labels: Vec<(String, String)>,
    samples: Vec<(i64, f64)>,
}

fn series(labels: &[(&str, &str)], samples: Vec<(i64, f64)>) -> Series {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    labels.sort();
    Series { labels, samples }
}

/// Sample indexes 0..=SPAN_S/INTERVAL_S; index i is at base + 15 s * i.
const LAST: i64 = SPAN_S / INTERVAL_S;
/// Index at which instance b's process "restarts" (counters reset), 80 min in.
const RESTART_B: i64 = 320;

/// The synthetic data set, timestamps relative to `base` (ms).
fn dataset(base: i64) -> Vec<Series> {
    let at = |i: i64| base + i * INTERVAL_S * 1000;
    let stale = f64::from_bits(STALE_NAN_BITS);
    let mut out = Vec::new();

    // Counters with resets: http_requests_total{job="api"}, 6 label sets.
    let api = [
        ("a:9090", "GET", "200", 40u64),
        ("a:9090", "GET", "500", 3),
        ("a:9090", "POST", "200", 12),
        ("b:9090", "GET", "200", 35),
        ("b:9090", "POST", "200", 9),
        ("b:9090", "POST", "500", 2),
    ];
    for (n, (instance, method, code, per_step)) in api.into_iter().enumerate() {
        let mut rng = Rng::new(100 + n as u64);
        let mut v = 0.0;
        let mut samples = Vec::new();
        for i in 0..=LAST {
            let inc = rng.below(per_step * 2 + 1) as f64;
            let restart =
                (instance == "b:9090" && i == RESTART_B) || (n == 0 && (i == 500 || i == 620));
            v = if restart { inc / 4.0 } else { v + inc };
            samples.push((at(i), v));
        }
        out.push(series(
            &[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("instance", instance),
                ("method", method),
                ("code", code),
            ],
            samples,
        ));
    }
    // A counter scraped with jitter (timestamps not on the 15 s grid).
    {
        let mut rng = Rng::new(200);
        let mut v = 1000.0;
        let mut samples = Vec::new();
        for i in 0..=LAST {
            v += rng.below(20) as f64;
            let jitter = 1234 + rng.below(400) as i64 - 200;
            samples.push((at(i) + jitter, v));
        }
        out.push(series(
            &[
                ("__name__", "http_requests_total"),
                ("job", "web"),
                ("instance", "w:80"),
                ("method", "GET"),
                ("code", "200"),
            ],
            samples,
        ));
    }
    // Fractional counters.
    for (n, instance) in ["a:9090", "b:9090"].into_iter().enumerate() {
        let mut rng = Rng::new(300 + n as u64);
        let mut v = 17.25;
        let mut samples = Vec::new();
        for i in 0..=LAST {
            let inc = rng.unit() * 3.0;
            v = if instance == "b:9090" && i == RESTART_B {
                inc
            } else {
                v + inc
            };
            samples.push((at(i), v));
        }
        out.push(series(
            &[
                ("__name__", "process_cpu_seconds_total"),
                ("job", "api"),
                ("instance", instance),
            ],
            samples,
        ));
    }
    // Large gauges.
    for (n, instance) in ["a:9090", "b:9090"].into_iter().enumerate() {
        let mut rng = Rng::new(400 + n as u64);
        let mut v = 2.0e9 + n as f64 * 7.5e8;
        let mut samples = Vec::new();
        for i in 0..=LAST {
            v += (rng.below(2_000_001) as f64 - 1_000_000.0) * 4.0;
            samples.push((at(i), v));
        }
        out.push(series(
            &[
                ("__name__", "node_memory_free_bytes"),
                ("job", "node"),
                ("instance", instance),
            ],
            samples,
        ));
    }
    // Small gauges, negative and fractional; s3 holds one ordinary NaN and one +Inf.
    let sensors = [
        ("s1", "roof", 2.5, 15.0),
        ("s2", "basement", -3.75, 2.0),
        ("s3", "lab-1", 21.0, 0.5),
    ];
    for (n, (sensor, location, mid, amp)) in sensors.into_iter().enumerate() {
        let mut rng = Rng::new(500 + n as u64);
        let mut samples = Vec::new();
        for i in 0..=LAST {
            let phase = i as f64 / 120.0 * std::f64::consts::PI;
            let noise = (rng.below(1000) as f64 - 500.0) / 1000.0;
            let mut v = ((mid + amp * phase.sin() + noise) * 1000.0).round() / 1000.0;
            if sensor == "s3" && i == 200 {
                v = f64::NAN;
            }
            if sensor == "s3" && i == 560 {
                v = f64::INFINITY;
            }
            if sensor == "s2" && (100..110).contains(&i) {
                v = 0.0;
            }
            samples.push((at(i), v));
        }
        out.push(series(
            &[
                ("__name__", "temperature_celsius"),
                ("sensor", sensor),
                ("location", location),
            ],
            samples,
        ));
    }
    // Classic histograms, instance b resets with its process.
    let les = ["0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
    let bounds = [0.1, 0.25, 0.5, 1.0, 2.5, f64::INFINITY];
    for (n, instance) in ["a:9090", "b:9090"].into_iter().enumerate() {
        let mut rng = Rng::new(600 + n as u64);
        let mut buckets = vec![Vec::new(); les.len()];
        let (mut sum, mut count) = (Vec::new(), Vec::new());
        let mut c = [0u64; 6];
        let (mut s, mut k) = (0.0f64, 0u64);
        for i in 0..=LAST {
            if instance == "b:9090" && i == RESTART_B {
                c = [0; 6];
                s = 0.0;
                k = 0;
            }
            for _ in 0..rng.below(12) {
                let d = -(1.0 - rng.unit()).ln() * (0.3 + 0.2 * n as f64);
                s += d;
                k += 1;
                for (j, b) in bounds.iter().enumerate() {
                    if d <= *b {
                        c[j] += 1;
                    }
                }
            }
            for j in 0..les.len() {
                buckets[j].push((at(i), c[j] as f64));
            }
            sum.push((at(i), s));
            count.push((at(i), k as f64));
        }
        for (le, samples) in les.iter().zip(buckets) {
            out.push(series(
                &[
                    ("__name__", "request_duration_seconds_bucket"),
                    ("job", "api"),
                    ("instance", instance),
                    ("le", le),
                ],
                samples,
            ));
        }
        let base_labels = [("job", "api"), ("instance", instance)];
        for (name, samples) in [
            ("request_duration_seconds_sum", sum),
            ("request_duration_seconds_count", count),
        ] {
            let mut l = vec![("__name__", name)];
            l.extend(base_labels);
            out.push(series(&l, samples));
        }
    }
    // A gauge with a 12-minute gap (no samples from 60 min to 72 min), longer than the
    // 5-minute lookback.
    {
        let mut rng = Rng::new(700);
        let samples = (0..=LAST)
            .filter(|i| !(240..288).contains(i))
            .map(|i| (at(i), rng.below(50) as f64))
            .collect();
        out.push(series(
            &[
                ("__name__", "batch_queue_length"),
                ("job", "batch"),
                ("instance", "x:1"),
            ],
            samples,
        ));
    }
    // Series ending with a stale marker: t1 ends at 45 min; t2 ends at 100 min and comes
    // back at 130 min.
    {
        let mut t1: Vec<(i64, f64)> = (0..=180).map(|i| (at(i), i as f64 / 180.0)).collect();
        t1.push((at(181), stale));
        let mut t2: Vec<(i64, f64)> = (0..=400).map(|i| (at(i), i as f64 / 400.0)).collect();
        t2.push((at(401), stale));
        t2.extend((520..=LAST).map(|i| (at(i), (i - 520) as f64 / 200.0)));
        for (task, samples) in [("t1", t1), ("t2", t2)] {
            out.push(series(
                &[
                    ("__name__", "job_progress_ratio"),
                    ("job", "batch"),
                    ("task", task),
                ],
                samples,
            ));
        }
    }
    // A series appearing only in the second half, and one ending (stale) near the end.
    {
        let new = (LAST / 2..=LAST)
            .map(|i| (at(i), if i < 400 { 1.0 } else { 3.0 }))
            .collect();
        let mut old: Vec<(i64, f64)> = (0..700)
            .map(|i| (at(i), if i < LAST / 2 { 3.0 } else { 2.0 }))
            .collect();
        old.push((at(700), stale));
        for (deployment, samples) in [("new", new), ("old", old)] {
            out.push(series(
                &[
                    ("__name__", "deploy_replicas"),
                    ("namespace", "prod"),
                    ("deployment", deployment),
                ],
                samples,
            ));
        }
    }
    // Two counters with the same labels (same label set once the name is dropped), every
    // 30 s.
    for (n, name) in ["cache_hits_total", "cache_misses_total"]
        .into_iter()
        .enumerate()
    {
        let mut rng = Rng::new(800 + n as u64);
        let mut v = 0.0;
        let samples = (0..=LAST)
            .step_by(2)
            .map(|i| {
                v += rng.below(if n == 0 { 90 } else { 10 }) as f64;
                (at(i), v)
            })
            .collect();
        out.push(series(&[("__name__", name), ("cache", "users")], samples));
    }
    // Label values with regex metacharacters.
    for (n, path) in ["/api/v1/users/{id}", "/healthz"].into_iter().enumerate() {
        let mut rng = Rng::new(900 + n as u64);
        let mut v = 0.0;
        let samples = (0..=LAST)
            .map(|i| {
                v += rng.below(5) as f64;
                (at(i), v)
            })
            .collect();
        out.push(series(
            &[
                ("__name__", "api_path_requests_total"),
                ("job", "api"),
                ("path", path),
            ],
            samples,
        ));
    }
    out
}

/// The data set as remote-write bodies, one per SLICE_S of time, in time order (Prometheus
/// rejects samples older than its newest minus one hour).
fn bodies(data: &[Series]) -> Vec<Vec<u8>> {
    let first = data.iter().filter_map(|s| s.samples.first()).map(|p| p.0);
    let last = data.iter().filter_map(|s| s.samples.last()).map(|p| p.0);
    let (lo, hi) = (first.min().unwrap(), last.max().unwrap());
    let mut out = Vec::new();
    let mut start = lo;
    while start <= hi {
        let end = start + SLICE_S * 1000;
        let timeseries = data
            .iter()
            .filter_map(|s| {
                let samples: Vec<(i64, f64)> = s
                    .samples
                    .iter()
                    .copied()
                    .filter(|(t, _)| (start..end).contains(t))
                    .collect();
                if samples.is_empty() {
                    return None;
                }
                let labels: Vec<(&str, &str)> = s
                    .labels
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                Some(TimeSeries::new(&labels, &samples))
            })
            .collect();
        out.push(WriteRequest { timeseries }.encode_body());
        start = end;
    }
    out
}

/// POSTs every body to `url` in order; panics unless each is answered 2xx.
fn load(agent: &ureq::Agent, url: &str, bodies: &[Vec<u8>]) {
    for (n, body) in bodies.iter().enumerate() {
        let res = agent
            .post(url)
            .set("Content-Type", "application/x-protobuf")
            .set("Content-Encoding", "snappy")
            .set("X-Prometheus-Remote-Write-Version", "0.1.0")
            .send_bytes(body);
        match res {
            Ok(r) if (200..300).contains(&r.status()) => {}
            Ok(r) => panic!("remote write {n} to {url}: {}", r.status()),
            Err(ureq::Error::Status(code, r)) => panic!(
                "remote write {n} to {url}: {code} {}",
                r.into_string().unwrap_or_default()
            ),
            Err(e) => panic!("remote write {n} to {url}: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The servers

/// A query endpoint under test; the process is killed, then its directory removed, on drop.
struct Server {
    /// `http://127.0.0.1:<port>`.
    url: String,
    _process: Box<dyn std::any::Any>,
    _dir: tempfile::TempDir,
}

/// Starts Prometheus 2.42 as a remote-write receiver with no scrape targets; None when it is
/// not installed (see `common::tool`).
fn start_prometheus() -> Option<Server> {
    let dir = tempfile::tempdir().unwrap();
    let prom = common::Prometheus::start(
        dir.path(),
        // evaluation_interval is the step of subqueries written without one.
        |_| "global:\n  scrape_interval: 15s\n  evaluation_interval: 1m\n".to_string(),
        &["--web.enable-remote-write-receiver"],
    )?;
    let ready = format!("{}/-/ready", prom.url);
    common::eventually(Duration::from_secs(30), || {
        common::try_get(&ready).ok().filter(|(s, _)| *s == 200)
    })
    .expect("Prometheus did not become ready");
    Some(Server {
        url: prom.url.clone(),
        _process: Box::new(prom),
        _dir: dir,
    })
}

/// Starts the aggregator holding `bodies` with the first half in Parquet files (written by
/// a SIGTERM flush, then a restart) and the second half in its head, so every query reads
/// both and merges series across them.
fn start_aggregator(agent: &ureq::Agent, bodies: &[Vec<u8>]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data").display().to_string();
    let (first, second) = bodies.split_at(bodies.len() / 2);
    let mut a = common::spawn(&["aggregator", "--data-dir", &d]);
    load(agent, &format!("http://{}/api/v1/write", a.addr), first);
    let status = a
        .terminate(Duration::from_secs(30))
        .expect("the aggregator exits on SIGTERM");
    assert!(status.success(), "{status}");
    let files = std::fs::read_dir(dir.path().join("data/data"))
        .map(|days| {
            days.flatten()
                .flat_map(|day| std::fs::read_dir(day.path()).into_iter().flatten())
                .count()
        })
        .unwrap_or(0);
    assert!(files > 0, "the flush wrote no Parquet file");
    let a = common::spawn(&["aggregator", "--data-dir", &d]);
    load(agent, &format!("http://{}/api/v1/write", a.addr), second);
    Server {
        url: format!("http://{}", a.addr),
        _process: Box::new(a),
        _dir: dir,
    }
}

// ---------------------------------------------------------------------------------------
// Queries and answers

/// One evaluation of a query.
#[derive(Clone, Copy, Debug)]
enum Eval {
    /// An instant query at this time (ms).
    Instant(i64),
    /// A range query: start, end, step (ms).
    Range(i64, i64, i64),
}

/// Seconds with millisecond precision, as the API takes them.
fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

impl Eval {
    fn describe(&self, base: i64) -> String {
        let rel = |ms: i64| {
            let d = ms - base;
            format!("T{}{}s", if d < 0 { "-" } else { "+" }, secs(d.abs()))
        };
        match *self {
            Eval::Instant(t) => format!("instant at {} ({})", rel(t), secs(t)),
            Eval::Range(s, e, step) => format!(
                "range {}..{} step {}s ({}..{})",
                rel(s),
                rel(e),
                step / 1000,
                secs(s),
                secs(e)
            ),
        }
    }
}

/// A sample: timestamp (ms) and value as sent (a string).
#[derive(Debug, Clone)]
struct Point {
    t: i64,
    v: String,
}

type Labels = Vec<(String, String)>;

/// A successful result, normalised.
#[derive(Debug)]
enum Res {
    Scalar(Point),
    Str(i64, String),
    Vector(Vec<(Labels, Point)>),
    Matrix(Vec<(Labels, Vec<Point>)>),
}

/// What an endpoint answered.
#[derive(Debug)]
enum Outcome {
    Ok(Res),
    Error {
        http: u16,
        kind: String,
        msg: String,
    },
    /// Not an answer in Prometheus's shape (transport error, 404, bad JSON ...).
    Broken(String),
}

fn post_query(agent: &ureq::Agent, url: &str, query: &str, eval: Eval) -> Outcome {
    let (path, form): (&str, Vec<(&str, String)>) = match eval {
        Eval::Instant(t) => (
            "/api/v1/query",
            vec![("query", query.into()), ("time", secs(t))],
        ),
        Eval::Range(s, e, step) => (
            "/api/v1/query_range",
            vec![
                ("query", query.into()),
                ("start", secs(s)),
                ("end", secs(e)),
                ("step", secs(step)),
            ],
        ),
    };
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = match agent.post(&format!("{url}{path}")).send_form(&form) {
        Ok(r) => (r.status(), r.into_string()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string()),
        Err(e) => return Outcome::Broken(format!("transport: {e}")),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return Outcome::Broken(format!("HTTP {status}, unreadable body: {e}")),
    };
    parse_answer(status, &body).unwrap_or_else(|e| {
        let mut b = body;
        b.truncate(200);
        Outcome::Broken(format!("HTTP {status}: {e}: {b}"))
    })
}

fn parse_answer(status: u16, body: &str) -> Result<Outcome, String> {
    let j: Json = serde_json::from_str(body).map_err(|e| format!("not JSON ({e})"))?;
    match j["status"].as_str() {
        Some("success") if status == 200 => {
            let data = &j["data"];
            let result = &data["result"];
            let res = match data["resultType"].as_str() {
                Some("scalar") => Res::Scalar(point(result)?),
                Some("string") => {
                    let p = result
                        .as_array()
                        .filter(|a| a.len() == 2)
                        .ok_or("bad string")?;
                    let s = p[1].as_str().ok_or("string result not a string")?;
                    Res::Str(time_ms(&p[0])?, s.to_string())
                }
                Some("vector") => Res::Vector(
                    result
                        .as_array()
                        .ok_or("vector result not an array")?
                        .iter()
                        .map(|e| Ok((labels(&e["metric"])?, point(&e["value"])?)))
                        .collect::<Result<_, String>>()?,
                ),
                Some("matrix") => Res::Matrix(
                    result
                        .as_array()
                        .ok_or("matrix result not an array")?
                        .iter()
                        .map(|e| {
                            let values = e["values"].as_array().ok_or("no values array")?;
                            Ok((
                                labels(&e["metric"])?,
                                values.iter().map(point).collect::<Result<_, _>>()?,
                            ))
                        })
                        .collect::<Result<_, String>>()?,
                ),
                other => return Err(format!("unknown resultType {other:?}")),
            };
            Ok(Outcome::Ok(res))
        }
        Some("error") if status >= 400 => Ok(Outcome::Error {
            http: status,
            kind: j["errorType"].as_str().unwrap_or("<none>").to_string(),
            msg: j["error"].as_str().unwrap_or("<none>").to_string(),
        }),
        other => Err(format!("status field {other:?} with HTTP {status}")),
    }
}

fn time_ms(t: &Json) -> Result<i64, String> {
    let f = t
        .as_f64()
        .ok_or_else(|| format!("timestamp {t} not a number"))?;
    Ok((f * 1000.0).round() as i64)
}

fn point(p: &Json) -> Result<Point, String> {
    let a = p
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or("point not a pair")?;
    let v = a[1]
        .as_str()
        .ok_or_else(|| format!("value {} not a string", a[1]))?;
    Ok(Point {
        t: time_ms(&a[0])?,
        v: v.to_string(),
    })
}

fn labels(m: &Json) -> Result<Labels, String> {
    let o = m.as_object().ok_or("metric not an object")?;
    let mut l = o
        .iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                v.as_str().ok_or("label value not a string")?.to_string(),
            ))
        })
        .collect::<Result<Labels, String>>()?;
    l.sort();
    Ok(l)
}

fn show(l: &Labels) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok().filter(|v: &f64| v.is_finite()),
    }
}

/// Values agree: NaN = NaN, infinities exactly, finite values within tolerance.
fn same_value(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (parse_value(a), parse_value(b)) {
        (Some(x), Some(y)) if x.is_nan() || y.is_nan() => x.is_nan() && y.is_nan(),
        (Some(x), Some(y)) if x.is_infinite() || y.is_infinite() => x == y,
        (Some(x), Some(y)) => {
            let d = (x - y).abs();
            d <= ABS_TOL || d <= REL_TOL * x.abs().max(y.abs())
        }
        _ => false,
    }
}

fn diff_point(want: &Point, got: &Point) -> Option<String> {
    if want.t != got.t {
        return Some(format!(
            "timestamp {} vs ours {}",
            secs(want.t),
            secs(got.t)
        ));
    }
    (!same_value(&want.v, &got.v))
        .then(|| format!("at {}: value {} vs ours {}", secs(want.t), want.v, got.v))
}

/// The same label sets on both sides, then the first pair of elements `each` finds apart.
fn diff_by_labels<T: Clone>(
    want: &[(Labels, T)],
    got: &[(Labels, T)],
    each: impl Fn(&T, &T) -> Option<String>,
) -> Option<String> {
    let (w, g) = (sorted(want.to_vec()), sorted(got.to_vec()));
    let (wl, gl): (Vec<Labels>, Vec<Labels>) = (
        w.iter().map(|e| e.0.clone()).collect(),
        g.iter().map(|e| e.0.clone()).collect(),
    );
    diff_sets(&wl, &gl).or_else(|| {
        w.iter()
            .zip(&g)
            .find_map(|((l, a), (_, b))| each(a, b).map(|d| format!("{}: {d}", show(l))))
    })
}

fn sorted<T>(mut v: Vec<(Labels, T)>) -> Vec<(Labels, T)> {
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Series by label set: the first one missing and the first extra, or duplicates.
fn diff_sets(want: &[Labels], got: &[Labels]) -> Option<String> {
    let w: BTreeSet<&Labels> = want.iter().collect();
    let g: BTreeSet<&Labels> = got.iter().collect();
    if g.len() != got.len() {
        return Some("ours has duplicate label sets".into());
    }
    let missing = w.difference(&g).next();
    let extra = g.difference(&w).next();
    if missing.is_none() && extra.is_none() {
        return None;
    }
    let mut out = Vec::new();
    if let Some(m) = missing {
        out.push(format!("missing in ours: {}", show(m)));
    }
    if let Some(e) = extra {
        out.push(format!("extra in ours: {}", show(e)));
    }
    Some(format!(
        "{} ({} series vs ours {})",
        out.join("; "),
        want.len(),
        got.len()
    ))
}

/// The first difference between Prometheus's answer (`want`) and ours; `ordered` also
/// compares the sequence of values of an instant vector (sort, sort_desc).
fn diff(want: &Outcome, got: &Outcome, ordered: bool) -> Option<String> {
    match (want, got) {
        (_, Outcome::Broken(e)) => Some(format!("ours answered no Prometheus JSON: {e}")),
        (Outcome::Broken(e), _) => Some(format!("Prometheus answered no JSON: {e}")),
        (
            Outcome::Error { http, kind, .. },
            Outcome::Error {
                http: h2, kind: k2, ..
            },
        ) => (http != h2 || kind != k2).then(|| format!("error {http} {kind} vs ours {h2} {k2}")),
        (Outcome::Error { http, kind, msg }, Outcome::Ok(_)) => Some(format!(
            "Prometheus errs ({http} {kind}: {msg}), ours succeeds"
        )),
        (Outcome::Ok(_), Outcome::Error { http, kind, msg }) => Some(format!(
            "ours errs ({http} {kind}: {msg}), Prometheus succeeds"
        )),
        (Outcome::Ok(w), Outcome::Ok(g)) => diff_res(w, g, ordered),
    }
}

fn diff_res(want: &Res, got: &Res, ordered: bool) -> Option<String> {
    match (want, got) {
        (Res::Scalar(w), Res::Scalar(g)) => diff_point(w, g),
        (Res::Str(wt, w), Res::Str(gt, g)) => (wt != gt || w != g).then(|| {
            format!(
                "string ({}, {w:?}) vs ours ({}, {g:?})",
                secs(*wt),
                secs(*gt)
            )
        }),
        (Res::Vector(w), Res::Vector(g)) => {
            if ordered {
                let wv: Vec<&str> = w.iter().map(|(_, p)| p.v.as_str()).collect();
                let gv: Vec<&str> = g.iter().map(|(_, p)| p.v.as_str()).collect();
                if wv.len() == gv.len() && !wv.iter().zip(&gv).all(|(a, b)| same_value(a, b)) {
                    return Some(format!("order of values {wv:?} vs ours {gv:?}"));
                }
            }
            diff_by_labels(w, g, diff_point)
        }
        (Res::Matrix(w), Res::Matrix(g)) => {
            diff_by_labels(w, g, |a: &Vec<Point>, b: &Vec<Point>| {
                let first = a.iter().zip(b).find_map(|(p, q)| diff_point(p, q));
                first.or_else(|| {
                    (a.len() != b.len()).then(|| {
                        let t = |s: &[Point]| s.get(a.len().min(b.len())).map(|p| secs(p.t));
                        format!(
                            "{} points vs ours {} (first unmatched: {:?} vs ours {:?})",
                            a.len(),
                            b.len(),
                            t(a),
                            t(b)
                        )
                    })
                })
            })
        }
        (w, g) => Some(format!(
            "resultType {} vs ours {}",
            res_type(w),
            res_type(g)
        )),
    }
}

fn res_type(r: &Res) -> &'static str {
    match r {
        Res::Scalar(_) => "scalar",
        Res::Str(..) => "string",
        Res::Vector(_) => "vector",
        Res::Matrix(_) => "matrix",
    }
}

// ---------------------------------------------------------------------------------------
// Corpus files

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql")
}

/// Query lines of a corpus-format file (comments and blank lines dropped), with line numbers.
fn query_lines(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim().to_string()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Replaces `${T}`, `${T+N}`, `${T-N}` with base (seconds) + N.
fn substitute(q: &str, base_s: i64) -> String {
    let mut out = String::new();
    let mut rest = q;
    while let Some(i) = rest.find("${T") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let end = after
            .find('}')
            .unwrap_or_else(|| panic!("unterminated ${{T in {q}"));
        let off = after[..end].trim();
        let n: i64 = if off.is_empty() {
            0
        } else {
            let (sign, digits) = off.split_at(1);
            let v: i64 = digits
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad placeholder in {q}"));
            match sign {
                "+" => v,
                "-" => -v,
                _ => panic!("bad placeholder in {q}"),
            }
        };
        write!(out, "{}", base_s + n).unwrap();
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// True for queries whose instant result order is Prometheus's contract.
fn ordered(q: &str) -> bool {
    q.starts_with("sort(") || q.starts_with("sort_desc(")
}

// ---------------------------------------------------------------------------------------
// The test

#[test]
fn promql_matches_prometheus() {
    let started = Instant::now();
    let self_check = match std::env::var(AGAINST_ENV).as_deref() {
        Ok("prometheus") => true,
        Ok("aggregator") | Err(_) => false,
        Ok(other) => panic!("{AGAINST_ENV}={other}: expected `aggregator` or `prometheus`"),
    };
    let only = std::env::var(ONLY_ENV).ok();

    let corpus = query_lines(&dir().join("corpus.txt"));
    let mut seen = BTreeSet::new();
    for (n, q) in &corpus {
        assert!(
            seen.insert(q.clone()),
            "corpus.txt:{n}: duplicate query {q}"
        );
    }
    let known_path = dir().join("known_differences.txt");
    let known: Vec<(usize, String)> = query_lines(&known_path);
    let raw = std::fs::read_to_string(&known_path).unwrap();
    let raw: Vec<&str> = raw.lines().map(str::trim).collect();
    for (n, q) in &known {
        assert!(
            *n >= 2 && raw[n - 2].starts_with('#'),
            "known_differences.txt:{n}: {q} needs a `#` line before it saying why it differs"
        );
    }
    for (n, q) in &known {
        assert!(
            seen.contains(q),
            "known_differences.txt:{n}: {q} is not in corpus.txt"
        );
    }
    let known: BTreeSet<String> = known.into_iter().map(|(_, q)| q).collect();
    let corpus: Vec<String> = corpus
        .into_iter()
        .map(|(_, q)| q)
        .filter(|q| only.as_ref().is_none_or(|o| q.contains(o.as_str())))
        .collect();

    // Data: 4 h ago rounded down to the hour, 3 h long.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = (now_ms - 4 * 3_600_000).div_euclid(3_600_000) * 3_600_000;
    let data = dataset(base);
    let bodies = bodies(&data);

    let Some(reference) = start_prometheus() else {
        return;
    };
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .max_idle_connections_per_host(WORKERS * 2)
        .build();
    let ours = if self_check {
        let p = start_prometheus().expect("a second Prometheus");
        load(&agent, &format!("{}/api/v1/write", p.url), &bodies);
        p
    } else {
        start_aggregator(&agent, &bodies)
    };
    let (rurl, ourl) = (reference.url.clone(), ours.url.clone());
    load(&agent, &format!("{rurl}/api/v1/write"), &bodies);
    let samples: usize = data.iter().map(|s| s.samples.len()).sum();
    eprintln!(
        "loaded {} series, {samples} samples in {} requests into both (base {}, {:.1?})",
        data.len(),
        bodies.len(),
        base / 1000,
        started.elapsed()
    );

    let s = 1000;
    let end = base + SPAN_S * s;
    let evals = [
        // The first samples; the middle, off the 15 s grid; inside batch_queue_length's
        // gap past the lookback; 2 min after the end (within the lookback); past it.
        Eval::Instant(base),
        Eval::Instant(base + 5407 * s + 500),
        Eval::Instant(base + 66 * 60 * s + 30 * s),
        Eval::Instant(end + 120 * s),
        Eval::Instant(end + 330 * s),
        // The whole span and more, at a step dividing an hour and at one that does not.
        Eval::Range(base - 300 * s, end + 600 * s, 60 * s),
        Eval::Range(base - 123 * s, end + 600 * s, 37 * s),
    ];
    let queries: Vec<String> = corpus.iter().map(|q| substitute(q, base / 1000)).collect();

    // Evaluate every (query, eval) on both, WORKERS at a time.
    let jobs = queries.len() * evals.len();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, usize, String)>> = Mutex::new(Vec::new());
    let stats = Mutex::new([0usize; 3]); // errors, empty, non-empty (reference side)
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                if j >= jobs {
                    break;
                }
                let (qi, ei) = (j / evals.len(), j % evals.len());
                let (q, eval) = (&queries[qi], evals[ei]);
                let want = post_query(&agent, &rurl, q, eval);
                let got = post_query(&agent, &ourl, q, eval);
                {
                    let mut st = stats.lock().unwrap();
                    match &want {
                        Outcome::Error { .. } | Outcome::Broken(_) => st[0] += 1,
                        Outcome::Ok(Res::Vector(v)) if v.is_empty() => st[1] += 1,
                        Outcome::Ok(Res::Matrix(v)) if v.is_empty() => st[1] += 1,
                        Outcome::Ok(_) => st[2] += 1,
                    }
                }
                let ord = matches!(eval, Eval::Instant(_)) && ordered(&corpus[qi]);
                if let Some(d) = diff(&want, &got, ord) {
                    results.lock().unwrap().push((qi, ei, d));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| (r.0, r.1));
    let stats = stats.into_inner().unwrap();

    // Report.
    let mut report = String::new();
    let mut unexpected = 0;
    let mut differing = BTreeSet::new();
    for group in results.chunk_by(|a, b| a.0 == b.0) {
        let qi = group[0].0;
        differing.insert(corpus[qi].clone());
        if !self_check && known.contains(&corpus[qi]) {
            continue;
        }
        unexpected += 1;
        writeln!(report, "\nDIFFERS: {}", corpus[qi]).unwrap();
        if queries[qi] != corpus[qi] {
            writeln!(report, "  (as sent: {})", queries[qi]).unwrap();
        }
        for (_, ei, d) in group.iter().take(3) {
            writeln!(report, "  {}: {d}", evals[*ei].describe(base)).unwrap();
        }
        if group.len() > 3 {
            writeln!(report, "  ... and {} more evaluations", group.len() - 3).unwrap();
        }
    }
    let mut fixed = Vec::new();
    if !self_check {
        for q in &known {
            if corpus.contains(q) && !differing.contains(q) {
                fixed.push(q.clone());
                writeln!(
                    report,
                    "\nNOW MATCHES (remove it from known_differences.txt): {q}"
                )
                .unwrap();
            }
        }
    }
    let listed = differing.iter().filter(|q| known.contains(*q)).count();
    eprintln!(
        "{} queries x {} evaluations against {}: {} evaluations ({} errors, {} empty, {} \
         non-empty on Prometheus); {} queries differ unexpectedly, {} known differences{}, \
         {} known differences now match ({:.1?})",
        corpus.len(),
        evals.len(),
        if self_check {
            "a second Prometheus"
        } else {
            "the aggregator"
        },
        jobs,
        stats[0],
        stats[1],
        stats[2],
        unexpected,
        if self_check { 0 } else { listed },
        if self_check {
            " (ignored in self-check)"
        } else {
            ""
        },
        fixed.len(),
        started.elapsed()
    );
    assert!(
        unexpected == 0 && fixed.is_empty(),
        "{report}\n\n{unexpected} queries differ from Prometheus 2.42 and are not in \
         tests/promql/known_differences.txt; {} listed queries now match",
        fixed.len()
    );
    drop(ours);
    drop(reference);
}
