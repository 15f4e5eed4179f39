//! Measuring helpers shared by the benchmarks: CPU time of a thread or process, RSS, and
//! the tmpfs directory fixtures live in.

#![allow(dead_code)] // each benchmark uses its own subset

pub mod workload;

use std::path::Path;
use std::time::Duration;

/// CPU time of the calling thread (clock_gettime, nanoseconds).
pub fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// (user, system) CPU from a /proc `stat` file (10 ms ticks).
pub fn stat_cpu(path: &str) -> (Duration, Duration) {
    let stat = std::fs::read_to_string(path).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| Duration::from_millis(f[i].parse::<u64>().expect("ticks") * 10);
    (tick(11), tick(12))
}

/// (user, system) CPU of the calling thread.
pub fn thread_user_system() -> (Duration, Duration) {
    stat_cpu("/proc/thread-self/stat")
}

/// User plus system CPU of process `pid`.
pub fn process_cpu(pid: u32) -> Duration {
    let (user, system) = stat_cpu(&format!("/proc/{pid}/stat"));
    user + system
}

/// A field of /proc/<pid>/status in KiB (VmRSS, RssAnon, RssFile).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Fixtures live on tmpfs where there is one: cgroupfs and procfs are in-memory
/// filesystems, and ext4's journal and atime work is no part of reading them.
pub fn fixture_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tempdir in /dev/shm")
    } else {
        tempfile::tempdir().expect("tempdir")
    }
}

/// Every file under `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Bytes and number of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> (u64, usize) {
    let files = walk(dir);
    let bytes = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    (bytes, files.len())
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A child process killed (and reaped) when dropped.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `telltale aggregator` on a free port with `data`, once it answers `/readyz`; its URL.
pub fn start_aggregator(data: &Path) -> (Killed, String) {
    start_aggregator_with(data, &[])
}

/// [`start_aggregator`] with more flags.
pub fn start_aggregator_with(data: &Path, flags: &[&str]) -> (Killed, String) {
    start_aggregator_env(data, flags, &[])
}

/// [`start_aggregator`] with more flags and environment variables.
pub fn start_aggregator_env(
    data: &Path,
    flags: &[&str],
    env: &[(&str, String)],
) -> (Killed, String) {
    use std::process::{Command, Stdio};
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_telltale"))
        .args(["aggregator", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args(flags)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the aggregator");
    let killed = Killed(child);
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{url}/readyz"));
    (killed, url)
}

/// Prometheus on a free port over the TSDB in `tsdb` (its config written in `dir`), with
/// `flags` added, once it is ready; `None` when it cannot be started.
pub fn start_prometheus(dir: &Path, tsdb: &Path, flags: &[String]) -> Option<(Killed, String)> {
    use std::process::{Command, Stdio};
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n").unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .args(flags)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{url}/-/ready"));
    Some((Killed(child), url))
}

/// Waits until process `pid` has used under 50 ms of CPU in each of `quiet` seconds in a
/// row, at most `limit` (then says `who` was still busy); how long it waited.
pub fn wait_idle(pid: u32, limit: Duration, quiet: u32, who: &str) -> Duration {
    let begin = std::time::Instant::now();
    let mut still = 0;
    while begin.elapsed() < limit {
        let before = process_cpu(pid);
        std::thread::sleep(Duration::from_secs(1));
        if process_cpu(pid) - before < Duration::from_millis(50) {
            still += 1;
            if still == quiet {
                return begin.elapsed();
            }
        } else {
            still = 0;
        }
    }
    println!("  ({who} was still busy after {limit:?})");
    begin.elapsed()
}

/// Waits until `url` answers (up to 30 s).
pub fn wait_ready(url: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if ureq::get(url)
            .timeout(Duration::from_secs(1))
            .call()
            .is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{url} never became ready");
}

/// Posts one remote-write body (snappy protobuf) with the spec's headers.
pub fn remote_write(agent: &ureq::Agent, url: &str, body: &[u8]) {
    agent
        .post(url)
        .set("Content-Type", "application/x-protobuf")
        .set("Content-Encoding", "snappy")
        .set("X-Prometheus-Remote-Write-Version", "0.1.0")
        .send_bytes(body)
        .expect("remote write");
}

/// Prometheus 2.42 as a remote-write receiver, the ingest anchor; killed when dropped.
pub struct PrometheusReceiver {
    /// The process, for its CPU time.
    pub child: std::process::Child,
    /// Its `/api/v1/write` URL.
    pub write_url: String,
    _dir: tempfile::TempDir,
}

impl PrometheusReceiver {
    /// Starts it with its TSDB on a real disk and waits until it is ready; `None` when
    /// `prometheus` is not installed.
    pub fn start() -> Option<PrometheusReceiver> {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n").expect("config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        wait_ready(&format!("http://127.0.0.1:{port}/-/ready"));
        Some(PrometheusReceiver {
            child,
            write_url: format!("http://127.0.0.1:{port}/api/v1/write"),
            _dir: dir,
        })
    }
}

impl Drop for PrometheusReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto_server (PyPI `moto[server]`), an S3-compatible server not written by us, with one
/// bucket; killed when dropped. `None` when it is not installed.
pub struct Moto {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts it and makes `bucket` (with a plain request, which moto takes).
    pub fn start(bucket: &str) -> Option<Moto> {
        use std::process::{Command, Stdio};
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let url = format!("{}/{bucket}", moto.endpoint);
        for _ in 0..600 {
            if ureq::put(&url).call().is_ok() {
                return Some(moto);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        None
    }

    /// The S3 client's settings for a `telltale` process.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "bench".into()),
            ("AWS_SECRET_ACCESS_KEY", "bench-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
