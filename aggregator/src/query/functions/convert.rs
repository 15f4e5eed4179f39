//! `scalar(v)` and `vector(s)`: between a one-sample vector and a number.
//!
//! Promise: `scalar` of anything but exactly one sample is NaN; `vector`'s sample has no
//! labels.

use std::sync::Arc;

use super::super::error::Result;
use super::super::value::{Labels, Sample, Value};
use super::args::Args;

/// `scalar(v)`: the value of a one-sample vector, NaN otherwise.
pub fn scalar(mut args: Args) -> Result<Value> {
    let v = args.vector(0)?;
    Ok(Value::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }))
}

/// `vector(s)`: one sample without labels.
pub fn vector(mut args: Args) -> Result<Value> {
    Ok(Value::Vector(vec![Sample {
        labels: Arc::new(Labels::default()),
        v: args.scalar(0)?,
    }]))
}
