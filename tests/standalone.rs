//! `telltale standalone`: the three roles in one process on this machine, the README's
//! first command. It prints its URLs, answers PromQL over this host's metrics, stops
//! cleanly on SIGTERM with everything on disk, and a second start carries on from there.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{eventually, free_port, get, telltale, urlencode};
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A running `telltale standalone`, killed when dropped.
struct Standalone {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    ports: [u16; 3],
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Standalone {
    fn start(dir: &Path, ports: [u16; 3], extra: &[&str]) -> Standalone {
        let mut cmd = telltale();
        cmd.current_dir(dir)
            .arg("standalone")
            .args(["--data-dir", "data", "--interval", "1s"])
            .arg("--prices")
            .arg(examples().join("prices.yml"))
            .args(["--collector-listen", &format!("127.0.0.1:{}", ports[0])])
            .args(["--aggregator-listen", &format!("127.0.0.1:{}", ports[1])])
            .args(["--alerting-listen", &format!("127.0.0.1:{}", ports[2])])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !extra.contains(&"--policies") {
            cmd.arg("--policies").arg(examples().join("policies.yml"));
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Standalone {
            child,
            stdout,
            stderr,
            ports,
        }
    }

    /// What it printed until it printed the alarms URL (the last one), or exited.
    fn banner(&mut self) -> String {
        let mut out = Vec::new();
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(60)) {
            let last = line.contains("/api/v1/alerts");
            out.push(line);
            if last {
                break;
            }
        }
        out.join("\n")
    }

    fn aggregator(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[1])
    }

    /// The `result` of an instant query at `time` (now when None).
    fn query(&self, q: &str, time: Option<f64>) -> Vec<Value> {
        let mut url = format!("{}/api/v1/query?query={}", self.aggregator(), urlencode(q));
        if let Some(t) = time {
            url.push_str(&format!("&time={t}"));
        }
        let (status, body) = get(&url);
        assert_eq!(status, 200, "{q}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"].as_array().unwrap().clone()
    }

    fn stop(&mut self) -> (std::process::ExitStatus, Vec<String>) {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let status = eventually(Duration::from_secs(60), || self.child.try_wait().unwrap())
            .expect("exits within a minute of SIGTERM");
        (status, self.stderr.iter().collect())
    }
}

fn value(r: &Value) -> f64 {
    r["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn runs_prints_its_urls_stops_cleanly_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let mut s = Standalone::start(dir.path(), ports, &[]);
    let banner = s.banner();
    for port in ports {
        assert!(
            banner.contains(&format!("http://127.0.0.1:{port}")),
            "{banner}"
        );
    }
    assert!(banner.contains("/metrics") && banner.contains("query?query="));

    // This host's metrics, collected and shipped to the aggregator, answer PromQL.
    let (status, metrics) = get(&format!("http://127.0.0.1:{}/metrics", ports[0]));
    assert_eq!(status, 200);
    assert!(metrics.contains("node_cpu_seconds_total{"));
    let at = eventually(Duration::from_secs(30), || {
        let r = s.query("timestamp(node_load1)", None);
        let samples = s.query("count_over_time(node_load1[1h])", None);
        (r.len() == 1 && samples.first().is_some_and(|c| value(c) >= 3.0)).then(|| value(&r[0]))
    })
    .expect("node_load1 in the aggregator");
    let before = s.query("count_over_time(node_load1[1h])", Some(at));
    let before = value(&before[0]);
    assert!(
        !s.query("rate(node_cpu_seconds_total[1m])", None).is_empty(),
        "a rate over the shipped counters"
    );
    // Alerting runs against the aggregator with the example policies.
    let alerting = format!("http://127.0.0.1:{}", ports[2]);
    eventually(Duration::from_secs(30), || {
        let text = get(&format!("{alerting}/metrics")).1;
        text.lines()
            .any(|l| l == "telltale_alerting_query_api_up 1")
            .then_some(())
    })
    .expect("alerting queries the aggregator");
    let (status, alerts) = get(&format!("{alerting}/api/v1/alerts"));
    assert_eq!(status, 200, "{alerts}");
    assert!(alerts.contains(r#""status":"success""#), "{alerts}");

    let (status, log) = s.stop();
    assert!(status.success(), "exit {status}: {}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("flushed the head")),
        "the head is written to Parquet on SIGTERM: {}",
        log.join("\n")
    );
    let data = dir.path().join("data");
    let days: Vec<_> = std::fs::read_dir(data.join("data"))
        .unwrap()
        .flatten()
        .collect();
    assert!(!days.is_empty(), "a day partition");
    assert!(data.join("alerting/state.json").is_file());

    // A second start answers for what the first collected, then collects more.
    let mut s = Standalone::start(dir.path(), ports, &[]);
    s.banner();
    let again = s.query("count_over_time(node_load1[1h])", Some(at));
    assert_eq!(value(&again[0]), before, "samples of the first run kept");
    eventually(Duration::from_secs(30), || {
        let t = s.query("timestamp(node_load1)", None);
        (t.len() == 1 && value(&t[0]) > at + 1.0).then_some(())
    })
    .expect("new samples after the restart");
    let (status, log) = s.stop();
    assert!(status.success(), "exit {status}: {}", log.join("\n"));
}

#[test]
fn a_bad_policy_file_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yml"),
        "policies: [{name: x, metric: nope}]\n",
    )
    .unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let mut s = Standalone::start(dir.path(), ports, &["--policies", "p.yml"]);
    let status = eventually(Duration::from_secs(30), || s.child.try_wait().unwrap()).unwrap();
    assert_eq!(status.code(), Some(2));
    let err: Vec<String> = s.stderr.iter().collect();
    let err = err.join("\n");
    assert!(err.contains("policies") && err.contains("p.yml"), "{err}");
}

#[test]
fn a_port_in_use_stops_every_role_and_names_the_one_that_failed() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ports = [free_port(), free_port(), taken.local_addr().unwrap().port()];
    let mut s = Standalone::start(dir.path(), ports, &[]);
    let status = eventually(Duration::from_secs(30), || s.child.try_wait().unwrap())
        .expect("exits when a role cannot start");
    assert_eq!(status.code(), Some(1));
    let err: Vec<String> = s.stderr.iter().collect();
    let err = err.join("\n");
    assert!(err.contains("alerting:"), "{err}");
}

#[test]
fn a_missing_price_table_or_a_port_0_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    for (args, names) in [
        (vec!["--prices", "nope.yml"], "nope.yml"),
        (
            vec!["--aggregator-listen", "127.0.0.1:0"],
            "aggregator-listen",
        ),
    ] {
        let out = telltale()
            .current_dir(dir.path())
            .arg("standalone")
            .arg("--policies")
            .arg(examples().join("policies.yml"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(names), "{args:?}: {err}");
    }
}
