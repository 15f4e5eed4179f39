#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::str::FromStr;

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::pods::{Gather, Pod, Resources};
use super::prices::{Prices, Size};
use super::settle::{report, settle, By, Usage};
use telltale_model::calendar::HOUR_MS;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

const GIB: f64 = 1073741824.0;
/// 2026-11-23T00:00:00Z in ms.
const DAY0: i64 = 1_795_392_000_000;

/// (container, [(resource, value)]) as a request or limit table.
fn table(rows: &[(&str, &[(&str, f64)])]) -> BTreeMap<String, BTreeMap<String, f64>> {
    rows.iter()
        .map(|(c, rs)| {
            let r = rs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            (c.to_string(), r)
        })
        .collect()
}

fn pod(uid: &str, start: i64, stop: Option<i64>) -> Pod {
    Pod {
        uid: uid.into(),
        cluster: "c1".into(),
        namespace: "shop".into(),
        name: format!("pod-{uid}"),
        workload: ("Deployment".into(), "api".into()),
        start: Some(start),
        completion: stop,
        last_seen: stop.unwrap_or(start),
        ..Pod::default()
    }
}

fn sized(cpu: f64, memory_gib: f64) -> Resources {
    Resources {
        requests: table(&[("app", &[("cpu", cpu), ("memory", memory_gib * GIB)])]),
        limits: BTreeMap::new(),
    }
}

fn total(records: &[super::settle::Record]) -> Usage {
    let mut u = Usage::default();
    for r in records {
        u += r.usage(i64::MIN, i64::MAX);
    }
    u
}

#[test]
fn the_worked_check_of_billing_md() {
    // 10 pods of 4 cores / 8 GiB running 600 s, twice a day.
    let prices = Prices::default();
    let mut records = Vec::new();
    for i in 0..10 {
        for run in [3, 15] {
            let start = DAY0 + run * HOUR_MS + 1234;
            let mut p = pod(&format!("{i}-{run}"), start, Some(start + 600_000));
            p.containers = sized(4.0, 8.0);
            records.extend(settle(&p, &prices, DAY0 + 86_400_000));
        }
    }
    let day = report(&records, DAY0, DAY0 + 86_400_000, &By::Namespace);
    assert_eq!(day["shop"].cost, d("0.437856"));
    assert_eq!(day["shop"].seconds, d("12000"));
    assert_eq!(day["shop"].cpu_core_seconds, d("48000"));
    assert_eq!(day["shop"].memory_gib_seconds, d("96000"));
}

#[test]
fn the_price_table_reads_as_written_and_names_what_is_wrong() {
    let yaml = r#"
currency: USD
cpu_core_second: 0.000004976
memory_gib_second: "0.000002073"
gpu_second: { nvidia.com/gpu: 0.000416 }
default_pod: { cpu: 1, memory: 2Gi }
spot: { annotation: eks.tke.cloud.tencent.com/spot-pod, multiplier: 0.2 }
size_ladder: [{ cpu: 2, memory: 4Gi }, { cpu: 500m, memory: 1Gi }]
"#;
    let p = Prices::parse(yaml).unwrap();
    assert_eq!(p.cpu_core_second, d("0.000004976"));
    assert_eq!(p.memory_gib_second, d("0.000002073"));
    assert_eq!(p.gpu_second["nvidia.com/gpu"], d("0.000416"));
    assert_eq!(p.default_pod.memory_gib, d("2"));
    assert_eq!(
        p.size_ladder[0].cpu,
        d("0.5"),
        "ladder sorted smallest first"
    );
    assert_eq!(p.report_decimals, 2);
    let defaults = Prices::default();
    assert_eq!(
        (p.cpu_core_second, p.memory_gib_second, &p.spot),
        (
            defaults.cpu_core_second,
            defaults.memory_gib_second,
            &defaults.spot
        )
    );

    for (bad, names) in [
        ("memory_gib_second: 1", "cpu_core_second"),
        (
            "cpu_core_second: -1\nmemory_gib_second: 1",
            "cpu_core_second",
        ),
        (
            "cpu_core_second: 1\nmemory_gib_second: 1\ndefault_pod: {cpu: x, memory: 1Gi}",
            "default_pod.cpu",
        ),
        (
            "cpu_core_second: 1\nmemory_gib_second: 1\ngpu_second: {a/b: cheap}",
            "gpu_second.a/b",
        ),
        (
            "cpu_core_second: 1\nmemory_gib_second: 1\ncurency: EUR",
            "curency",
        ),
    ] {
        let e = Prices::parse(bad).unwrap_err();
        assert!(e.contains(names), "{bad:?}: {e}");
    }
}

#[test]
fn billable_sizes() {
    let prices = Prices::parse(
        "cpu_core_second: 1\nmemory_gib_second: 1\ngpu_second: {nvidia.com/gpu: 1}\n\
         spot: {annotation: eks.tke.cloud.tencent.com/spot-pod, multiplier: 0.2}",
    )
    .unwrap();
    let size = |cpu: &str, mem: &str, gpu: Option<&str>| Size {
        cpu: d(cpu),
        memory_gib: d(mem),
        gpu: gpu
            .map(|n| [("nvidia.com/gpu".to_string(), d(n))].into())
            .unwrap_or_default(),
    };
    let res = |requests: &[(&str, &[(&str, f64)])], limits: &[(&str, &[(&str, f64)])]| Resources {
        requests: table(requests),
        limits: table(limits),
    };
    let mut cases: Vec<(&str, Pod, Size)> = Vec::new();
    let mut p = pod("a", 0, None);
    p.containers = res(&[("app", &[("cpu", 0.25), ("memory", 0.5 * GIB)])], &[]);
    cases.push(("requests only", p, size("0.25", "0.5", None)));

    let mut p = pod("b", 0, None);
    p.containers = res(
        &[("app", &[("cpu", 0.5), ("memory", GIB)])],
        &[("app", &[("cpu", 2.0), ("memory", 0.5 * GIB)])],
    );
    cases.push(("a limit above the requests wins", p, size("2", "1", None)));

    let mut p = pod("c", 0, None);
    p.containers = res(
        &[
            ("app", &[("cpu", 0.5), ("memory", GIB)]),
            ("sidecar", &[("cpu", 0.1), ("memory", 0.25 * GIB)]),
        ],
        &[("sidecar", &[("cpu", 0.5)])],
    );
    cases.push(("several containers add up", p, size("0.6", "1.25", None)));

    let mut p = pod("d", 0, None);
    p.containers = res(&[("app", &[("cpu", 0.5), ("memory", GIB)])], &[]);
    p.init_containers = res(&[("migrate", &[("cpu", 2.0), ("memory", 0.5 * GIB)])], &[]);
    cases.push(("a larger init container", p, size("2", "1", None)));

    cases.push((
        "nothing set: the default pod",
        pod("e", 0, None),
        size("1", "2", None),
    ));

    let mut p = pod("f", 0, None);
    p.containers = res(&[("app", &[("cpu", 0.5)])], &[]);
    p.annotations = [
        ("eks_tke_cloud_tencent_com_cpu", "4"),
        ("eks_tke_cloud_tencent_com_mem", "8Gi"),
        ("eks_tke_cloud_tencent_com_gpu_count", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    cases.push(("annotations win", p, size("4", "8", Some("1"))));

    let mut p = pod("g", 0, None);
    p.containers = res(
        &[(
            "train",
            &[
                ("cpu", 8.0),
                ("memory", 32.0 * GIB),
                ("nvidia_com_gpu", 2.0),
            ],
        )],
        &[("train", &[("nvidia_com_gpu", 2.0)])],
    );
    cases.push(("GPU", p, size("8", "32", Some("2"))));

    for (name, p, want) in &cases {
        assert_eq!(&p.size(&prices), want, "{name}");
    }

    // The ladder rounds up to the first offered size that holds the pod.
    let mut laddered = prices.clone();
    laddered.size_ladder = vec![size("1", "2", None), size("2", "4", None)];
    assert_eq!(cases[0].1.size(&laddered), size("1", "2", None));
    assert_eq!(cases[1].1.size(&laddered), size("2", "4", None));
    assert_eq!(
        cases[6].1.size(&laddered),
        size("8", "32", Some("2")),
        "above the ladder"
    );

    // Spot: the multiplier on the rate.
    let mut spot = pod("h", 0, Some(10_000));
    spot.containers = sized(1.0, 0.0);
    let full = settle(&spot, &prices, 10_000)[0].rate;
    spot.annotations
        .insert("eks_tke_cloud_tencent_com_spot_pod".into(), "true".into());
    assert_eq!(settle(&spot, &prices, 10_000)[0].rate, full * d("0.2"));
}

#[test]
fn time_is_billed_to_the_millisecond_inside_the_window() {
    let prices = Prices::default();
    // A pod that lived 3 s between two collection cycles.
    let mut short = pod("short", DAY0 + 7_000, Some(DAY0 + 10_000));
    short.containers = sized(1.0, 1.0);
    let r = settle(&short, &prices, DAY0 + HOUR_MS);
    assert_eq!(r.len(), 1);
    assert_eq!(total(&r).seconds, d("3"));

    // Straddling hours: split exactly at the boundaries.
    let start = DAY0 + HOUR_MS - 1_500;
    let mut long = pod("long", start, Some(start + 2 * HOUR_MS + 3_000));
    long.containers = sized(2.0, 4.0);
    let r = settle(&long, &prices, DAY0 + 86_400_000);
    let seconds: Vec<_> = r
        .iter()
        .map(|x| x.usage(i64::MIN, i64::MAX).seconds)
        .collect();
    assert_eq!(seconds, [d("1.5"), d("3600"), d("3600"), d("1.5")]);
    assert_eq!(r[1].hour, DAY0 + HOUR_MS);

    // A window that cuts the pod counts only its own seconds.
    let w = report(
        &r,
        DAY0 + HOUR_MS + 600_000,
        DAY0 + HOUR_MS + 900_000,
        &By::Pod,
    );
    assert_eq!(w["shop/pod-long"].seconds, d("300"));
    assert_eq!(w["shop/pod-long"].cpu_core_seconds, d("600"));

    // Still running: billed up to now; gone silent: up to when it was last seen.
    let mut running = pod("run", DAY0, None);
    running.last_seen = DAY0 + 60_000;
    assert_eq!(running.running(DAY0 + 90_000), Some((DAY0, DAY0 + 90_000)));
    assert_eq!(running.running(DAY0 + HOUR_MS), Some((DAY0, DAY0 + 60_000)));
    // Deleted before it finished: billed to the deletion.
    running.deletion = Some(DAY0 + 30_000);
    assert_eq!(running.running(DAY0 + HOUR_MS), Some((DAY0, DAY0 + 30_000)));
    // Never started: nothing.
    running.start = None;
    assert!(settle(&running, &prices, DAY0 + HOUR_MS).is_empty());
}

#[test]
fn pods_are_gathered_from_their_series_in_any_order() {
    let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = [
            ("cluster", "c1"),
            ("namespace", "shop"),
            ("pod", "api-7d9-x"),
            ("uid", "u1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        m.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        m
    };
    let owner = [
        ("owner_kind", "ReplicaSet"),
        ("owner_name", "api-7d9"),
        ("owner_is_controller", "true"),
    ];
    let cpu = [("container", "app"), ("resource", "cpu"), ("unit", "core")];
    let mut samples = vec![
        ("kube_pod_start_time", l(&[]), 10, 1_795_392_000.5),
        ("kube_pod_owner", l(&owner), 10, 1.0),
        ("kube_pod_container_resource_requests", l(&cpu), 10, 0.5),
        // A newer sample wins whatever order it arrives in.
        ("kube_pod_container_resource_requests", l(&cpu), 20, 0.75),
        ("kube_pod_labels", l(&[("label_app", "api")]), 10, 1.0),
        ("kube_pod_completion_time", l(&[]), 20, 1_795_392_003.0),
        ("node_load1", l(&[]), 30, 1.0),
    ];
    let rs = BTreeMap::from([
        ("cluster".to_string(), "c1".to_string()),
        ("namespace".into(), "shop".into()),
        ("replicaset".into(), "api-7d9".into()),
        ("owner_kind".into(), "Deployment".into()),
        ("owner_name".into(), "api".into()),
        ("owner_is_controller".into(), "true".into()),
    ]);
    samples.push(("kube_replicaset_owner", rs, 10, 1.0));
    for order in [false, true] {
        let mut g = Gather::default();
        let iter: Box<dyn Iterator<Item = _>> = if order {
            Box::new(samples.iter().rev())
        } else {
            Box::new(samples.iter())
        };
        for (m, labels, at, v) in iter {
            g.add(m, labels, *at, *v);
        }
        let pods = g.pods();
        assert_eq!(pods.len(), 1);
        let p = &pods[0];
        assert_eq!(p.workload, ("Deployment".into(), "api".into()));
        assert_eq!(p.start, Some(1_795_392_000_500));
        assert_eq!(p.completion, Some(1_795_392_003_000));
        assert_eq!(p.containers.requests["app"]["cpu"], 0.75);
        assert_eq!(p.labels["app"], "api");
        assert_eq!(p.last_seen, 20);
        let prices = Prices::default();
        let r = settle(p, &prices, i64::MAX);
        assert_eq!(total(&r).seconds, d("2.5"));
        let by_label = report(&r, i64::MIN, i64::MAX, &By::from_str("label:app").unwrap());
        assert_eq!(by_label["api"].cpu_core_seconds, d("1.875"));
    }
    assert!(By::from_str("label:").is_err());
    assert!(By::from_str("node").unwrap_err().contains("node"));
}

#[test]
fn a_cronjob_pod_is_billed_to_its_cronjob() {
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut g = Gather::default();
    let pod = [
        ("cluster", "c1"),
        ("namespace", "ops"),
        ("pod", "nightly-1-x"),
        ("uid", "u9"),
    ];
    let mut owner = pod.to_vec();
    owner.extend([
        ("owner_kind", "Job"),
        ("owner_name", "nightly-1"),
        ("owner_is_controller", "true"),
    ]);
    g.add("kube_pod_owner", &labels(&owner), 1, 1.0);
    let job = [
        ("cluster", "c1"),
        ("namespace", "ops"),
        ("job_name", "nightly-1"),
        ("owner_kind", "CronJob"),
        ("owner_name", "nightly"),
        ("owner_is_controller", "true"),
    ];
    g.add("kube_job_owner", &labels(&job), 1, 1.0);
    assert_eq!(g.pods()[0].workload, ("CronJob".into(), "nightly".into()));
}

/// Two usages equal to 12 decimal places (record files keep 18).
fn close(a: &Usage, b: &Usage) -> bool {
    let r = |d: Decimal| d.round_dp(12);
    [
        (a.seconds, b.seconds),
        (a.cpu_core_seconds, b.cpu_core_seconds),
        (a.memory_gib_seconds, b.memory_gib_seconds),
        (a.gpu_seconds, b.gpu_seconds),
        (a.cost, b.cost),
    ]
    .iter()
    .all(|(x, y)| r(*x) == r(*y))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Record files read back as written, and sums over them (whole and cut records)
    /// match the report over the records in memory.
    #[test]
    fn record_files_sum_to_what_the_records_say(
        pods in prop::collection::vec((0i64..6 * HOUR_MS, 1i64..4 * HOUR_MS, 1u32..8_000, 0u32..3), 1..6),
        window in (0i64..8 * HOUR_MS, 1i64..8 * HOUR_MS),
    ) {
        use super::records::{read_hours, sum_hours, write_hour};
        let prices = Prices::default();
        let dir = tempfile::tempdir().unwrap();
        let mut all = Vec::new();
        for (i, (start, length, cpu_milli, gpus)) in pods.into_iter().enumerate() {
            let mut p = pod(&i.to_string(), DAY0 + start, Some(DAY0 + start + length));
            p.namespace = format!("ns{}", i % 2);
            p.containers = sized(f64::from(cpu_milli) / 1000.0, 0.3);
            if gpus > 0 {
                p.containers.requests.get_mut("app").unwrap().insert("nvidia_com_gpu".into(), f64::from(gpus));
            }
            all.extend(settle(&p, &prices, i64::MAX));
        }
        let mut by_hour: BTreeMap<i64, Vec<_>> = BTreeMap::new();
        for r in &all {
            by_hour.entry(r.hour).or_default().push(r.clone());
        }
        for (hour, records) in &by_hour {
            write_hour(dir.path(), *hour, records).unwrap();
        }
        let back = read_hours(dir.path(), DAY0, DAY0 + 12 * HOUR_MS).unwrap();
        prop_assert_eq!(back.len(), all.len());
        let (start, end) = (DAY0 + window.0, DAY0 + window.0 + window.1);
        let want = report(&all, start, end, &By::Namespace);
        let mut got = BTreeMap::new();
        sum_hours(dir.path(), (start, end), &By::Namespace, &mut got).unwrap();
        prop_assert_eq!(got.len(), want.len());
        for (ns, u) in &want {
            prop_assert!(close(&got[ns], u), "{}: {:?} vs {:?}", ns, got[ns], u);
        }
    }
}

proptest! {
    /// The hourly records of a pod sum to its charge over the whole interval, and any
    /// split of a window into two adds up to the whole window.
    #[test]
    fn hourly_records_sum_to_the_charge(
        start in 0i64..10 * HOUR_MS,
        length in 1i64..30 * HOUR_MS,
        cpu_milli in 0u32..64_000,
        mem_mib in 0u32..262_144,
        cut in 0i64..40 * HOUR_MS,
    ) {
        let prices = Prices::default();
        let mut p = pod("p", DAY0 + start, Some(DAY0 + start + length));
        p.containers = sized(f64::from(cpu_milli) / 1000.0, f64::from(mem_mib) / 1024.0);
        let records = settle(&p, &prices, i64::MAX);
        let size = p.size(&prices);
        let seconds = Decimal::new(length, 3);
        let charge = prices.per_second(&size) * seconds;
        let sum = total(&records);
        prop_assert_eq!(sum.seconds, seconds);
        prop_assert_eq!(sum.cost, charge);
        prop_assert_eq!(sum.cpu_core_seconds, size.cpu * seconds);
        let by = By::Pod;
        let (a, b) = (DAY0, DAY0 + 40 * HOUR_MS);
        let mut halves = report(&records, a, DAY0 + cut, &by).remove("shop/pod-p").unwrap_or_default();
        halves += report(&records, DAY0 + cut, b, &by).remove("shop/pod-p").unwrap_or_default();
        prop_assert_eq!(halves, sum);
    }
}
