//! Aggregations (`sum`, `avg`, `count`, `group`, `min`, `max`, `stddev`, `stdvar`,
//! `quantile`, `topk`, `bottomk`, `count_values`) over an evaluated vector, grouped
//! `by` or `without` labels as Prometheus 2.42 groups them.
//!
//! Promise: groups come out in order of first appearance, as Prometheus emits them, and
//! each group's labels are one `Arc` for the whole query.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::token;
use promql_parser::parser::{AggregateExpr, LabelModifier};
use telltale_model::prom::is_label_name;

use super::super::error::{Error, Result};
use super::super::intern::{Hash, Interner};
use super::super::number::format_value;
use super::super::stats::{avg, quantile, variance};
use super::super::value::{Labels, Sample, Value};

/// `a` over its evaluated `input`; `param` is its parameter's value (or why it has
/// none), for `topk`, `bottomk`, `quantile` and `count_values`.
pub fn aggregate(
    names: &Interner,
    a: &AggregateExpr,
    input: Vec<Sample>,
    param: Option<Result<Value>>,
) -> Result<Value> {
    let op = a.op.id();
    let (mut grouping, without): (Vec<String>, bool) = match &a.modifier {
        Some(LabelModifier::Include(l)) => (l.labels.clone(), false),
        Some(LabelModifier::Exclude(l)) => (l.labels.clone(), true),
        None => (Vec::new(), false),
    };
    let mut param_k = 0usize;
    let mut param_q = 0.0;
    let mut value_label = String::new();
    match op {
        token::T_TOPK | token::T_BOTTOMK => {
            let p = scalar_param(a, param)?;
            if !(-9.223_372_036_854_776e18..=9.223_372_036_854_776e18).contains(&p) {
                return Err(Error::Execution(format!(
                    "Scalar value {p} overflows int64"
                )));
            }
            let k = p as i64;
            if k < 1 {
                return Ok(Value::Vector(Vec::new()));
            }
            param_k = k as usize;
        }
        token::T_QUANTILE => {
            param_q = scalar_param(a, param)?;
        }
        token::T_COUNT_VALUES => match param {
            Some(Ok(Value::Str(s))) => {
                if !is_label_name(&s) {
                    return Err(Error::Execution(format!("invalid label name {s:?}")));
                }
                // The value label is part of each group.
                if !without {
                    grouping.push(s.clone());
                }
                value_label = s;
            }
            _ => return Err(Error::Execution("count_values needs a label name".into())),
        },
        _ => {}
    }
    let grouping = grouping;
    let group_of = |l: &Labels| -> Labels {
        if without {
            l.drop(&grouping)
        } else {
            l.keep(&grouping)
        }
    };
    // Groups in order of first appearance, as Prometheus emits them.
    let node = a as *const AggregateExpr as usize;
    let mut index: HashMap<usize, usize, Hash> = HashMap::default();
    // Per group: its labels, its values, and (topk, bottomk) its samples.
    let keeps_samples = matches!(op, token::T_TOPK | token::T_BOTTOMK);
    let mut groups: Vec<(Arc<Labels>, Vec<f64>, Vec<Sample>)> = Vec::new();
    for s in input {
        let s = if op == token::T_COUNT_VALUES {
            let mut l = (*s.labels).clone();
            l.set(&value_label, &format_value(s.v));
            Sample {
                labels: Arc::new(l),
                v: s.v,
            }
        } else {
            s
        };
        // count_values makes new label sets each time: they are not remembered.
        let g = if op == token::T_COUNT_VALUES {
            let g = group_of(&s.labels);
            names.intern(node, g)
        } else {
            names.group(node, &s.labels, group_of)
        };
        let i = *index.entry(Arc::as_ptr(&g) as usize).or_insert_with(|| {
            groups.push((g, Vec::new(), Vec::new()));
            groups.len() - 1
        });
        if keeps_samples {
            groups[i].2.push(s);
        } else {
            groups[i].1.push(s.v);
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (labels, values, members) in groups {
        let count = values.len();
        let values = values.into_iter();
        let v = match op {
            token::T_SUM => values.sum(),
            token::T_AVG => avg(values),
            token::T_COUNT | token::T_COUNT_VALUES => count as f64,
            token::T_GROUP => 1.0,
            token::T_MAX => values.fold(
                f64::NAN,
                |acc, v| {
                    if acc < v || acc.is_nan() {
                        v
                    } else {
                        acc
                    }
                },
            ),
            token::T_MIN => values.fold(
                f64::NAN,
                |acc, v| {
                    if acc > v || acc.is_nan() {
                        v
                    } else {
                        acc
                    }
                },
            ),
            token::T_STDVAR => variance(values),
            token::T_STDDEV => variance(values).sqrt(),
            token::T_QUANTILE => {
                let mut v: Vec<f64> = values.collect();
                quantile(param_q, &mut v)
            }
            token::T_TOPK | token::T_BOTTOMK => {
                let mut m = members;
                let top = op == token::T_TOPK;
                // NaN sorts last either way: topk and bottomk prefer numbers.
                let order = |a: &Sample, b: &Sample| match (a.v.is_nan(), b.v.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if top => b.v.total_cmp(&a.v),
                    _ => a.v.total_cmp(&b.v),
                };
                if param_k < m.len() {
                    m.select_nth_unstable_by(param_k - 1, order);
                    m.truncate(param_k);
                }
                m.sort_by(order);
                out.extend(m);
                continue;
            }
            _ => {
                return Err(Error::Execution(format!(
                    "aggregation {} is not supported",
                    a.op
                )))
            }
        };
        out.push(Sample { labels, v });
    }
    Ok(Value::Vector(out))
}

/// The parameter of `topk`, `bottomk` and `quantile`: a number.
fn scalar_param(a: &AggregateExpr, param: Option<Result<Value>>) -> Result<f64> {
    param
        .ok_or_else(|| Error::BadData(format!("parse error: {} needs a parameter", a.op)))??
        .into_scalar()
}
