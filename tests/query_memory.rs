//! Memory of queries, measured from outside on the real `telltale aggregator` process
//! (`/proc/<pid>/status`), over data imported with `telltale import`:
//!
//! 1. A month forced to raw data: 300 counters at 60 s for 30 days (12,960,000 samples,
//!    207 MB as bare (time, value) pairs). `sum by (namespace) (rate(x[1h]))` over the 30
//!    days at a 1 h step with `max_source_resolution=raw` peaks under 200 MiB above idle,
//!    and under twice what the same query over 3 days peaks at (plus 16 MiB): a range
//!    query holds a block of steps at a time, so its memory does not follow its length.
//! 2. Many queries over many files: 30 day files of 4,000 pods each (new pods every day,
//!    as in a cluster that redeploys daily), one-day and two-day queries over each day in
//!    turn. With `--query-cache-max-bytes 16MiB` the cache gauge never passes 16 MiB and
//!    the process's RSS stays under idle + 16 MiB + [`CONSTANT`], and running all the
//!    queries a second time raises it by at most [`SECOND_PASS`]; the same queries with
//!    a 1 GiB bound leave more than 16 MiB + [`CONSTANT`] in the cache alone, so the
//!    bound is what keeps the first process small.

#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use telltale_model::calendar::{DAY_MS, HOUR_MS, MINUTE_MS};

const MIB: u64 = 1 << 20;

/// What the process may hold beyond the cache bound after many small queries: the
/// allocator's free lists and per-thread arenas (glibc keeps what a thread freed in its
/// arena, and the reading threads are new for every query), the runtime's buffers, one
/// query's working memory. Measured 45–80 MiB on the 2-core CI machine (debug build,
/// beside the other test of this file, more when other work shares the cores). Both
/// bounds here stay well under the 214 MiB the cache alone holds without its bound.
const CONSTANT: u64 = 112 * MIB;

/// What a second pass of the same queries may add to the first pass's highest RSS: the
/// arenas settling (measured 5–12 MiB), far from another cache's worth.
const SECOND_PASS: u64 = 32 * MIB;

/// The first midnight of the data (2026-08-01T00:00Z); the stores keep it (`--retention`).
const T0: i64 = 1_785_542_400_000;

/// `VmRSS` or `VmHWM` of `pid`, in bytes.
fn status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// Resets `VmHWM` to the current RSS.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

/// Imports the Prometheus text files `files` into `dir` and checks the sample count.
fn import(dir: &Path, files: &[std::path::PathBuf], samples: u64) {
    let out = common::run_ok(
        common::telltale()
            .args(["import", "--data-dir"])
            .arg(dir)
            .args(files),
    );
    assert!(
        out.contains(&format!("imported {samples} samples")),
        "{out}"
    );
    for f in files {
        std::fs::remove_file(f).unwrap();
    }
}

fn aggregator(dir: &Path, extra: &[&str]) -> common::Running {
    let dir = dir.display().to_string();
    let mut args = vec![
        "aggregator",
        "--data-dir",
        &dir,
        "--retention",
        "3650d",
        "--query-timeout",
        "10m",
    ];
    args.extend_from_slice(extra);
    let server = common::spawn(&args);
    common::eventually(Duration::from_secs(60), || {
        common::try_get(&server.url("/readyz"))
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .expect("the aggregator became ready");
    server
}

/// A successful `query_range` answer's series count and the resolution that answered it
/// (`X-Telltale-Resolution`).
fn query_range(
    server: &common::Running,
    q: &str,
    start: i64,
    end: i64,
    step: i64,
    raw: bool,
) -> (usize, String) {
    let mut body = format!(
        "query={}&start={}&end={}&step={}",
        common::urlencode(q),
        start / 1000,
        end / 1000,
        step / 1000
    );
    if raw {
        body.push_str("&max_source_resolution=raw");
    }
    let resp = ureq::post(&server.url("/api/v1/query_range"))
        .timeout(Duration::from_secs(600))
        .set("Content-Type", "application/x-www-form-urlencoded")
        .send_string(&body)
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    let resolution = resp
        .header("X-Telltale-Resolution")
        .unwrap_or_default()
        .to_string();
    let json: serde_json::Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
    assert_eq!(json["status"], "success", "{q}: {json}");
    (json["data"]["result"].as_array().unwrap().len(), resolution)
}

#[test]
fn a_month_forced_to_raw_holds_a_block_at_a_time() {
    const SERIES: usize = 300;
    const DAYS: i64 = 30;
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut value = [0u64; SERIES];
    for day in 0..DAYS {
        let mut text = String::with_capacity(30 << 20);
        text.push_str("# TYPE mem_req_total counter\n");
        for (s, v) in value.iter_mut().enumerate() {
            for minute in 0..24 * 60 {
                *v += (s as u64 * 7 + minute as u64) % 13;
                let t = T0 + day * DAY_MS + minute * MINUTE_MS;
                writeln!(
                    text,
                    "mem_req_total{{namespace=\"ns-{}\",pod=\"pod-{s}\"}} {v} {t}",
                    s % 10
                )
                .unwrap();
            }
        }
        let f = dir.path().join(format!("day-{day}.prom"));
        std::fs::write(&f, text).unwrap();
        files.push(f);
    }
    let store = dir.path().join("telltale");
    import(&store, &files, SERIES as u64 * DAYS as u64 * 24 * 60);

    // The rollup files beside the raw ones (hourly LZ4, five-minute zstd) are plain
    // Parquet to other readers: DuckDB counts every imported sample in each resolution.
    for resolution in ["5m", "1h"] {
        let sql = format!(
            "SELECT sum(count)::BIGINT FROM read_parquet('{}/data/resolution={resolution}/day=*/*.parquet')",
            store.display()
        );
        if let Some(rows) = common::duckdb(&sql) {
            assert_eq!(rows, [(SERIES * DAYS as usize * 24 * 60).to_string()]);
        }
    }

    let server = aggregator(&store, &[]);
    let pid = server.child.id();
    let idle = status(pid, "VmRSS");
    let q = "sum by (namespace) (rate(mem_req_total[1h]))";
    let end = T0 + DAYS * DAY_MS;
    let peak = |days: i64| {
        reset_peak(pid);
        let (n, resolution) = query_range(&server, q, end - days * DAY_MS, end, HOUR_MS, true);
        assert_eq!((n, resolution.as_str()), (10, "raw"));
        status(pid, "VmHWM").saturating_sub(idle)
    };
    let three = peak(3);
    let thirty = peak(DAYS);
    eprintln!(
        "idle {} MiB; raw query peak above idle: 3 days {} MiB, 30 days {} MiB",
        idle / MIB,
        three / MIB,
        thirty / MIB
    );
    assert!(
        thirty < 200 * MIB,
        "a 30-day raw query over 300 series peaked {} MiB above idle",
        thirty / MIB
    );
    assert!(
        thirty < 2 * three + 16 * MIB,
        "memory follows the range: 3 days {} MiB, 30 days {} MiB above idle",
        three / MIB,
        thirty / MIB
    );
}

#[test]
fn many_queries_over_many_files_stay_within_the_cache_bound() {
    const PODS: usize = 4_000;
    const DAYS: i64 = 30;
    const BOUND: u64 = 16 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for day in 0..DAYS {
        let mut text = String::with_capacity(8 << 20);
        text.push_str("# TYPE mem_pod_info gauge\n");
        for p in 0..PODS {
            let labels = format!(
                "namespace=\"team-{ns}\",workload=\"service-{w}\",pod=\"service-{w}-{day:02}{p:05}-7f9c8d6b5-x{p:04}q\",node=\"node-{node}.cluster.internal\",image=\"registry.example.com/team-{ns}/service-{w}:v1.{day}.{p}\",uid=\"{day:08x}-{p:04x}-4a1b-9c2d-0123456789ab\"",
                ns = p % 20,
                w = p % 200,
                node = p % 50,
            );
            for hour in [0, 6, 12, 18] {
                let t = T0 + day * DAY_MS + hour * HOUR_MS;
                writeln!(text, "mem_pod_info{{{labels}}} 1 {t}").unwrap();
            }
        }
        let f = dir.path().join(format!("day-{day}.prom"));
        std::fs::write(&f, text).unwrap();
        files.push(f);
    }
    let store = dir.path().join("telltale");
    import(&store, &files, PODS as u64 * DAYS as u64 * 4);

    // One-day and two-day queries over each day in turn, one namespace and all.
    let run = |server: &common::Running, mut after_each: Box<dyn FnMut() + '_>| {
        for day in 0..DAYS {
            let start = T0 + day * DAY_MS;
            let ns = day % 20;
            let (n, _) = query_range(
                server,
                &format!("count by (workload) (mem_pod_info{{namespace=\"team-{ns}\"}})"),
                start,
                start + DAY_MS - HOUR_MS,
                HOUR_MS,
                false,
            );
            assert_eq!(n, 10);
            after_each();
            let end = (start + 2 * DAY_MS - HOUR_MS).min(T0 + DAYS * DAY_MS - HOUR_MS);
            let (n, _) = query_range(server, "count(mem_pod_info)", start, end, HOUR_MS, false);
            assert_eq!(n, 1);
            after_each();
        }
    };
    let cache = |server: &common::Running| -> u64 {
        let (_, text) = common::get(&server.url("/metrics"));
        common::sample(&text, "telltale_aggregator_query_cache_bytes").unwrap() as u64
    };

    // Without a tight bound the cache takes much more than 16 MiB for these queries.
    let unbounded = {
        let server = aggregator(&store, &["--query-cache-max-bytes", "1GiB"]);
        run(&server, Box::new(|| {}));
        cache(&server)
    };

    let server = aggregator(&store, &["--query-cache-max-bytes", "16MiB"]);
    let pid = server.child.id();
    let idle = status(pid, "VmRSS");
    let mut most_cached = 0;
    // The highest RSS in each of two passes of the same queries.
    let mut most_rss = [0, 0];
    for most in &mut most_rss {
        run(
            &server,
            Box::new(|| {
                most_cached = most_cached.max(cache(&server));
                *most = (*most).max(status(pid, "VmRSS"));
            }),
        );
    }
    eprintln!(
        "cache with a 1 GiB bound: {} MiB; with 16 MiB: at most {} MiB, RSS idle {} MiB, \
         at most {} MiB in the first pass, {} MiB in the second",
        unbounded / MIB,
        most_cached / MIB,
        idle / MIB,
        most_rss[0] / MIB,
        most_rss[1] / MIB
    );
    assert!(
        unbounded > BOUND + CONSTANT,
        "the queries should need more cache than the bound: {} MiB",
        unbounded / MIB
    );
    assert!(most_cached <= BOUND, "cache held {most_cached} bytes");
    let most = most_rss[0].max(most_rss[1]);
    assert!(
        most <= idle + BOUND + CONSTANT,
        "RSS reached {} MiB (idle {} MiB, bound 16 MiB, constant {} MiB)",
        most / MIB,
        idle / MIB,
        CONSTANT / MIB
    );
    // Nothing piles up from query to query: the same queries again stay where the
    // first pass went.
    assert!(
        most_rss[1] <= most_rss[0] + SECOND_PASS,
        "RSS went on growing: {} MiB after the first pass, {} MiB after the second",
        most_rss[0] / MIB,
        most_rss[1] / MIB
    );
}
