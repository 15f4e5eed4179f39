//! Black-box tests of `telltale collector`: the real binary on this machine and on fixture
//! nodes, its HTTP endpoints, its configuration errors, and a real Prometheus 2.42
//! scraping it.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod common;

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use common::{eventually, families, get, run_ok, sample, spawn, telltale, tool};
use telltale_collector::fixture::{self, Driver, Node, Runtime, Usage, Version};

fn fixture_node(version: Version) -> (tempfile::TempDir, Node, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new(dir.path(), version, Driver::Systemd).unwrap();
    let rels = fixture::populate(&node, 4, 10, Runtime::Containerd).unwrap();
    (dir, node, rels)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn once_on_this_machine_passes_promtool() {
    let text = run_ok(telltale().args(["collector", "--once", "--no-kube"]));
    let fams = families(&text);
    let ours: Vec<&String> = fams
        .iter()
        .filter(|f| !f.starts_with("telltale_"))
        .collect();
    assert!(ours.len() >= 30, "only {} families: {ours:?}", ours.len());
    for must in [
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_load1",
        "node_filesystem_avail_bytes",
        "machine_cpu_cores",
    ] {
        assert!(fams.iter().any(|f| f == must), "{must} missing");
    }
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let res = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| {
            !l.trim().is_empty() && !l.contains("should be written in 'snake_case' not 'camelCase'")
        })
        .collect();
    assert!(
        problems.is_empty(),
        "promtool check metrics reports: {problems:#?}"
    );
}

#[test]
fn once_on_fixture_nodes_exports_every_container_family() {
    for version in [Version::V1, Version::Hybrid, Version::V2] {
        let (_d, node, rels) = fixture_node(version);
        let args = node.root_flags();
        let text = run_ok(
            telltale()
                .args(["collector", "--once", "--cluster", "prod"])
                .args(strs(&args)),
        );
        let fams = families(&text);
        for f in [
            "container_cpu_usage_seconds_total",
            "container_cpu_user_seconds_total",
            "container_cpu_system_seconds_total",
            "container_cpu_cfs_periods_total",
            "container_cpu_cfs_throttled_periods_total",
            "container_cpu_cfs_throttled_seconds_total",
            "container_memory_usage_bytes",
            "container_memory_working_set_bytes",
            "container_memory_rss",
            "container_memory_cache",
            "container_memory_swap",
            "container_memory_failcnt",
            "container_oom_events_total",
            "container_spec_memory_limit_bytes",
            "container_spec_cpu_quota",
            "container_spec_cpu_period",
            "container_spec_cpu_shares",
            "container_fs_reads_bytes_total",
            "container_fs_writes_bytes_total",
            "container_fs_reads_total",
            "container_fs_writes_total",
            "container_network_receive_bytes_total",
            "container_network_transmit_bytes_total",
            "container_network_receive_packets_total",
            "container_network_transmit_packets_total",
            "container_network_receive_packets_dropped_total",
            "container_network_transmit_packets_dropped_total",
            "container_network_receive_errors_total",
            "container_network_transmit_errors_total",
            "container_processes",
            "container_threads",
            "container_start_time_seconds",
        ] {
            assert!(fams.iter().any(|x| x == f), "{version:?}: {f} missing");
        }
        let ws = text
            .lines()
            .filter(|l| l.starts_with("container_memory_working_set_bytes{"))
            .count();
        // 10 containers + 4 pods + 3 QoS levels + system.slice and its 5 services
        assert_eq!(ws, 10 + 4 + 3 + 6, "{version:?}");
        assert!(text.contains(&format!("id=\"{}\"", rels[0])));
        // Own metrics too, with the node: many collectors ship to one aggregator.
        assert!(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.contains("cluster=\"prod\"")));
        assert!(text
            .lines()
            .filter(|l| l.starts_with("telltale_"))
            .all(|l| l.contains("node=\"")));
        assert_eq!(
            sample(&text, "telltale_collector_errors_total{source=\"cgroup\"}"),
            Some(0.0)
        );
    }
}

#[test]
fn endpoints_and_a_scrape_never_triggers_a_collection() {
    let (_d, node, _) = fixture_node(Version::V2);
    let args = node.root_flags();
    let mut all = vec!["collector", "--no-kube", "--interval", "1h"];
    all.extend(strs(&args));
    let c = spawn(&all);
    assert_eq!(get(&c.url("/healthz")), (200, "ok\n".into()));
    let ready = eventually(Duration::from_secs(10), || {
        (get(&c.url("/readyz")).0 == 200).then_some(())
    });
    assert!(ready.is_some(), "never ready");
    let r = ureq::get(&c.url("/metrics")).call().unwrap();
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for _ in 0..20 {
        let (code, text) = get(&c.url("/metrics"));
        assert_eq!(code, 200);
        assert_eq!(
            sample(&text, "telltale_collector_cycles_total"),
            Some(1.0),
            "a scrape must not collect"
        );
    }
    assert_eq!(get(&c.url("/nope")).0, 404);
}

#[test]
fn vanished_containers_leave_the_exposition() {
    let (_d, node, rels) = fixture_node(Version::V1);
    let args = node.root_flags();
    let mut all = vec!["collector", "--no-kube", "--interval", "200ms"];
    all.extend(strs(&args));
    let c = spawn(&all);
    let id = format!("id=\"{}\"", rels[3]);
    let present = eventually(Duration::from_secs(10), || {
        get(&c.url("/metrics")).1.contains(&id).then_some(())
    });
    assert!(present.is_some());
    node.remove_cgroup(&rels[3]).unwrap();
    let gone = eventually(Duration::from_secs(10), || {
        (!get(&c.url("/metrics")).1.contains(&id)).then_some(())
    });
    assert!(gone.is_some(), "series of a removed container stayed");
    // And a new one appears with its values.
    let pod_uid = fixture::pod_uid(0);
    let new = node.container_rel(
        fixture::Qos::Burstable,
        &pod_uid,
        Runtime::Containerd,
        &fixture::container_id(77),
    );
    node.write_cgroup(
        &new,
        &Usage {
            memory_usage: 777_000_000,
            ..Usage::sample(77)
        },
    )
    .unwrap();
    let series =
        format!("container_memory_usage_bytes{{cluster=\"default\",container=\"\",id=\"{new}\"");
    let v = eventually(Duration::from_secs(10), || {
        let text = get(&c.url("/metrics")).1;
        text.lines()
            .find(|l| l.starts_with(&series))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    });
    assert_eq!(v, Some(777_000_000.0));
}

#[test]
fn sigterm_stops_cleanly() {
    let (_d, node, _) = fixture_node(Version::V2);
    let args = node.root_flags();
    let mut all = vec!["collector", "--no-kube"];
    all.extend(strs(&args));
    let mut c = spawn(&all);
    eventually(Duration::from_secs(10), || {
        (get(&c.url("/readyz")).0 == 200).then_some(())
    })
    .unwrap();
    let status = c.terminate(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status}");
}

fn run_err(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = telltale()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_usage_and_config_exit_2_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let f = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let unknown = f("unknown.yaml", "cluster: a\nlisten-adress: 1.2.3.4:1\n");
    let bad_yaml = f("bad.yaml", "cluster: [unclosed\n");
    let bad_value = f("value.yaml", "interval: often\n");
    // (arguments, environment, what the message must name)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["collector", "--interval", "soon"],
            vec![],
            "--interval",
        ),
        (vec!["collector", "--interval", "0s"], vec![], "--interval"),
        (vec!["collector", "--listen", "nowhere"], vec![], "--listen"),
        (vec!["collector", "--frobnicate"], vec![], "--frobnicate"),
        (
            vec!["collector", "--config", &unknown],
            vec![],
            "listen-adress",
        ),
        (vec!["collector", "--config", &bad_yaml], vec![], "bad.yaml"),
        (
            vec!["collector", "--config", &bad_value],
            vec![],
            "interval",
        ),
        (
            vec!["collector", "--config", "/nonexistent/telltale.yaml"],
            vec![],
            "/nonexistent/telltale.yaml",
        ),
        (
            vec!["collector", "--once", "--proc-root", "/nonexistent"],
            vec![],
            "proc-root",
        ),
        (
            vec!["collector", "--once"],
            vec![("TELLTALE_INTERVAL", "often")],
            "TELLTALE_INTERVAL",
        ),
        (vec!["frobnicate"], vec![], "frobnicate"),
        (
            vec!["collector", "--once", "--cluster-state", "--no-kube"],
            vec![],
            "cluster-state",
        ),
    ];
    for (args, env, needle) in cases {
        let (code, err) = run_err(&args, &env);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: message must name {needle}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn flags_beat_env_beat_file_beat_defaults() {
    let (_d, node, _) = fixture_node(Version::V2);
    let args = node.root_flags();
    let cfg = _d.path().join("c.yaml");
    std::fs::write(&cfg, "cluster: from-file\nnode-name: file-node\n").unwrap();
    let cfg = cfg.display().to_string();
    let run = |extra: &[&str], env: &[(&str, &str)]| -> String {
        let text = run_ok(
            telltale()
                .args(["collector", "--once", "--config", &cfg])
                .args(strs(&args))
                .args(extra)
                .envs(env.iter().copied()),
        );
        text.lines()
            .find(|l| l.starts_with("node_load1{"))
            .unwrap()
            .to_owned()
    };
    assert!(run(&[], &[]).contains(r#"cluster="from-file",node="file-node""#));
    assert!(run(&[], &[("TELLTALE_CLUSTER", "from-env")])
        .contains(r#"cluster="from-env",node="file-node""#));
    assert!(run(
        &["--cluster", "from-flag"],
        &[("TELLTALE_CLUSTER", "from-env")]
    )
    .contains(r#"cluster="from-flag""#));
    // Without a file: $NODE_NAME is the default node name.
    let text = run_ok(
        telltale()
            .args(["collector", "--once"])
            .args(strs(&args))
            .env("NODE_NAME", "downward"),
    );
    assert!(text.contains(r#"cluster="default",node="downward""#));
}

#[test]
fn help_documents_every_flag_with_its_default() {
    let help = run_ok(telltale().args(["collector", "--help"]));
    for flag in [
        "--listen",
        "--once",
        "--node-name",
        "--cluster",
        "--proc-root",
        "--sys-root",
        "--interval",
        "--no-kube",
        "--config",
    ] {
        assert!(help.contains(flag), "{flag} not in help");
    }
    for d in [
        "[default: 0.0.0.0:9101]",
        "[default: 15s]",
        "[default: /proc]",
        "[default: /sys]",
        "[default: default]",
        "$NODE_NAME",
    ] {
        assert!(help.contains(d), "{d} not in help:\n{help}");
    }
}

/// Rewrites the fixture's /proc/stat in place, adding `ticks` to cpu0's user time.
fn bump_cpu0_user(node: &Node, ticks: u64) {
    let path = node.proc_root().join("stat");
    let text = std::fs::read_to_string(&path).unwrap();
    let out: String = text
        .lines()
        .map(|l| match l.strip_prefix("cpu0 ") {
            Some(rest) => {
                let mut f: Vec<u64> = rest
                    .split_whitespace()
                    .map(|x| x.parse().unwrap())
                    .collect();
                f[0] += ticks;
                format!(
                    "cpu0 {}\n",
                    f.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
                )
            }
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&path, out).unwrap();
}

#[test]
fn prometheus_scrapes_the_collector() {
    let (d, node, rels) = fixture_node(Version::V2);
    let args = node.root_flags();
    let mut all = vec![
        "collector",
        "--no-kube",
        "--interval",
        "1s",
        "--cluster",
        "e2e",
    ];
    all.extend(strs(&args));
    let c = spawn(&all);
    let target = c.addr;
    let Some(prom) = common::Prometheus::start(
        d.path(),
        |_| {
            format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: telltale\n    static_configs:\n      - targets: ['{target}']\n")
        },
        &[],
    ) else {
        return;
    };
    // cpu0 accrues 1 s of user time per second of wall time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bumper = {
        let (node, stop) = (node.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                bump_cpu0_user(&node, 25);
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    // rate(x[1m]) divides by the whole minute even while the series is younger than that,
    // so its value is checked over a window the data already covers.
    let series_1m = eventually(Duration::from_secs(90), || {
        let v = prom.query("rate(node_cpu_seconds_total[1m])");
        let n = v["data"]["result"].as_array()?.len();
        (n > 0).then_some(n)
    });
    let rate = eventually(Duration::from_secs(60), || {
        let n = prom.query(r#"count_over_time(node_cpu_seconds_total{cpu="0",mode="user"}[5s])"#);
        let samples: f64 = n["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
        if samples < 5.0 {
            return None;
        }
        let v = prom.query(r#"rate(node_cpu_seconds_total{cpu="0",mode="user"}[5s])"#);
        let r = &v["data"]["result"][0];
        (r["metric"]["cluster"].as_str()? == "e2e").then_some(())?;
        r["value"][1].as_str()?.parse::<f64>().ok()
    });
    let ws_query = format!(r#"container_memory_working_set_bytes{{id="{}"}}"#, rels[0]);
    let ws = prom.query(&ws_query);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    bumper.join().unwrap();
    drop(prom);
    assert_eq!(
        series_1m,
        Some(16),
        "rate(node_cpu_seconds_total[1m]): 2 CPUs x 8 modes"
    );
    let rate = rate.expect("Prometheus never had 5 samples of cpu0 user time");
    assert!(
        (0.5..1.5).contains(&rate),
        "cpu0 user rate {rate}, expected about 1"
    );
    let r = &ws["data"]["result"][0];
    let value: f64 = r["value"][1]
        .as_str()
        .expect("working set series")
        .parse()
        .unwrap();
    let u = Usage::sample(0);
    assert_eq!(value, (u.memory_usage - u.inactive_file) as f64);
    assert_eq!(
        r["metric"]["name"].as_str(),
        Some(fixture::container_id(0).as_str())
    );
}
