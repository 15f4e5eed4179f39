//! `POST /api/v1/read`, black-box: a real Prometheus 2.42 with `remote_read` pointed at an
//! aggregator answers what the aggregator's own query API answers, and bad requests are
//! refused with words that say why.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{eventually, get, spawn, urlencode, Prometheus, Running};
use telltale_model::remote::{TimeSeries, WriteRequest};
use telltale_model::remote_read::{
    LabelMatcher, MatchType, Query, ReadRequest, ReadResponse, ResponseType,
};

fn post(a: &Running, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let sent = ureq::post(&a.url(path))
        .set("Content-Type", "application/x-protobuf")
        .set("Content-Encoding", "snappy")
        .timeout(Duration::from_secs(30))
        .send_bytes(body);
    let read = |r: ureq::Response| {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut out).unwrap();
        out
    };
    match sent {
        Ok(r) => (r.status(), read(r)),
        Err(ureq::Error::Status(code, r)) => (code, read(r)),
        Err(e) => panic!("POST {path}: {e}"),
    }
}

/// 10 counters (`pod-0`..`pod-9`, one reset in `pod-3`) every 15 s for 10 minutes ending
/// at `end` (ms).
fn write(a: &Running, end: i64) {
    let series: Vec<TimeSeries> = (0..10)
        .map(|i| {
            let pod = format!("pod-{i}");
            let samples: Vec<(i64, f64)> = (0..40)
                .map(|k| {
                    let v = if i == 3 && k >= 20 {
                        k - 20
                    } else {
                        k * (i + 1)
                    };
                    (end - (39 - k) * 15_000, v as f64)
                })
                .collect();
            TimeSeries::new(&[("__name__", "steer_total"), ("pod", &pod)], &samples)
        })
        .collect();
    let body = WriteRequest { timeseries: series }.encode_body();
    assert_eq!(post(a, "/api/v1/write", &body).0, 204);
}

/// An instant query's `data.result`, sorted by labels.
fn result(v: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut r = v["data"]["result"].as_array().cloned().unwrap_or_default();
    r.sort_by_key(|s| s["metric"].to_string());
    r
}

#[test]
fn prometheus_reads_through_remote_read_what_we_answer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.display().to_string();
    let a = spawn(&["aggregator", "--data-dir", &d]);
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        / 1000
        * 1000
        - 30_000;
    write(&a, end);
    let read_url = a.url("/api/v1/read");
    let Some(prom) = Prometheus::start(
        dir.path(),
        |_| {
            format!(
                "global:\n  scrape_interval: 1h\nremote_read:\n  - url: {read_url}\n    read_recent: true\n"
            )
        },
        &[],
    ) else {
        return;
    };
    // On a sample (the windows' left edges hold one) and between samples.
    for t in [end as f64 / 1000.0, (end - 7_000) as f64 / 1000.0] {
        for q in [
            "steer_total",
            "sum by (pod) (rate(steer_total[5m]))",
            "count(steer_total{pod=~\"pod-[1-3]\"})",
            "max_over_time(steer_total{pod!=\"pod-0\"}[10m])",
            "resets(steer_total[10m])",
        ] {
            let path = format!("/api/v1/query?query={}&time={t}", urlencode(q));
            let theirs = eventually(Duration::from_secs(60), || {
                let (_, body) = common::try_get(&format!("{}{path}", prom.url)).ok()?;
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                (v["status"] == "success").then_some(v)
            })
            .unwrap_or_else(|| panic!("Prometheus did not answer {q}"));
            let (code, body) = get(&a.url(&path));
            assert_eq!(code, 200, "{body}");
            let ours: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(!result(&ours).is_empty(), "{q}: {body}");
            assert_eq!(result(&theirs), result(&ours), "{q} at {t}");
        }
    }
}

#[test]
fn remote_read_answers_samples_and_refuses_what_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data").display().to_string();
    let a = spawn(&["aggregator", "--data-dir", &d, "--query-max-samples", "100"]);
    // A minute ago, on the second.
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        / 1000
        * 1000
        - 60_000;
    write(&a, end);
    let m = |t: MatchType, name: &str, value: &str| LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    };
    let query = |matchers: Vec<LabelMatcher>, start: i64| Query {
        start_timestamp_ms: start,
        end_timestamp_ms: end,
        matchers,
        hints: None,
    };
    let req = ReadRequest {
        queries: vec![
            query(
                vec![
                    m(MatchType::Eq, "__name__", "steer_total"),
                    m(MatchType::Re, "pod", "pod-[12]"),
                ],
                end - 60_000,
            ),
            query(vec![m(MatchType::Nre, "pod", "pod-.*")], 0),
        ],
        accepted_response_types: vec![],
    };
    let (code, body) = post(&a, "/api/v1/read", &req.encode_body());
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let resp = ReadResponse::decode_body(&body).unwrap();
    assert_eq!(resp.results.len(), 2);
    let got: Vec<(String, Vec<(i64, f64)>)> = resp.results[0]
        .timeseries
        .iter()
        .map(|s| {
            let pod = s.labels.iter().find(|l| l.name == "pod").unwrap();
            let labels: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
            assert_eq!(labels, ["__name__", "pod"]);
            (
                pod.value.clone(),
                s.samples.iter().map(|x| (x.timestamp, x.value)).collect(),
            )
        })
        .collect();
    // The last minute, both ends included: five samples 15 s apart.
    let want = |i: i64| -> Vec<(i64, f64)> {
        (35..40)
            .map(|k| (end - (39 - k) * 15_000, (k * (i + 1)) as f64))
            .collect()
    };
    assert_eq!(
        got,
        vec![
            ("pod-1".to_string(), want(1)),
            ("pod-2".to_string(), want(2))
        ]
    );
    assert!(resp.results[1].timeseries.is_empty());

    for (body, words) in [
        (b"not snappy".to_vec(), "snappy"),
        (
            ReadRequest {
                queries: vec![query(vec![m(MatchType::Re, "pod", "(")], 0)],
                accepted_response_types: vec![],
            }
            .encode_body(),
            "pod",
        ),
        (
            ReadRequest {
                queries: vec![],
                accepted_response_types: vec![ResponseType::StreamedXorChunks as i32],
            }
            .encode_body(),
            "SAMPLES",
        ),
        (
            ReadRequest {
                queries: vec![query(vec![m(MatchType::Re, "pod", ".+")], 0)],
                accepted_response_types: vec![],
            }
            .encode_body(),
            "--query-max-samples",
        ),
    ] {
        let (code, text) = post(&a, "/api/v1/read", &body);
        let text = String::from_utf8_lossy(&text);
        assert_eq!(code, 400, "{text}");
        assert!(text.contains(words), "{words}: {text}");
    }
    // Still serving.
    assert_eq!(get(&a.url("/healthz")).0, 200);
}
