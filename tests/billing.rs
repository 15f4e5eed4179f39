//! Billing through the real binary: kube-state series remote-written to `telltale
//! aggregator`, reports from `GET /api/v1/billing` and from `telltale billing report`,
//! before and after the samples reach Parquet.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{duckdb, eventually, get, run_ok, run_ok_bytes, sample, spawn, telltale};
use telltale_model::remote::{TimeSeries, WriteRequest};

const PRICES: &str = "\
currency: USD
cpu_core_second: 0.000004976
memory_gib_second: 0.000002073
gpu_second: { nvidia.com/gpu: 0.000416 }
default_pod: { cpu: 1, memory: 2Gi }
";

/// The series the collector exports for one pod that ran `[start, stop)` (ms), sampled
/// every 15 s while it ran and once after it stopped, as the collector keeps a finished
/// pod's series until they are shipped.
fn pod_series(
    uid: &str,
    namespace: &str,
    owner: Option<(&str, &str)>,
    cpu: f64,
    memory: f64,
    (start, stop): (i64, i64),
) -> Vec<TimeSeries> {
    let pod = format!("pod-{uid}");
    let id = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut l = vec![
            ("cluster".to_string(), "c1".to_string()),
            ("namespace".into(), namespace.into()),
            ("pod".into(), pod.clone()),
            ("uid".into(), uid.into()),
        ];
        l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        l
    };
    let mut cycles: Vec<i64> = (0..)
        .map(|i| start + 15_000 * i)
        .take_while(|t| *t < stop)
        .collect();
    cycles.push(stop + 1_000);
    let series = |name: &str, labels: Vec<(String, String)>, value: f64, at: &[i64]| {
        let mut pairs: Vec<(&str, &str)> = vec![("__name__", name)];
        pairs.extend(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let samples: Vec<(i64, f64)> = at.iter().map(|&t| (t, value)).collect();
        TimeSeries::new(&pairs, &samples)
    };
    let secs = |ms: i64| ms as f64 / 1000.0;
    let mut out = vec![
        series("kube_pod_start_time", id(&[]), secs(start), &cycles),
        series(
            "kube_pod_completion_time",
            id(&[]),
            secs(stop),
            &cycles[cycles.len() - 1..],
        ),
    ];
    for (resource, unit, v) in [("cpu", "core", cpu), ("memory", "byte", memory)] {
        out.push(series(
            "kube_pod_container_resource_requests",
            id(&[("container", "app"), ("resource", resource), ("unit", unit)]),
            v,
            &cycles,
        ));
    }
    if let Some((kind, name)) = owner {
        out.push(series(
            "kube_pod_owner",
            id(&[
                ("owner_kind", kind),
                ("owner_name", name),
                ("owner_is_controller", "true"),
            ]),
            1.0,
            &cycles,
        ));
    }
    out
}

fn post(url: &str, timeseries: Vec<TimeSeries>) {
    let body = WriteRequest { timeseries }.encode_body();
    let r = ureq::post(url)
        .set("Content-Type", "application/x-protobuf")
        .set("Content-Encoding", "snappy")
        .send_bytes(&body)
        .expect("remote write");
    assert_eq!(r.status(), 204);
}

/// A data directory and price table, and the day the tests bill: two days ago, UTC
/// midnight (inside retention).
struct Setup {
    dir: tempfile::TempDir,
    data_dir: String,
    prices: String,
    day: i64,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let prices = dir.path().join("prices.yaml");
        std::fs::write(&prices, PRICES).unwrap();
        let now = telltale_model::time::to_millis(std::time::SystemTime::now());
        Setup {
            data_dir: dir.path().join("data").display().to_string(),
            prices: prices.display().to_string(),
            day: (now / 86_400_000 - 2) * 86_400_000,
            dir,
        }
    }
}

/// docs/billing.md's worked check, written to `write`: 10 pods of 4 cores / 8 GiB in `shop`,
/// 600 s each at 03:00 and 15:00 of `day`.
fn worked_check(write: &str, day: i64, owner: Option<(&str, &str)>) {
    for i in 0..10 {
        for hour in [3, 15] {
            let start = day + hour * 3_600_000 + 7_250 + i * 1000;
            let uid = format!("api-{i}-{hour}");
            let gib8 = 8.0 * 1073741824.0;
            post(
                write,
                pod_series(&uid, "shop", owner, 4.0, gib8, (start, start + 600_000)),
            );
        }
    }
}

#[test]
fn reports_from_the_api_and_the_files_agree_with_billing_md() {
    let t = Setup::new();
    let (d, p, day) = (&t.data_dir, &t.prices, t.day);
    let mut agg = spawn(&["aggregator", "--data-dir", d, "--prices", p]);
    let write = agg.url("/api/v1/write");
    worked_check(&write, day, Some(("ReplicaSet", "api-7d9")));
    let rs: Vec<(&str, &str)> = vec![
        ("__name__", "kube_replicaset_owner"),
        ("cluster", "c1"),
        ("namespace", "shop"),
        ("owner_is_controller", "true"),
        ("owner_kind", "Deployment"),
        ("owner_name", "api"),
        ("replicaset", "api-7d9"),
    ];
    post(
        &write,
        vec![TimeSeries::new(&rs, &[(day + 3 * 3_600_000, 1.0)])],
    );
    // A pod that lived 3 s between two collection cycles, straddling an hour boundary,
    // with nothing set: the default pod (1 core, 2 GiB), no owner.
    let start = day + 5 * 3_600_000 - 1_000;
    let mut short = pod_series("once", "batch", None, 0.0, 0.0, (start, start + 3_000));
    short.retain(|s| {
        s.labels
            .iter()
            .all(|l| l.value != "kube_pod_container_resource_requests")
    });
    post(&write, short);

    let window = format!("start={}&end={}", day / 1000, day / 1000 + 86_400);
    let (status, body) = get(&agg.url(&format!("/api/v1/billing?{window}&by=namespace")));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let groups = &v["data"]["groups"];
    assert_eq!(groups[0]["group"], "batch");
    assert_eq!(groups[0]["seconds"], "3");
    // 3 s x (1 x 0.000004976 + 2 x 0.000002073)
    assert_eq!(groups[0]["cost_exact"], "0.000027366");
    assert_eq!(groups[1]["group"], "shop");
    assert_eq!(groups[1]["cost_exact"], "0.437856");
    assert_eq!(groups[1]["cost"], "0.44");
    assert_eq!(groups[1]["cpu_core_seconds"], "48000");
    assert_eq!(v["data"]["total"]["cost_exact"], "0.437883366");

    // The workload view follows ReplicaSet -> Deployment; a window counts its own seconds.
    let half = format!(
        "start={}&end={}",
        day / 1000 + 3 * 3600 + 7,
        day / 1000 + 3 * 3600 + 307
    );
    let (_, body) = get(&agg.url(&format!("/api/v1/billing?{half}&by=workload")));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["groups"][0]["group"], "shop/Deployment/api");
    // Pod i started at 7.25 + i s: 299.75 - i of its seconds fall inside.
    assert_eq!(v["data"]["groups"][0]["seconds"], "2952.5");

    // Bad parameters: Prometheus's error shape, naming the parameter.
    for (q, word) in [
        ("start=x&end=1", "start"),
        ("start=1", "end"),
        ("start=5&end=1", "after"),
        ("start=1&end=5&by=node", "node"),
    ] {
        let (status, body) = get(&agg.url(&format!("/api/v1/billing?{q}")));
        assert_eq!(status, 400, "{q}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["errorType"], "bad_data");
        assert!(v["error"].as_str().unwrap().contains(word), "{q}: {body}");
    }

    // The CLI against the running aggregator, then against the files after a SIGTERM
    // flush: the same report.
    let (start, end) = ((day / 1000).to_string(), (day / 1000 + 86_400).to_string());
    let report = |source: [&str; 2], format: &str| {
        run_ok(
            telltale()
                .args(["billing", "report"])
                .args(source)
                .args([
                    "--start",
                    &start,
                    "--end",
                    &end,
                    "--by",
                    "namespace",
                    "--format",
                    format,
                ])
                .args(["--prices", p]),
        )
    };
    let base = agg.url("");
    let from_api = report(["--url", &base], "csv");
    assert_eq!(
        from_api,
        "group,cpu_core_seconds,memory_gib_seconds,gpu_seconds,cost\n\
         batch,3,6,0,0.00\n\
         shop,48000,96000,0,0.44\n"
    );
    // Parquet to stdout, read back by DuckDB.
    let parquet = run_ok_bytes(
        telltale()
            .args(["billing", "report", "--url", &base, "--start", &start])
            .args(["--end", &end, "--format", "parquet"]),
    );
    let file = t.dir.path().join("report.parquet");
    std::fs::write(&file, &parquet).unwrap();
    let sql = format!(
        "SELECT \"group\", cost, currency FROM read_parquet('{}') ORDER BY 1",
        file.display()
    );
    if let Some(rows) = duckdb(&sql) {
        assert_eq!(
            rows,
            [
                "batch\t0.000027366000000000\tUSD",
                "shop\t0.437856000000000000\tUSD"
            ]
        );
    }
    let table = report(["--url", &base], "table");
    assert!(
        table.lines().last().unwrap().starts_with("TOTAL"),
        "{table}"
    );
    assert!(table.contains("0.44 USD"), "{table}");
    assert!(agg
        .terminate(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    assert_eq!(report(["--data-dir", d], "csv"), from_api);
}

/// Every hour file under `<data>/billing/`, with its bytes.
fn record_files(data: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for day in std::fs::read_dir(data.join("billing"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in std::fs::read_dir(day.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "parquet") {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn closed_hours_become_records_that_survive_restarts_and_late_data_settles_again() {
    let t = Setup::new();
    let (d, p, day, data) = (&t.data_dir, &t.prices, t.day, t.dir.path().join("data"));
    let agg = spawn(&["aggregator", "--data-dir", d, "--prices", p]);
    worked_check(&agg.url("/api/v1/write"), day, None);
    // Two days late, so the ledger settles those hours within seconds of the samples.
    let day_dir = data.join("billing").join(format!(
        "day={}",
        humantime::format_rfc3339(std::time::UNIX_EPOCH + Duration::from_millis(day as u64))
            .to_string()
            .split('T')
            .next()
            .unwrap()
    ));
    let settled = eventually(Duration::from_secs(30), || {
        (day_dir.join("hour=03.parquet").exists() && day_dir.join("hour=15.parquet").exists())
            .then_some(())
    });
    assert!(
        settled.is_some(),
        "hours 03 and 15 settled into {}",
        day_dir.display()
    );
    let hours = std::fs::read_dir(&day_dir).unwrap().count();
    assert_eq!(hours, 2, "only hours with use have files");

    // DuckDB sums the records to the report's total.
    let glob = format!("{}/billing/day=*/*.parquet", data.display());
    let sql = format!(
        "SELECT namespace, sum(cost), sum(seconds) FROM read_parquet('{glob}', hive_partitioning = false) GROUP BY namespace ORDER BY namespace"
    );
    if let Some(rows) = duckdb(&sql) {
        assert_eq!(
            rows,
            ["shop\t0.437856000000000000\t12000.000000000000000000"]
        );
    }

    // SIGKILL and restart: the same record files, byte for byte.
    let before = record_files(&data);
    drop(agg);
    let mut agg = spawn(&["aggregator", "--data-dir", d, "--prices", p]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        record_files(&data),
        before,
        "a restart settles the same records"
    );

    // A pod of that day arrives now (an edge node catching up): its hour is settled again.
    let start = day + 10 * 3_600_000;
    let late = pod_series(
        "edge-1",
        "edge",
        None,
        1.0,
        1073741824.0,
        (start, start + 600_000),
    );
    post(&agg.url("/api/v1/write"), late);
    let resettled = eventually(Duration::from_secs(30), || {
        day_dir.join("hour=10.parquet").exists().then_some(())
    });
    assert!(resettled.is_some(), "the late pod's hour was settled");
    assert!(agg
        .terminate(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    let csv = run_ok(
        telltale()
            .args(["billing", "report", "--data-dir", d])
            .args([
                "--start",
                &(day / 1000).to_string(),
                "--end",
                &(day / 1000 + 86_400).to_string(),
                "--format",
                "csv",
                "--prices",
                p,
            ]),
    );
    // 600 s x (1 x 0.000004976 + 1 x 0.000002073) = 0.0042294
    assert_eq!(
        csv,
        "group,cpu_core_seconds,memory_gib_seconds,gpu_seconds,cost\n\
         edge,600,600,0,0.00\n\
         shop,48000,96000,0,0.44\n"
    );
    if let Some(rows) = duckdb(&format!(
        "SELECT sum(cost) FROM read_parquet('{glob}') WHERE namespace = 'edge'"
    )) {
        assert_eq!(rows, ["0.004229400000000000"]);
    }
}

#[test]
fn cost_so_far_this_month_is_on_metrics_by_namespace() {
    let t = Setup::new();
    let agg = spawn(&[
        "aggregator",
        "--data-dir",
        &t.data_dir,
        "--prices",
        &t.prices,
    ]);
    let now = telltale_model::time::to_millis(std::time::SystemTime::now());
    let run = (now - 40_000, now - 10_000);
    post(
        &agg.url("/api/v1/write"),
        pod_series("now-1", "live", None, 1.0, 1073741824.0, run),
    );
    // The ledger sets the gauges every minute.
    let series =
        r#"telltale_aggregator_billing_cost{currency="USD",namespace="live",period="month"}"#;
    let month = eventually(Duration::from_secs(90), || {
        sample(&get(&agg.url("/metrics")).1, series)
    });
    let month = month.expect("the month's cost of namespace live on /metrics");
    use telltale_model::calendar::month_start;
    if month_start(run.0) == month_start(run.1) {
        // 30 s x (1 x 0.000004976 + 1 x 0.000002073)
        assert!((month - 0.00021147).abs() < 1e-12, "{month}");
    }
    let text = get(&agg.url("/metrics")).1;
    let hour = sample(&text, &series.replace("month", "hour")).unwrap_or(0.0);
    assert!(hour <= month + 1e-12, "{hour} > {month}");
}

#[test]
fn a_bad_price_table_is_named_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.yaml");
    std::fs::write(&prices, "cpu_core_second: cheap\nmemory_gib_second: 1\n").unwrap();
    let out = telltale()
        .args(["aggregator", "--data-dir"])
        .arg(dir.path())
        .arg("--prices")
        .arg(&prices)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("prices") && err.contains("cpu_core_second"),
        "{err}"
    );
}
