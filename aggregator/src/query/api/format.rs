//! The API's JSON: instant and range answers, series and label sets, timestamps and
//! values written as Prometheus writes them (seconds with milliseconds as decimals,
//! values as strings in Go's spelling).
//!
//! Promise: byte for byte the shapes Prometheus 2.42 answers with, keys in its order.

use super::super::number::format_value;
use super::super::value::{Labels, Series, Value};

/// A timestamp in seconds as Prometheus writes it: a JSON number, ms as decimals.
fn push_time(out: &mut String, t: i64) {
    use std::fmt::Write;
    let (s, ms) = (t.div_euclid(1000), t.rem_euclid(1000));
    if ms == 0 {
        let _ = write!(out, "{s}");
    } else {
        let frac = format!("{ms:03}");
        let _ = write!(out, "{}.{}", s, frac.trim_end_matches('0'));
    }
}

/// A point as `[seconds, "value"]`.
fn push_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    push_time(out, t);
    out.push_str(",\"");
    out.push_str(&format_value(v));
    out.push_str("\"]");
}

/// A label set as a JSON object.
pub fn push_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, (n, v)) in labels.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(n).unwrap_or_default());
        out.push(':');
        out.push_str(&serde_json::to_string(v).unwrap_or_default());
    }
    out.push('}');
}

/// A series with its points: `{"metric": ..., "values": [...]}`.
pub fn series_json(out: &mut String, s: &Series) {
    out.push_str("{\"metric\":");
    push_labels(out, &s.labels);
    out.push_str(",\"values\":[");
    for (i, &(t, v)) in s.points.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_point(out, t, v);
    }
    out.push_str("]}");
}

/// An instant query's `data`.
pub fn instant_json(v: &Value, t: i64) -> String {
    let mut out = String::new();
    match v {
        Value::Scalar(x) => {
            out.push_str("{\"resultType\":\"scalar\",\"result\":");
            push_point(&mut out, t, *x);
        }
        Value::Str(s) => {
            out.push_str("{\"resultType\":\"string\",\"result\":[");
            push_time(&mut out, t);
            out.push(',');
            out.push_str(&serde_json::to_string(s).unwrap_or_default());
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push_str("{\"resultType\":\"vector\",\"result\":[");
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(&mut out, &s.labels);
                out.push_str(",\"value\":");
                push_point(&mut out, t, s.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push_str("{\"resultType\":\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                series_json(&mut out, s);
            }
            out.push(']');
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_seconds_with_milliseconds() {
        let mut s = String::new();
        push_time(&mut s, 1_435_781_451_781);
        assert_eq!(s, "1435781451.781");
        s.clear();
        push_time(&mut s, 1_435_781_451_000);
        assert_eq!(s, "1435781451");
        s.clear();
        push_time(&mut s, 1_435_781_451_500);
        assert_eq!(s, "1435781451.5");
    }
}
