//! The query API as Grafana's Prometheus data source calls it, and bad input, against the
//! real binary: data imported with `telltale import`, then every endpoint by GET and by
//! form-encoded POST, with the JSON shapes and error types Prometheus answers with.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{get, run_ok, spawn, telltale, Running};
use serde_json::Value;

/// POSTs a form: (status, parsed body).
fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = ureq::post(url)
        .timeout(Duration::from_secs(30))
        .send_form(form);
    let (code, body) = match r {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("POST {url}: {e}"),
    };
    (
        code,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}")),
    )
}

fn get_json(url: &str) -> (u16, Value) {
    let (code, body) = get(url);
    (
        code,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}")),
    )
}

/// An aggregator holding two hours of `http_requests_total` (two codes) and a gauge,
/// every 15 s up to `now`; returns it and `now` (unix seconds).
fn loaded(dir: &std::path::Path) -> (Running, i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 15
        * 15;
    let mut text = String::new();
    for i in 0..480 {
        let t = (now - 7200 + i * 15) * 1000;
        text.push_str(&format!(
            "http_requests_total{{job=\"api\",code=\"200\"}} {} {t}\n",
            i * 3
        ));
        text.push_str(&format!(
            "http_requests_total{{job=\"api\",code=\"500\"}} {i} {t}\n"
        ));
        text.push_str(&format!(
            "room_temperature{{room=\"a\"}} {} {t}\n",
            20 + i % 7
        ));
    }
    let file = dir.join("data.prom");
    std::fs::write(&file, text).unwrap();
    let data = dir.join("data");
    run_ok(telltale().args([
        "import",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]));
    (
        spawn(&["aggregator", "--data-dir", data.to_str().unwrap()]),
        now,
    )
}

#[test]
fn grafana_calls_get_prometheus_shaped_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (agg, now) = loaded(dir.path());

    let (code, b) = get_json(&agg.url("/api/v1/status/buildinfo"));
    assert_eq!(code, 200);
    assert_eq!(b["status"], "success");
    assert!(
        b["data"]["version"].as_str().unwrap().starts_with("2."),
        "{b}"
    );

    let (code, b) = get_json(&agg.url("/api/v1/labels"));
    assert_eq!(code, 200);
    assert_eq!(
        b["data"],
        serde_json::json!(["__name__", "code", "job", "room"])
    );
    // Label values narrowed by match[], as the query editor asks for them.
    let (_, b) = get_json(&agg.url("/api/v1/label/__name__/values?match[]=%7Bjob%3D%22api%22%7D"));
    assert_eq!(b["data"], serde_json::json!(["http_requests_total"]));
    let (_, b) = get_json(&agg.url("/api/v1/label/code/values?limit=1"));
    assert_eq!(b["data"], serde_json::json!(["200"]));

    let (code, b) = post_form(
        &agg.url("/api/v1/series"),
        &[
            ("match[]", "http_requests_total{code=\"500\"}"),
            ("start", &(now - 3600).to_string()),
            ("end", &now.to_string()),
        ],
    );
    assert_eq!(code, 200);
    assert_eq!(
        b["data"],
        serde_json::json!([{"__name__": "http_requests_total", "code": "500", "job": "api"}])
    );

    let (code, b) = get_json(&agg.url("/api/v1/metadata"));
    assert_eq!((code, &b["status"]), (200, &serde_json::json!("success")));

    // Instant query by POST: a counter rising 3 and 1 per 15 s.
    let (code, b) = post_form(
        &agg.url("/api/v1/query"),
        &[
            ("query", "sum by (code) (rate(http_requests_total[5m]))"),
            ("time", &now.to_string()),
        ],
    );
    assert_eq!(code, 200, "{b}");
    assert_eq!(b["data"]["resultType"], "vector");
    let mut got: Vec<(String, f64)> = b["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["value"][0], serde_json::json!(now));
            (
                r["metric"]["code"].as_str().unwrap().to_owned(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got.len(), 2);
    assert!((got[0].1 - 0.2).abs() < 1e-9, "{got:?}");
    assert!((got[1].1 - 1.0 / 15.0).abs() < 1e-9, "{got:?}");

    // Range query by POST: one point per step, timestamps in seconds.
    let (code, b) = post_form(
        &agg.url("/api/v1/query_range"),
        &[
            ("query", "room_temperature"),
            ("start", &(now - 600).to_string()),
            ("end", &now.to_string()),
            ("step", "60"),
        ],
    );
    assert_eq!(code, 200, "{b}");
    assert_eq!(b["data"]["resultType"], "matrix");
    let values = b["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 11);
    assert_eq!(values[0][0], serde_json::json!(now - 600));
    assert!(values.iter().all(|v| v[1].is_string()));

    // A scalar.
    let (_, b) = get_json(&agg.url(&format!("/api/v1/query?query=1%2B1&time={now}")));
    assert_eq!(
        b["data"],
        serde_json::json!({"resultType": "scalar", "result": [now, "2"]})
    );
}

#[test]
fn bad_queries_get_errors_that_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (agg, now) = loaded(dir.path());
    let query = agg.url("/api/v1/query");
    let range = agg.url("/api/v1/query_range");
    let t = now.to_string();
    for (url, form, status, kind, says) in [
        (
            &query,
            vec![("query", "sum(")],
            400,
            "bad_data",
            "parse error",
        ),
        (
            &query,
            vec![("query", "nope(x)")],
            400,
            "bad_data",
            "unknown function",
        ),
        (
            &query,
            vec![("query", "rate(room_temperature)")],
            400,
            "bad_data",
            "expected type matrix",
        ),
        (
            &query,
            vec![("query", "room_temperature[0s]")],
            400,
            "bad_data",
            "duration",
        ),
        (&query, vec![("time", t.as_str())], 400, "bad_data", "query"),
        (
            &query,
            vec![("query", "up"), ("time", "yesterday")],
            400,
            "bad_data",
            "timestamp",
        ),
        // Many-to-many: both sides have two series per job.
        (
            &query,
            vec![("query", "http_requests_total + on(job) http_requests_total")],
            422,
            "execution",
            "many-to-many",
        ),
        (
            &range,
            vec![
                ("query", "room_temperature"),
                ("start", "0"),
                ("end", t.as_str()),
                ("step", "1"),
            ],
            400,
            "bad_data",
            "maximum resolution",
        ),
        (
            &range,
            vec![
                ("query", "room_temperature"),
                ("start", t.as_str()),
                ("end", "0"),
                ("step", "60"),
            ],
            400,
            "bad_data",
            "before start",
        ),
        (
            &range,
            vec![
                ("query", "room_temperature"),
                ("start", "0"),
                ("end", t.as_str()),
                ("step", "-5"),
            ],
            400,
            "bad_data",
            "step",
        ),
        (
            &range,
            vec![
                ("query", "room_temperature[5m]"),
                ("start", "0"),
                ("end", "60"),
                ("step", "15"),
            ],
            400,
            "bad_data",
            "range vector",
        ),
    ] {
        let (code, b) = post_form(url, &form);
        assert_eq!(code, status, "{form:?}: {b}");
        assert_eq!(b["status"], "error", "{form:?}");
        assert_eq!(b["errorType"], kind, "{form:?}: {b}");
        let message = b["error"].as_str().unwrap();
        assert!(message.contains(says), "{form:?}: {message}");
    }
    // The aggregator is still serving.
    let (code, _) = get(&agg.url("/api/v1/query?query=room_temperature"));
    assert_eq!(code, 200);
}
