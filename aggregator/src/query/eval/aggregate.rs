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
use super::super::stats::{quantile, Mean, Welford};
use super::super::value::{Labels, Sample, Value};

/// One group of an aggregation: its labels, its running aggregate (folds), and its
/// values (quantile) or samples (topk, bottomk).
struct Group {
    labels: Arc<Labels>,
    acc: Acc,
    values: Vec<f64>,
    members: Vec<Sample>,
}

/// `a` over its evaluated `input`; `param` is its parameter's value (or why it has
/// none), for `topk`, `bottomk`, `quantile` and `count_values`.
pub fn aggregate(
    names: &Interner,
    a: &AggregateExpr,
    input: Vec<Sample>,
    param: Option<Result<Value>>,
) -> Result<Value> {
    let op = a.op.id();
    let (mut grouping, without) = grouping(a);
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
    let fold = Fold::of(op);
    let keeps_samples = matches!(op, token::T_TOPK | token::T_BOTTOMK);
    let mut groups: Vec<Group> = Vec::new();
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
            groups.push(Group {
                labels: g,
                acc: Acc::default(),
                values: Vec::new(),
                members: Vec::new(),
            });
            groups.len() - 1
        });
        let group = &mut groups[i];
        match fold {
            Some(f) => group.acc.push(f, s.v),
            None if keeps_samples => group.members.push(s),
            None => group.values.push(s.v),
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for Group {
        labels,
        acc,
        values,
        members,
    } in groups
    {
        let v = match (fold, op) {
            (Some(f), _) => acc.value(f),
            (None, token::T_QUANTILE) => {
                let mut v = values;
                quantile(param_q, &mut v)
            }
            (None, token::T_TOPK | token::T_BOTTOMK) => {
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

/// The labels `a` groups by (or, when the flag is set, without).
pub(super) fn grouping(a: &AggregateExpr) -> (Vec<String>, bool) {
    match &a.modifier {
        Some(LabelModifier::Include(l)) => (l.labels.clone(), false),
        Some(LabelModifier::Exclude(l)) => (l.labels.clone(), true),
        None => (Vec::new(), false),
    }
}

/// The parameter of `topk`, `bottomk` and `quantile`: a number.
fn scalar_param(a: &AggregateExpr, param: Option<Result<Value>>) -> Result<f64> {
    param
        .ok_or_else(|| Error::BadData(format!("parse error: {} needs a parameter", a.op)))??
        .into_scalar()
}

/// The aggregations that fold their group's values one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fold {
    Sum,
    Avg,
    Count,
    Group,
    Min,
    Max,
    StdVar,
    StdDev,
}

impl Fold {
    /// The fold of aggregation `op`, if it is one (`count_values` counts).
    pub(super) fn of(op: token::TokenId) -> Option<Fold> {
        Some(match op {
            token::T_SUM => Fold::Sum,
            token::T_AVG => Fold::Avg,
            token::T_COUNT | token::T_COUNT_VALUES => Fold::Count,
            token::T_GROUP => Fold::Group,
            token::T_MIN => Fold::Min,
            token::T_MAX => Fold::Max,
            token::T_STDVAR => Fold::StdVar,
            token::T_STDDEV => Fold::StdDev,
            _ => return None,
        })
    }
}

/// A group's running aggregate, its values taken in the order Prometheus 2.42 takes them.
#[derive(Debug, Clone, Copy, Default)]
pub(super) enum Acc {
    /// No value yet.
    #[default]
    Empty,
    /// Sum, count, min or max so far.
    Value(f64),
    /// A running mean.
    Mean(Mean),
    /// A running variance.
    Variance(Welford),
}

impl Acc {
    /// Whether no value was taken yet.
    pub(super) fn is_empty(&self) -> bool {
        matches!(self, Acc::Empty)
    }

    /// Takes in `v`.
    pub(super) fn push(&mut self, f: Fold, v: f64) {
        match (f, &mut *self) {
            (Fold::Avg, Acc::Mean(m)) => m.push(v),
            (Fold::StdVar | Fold::StdDev, Acc::Variance(w)) => w.push(v),
            (Fold::Sum, Acc::Value(a)) => *a += v,
            (Fold::Count, Acc::Value(a)) => *a += 1.0,
            (Fold::Group, Acc::Value(_)) => {}
            // NaN is replaced by any number, as Prometheus's min and max do.
            (Fold::Min, Acc::Value(a)) => {
                if *a > v || a.is_nan() {
                    *a = v
                }
            }
            (Fold::Max, Acc::Value(a)) => {
                if *a < v || a.is_nan() {
                    *a = v
                }
            }
            (_, _) => {
                *self = match f {
                    Fold::Avg => {
                        let mut m = Mean::default();
                        m.push(v);
                        Acc::Mean(m)
                    }
                    Fold::StdVar | Fold::StdDev => {
                        let mut w = Welford::default();
                        w.push(v);
                        Acc::Variance(w)
                    }
                    Fold::Count | Fold::Group => Acc::Value(1.0),
                    Fold::Sum | Fold::Min | Fold::Max => Acc::Value(v),
                }
            }
        }
    }

    /// The aggregate of the values taken (NaN if none).
    pub(super) fn value(&self, f: Fold) -> f64 {
        match (f, self) {
            (_, Acc::Empty) => f64::NAN,
            (Fold::StdDev, Acc::Variance(w)) => w.variance().sqrt(),
            (_, Acc::Variance(w)) => w.variance(),
            (_, Acc::Mean(m)) => m.mean,
            (_, Acc::Value(a)) => *a,
        }
    }
}
