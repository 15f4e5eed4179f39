//! Instant queries against any Prometheus-compatible HTTP API (`GET /api/v1/query`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::http;

/// A query that did not give a vector.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The API could not be reached or answered 5xx: alarm state must not change.
    #[error("query API: {0}")]
    Http(#[from] http::Error),
    /// The API refused the query (`errorType`, `error`).
    #[error("query {expr:?}: {kind}: {message}")]
    Refused {
        /// The expression.
        expr: String,
        /// Prometheus's errorType.
        kind: String,
        /// Prometheus's error.
        message: String,
    },
    /// The answer is not the JSON Prometheus sends.
    #[error("query {expr:?}: unexpected answer: {message}")]
    Answer {
        /// The expression.
        expr: String,
        /// What was wrong.
        message: String,
    },
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its labels, `__name__` included when the expression kept it.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A Prometheus query API.
#[derive(Debug, Clone)]
pub struct Api {
    client: http::Client,
    base: String,
    timeout: Duration,
}

impl Api {
    /// The API at `base` (`http://host:9090`).
    pub fn new(client: http::Client, base: &str, timeout: Duration) -> Api {
        Api {
            client,
            base: base.trim_end_matches('/').to_owned(),
            timeout,
        }
    }

    /// Evaluates `expr` at `t_ms`. A scalar answer becomes one sample without labels, as
    /// Prometheus's rule manager treats it.
    pub async fn instant(&self, expr: &str, t_ms: i64) -> Result<Vec<Sample>, Error> {
        let url = format!(
            "{}/api/v1/query?query={}&time={}.{:03}",
            self.base,
            encode(expr),
            t_ms.div_euclid(1000),
            t_ms.rem_euclid(1000)
        );
        let body = match self.client.get(&url, self.timeout).await {
            Ok(b) => b,
            // 4xx/422 carry Prometheus's error JSON: a refused query, not an outage.
            Err(http::Error::Status { status, body, .. }) if (400..500).contains(&status) => {
                return Err(refusal(expr, body.as_bytes()));
            }
            Err(e) => return Err(e.into()),
        };
        parse(expr, &body)
    }
}

fn refusal(expr: &str, body: &[u8]) -> Error {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    Error::Refused {
        expr: expr.to_owned(),
        kind: v["errorType"].as_str().unwrap_or("bad_data").to_owned(),
        message: v["error"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
    }
}

/// Parses a `/api/v1/query` answer.
pub fn parse(expr: &str, body: &[u8]) -> Result<Vec<Sample>, Error> {
    let bad = |message: &str| Error::Answer {
        expr: expr.to_owned(),
        message: message.to_owned(),
    };
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(&format!("not JSON: {e}")))?;
    if v["status"] != "success" {
        return Err(refusal(expr, body));
    }
    let data = &v["data"];
    let value = |pair: &serde_json::Value| -> Result<f64, Error> {
        let s = pair[1]
            .as_str()
            .ok_or_else(|| bad("value is not [time, \"string\"]"))?;
        parse_value(s).ok_or_else(|| bad(&format!("{s:?} is not a number")))
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .ok_or_else(|| bad("result is not a list"))?
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .ok_or_else(|| bad("metric is not an object"))?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                Ok(Sample {
                    labels,
                    value: value(&s["value"])?,
                })
            })
            .collect(),
        Some("scalar") => Ok(vec![Sample {
            labels: BTreeMap::new(),
            value: value(&data["result"])?,
        }]),
        Some(other) => Err(Error::Refused {
            expr: expr.to_owned(),
            kind: "bad_data".into(),
            message: format!("rule result is a {other}, not a vector or scalar"),
        }),
        None => Err(bad("no data.resultType")),
    }
}

/// A Prometheus sample value: a decimal, `+Inf`, `-Inf` or `NaN`.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Percent-encodes a query parameter value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vectors_scalars_and_refusals() {
        let v = parse(
            "x",
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1700000000.5,"+Inf"]}]}}"#,
        )
        .unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].labels["job"], "a");
        assert_eq!(v[0].value, f64::INFINITY);
        let s = parse(
            "1",
            br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1"]}}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            vec![Sample {
                labels: BTreeMap::new(),
                value: 1.0
            }]
        );
        let e = parse(
            "x[",
            br#"{"status":"error","errorType":"bad_data","error":"1:3: parse error"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("bad_data: 1:3: parse error"), "{e}");
        let e = parse(
            "m[5m]",
            br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a vector or scalar"), "{e}");
        assert!(parse("x", b"<html>")
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
    }

    #[test]
    fn encodes_every_reserved_byte() {
        assert_eq!(encode(r#"a{b="c d"}+1"#), "a%7Bb%3D%22c%20d%22%7D%2B1");
    }
}
