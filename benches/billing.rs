//! Billing at scale: 10,000 pods over 90 days (billing issue's benchmark).
//!
//! `cargo bench --bench billing` (BENCH_PODS=N, BENCH_DAYS=N to shrink it). Two figures,
//! each the median wall time of five runs on this machine (no anchor exists for billing:
//! the targets are absolute):
//! - settling one hour: the ledger's real path (`Ledger::start` + `Ledger::settle`) over a
//!   day partition holding every pod's kube-state series sampled every 15 s through that
//!   hour (start time, owner, labels, cpu and memory requests), writing the hour's record
//!   file. Target ≤ 1 s.
//! - a 90-day report by namespace from the record files (one per hour, 10,000 rows each,
//!   every pod running every hour: the worst case), the path `GET /api/v1/billing` and
//!   `telltale billing report` take for settled hours. Target ≤ 2 s.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed benchmark

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use telltale_aggregator::billing::pods::{Gather, Pod, Resources};
use telltale_aggregator::billing::prices::Prices;
use telltale_aggregator::billing::settle::{settle, By};
use telltale_aggregator::billing::{records, report_of, Frontier, Ledger, GRACE_MS};
use telltale_aggregator::store::head::SeriesKey;
use telltale_model::calendar::{DAY_MS, HOUR_MS};

mod common;
use common::dir_bytes;

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// Pod `i`'s identifying labels.
fn ids(i: i64) -> Vec<(String, String)> {
    vec![
        ("cluster".into(), "bench".into()),
        ("namespace".into(), format!("ns-{}", i % 50)),
        ("pod".into(), format!("app-{}-{i}", i % 500)),
        ("uid".into(), format!("uid-{i:06}")),
    ]
}

fn key(metric: &str, mut labels: Vec<(String, String)>) -> SeriesKey {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    labels.sort();
    pairs.extend(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    SeriesKey {
        metric: metric.into(),
        labels: telltale_aggregator::store::head::labels_json(&mut pairs).into(),
    }
}

fn main() {
    let pods = env("BENCH_PODS", 10_000);
    let days = env("BENCH_DAYS", 90);
    let prices = Arc::new(Prices::default());
    let now = telltale_model::time::to_millis(std::time::SystemTime::now());
    let first_day = now.div_euclid(DAY_MS) - days;
    println!("billing: {pods} pods, {days} days");

    // Settling one hour: the kube-state series of one hour, every 15 s.
    let settle_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let hour = (first_day + 1) * DAY_MS + 10 * HOUR_MS;
    let cycles: Vec<i64> = (0..240).map(|c| hour + c * 15_000).collect();
    let mut series = Vec::new();
    for i in 0..pods {
        let started = (hour - 86_400_000 + i * 1000) as f64 / 1000.0;
        let with = |extra: &[(&str, &str)]| {
            let mut l = ids(i);
            l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            l
        };
        let owner = with(&[
            ("owner_kind", "ReplicaSet"),
            ("owner_name", &format!("app-{}-7d9", i % 500)),
            ("owner_is_controller", "true"),
        ]);
        let cpu = with(&[("container", "app"), ("resource", "cpu"), ("unit", "core")]);
        let mem = with(&[
            ("container", "app"),
            ("resource", "memory"),
            ("unit", "byte"),
        ]);
        let labels = with(&[("label_app", &format!("app-{}", i % 500))]);
        let each = |v: f64| cycles.iter().map(|&t| (t, v.to_bits())).collect::<Vec<_>>();
        series.push((key("kube_pod_start_time", ids(i)), each(started)));
        series.push((key("kube_pod_owner", owner), each(1.0)));
        series.push((key("kube_pod_container_resource_requests", cpu), each(0.5)));
        series.push((
            key("kube_pod_container_resource_requests", mem),
            each(1073741824.0),
        ));
        series.push((key("kube_pod_labels", labels), each(1.0)));
    }
    let samples: usize = series.iter().map(|(_, p)| p.len()).sum();
    let day = hour.div_euclid(DAY_MS);
    telltale_aggregator::store::partition::write_day(
        settle_dir.path(),
        day,
        series,
        "part-1.parquet",
    )
    .unwrap();
    let (bytes, _) = dir_bytes(&settle_dir.path().join("data"));
    println!(
        "  settle: one hour of {samples} kube-state samples ({} KB of Parquet) in the day partition",
        bytes / 1_000
    );
    let state = telltale_aggregator::store::layout::billing_settled(settle_dir.path());
    let mut runs = Vec::new();
    for _ in 0..5 {
        std::fs::create_dir_all(state.parent().unwrap()).unwrap();
        std::fs::write(&state, format!("{hour}\n")).unwrap();
        let t = Instant::now();
        let ledger = Ledger::new(settle_dir.path(), prices.clone());
        let frontier = Frontier::new();
        let at = hour + HOUR_MS + GRACE_MS;
        ledger.start(&frontier, at);
        let written = ledger.settle(&frontier, &|_: &mut Gather| {}, at).unwrap();
        runs.push(t.elapsed());
        assert_eq!(written, 1);
    }
    let settled = records::read_hours(settle_dir.path(), hour, hour + HOUR_MS).unwrap();
    assert_eq!(settled.len() as i64, pods, "every pod has a record");
    println!(
        "  settle one hour for {pods} pods: median {:.0} ms of 5 (target <= 1000 ms)",
        median(runs).as_secs_f64() * 1e3
    );

    // The 90-day report: record files for every hour, every pod running throughout.
    let report_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let start = first_day * DAY_MS;
    let end = start + days * DAY_MS;
    let t = Instant::now();
    let template: Vec<Pod> = (0..pods)
        .map(|i| {
            let l: BTreeMap<String, String> = ids(i).into_iter().collect();
            let mut requests = BTreeMap::new();
            requests.insert(
                "app".to_string(),
                BTreeMap::from([
                    ("cpu".to_string(), 0.5),
                    ("memory".to_string(), 1073741824.0),
                ]),
            );
            Pod {
                uid: l["uid"].clone(),
                cluster: l["cluster"].clone(),
                namespace: l["namespace"].clone(),
                name: l["pod"].clone(),
                workload: ("Deployment".into(), format!("app-{}", i % 500)),
                labels: BTreeMap::from([("app".to_string(), format!("app-{}", i % 500))]),
                start: Some(start - 1000),
                completion: Some(start + 2 * HOUR_MS),
                last_seen: end,
                containers: Resources {
                    requests,
                    limits: BTreeMap::new(),
                },
                ..Pod::default()
            }
        })
        .collect();
    // Every hour's rows are the first hour's, moved: each pod ran the whole hour.
    let first: Vec<_> = template
        .iter()
        .map(|p| settle(p, &prices, end + 2000)[1].clone())
        .collect();
    let hours = (end - start) / HOUR_MS;
    for h in 0..hours {
        let at = start + h * HOUR_MS;
        let rows: Vec<_> = first
            .iter()
            .map(|r| {
                let mut r = r.clone();
                (r.hour, r.from, r.to) = (at, at, at + HOUR_MS);
                r
            })
            .collect();
        records::write_hour(report_dir.path(), at, &rows).unwrap();
    }
    let (bytes, _) = dir_bytes(&telltale_aggregator::store::layout::billing_dir(
        report_dir.path(),
    ));
    println!(
        "  report: {hours} hour files, {} records, {} MB, written in {:.0} s",
        hours * pods,
        bytes / 1_000_000,
        t.elapsed().as_secs_f64()
    );
    let mut runs = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let t = Instant::now();
        let r = report_of(
            report_dir.path(),
            &prices,
            end,
            None,
            (start, end),
            end + 2000,
            &By::Namespace,
        )
        .unwrap();
        runs.push(t.elapsed());
        last = Some(r);
    }
    let r = last.unwrap();
    assert_eq!(r.groups.len(), 50);
    let seconds = r.total.seconds;
    assert_eq!(
        seconds,
        rust_decimal::Decimal::from(pods * days * 86_400),
        "every pod billed every second"
    );
    println!(
        "  90-day report by namespace from records: median {:.0} ms of 5 (target <= 2000 ms); total {} {}",
        median(runs).as_secs_f64() * 1e3,
        r.money(r.total.cost),
        r.currency
    );
}
