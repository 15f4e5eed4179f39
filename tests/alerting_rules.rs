//! Rule semantics against Prometheus 2.42's own: the rule files and `promtool test rules`
//! files in `tests/alerting/rules/` pass under promtool (checked here first), and our
//! evaluator, fed the same series through the aggregator's query API, produces the same
//! firing alerts (labels and annotations) at the same evaluation times.
//!
//! Like promtool, every group is evaluated at every `evaluation_interval` step from 0 (the
//! groups' own intervals are ignored) and each `eval_time` is checked against the
//! evaluation at or before it. Each test group's series are written at their own base
//! time, a day apart, so groups cannot see each other's data.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use telltale_alerting::alarm::AlarmState;
use telltale_alerting::engine::Engine;
use telltale_alerting::policy::Rules;
use telltale_model::remote::{TimeSeries, WriteRequest};

const STALE: u64 = 0x7ff0_0000_0000_0002;
const DAY: i64 = 86_400_000;

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/alerting/rules")
}

fn test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(rules_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yml"))
        .collect();
    files.sort();
    files
}

/// A Prometheus duration (`1m`, `30s`, `1h30m`) in ms.
fn duration_ms(s: &str) -> i64 {
    let mut total = 0i64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            1
        } else {
            match c {
                's' => 1000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => DAY,
                _ => panic!("duration {s:?}"),
            }
        };
        total += num.parse::<i64>().expect("number") * unit;
        num.clear();
    }
    assert!(num.is_empty(), "duration {s:?} without unit");
    total
}

/// promtool's expanding notation: `a+bxN`, `a-bxN` (N+1 values, by repeated addition),
/// `axN`, `_`, `_xN` (N missing points), `stale`, numbers. None = no point.
fn expand(values: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for tok in values.split_whitespace() {
        let num = |s: &str| -> f64 {
            match s {
                "Inf" | "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                "stale" => f64::from_bits(STALE),
                _ => s.parse().unwrap_or_else(|_| panic!("value {s:?}")),
            }
        };
        let Some((head, times)) = tok.split_once('x') else {
            out.push((tok != "_").then(|| num(tok)));
            continue;
        };
        let n: usize = times.parse().unwrap_or_else(|_| panic!("{tok:?}"));
        if head == "_" {
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        // The sign of the step is the last + or - not at the start.
        let split = head[1..].rfind(['+', '-']).map(|i| i + 1);
        let (start, step) = match split {
            Some(i) => (num(&head[..i]), num(&head[i..])),
            None => (num(head), 0.0),
        };
        let mut v = start;
        out.push(Some(v));
        for _ in 0..n {
            v += step;
            out.push(Some(v));
        }
    }
    out
}

/// `name{a="b", c="d"}` as label pairs.
fn series_labels(s: &str) -> Vec<(String, String)> {
    let (name, rest) = s.split_once('{').unwrap_or((s, "}"));
    let mut labels = vec![("__name__".to_owned(), name.trim().to_owned())];
    let body = rest.trim().trim_end_matches('}');
    for pair in body.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').expect("label pair");
        labels.push((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()));
    }
    labels
}

type Alerts = Vec<(BTreeMap<String, String>, BTreeMap<String, String>)>;

fn yaml_map(v: &serde_yaml::Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_yaml::Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
                    };
                    (k.as_str().unwrap().to_owned(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn rule_files_pass_under_promtool_and_our_evaluator_agrees() {
    let Some(promtool) = common::tool("promtool") else {
        return;
    };
    let files = test_files();
    assert!(files.len() >= 3, "{files:?}");
    let out = std::process::Command::new(promtool)
        .args(["test", "rules"])
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let agg = common::spawn(&["aggregator", "--data-dir", dir.path().to_str().unwrap()]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let api = telltale_alerting::query::Api::new(
        telltale_alerting::http::Client::new(),
        &agg.url(""),
        Duration::from_secs(30),
    );
    // Base times a day apart, a month back (well inside the aggregator's retention).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut base = now - now.rem_euclid(DAY) - 30 * DAY;

    let mut checked = 0;
    let mut compared_firing = 0;
    for file in &files {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let every = duration_ms(doc["evaluation_interval"].as_str().unwrap_or("1m"));
        let mut rules = Rules::default();
        for rf in doc["rule_files"].as_sequence().unwrap() {
            let loaded = Rules::load(&file.parent().unwrap().join(rf.as_str().unwrap())).unwrap();
            rules.groups.extend(loaded.groups);
        }
        for test in doc["tests"].as_sequence().unwrap() {
            base += DAY;
            let name = test["name"].as_str().unwrap_or("?");
            let step = duration_ms(test["interval"].as_str().unwrap_or("1m"));
            let mut timeseries = Vec::new();
            for s in test["input_series"].as_sequence().unwrap() {
                let labels = series_labels(s["series"].as_str().unwrap());
                let samples: Vec<(i64, f64)> = expand(s["values"].as_str().unwrap())
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (base + i as i64 * step, v)))
                    .collect();
                let l: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                timeseries.push(TimeSeries::new(&l, &samples));
            }
            let body = WriteRequest { timeseries }.encode_body();
            let status = ureq::post(&agg.url("/api/v1/write"))
                .set("Content-Encoding", "snappy")
                .set("Content-Type", "application/x-protobuf")
                .send_bytes(&body)
                .map(|r| r.status())
                .unwrap_or_else(|e| panic!("{name}: write: {e}"));
            assert_eq!(status, 204, "{name}");

            // eval_time → (alertname → expected), checked after the evaluation at or before it.
            let mut checks: BTreeMap<i64, Vec<(String, Alerts, String)>> = BTreeMap::new();
            for t in test["alert_rule_test"].as_sequence().unwrap() {
                let at = duration_ms(t["eval_time"].as_str().unwrap());
                let alertname = t["alertname"].as_str().unwrap().to_owned();
                let mut exp: Alerts = t["exp_alerts"]
                    .as_sequence()
                    .map(|v| v.to_vec())
                    .unwrap_or_default()
                    .iter()
                    .map(|a| {
                        let mut labels = yaml_map(&a["exp_labels"]);
                        labels.insert("alertname".into(), alertname.clone());
                        (labels, yaml_map(&a["exp_annotations"]))
                    })
                    .collect();
                exp.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
                let at_step = at - at.rem_euclid(every);
                checks.entry(at_step).or_default().push((
                    alertname,
                    exp,
                    t["eval_time"].as_str().unwrap().to_owned(),
                ));
            }
            let last = checks.keys().max().copied().unwrap_or(0);
            let mut engine = Engine::default();
            let mut t = 0;
            while t <= last {
                for group in &rules.groups {
                    for rule in group.rules.iter().filter(|r| !r.record) {
                        let result = rt
                            .block_on(api.instant(&rule.expr, base + t))
                            .unwrap_or_else(|e| panic!("{name} at {t} ms: {e}"));
                        engine
                            .apply(group, rule, &result, base + t, &|_| Vec::new())
                            .unwrap_or_else(|e| panic!("{name}: {} at {t} ms: {e}", rule.name));
                    }
                }
                for (alertname, exp, eval_time) in checks.get(&t).into_iter().flatten() {
                    let mut got: Alerts = engine
                        .list(false)
                        .filter(|a| {
                            a.state == AlarmState::Firing && &a.labels["alertname"] == alertname
                        })
                        .map(|a| (a.labels.clone(), a.annotations.clone()))
                        .collect();
                    got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
                    assert_eq!(
                        &got, exp,
                        "{}: test {name:?}, {alertname} at {eval_time}: ours (left) vs promtool's expected (right)",
                        file.file_name().unwrap().to_string_lossy()
                    );
                    checked += 1;
                    compared_firing += exp.len();
                }
                t += every;
            }
        }
    }
    assert!(checked >= 40, "only {checked} evaluation points compared");
    assert!(
        compared_firing >= 15,
        "only {compared_firing} firing alerts compared"
    );
    eprintln!("{checked} evaluation points, {compared_firing} firing alerts: same as promtool");
}

#[test]
fn the_series_notation_expands_as_promtool_does() {
    assert_eq!(expand("1+1x2"), [Some(1.0), Some(2.0), Some(3.0)]);
    assert_eq!(
        expand("6-1x2 _x2 5"),
        [Some(6.0), Some(5.0), Some(4.0), None, None, Some(5.0)]
    );
    assert_eq!(expand("0.1x2"), [Some(0.1), Some(0.1), Some(0.1)]);
    assert_eq!(expand("-2x1"), [Some(-2.0), Some(-2.0)]);
    assert_eq!(expand("30+0.1x3")[3], Some(30.300000000000004));
    assert_eq!(expand("stale")[0].unwrap().to_bits(), STALE);
    assert_eq!(duration_ms("1m30s"), 90_000);
    assert_eq!(duration_ms("500ms"), 500);
}
