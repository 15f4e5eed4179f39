//! Remote write with the disk queue, black-box: the real binary against a real Prometheus
//! 2.42 receiver and against a test receiver that can fail on demand.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::receiver::{Got, Receiver};
use common::{eventually, get, sample, spawn, Running};
use telltale_collector::fixture::{self, Driver, Node, Runtime, Usage, Version};

fn fixture_node() -> (tempfile::TempDir, Node, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new(dir.path(), Version::V2, Driver::Systemd).unwrap();
    let rels = fixture::populate(&node, 4, 10, Runtime::Containerd).unwrap();
    (dir, node, rels)
}

/// A collector on the fixture node every second, shipping to `url`, queueing in `buffer`.
fn collector(node: &Node, url: &str, buffer: &std::path::Path, extra: &[&str]) -> Running {
    let b = buffer.display().to_string();
    let mut args = vec![
        "collector",
        "--no-kube",
        "--interval",
        "1s",
        "--cluster",
        "ship",
        "--node-name",
        "edge-1",
        "--remote-write",
        url,
        "--buffer-dir",
        &b,
        "--remote-write-max-backoff",
        "500ms",
    ];
    let roots = node.root_flags();
    args.extend(roots.iter().map(String::as_str));
    args.extend_from_slice(extra);
    spawn(&args)
}

/// (timestamp, value) of every accepted sample of `name`, in arrival order.
fn series_of(got: &[Got], name: &str) -> Vec<(i64, f64)> {
    got.iter()
        .filter(|g| g.name() == name)
        .map(|g| (g.ts, g.value))
        .collect()
}

/// Every series' timestamps arrive strictly increasing; returns (series, ts) duplicates.
fn assert_in_order(got: &[Got]) {
    let mut last: BTreeMap<&BTreeMap<String, String>, i64> = BTreeMap::new();
    for g in got {
        if let Some(prev) = last.insert(&g.labels, g.ts) {
            assert!(
                g.ts > prev,
                "out of order or twice: {:?} {} after {}",
                g.labels,
                g.ts,
                prev
            );
        }
    }
}

fn metric(c: &Running, series: &str) -> f64 {
    try_metric(c, series).unwrap_or_else(|| panic!("{series} not in /metrics"))
}

/// None until the first snapshot is served.
fn try_metric(c: &Running, series: &str) -> Option<f64> {
    let (_, text) = get(&c.url("/metrics"));
    sample(&text, series)
}

#[test]
fn prometheus_2_42_receives_our_samples_with_their_labels() {
    let (d, node, rels) = fixture_node();
    let Some(prom) = common::Prometheus::start(
        d.path(),
        |_| "global:\n  scrape_interval: 1m\n".into(),
        &["--web.enable-remote-write-receiver"],
    ) else {
        return;
    };
    let url = prom.url.clone();
    let c = collector(
        &node,
        &format!("{url}/api/v1/write"),
        &d.path().join("buf"),
        &[],
    );
    let q = format!(
        r#"container_memory_working_set_bytes{{cluster="ship",node="edge-1",id="{}"}}"#,
        rels[0]
    );
    let found = eventually(Duration::from_secs(60), || {
        let v = prom.query(&q);
        let r = v["data"]["result"].as_array()?.first()?.clone();
        Some(r)
    });
    let cpus = eventually(Duration::from_secs(30), || {
        let v = prom.query("count(node_cpu_seconds_total)");
        v["data"]["result"][0]["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()
    });
    // Own metrics are those of the latest snapshot: the first one predates any send.
    let sent_series = format!(
        "telltale_collector_remote_samples_sent_total{{destination=\"{url}/api/v1/write\"}}"
    );
    let sent = eventually(Duration::from_secs(10), || {
        try_metric(&c, &sent_series).filter(|&v| v > 0.0)
    });
    drop(prom);
    let r = found.expect("Prometheus never had the working set series");
    let u = Usage::sample(0);
    assert_eq!(
        r["value"][1].as_str().unwrap().parse::<f64>().unwrap(),
        (u.memory_usage - u.inactive_file) as f64
    );
    assert_eq!(r["metric"]["name"], fixture::container_id(0).as_str());
    assert_eq!(
        r["metric"]["__name__"],
        "container_memory_working_set_bytes"
    );
    assert_eq!(cpus, Some(16.0), "2 CPUs x 8 modes");
    assert!(sent.is_some(), "sent samples are counted");
}

#[test]
fn an_outage_loses_nothing_and_keeps_every_series_in_order() {
    let (d, node, _) = fixture_node();
    let rx = Receiver::start();
    rx.set_status(503);
    // Three senders: order per series must hold across them.
    let c = collector(
        &node,
        &rx.url(),
        &d.path().join("buf"),
        &["--remote-write-senders", "3"],
    );
    // A compressed outage: eight collection cycles.
    std::thread::sleep(Duration::from_secs(8));
    let failed = rx.requests().len();
    assert!(
        failed >= 2,
        "the collector retried during the outage ({failed} requests)"
    );
    assert!(rx.accepted().is_empty());
    let dest = format!("{{destination=\"{}\"}}", rx.url());
    assert!(metric(&c, &format!("telltale_collector_remote_queue_bytes{dest}")) > 0.0);
    assert!(
        metric(
            &c,
            &format!("telltale_collector_remote_samples_retried_total{dest}")
        ) > 0.0
    );
    rx.set_status(204);
    // Wait until a cycle taken after the outage has arrived.
    let cycles = eventually(Duration::from_secs(30), || {
        let got = series_of(&rx.accepted(), "telltale_collector_cycles_total");
        (got.len() >= 12).then_some(got)
    })
    .expect("backlog never delivered");
    drop(c);
    let got = rx.accepted();
    assert_in_order(&got);
    assert!(
        got.iter().all(|g| g.ts % 1000 == 0),
        "timestamps aligned to the interval"
    );
    // Every cycle's snapshot arrived: the cycle counter goes up by one each time.
    let values: Vec<f64> = cycles.iter().map(|c| c.1).collect();
    for w in values.windows(2) {
        assert_eq!(w[1], w[0] + 1.0, "a cycle is missing: {values:?}");
    }
    assert_eq!(values[0], 1.0, "the first cycle's snapshot arrived");
    // And with it every series of that snapshot.
    let per_ts: BTreeMap<i64, usize> = got
        .iter()
        .filter(|g| g.name() == "container_cpu_usage_seconds_total")
        .fold(BTreeMap::new(), |mut m, g| {
            *m.entry(g.ts).or_default() += 1;
            m
        });
    let counts: BTreeSet<usize> = per_ts.values().copied().collect();
    assert_eq!(
        counts.len(),
        1,
        "every snapshot has every container: {per_ts:?}"
    );
    assert!(rx.problems().is_empty(), "{:?}", rx.problems());
}

#[test]
fn sigkill_during_an_outage_then_restart_delivers_the_buffer_once() {
    let (d, node, _) = fixture_node();
    let rx = Receiver::start();
    rx.set_status(503);
    let buf = d.path().join("buf");
    let mut c = collector(&node, &rx.url(), &buf, &[]);
    // Five cycles buffered, then past the one-second fsync.
    eventually(Duration::from_secs(30), || {
        (try_metric(&c, "telltale_collector_cycles_total")? >= 5.0).then_some(())
    })
    .unwrap();
    let before_kill = metric(&c, "telltale_collector_cycles_total");
    std::thread::sleep(Duration::from_millis(1500));
    c.child.kill().unwrap(); // SIGKILL
    c.child.wait().unwrap();
    let kill_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // The second run starts in a later second, so no snapshot of it shares a timestamp
    // with one of the first run.
    std::thread::sleep(Duration::from_millis(1100));
    rx.set_status(204);
    let c2 = collector(&node, &rx.url(), &buf, &[]);
    // The second run's own cycles arrive after the first run's backlog.
    eventually(Duration::from_secs(30), || {
        let got = series_of(&rx.accepted(), "telltale_collector_cycles_total");
        got.iter()
            .any(|(ts, v)| *ts > kill_ms && *v >= 3.0)
            .then_some(())
    })
    .expect("nothing delivered after the restart");
    let log = c2_log(c2);
    let got = rx.accepted();
    // Nothing twice (the batch in flight at the kill was refused with 503).
    let mut seen = BTreeSet::new();
    for g in &got {
        assert!(
            seen.insert((g.labels.clone(), g.ts)),
            "delivered twice: {:?} at {}",
            g.labels,
            g.ts
        );
    }
    let first_run: Vec<f64> = series_of(&got, "telltale_collector_cycles_total")
        .into_iter()
        .filter(|(ts, _)| *ts < kill_ms - 1000)
        .map(|(_, v)| v)
        .collect();
    let want: Vec<f64> = (1..=before_kill as i64).map(|v| v as f64).collect();
    assert!(
        first_run.starts_with(&want),
        "every cycle buffered before the kill arrives once, in order: {first_run:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("resuming a buffered backlog")),
        "{log:?}"
    );
}

fn c2_log(mut c: Running) -> Vec<String> {
    c.log()
}

#[test]
fn over_the_byte_budget_the_oldest_are_dropped_and_counted_exactly() {
    let (d, node, _) = fixture_node();
    let rx = Receiver::start();
    rx.set_status(503);
    let c = collector(
        &node,
        &rx.url(),
        &d.path().join("buf"),
        &["--buffer-max-bytes", "40KiB"],
    );
    let dest = format!("{{destination=\"{}\"}}", rx.url());
    let full = format!(
        "telltale_collector_dropped_samples_total{{destination=\"{}\",reason=\"buffer_full\"}}",
        rx.url()
    );
    eventually(Duration::from_secs(60), || {
        (try_metric(&c, &full)? > 0.0).then_some(())
    })
    .expect("the budget was never reached");
    std::thread::sleep(Duration::from_secs(2));
    rx.set_status(204);
    // A snapshot taken once the backlog is delivered and nothing more was dropped carries
    // the counters: queued = received before it + dropped.
    let (dropped, queued, ts) = eventually(Duration::from_secs(60), || {
        let got = rx.accepted();
        let at = |name: &str| -> BTreeMap<i64, f64> {
            got.iter()
                .filter(|g| {
                    g.name() == name && g.labels.get("reason").is_none_or(|r| r == "buffer_full")
                })
                .map(|g| (g.ts, g.value))
                .collect()
        };
        let q = at("telltale_collector_remote_samples_queued_total");
        let dr = at("telltale_collector_dropped_samples_total");
        let age = at("telltale_collector_remote_queue_age_seconds");
        // The newest snapshot that saw an empty queue.
        let (&ts, _) = age
            .iter()
            .rev()
            .find(|(t, a)| **a < 1.5 && dr.get(t).is_some_and(|d| *d > 0.0))?;
        let before = got.iter().filter(|g| g.ts < ts).count() as f64;
        let (qv, dv) = (*q.get(&ts)?, *dr.get(&ts)?);
        (qv == before + dv).then_some((dv, qv, ts))
    })
    .unwrap_or_else(|| {
        panic!(
            "queued != received + dropped; metrics:\n{}",
            get(&c.url("/metrics"))
                .1
                .lines()
                .filter(|l| l.contains("remote") || l.contains("dropped"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert!(dropped > 0.0 && queued > dropped, "{dropped} of {queued}");
    // What was dropped is the oldest part of the queue: the cycles that arrived are the ones
    // a sender already held when the budget was hit (one batch of at most 2,000 samples),
    // then one unbroken run up to ts. One gap, no holes after it.
    let got = rx.accepted();
    let cycles: Vec<f64> = series_of(&got, "telltale_collector_cycles_total")
        .into_iter()
        .filter(|(t, _)| *t < ts)
        .map(|(_, v)| v)
        .collect();
    let gaps: Vec<_> = cycles.windows(2).filter(|w| w[1] != w[0] + 1.0).collect();
    assert_eq!(gaps.len(), 1, "{cycles:?}");
    let before_gap = series_of(&got, "telltale_collector_cycles_total")
        .into_iter()
        .find(|(_, v)| *v == gaps[0][0])
        .unwrap()
        .0;
    let held = got.iter().filter(|g| g.ts <= before_gap).count();
    assert!(
        held <= 2 * 2000,
        "more than the sender's two batches (one in flight, one waiting) survived: {held} samples, cycles {cycles:?}"
    );
    assert!(metric(&c, &format!("telltale_collector_remote_queue_bytes{dest}")) <= 48.0 * 1024.0);
}

#[test]
fn a_400_is_dropped_and_counted_without_retry_and_a_500_is_retried() {
    let (d, node, _) = fixture_node();
    let rx = Receiver::start();
    rx.set_status(400);
    let c = collector(&node, &rx.url(), &d.path().join("buf"), &[]);
    std::thread::sleep(Duration::from_secs(4));
    let rejected = format!(
        "telltale_collector_dropped_samples_total{{destination=\"{}\",reason=\"rejected\"}}",
        rx.url()
    );
    rx.set_status(500);
    let reqs = rx.requests();
    let bad: Vec<_> = reqs.iter().filter(|r| r.status == 400).collect();
    assert!(bad.len() >= 2, "{bad:?}");
    let bodies: BTreeSet<u64> = bad.iter().map(|r| r.body_hash).collect();
    assert_eq!(bodies.len(), bad.len(), "a rejected batch was sent again");
    let counted = eventually(Duration::from_secs(10), || {
        let n = metric(&c, &rejected);
        let sent: usize = rx
            .requests()
            .iter()
            .filter(|r| r.status == 400)
            .map(|r| r.samples)
            .sum();
        (n == sent as f64).then_some(n)
    });
    assert!(
        counted.is_some_and(|n| n > 0.0),
        "rejected samples are counted"
    );
    let mut log = c;
    let lines = log.log();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("rejected a batch"))
            .count(),
        1,
        "logged once: {lines:?}"
    );
    // 500: the same batch again and again.
    let retried = eventually(Duration::from_secs(20), || {
        let reqs = rx.requests();
        let mut count: BTreeMap<u64, usize> = BTreeMap::new();
        for r in reqs.iter().filter(|r| r.status == 500) {
            *count.entry(r.body_hash).or_default() += 1;
        }
        count.values().any(|&n| n >= 3).then_some(())
    });
    assert!(retried.is_some(), "a 500 batch was not retried");
    // 429 (too many requests): also retried.
    rx.set_status(429);
    let retried = eventually(Duration::from_secs(20), || {
        let reqs = rx.requests();
        let mut count: BTreeMap<u64, usize> = BTreeMap::new();
        for r in reqs.iter().filter(|r| r.status == 429) {
            *count.entry(r.body_hash).or_default() += 1;
        }
        count.values().any(|&n| n >= 2).then_some(())
    });
    assert!(retried.is_some(), "a 429 batch was not retried");
    rx.set_status(204);
    eventually(Duration::from_secs(20), || {
        (!rx.accepted().is_empty()).then_some(())
    })
    .expect("delivered after the 500s and 429s");
    // Nothing refused with 500 or 429 was lost: the cycle counter has no hole after the
    // 400s stopped.
    let cycles: Vec<f64> = series_of(&rx.accepted(), "telltale_collector_cycles_total")
        .into_iter()
        .map(|c| c.1)
        .collect();
    for w in cycles.windows(2) {
        assert_eq!(w[1], w[0] + 1.0, "{cycles:?}");
    }
}

#[test]
fn mutual_tls_with_a_custom_ca_and_a_token_reread_on_change() {
    let (d, node, _) = fixture_node();
    let pki = d.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    if common::peers::certs(&pki).is_none() {
        return;
    }
    let rx = Receiver::start_tls(
        &pki.join("server.pem"),
        &pki.join("server.key"),
        &pki.join("ca.pem"),
    );
    let url = format!("https://{}/api/v1/write", rx.addr);
    let token = d.path().join("token");
    std::fs::write(&token, "s3cret-one\n").unwrap();
    let s = |p: &str| pki.join(p).display().to_string();
    let (ca, cert, key, tok) = (
        s("ca.pem"),
        s("client.pem"),
        s("client.key"),
        token.display().to_string(),
    );
    let mut c = collector(
        &node,
        &url,
        &d.path().join("buf"),
        &[
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--remote-write-token-file",
            &tok,
        ],
    );
    eventually(Duration::from_secs(30), || {
        (!rx.accepted().is_empty()).then_some(())
    })
    .unwrap_or_else(|| panic!("nothing over mTLS: {:?}\n{:?}", rx.problems(), c.log()));
    assert!(
        rx.auth().iter().all(|a| a == "Bearer s3cret-one"),
        "{:?}",
        rx.auth()
    );
    std::fs::write(&token, "s3cret-two-rotated\n").unwrap();
    eventually(Duration::from_secs(30), || {
        rx.auth()
            .iter()
            .any(|a| a == "Bearer s3cret-two-rotated")
            .then_some(())
    })
    .expect("the new token was never used");

    // Without a client certificate the receiver refuses the handshake: retried, not lost.
    let rx2 = Receiver::start_tls(
        &pki.join("server.pem"),
        &pki.join("server.key"),
        &pki.join("ca.pem"),
    );
    let url2 = format!("https://{}/api/v1/write", rx2.addr);
    let mut c2 = collector(
        &node,
        &url2,
        &d.path().join("buf2"),
        &["--tls-ca", &ca, "--remote-write-token-file", &tok],
    );
    eventually(Duration::from_secs(30), || {
        c2.log()
            .iter()
            .any(|l| l.contains("destination unavailable"))
            .then_some(())
    })
    .expect("a refused handshake is reported");
    assert!(rx2.accepted().is_empty());
    for line in c.log().iter().chain(c2.log().iter()) {
        assert!(!line.contains("s3cret"), "a secret in the log: {line}");
    }
}

#[test]
fn a_dead_destination_never_delays_another() {
    let (d, node, _) = fixture_node();
    let live = Receiver::start();
    // Accepts connections and never answers.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/api/v1/write", black_hole.local_addr().unwrap());
    let c = collector(
        &node,
        &dead,
        &d.path().join("buf"),
        &[
            "--remote-write",
            &live.url(),
            "--remote-write-timeout",
            "60s",
        ],
    );
    let cycles = eventually(Duration::from_secs(30), || {
        let got = series_of(&live.accepted(), "telltale_collector_cycles_total");
        (got.len() >= 6).then_some(got)
    })
    .expect("the live destination got nothing while the other hung");
    // Each cycle reached the live destination within about one interval.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let newest = cycles.iter().map(|c| c.0).max().unwrap();
    assert!(
        now - newest < 5000,
        "the live destination lags {} ms",
        now - newest
    );
    let dead_sent = metric(
        &c,
        &format!("telltale_collector_remote_samples_sent_total{{destination=\"{dead}\"}}"),
    );
    assert_eq!(dead_sent, 0.0);
    drop(black_hole);
}

/// A tmpfs of `size` mounted at `dir`, unmounted on drop; None (with SKIPPED) where this
/// process may not mount, unless it runs as root, where failing to mount fails the test.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            let root = rustix::process::geteuid().is_root();
            assert!(
                !root,
                "mount tmpfs as root failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!(
                "SKIPPED: cannot mount a small tmpfs here (needs root) for the full-disk test"
            );
            return None;
        }
        Some(SmallDisk(dir.to_owned()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_degrades_to_memory_loses_nothing_and_recovers() {
    let (d, node, _) = fixture_node();
    let buf = d.path().join("small");
    let Some(_disk) = SmallDisk::mount(&buf, "4m") else {
        return;
    };
    let rx = Receiver::start();
    rx.set_status(503);
    let mut c = collector(&node, &rx.url(), &buf, &[]);
    let mem = format!(
        "telltale_collector_remote_queue_in_memory{{destination=\"{}\"}}",
        rx.url()
    );
    let queued = format!(
        "telltale_collector_remote_samples_queued_total{{destination=\"{}\"}}",
        rx.url()
    );
    eventually(Duration::from_secs(30), || {
        (try_metric(&c, &queued)? > 0.0).then_some(())
    })
    .expect("nothing queued");
    // Fill the disk to the last byte.
    let filler = buf.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let byte = [0u8; 1];
        while f.write_all(&byte).is_ok() {}
    }
    eventually(Duration::from_secs(60), || {
        (try_metric(&c, &mem)? == 1.0).then_some(())
    })
    .unwrap_or_else(|| panic!("the queue never went to memory: {:?}", c.log()));
    assert!(
        c.log().iter().any(|l| l.contains("buffer disk failed")),
        "{:?}",
        c.log()
    );
    // Still collecting, with the disk full.
    let cycles = metric(&c, "telltale_collector_cycles_total");
    eventually(Duration::from_secs(10), || {
        (try_metric(&c, "telltale_collector_cycles_total")? > cycles + 1.0).then_some(())
    })
    .expect("collection stopped");
    // Space comes back (an operator cleans up); the receiver too.
    std::fs::remove_file(&filler).unwrap();
    rx.set_status(204);
    eventually(Duration::from_secs(60), || {
        (try_metric(&c, &mem)? == 0.0).then_some(())
    })
    .unwrap_or_else(|| panic!("the queue never returned to disk: {:?}", c.log()));
    assert!(
        c.log().iter().any(|l| l.contains("works again")),
        "{:?}",
        c.log()
    );
    let cycles = eventually(Duration::from_secs(30), || {
        let got = series_of(&rx.accepted(), "telltale_collector_cycles_total");
        let v: Vec<f64> = got.iter().map(|c| c.1).collect();
        (v.len() > 3 && v.windows(2).all(|w| w[1] == w[0] + 1.0)).then_some(v)
    });
    let got = rx.accepted();
    assert_in_order(&got);
    let cycles = cycles.unwrap_or_else(|| {
        panic!(
            "a cycle is missing: {:?}",
            series_of(&got, "telltale_collector_cycles_total")
        )
    });
    assert_eq!(cycles[0], 1.0, "from the first cycle on, nothing lost");
}
