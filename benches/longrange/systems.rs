//! The systems under comparison and how data gets into them: Telltale's aggregator and
//! `telltale import`, Prometheus (its blocks made by promtool, then compacted), and
//! VictoriaMetrics (its import API, a flush and a count); the tools they need, a process's
//! idle wait, and the bytes of Telltale's store.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    self, dir_bytes, free_port, start_aggregator_with, wait_idle, wait_ready, Killed,
};
use crate::data::Set;

/// Every system's query timeout (theirs are 2 min for Telltale and Prometheus, 30 s for
/// VictoriaMetrics): a slow answer is measured, not cut short.
const QUERY_TIMEOUT: &str = "10m";
/// Bytes of text in one VictoriaMetrics import request.
const VM_CHUNK: usize = 32 << 20;

/// Whether `binary` runs; as root, tries `apt-get install -y package` once when it does
/// not. Prints what is skipped otherwise.
pub fn ensure_tool(binary: &str, package: &str, what: &str) -> bool {
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

/// A child stopped with SIGTERM when dropped (killed if it has not exited a minute later):
/// VictoriaMetrics writes the parts it holds in memory to disk then, and a kept store
/// stays whole.
pub struct Terminated(pub std::process::Child);

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
pub fn telltale_import(dir: &Path, files: &[PathBuf]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_telltale"));
    c.arg("import").arg("--data-dir").arg(dir).args(files);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Checks a finished import and returns (samples, files) from its summary line.
pub fn import_summary(out: std::process::Output, expected: u64) -> (u64, u64) {
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
pub fn start_ours(data: &Path) -> (Killed, String) {
    let (killed, url) = start_aggregator_with(
        data,
        &[
            "--retention",
            "400d",
            "--retention-5m",
            "400d",
            "--retention-1h",
            "400d",
            "--flush-interval",
            "24h",
            "--query-timeout",
            QUERY_TIMEOUT,
        ],
    );
    wait_idle(killed.0.id(), Duration::from_secs(300), 2, "the aggregator");
    (killed, url)
}

/// Prometheus over `tsdb`, retention past the data, the bench's query timeout.
pub fn start_prometheus(dir: &Path, tsdb: &Path) -> Option<(Killed, String)> {
    let flags = [
        "--storage.tsdb.retention.time=1y".to_string(),
        format!("--query.timeout={QUERY_TIMEOUT}"),
    ];
    common::start_prometheus(dir, tsdb, &flags)
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
pub fn wait_prometheus_compaction(pid: u32, url: &str) {
    let begin = Instant::now();
    while prometheus_metric(url, "prometheus_tsdb_compactions_triggered_total") < 1.0
        && begin.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_secs(1));
    }
    wait_idle(pid, Duration::from_secs(1800), 2, "Prometheus");
    println!(
        "  Prometheus compacted its blocks in {:.0?} ({} compactions)",
        begin.elapsed(),
        prometheus_metric(url, "prometheus_tsdb_compactions_total")
    );
}

pub fn start_vm(storage: &Path) -> Option<(Terminated, String)> {
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
pub fn vm_import(agent: &ureq::Agent, url: &str, path: &Path, seconds: bool) {
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
pub fn vm_settle(agent: &ureq::Agent, url: &str, pid: u32, set: &Set) {
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
    wait_idle(pid, Duration::from_secs(1800), 2, "VictoriaMetrics");
}

/// The bytes of Telltale's store: raw day files and each rollup resolution.
pub struct OursBytes {
    pub raw: u64,
    pub raw_files: usize,
    pub rollups: Vec<(&'static str, Option<(u64, usize)>)>,
}

pub fn ours_bytes(store: &Path) -> OursBytes {
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
