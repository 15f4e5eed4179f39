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
//!
//! The files: `data.rs` makes the sets, `systems.rs` starts the systems and imports into
//! them, `measure.rs` times the queries and compares the answers, `report.rs` prints the
//! figures; this one runs set A, then set B.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed benchmark

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use telltale_model::calendar::{day_name, DAY_MS};

#[path = "../common/mod.rs"]
mod common;
mod data;
mod measure;
mod report;
mod systems;

use common::{dir_bytes, wait_idle};
use data::{last_day, Set};
use measure::{measure, Case, CaseResult, Targets};
use report::{mib, print_tables, report_case, Prepared};
use systems::{
    ensure_tool, import_summary, ours_bytes, start_prometheus, start_vm, telltale_import,
    vm_import, vm_settle, wait_prometheus_compaction,
};

fn env_num(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
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
                wait_idle(proc.0.id(), Duration::from_secs(600), 2, "Prometheus");
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
