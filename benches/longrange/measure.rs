//! Timing one query on every system: Grafana's `query_range` request and its answer, how
//! two answers differ, the systems and variants asked, and each Telltale variant's memory
//! (idle VmRSS, then VmHWM over one query).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::status_kib;
use crate::systems::start_ours;

/// A variant whose warm-up took longer than this is timed once, not `BENCH_RUNS` times.
const SLOW: Duration = Duration::from_secs(30);

/// A range query's answer: series (labels as JSON, sorted) to points (ms, value).
pub type Series = BTreeMap<String, BTreeMap<i64, f64>>;

pub struct Answer {
    pub series: Series,
    pub resolution: Option<String>,
}

impl Answer {
    pub fn points(&self) -> usize {
        self.series.values().map(|p| p.len()).sum()
    }
}

/// Runs a range query: (wall time of the request and its body, answer), or why not.
fn query(
    agent: &ureq::Agent,
    url: &str,
    q: &str,
    start: i64,
    end: i64,
    step_s: i64,
    extra: &[(&str, &str)],
) -> Result<(Duration, Answer), String> {
    let (start, end, step) = (
        (start / 1000).to_string(),
        (end / 1000).to_string(),
        step_s.to_string(),
    );
    let mut form = vec![
        ("query", q),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("step", step.as_str()),
    ];
    form.extend_from_slice(extra);
    let begin = Instant::now();
    let resp = match agent
        .post(&format!("{url}/api/v1/query_range"))
        .send_form(&form)
    {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            let body = r.into_string().unwrap_or_default();
            return Err(format!("HTTP {code}: {}", body.trim()));
        }
        Err(e) => return Err(e.to_string()),
    };
    let resolution = resp.header("X-Telltale-Resolution").map(str::to_owned);
    let body = resp.into_string().map_err(|e| e.to_string())?;
    let took = begin.elapsed();
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    if v["status"] != "success" {
        return Err(body);
    }
    let mut series = Series::new();
    for s in v["data"]["result"].as_array().ok_or("no result")? {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(s["metric"].clone()).map_err(|e| e.to_string())?;
        let mut points = BTreeMap::new();
        for p in s["values"].as_array().ok_or("no values")? {
            let t = (p[0].as_f64().ok_or("time")? * 1000.0).round() as i64;
            let v: f64 = p[1].as_str().and_then(|x| x.parse().ok()).ok_or("value")?;
            points.insert(t, v);
        }
        series.insert(serde_json::to_string(&labels).unwrap(), points);
    }
    Ok((took, Answer { series, resolution }))
}

/// How `other` differs from `reference`: the largest relative difference of a point both
/// have, and the points only one of them has.
#[derive(Clone, Copy)]
pub struct Diff {
    pub max_rel: f64,
    missing: usize,
    extra: usize,
}

impl Diff {
    pub fn exact_within(&self, tolerance: f64) -> bool {
        self.missing == 0 && self.extra == 0 && self.max_rel <= tolerance
    }

    pub fn text(&self) -> String {
        let mut s = format!("{:.1e}", self.max_rel);
        if self.missing + self.extra > 0 {
            s += &format!(" ({} points missing, {} extra)", self.missing, self.extra);
        }
        s
    }
}

pub fn diff(reference: &Answer, other: &Answer) -> Diff {
    let mut d = Diff {
        max_rel: 0.0,
        missing: 0,
        extra: 0,
    };
    for (labels, points) in &reference.series {
        let theirs = other.series.get(labels);
        for (t, a) in points {
            match theirs.and_then(|p| p.get(t)) {
                None => d.missing += 1,
                Some(b) => {
                    let rel = if a == b {
                        0.0
                    } else {
                        (a - b).abs() / a.abs().max(b.abs())
                    };
                    d.max_rel = d
                        .max_rel
                        .max(if rel.is_nan() { f64::INFINITY } else { rel });
                }
            }
        }
    }
    for (labels, points) in &other.series {
        let ours = reference.series.get(labels);
        d.extra += points
            .keys()
            .filter(|t| ours.is_none_or(|p| !p.contains_key(t)))
            .count();
    }
    d
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum System {
    Raw,
    Auto,
    Prometheus,
    Vm,
}

pub const SYSTEMS: [System; 4] = [System::Raw, System::Auto, System::Prometheus, System::Vm];

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Raw => "Telltale (max_source_resolution=raw)",
            System::Auto => "Telltale (default, auto)",
            System::Prometheus => "Prometheus 2.42",
            System::Vm => "VictoriaMetrics 1.79",
        }
    }
}

/// What one system did with one query.
#[derive(Default)]
pub struct Outcome {
    pub times: Vec<Duration>,
    pub warm_up: Duration,
    pub answer: Option<Answer>,
    pub error: Option<String>,
    /// Telltale only: VmRSS of a fresh aggregator, then its VmHWM after one such query
    /// (KiB).
    pub idle_kib: u64,
    pub peak_kib: u64,
}

impl Outcome {
    pub fn median(&self) -> Option<Duration> {
        let mut v = self.times.clone();
        v.sort();
        (self.error.is_none() && !v.is_empty()).then(|| v[v.len() / 2])
    }
}

pub struct Case {
    pub set: usize,
    pub name: String,
    pub query: String,
    pub start: i64,
    pub end: i64,
    pub step_s: i64,
}

pub struct CaseResult {
    pub case: Case,
    pub outcomes: Vec<(System, Outcome)>,
}

impl CaseResult {
    pub fn get(&self, s: System) -> Option<&Outcome> {
        self.outcomes.iter().find(|(x, _)| *x == s).map(|(_, o)| o)
    }
}

/// The running systems a case's queries go to.
pub struct Targets<'a> {
    pub ours_store: &'a Path,
    pub prometheus: Option<&'a str>,
    pub vm: Option<&'a str>,
}

/// Writes 5 to `/proc/<pid>/clear_refs`: VmHWM starts again from the current RSS.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The URL and extra parameters a system's query goes to.
fn target<'a>(
    system: System,
    ours: &'a str,
    targets: &'a Targets,
) -> (&'a str, &'static [(&'static str, &'static str)]) {
    match system {
        System::Raw => (ours, &[("max_source_resolution", "raw")]),
        System::Auto => (ours, &[]),
        System::Prometheus => (targets.prometheus.unwrap(), &[]),
        System::Vm => (targets.vm.unwrap(), &[]),
    }
}

/// Times `case` on every system in turn (a warm-up, then `runs` rounds), then takes each
/// Telltale variant's memory alone: a fresh aggregator, its idle VmRSS, one query, VmHWM.
pub fn measure(agent: &ureq::Agent, case: Case, targets: &Targets, runs: usize) -> CaseResult {
    let mut outcomes: Vec<(System, Outcome)> = SYSTEMS
        .iter()
        .filter(|s| match s {
            System::Prometheus => targets.prometheus.is_some(),
            System::Vm => targets.vm.is_some(),
            _ => true,
        })
        .map(|&s| (s, Outcome::default()))
        .collect();
    let q = |url: &str, extra: &[(&str, &str)]| {
        query(
            agent,
            url,
            &case.query,
            case.start,
            case.end,
            case.step_s,
            extra,
        )
    };
    let (ours, ours_url) = start_ours(targets.ours_store);
    for round in 0..=runs {
        for (system, out) in outcomes.iter_mut() {
            if out.error.is_some() || (out.warm_up > SLOW && !out.times.is_empty()) {
                continue;
            }
            let (url, extra) = target(*system, &ours_url, targets);
            match q(url, extra) {
                Ok((took, answer)) => {
                    if round == 0 {
                        out.warm_up = took;
                        out.answer = Some(answer);
                    } else {
                        out.times.push(took);
                        if let Some(r) = answer.resolution {
                            out.answer.as_mut().unwrap().resolution = Some(r);
                        }
                    }
                }
                Err(e) => out.error = Some(e),
            }
        }
    }
    drop(ours);
    for (system, out) in outcomes.iter_mut() {
        if !matches!(system, System::Raw | System::Auto) || out.error.is_some() {
            continue;
        }
        let (ours, ours_url) = start_ours(targets.ours_store);
        let pid = ours.0.id();
        out.idle_kib = status_kib(pid, "VmRSS");
        if !reset_peak(pid) {
            println!("    (cannot reset VmHWM: the peak is the process's since its start)");
        }
        let (url, extra) = target(*system, &ours_url, targets);
        if let Err(e) = q(url, extra) {
            out.error = Some(e);
        }
        out.peak_kib = status_kib(pid, "VmHWM");
    }
    CaseResult { case, outcomes }
}
