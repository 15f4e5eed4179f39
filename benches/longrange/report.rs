//! What a run reports: each case's figures and comparisons as they come (noting what
//! fails the benchmark), then the tables of times, memory, differences and store bytes.

use std::time::Duration;

use crate::data::Set;
use crate::measure::{diff, CaseResult, Outcome, System, SYSTEMS};
use crate::systems::OursBytes;

/// Raw answers may differ from Prometheus's by this much, relative, per point.
const RAW_TOLERANCE: f64 = 1e-9;

/// What preparing a set measured.
pub struct Prepared {
    pub set: Set,
    pub ours_import: Option<Duration>,
    pub ours: OursBytes,
    pub prometheus_bytes: Option<u64>,
    pub vm_bytes: Option<u64>,
}

fn ms(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1000.0)
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64()),
        _ => "–".into(),
    }
}

fn cell(o: Option<&Outcome>) -> String {
    match o {
        None => "not run".into(),
        Some(o) if o.error.is_some() => "**refused**".into(),
        Some(o) => match o.median() {
            Some(m) if o.times.len() == 1 => format!("{} (1 run)", ms(m)),
            Some(m) => ms(m),
            None => "–".into(),
        },
    }
}

/// Prints one case's figures as they come, and notes its failures.
pub fn report_case(r: &CaseResult, failures: &mut Vec<String>) {
    for (system, o) in &r.outcomes {
        match (&o.error, o.median(), &o.answer) {
            (Some(e), _, _) => {
                println!("    {}: REFUSED: {e}", system.name());
                failures.push(format!(
                    "{}: {} refused it: {e}",
                    r.case.name,
                    system.name()
                ));
            }
            (None, Some(m), Some(a)) => println!(
                "    {}: median {} ({} series, {} points{}{})",
                system.name(),
                ms(m),
                a.series.len(),
                a.points(),
                a.resolution
                    .as_ref()
                    .map(|x| format!(", X-Telltale-Resolution: {x}"))
                    .unwrap_or_default(),
                if o.peak_kib > 0 {
                    format!(
                        ", peak RSS {} over idle {}",
                        mib((o.peak_kib.saturating_sub(o.idle_kib)) * 1024),
                        mib(o.idle_kib * 1024)
                    )
                } else {
                    String::new()
                }
            ),
            _ => {}
        }
    }
    let answer = |s| r.get(s).and_then(|o| o.answer.as_ref());
    if let (Some(raw), Some(prom)) = (answer(System::Raw), answer(System::Prometheus)) {
        let d = diff(prom, raw);
        if d.exact_within(RAW_TOLERANCE) {
            println!(
                "    raw vs Prometheus: same series and points, max relative difference {:.1e}",
                d.max_rel
            );
        } else {
            println!("    raw vs Prometheus: MISMATCH {}", d.text());
            failures.push(format!(
                "{}: Telltale's raw answer differs from Prometheus's: max relative difference {}",
                r.case.name,
                d.text()
            ));
        }
    }
    for (a, b, what) in [
        (System::Prometheus, System::Auto, "auto vs Prometheus"),
        (System::Raw, System::Auto, "auto vs raw"),
        (
            System::Prometheus,
            System::Vm,
            "VictoriaMetrics vs Prometheus",
        ),
        (System::Raw, System::Vm, "VictoriaMetrics vs Telltale raw"),
    ] {
        if let (Some(x), Some(y)) = (answer(a), answer(b)) {
            println!("    {what}: max relative difference {}", diff(x, y).text());
        }
    }
}

pub fn print_tables(prepared: &[Prepared], results: &[CaseResult]) {
    println!("\n## Results\n");
    println!("| query | Telltale auto | (answered by) | Telltale raw | Prometheus 2.42 | VictoriaMetrics 1.79 | auto / VM | auto / Prometheus | raw / VM | raw / Prometheus |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let m = |s| r.get(s).and_then(|o| o.median());
        let answered = r
            .get(System::Auto)
            .and_then(|o| o.answer.as_ref())
            .and_then(|a| a.resolution.clone())
            .unwrap_or_else(|| "no header".into());
        println!(
            "| {} ({}) | {} | {answered} | {} | {} | {} | {} | {} | {} | {} |",
            r.case.name,
            prepared[r.case.set].set.name,
            cell(r.get(System::Auto)),
            cell(r.get(System::Raw)),
            cell(r.get(System::Prometheus)),
            cell(r.get(System::Vm)),
            ratio(m(System::Auto), m(System::Vm)),
            ratio(m(System::Auto), m(System::Prometheus)),
            ratio(m(System::Raw), m(System::Vm)),
            ratio(m(System::Raw), m(System::Prometheus)),
        );
    }

    println!("\n| query | Telltale idle RSS | peak − idle, raw | peak − idle, auto | raw vs Prometheus (max rel. diff) | auto vs Prometheus | VictoriaMetrics vs Prometheus | points |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in results {
        let peak = |s| match r.get(s) {
            Some(o) if o.error.is_none() => mib(o.peak_kib.saturating_sub(o.idle_kib) * 1024),
            Some(_) => "refused".into(),
            None => "–".into(),
        };
        let answer = |s| r.get(s).and_then(|o| o.answer.as_ref());
        let d = |a, b| match (answer(a), answer(b)) {
            (Some(x), Some(y)) => diff(x, y).text(),
            _ => "–".into(),
        };
        let points = SYSTEMS
            .iter()
            .find_map(|&s| answer(s))
            .map(|a| format!("{} series, {} points", a.series.len(), a.points()))
            .unwrap_or_default();
        println!(
            "| {} ({}) | {} | {} | {} | {} | {} | {} | {points} |",
            r.case.name,
            prepared[r.case.set].set.name,
            r.get(System::Raw)
                .map(|o| mib(o.idle_kib * 1024))
                .unwrap_or_default(),
            peak(System::Raw),
            peak(System::Auto),
            d(System::Prometheus, System::Raw),
            d(System::Prometheus, System::Auto),
            d(System::Prometheus, System::Vm),
        );
    }

    println!("\n| set | raw samples | Telltale import | Telltale raw (per sample) | 5 m rollups (per raw sample) | 1 h rollups (per raw sample) | Prometheus TSDB (per sample) | VictoriaMetrics (per sample) |");
    println!("|---|---|---|---|---|---|---|---|");
    for p in prepared {
        let n = p.set.samples() as f64;
        let per = |b: u64| format!("{} ({:.3} B)", mib(b), b as f64 / n);
        let rollup = |r: &str| match p
            .ours
            .rollups
            .iter()
            .find(|(x, _)| *x == r)
            .and_then(|(_, b)| *b)
        {
            Some((b, _)) => per(b),
            None => "absent".into(),
        };
        println!(
            "| {} ({} series, {} d at {} s) | {} | {} | {} in {} files | {} | {} | {} | {} |",
            p.set.name,
            p.set.series,
            p.set.days,
            p.set.every_ms / 1000,
            p.set.samples(),
            p.ours_import
                .map(|d| format!("{d:.1?}"))
                .unwrap_or_else(|| "kept".into()),
            per(p.ours.raw),
            p.ours.raw_files,
            rollup("5m"),
            rollup("1h"),
            p.prometheus_bytes.map(per).unwrap_or_else(|| "–".into()),
            p.vm_bytes.map(per).unwrap_or_else(|| "–".into()),
        );
    }
    println!();
}
