//! The dashboard check: every Grafana dashboard in `dashboards/` is well formed (valid
//! JSON, unique uids, the datasource only as `${datasource}`, every panel described with a
//! unit and a legend), and every panel query, variables filled, parses and returns data
//! from an aggregator fed by a collector reading fixture cgroups and a stand-in Kubernetes
//! API (its own `telltale_collector_*` series included), with Prometheus scraping the
//! aggregator's and alerting's own metrics into it and alerting writing `ALERTS` to it, as
//! the manifests in `deploy/` set it up.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster;
use common::kube_api::FakeApi;
use common::{eventually, get, now_seconds, spawn, urlencode, Prometheus};
use serde_json::{json, Value};
use telltale_collector::fixture::{Driver, Node, Version};

/// Grafana's own variables and what the check puts in their place.
const BUILTINS: [(&str, &str); 3] = [
    ("$__rate_interval", "1m"),
    ("$__interval", "15s"),
    ("$__range", "1h"),
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

/// Every dashboard: (file name, JSON).
fn dashboards() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            let v = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"));
            (name, v)
        })
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// The template variables other than the datasource.
fn variables(d: &Value) -> Vec<&Value> {
    d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] != "datasource")
        .collect()
}

/// `expr` with every variable filled: template variables (only ever used in regex
/// matchers, with "All" meaning `.*`) by `.*`, Grafana's own by fixed durations.
fn filled(expr: &str, d: &Value) -> String {
    let mut e = expr.to_owned();
    for (name, value) in BUILTINS {
        e = e.replace(name, value);
    }
    for v in variables(d) {
        let name = v["name"].as_str().unwrap();
        e = e.replace(&format!("${{{name}}}"), ".*");
        e = e.replace(&format!("${name}"), ".*");
    }
    e
}

/// Every `datasource` value in `v`, with where it is.
fn datasources<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "datasource" {
                    out.push((at.clone(), x));
                }
                datasources(x, format!("{at}.{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                datasources(x, format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn dashboards_are_well_formed() {
    let all = dashboards();
    assert!(
        all.len() >= 8,
        "cluster, nodes, workloads, pods, containers, billing, alarms, telltale"
    );
    let mut uids = BTreeSet::new();
    let mut problems = Vec::new();
    for (name, d) in &all {
        let uid = d["uid"].as_str().unwrap_or_default();
        if uid.is_empty() || !uids.insert(uid.to_owned()) {
            problems.push(format!("{name}: uid {uid:?} missing or used twice"));
        }
        let ds: Vec<&Value> = d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["type"] == "datasource")
            .collect();
        if ds.len() != 1 || ds[0]["name"] != "datasource" || ds[0]["query"] != "prometheus" {
            problems.push(format!(
                "{name}: needs one `datasource` variable of type prometheus"
            ));
        }
        let mut found = Vec::new();
        datasources(d, String::new(), &mut found);
        for (at, v) in found {
            let variable = v == &json!("${datasource}")
                || (v["uid"] == "${datasource}" && v["type"] == "prometheus");
            let annotation = at.starts_with(".annotations") && v["uid"] == "-- Grafana --";
            if !(variable || annotation) {
                problems.push(format!("{name}{at}: hard-coded datasource {v}"));
            }
        }
        for v in variables(d) {
            let vn = v["name"].as_str().unwrap_or_default();
            if v["includeAll"] != true || v["allValue"] != ".*" {
                problems.push(format!(
                    "{name}: variable {vn}: needs includeAll with allValue .*"
                ));
            }
        }
        let mut ids = BTreeSet::new();
        for p in panels(d) {
            let title = p["title"].as_str().unwrap_or_default();
            let at = format!("{name}: panel {title:?}");
            if !ids.insert(p["id"].as_i64().unwrap_or(-1)) {
                problems.push(format!("{at}: id missing or used twice"));
            }
            if p["description"]
                .as_str()
                .is_none_or(|s| s.trim().is_empty())
            {
                problems.push(format!("{at}: no description"));
            }
            if p["type"] == "row" {
                continue;
            }
            if p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                problems.push(format!("{at}: no unit"));
            }
            let targets = p["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("{at}: no query"));
            }
            for t in targets {
                let expr = t["expr"].as_str().unwrap_or_default();
                if expr.is_empty() || t["legendFormat"].as_str().is_none_or(str::is_empty) {
                    problems.push(format!("{at}: a target without expr or legendFormat"));
                }
                for v in variables(d) {
                    let vn = v["name"].as_str().unwrap_or_default();
                    if expr.contains(&format!("=\"${vn}\"")) {
                        problems.push(format!("{at}: ${vn} outside a regex matcher"));
                    }
                }
                let rest = filled(expr, d);
                if rest.contains('$') {
                    problems.push(format!("{at}: unknown variable in {expr}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn provisioning_points_grafana_at_the_aggregator_and_the_dashboards() {
    let read = |p: &str| -> serde_yaml::Value {
        serde_yaml::from_str(&std::fs::read_to_string(dir().join(p)).unwrap()).unwrap()
    };
    let ds = read("provisioning/datasources/telltale.yaml");
    let source = &ds["datasources"][0];
    assert_eq!(source["type"].as_str(), Some("prometheus"));
    assert!(
        source["url"].as_str().unwrap().ends_with(":9201"),
        "the aggregator's port"
    );
    let dash = read("provisioning/dashboards/telltale.yaml");
    let provider = &dash["providers"][0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    assert!(provider["options"]["path"].as_str().is_some());
}

/// The `result` of `q` as a range query over the last five minutes, or the error.
fn range(base: &str, q: &str) -> Result<Vec<Value>, String> {
    let end = now_seconds();
    let url = format!(
        "{base}/api/v1/query_range?query={}&start={}&end={end}&step=15",
        urlencode(q),
        end - 300.0
    );
    let (status, body) = get(&url);
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if status != 200 {
        return Err(format!("{status}: {}", v["error"]));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

#[test]
fn every_panel_query_parses_and_nearly_all_return_data() {
    let d = tempfile::tempdir().unwrap();
    let aggregator = spawn(&[
        "aggregator",
        "--data-dir",
        d.path().join("data").to_str().unwrap(),
    ]);
    let base = aggregator.url("");
    let write = aggregator.url("/api/v1/write");
    let node = Node::new(&d.path().join("node"), Version::V2, Driver::Systemd).unwrap();
    let api = FakeApi::start();
    cluster::populate(&api, &node, Vec::new());
    let kubeconfig = api.kubeconfig(d.path());
    let _collector = cluster::spawn_collector(
        &node,
        &kubeconfig,
        &[
            "--cluster-state",
            "--cluster",
            "prod",
            "--interval",
            "1s",
            "--remote-write",
            &write,
            "--buffer-dir",
            d.path().join("buffer").to_str().unwrap(),
        ],
    );
    // An alarm that always fires, so the alarms dashboard has ALERTS to show.
    let rules = d.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n- name: check\n  interval: 1s\n  rules:\n  - alert: DashboardCheck\n    expr: vector(1)\n    labels: {severity: info}\n    annotations: {summary: always firing}\n",
    )
    .unwrap();
    let alerting = spawn(&[
        "alerting",
        "--policies",
        rules.to_str().unwrap(),
        "--query-url",
        &base,
        "--remote-write-url",
        &write,
        "--state-dir",
        d.path().join("alerting").to_str().unwrap(),
    ]);
    // Prometheus scrapes the aggregator's and alerting's own metrics into the aggregator;
    // the collector ships its own with its samples (deploy/prometheus.yml drops the
    // collectors from its remote write for that reason).
    let Some(_prometheus) = Prometheus::start(
        d.path(),
        |_| {
            format!(
                "global: {{scrape_interval: 1s}}\nscrape_configs:\n- job_name: telltale\n  static_configs: [{{targets: ['{}', '{}'], labels: {{cluster: prod}}}}]\nremote_write: [{{url: '{write}'}}]\n",
                aggregator.addr, alerting.addr
            )
        },
        &[],
    ) else {
        return;
    };
    for ready in [
        "kube_pod_info",
        "kube_node_info",
        "container_cpu_usage_seconds_total",
        "telltale_aggregator_samples_ingested_total",
        "telltale_alerting_evaluations_total",
        "telltale_collector_cycles_total",
        "ALERTS",
    ] {
        eventually(Duration::from_secs(60), || {
            range(&base, &format!("count_over_time({ready}[1m])"))
                .ok()
                .filter(|r| r.iter().any(|s| s["values"].as_array().unwrap().len() >= 2))
        })
        .unwrap_or_else(|| panic!("{ready} never reached the aggregator"));
    }

    let mut total = 0;
    let mut empty = Vec::new();
    let mut errors = Vec::new();
    for (name, d) in dashboards() {
        for v in variables(&d) {
            let q = v["query"]
                .as_str()
                .or(v["query"]["query"].as_str())
                .unwrap_or_default();
            let Some(args) = q
                .strip_prefix("label_values(")
                .and_then(|a| a.strip_suffix(')'))
            else {
                errors.push(format!(
                    "{name}: variable {}: not label_values(): {q}",
                    v["name"]
                ));
                continue;
            };
            let (series, label) = args.rsplit_once(',').unwrap_or(("", args));
            let mut url = format!("{base}/api/v1/label/{}/values", label.trim());
            if !series.trim().is_empty() {
                url.push_str(&format!(
                    "?match[]={}",
                    urlencode(&filled(series.trim(), &d))
                ));
            }
            let (status, body) = get(&url);
            let values: Value = serde_json::from_str(&body).unwrap_or_default();
            if status != 200 || values["data"].as_array().is_none_or(Vec::is_empty) {
                errors.push(format!(
                    "{name}: variable {}: {q} has no values: {body}",
                    v["name"]
                ));
            }
        }
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let Some(expr) = t["expr"].as_str() else {
                    continue;
                };
                total += 1;
                let q = filled(expr, &d);
                let at = format!("{name}: {:?}: {q}", p["title"].as_str().unwrap_or_default());
                match range(&base, &q) {
                    Err(e) => errors.push(format!("{at}: {e}")),
                    Ok(r) if r.is_empty() => empty.push(at),
                    Ok(_) => {}
                }
            }
        }
    }
    let with_data = total - empty.len() - errors.len();
    eprintln!(
        "dashboard check: {with_data} of {total} panel queries return data ({:.1}%)",
        100.0 * with_data as f64 / total as f64
    );
    for e in &empty {
        eprintln!("  no data: {e}");
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(
        with_data * 10 >= total * 9,
        "at least 90% of panel queries return data; empty:\n{}",
        empty.join("\n")
    );
}
