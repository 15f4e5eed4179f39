//! Instant queries against any Prometheus-compatible HTTP API (`GET /api/v1/query`).
//!
//! It promises to tell an outage from a refusal: no answer or a 5xx is [`Error::Http`]
//! (alarm state must not change), a 4xx or `"status": "error"` is [`Error::Refused`] with
//! Prometheus's own message, and a scalar answer is one sample without labels, as
//! Prometheus's rule manager reads it.

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

/// A `/api/v1/query` answer, read straight into typed fields (no intermediate JSON tree:
/// an evaluation cycle parses every alarm's series).
#[derive(serde::Deserialize)]
struct Answer {
    status: String,
    data: Option<Data>,
}

#[derive(serde::Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorSample>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(serde::Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Parses a `/api/v1/query` answer.
pub fn parse(expr: &str, body: &[u8]) -> Result<Vec<Sample>, Error> {
    let bad = |message: String| Error::Answer {
        expr: expr.to_owned(),
        message,
    };
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| bad(format!("not a query API answer (JSON): {e}")))?;
    if answer.status != "success" {
        return Err(refusal(expr, body));
    }
    let value = |s: &str| parse_value(s).ok_or_else(|| bad(format!("{s:?} is not a number")));
    let kind = match answer.data {
        None => return Err(bad("no data".into())),
        Some(Data::Vector(samples)) => {
            return samples
                .into_iter()
                .map(|s| {
                    Ok(Sample {
                        value: value(&s.value.1)?,
                        labels: s.metric,
                    })
                })
                .collect()
        }
        Some(Data::Scalar((_, v))) => {
            return Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: value(&v)?,
            }])
        }
        Some(Data::Matrix(_)) => "matrix",
        Some(Data::String(_)) => "string",
    };
    Err(Error::Refused {
        expr: expr.to_owned(),
        kind: "bad_data".into(),
        message: format!("rule result is a {kind}, not a vector or scalar"),
    })
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
            .contains("not a query API answer"));
    }

    #[test]
    fn encodes_every_reserved_byte() {
        assert_eq!(encode(r#"a{b="c d"}+1"#), "a%7Bb%3D%22c%20d%22%7D%2B1");
    }
}
