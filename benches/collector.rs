//! Collector benchmarks (issue "Foundation and the node/container collector").
//!
//! `cargo bench --bench collector` prints three figures, each against its target:
//! 1. CPU time of one collection cycle (read, encode) on a fixture node of 110 pods and
//!    250 application containers (plus their 110 sandboxes), cgroup v1 and v2;
//! 2. RSS of the `telltale collector` process after 100 cycles on that fixture;
//! 3. CPU per scrape of `telltale collector` vs `prometheus-node-exporter` (default
//!    collectors) on this machine, each scraped 200 times in the same run.
//!
//! CPU is measured as thread CPU time (in process) or utime+stime from /proc (processes),
//! not wall time, because the machines are shared.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use telltale_collector::fixture::{self, Driver, Runtime, Version};
use telltale_collector::{Collector, Options};

mod common;
use common::{
    fixture_dir, free_port, process_cpu, status_kib, thread_cpu, thread_user_system, wait_ready,
};

const PODS: usize = 110;
const CONTAINERS: usize = 250;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The benchmark node: 110 pods, 250 containers, on tmpfs where there is one.
fn bench_node(version: Version) -> (tempfile::TempDir, fixture::Node) {
    let dir = fixture_dir();
    let node = fixture::Node::new(dir.path(), version, Driver::Systemd).expect("fixture");
    fixture::populate(&node, PODS, CONTAINERS, Runtime::Containerd).expect("populate");
    (dir, node)
}

fn options(node: &fixture::Node) -> Options {
    node.options("bench", "node-1")
}

fn cycle_cpu(version: Version) {
    let (_dir, node) = bench_node(version);
    let mut c = Collector::new(&options(&node), prometheus::Registry::new()).expect("collector");
    for _ in 0..5 {
        c.collect(SystemTime::now());
    }
    let (mut read, mut encode) = (Vec::new(), Vec::new());
    let mut series = 0;
    let cgroups = c
        .collect(SystemTime::now())
        .text
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"container_memory_usage_bytes{"))
        .count();
    let reads_before = telltale_collector::kept_files::reads_total();
    let (user0, sys0) = thread_user_system();
    // More cycles make profiles of the cycle alone (the fixture's creation is then noise).
    let cycles: usize = std::env::var("BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for _ in 0..cycles {
        let t0 = thread_cpu();
        c.read();
        let t1 = thread_cpu();
        let snap = c.encode(0);
        let t2 = thread_cpu();
        read.push(t1 - t0);
        encode.push(t2 - t1);
        series = snap.series;
    }
    let reads_per_cycle =
        (telltale_collector::kept_files::reads_total() - reads_before) as f64 / cycles as f64;
    let (user1, sys1) = thread_user_system();
    let (user, sys) = (
        (user1 - user0) / cycles as u32,
        (sys1 - sys0) / cycles as u32,
    );
    let (r, e) = (median(&mut read), median(&mut encode));
    // The anchor, measured in the same run on the same files: one pread of a kept handle.
    let one_read = pread_cost(&node);
    let floor = one_read * reads_per_cycle as u32;
    println!(
        "cycle {version:?}: {cgroups} cgroups, {series} series; CPU per cycle median {:.2} ms (read {:.2} ms + encode {:.2} ms); targets <= 5 ms per cycle, <= 2 ms encode",
        (r + e).as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3,
        e.as_secs_f64() * 1e3
    );
    println!(
        "cycle {version:?}: split: user (our code) {:.2} ms + system (the kernel reading files) {:.2} ms per cycle, mean",
        user.as_secs_f64() * 1e3,
        sys.as_secs_f64() * 1e3
    );
    println!(
        "cycle {version:?}: anchor: {reads_per_cycle:.0} reads per cycle x {:.2} us per pread = {:.2} ms of reading alone; read phase = {:.2}x that floor",
        one_read.as_secs_f64() * 1e6,
        floor.as_secs_f64() * 1e3,
        r.as_secs_f64() / floor.as_secs_f64()
    );
}

/// Thread CPU time of one `pread` at offset 0 of a small kept file of the fixture
/// (median of 20 000), the unit cost every cgroup read pays.
fn pread_cost(node: &fixture::Node) -> Duration {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(node.proc_root().join("loadavg")).expect("loadavg");
    let mut buf = [0u8; 4096];
    let mut samples = Vec::with_capacity(200);
    for _ in 0..200 {
        let t0 = thread_cpu();
        for _ in 0..100 {
            f.read_at(&mut buf, 0).expect("pread");
        }
        samples.push((thread_cpu() - t0) / 100);
    }
    median(&mut samples)
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(url: &str) -> String {
    ureq::get(url)
        .timeout(Duration::from_secs(5))
        .call()
        .expect("GET")
        .into_string()
        .expect("body")
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn spawn_collector(args: &[&str], port: u16) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_telltale"))
        .args(["collector", "--no-kube", "--listen", &listen])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn telltale");
    Proc(child)
}

fn rss_after_100_cycles() {
    let (_dir, node) = bench_node(Version::V2);
    let port = free_port();
    let flags = node.root_flags();
    let mut args = vec!["--interval", "100ms"];
    args.extend(flags.iter().map(String::as_str));
    let c = spawn_collector(&args, port);
    let url = format!("http://127.0.0.1:{port}/metrics");
    wait_ready(&url);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut text = get(&url);
    while metric(&text, "telltale_collector_cycles_total") < 100.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        text = get(&url);
    }
    let cycles = metric(&text, "telltale_collector_cycles_total");
    let series = metric(&text, "telltale_collector_series");
    let pid = c.0.id();
    let mib = |field: &str| status_kib(pid, field) as f64 / 1024.0;
    println!(
        "rss: telltale collector after {cycles} cycles on the fixture ({series} series): {:.1} MiB (heap and buffers {:.1}, binary and libraries {:.1}); target <= 20 MiB",
        mib("VmRSS"),
        mib("RssAnon"),
        mib("RssFile")
    );
}

/// Scrapes `url` `n` times, `every` apart, and returns the process's CPU per scrape.
fn cpu_per_scrape(pid: u32, url: &str, n: usize, every: Duration) -> (Duration, usize) {
    let before = process_cpu(pid);
    let mut bytes = 0;
    let start = Instant::now();
    for i in 0..n {
        bytes = get(url).len();
        let next = start + every * (i as u32 + 1);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    ((process_cpu(pid) - before) / n as u32, bytes)
}

fn versus_node_exporter() {
    let ne = std::path::Path::new("/usr/bin/prometheus-node-exporter");
    if !ne.exists() {
        println!("scrape: skipped, prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)");
        return;
    }
    let every = Duration::from_millis(100);
    let n = 200;
    let port = free_port();
    let child = Command::new(ne)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn node_exporter");
    let ne_proc = Proc(child);
    let ne_url = format!("http://127.0.0.1:{port}/metrics");
    wait_ready(&ne_url);
    get(&ne_url);
    let (ne_cpu, ne_bytes) = cpu_per_scrape(ne_proc.0.id(), &ne_url, n, every);
    let ne_series = get(&ne_url).lines().filter(|l| !l.starts_with('#')).count();
    drop(ne_proc);

    // Ours collects on its own interval; at an interval equal to the scrape spacing every
    // scrape pays for one collection, as node_exporter's does. First on this machine, then on
    // the 110-pod / 250-container fixture node.
    let (_dir, node) = bench_node(Version::V2);
    let flags = node.root_flags();
    let on_fixture: Vec<&str> = flags.iter().map(String::as_str).collect();
    for (what, extra) in [
        ("this machine", &[][..]),
        ("fixture node, 250 containers", &on_fixture[..]),
    ] {
        let port = free_port();
        let mut args = vec!["--interval", "100ms"];
        args.extend_from_slice(extra);
        let ours = spawn_collector(&args, port);
        let url = format!("http://127.0.0.1:{port}/metrics");
        wait_ready(&url);
        let c0 = metric(&get(&url), "telltale_collector_cycles_total");
        let (our_cpu, our_bytes) = cpu_per_scrape(ours.0.id(), &url, n, every);
        let text = get(&url);
        let cycles = metric(&text, "telltale_collector_cycles_total") - c0;
        let our_series = text.lines().filter(|l| !l.starts_with('#')).count();
        println!(
            "scrape ({what}): node_exporter {:.2} ms CPU per scrape ({ne_series} series, {ne_bytes} B); telltale {:.2} ms CPU per scrape ({our_series} series, {our_bytes} B, {cycles} collections for {n} scrapes); ratio {:.2} (target <= 1.0)",
            ne_cpu.as_secs_f64() * 1e3,
            our_cpu.as_secs_f64() * 1e3,
            our_cpu.as_secs_f64() / ne_cpu.as_secs_f64()
        );
    }
}

fn main() {
    // `cargo bench --bench collector [PART...]`: a part runs when an argument is a prefix of
    // its name (`cycle` runs both cycle parts); no argument runs everything.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want =
        |part: &str| filter.is_empty() || filter.iter().any(|f| part.starts_with(f.as_str()));
    if want("cycle-v1") {
        cycle_cpu(Version::V1);
    }
    if want("cycle-v2") {
        cycle_cpu(Version::V2);
    }
    if want("rss") {
        rss_after_100_cycles();
    }
    if want("scrape") {
        versus_node_exporter();
    }
}
