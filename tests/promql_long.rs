//! Long-range differential PromQL test: `telltale aggregator` over a month of imported
//! data against a real Prometheus 2.42 holding the same samples.
//!
//! Data: 30 deterministic series, 31 days at 60 s (timestamps on the minute) from
//! 2026-08-01T00:00Z to 2026-09-01T00:00Z: 13 counters `tt_long_requests_total{kind,
//! instance}` (two resets each, one away for a day, one starting mid-range) and 17 gauges
//! `tt_long_queue_depth{kind, instance}` (waves with noise, one away for a day, one starting
//! mid-range, one going negative). Gap edges and starts sit at :16/:17, :42/:43, :37 and :53,
//! so no evaluation step lands exactly a window or a lookback away from them. Written once
//! as OpenMetrics text; Prometheus gets it through `promtool tsdb create-blocks-from
//! openmetrics`, Telltale through `telltale import`. Both keep it (`--retention` long).
//!
//! Queries (form POST): 14 over 30 days at a 1 h step, the same 7 minutes off the hour,
//! over 7 days at a 10 m step, and as instant queries at two times; 15 with 6 h, 1 h and
//! mixed windows over 30 days at a 6 h step, on the hour and 7 minutes off. Each on
//! Telltale twice:
//!
//! 1. `max_source_resolution=raw`: every answer equals Prometheus's as `tests/promql.rs`
//!    compares them (same series, same timestamps, values within 1e-6 relative / 1e-9
//!    absolute); an `X-Telltale-Resolution` header, if sent, says `raw`.
//! 2. `max_source_resolution=auto`: the header names the resolution [`predicted`] by the
//!    planner's documented rule (aggregator/src/query/plan.rs); instant queries are raw and
//!    may go without it. Where the step, start and windows are whole buckets the answer
//!    must equal Prometheus's exactly (buckets cover (end - width, end] and the sample at
//!    a window's left edge is kept, so Prometheus 2.42's closed window is reproduced).
//!    Where they are not ("coarse": at least five buckets per step and window) the
//!    rollup answers for the window moved back to the last bucket end: every answer must
//!    equal Prometheus's answer to the [`shifted`] query exactly.
//!    Skipped, with a message, when no answer carries the header (no rollups).
//!
//! The summary prints, per query, evaluation and resolution, the largest difference of
//! Telltale's auto answer to Prometheus's, to the shifted query, and Prometheus's answer to
//! the shifted one; then the largest per function, aligned and coarse apart.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::ops::Range;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use telltale_model::calendar::{day_name, day_of, days_from_civil, DAY_MS, HOUR_MS, MINUTE_MS};

const COUNTER: &str = "tt_long_requests_total";
const GAUGE: &str = "tt_long_queue_depth";
/// Days of data; samples at every minute from the first midnight to the last, inclusive.
const DAYS: i64 = 31;
/// Values agree as in `tests/promql.rs`: within 1e-6 relative or 1e-9 absolute.
const EXACT: Tol = Tol(1e-6, 1e-9);
/// Query-answering threads (CI has two cores; the servers do the work).
const WORKERS: usize = 3;

fn t0() -> i64 {
    days_from_civil(2026, 8, 1) * DAY_MS
}

// ---------------------------------------------------------------------------------------
// The data set

/// A deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Series {
    metric: &'static str,
    /// `instance="i1",kind="api"`.
    labels: String,
    samples: Vec<(i64, f64)>,
}

fn series(metric: &'static str, kind: &str, instance: u64, samples: Vec<(i64, f64)>) -> Series {
    let labels = format!("instance=\"i{instance}\",kind=\"{kind}\"");
    Series {
        metric,
        labels,
        samples,
    }
}

const KINDS: [&str; 3] = ["api", "web", "batch"];
/// Sample index (minutes from the start) of day `d`, `h`:`m`.
const fn at(d: i64, h: i64, m: i64) -> i64 {
    (d * 24 + h) * 60 + m
}
/// Last sample index.
const LAST: i64 = DAYS * 24 * 60;

/// A counter: integer steps of 75-125% of `mean` a minute, reset (to one step) at `resets`,
/// absent for indexes in `gap`, from index `from` on.
fn counter(k: u64, mean: u64, from: i64, gap: Range<i64>) -> Vec<(i64, f64)> {
    let mut rng = Rng(k.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0xc0);
    let resets = [
        (k as i64 * 7_919 + 4_001) % LAST,
        (k as i64 * 104_729 + 25_013) % LAST,
    ];
    let mut v = (k * 1000) as f64;
    let mut out = Vec::new();
    for i in from..=LAST {
        let step = (mean - mean / 4 + rng.below(mean / 2 + 1)) as f64;
        v = if resets.contains(&i) { step } else { v + step };
        if !gap.contains(&i) {
            out.push((t0() + i * MINUTE_MS, v));
        }
    }
    out
}

/// A gauge: `center` plus a wave of `amp` with a period of `period` minutes plus noise of
/// ±1, in quarters (sums stay exact), absent for indexes in `gap`, from `from` on.
fn gauge(k: u64, [center, amp, period]: [f64; 3], from: i64, gap: Range<i64>) -> Vec<(i64, f64)> {
    let mut rng = Rng(k.wrapping_mul(0x9e37_79b9) ^ 0x6a);
    (from..=LAST)
        .filter_map(|i| {
            let noise = rng.below(9) as f64 / 4.0 - 1.0;
            let wave = amp * (std::f64::consts::TAU * i as f64 / period).sin();
            let v = ((center + wave + noise) * 4.0).round() / 4.0;
            (!gap.contains(&i)).then(|| (t0() + i * MINUTE_MS, v))
        })
        .collect()
}

fn dataset() -> Vec<Series> {
    let mut out = Vec::new();
    for k in 0..12u64 {
        // batch i4 is away for a day.
        let gap = (k == 11).then(|| at(23, 10, 17)..at(24, 10, 17));
        let mean = [600, 120, 30][k as usize % 3] * (k / 3 + 1);
        let samples = counter(k, mean, 0, gap.unwrap_or(0..0));
        out.push(series(COUNTER, KINDS[k as usize % 3], k / 3 + 1, samples));
    }
    let late = counter(12, 90, at(15, 13, 37), 0..0);
    out.push(series(COUNTER, "web", 5, late));
    let periods = [1440.0, 360.0, 720.0, 4320.0, 97.0];
    for k in 0..15u64 {
        // batch i5 is away for a day.
        let gap = (k == 14).then(|| at(24, 4, 43)..at(25, 4, 43));
        let (center, amp) = ((100 * k + 100) as f64, (20 + 10 * k) as f64);
        let samples = gauge(
            k,
            [center, amp, periods[k as usize % 5]],
            0,
            gap.unwrap_or(0..0),
        );
        out.push(series(GAUGE, KINDS[k as usize % 3], k / 3 + 1, samples));
    }
    // Around zero, from mid-range; and below zero.
    let late = gauge(15, [0.0, 50.0, 1000.0], at(22, 19, 53), 0..0);
    out.push(series(GAUGE, "api", 6, late));
    let negative = gauge(16, [-20.0, 5.0, 180.0], 0, 0..0);
    out.push(series(GAUGE, "web", 6, negative));
    out
}

/// The data set as OpenMetrics (family by family, series by series, seconds, `# EOF`).
fn write_openmetrics(data: &[Series], path: &Path) {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    for (metric, family, kind) in [
        (COUNTER, "tt_long_requests", "counter"),
        (GAUGE, GAUGE, "gauge"),
    ] {
        writeln!(w, "# TYPE {family} {kind}").unwrap();
        for s in data.iter().filter(|s| s.metric == metric) {
            let head = format!("{metric}{{{}}}", s.labels);
            for (t, v) in &s.samples {
                writeln!(w, "{head} {v} {}", t / 1000).unwrap();
            }
        }
    }
    writeln!(w, "# EOF").unwrap();
    w.flush().unwrap();
}

/// The largest change of a gauge over `width` ms.
fn max_gauge_change(data: &[Series], width: i64) -> f64 {
    let n = (width / MINUTE_MS) as usize;
    let gauges = data.iter().filter(|s| s.metric == GAUGE);
    let changes = gauges.flat_map(|s| s.samples.windows(n + 1));
    let spans = changes.filter(|w| w[n].0 - w[0].0 == width);
    spans.map(|w| (w[n].1 - w[0].1).abs()).fold(0.0, f64::max)
}

// ---------------------------------------------------------------------------------------
// Queries

/// `C` and `G` stand for the counter and the gauge.
const QUERIES: [&str; 14] = [
    "rate(C[1h])",
    "increase(C[2h])",
    "sum by (kind) (rate(C[1h]))",
    "delta(G[1h])",
    "avg_over_time(G[1h])",
    "max_over_time(G[1h])",
    "min_over_time(G[1h])",
    "sum_over_time(G[1h])",
    "count_over_time(G[1h])",
    "last_over_time(G[1h])",
    "G",
    "sum(G)",
    "avg by (kind) (G)",
    "max(C)",
];
/// At a 6 h step, besides the first ten of [`QUERIES`] with 6 h windows (1h rollups): 1 h
/// windows (5m) and mixed windows, where the shortest decides.
const QUERIES_6H: [&str; 5] = [
    "sum by (kind) (G)",
    "rate(C[1h])",
    "avg_over_time(G[1h])",
    "max_over_time(G[6h]) - min_over_time(G[1h])",
    "max_over_time(G[6h]) - min_over_time(G[20m])",
];

fn expand(template: &str) -> String {
    template.replace('C', COUNTER).replace('G', GAUGE)
}

/// A window's length in ms (`1h`, `20m`).
fn ms(d: &str) -> i64 {
    let (n, unit) = d.split_at(d.len() - 1);
    n.parse::<i64>().unwrap() * if unit == "h" { HOUR_MS } else { MINUTE_MS }
}

/// The range windows of a query, ms (the text between `[` and `]`).
fn windows(q: &str) -> Vec<i64> {
    q.split(['[', ']']).skip(1).step_by(2).map(ms).collect()
}

#[derive(Clone, Copy, Debug)]
enum Eval {
    Instant(i64),
    Range(i64, i64, i64),
}

fn show_time(ms: i64) -> String {
    let r = ms.rem_euclid(DAY_MS);
    format!(
        "{}T{:02}:{:02}Z ({})",
        day_name(day_of(ms)),
        r / HOUR_MS,
        r % HOUR_MS / MINUTE_MS,
        ms / 1000
    )
}

impl Eval {
    fn describe(self) -> String {
        let span = |a: i64, b: i64| format!("{} days", (b - a) / DAY_MS);
        match self {
            Eval::Instant(t) => format!("instant at {}", show_time(t)),
            Eval::Range(s, e, step) => format!(
                "range {} from {} step {}m",
                span(s, e),
                show_time(s),
                step / MINUTE_MS
            ),
        }
    }
}

/// What `max_source_resolution=auto` must pick (aggregator/src/query/plan.rs): the coarsest
/// r of 1h, 5m where the step, the start and every window are whole buckets (`aligned`,
/// answered exactly as raw), or else the step and every window are at least 5 buckets
/// (`coarse`, differing at window edges); raw otherwise and for instant queries. The
/// resolution's name, its width (0 for raw) and whether it is coarse.
fn predicted(q: &str, eval: Eval) -> (&'static str, i64, bool) {
    let Eval::Range(start, _, step) = eval else {
        return ("raw", 0, false);
    };
    let w = windows(q);
    let aligned = |r: i64| step % r == 0 && start % r == 0 && w.iter().all(|x| x % r == 0);
    let coarse = |r: i64| step >= 5 * r && w.iter().all(|x| *x >= 5 * r);
    [(HOUR_MS, "1h"), (5 * MINUTE_MS, "5m")]
        .into_iter()
        .find(|(r, _)| aligned(*r) || coarse(*r))
        .map_or(("raw", 0, false), |(r, name)| (name, r, !aligned(r)))
}

/// The query of `template` as Prometheus evaluates a coarse rollup: every selector moved
/// back `offset` ms. At a step `offset` past a bucket's end the rollup answers for the last
/// bucket end, t - offset: its windows are the buckets ending in (t - offset - r,
/// t - offset] and the sample on the left edge (Prometheus's closed window of `[r] offset
/// <offset>`, extrapolated to that window's edges); a plain selector reads the last
/// bucket's last sample.
fn shifted(template: &str, offset: i64) -> String {
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ']' || (c == 'C' || c == 'G') && chars.peek() != Some(&'[') {
            write!(out, " offset {offset}ms").unwrap();
        }
    }
    expand(&out)
}

// ---------------------------------------------------------------------------------------
// Answers

/// Series (labels as `{a="1", b="2"}`, sorted) with their points (timestamp ms -> value).
type Answer = BTreeMap<String, BTreeMap<i64, f64>>;

/// POSTs `q` to `url` for `eval` with `extra` form fields; the `X-Telltale-Resolution`
/// header and the answer, or why there is none.
fn ask(
    agent: &ureq::Agent,
    url: &str,
    q: &str,
    eval: Eval,
    extra: &[(&str, &str)],
) -> Result<(Option<String>, Answer), String> {
    let secs = |ms: i64| format!("{}.{:03}", ms / 1000, ms % 1000);
    let (path, mut form) = match eval {
        Eval::Instant(t) => (
            "/api/v1/query",
            vec![("query", q.to_string()), ("time", secs(t))],
        ),
        Eval::Range(s, e, step) => (
            "/api/v1/query_range",
            vec![
                ("query", q.to_string()),
                ("start", secs(s)),
                ("end", secs(e)),
                ("step", secs(step)),
            ],
        ),
    };
    form.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = match agent.post(&format!("{url}{path}")).send_form(&form) {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            return Err(format!(
                "HTTP {code}: {}",
                r.into_string().unwrap_or_default()
            ))
        }
        Err(e) => return Err(e.to_string()),
    };
    let header = r.header("X-Telltale-Resolution").map(str::to_owned);
    let body: Json = serde_json::from_str(&r.into_string().map_err(|e| e.to_string())?)
        .map_err(|e| format!("not JSON: {e}"))?;
    let data = &body["data"];
    let vector = data["resultType"] == "vector";
    let out = data["result"]
        .as_array()
        .ok_or_else(|| format!("no result in {body}"))?
        .iter()
        .map(|e| {
            // serde_json's map is sorted by key.
            let labels = e["metric"].as_object().unwrap().iter();
            let labels: Vec<String> = labels.map(|(k, v)| format!("{k}={v}")).collect();
            let points = if vector {
                [point(&e["value"])].into_iter().collect()
            } else {
                e["values"].as_array().unwrap().iter().map(point).collect()
            };
            (format!("{{{}}}", labels.join(", ")), points)
        })
        .collect();
    Ok((header, out))
}

fn point(p: &Json) -> (i64, f64) {
    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
    let v = match p[1].as_str().unwrap() {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap(),
    };
    (t, v)
}

/// Values agree within `.0` relative (to the larger) or `.1` absolute.
#[derive(Clone, Copy, Debug)]
struct Tol(f64, f64);

/// Largest differences seen (absolute, relative to the larger magnitude).
#[derive(Clone, Copy, Default, Debug)]
struct Max {
    abs: f64,
    rel: f64,
}

impl Max {
    fn add(&mut self, a: f64, b: f64) {
        if a.is_finite() && b.is_finite() {
            let d = (a - b).abs();
            self.abs = self.abs.max(d);
            if d > 0.0 {
                self.rel = self.rel.max(d / a.abs().max(b.abs()));
            }
        }
    }
    fn merge(&mut self, o: Max) {
        self.abs = self.abs.max(o.abs);
        self.rel = self.rel.max(o.rel);
    }
}

/// Compares Telltale's answer (`got`) with Prometheus's (`want`): the same series, the same
/// timestamps, values within `tol`. Differences go to `fails` prefixed with `ctx`.
fn compare(want: &Answer, got: &Answer, tol: Tol, ctx: &str, fails: &mut Vec<String>) -> Max {
    let mut max = Max::default();
    let none = BTreeMap::new();
    for l in want.keys().chain(got.keys()).collect::<BTreeSet<_>>() {
        let (w, g) = (want.get(l).unwrap_or(&none), got.get(l).unwrap_or(&none));
        for t in w.keys().chain(g.keys()).collect::<BTreeSet<_>>() {
            let at = format!("{ctx}: {l} at {}", show_time(*t));
            let (a, b) = match (w.get(t), g.get(t)) {
                (Some(a), Some(b)) => (*a, *b),
                (Some(a), None) => {
                    fails.push(format!("{at}: Prometheus {a}, Telltale has no point"));
                    continue;
                }
                (None, b) => {
                    let b = b.unwrap();
                    fails.push(format!("{at}: Telltale {b}, Prometheus has no point"));
                    continue;
                }
            };
            max.add(a, b);
            let d = (a - b).abs();
            let close = d <= tol.1 || d <= tol.0 * a.abs().max(b.abs());
            if !(a == b || a.is_nan() && b.is_nan() || a.is_finite() && b.is_finite() && close) {
                fails.push(format!(
                    "{at}: Prometheus {a} vs Telltale {b} (differ by {d:e}; allowed {:e} \
                     relative or {:e} absolute)",
                    tol.0, tol.1
                ));
            }
        }
    }
    max
}

// ---------------------------------------------------------------------------------------
// The servers

/// Waits until `url` answers 200.
fn wait_ready(url: &str, who: &str) {
    common::eventually(Duration::from_secs(60), || {
        common::try_get(url).ok().filter(|(s, _)| *s == 200)
    })
    .unwrap_or_else(|| panic!("{who} did not become ready ({url})"));
}

/// What one (query, evaluation) gave.
struct Outcome {
    query: String,
    eval: Eval,
    predicted: &'static str,
    coarse: bool,
    /// The auto answer's `X-Telltale-Resolution`.
    header: Option<String>,
    /// Telltale auto against Prometheus's answer and, for a coarse rollup, against the
    /// [`shifted`] query; Prometheus's answer against the shifted one (the edge effect).
    auto_closed: Max,
    auto_shifted: Max,
    prom_shifted: Max,
    raw_fails: Vec<String>,
    auto_fails: Vec<String>,
}

struct Servers {
    agent: ureq::Agent,
    prometheus: String,
    telltale: String,
    /// The largest change of a gauge over 5 minutes and over an hour.
    gauge_change: [f64; 2],
}

/// Asks `template` for `eval` of Prometheus and of Telltale in both modes and compares.
fn evaluate(s: &Servers, template: &str, eval: Eval) -> Outcome {
    let q = expand(template);
    let ctx = |mode: &str| format!("[{mode}] {q} ({})", eval.describe());
    let ask = |url: &str, q: &str, mode: Option<&str>| {
        let extra: Vec<_> = mode
            .map(|m| ("max_source_resolution", m))
            .into_iter()
            .collect();
        ask(&s.agent, url, q, eval, &extra).unwrap_or_else(|e| panic!("{}: {url}: {e}", ctx("-")))
    };
    let (_, want) = ask(&s.prometheus, &q, None);
    let mut raw_fails = Vec::new();
    let (header, got) = ask(&s.telltale, &q, Some("raw"));
    if let Some(h) = header.filter(|h| h != "raw") {
        raw_fails.push(format!(
            "{}: X-Telltale-Resolution {h}, want raw",
            ctx("raw")
        ));
    }
    compare(&want, &got, EXACT, &ctx("raw"), &mut raw_fails);

    let (header, got) = ask(&s.telltale, &q, Some("auto"));
    let (predicted, width, coarse) = predicted(&q, eval);
    let ctx = ctx(&format!("auto, want {predicted}"));
    let mut auto_fails = Vec::new();
    // Instant queries are raw; the header may be left off them.
    let instant_raw = matches!(eval, Eval::Instant(_)) && header.is_none();
    if header.as_deref() != Some(predicted) && !instant_raw {
        auto_fails.push(format!(
            "{ctx}: X-Telltale-Resolution {header:?}, want {predicted}"
        ));
    }
    let mut ignored = Vec::new();
    let auto_closed = compare(&want, &got, EXACT, &ctx, &mut ignored);
    let (mut auto_shifted, mut prom_shifted) = (Max::default(), Max::default());
    if let (true, Eval::Range(start, ..)) = (coarse, eval) {
        let sq = shifted(template, start.rem_euclid(width));
        let reference = ask(&s.prometheus, &sq, None).1;
        auto_shifted = compare(&reference, &got, EXACT, &ctx, &mut ignored);
        prom_shifted = compare(&want, &reference, EXACT, &ctx, &mut ignored);
        let ctx = format!("{ctx} against Prometheus's {sq}");
        compare(&reference, &got, EXACT, &ctx, &mut auto_fails);
    } else {
        compare(&want, &got, EXACT, &ctx, &mut auto_fails);
    }
    Outcome {
        query: template.to_string(),
        eval,
        predicted,
        coarse,
        header,
        auto_closed,
        auto_shifted,
        prom_shifted,
        raw_fails,
        auto_fails,
    }
}

/// The first few failures of each (query, evaluation), at most 40 lines.
fn show(fails: &[&Vec<String>]) -> String {
    let mut s = String::new();
    for f in fails.iter().filter(|f| !f.is_empty()).take(12) {
        for line in f.iter().take(3) {
            write!(s, "\n  {line}").unwrap();
        }
        if f.len() > 3 {
            write!(s, "\n    ... and {} more for this query", f.len() - 3).unwrap();
        }
    }
    s
}

#[test]
fn promql_long_range_matches_prometheus() {
    let started = Instant::now();
    let (Some(promtool), Some(_)) = (common::tool("promtool"), common::tool("prometheus")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dataset();
    let samples: usize = data.iter().map(|s| s.samples.len()).sum();
    let text = dir.path().join("data.om");
    write_openmetrics(&data, &text);

    // Both stores from the same file, at once. 744 h: promtool's largest block range under
    // it (486 h) gives three blocks, so it reads the text three times, not once per 2 h.
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let mut blocks = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg("--max-block-duration=744h")
        .arg(&text)
        .arg(prom_dir.join("tsdb"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ours_dir = dir.path().join("telltale").display().to_string();
    let import = common::run_ok(
        common::telltale()
            .args(["import", "--data-dir", &ours_dir])
            .arg(&text),
    );
    assert!(
        import.contains(&format!("imported {samples} samples")),
        "{import}"
    );
    assert!(
        blocks.wait().unwrap().success(),
        "promtool tsdb create-blocks-from openmetrics failed"
    );
    let loaded = started.elapsed();

    // The data is months old: retention well past it on both.
    let prom = common::Prometheus::start(
        &prom_dir,
        |_| "global:\n  scrape_interval: 1h\n".to_string(),
        &["--storage.tsdb.retention.time=10y"],
    )
    .unwrap();
    let ours = common::spawn(&[
        "aggregator",
        "--data-dir",
        &ours_dir,
        "--retention",
        "3650d",
    ]);
    let servers = Servers {
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(120))
            .build(),
        prometheus: prom.url.clone(),
        telltale: format!("http://{}", ours.addr),
        gauge_change: [5 * MINUTE_MS, HOUR_MS].map(|w| max_gauge_change(&data, w)),
    };
    wait_ready(&format!("{}/-/ready", servers.prometheus), "Prometheus");
    wait_ready(&format!("{}/readyz", servers.telltale), "the aggregator");

    let t = t0();
    let six_hours: Vec<String> = QUERIES[..10]
        .iter()
        .map(|q| q.replace("[1h]", "[6h]").replace("[2h]", "[6h]"))
        .chain(QUERIES_6H.iter().map(|q| q.to_string()))
        .collect();
    let mut jobs: Vec<(&str, Eval)> = Vec::new();
    for eval in [
        Eval::Range(t + DAY_MS, t + DAYS * DAY_MS, HOUR_MS),
        Eval::Range(t + 21 * DAY_MS, t + 28 * DAY_MS, 10 * MINUTE_MS),
        // Off the buckets by 7 minutes: coarse 5m rollups.
        Eval::Range(t + DAY_MS + 7 * MINUTE_MS, t + DAYS * DAY_MS, HOUR_MS),
        Eval::Instant(t + 24 * DAY_MS + 5 * HOUR_MS),
        Eval::Instant(t + DAYS * DAY_MS),
    ] {
        jobs.extend(QUERIES.iter().map(|q| (*q, eval)));
    }
    for start in [t + DAY_MS, t + DAY_MS + 7 * MINUTE_MS] {
        let six = Eval::Range(start, t + DAYS * DAY_MS, 6 * HOUR_MS);
        jobs.extend(six_hours.iter().map(|q| (q.as_str(), six)));
    }
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                while let Some((q, eval)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let o = evaluate(&servers, q, *eval);
                    outcomes.lock().unwrap().push(o);
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by_key(|o| (o.eval.describe(), o.query.clone()));

    // Per query and evaluation: the resolution predicted and answered, the differences.
    let mut report = format!(
        "{:<46} {:<31} want  got  {:>19} {:>19} {:>19}",
        "query", "evaluation", "auto-prom abs/rel", "auto-shifted", "prom-shifted"
    );
    let mut per_function: BTreeMap<String, [Max; 3]> = BTreeMap::new();
    for o in &outcomes {
        let pair = |m: Max| format!("{:.2e}/{:.1e}", m.abs, m.rel);
        let header = o.header.as_deref().unwrap_or("-");
        write!(
            report,
            "\n{:<46} {:<31} {:<5} {:<4} {:>19} {:>19} {:>19}",
            o.query,
            o.eval.describe(),
            o.predicted,
            header,
            pair(o.auto_closed),
            pair(o.auto_shifted),
            pair(o.prom_shifted),
        )
        .unwrap();
        if !matches!(header, "-" | "raw") {
            // The query without its windows: rate(C[1h]) and rate(C[6h]) together.
            let f: String = o.query.split(['[', ']']).step_by(2).collect();
            let f = format!("{f} ({})", if o.coarse { "coarse" } else { "aligned" });
            let e = per_function.entry(f).or_default();
            for (m, o) in e
                .iter_mut()
                .zip([o.auto_closed, o.auto_shifted, o.prom_shifted])
            {
                m.merge(o);
            }
        }
    }
    eprintln!("{report}");
    let rollups = outcomes.iter().any(|o| o.header.is_some());
    if rollups {
        eprintln!("answers from rollups, largest difference (abs/rel): Telltale auto to Prometheus | to the shifted query | Prometheus to the shifted query:");
        for (f, m) in &per_function {
            let [c, h, p] = m.map(|m| format!("{:.2e}/{:.1e}", m.abs, m.rel));
            eprintln!("  {f:<40} {c:>18} | {h:>18} | {p:>18}");
        }
    }
    eprintln!(
        "{} series, {samples} samples, loaded in {loaded:.1?}; {} evaluations in {:.1?}; \
         largest gauge change in 5m, 1h: {:?}",
        data.len(),
        jobs.len(),
        started.elapsed() - loaded,
        servers.gauge_change
    );

    let raw: Vec<&Vec<String>> = outcomes.iter().map(|o| &o.raw_fails).collect();
    let n: usize = raw.iter().map(|f| f.len()).sum();
    assert!(
        n == 0,
        "max_source_resolution=raw: {n} differences from Prometheus 2.42:{}",
        show(&raw)
    );
    if !rollups {
        eprintln!(
            "SKIPPED the max_source_resolution=auto part: the aggregator sent no \
             X-Telltale-Resolution header (rollups not there yet); the raw part passed"
        );
        return;
    }
    let auto: Vec<&Vec<String>> = outcomes.iter().map(|o| &o.auto_fails).collect();
    let n: usize = auto.iter().map(|f| f.len()).sum();
    assert!(
        n == 0,
        "max_source_resolution=auto: {n} differences beyond the tolerances:{}",
        show(&auto)
    );
}
