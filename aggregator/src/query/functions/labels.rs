//! `label_replace` and `label_join`: a label set by a regular expression's expansion or
//! by joining other labels' values.
//!
//! Promise: names and patterns are checked as Prometheus 2.42 checks them (anchored
//! regex, valid label names) with its error messages; samples keep their metric name.

use std::sync::Arc;

use telltale_model::prom::is_label_name;

use super::super::error::{Error, Result};
use super::super::value::{Sample, Value};
use super::args::Args;

/// `label_replace(v, dst, replacement, src, regex)`.
pub fn label_replace(mut args: Args) -> Result<Value> {
    if !args.has(4) || args.has(5) {
        return Err(Error::BadData(
            "parse error: label_replace takes 5 arguments".into(),
        ));
    }
    let input = args.vector(0)?;
    let dst = args.string(1)?;
    let replacement = args.string(2)?;
    let src = args.string(3)?;
    let pattern = args.string(4)?;
    let re = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|_| {
        Error::Execution(format!(
            "invalid regular expression in label_replace(): {pattern}"
        ))
    })?;
    if !is_label_name(&dst) {
        return Err(Error::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    Ok(Value::Vector(
        input
            .into_iter()
            .map(|s| {
                let value = s.labels.get(&src);
                let Some(caps) = re.captures(value) else {
                    return s;
                };
                let mut out = String::new();
                caps.expand(&replacement, &mut out);
                let mut labels = (*s.labels).clone();
                labels.set(&dst, &out);
                Sample {
                    labels: Arc::new(labels),
                    v: s.v,
                }
            })
            .collect(),
    ))
}

/// `label_join(v, dst, separator, src...)`.
pub fn label_join(mut args: Args) -> Result<Value> {
    if !args.has(2) {
        return Err(Error::BadData(
            "parse error: label_join takes at least 3 arguments".into(),
        ));
    }
    let input = args.vector(0)?;
    let dst = args.string(1)?;
    let sep = args.string(2)?;
    let mut srcs = Vec::new();
    let mut i = 3;
    while args.has(i) {
        let s = args.string(i)?;
        if !is_label_name(&s) {
            return Err(Error::Execution(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
        srcs.push(s);
        i += 1;
    }
    if !is_label_name(&dst) {
        return Err(Error::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    Ok(Value::Vector(
        input
            .into_iter()
            .map(|s| {
                let joined = srcs
                    .iter()
                    .map(|n| s.labels.get(n))
                    .collect::<Vec<_>>()
                    .join(&sep);
                let mut labels = (*s.labels).clone();
                labels.set(&dst, &joined);
                Sample {
                    labels: Arc::new(labels),
                    v: s.v,
                }
            })
            .collect(),
    ))
}
