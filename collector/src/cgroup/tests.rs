//! Cgroup source tests on fixture trees: golden expositions for every layout, driver and
//! runtime; exact values; and what happens with bad or vanishing files.

use std::collections::HashMap;
use std::time::SystemTime;

use super::*;
use crate::collect::Collector;
use crate::cycle_errors::CycleErrors;
use crate::fixture::{self, container_id, pod_uid, Driver, Node, Qos, Runtime, Usage, Version};
use crate::kept_files::ReadBuf;
use crate::options::Options;

struct Tree {
    _dir: tempfile::TempDir,
    node: Node,
    /// (qos, pod uid, container rels)
    pods: Vec<(Qos, String, Vec<String>)>,
}

/// Three pods (guaranteed with two containers, burstable with two, best-effort with one),
/// a system service, and for CRI-O on systemd its conmon scope.
fn tree(version: Version, driver: Driver, runtime: Runtime) -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new(dir.path(), version, driver).unwrap();
    let mut pods = Vec::new();
    let mut n = 0;
    for (p, (qos, count)) in [
        (Qos::Guaranteed, 2),
        (Qos::Burstable, 2),
        (Qos::BestEffort, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let uid = pod_uid(p);
        let pod = node.pod_rel(qos, &uid);
        node.write_cgroup(&pod, &Usage::sample(100 + p as u64))
            .unwrap();
        let mut rels = Vec::new();
        for c in 0..count {
            let rel = node.container_rel(qos, &uid, runtime, &container_id(n));
            let pid = 4000 + 10 * n as u32;
            let mut u = Usage {
                pids: vec![pid, pid + 1],
                threads: 5 + c,
                ..Usage::sample(n as u64)
            };
            if qos == Qos::BestEffort {
                (u.memory_limit, u.cpu_quota_us) = (None, None);
            }
            node.write_cgroup(&rel, &u).unwrap();
            node.set_start_time(&rel, 1_700_000_100 + n as i64).unwrap();
            if c == 0 {
                node.write_pod_net(pid, 5000 + p as u64, 7000 + p as u64)
                    .unwrap();
            }
            rels.push(rel);
            n += 1;
        }
        node.set_start_time(&pod, 1_700_000_000).unwrap();
        pods.push((qos, uid, rels));
    }
    let svc = "/system.slice/containerd.service";
    node.write_cgroup(svc, &Usage::sample(50)).unwrap();
    node.set_start_time(svc, 1_690_000_000).unwrap();
    if driver == Driver::Systemd && runtime == Runtime::Crio {
        let pod = node.pod_rel(Qos::Guaranteed, &pod_uid(0));
        let conmon = format!("{pod}/crio-conmon-{}.scope", container_id(0));
        node.write_cgroup(&conmon, &Usage::sample(60)).unwrap();
        node.set_start_time(&conmon, 1_700_000_050).unwrap();
        node.set_start_time(&pod, 1_700_000_000).unwrap();
    }
    // QoS levels and the kubepods root: a fixed time too, so goldens are stable.
    for qos in [Qos::Guaranteed, Qos::Burstable, Qos::BestEffort] {
        let pod = node.pod_rel(qos, "x");
        node.set_start_time(&pod[..pod.rfind('/').unwrap()], 1_690_000_000)
            .unwrap();
    }
    node.set_start_time("/system.slice", 1_690_000_000).unwrap();
    Tree {
        _dir: dir,
        node,
        pods,
    }
}

fn options(node: &Node) -> Options {
    node.options("c1", "n1")
}

/// One full cycle through the collector; returns the container families only.
fn containers(c: &mut Collector) -> String {
    let snap = c.collect(SystemTime::now());
    let text = std::str::from_utf8(&snap.text).unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("container_")
                || l.starts_with("# HELP container_")
                || l.starts_with("# TYPE container_")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The first line where two expositions differ, or None when equal.
fn first_difference(a: &str, b: &str) -> Option<String> {
    let (mut la, mut lb) = (a.lines(), b.lines());
    for n in 1.. {
        match (la.next(), lb.next()) {
            (None, None) => return None,
            (x, y) if x == y => continue,
            (x, y) => {
                return Some(format!(
                    "line {n}:\n  {}\n  {}",
                    x.unwrap_or("<end>"),
                    y.unwrap_or("<end>")
                ))
            }
        }
    }
    None
}

fn value(text: &str, name: &str, id: &str, extra: &str) -> Option<f64> {
    let prefix = format!("{name}{{");
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(&prefix)?;
        if !rest.contains(&format!("id=\"{id}\"")) || !rest.contains(extra) {
            return None;
        }
        l.rsplit(' ').next()?.parse().ok()
    })
}

#[test]
fn golden_expositions() {
    let combos = [
        (Version::V1, Driver::Cgroupfs, Runtime::Docker),
        (Version::V1, Driver::Systemd, Runtime::Containerd),
        (Version::Hybrid, Driver::Cgroupfs, Runtime::Containerd),
        (Version::Hybrid, Driver::Systemd, Runtime::Crio),
        (Version::V2, Driver::Cgroupfs, Runtime::Crio),
        (Version::V2, Driver::Systemd, Runtime::Docker),
    ];
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for (v, d, r) in combos {
        let t = tree(v, d, r);
        let mut c = Collector::new(&options(&t.node), prometheus::Registry::new()).unwrap();
        let got = containers(&mut c);
        assert!(
            c.last_errors().iter().next().is_none(),
            "{v:?}/{d:?}/{r:?}: {:?}",
            c.last_errors().iter().collect::<Vec<_>>()
        );
        let name = format!("{v:?}-{d:?}-{r:?}.prom").to_lowercase();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/cgroup/golden")
            .join(&name);
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(diff) = first_difference(&got, &want) {
            failures.push(format!(
                "{name} differs from the golden file (UPDATE_GOLDEN=1 rewrites it) at {diff}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn hybrid_reads_the_v1_controllers() {
    let t = tree(Version::Hybrid, Driver::Systemd, Runtime::Containerd);
    let layout = Layout::detect(&t.node.sys_root()).unwrap();
    assert_eq!(layout.version(), super::Version::V1);
    let v1 = tree(Version::V1, Driver::Systemd, Runtime::Containerd);
    let mut a = Collector::new(&options(&t.node), prometheus::Registry::new()).unwrap();
    let mut b = Collector::new(&options(&v1.node), prometheus::Registry::new()).unwrap();
    let diff = first_difference(&containers(&mut a), &containers(&mut b));
    assert!(
        diff.is_none(),
        "hybrid differs from v1 at {}",
        diff.unwrap_or_default()
    );
}

#[test]
fn exact_values_v2() {
    let t = tree(Version::V2, Driver::Systemd, Runtime::Containerd);
    let mut c = Collector::new(&options(&t.node), prometheus::Registry::new()).unwrap();
    let (_, uid, rels) = &t.pods[1];
    let rel = &rels[1]; // container 3 of the tree: Usage::sample(3)
    let u = Usage::sample(3);
    let text = containers(&mut c);
    let v = |name: &str, extra: &str| {
        value(&text, name, rel, extra)
            .unwrap_or_else(|| panic!("{name} {extra} for {rel}:\n{text}"))
    };
    assert_eq!(
        v("container_cpu_usage_seconds_total", r#"cpu="total""#),
        4.123456,
        "usage_usec / 1e6"
    );
    assert_eq!(v("container_cpu_user_seconds_total", ""), 2.4);
    assert_eq!(v("container_cpu_system_seconds_total", ""), 1.2);
    assert_eq!(v("container_cpu_cfs_periods_total", ""), 4000.0);
    assert_eq!(v("container_cpu_cfs_throttled_periods_total", ""), 40.0);
    assert_eq!(v("container_cpu_cfs_throttled_seconds_total", ""), 0.02);
    assert_eq!(v("container_memory_usage_bytes", ""), u.memory_usage as f64);
    assert_eq!(
        v("container_memory_working_set_bytes", ""),
        (u.memory_usage - u.inactive_file) as f64
    );
    assert_eq!(v("container_memory_rss", ""), u.anon as f64);
    assert_eq!(v("container_memory_cache", ""), u.file as f64);
    assert_eq!(v("container_memory_swap", ""), 0.0);
    assert_eq!(v("container_memory_failcnt", ""), 0.0, "v2 has no failcnt");
    assert_eq!(v("container_oom_events_total", ""), 0.0);
    assert_eq!(
        v("container_spec_memory_limit_bytes", ""),
        512.0 * 1024.0 * 1024.0
    );
    assert_eq!(v("container_spec_cpu_quota", ""), 50_000.0);
    assert_eq!(v("container_spec_cpu_period", ""), 100_000.0);
    // shares 512 → runc's cpu.weight 20 → back to shares as cAdvisor does: 500.
    assert_eq!(v("container_spec_cpu_shares", ""), 500.0);
    assert_eq!(
        v("container_fs_reads_bytes_total", r#"device="/dev/vda""#),
        4.0 * 4096.0
    );
    assert_eq!(
        v("container_fs_writes_bytes_total", r#"device="/dev/vda""#),
        4.0 * 8192.0
    );
    assert_eq!(v("container_fs_reads_total", r#"device="/dev/vda""#), 4.0);
    assert_eq!(v("container_fs_writes_total", r#"device="/dev/vda""#), 8.0);
    assert_eq!(v("container_processes", ""), 2.0);
    assert_eq!(v("container_threads", ""), 6.0);
    assert_eq!(v("container_start_time_seconds", ""), 1_700_000_103.0);
    let name = format!(r#"name="{}""#, container_id(3));
    assert!(text.contains(&name), "container id in `name`");
    // The pod-level cgroup: no processes of its own, the pod's network namespace.
    let pod = t.node.pod_rel(Qos::Burstable, uid);
    assert_eq!(value(&text, "container_processes", &pod, ""), Some(0.0));
    assert_eq!(
        value(
            &text,
            "container_network_receive_bytes_total",
            &pod,
            r#"interface="eth0""#
        ),
        Some(5001.0)
    );
    assert_eq!(
        value(
            &text,
            "container_network_transmit_bytes_total",
            &pod,
            r#"interface="eth0""#
        ),
        Some(7001.0)
    );
    assert_eq!(
        value(
            &text,
            "container_network_receive_errors_total",
            &pod,
            r#"interface="eth0""#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "container_network_transmit_packets_dropped_total",
            &pod,
            r#"interface="eth0""#
        ),
        Some(4.0)
    );
    assert!(!text.contains(r#"interface="lo""#));
    assert_eq!(
        value(&text, "container_network_receive_bytes_total", rel, ""),
        None,
        "network is pod-level only"
    );
    // Best effort: no limits.
    let be = &t.pods[2].2[0];
    assert_eq!(
        value(&text, "container_spec_memory_limit_bytes", be, ""),
        Some(0.0),
        "max → 0"
    );
    assert_eq!(
        value(&text, "container_spec_cpu_quota", be, ""),
        None,
        "no quota series when unlimited"
    );
    assert_eq!(
        value(&text, "container_spec_cpu_period", be, ""),
        Some(100_000.0)
    );
}

#[test]
fn exact_values_v1() {
    let t = tree(Version::V1, Driver::Cgroupfs, Runtime::Containerd);
    let mut c = Collector::new(&options(&t.node), prometheus::Registry::new()).unwrap();
    let rel = &t.pods[1].2[1];
    let u = Usage::sample(3);
    let text = containers(&mut c);
    let v = |name: &str, extra: &str| {
        value(&text, name, rel, extra).unwrap_or_else(|| panic!("{name} for {rel}:\n{text}"))
    };
    assert_eq!(
        v("container_cpu_usage_seconds_total", r#"cpu="total""#),
        4.123456,
        "cpuacct.usage ns / 1e9"
    );
    assert_eq!(
        v("container_cpu_user_seconds_total", ""),
        2.4,
        "USER_HZ ticks / 100"
    );
    assert_eq!(
        v("container_cpu_cfs_throttled_seconds_total", ""),
        0.02,
        "throttled_time ns / 1e9"
    );
    assert_eq!(
        v("container_memory_working_set_bytes", ""),
        (u.memory_usage - u.inactive_file) as f64
    );
    assert_eq!(
        v("container_memory_rss", ""),
        u.anon as f64,
        "total_rss, not rss"
    );
    assert_eq!(v("container_memory_failcnt", ""), u.failcnt as f64);
    assert_eq!(v("container_oom_events_total", ""), u.oom_kills as f64);
    assert_eq!(v("container_spec_cpu_shares", ""), 512.0);
    assert_eq!(v("container_fs_writes_total", r#"device="/dev/vda""#), 8.0);
    let be = &t.pods[2].2[0];
    assert_eq!(
        value(&text, "container_spec_memory_limit_bytes", be, ""),
        Some(0.0),
        "unlimited → 0"
    );
    assert_eq!(
        value(&text, "container_spec_cpu_quota", be, ""),
        None,
        "-1 → no series"
    );
}

#[test]
fn working_set_is_floored_at_zero_and_oom_kills_count() {
    for version in [Version::V1, Version::V2] {
        let t = tree(version, Driver::Systemd, Runtime::Containerd);
        let rel = &t.pods[0].2[0];
        let u = Usage {
            inactive_file: 10 << 30,
            file: 10 << 30,
            oom_kills: 3,
            nr_throttled: 77,
            ..Usage::sample(0)
        };
        t.node.write_cgroup(rel, &u).unwrap();
        let mut c = Collector::new(&options(&t.node), prometheus::Registry::new()).unwrap();
        let text = containers(&mut c);
        assert_eq!(
            value(&text, "container_memory_working_set_bytes", rel, ""),
            Some(0.0),
            "{version:?}"
        );
        assert_eq!(
            value(&text, "container_oom_events_total", rel, ""),
            Some(3.0),
            "{version:?}"
        );
        assert_eq!(
            value(&text, "container_cpu_cfs_throttled_periods_total", rel, ""),
            Some(77.0),
            "{version:?}"
        );
    }
}

#[test]
fn values_follow_rewrites_and_vanished_cgroups_disappear() {
    for version in [Version::V1, Version::V2] {
        let t = tree(version, Driver::Systemd, Runtime::Containerd);
        let mut c = Collector::new(&options(&t.node), prometheus::Registry::new()).unwrap();
        let rel = t.pods[0].2[1].clone();
        let first = containers(&mut c);
        assert!(value(&first, "container_memory_usage_bytes", &rel, "").is_some());
        t.node
            .write_cgroup(
                &rel,
                &Usage {
                    memory_usage: 12345,
                    ..Usage::sample(1)
                },
            )
            .unwrap();
        let second = containers(&mut c);
        assert_eq!(
            value(&second, "container_memory_usage_bytes", &rel, ""),
            Some(12345.0),
            "{version:?}: kept handles see new values"
        );
        t.node.remove_cgroup(&rel).unwrap();
        let third = containers(&mut c);
        assert!(
            !third.contains(&format!("id=\"{rel}\"")),
            "{version:?}: series of a removed cgroup must go"
        );
        assert!(
            c.last_errors().iter().next().is_none(),
            "a cgroup removed between cycles is not an error"
        );
        // The whole pod goes: its network series too.
        let (qos, uid, _) = &t.pods[0];
        t.node.remove_cgroup(&t.node.pod_rel(*qos, uid)).unwrap();
        let fourth = containers(&mut c);
        assert!(!fourth.contains(uid.replace('-', "_").as_str()) && !fourth.contains(uid.as_str()));
    }
}

fn source(node: &Node) -> (CgroupSource, ReadBuf, CycleErrors) {
    let layout = Layout::detect(&node.sys_root()).unwrap();
    (
        CgroupSource::new(layout, &node.proc_root(), "c1", "n1"),
        ReadBuf::default(),
        CycleErrors::default(),
    )
}

fn emit(src: &CgroupSource) -> String {
    let mut enc = telltale_model::TextEncoder::default();
    src.emit(&HashMap::new(), &mut enc);
    String::from_utf8(enc.take()).unwrap()
}

#[test]
fn a_cgroup_vanishing_between_listing_and_reading_is_skipped_and_counted() {
    for version in [Version::V1, Version::V2] {
        let t = tree(version, Driver::Cgroupfs, Runtime::Containerd);
        let (mut src, mut buf, mut errors) = source(&t.node);
        src.read(&mut buf, &mut errors, false);
        let (qos, uid, _) = &t.pods[1];
        let new = t
            .node
            .container_rel(*qos, uid, Runtime::Containerd, &container_id(99));
        t.node.write_cgroup(&new, &Usage::sample(99)).unwrap();
        src.cycle += 1;
        src.discover(&mut buf, &mut errors);
        t.node.remove_cgroup(&new).unwrap();
        errors.clear();
        src.read_known(&mut buf, &mut errors, false);
        assert!(errors.count("cgroup") > 0, "{version:?}");
        let text = emit(&src);
        assert!(
            !text.contains(&format!("id=\"{new}\"")),
            "{version:?}: no series, not even a partial one:\n{text}"
        );
        assert!(
            value(&text, "container_memory_usage_bytes", &t.pods[0].2[0], "").is_some(),
            "others unaffected"
        );
        errors.clear();
        src.read(&mut buf, &mut errors, false);
        assert_eq!(
            errors.count("cgroup"),
            0,
            "{version:?}: gone after the next listing"
        );
    }
}

#[test]
fn malformed_files_skip_only_what_depends_on_them() {
    for version in [Version::V1, Version::V2] {
        let t = tree(version, Driver::Systemd, Runtime::Crio);
        let rel = &t.pods[0].2[1];
        let (stat, cpu, cpu_ctrl) = match version {
            Version::V2 => ("memory.stat", "cpu.stat", ""),
            _ => ("memory.stat", "cpuacct.usage", "cpu,cpuacct"),
        };
        // Truncated in the middle of the file, and a number that is not one.
        let mem_stat = t.node.cgroup_file(rel, "memory", stat);
        let full = std::fs::read_to_string(&mem_stat).unwrap();
        std::fs::write(&mem_stat, &full[..full.find("inactive_anon").unwrap() - 3]).unwrap();
        std::fs::write(
            t.node.cgroup_file(rel, cpu_ctrl, cpu),
            "usage_usec 12x\nuser_usec 1\nsystem_usec 1\n",
        )
        .unwrap();
        // A file that cannot be read at all.
        let pids = t.node.cgroup_file(rel, "pids", "pids.current");
        std::fs::remove_file(&pids).unwrap();
        std::fs::create_dir(&pids).unwrap();
        let mut c = Collector::new(&options(&t.node), prometheus::Registry::new()).unwrap();
        let text = containers(&mut c);
        assert!(
            c.last_errors().count("cgroup") >= 3,
            "{version:?}: {:?}",
            c.last_errors().iter().collect::<Vec<_>>()
        );
        for gone in [
            "container_memory_working_set_bytes",
            "container_cpu_usage_seconds_total",
            "container_threads",
        ] {
            assert_eq!(
                value(&text, gone, rel, ""),
                None,
                "{version:?}: {gone} must be skipped"
            );
        }
        assert!(
            value(&text, "container_memory_usage_bytes", rel, "").is_some(),
            "{version:?}: usage is unaffected"
        );
        assert!(
            value(
                &text,
                "container_memory_working_set_bytes",
                &t.pods[0].2[0],
                ""
            )
            .is_some(),
            "{version:?}: siblings unaffected"
        );
        let own = std::str::from_utf8(&c.collect(SystemTime::now()).text)
            .unwrap()
            .to_owned();
        let counted: f64 = own
            .lines()
            .find_map(|l| {
                l.strip_prefix("telltale_collector_errors_total{source=\"cgroup\"} ")?
                    .parse()
                    .ok()
            })
            .unwrap();
        assert!(
            counted >= 6.0,
            "{version:?}: two cycles of errors counted, got {counted}"
        );
    }
}

#[test]
fn non_container_cgroups_carry_their_id_only() {
    let t = tree(Version::V2, Driver::Systemd, Runtime::Crio);
    let mut c = Collector::new(&options(&t.node), prometheus::Registry::new()).unwrap();
    let text = containers(&mut c);
    let svc = text
        .lines()
        .find(|l| {
            l.starts_with("container_memory_usage_bytes{") && l.contains("containerd.service")
        })
        .unwrap();
    assert!(
        svc.contains(
            r#"container="",id="/system.slice/containerd.service",image="",name="",namespace="""#
        ),
        "{svc}"
    );
    let conmon = text
        .lines()
        .find(|l| l.starts_with("container_memory_usage_bytes{") && l.contains("crio-conmon-"))
        .unwrap();
    assert!(
        conmon.contains(r#"name="""#),
        "conmon is not a container: {conmon}"
    );
}

#[test]
fn spec_files_are_reread_on_their_cadence() {
    let t = tree(Version::V2, Driver::Systemd, Runtime::Containerd);
    let mut c = Collector::new(&options(&t.node), prometheus::Registry::new()).unwrap();
    let rel = &t.pods[0].2[0];
    containers(&mut c);
    std::fs::write(t.node.cgroup_file(rel, "", "memory.max"), "1048576\n").unwrap();
    let mut seen = Vec::new();
    for _ in 0..SPEC_EVERY {
        seen.push(
            value(
                &containers(&mut c),
                "container_spec_memory_limit_bytes",
                rel,
                "",
            )
            .unwrap(),
        );
    }
    assert_eq!(
        seen.last(),
        Some(&1_048_576.0),
        "a resize shows within {SPEC_EVERY} cycles: {seen:?}"
    );
    assert_eq!(
        seen[0],
        512.0 * 1024.0 * 1024.0,
        "between spec reads the last value stays"
    );
}

#[test]
fn populate_builds_the_benchmark_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new(dir.path(), Version::V2, Driver::Systemd).unwrap();
    let rels = fixture::populate(&node, 11, 25, Runtime::Containerd).unwrap();
    assert_eq!(rels.len(), 25);
    let (mut src, mut buf, mut errors) = source(&node);
    src.read(&mut buf, &mut errors, false);
    assert!(
        errors.iter().next().is_none(),
        "{:?}",
        errors.iter().collect::<Vec<_>>()
    );
    // 25 containers + 11 pods + 3 QoS levels + system.slice and its 5 services
    assert_eq!(src.len(), 25 + 11 + 3 + 6);
}

#[test]
fn the_hierarchy_is_walked_again_only_after_a_change() {
    let t = tree(Version::V2, Driver::Systemd, Runtime::Containerd);
    let (mut src, mut buf, mut errors) = source(&t.node);
    for _ in 0..3 {
        src.read(&mut buf, &mut errors, false);
    }
    assert_eq!(src.watcher.walked_at, 1, "quiet cycles must not walk");
    let (qos, uid, _) = &t.pods[1];
    let new = t
        .node
        .container_rel(*qos, uid, Runtime::Containerd, &container_id(42));
    t.node.write_cgroup(&new, &Usage::sample(42)).unwrap();
    src.read(&mut buf, &mut errors, false);
    assert_eq!(src.watcher.walked_at, 4, "a new cgroup triggers a walk");
    assert!(emit(&src).contains(&format!("id=\"{new}\"")));
    src.read(&mut buf, &mut errors, false);
    assert_eq!(src.watcher.walked_at, 4);
    t.node.remove_cgroup(&new).unwrap();
    src.read(&mut buf, &mut errors, false);
    assert!(
        !emit(&src).contains(&format!("id=\"{new}\"")),
        "a removed cgroup goes at once"
    );
    // Without inotify every cycle walks, so nothing is missed either.
    src.watcher.fd = None;
    let again = t
        .node
        .container_rel(*qos, uid, Runtime::Containerd, &container_id(43));
    t.node.write_cgroup(&again, &Usage::sample(43)).unwrap();
    src.read(&mut buf, &mut errors, false);
    assert!(emit(&src).contains(&format!("id=\"{again}\"")));
    // And the safety net: an unchanged hierarchy is walked every REWALK_EVERY cycles.
    let (mut src, mut buf, mut errors) = source(&t.node);
    for _ in 0..=REWALK_EVERY {
        src.read(&mut buf, &mut errors, false);
    }
    assert_eq!(src.watcher.walked_at, 1 + REWALK_EVERY);
}
