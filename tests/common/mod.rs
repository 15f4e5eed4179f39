//! Helpers for black-box tests: run the real `telltale` binary, real peers
//! (Prometheus, promtool) installed by the test command.

#![allow(dead_code)]

pub mod cluster;
pub mod kube_api;
pub mod peers;
pub mod receiver;
pub mod s3;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn telltale() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_telltale"));
    c.env_remove("TELLTALE_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("TELLTALE_") && k != "TELLTALE_REQUIRE_TOOLS" {
            c.env_remove(k);
        }
    }
    c
}

/// Runs `cmd` to completion, asserts it succeeded, and returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    String::from_utf8(run_ok_bytes(cmd)).expect("utf-8 output")
}

/// [`run_ok`] for binary output.
pub fn run_ok_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run telltale");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A child process killed when dropped.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: mpsc::Receiver<String>,
    /// Log lines read before the address line.
    pub early: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM and waits up to `within` for the exit; `None` if it did not exit.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .expect("SIGTERM");
        eventually(within, || self.child.try_wait().expect("wait"))
    }

    /// Every log line so far (stderr), from the start.
    pub fn log(&mut self) -> Vec<String> {
        let more: Vec<String> = self.stderr.try_iter().collect();
        self.early.extend(more);
        self.early.clone()
    }
}

/// Starts `telltale <args>` listening on an ephemeral port and waits until it logs the
/// address it serves on.
pub fn spawn(args: &[&str]) -> Running {
    let mut cmd = telltale();
    cmd.args(args);
    spawn_cmd(cmd)
}

/// [`spawn`] for a prepared `telltale` command (environment, arguments).
pub fn spawn_cmd(cmd: Command) -> Running {
    spawn_on(cmd, "127.0.0.1:0")
}

/// [`spawn_cmd`] listening on `listen` (to restart a server where its clients expect it).
pub fn spawn_on(mut cmd: Command, listen: &str) -> Running {
    let child = cmd
        .args(["--listen", listen])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn telltale");
    let (tx, rx) = mpsc::channel();
    // Killed on drop from here on, whichever way this function ends.
    let mut running = Running {
        child,
        addr: ([0, 0, 0, 0], 0).into(),
        stderr: rx,
        early: Vec::new(),
    };
    let stderr = running.child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(line) = running.stderr.recv_timeout(Duration::from_millis(100)) {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .map(str::to_owned);
            running.early.push(line);
            if let Some(addr) = addr {
                running.addr = addr.parse().expect("addr");
                return running;
            }
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            panic!(
                "telltale exited with {status} before listening:\n{}",
                running.early.join("\n")
            );
        }
    }
    panic!(
        "telltale did not log its address:\n{}",
        running.early.join("\n")
    );
}

/// GET `url`: (status, body); panics if there is no answer.
pub fn get(url: &str) -> (u16, String) {
    try_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// GET `url`: (status, body), or the transport error (e.g. nothing listening yet).
pub fn try_get(url: &str) -> Result<(u16, String), String> {
    match ureq::get(url).timeout(Duration::from_secs(10)).call() {
        Ok(r) => Ok((r.status(), r.into_string().map_err(|e| e.to_string())?)),
        Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tool the tests need from the machine (installed by the test command). Returns None
/// with a message naming it when missing, unless TELLTALE_REQUIRE_TOOLS=1 (set by the test
/// command after installing), where a missing tool fails the test.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("TELLTALE_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("{name} is required but not installed (apt-get install prometheus prometheus-node-exporter prometheus-alertmanager openssl)");
        }
        eprintln!("SKIPPED: {name} is not installed; install it to run this test (apt-get install prometheus prometheus-node-exporter prometheus-alertmanager openssl)");
    }
    found
}

/// Seconds since the Unix epoch, as the query API's `time` parameters take them.
pub fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Milliseconds since the Unix epoch, as samples carry them.
pub fn now_ms() -> i64 {
    (now_seconds() * 1000.0) as i64
}

/// POSTs a remote-write `body` (snappy protobuf) to `url` with the headers a sender
/// sets: (status, message).
pub fn remote_write(url: &str, body: &[u8]) -> (u16, String) {
    let sent = ureq::post(url)
        .set("Content-Type", "application/x-protobuf")
        .set("Content-Encoding", "snappy")
        .set("X-Prometheus-Remote-Write-Version", "0.1.0")
        .timeout(Duration::from_secs(30))
        .send_bytes(body);
    match sent {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("remote write to {url}: {e}"),
    }
}

/// A free TCP port on loopback (for peers that cannot report an ephemeral one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The value of the first sample in a text exposition named as `series` (`name` or
/// `name{a="b",...}`) with at least the labels `series` gives.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    let (name, want) = series_parts(series);
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (s, value) = l.rsplit_once(' ')?;
        let (n, have) = series_parts(s);
        (n == name && want.iter().all(|w| have.contains(w)))
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// `name{a="1",b="2"}` as (`name`, [`a="1`, `b="2`]).
fn series_parts(series: &str) -> (&str, Vec<&str>) {
    match series.split_once('{') {
        Some((name, rest)) => {
            let rest = rest.strip_suffix('}').unwrap_or(rest);
            let labels = rest
                .split("\",")
                .map(|l| l.trim_end_matches('"'))
                .filter(|l| !l.is_empty())
                .collect();
            (name, labels)
        }
        None => (series, Vec::new()),
    }
}

/// Families (distinct `# TYPE` names) in a text exposition.
pub fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A Prometheus 2.42 server started for a test, killed when dropped.
pub struct Prometheus {
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus with its data under `dir`, the configuration `config(port)` (told
    /// the port it will listen on, e.g. to scrape itself) and `extra` flags. None when
    /// Prometheus is not installed (see [`tool`]).
    pub fn start(
        dir: &std::path::Path,
        config: impl FnOnce(u16) -> String,
        extra: &[&str],
    ) -> Option<Prometheus> {
        let prometheus = tool("prometheus")?;
        let port = free_port();
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config(port)).expect("write prometheus.yml");
        let child = Command::new(prometheus)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus");
        Some(Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// An instant query's JSON answer (Null while Prometheus is not answering yet).
    pub fn query(&self, q: &str) -> serde_json::Value {
        let enc = urlencode(q);
        try_get(&format!("{}/api/v1/query?query={enc}", self.url))
            .ok()
            .and_then(|(_, body)| serde_json::from_str(&body).ok())
            .unwrap_or_default()
    }
}

/// The value of the first sample of instant query `query` at `at` (ms) on `a`, if it
/// answers one.
pub fn instant_value(a: &Running, query: &str, at: i64) -> Option<f64> {
    let (_, body) = get(&a.url(&format!(
        "/api/v1/query?query={}&time={}",
        urlencode(query),
        at as f64 / 1000.0
    )));
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// `s` percent-encoded as a query parameter value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `sql` in DuckDB (Python package, installed by the test command); rows as
/// tab-separated text. None when DuckDB is missing (and not required).
pub fn duckdb(sql: &str) -> Option<Vec<String>> {
    let python = tool("python3")?;
    let script = format!(
        "import duckdb, struct\nfor r in duckdb.sql({sql:?}).fetchall():\n    print('\\t'.join(struct.pack('<d', c).hex() if isinstance(c, float) else str(c) for c in r))\n"
    );
    let out = std::process::Command::new(python)
        .args(["-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No module named 'duckdb'") {
        assert!(
            std::env::var("TELLTALE_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "duckdb is required (pip install duckdb)"
        );
        eprintln!("SKIPPED: the duckdb Python package is not installed (pip install duckdb)");
        return None;
    }
    assert!(out.status.success(), "duckdb: {err}");
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}
