//! PromQL's functions over float samples, as Prometheus 2.42 computes them (its
//! `promql/functions.go` is the reference for every edge: extrapolation of rates, NaN
//! handling of min and max, Go's math where Rust's differs), one family per file.
//!
//! Promise: a function is given its arguments evaluated ([`args`]) and computes from
//! them alone; it never evaluates an expression nor names the evaluator.

mod absent;
pub mod args;
mod convert;
mod histogram;
mod labels;
mod math;
pub mod range;
mod rate;
pub mod rollup;
mod sort;
mod time;

use self::args::{Args, Ctx};
use super::error::Result;
use super::value::Value;

/// Function `name` over its evaluated `args`.
pub fn call(name: &str, args: Args, cx: &Ctx) -> Result<Value> {
    if let Some(f) = math::unary(name) {
        return math::map(f, args, cx);
    }
    if time::is_date_part(name) {
        return time::date_function(name, args, cx);
    }
    match name {
        "pi" => Ok(math::pi()),
        "round" => math::round(args, cx),
        "clamp" | "clamp_min" | "clamp_max" => math::clamp(name, args, cx),
        "time" => Ok(time::time(cx)),
        "timestamp" => time::timestamp(args, cx),
        "scalar" => convert::scalar(args),
        "vector" => convert::vector(args),
        "sort" => sort::sort(false, args),
        "sort_desc" => sort::sort(true, args),
        "absent" => absent::absent(args),
        "absent_over_time" => absent::absent_over_time(args),
        "label_replace" => labels::label_replace(args),
        "label_join" => labels::label_join(args),
        "histogram_quantile" => histogram::histogram_quantile(args),
        "quantile_over_time" => range::quantile_over_time(args, cx),
        "holt_winters" => range::holt_winters(args, cx),
        "predict_linear" => range::predict_linear(args, cx),
        _ => range::range_function(name, args, cx),
    }
}
