//! Element-wise arithmetic on an instant vector: `abs`, `ceil`, `floor`, `exp`, `sqrt`,
//! the logarithms and trigonometry, `deg`, `rad`, `sgn`, `round`, `clamp`, `clamp_min`,
//! `clamp_max`; and `pi`.
//!
//! Promise: every answer drops the metric name, and NaN propagates as Go's `math`
//! package propagates it.

use super::super::error::Result;
use super::super::value::{Sample, Value};
use super::args::{Args, Ctx};

/// The function of `name` if it maps each value on its own.
pub fn unary(name: &str) -> Option<fn(f64) -> f64> {
    let f: fn(f64) -> f64 = match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    };
    Some(f)
}

/// `f` applied to each value of the first argument.
pub fn map(f: fn(f64) -> f64, mut args: Args, cx: &Ctx) -> Result<Value> {
    Ok(Value::Vector(map_values(cx, args.vector(0)?, f)))
}

/// `pi()`.
pub fn pi() -> Value {
    Value::Scalar(std::f64::consts::PI)
}

/// `round(v, to_nearest = 1)`.
pub fn round(mut args: Args, cx: &Ctx) -> Result<Value> {
    let input = args.vector(0)?;
    let to = if args.has(1) { args.scalar(1)? } else { 1.0 };
    let inverse = 1.0 / to;
    Ok(Value::Vector(
        input
            .into_iter()
            .map(|s| Sample {
                labels: cx.names.unnamed(&s.labels),
                v: (s.v * inverse + 0.5).floor() / inverse,
            })
            .collect(),
    ))
}

/// `clamp(v, min, max)`, `clamp_min(v, min)` and `clamp_max(v, max)`.
pub fn clamp(name: &str, mut args: Args, cx: &Ctx) -> Result<Value> {
    let input = args.vector(0)?;
    let (lo, hi) = match name {
        "clamp" => (args.scalar(1)?, args.scalar(2)?),
        "clamp_min" => (args.scalar(1)?, f64::INFINITY),
        _ => (f64::NEG_INFINITY, args.scalar(1)?),
    };
    if name == "clamp" && hi < lo {
        return Ok(Value::Vector(Vec::new()));
    }
    Ok(Value::Vector(
        input
            .into_iter()
            .map(|s| Sample {
                labels: cx.names.unnamed(&s.labels),
                v: go_max(lo, go_min(hi, s.v)),
            })
            .collect(),
    ))
}

fn map_values(cx: &Ctx, samples: Vec<Sample>, f: fn(f64) -> f64) -> Vec<Sample> {
    samples
        .into_iter()
        .map(|s| Sample {
            labels: cx.names.unnamed(&s.labels),
            v: f(s.v),
        })
        .collect()
}

/// Go's `math.Max`: NaN wins.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}
