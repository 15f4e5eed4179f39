//! PromQL's functions over float samples, as Prometheus 2.42 computes them (its
//! `promql/functions.go` is the reference for every edge: extrapolation of rates, NaN
//! handling of min and max, Go's math where Rust's differs).

use std::sync::Arc;

use promql_parser::parser::{Call, Expr};

use super::eval::{avg, valid_label_name, variance, Evaluator, RangeArg, Sample, Value};
use super::{Error, Labels, Result, Series, NAME};

/// Evaluates the call `c` at `t` (ms).
pub fn call(ev: &Evaluator, c: &Call, t: i64) -> Result<Value> {
    let args = &c.args.args;
    let arg = |i: usize| -> Result<&Expr> {
        args.get(i).map(|a| &**a).ok_or_else(|| {
            Error::BadData(format!(
                "parse error: expected more arguments for {}",
                c.func.name
            ))
        })
    };
    let name = c.func.name;
    let simple = |f: fn(f64) -> f64| -> Result<Value> {
        Ok(Value::Vector(map_values(ev, ev.instant(arg(0)?, t)?, f)))
    };
    match name {
        "abs" => simple(f64::abs),
        "ceil" => simple(f64::ceil),
        "floor" => simple(f64::floor),
        "exp" => simple(f64::exp),
        "sqrt" => simple(f64::sqrt),
        "ln" => simple(f64::ln),
        "log2" => simple(f64::log2),
        "log10" => simple(f64::log10),
        "sin" => simple(f64::sin),
        "cos" => simple(f64::cos),
        "tan" => simple(f64::tan),
        "asin" => simple(f64::asin),
        "acos" => simple(f64::acos),
        "atan" => simple(f64::atan),
        "sinh" => simple(f64::sinh),
        "cosh" => simple(f64::cosh),
        "tanh" => simple(f64::tanh),
        "asinh" => simple(f64::asinh),
        "acosh" => simple(f64::acosh),
        "atanh" => simple(f64::atanh),
        "deg" => simple(|v| v * 180.0 / std::f64::consts::PI),
        "rad" => simple(|v| v * std::f64::consts::PI / 180.0),
        "sgn" => simple(|v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        }),
        "pi" => Ok(Value::Scalar(std::f64::consts::PI)),
        "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
        "round" => {
            let to = match args.len() {
                1 => 1.0,
                _ => ev.scalar(arg(1)?, t)?,
            };
            let inverse = 1.0 / to;
            Ok(Value::Vector(
                ev.instant(arg(0)?, t)?
                    .into_iter()
                    .map(|s| Sample {
                        labels: ev.unnamed(&s.labels),
                        v: (s.v * inverse + 0.5).floor() / inverse,
                    })
                    .collect(),
            ))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let (lo, hi) = match name {
                "clamp" => (ev.scalar(arg(1)?, t)?, ev.scalar(arg(2)?, t)?),
                "clamp_min" => (ev.scalar(arg(1)?, t)?, f64::INFINITY),
                _ => (f64::NEG_INFINITY, ev.scalar(arg(1)?, t)?),
            };
            let input = ev.instant(arg(0)?, t)?;
            if name == "clamp" && hi < lo {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(Value::Vector(
                input
                    .into_iter()
                    .map(|s| Sample {
                        labels: ev.unnamed(&s.labels),
                        v: go_max(lo, go_min(hi, s.v)),
                    })
                    .collect(),
            ))
        }
        "scalar" => {
            let v = ev.instant(arg(0)?, t)?;
            Ok(Value::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }))
        }
        "vector" => Ok(Value::Vector(vec![Sample {
            labels: Arc::new(Labels::default()),
            v: ev.scalar(arg(0)?, t)?,
        }])),
        "sort" | "sort_desc" => {
            let mut v = ev.instant(arg(0)?, t)?;
            let desc = name == "sort_desc";
            // Go's sort puts NaN first in ascending order and last in descending.
            v.sort_by(|a, b| {
                let (x, y) = if desc { (b.v, a.v) } else { (a.v, b.v) };
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) if desc => std::cmp::Ordering::Greater,
                    (true, false) => std::cmp::Ordering::Less,
                    (false, true) if desc => std::cmp::Ordering::Less,
                    (false, true) => std::cmp::Ordering::Greater,
                    _ => x.total_cmp(&y),
                }
            });
            Ok(Value::Vector(v))
        }
        "timestamp" => {
            let mut inner = arg(0)?;
            while let Expr::Paren(p) = inner {
                inner = &p.expr;
            }
            let out = match inner {
                Expr::VectorSelector(vs) => ev
                    .vector_with_times(vs, t)
                    .into_iter()
                    .map(|(s, ts)| Sample {
                        labels: ev.unnamed(&s.labels),
                        v: ts as f64 / 1000.0,
                    })
                    .collect(),
                _ => ev
                    .instant(inner, t)?
                    .into_iter()
                    .map(|s| Sample {
                        labels: ev.unnamed(&s.labels),
                        v: t as f64 / 1000.0,
                    })
                    .collect(),
            };
            Ok(Value::Vector(out))
        }
        "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year" | "days_in_month"
        | "month" | "year" => {
            let input = match args.first() {
                Some(a) => ev.instant(a, t)?,
                None => vec![Sample {
                    labels: Arc::new(Labels::default()),
                    v: t as f64 / 1000.0,
                }],
            };
            Ok(Value::Vector(
                input
                    .into_iter()
                    .map(|s| Sample {
                        labels: ev.unnamed(&s.labels),
                        v: date_part(name, s.v),
                    })
                    .collect(),
            ))
        }
        "absent" => {
            let input = ev.instant(arg(0)?, t)?;
            Ok(Value::Vector(absent(input.is_empty(), arg(0)?)))
        }
        "absent_over_time" => {
            let input = ev.range_arg(arg(0)?, t)?;
            Ok(Value::Vector(absent(input.series.is_empty(), arg(0)?)))
        }
        "label_replace" => label_replace(ev, c, t),
        "label_join" => label_join(ev, c, t),
        "histogram_quantile" => {
            let q = ev.scalar(arg(0)?, t)?;
            Ok(Value::Vector(histogram_quantile(
                q,
                ev.instant(arg(1)?, t)?,
            )))
        }
        "quantile_over_time" => {
            let q = ev.scalar(arg(0)?, t)?;
            over_time(ev, ev.range_arg(arg(1)?, t)?, true, |p| {
                let mut v: Vec<f64> = p.iter().map(|p| p.1).collect();
                Some(quantile(q, &mut v))
            })
        }
        "holt_winters" => {
            let range = ev.range_arg(arg(0)?, t)?;
            let sf = ev.scalar(arg(1)?, t)?;
            let tf = ev.scalar(arg(2)?, t)?;
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
            over_time(ev, range, true, |p| holt_winters(p, sf, tf))
        }
        "predict_linear" => {
            let range = ev.range_arg(arg(0)?, t)?;
            let duration = ev.scalar(arg(1)?, t)?;
            over_time(ev, range, true, |p| {
                if p.len() < 2 {
                    return None;
                }
                let (slope, intercept) = linear_regression(p, t);
                Some(intercept + slope * duration)
            })
        }
        _ => {
            let range = ev.range_arg(arg(0)?, t)?;
            range_function(ev, name, range)
        }
    }
}

/// A range vector's window: where it starts and ends and its width (ms).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    pub range: i64,
}

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

/// The functions whose only argument is a range vector.
fn range_function(ev: &Evaluator, name: &str, range: RangeArg) -> Result<Value> {
    let Some((k, keeps_name)) = kernel(name) else {
        return Err(Error::BadData(format!(
            "parse error: unknown function with name {name:?}"
        )));
    };
    let w = Window {
        start: range.start,
        end: range.end,
        range: range.range,
    };
    over_time(ev, range, !keeps_name, |p| k(p, w))
}

/// Applies `f` to each series' points; `drop` takes the metric name away.
fn over_time(
    ev: &Evaluator,
    range: RangeArg,
    drop: bool,
    f: impl Fn(&[(i64, f64)]) -> Option<f64>,
) -> Result<Value> {
    Ok(Value::Vector(
        range
            .series
            .into_iter()
            .filter_map(|Series { labels, points }| {
                let v = f(&points)?;
                Some(Sample {
                    labels: if drop { ev.unnamed(&labels) } else { labels },
                    v,
                })
            })
            .collect(),
    ))
}

fn map_values(ev: &Evaluator, samples: Vec<Sample>, f: fn(f64) -> f64) -> Vec<Sample> {
    samples
        .into_iter()
        .map(|s| Sample {
            labels: ev.unnamed(&s.labels),
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

/// `rate`, `increase` and `delta`: the change over the points, extrapolated to the
/// window's edges (at most half an average interval beyond the points, and for counters
/// not below zero).
fn extrapolated_rate(p: &[(i64, f64)], w: Window, counter: bool, rate: bool) -> Option<f64> {
    let (range_start, range_end, range) = (w.start, w.end, w.range);
    if p.len() < 2 {
        return None;
    }
    let (first, last) = (p[0], p[p.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        let mut previous = 0.0;
        for &(_, v) in p {
            if v < previous {
                result += previous;
            }
            previous = v;
        }
    }
    let mut to_start = (first.0 - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let average = sampled / (p.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    result *= interval / sampled;
    if rate {
        result /= range as f64 / 1000.0;
    }
    Some(result)
}

/// `irate` and `idelta`: from the last two points.
fn instant_value(p: &[(i64, f64)], rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (previous, last) = (p[p.len() - 2], p[p.len() - 1]);
    let mut v = if rate && last.1 < previous.1 {
        last.1
    } else {
        last.1 - previous.1
    };
    let interval = last.0 - previous.0;
    if interval == 0 {
        return None;
    }
    if rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Least squares over the points, x in seconds from `intercept_time`: (slope, intercept).
fn linear_regression(p: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let first = p[0].1;
    if p.iter().all(|&(_, v)| v == first) {
        if first.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, first);
    }
    let (mut n, mut sx, mut sy, mut sxy, mut sx2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut cx, mut cy, mut cxy, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    for &(t, v) in p {
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1000.0;
        (sx, cx) = kahan(x, sx, cx);
        (sy, cy) = kahan(v, sy, cy);
        (sxy, cxy) = kahan(x * v, sxy, cxy);
        (sx2, cx2) = kahan(x * x, sx2, cx2);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// One step of Kahan-Babuška summation: (sum, compensation).
fn kahan(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

fn holt_winters(p: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, p[0].1);
    let mut b = p[1].1 - p[0].1;
    for (i, &(_, v)) in p.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

/// The φ-quantile of `values` by linear interpolation between ranks.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // As Go sorts with `a < b || isNaN(a)`: NaN first.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `histogram_quantile` over classic buckets: samples grouped by their labels without
/// `le`; samples without a parsable `le` skipped.
fn histogram_quantile(q: f64, input: Vec<Sample>) -> Vec<Sample> {
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    let mut index: std::collections::HashMap<Labels, usize> = std::collections::HashMap::new();
    for s in input {
        let Some(le) = parse_go_float(s.labels.get("le")) else {
            continue;
        };
        let mut key = s.labels.without_name();
        key.set("le", "");
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push((le, s.v));
    }
    groups
        .into_iter()
        .map(|(labels, mut buckets)| Sample {
            labels: Arc::new(labels),
            v: bucket_quantile(q, &mut buckets),
        })
        .collect()
}

/// Parses a float as Go's `strconv.ParseFloat` does for bucket bounds.
fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "" => None,
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Buckets with the same bound are summed.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(le, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    // Counts must not fall as bounds grow.
    let mut max = f64::NEG_INFINITY;
    for b in merged.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1].partition_point(|b| b.1 < rank);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// `absent`'s one sample: labels from the argument's equality matchers.
fn absent(empty: bool, arg: &Expr) -> Vec<Sample> {
    if !empty {
        return Vec::new();
    }
    let mut inner = arg;
    while let Expr::Paren(p) = inner {
        inner = &p.expr;
    }
    let vs = match inner {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(m) => Some(&m.vs),
        _ => None,
    };
    let mut labels = Labels::default();
    if let Some(vs) = vs {
        let mut empty = Vec::new();
        for m in &vs.matchers.matchers {
            if m.name == NAME {
                continue;
            }
            if m.op == promql_parser::label::MatchOp::Equal && labels.get(&m.name).is_empty() {
                labels.set(&m.name, &m.value);
            } else {
                empty.push(m.name.clone());
            }
        }
        for n in empty {
            labels.set(&n, "");
        }
    }
    vec![Sample {
        labels: Arc::new(labels),
        v: 1.0,
    }]
}

fn string_arg(ev: &Evaluator, e: &Expr, t: i64) -> Result<String> {
    match ev.eval(e, t)? {
        Value::Str(s) => Ok(s),
        _ => Err(Error::BadData("parse error: expected a string".into())),
    }
}

fn label_replace(ev: &Evaluator, c: &Call, t: i64) -> Result<Value> {
    let a = &c.args.args;
    if a.len() != 5 {
        return Err(Error::BadData(
            "parse error: label_replace takes 5 arguments".into(),
        ));
    }
    let dst = string_arg(ev, &a[1], t)?;
    let replacement = string_arg(ev, &a[2], t)?;
    let src = string_arg(ev, &a[3], t)?;
    let pattern = string_arg(ev, &a[4], t)?;
    let re = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|_| {
        Error::Execution(format!(
            "invalid regular expression in label_replace(): {pattern}"
        ))
    })?;
    if !valid_label_name(&dst) {
        return Err(Error::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let input = ev.instant(&a[0], t)?;
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

fn label_join(ev: &Evaluator, c: &Call, t: i64) -> Result<Value> {
    let a = &c.args.args;
    if a.len() < 3 {
        return Err(Error::BadData(
            "parse error: label_join takes at least 3 arguments".into(),
        ));
    }
    let dst = string_arg(ev, &a[1], t)?;
    let sep = string_arg(ev, &a[2], t)?;
    let mut srcs = Vec::new();
    for e in &a[3..] {
        let s = string_arg(ev, e, t)?;
        if !valid_label_name(&s) {
            return Err(Error::Execution(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
        srcs.push(s);
    }
    if !valid_label_name(&dst) {
        return Err(Error::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let input = ev.instant(&a[0], t)?;
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

/// A calendar part of `v` (unix seconds), in UTC.
fn date_part(part: &str, v: f64) -> f64 {
    if !v.is_finite() {
        return f64::NAN;
    }
    let secs = v as i64;
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    match part {
        "minute" => ((of_day / 60) % 60) as f64,
        "hour" => (of_day / 3600) as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_month" => d as f64,
        "day_of_year" => (days - days_from_civil(y, 1, 1) + 1) as f64,
        "days_in_month" => {
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as f64
        }
        "month" => m as f64,
        _ => y as f64,
    }
}

/// (year, month, day) of a day number since 1970-01-01 (proleptic Gregorian).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Day number since 1970-01-01 of a date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A value as Prometheus writes it: Go's shortest form, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_parts_agree_with_known_dates() {
        // 2024-02-29T13:45:00Z, a Thursday in a leap year.
        let t = 1_709_214_300.0;
        assert_eq!(date_part("year", t), 2024.0);
        assert_eq!(date_part("month", t), 2.0);
        assert_eq!(date_part("day_of_month", t), 29.0);
        assert_eq!(date_part("days_in_month", t), 29.0);
        assert_eq!(date_part("day_of_year", t), 60.0);
        assert_eq!(date_part("day_of_week", t), 4.0);
        assert_eq!(date_part("hour", t), 13.0);
        assert_eq!(date_part("minute", t), 45.0);
        assert_eq!(date_part("day_of_week", 0.0), 4.0);
    }

    #[test]
    fn bucket_quantile_interpolates_within_the_bucket() {
        let mut b = vec![(0.1, 10.0), (0.5, 30.0), (f64::INFINITY, 40.0)];
        // Rank 20 lies halfway through the 0.1..0.5 bucket.
        assert!((bucket_quantile(0.5, &mut b) - 0.3).abs() < 1e-12);
        let mut b = vec![(0.1, 10.0), (f64::INFINITY, 40.0)];
        // In the +Inf bucket: the highest finite bound.
        assert_eq!(bucket_quantile(0.99, &mut b), 0.1);
    }

    #[test]
    fn rates_extrapolate_as_prometheus_does() {
        // A counter rising 1/s, sampled every 15 s over a 60 s window ending at 60 s.
        let p: Vec<(i64, f64)> = (1..=4).map(|i| (i * 15_000, i as f64 * 15.0)).collect();
        let w = Window {
            start: 0,
            end: 60_000,
            range: 60_000,
        };
        let r = extrapolated_rate(&p, w, true, true).unwrap();
        // 45 s of samples extrapolated to the start (15 s < 1.1 × 15 s): 60 s, 1/s.
        assert!((r - 1.0).abs() < 1e-12, "{r}");
    }

    #[test]
    fn values_are_written_as_go_writes_them() {
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(-0.0), "-0");
    }
}
