//! `absent(v)` and `absent_over_time(v[range])`: one sample of value 1 when the argument
//! has nothing, labelled with what its selector fixes.
//!
//! Promise: the labels are those the evaluator derived from the argument's equality
//! matchers (see [`super::args::Args::absent_labels`]); nothing when the argument has
//! samples.

use std::sync::Arc;

use super::super::error::Result;
use super::super::value::{Sample, Value};
use super::args::Args;

/// `absent(v)`.
pub fn absent(mut args: Args) -> Result<Value> {
    let empty = args.vector(0)?.is_empty();
    Ok(Value::Vector(one_if(empty, args)))
}

/// `absent_over_time(v[range])`.
pub fn absent_over_time(mut args: Args) -> Result<Value> {
    let empty = args.range(0)?.series.is_empty();
    Ok(Value::Vector(one_if(empty, args)))
}

fn one_if(empty: bool, args: Args) -> Vec<Sample> {
    if !empty {
        return Vec::new();
    }
    vec![Sample {
        labels: Arc::new(args.absent_labels),
        v: 1.0,
    }]
}
