//! Alerting at scale (alerting issue's benchmark): 1,000 policies over 100,000 series.
//!
//! `cargo bench --bench alerting` (BENCH_SERIES=N, BENCH_POLICIES=N to shrink it).
//! Series `bench_cpu_ratio{namespace, pod, slice}` with values spread over [0, 1); policy
//! k covers slice k (100 series), condition `> 0.9`, so about a tenth of the series fire
//! and every policy queues a notification in the first cycle. Both backends hold the same
//! series, written by remote write:
//! - the aggregator (ours), and Prometheus 2.42 as the anchor in the same run;
//! - one evaluation cycle (`Alerting::cycle`: 1,000 instant queries, 16 at a time, the
//!   state machine, one atomic state write) timed five times at successive minutes;
//!   median wall time, and CPU of this process (the evaluator) and of the backend.
//!   Target ≤ 1 s per cycle.
//! - from a breach to the email: a gauge crosses a policy's threshold (period 10 s) and the
//!   time until aiosmtpd has the message is measured, with `telltale alerting` as a real
//!   process. Target ≤ evaluation interval + 5 s.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed benchmark

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{free_port, Killed};
use telltale_model::remote::{TimeSeries, WriteRequest};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Writes `series` series, values spread over [0, 1), at `t`.
fn load(write_url: &str, series: usize, slices: usize, t: i64) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    // xorshift, fixed seed: the same values in both backends and every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for chunk in (0..series).collect::<Vec<_>>().chunks(5_000) {
        let timeseries: Vec<TimeSeries> = chunk
            .iter()
            .map(|&i| {
                let (ns, pod, slice) = (
                    format!("ns-{}", i % 100),
                    format!("pod-{i}"),
                    format!("{}", i % slices),
                );
                let v = (next() % 1_000_000) as f64 / 1_000_000.0;
                TimeSeries::new(
                    &[
                        ("__name__", "bench_cpu_ratio"),
                        ("namespace", &ns),
                        ("pod", &pod),
                        ("slice", &slice),
                    ],
                    &[(t, v)],
                )
            })
            .collect();
        common::remote_write(
            &agent,
            write_url,
            &WriteRequest { timeseries }.encode_body(),
        );
    }
}

fn policies(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut text = String::from("receivers:\n  - name: hook\n    webhook: { url: \"http://127.0.0.1:9/hook\" }\npolicies:\n");
    for k in 0..n {
        text.push_str(&format!(
            "  - name: cpu-slice-{k}\n    expr: 'bench_cpu_ratio{{slice=\"{k}\"}}'\n    period: 1m\n    condition: \"> 0.9\"\n    receivers: [hook]\n"
        ));
    }
    let p = dir.join("policies.yml");
    std::fs::write(&p, text).unwrap();
    p
}

fn options(policies: &Path, query_url: &str, state: &Path) -> telltale_alerting::Options {
    telltale_alerting::Options {
        policies: policies.to_owned(),
        query_url: query_url.to_owned(),
        state_dir: state.to_owned(),
        smtp: None,
        links: Default::default(),
        clock: Arc::new(telltale_model::time::SystemClock),
        query_timeout: Duration::from_secs(60),
        reload_interval: Duration::from_secs(3600),
        remote_write: None,
    }
}

/// Median wall time, this process's CPU and the backend's CPU per cycle over 5 cycles.
fn cycles(
    rt: &tokio::runtime::Runtime,
    opts: telltale_alerting::Options,
    backend_pid: u32,
    t0: i64,
) -> (Duration, Duration, Duration, usize, usize) {
    let a = telltale_alerting::Alerting::new(opts).unwrap();
    let me = std::process::id();
    let mut walls = Vec::new();
    let (mut cpu, mut backend) = (Duration::ZERO, Duration::ZERO);
    let (mut firing_notes, mut groups) = (0, 0);
    for k in 0..5 {
        let (c0, b0) = (common::process_cpu(me), common::process_cpu(backend_pid));
        let start = Instant::now();
        let report = rt.block_on(a.cycle(t0 + k * 60_000));
        walls.push(start.elapsed());
        cpu += common::process_cpu(me) - c0;
        backend += common::process_cpu(backend_pid) - b0;
        assert_eq!(report.query_errors, 0, "{report:?}");
        groups = report.groups;
        if k == 0 {
            firing_notes = report.notifications;
        }
    }
    walls.sort();
    (walls[2], cpu / 5, backend / 5, groups, firing_notes)
}

fn main() {
    let series = env("BENCH_SERIES", 100_000);
    let n = env("BENCH_POLICIES", 1_000);
    let slices = n;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "alerting: {n} policies over {series} series (each policy {} series)",
        series / slices
    );

    // Samples a minute back, so the five cycles (now .. now + 4 min) all see them.
    let t = now_ms() - 60_000;
    let t0 = now_ms() - now_ms() % 60_000;
    let (ours, ours_url) = common::start_aggregator(&dir.path().join("data"));
    let load_start = Instant::now();
    load(&format!("{ours_url}/api/v1/write"), series, slices, t);
    println!("  loaded the aggregator in {:.1?}", load_start.elapsed());
    let policy_file = policies(dir.path(), n);
    let (wall, cpu, backend, groups, notes) = cycles(
        &rt,
        options(&policy_file, &ours_url, &dir.path().join("state-ours")),
        ours.0.id(),
        t0,
    );
    assert_eq!(groups, n);
    println!(
        "  ours:       cycle {wall:.1?} wall, evaluator CPU {cpu:.1?}, aggregator CPU {backend:.1?} ({notes} notifications queued in the first)"
    );

    let Some(prom) = common::PrometheusReceiver::start() else {
        println!("  (Prometheus is not installed: no anchor)");
        return;
    };
    load(&prom.write_url, series, slices, t);
    let prom_url = prom.write_url.trim_end_matches("/api/v1/write").to_owned();
    let (pwall, pcpu, pbackend, _, pnotes) = cycles(
        &rt,
        options(&policy_file, &prom_url, &dir.path().join("state-prom")),
        prom.child.id(),
        t0,
    );
    println!(
        "  Prometheus: cycle {pwall:.1?} wall, evaluator CPU {pcpu:.1?}, Prometheus CPU {pbackend:.1?} ({pnotes} notifications)"
    );
    println!(
        "  cycle wall ours/Prometheus: {:.2}x; target ≤ 1 s per cycle: {}",
        wall.as_secs_f64() / pwall.as_secs_f64(),
        if wall <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );
    drop(prom);
    breach_to_email(&dir.path().join("email"), &ours_url);
}

/// One policy with a 10 s period on a gauge that crosses its threshold at a known time;
/// the time until the SMTP server has the email.
fn breach_to_email(dir: &Path, query_url: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/alerting/smtp_server.py");
    let mail = dir.join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let Ok(smtp) = Command::new("python3")
        .arg(&script)
        .args(["--port", "0", "--tls", "none", "--out"])
        .arg(&mail)
        .stdout(Stdio::piped())
        .spawn()
    else {
        println!("  (python3 missing: no breach-to-email figure)");
        return;
    };
    let mut smtp = Killed(smtp);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(smtp.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let Some(port) = line.trim().strip_prefix("ready ").map(str::to_owned) else {
        println!("  (aiosmtpd missing: no breach-to-email figure)");
        return;
    };
    let policies = dir.join("policies.yml");
    std::fs::write(
        &policies,
        "receivers:\n  - name: mail\n    email: { to: [ops@example.com] }\npolicies:\n  - name: breach\n    expr: bench_breach\n    period: 10s\n    condition: \"> 0.5\"\n    receivers: [mail]\n",
    )
    .unwrap();
    let write = format!("{query_url}/api/v1/write");
    let agent = ureq::Agent::new();
    let put = |v: f64| {
        let body = WriteRequest {
            timeseries: vec![TimeSeries::new(
                &[("__name__", "bench_breach")],
                &[(now_ms(), v)],
            )],
        }
        .encode_body();
        common::remote_write(&agent, &write, &body);
    };
    put(0.0);
    let port_a = free_port();
    let _alerting = Killed(
        Command::new(env!("CARGO_BIN_EXE_telltale"))
            .args([
                "alerting",
                "--listen",
                &format!("127.0.0.1:{port_a}"),
                "--query-url",
                query_url,
            ])
            .arg("--policies")
            .arg(&policies)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--smtp-url", &format!("smtp://127.0.0.1:{port}?tls=none")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_ready(&format!("http://127.0.0.1:{port_a}/healthz"));
    // Breach at a random point of the 10 s interval: the worst case waits a whole one.
    std::thread::sleep(Duration::from_millis(3_700));
    let breach = Instant::now();
    put(0.9);
    let deadline = breach + Duration::from_secs(60);
    while Instant::now() < deadline {
        let got = std::fs::read_dir(&mail)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.path().extension().is_some_and(|x| x == "json"));
        if got {
            let took = breach.elapsed();
            println!(
                "  breach to email: {took:.1?} (period 10 s; target ≤ 15 s: {})",
                if took <= Duration::from_secs(15) {
                    "met"
                } else {
                    "NOT met"
                }
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("  breach to email: no email within 60 s");
}
