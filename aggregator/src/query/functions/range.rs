//! Functions over a range vector, one answer per series: the rate family (`rate`,
//! `increase`, `delta`, `irate`, `idelta`, `deriv`, `predict_linear`, `holt_winters`),
//! `changes`, `resets` and the `*_over_time` functions.
//!
//! Promise: the functions whose only argument is a range vector are also [`Kernel`]s
//! over one series' points, so a range query can compute them for every step at once
//! and answer exactly what step-by-step evaluation answers.

use super::super::error::{Error, Result};
use super::super::stats::{avg, quantile, variance};
use super::super::value::{RangeArg, Sample, Series, Value, Window};
use super::args::{Args, Ctx};
use super::rate::{extrapolated_rate, instant_value, linear_regression, smooth};

/// What a function whose only argument is a range vector computes from one series' points
/// in a window (`None`: no sample).
pub type Kernel = fn(&[(i64, f64)], Window) -> Option<f64>;

/// The kernel of a function whose only argument is a range vector, and whether its
/// answer keeps the metric name (only `last_over_time` does).
pub fn kernel(name: &str) -> Option<(Kernel, bool)> {
    let k: Kernel = match name {
        "rate" => |p, w| extrapolated_rate(p, w, true, true),
        "increase" => |p, w| extrapolated_rate(p, w, true, false),
        "delta" => |p, w| extrapolated_rate(p, w, false, false),
        "irate" => |p, _| instant_value(p, true),
        "idelta" => |p, _| instant_value(p, false),
        "deriv" => |p, _| (p.len() >= 2).then(|| linear_regression(p, p[0].0).0),
        "changes" => |p, _| {
            Some(
                p.windows(2)
                    .filter(|w| !(w[0].1 == w[1].1 || (w[0].1.is_nan() && w[1].1.is_nan())))
                    .count() as f64,
            )
        },
        "resets" => |p, _| Some(p.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64),
        "avg_over_time" => |p, _| Some(avg(p.iter().map(|p| p.1))),
        "sum_over_time" => |p, _| Some(p.iter().map(|p| p.1).sum()),
        "count_over_time" => |p, _| Some(p.len() as f64),
        "min_over_time" => |p, _| {
            Some(p.iter().fold(
                p[0].1,
                |acc, &(_, v)| {
                    if v < acc || acc.is_nan() {
                        v
                    } else {
                        acc
                    }
                },
            ))
        },
        "max_over_time" => |p, _| {
            Some(p.iter().fold(
                p[0].1,
                |acc, &(_, v)| {
                    if v > acc || acc.is_nan() {
                        v
                    } else {
                        acc
                    }
                },
            ))
        },
        "stddev_over_time" => |p, _| Some(variance(p.iter().map(|p| p.1)).sqrt()),
        "stdvar_over_time" => |p, _| Some(variance(p.iter().map(|p| p.1))),
        "last_over_time" => |p, _| p.last().map(|p| p.1),
        "present_over_time" => |_, _| Some(1.0),
        _ => return None,
    };
    Some((k, name == "last_over_time"))
}

/// A function whose only argument is a range vector.
pub fn range_function(name: &str, mut args: Args, cx: &Ctx) -> Result<Value> {
    let range = args.range(0)?;
    let Some((k, keeps_name)) = kernel(name) else {
        return Err(Error::BadData(format!(
            "parse error: unknown function with name {name:?}"
        )));
    };
    let w = range.window();
    Ok(over_time(cx, range, !keeps_name, |p| k(p, w)))
}

/// `quantile_over_time(φ, v[range])`.
pub fn quantile_over_time(mut args: Args, cx: &Ctx) -> Result<Value> {
    let q = args.scalar(0)?;
    let range = args.range(1)?;
    Ok(over_time(cx, range, true, |p| {
        let mut v: Vec<f64> = p.iter().map(|p| p.1).collect();
        Some(quantile(q, &mut v))
    }))
}

/// `holt_winters(v[range], sf, tf)`: both factors strictly between 0 and 1.
pub fn holt_winters(mut args: Args, cx: &Ctx) -> Result<Value> {
    let range = args.range(0)?;
    let sf = args.scalar(1)?;
    let tf = args.scalar(2)?;
    if sf <= 0.0 || sf >= 1.0 {
        return Err(Error::Execution(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        )));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(Error::Execution(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        )));
    }
    Ok(over_time(cx, range, true, |p| smooth(p, sf, tf)))
}

/// `predict_linear(v[range], seconds)`: the least-squares line through the points,
/// anchored at the evaluation time, `seconds` later.
pub fn predict_linear(mut args: Args, cx: &Ctx) -> Result<Value> {
    let range = args.range(0)?;
    let duration = args.scalar(1)?;
    let t = cx.t;
    Ok(over_time(cx, range, true, |p| {
        if p.len() < 2 {
            return None;
        }
        let (slope, intercept) = linear_regression(p, t);
        Some(intercept + slope * duration)
    }))
}

/// Applies `f` to each series' points; `drop` takes the metric name away.
fn over_time(
    cx: &Ctx,
    range: RangeArg,
    drop: bool,
    f: impl Fn(&[(i64, f64)]) -> Option<f64>,
) -> Value {
    Value::Vector(
        range
            .series
            .into_iter()
            .filter_map(|Series { labels, points }| {
                let v = f(&points)?;
                Some(Sample {
                    labels: if drop {
                        cx.names.unnamed(&labels)
                    } else {
                        labels
                    },
                    v,
                })
            })
            .collect(),
    )
}
