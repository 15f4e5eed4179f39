//! Long-range queries over imported data (issue 19): Telltale against Prometheus 2.42 and
//! VictoriaMetrics 1.79 in the same run, on the same samples, answers compared.
//!
//! `cargo bench --bench longrange`. Environment:
//!
//! - `BENCH_DAYS=N`: days of set A (default 30; 2 makes a quick run).
//! - `BENCH_DATA=DIR`: keeps the generated text files and the stores in DIR and reuses them
//!   on the next run (Telltale's set A store is imported anew every run: it is the code
//!   under test, and the import is timed).
//! - `BENCH_RUNS=N`: timed runs per query and system after the warm-up (default 5).
//! - `BENCH_FLEET=1`: also set B (Telltale and VictoriaMetrics only), with
//!   `BENCH_FLEET_DAYS` (default 90) and `BENCH_FLEET_INTERVAL` seconds (default 60);
//!   `BENCH_REIMPORT=1` rebuilds a kept set B Telltale store.
//!
//! Set A: 300 counters `steer_req_total{namespace="ns-0".."ns-9", pod}` every 15 s for
//! `BENCH_DAYS` days ending at the last UTC midnight, growing by pseudo-random amounts,
//! each reset about once a week at its own moment. Written once as OpenMetrics text, one
//! file per day; Telltale gets the files through `telltale import`, Prometheus through
//! `promtool tsdb create-blocks-from openmetrics` (24 h blocks, then its own compaction,
//! waited for), VictoriaMetrics through `POST /api/v1/import/prometheus` (the same lines,
//! timestamps in ms, then a flush and a count of every sample).
//!
//! Set B: 10,000 counters `fleet_req_total{namespace (50), pod}` over 90 days at 60 s, made
//! and imported one day at a time (the text is not kept: at 60 s it is about 1 GB a day).
//! 15 s (5.2 billion samples) would take about four times the 20-odd minutes this takes.
//!
//! Every system gets a 10 minute query timeout; VictoriaMetrics runs with
//! `-search.disableCache`, so repeated queries are not answered from its response cache.
//!
//! Each query is Grafana's `query_range`; it runs once on every system to warm up, then
//! `BENCH_RUNS` times in turn, and the medians are compared. Telltale runs twice: with no
//! `max_source_resolution` (its default, auto) and with `max_source_resolution=raw`; the
//! `X-Telltale-Resolution` header, when the aggregator sends one, says what answered.
//! A variant whose warm-up takes over 30 s is timed once more, not `BENCH_RUNS` times.
//! Telltale's aggregator is started afresh for each query's timing, and again for each
//! variant's memory: its idle VmRSS, VmHWM reset through `/proc/<pid>/clear_refs`, one
//! query, then VmHWM (so no other query's leftovers count). Raw answers must equal
//! Prometheus's within 1e-9 relative per point; the other differences are printed.
//! Errors, refusals and a raw mismatch fail the benchmark after the tables are printed.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed benchmark

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use telltale_model::calendar::{day_name, DAY_MS, HOUR_MS};

mod common;
use common::{dir_bytes, free_port, process_cpu, status_kib, wait_ready, Killed};

/// Raw answers may differ from Prometheus's by this much, relative, per point.
const RAW_TOLERANCE: f64 = 1e-9;
/// Counters reset this often, each at its own offset (not on a day's edge).
const RESET_MS: i64 = 7 * DAY_MS + 5 * HOUR_MS;
/// Every system's query timeout (theirs are 2 min for Telltale and Prometheus, 30 s for
/// VictoriaMetrics): a slow answer is measured, not cut short.
const QUERY_TIMEOUT: &str = "10m";
/// A variant whose warm-up took longer than this is timed once, not `BENCH_RUNS` times.
const SLOW: Duration = Duration::from_secs(30);
/// Bytes of text in one VictoriaMetrics import request.
const VM_CHUNK: usize = 32 << 20;

/// One data set: its series and the days they cover.
struct Set {
    name: &'static str,
    metric: &'static str,
    series: usize,
    namespaces: usize,
    pod_prefix: &'static str,
    every_ms: i64,
    days: i64,
    last_day: i64,
}

impl Set {
    fn first_day(&self) -> i64 {
        self.last_day - self.days + 1
    }

    /// Midnight after the last day: the queries end there.
    fn end(&self) -> i64 {
        (self.last_day + 1) * DAY_MS
    }

    fn samples_per_day(&self) -> u64 {
        self.series as u64 * (DAY_MS / self.every_ms) as u64
    }

    fn samples(&self) -> u64 {
        self.samples_per_day() * self.days as u64
    }

    /// `metric{namespace="ns-N",pod="..."}`.
    fn head(&self, i: usize) -> String {
        format!(
            "{}{{namespace=\"ns-{}\",pod=\"{}-{i:05}\"}}",
            self.metric,
            i % self.namespaces,
            self.pod_prefix
        )
    }

    /// Series `i` at time `t`: a counter growing by a pseudo-random amount per sample
    /// (between 0.25 and twice its own mean, in quarters, so it always grows), reset every
    /// [`RESET_MS`] at its own offset. Every value is a multiple of 0.25 well under 2^53,
    /// so sums are exact.
    fn value(&self, i: usize, t: i64) -> f64 {
        let offset = (i as i64 * 7_919 * 60_000) % RESET_MS;
        let since_reset = ((t + offset).rem_euclid(RESET_MS) / self.every_ms) as u64;
        let quarters = 4 + 2 * (i % 7) as u64;
        let jitter = mix(((i as u64) << 40) ^ (t / self.every_ms) as u64) % quarters;
        (since_reset * quarters + jitter) as f64 * 0.25
    }

    /// Writes day `day` as OpenMetrics (seconds with three decimals, `# EOF`) or as the
    /// Prometheus text format (ms).
    fn write_day(&self, day: i64, path: &Path, openmetrics: bool) {
        let file = std::fs::File::create(path).unwrap();
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let family = self.metric.strip_suffix("_total").unwrap();
        if openmetrics {
            writeln!(w, "# TYPE {family} counter").unwrap();
        } else {
            writeln!(w, "# TYPE {} counter", self.metric).unwrap();
        }
        let start = day * DAY_MS;
        for i in 0..self.series {
            let head = self.head(i);
            for k in 0..DAY_MS / self.every_ms {
                let t = start + k * self.every_ms;
                let v = self.value(i, t);
                if openmetrics {
                    writeln!(w, "{head} {v} {}.{:03}", t / 1000, t % 1000).unwrap();
                } else {
                    writeln!(w, "{head} {v} {t}").unwrap();
                }
            }
        }
        if openmetrics {
            writeln!(w, "# EOF").unwrap();
        }
        w.flush().unwrap();
    }
}

/// splitmix64's finaliser: a well-spread hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn env_num(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// Whether `binary` runs; as root, tries `apt-get install -y package` once when it does
/// not. Prints what is skipped otherwise.
fn ensure_tool(binary: &str, package: &str, what: &str) -> bool {
    let runs = |b: &str| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if runs(binary) {
        return true;
    }
    if rustix::process::geteuid().is_root() {
        println!("  {binary} is missing: apt-get install -y {package}");
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-q", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status();
        if runs(binary) {
            return true;
        }
    }
    println!(
        "  SKIPPED {what}: `{binary}` is not installed and could not be installed \
         (apt-get install {package} as root)"
    );
    false
}

/// Waits until process `pid` has used under 5% of a core for two seconds in a row, up to
/// `limit`; returns how long that took.
fn wait_idle(pid: u32, limit: Duration, who: &str) -> Duration {
    let begin = Instant::now();
    let mut quiet = 0;
    while begin.elapsed() < limit {
        let before = process_cpu(pid);
        std::thread::sleep(Duration::from_secs(1));
        if process_cpu(pid) - before < Duration::from_millis(50) {
            quiet += 1;
            if quiet == 2 {
                return begin.elapsed();
            }
        } else {
            quiet = 0;
        }
    }
    println!("  ({who} was still busy after {limit:?})");
    begin.elapsed()
}

/// A child stopped with SIGTERM when dropped (killed if it has not exited a minute later):
/// VictoriaMetrics writes the parts it holds in memory to disk then, and a kept store
/// stays whole.
struct Terminated(std::process::Child);

impl Drop for Terminated {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `telltale import --data-dir dir files...`, its output captured.
fn telltale_import(dir: &Path, files: &[PathBuf]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_telltale"));
    c.arg("import").arg("--data-dir").arg(dir).args(files);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Checks a finished import and returns (samples, files) from its summary line.
fn import_summary(out: std::process::Output, expected: u64) -> (u64, u64) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "telltale import failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("imported "))
        .unwrap_or_else(|| panic!("telltale import said no summary: {stdout}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let samples: u64 = words[1].parse().unwrap();
    let files: u64 = words[4].parse().unwrap();
    assert_eq!(
        samples, expected,
        "telltale import took {samples} samples, {expected} were written: {line}"
    );
    (samples, files)
}

/// `telltale aggregator` on a free port, no flush or compaction for a day (nothing is
/// written to it: the store stays as imported), retention past the data; once ready and
/// idle.
fn start_ours(data: &Path) -> (Killed, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_telltale"))
        .args(["aggregator", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args([
            "--retention",
            "400d",
            "--retention-5m",
            "400d",
            "--retention-1h",
            "400d",
        ])
        .args(["--flush-interval", "24h", "--query-timeout", QUERY_TIMEOUT])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the aggregator");
    let killed = Killed(child);
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{url}/readyz"));
    wait_idle(killed.0.id(), Duration::from_secs(300), "the aggregator");
    (killed, url)
}

fn start_prometheus(dir: &Path, tsdb: &Path) -> Option<(Killed, String)> {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n").unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg("--storage.tsdb.retention.time=1y")
        .arg(format!("--query.timeout={QUERY_TIMEOUT}"))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{url}/-/ready"));
    Some((Killed(child), url))
}

/// A counter of Prometheus's own `/metrics`.
fn prometheus_metric(url: &str, name: &str) -> f64 {
    let body = ureq::get(&format!("{url}/metrics"))
        .call()
        .map(|r| r.into_string().unwrap_or_default())
        .unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Prometheus compacts the backfilled day blocks into longer ones on its first tick, a
/// minute after start: waits for that tick and for the compaction to end.
fn wait_prometheus_compaction(pid: u32, url: &str) {
    let begin = Instant::now();
    while prometheus_metric(url, "prometheus_tsdb_compactions_triggered_total") < 1.0
        && begin.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_secs(1));
    }
    wait_idle(pid, Duration::from_secs(1800), "Prometheus");
    println!(
        "  Prometheus compacted its blocks in {:.0?} ({} compactions)",
        begin.elapsed(),
        prometheus_metric(url, "prometheus_tsdb_compactions_total")
    );
}

fn start_vm(storage: &Path) -> Option<(Terminated, String)> {
    let port = free_port();
    let child = Command::new("victoria-metrics")
        .arg(format!("-storageDataPath={}", storage.display()))
        .arg("-retentionPeriod=2y")
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-search.maxPointsPerTimeseries=100000")
        .arg("-search.disableCache")
        // Set B scans 1.3 billion samples in one query (the default stops at 1 billion).
        .arg("-search.maxSamplesPerQuery=100000000000")
        .arg(format!("-search.maxQueryDuration={QUERY_TIMEOUT}"))
        .arg("-loggerLevel=ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let url = format!("http://127.0.0.1:{port}");
    let child = Terminated(child);
    wait_ready(&format!("{url}/health"));
    Some((child, url))
}

/// Sends text lines to VictoriaMetrics' Prometheus-format import in chunks of whole
/// lines; `seconds` lines (OpenMetrics, `SSS.mmm`) get ms timestamps; comments are left
/// out.
fn vm_import(agent: &ureq::Agent, url: &str, path: &Path, seconds: bool) {
    let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(path).unwrap());
    let mut body = Vec::with_capacity(VM_CHUNK + (1 << 16));
    let mut line = Vec::new();
    let send = |body: &mut Vec<u8>| {
        if body.is_empty() {
            return;
        }
        let resp = agent
            .post(&format!("{url}/api/v1/import/prometheus"))
            .send_bytes(body)
            .unwrap_or_else(|e| panic!("VictoriaMetrics import: {e}"));
        assert!(
            resp.status() < 300,
            "VictoriaMetrics import: {}",
            resp.status()
        );
        body.clear();
    };
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        if line.first() == Some(&b'#') || line == b"\n" {
            continue;
        }
        if seconds {
            let sp = line.iter().rposition(|&b| b == b' ').unwrap();
            body.extend_from_slice(&line[..=sp]);
            body.extend(line[sp + 1..].iter().filter(|&&b| b != b'.'));
        } else {
            body.extend_from_slice(&line);
        }
        if body.len() >= VM_CHUNK {
            send(&mut body);
        }
    }
    send(&mut body);
}

/// Samples of `metric` VictoriaMetrics holds up to `end` (counted by a query, so only what
/// is searchable).
fn vm_count(agent: &ureq::Agent, url: &str, set: &Set) -> u64 {
    let minutes = set.days * 24 * 60 + 1;
    let q = format!("sum(count_over_time({}[{minutes}m]))", set.metric);
    let resp = agent.post(&format!("{url}/api/v1/query")).send_form(&[
        ("query", q.as_str()),
        ("time", &(set.end() / 1000).to_string()),
    ]);
    let Ok(resp) = resp else { return 0 };
    let v: serde_json::Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// Flushes VictoriaMetrics' in-memory parts and waits until a query counts every sample
/// of `set`, then until its background merges are done.
fn vm_settle(agent: &ureq::Agent, url: &str, pid: u32, set: &Set) {
    let begin = Instant::now();
    loop {
        let _ = agent.get(&format!("{url}/internal/force_flush")).call();
        let n = vm_count(agent, url, set);
        if n == set.samples() {
            break;
        }
        assert!(
            begin.elapsed() < Duration::from_secs(600),
            "VictoriaMetrics shows {n} of {} samples of set {} ten minutes after the import",
            set.samples(),
            set.name
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    wait_idle(pid, Duration::from_secs(1800), "VictoriaMetrics");
}

/// A range query's answer: series (labels as JSON, sorted) to points (ms, value).
type Series = BTreeMap<String, BTreeMap<i64, f64>>;

struct Answer {
    series: Series,
    resolution: Option<String>,
}

impl Answer {
    fn points(&self) -> usize {
        self.series.values().map(|p| p.len()).sum()
    }
}

/// Runs a range query: (wall time of the request and its body, answer), or why not.
fn query(
    agent: &ureq::Agent,
    url: &str,
    q: &str,
    start: i64,
    end: i64,
    step_s: i64,
    extra: &[(&str, &str)],
) -> Result<(Duration, Answer), String> {
    let (start, end, step) = (
        (start / 1000).to_string(),
        (end / 1000).to_string(),
        step_s.to_string(),
    );
    let mut form = vec![
        ("query", q),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("step", step.as_str()),
    ];
    form.extend_from_slice(extra);
    let begin = Instant::now();
    let resp = match agent
        .post(&format!("{url}/api/v1/query_range"))
        .send_form(&form)
    {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            let body = r.into_string().unwrap_or_default();
            return Err(format!("HTTP {code}: {}", body.trim()));
        }
        Err(e) => return Err(e.to_string()),
    };
    let resolution = resp.header("X-Telltale-Resolution").map(str::to_owned);
    let body = resp.into_string().map_err(|e| e.to_string())?;
    let took = begin.elapsed();
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    if v["status"] != "success" {
        return Err(body);
    }
    let mut series = Series::new();
    for s in v["data"]["result"].as_array().ok_or("no result")? {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(s["metric"].clone()).map_err(|e| e.to_string())?;
        let mut points = BTreeMap::new();
        for p in s["values"].as_array().ok_or("no values")? {
            let t = (p[0].as_f64().ok_or("time")? * 1000.0).round() as i64;
            let v: f64 = p[1].as_str().and_then(|x| x.parse().ok()).ok_or("value")?;
            points.insert(t, v);
        }
        series.insert(serde_json::to_string(&labels).unwrap(), points);
    }
    Ok((took, Answer { series, resolution }))
}

/// How `other` differs from `reference`: the largest relative difference of a point both
/// have, and the points only one of them has.
#[derive(Clone, Copy)]
struct Diff {
    max_rel: f64,
    missing: usize,
    extra: usize,
}

impl Diff {
    fn exact_within(&self, tolerance: f64) -> bool {
        self.missing == 0 && self.extra == 0 && self.max_rel <= tolerance
    }

    fn text(&self) -> String {
        let mut s = format!("{:.1e}", self.max_rel);
        if self.missing + self.extra > 0 {
            s += &format!(" ({} points missing, {} extra)", self.missing, self.extra);
        }
        s
    }
}

fn diff(reference: &Answer, other: &Answer) -> Diff {
    let mut d = Diff {
        max_rel: 0.0,
        missing: 0,
        extra: 0,
    };
    for (labels, points) in &reference.series {
        let theirs = other.series.get(labels);
        for (t, a) in points {
            match theirs.and_then(|p| p.get(t)) {
                None => d.missing += 1,
                Some(b) => {
                    let rel = if a == b {
                        0.0
                    } else {
                        (a - b).abs() / a.abs().max(b.abs())
                    };
                    d.max_rel = d
                        .max_rel
                        .max(if rel.is_nan() { f64::INFINITY } else { rel });
                }
            }
        }
    }
    for (labels, points) in &other.series {
        let ours = reference.series.get(labels);
        d.extra += points
            .keys()
            .filter(|t| ours.is_none_or(|p| !p.contains_key(t)))
            .count();
    }
    d
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Raw,
    Auto,
    Prometheus,
    Vm,
}

const SYSTEMS: [System; 4] = [System::Raw, System::Auto, System::Prometheus, System::Vm];

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Raw => "Telltale (max_source_resolution=raw)",
            System::Auto => "Telltale (default, auto)",
            System::Prometheus => "Prometheus 2.42",
            System::Vm => "VictoriaMetrics 1.79",
        }
    }
}

/// What one system did with one query.
#[derive(Default)]
struct Outcome {
    times: Vec<Duration>,
    warm_up: Duration,
    answer: Option<Answer>,
    error: Option<String>,
    /// Telltale only: VmRSS of a fresh aggregator, then its VmHWM after one such query
    /// (KiB).
    idle_kib: u64,
    peak_kib: u64,
}

impl Outcome {
    fn median(&self) -> Option<Duration> {
        let mut v = self.times.clone();
        v.sort();
        (self.error.is_none() && !v.is_empty()).then(|| v[v.len() / 2])
    }
}

struct Case {
    set: usize,
    name: String,
    query: String,
    start: i64,
    end: i64,
    step_s: i64,
}

struct CaseResult {
    case: Case,
    outcomes: Vec<(System, Outcome)>,
}

impl CaseResult {
    fn get(&self, s: System) -> Option<&Outcome> {
        self.outcomes.iter().find(|(x, _)| *x == s).map(|(_, o)| o)
    }
}

/// The running systems a case's queries go to.
struct Targets<'a> {
    ours_store: &'a Path,
    prometheus: Option<&'a str>,
    vm: Option<&'a str>,
}

/// Writes 5 to `/proc/<pid>/clear_refs`: VmHWM starts again from the current RSS.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The URL and extra parameters a system's query goes to.
fn target<'a>(
    system: System,
    ours: &'a str,
    targets: &'a Targets,
) -> (&'a str, &'static [(&'static str, &'static str)]) {
    match system {
        System::Raw => (ours, &[("max_source_resolution", "raw")]),
        System::Auto => (ours, &[]),
        System::Prometheus => (targets.prometheus.unwrap(), &[]),
        System::Vm => (targets.vm.unwrap(), &[]),
    }
}

/// Times `case` on every system in turn (a warm-up, then `runs` rounds), then takes each
/// Telltale variant's memory alone: a fresh aggregator, its idle VmRSS, one query, VmHWM.
fn measure(agent: &ureq::Agent, case: Case, targets: &Targets, runs: usize) -> CaseResult {
    let mut outcomes: Vec<(System, Outcome)> = SYSTEMS
        .iter()
        .filter(|s| match s {
            System::Prometheus => targets.prometheus.is_some(),
            System::Vm => targets.vm.is_some(),
            _ => true,
        })
        .map(|&s| (s, Outcome::default()))
        .collect();
    let q = |url: &str, extra: &[(&str, &str)]| {
        query(
            agent,
            url,
            &case.query,
            case.start,
            case.end,
            case.step_s,
            extra,
        )
    };
    let (ours, ours_url) = start_ours(targets.ours_store);
    for round in 0..=runs {
        for (system, out) in outcomes.iter_mut() {
            if out.error.is_some() || (out.warm_up > SLOW && !out.times.is_empty()) {
                continue;
            }
            let (url, extra) = target(*system, &ours_url, targets);
            match q(url, extra) {
                Ok((took, answer)) => {
                    if round == 0 {
                        out.warm_up = took;
                        out.answer = Some(answer);
                    } else {
                        out.times.push(took);
                        if let Some(r) = answer.resolution {
                            out.answer.as_mut().unwrap().resolution = Some(r);
                        }
                    }
                }
                Err(e) => out.error = Some(e),
            }
        }
    }
    drop(ours);
    for (system, out) in outcomes.iter_mut() {
        if !matches!(system, System::Raw | System::Auto) || out.error.is_some() {
            continue;
        }
        let (ours, ours_url) = start_ours(targets.ours_store);
        let pid = ours.0.id();
        out.idle_kib = status_kib(pid, "VmRSS");
        if !reset_peak(pid) {
            println!("    (cannot reset VmHWM: the peak is the process's since its start)");
        }
        let (url, extra) = target(*system, &ours_url, targets);
        if let Err(e) = q(url, extra) {
            out.error = Some(e);
        }
        out.peak_kib = status_kib(pid, "VmHWM");
    }
    CaseResult { case, outcomes }
}

fn ms(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1000.0)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64()),
        _ => "–".into(),
    }
}

fn cell(o: Option<&Outcome>) -> String {
    match o {
        None => "not run".into(),
        Some(o) if o.error.is_some() => "**refused**".into(),
        Some(o) => match o.median() {
            Some(m) if o.times.len() == 1 => format!("{} (1 run)", ms(m)),
            Some(m) => ms(m),
            None => "–".into(),
        },
    }
}

/// The bytes of Telltale's store: raw day files and each rollup resolution.
struct OursBytes {
    raw: u64,
    raw_files: usize,
    rollups: Vec<(&'static str, Option<(u64, usize)>)>,
}

fn ours_bytes(store: &Path) -> OursBytes {
    let data = store.join("data");
    let (mut raw, mut raw_files) = (0, 0);
    for e in std::fs::read_dir(&data).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("day=") {
            let (b, n) = dir_bytes(&e.path());
            raw += b;
            raw_files += n;
        }
    }
    let rollups = ["5m", "1h"]
        .into_iter()
        .map(|r| {
            let dir = data.join(format!("resolution={r}"));
            (r, dir.is_dir().then(|| dir_bytes(&dir)))
        })
        .collect();
    OursBytes {
        raw,
        raw_files,
        rollups,
    }
}

/// What preparing a set measured.
struct Prepared {
    set: Set,
    ours_import: Option<Duration>,
    ours: OursBytes,
    prometheus_bytes: Option<u64>,
    vm_bytes: Option<u64>,
}

fn today() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now.div_euclid(DAY_MS)
}

/// The last day of a kept set, or yesterday for a new one.
fn last_day(dir: &Path) -> (i64, bool) {
    match std::fs::read_to_string(dir.join("last-day"))
        .ok()
        .and_then(|d| d.trim().parse().ok())
    {
        Some(d) => (d, true),
        None => (today() - 1, false),
    }
}

fn main() {
    let days = env_num("BENCH_DAYS", 30).max(1);
    let runs = env_num("BENCH_RUNS", 5).max(1) as usize;
    let fleet = env_flag("BENCH_FLEET");
    let fleet_days = env_num("BENCH_FLEET_DAYS", 90).max(1);
    let fleet_every = env_num("BENCH_FLEET_INTERVAL", 60).max(1) * 1000;
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = std::env::var("BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| work.path().to_owned());
    std::fs::create_dir_all(&base).unwrap();
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(1800))
        .build();

    println!("longrange: Telltale vs Prometheus 2.42 vs VictoriaMetrics 1.79");
    let prom_ok = ensure_tool("prometheus", "prometheus", "Prometheus")
        && ensure_tool("promtool", "prometheus", "Prometheus (promtool)");
    let vm_ok = ensure_tool("victoria-metrics", "victoria-metrics", "VictoriaMetrics");

    let mut failures: Vec<String> = Vec::new();
    let mut results: Vec<CaseResult> = Vec::new();
    let mut prepared: Vec<Prepared> = Vec::new();

    // Set A.
    let dir_a = base.join(format!("a-{days}d"));
    std::fs::create_dir_all(&dir_a).unwrap();
    let (last_a, kept_a) = last_day(&dir_a);
    let set_a = Set {
        name: "A",
        metric: "steer_req_total",
        series: 300,
        namespaces: 10,
        pod_prefix: "steer",
        every_ms: 15_000,
        days,
        last_day: last_a,
    };
    println!(
        "set A: {} series x {days} days at 15 s = {} samples, {} to {}",
        set_a.series,
        set_a.samples(),
        day_name(set_a.first_day()),
        day_name(set_a.last_day)
    );
    let text_dir = dir_a.join("text");
    let text_files: Vec<PathBuf> = (set_a.first_day()..=set_a.last_day)
        .map(|d| text_dir.join(format!("day-{}.om", day_name(d))))
        .collect();
    if kept_a {
        println!("  reusing the text files in {}", text_dir.display());
    } else {
        let begin = Instant::now();
        let _ = std::fs::remove_dir_all(&text_dir);
        std::fs::create_dir_all(&text_dir).unwrap();
        for (day, path) in (set_a.first_day()..).zip(&text_files) {
            set_a.write_day(day, path, true);
        }
        std::fs::write(dir_a.join("last-day"), last_a.to_string()).unwrap();
        println!(
            "  OpenMetrics written in {:.0?}: {}",
            begin.elapsed(),
            mib(dir_bytes(&text_dir).0)
        );
    }

    // Telltale: imported anew every run.
    let ours_a = dir_a.join("telltale");
    let _ = std::fs::remove_dir_all(&ours_a);
    let begin = Instant::now();
    let out = telltale_import(&ours_a, &text_files).output().unwrap();
    let import_a = begin.elapsed();
    let (_, files) = import_summary(out, set_a.samples());
    let bytes_a = ours_bytes(&ours_a);
    println!(
        "  telltale import: {} samples in {import_a:.1?} ({files} files written; raw {} in {} files{})",
        set_a.samples(),
        mib(bytes_a.raw),
        bytes_a.raw_files,
        bytes_a
            .rollups
            .iter()
            .map(|(r, b)| match b {
                Some((b, n)) => format!(", {r} rollups {} in {n} files", mib(*b)),
                None => format!(", no {r} rollups"),
            })
            .collect::<String>()
    );

    // Prometheus: blocks made once, kept.
    let tsdb = dir_a.join("prometheus");
    let mut prom_ok = prom_ok;
    let mut prom_fresh = false;
    if prom_ok && !dir_a.join("prometheus.done").exists() {
        let begin = Instant::now();
        let _ = std::fs::remove_dir_all(&tsdb);
        for path in &text_files {
            let status = Command::new("promtool")
                .args([
                    "tsdb",
                    "create-blocks-from",
                    "openmetrics",
                    "--quiet",
                    "--max-block-duration=24h",
                ])
                .arg(path)
                .arg(&tsdb)
                .stdout(Stdio::null())
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                println!(
                    "  SKIPPED Prometheus: promtool tsdb create-blocks-from openmetrics failed on {}",
                    path.display()
                );
                prom_ok = false;
                break;
            }
        }
        prom_fresh = prom_ok;
        if prom_ok {
            println!("  promtool blocks made in {:.0?}", begin.elapsed());
        }
    }
    let prometheus = if prom_ok {
        let p = start_prometheus(&dir_a, &tsdb);
        if let Some((proc, url)) = &p {
            if prom_fresh {
                wait_prometheus_compaction(proc.0.id(), url);
                std::fs::write(dir_a.join("prometheus.done"), "").unwrap();
            } else {
                wait_idle(proc.0.id(), Duration::from_secs(600), "Prometheus");
            }
        } else {
            println!("  SKIPPED Prometheus: it did not start");
        }
        p
    } else {
        None
    };

    // VictoriaMetrics: imported once, kept.
    let vm_a_dir = dir_a.join("victoria-metrics");
    let vm_a = vm_ok
        .then(|| {
            let fresh = !dir_a.join("vm.done").exists();
            if fresh {
                let _ = std::fs::remove_dir_all(&vm_a_dir);
            }
            let (proc, url) = start_vm(&vm_a_dir)?;
            let begin = Instant::now();
            if fresh {
                for path in &text_files {
                    vm_import(&agent, &url, path, true);
                }
            }
            vm_settle(&agent, &url, proc.0.id(), &set_a);
            if fresh {
                std::fs::write(dir_a.join("vm.done"), "").unwrap();
                println!(
                    "  VictoriaMetrics import, flush and merges: {:.0?}",
                    begin.elapsed()
                );
            }
            Some((proc, url))
        })
        .flatten();
    if vm_ok && vm_a.is_none() {
        println!("  SKIPPED VictoriaMetrics: it did not start");
    }

    let prom_bytes = prometheus.as_ref().map(|_| dir_bytes(&tsdb).0);
    println!(
        "  stores: Telltale raw {}{}",
        mib(bytes_a.raw),
        prom_bytes
            .map(|b| format!(", Prometheus {}", mib(b)))
            .unwrap_or_default(),
    );

    let end = set_a.end();
    let long = days;
    let short = days.min(7);
    let cases = [
        ("sum by (namespace) (rate(steer_req_total[1h]))", long, 3600),
        ("sum(steer_req_total)", long, 3600),
        ("sum by (namespace) (rate(steer_req_total[1h]))", short, 600),
        ("sum(steer_req_total)", short, 600),
    ];
    let targets = Targets {
        ours_store: &ours_a,
        prometheus: prometheus.as_ref().map(|(_, u)| u.as_str()),
        vm: vm_a.as_ref().map(|(_, u)| u.as_str()),
    };
    for (q, span, step) in cases {
        let step_name = if step == 3600 { "1 h" } else { "10 m" };
        let case = Case {
            set: 0,
            name: format!("`{q}`, {span} d at {step_name}"),
            query: q.to_string(),
            start: end - span * DAY_MS,
            end,
            step_s: step,
        };
        println!("  {}", case.name);
        let r = measure(&agent, case, &targets, runs);
        report_case(&r, &mut failures);
        results.push(r);
    }
    drop(prometheus);
    // VictoriaMetrics writes the parts it holds in memory when stopped: counted after.
    let vm_ran = vm_a.is_some();
    drop(vm_a);
    let vm_bytes = vm_ran.then(|| dir_bytes(&vm_a_dir).0);
    prepared.push(Prepared {
        set: set_a,
        ours_import: Some(import_a),
        ours: bytes_a,
        prometheus_bytes: prom_bytes,
        vm_bytes,
    });

    if fleet {
        let (p, r) = fleet_set(&agent, &base, fleet_days, fleet_every, vm_ok, runs);
        report_case(&r, &mut failures);
        results.push(r);
        prepared.push(p);
    } else {
        println!("set B: not run (BENCH_FLEET=1 runs it)");
    }

    print_tables(&prepared, &results);
    if !failures.is_empty() {
        panic!(
            "longrange: {} failure(s):\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
}

/// Set B: made one day at a time into both stores (the text is not kept), then its query.
fn fleet_set(
    agent: &ureq::Agent,
    base: &Path,
    days: i64,
    every_ms: i64,
    vm_ok: bool,
    runs: usize,
) -> (Prepared, CaseResult) {
    let dir = base.join(format!("b-{days}d-{}s", every_ms / 1000));
    std::fs::create_dir_all(&dir).unwrap();
    let (last, _) = last_day(&dir);
    std::fs::write(dir.join("last-day"), last.to_string()).unwrap();
    let set = Set {
        name: "B",
        metric: "fleet_req_total",
        series: 10_000,
        namespaces: 50,
        pod_prefix: "fleet",
        every_ms,
        days,
        last_day: last,
    };
    println!(
        "set B: {} series x {days} days at {} s = {} samples, {} to {}",
        set.series,
        every_ms / 1000,
        set.samples(),
        day_name(set.first_day()),
        day_name(set.last_day)
    );
    let ours = dir.join("telltale");
    let vm_dir = dir.join("victoria-metrics");
    let need_ours = !dir.join("telltale.done").exists() || env_flag("BENCH_REIMPORT");
    let need_vm = vm_ok && !dir.join("vm.done").exists();
    if need_ours {
        let _ = std::fs::remove_dir_all(&ours);
    }
    if need_vm {
        let _ = std::fs::remove_dir_all(&vm_dir);
    }
    let vm = vm_ok.then(|| start_vm(&vm_dir)).flatten();
    if vm_ok && vm.is_none() {
        println!("  SKIPPED VictoriaMetrics: it did not start");
    }
    let mut ours_import = None;
    if need_ours || need_vm {
        let tmp_parent = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            dir.clone()
        };
        let tmp = tempfile::tempdir_in(tmp_parent).unwrap();
        let begin = Instant::now();
        let mut ours_time = Duration::ZERO;
        for (k, day) in (set.first_day()..=set.last_day).enumerate() {
            let path = tmp.path().join(format!("day-{}.prom", day_name(day)));
            set.write_day(day, &path, false);
            let started = Instant::now();
            let child = need_ours.then(|| {
                telltale_import(&ours, std::slice::from_ref(&path))
                    .spawn()
                    .unwrap()
            });
            if let (true, Some((_, url))) = (need_vm, &vm) {
                vm_import(agent, url, &path, false);
            }
            if let Some(child) = child {
                import_summary(child.wait_with_output().unwrap(), set.samples_per_day());
                ours_time += started.elapsed();
            }
            std::fs::remove_file(&path).unwrap();
            if (k + 1) % 10 == 0 || k as i64 + 1 == days {
                println!("  {} of {days} days in {:.0?}", k + 1, begin.elapsed());
            }
        }
        if need_ours {
            std::fs::write(dir.join("telltale.done"), "").unwrap();
            ours_import = Some(ours_time);
            println!(
                "  telltale import (day files one at a time, beside VictoriaMetrics' import): {ours_time:.0?}"
            );
        }
    } else {
        println!("  reusing the stores in {}", dir.display());
    }
    if let Some((proc, url)) = &vm {
        vm_settle(agent, url, proc.0.id(), &set);
        if need_vm {
            std::fs::write(dir.join("vm.done"), "").unwrap();
        }
    }
    let bytes = ours_bytes(&ours);
    let q = format!("sum by (namespace) (rate({}[1h]))", set.metric);
    let case = Case {
        set: 1,
        name: format!("`{q}`, {days} d at 1 h"),
        query: q,
        start: set.end() - days * DAY_MS,
        end: set.end(),
        step_s: 3600,
    };
    println!("  {}", case.name);
    let targets = Targets {
        ours_store: &ours,
        prometheus: None,
        vm: vm.as_ref().map(|(_, u)| u.as_str()),
    };
    let r = measure(agent, case, &targets, runs);
    let vm_ran = vm.is_some();
    drop(vm);
    let vm_bytes = vm_ran.then(|| dir_bytes(&vm_dir).0);
    (
        Prepared {
            set,
            ours_import,
            ours: bytes,
            prometheus_bytes: None,
            vm_bytes,
        },
        r,
    )
}

/// Prints one case's figures as they come, and notes its failures.
fn report_case(r: &CaseResult, failures: &mut Vec<String>) {
    for (system, o) in &r.outcomes {
        match (&o.error, o.median(), &o.answer) {
            (Some(e), _, _) => {
                println!("    {}: REFUSED: {e}", system.name());
                failures.push(format!(
                    "{}: {} refused it: {e}",
                    r.case.name,
                    system.name()
                ));
            }
            (None, Some(m), Some(a)) => println!(
                "    {}: median {} ({} series, {} points{}{})",
                system.name(),
                ms(m),
                a.series.len(),
                a.points(),
                a.resolution
                    .as_ref()
                    .map(|x| format!(", X-Telltale-Resolution: {x}"))
                    .unwrap_or_default(),
                if o.peak_kib > 0 {
                    format!(
                        ", peak RSS {} over idle {}",
                        mib((o.peak_kib.saturating_sub(o.idle_kib)) * 1024),
                        mib(o.idle_kib * 1024)
                    )
                } else {
                    String::new()
                }
            ),
            _ => {}
        }
    }
    let answer = |s| r.get(s).and_then(|o| o.answer.as_ref());
    if let (Some(raw), Some(prom)) = (answer(System::Raw), answer(System::Prometheus)) {
        let d = diff(prom, raw);
        if d.exact_within(RAW_TOLERANCE) {
            println!(
                "    raw vs Prometheus: same series and points, max relative difference {:.1e}",
                d.max_rel
            );
        } else {
            println!("    raw vs Prometheus: MISMATCH {}", d.text());
            failures.push(format!(
                "{}: Telltale's raw answer differs from Prometheus's: max relative difference {}",
                r.case.name,
                d.text()
            ));
        }
    }
    for (a, b, what) in [
        (System::Prometheus, System::Auto, "auto vs Prometheus"),
        (System::Raw, System::Auto, "auto vs raw"),
        (
            System::Prometheus,
            System::Vm,
            "VictoriaMetrics vs Prometheus",
        ),
        (System::Raw, System::Vm, "VictoriaMetrics vs Telltale raw"),
    ] {
        if let (Some(x), Some(y)) = (answer(a), answer(b)) {
            println!("    {what}: max relative difference {}", diff(x, y).text());
        }
    }
}

fn print_tables(prepared: &[Prepared], results: &[CaseResult]) {
    println!("\n## Results\n");
    println!("| query | Telltale auto | (answered by) | Telltale raw | Prometheus 2.42 | VictoriaMetrics 1.79 | auto / VM | auto / Prometheus | raw / VM | raw / Prometheus |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let m = |s| r.get(s).and_then(|o| o.median());
        let answered = r
            .get(System::Auto)
            .and_then(|o| o.answer.as_ref())
            .and_then(|a| a.resolution.clone())
            .unwrap_or_else(|| "no header".into());
        println!(
            "| {} ({}) | {} | {answered} | {} | {} | {} | {} | {} | {} | {} |",
            r.case.name,
            prepared[r.case.set].set.name,
            cell(r.get(System::Auto)),
            cell(r.get(System::Raw)),
            cell(r.get(System::Prometheus)),
            cell(r.get(System::Vm)),
            ratio(m(System::Auto), m(System::Vm)),
            ratio(m(System::Auto), m(System::Prometheus)),
            ratio(m(System::Raw), m(System::Vm)),
            ratio(m(System::Raw), m(System::Prometheus)),
        );
    }

    println!("\n| query | Telltale idle RSS | peak − idle, raw | peak − idle, auto | raw vs Prometheus (max rel. diff) | auto vs Prometheus | VictoriaMetrics vs Prometheus | points |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in results {
        let peak = |s| match r.get(s) {
            Some(o) if o.error.is_none() => mib(o.peak_kib.saturating_sub(o.idle_kib) * 1024),
            Some(_) => "refused".into(),
            None => "–".into(),
        };
        let answer = |s| r.get(s).and_then(|o| o.answer.as_ref());
        let d = |a, b| match (answer(a), answer(b)) {
            (Some(x), Some(y)) => diff(x, y).text(),
            _ => "–".into(),
        };
        let points = SYSTEMS
            .iter()
            .find_map(|&s| answer(s))
            .map(|a| format!("{} series, {} points", a.series.len(), a.points()))
            .unwrap_or_default();
        println!(
            "| {} ({}) | {} | {} | {} | {} | {} | {} | {points} |",
            r.case.name,
            prepared[r.case.set].set.name,
            r.get(System::Raw)
                .map(|o| mib(o.idle_kib * 1024))
                .unwrap_or_default(),
            peak(System::Raw),
            peak(System::Auto),
            d(System::Prometheus, System::Raw),
            d(System::Prometheus, System::Auto),
            d(System::Prometheus, System::Vm),
        );
    }

    println!("\n| set | raw samples | Telltale import | Telltale raw (per sample) | 5 m rollups (per raw sample) | 1 h rollups (per raw sample) | Prometheus TSDB (per sample) | VictoriaMetrics (per sample) |");
    println!("|---|---|---|---|---|---|---|---|");
    for p in prepared {
        let n = p.set.samples() as f64;
        let per = |b: u64| format!("{} ({:.3} B)", mib(b), b as f64 / n);
        let rollup = |r: &str| match p
            .ours
            .rollups
            .iter()
            .find(|(x, _)| *x == r)
            .and_then(|(_, b)| *b)
        {
            Some((b, _)) => per(b),
            None => "absent".into(),
        };
        println!(
            "| {} ({} series, {} d at {} s) | {} | {} | {} in {} files | {} | {} | {} | {} |",
            p.set.name,
            p.set.series,
            p.set.days,
            p.set.every_ms / 1000,
            p.set.samples(),
            p.ours_import
                .map(|d| format!("{d:.1?}"))
                .unwrap_or_else(|| "kept".into()),
            per(p.ours.raw),
            p.ours.raw_files,
            rollup("5m"),
            rollup("1h"),
            p.prometheus_bytes.map(per).unwrap_or_else(|| "–".into()),
            p.vm_bytes.map(per).unwrap_or_else(|| "–".into()),
        );
    }
    println!();
}
