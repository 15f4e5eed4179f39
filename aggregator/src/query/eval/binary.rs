//! Binary operators, as Prometheus 2.42 applies them: arithmetic and comparisons between
//! scalars and vectors, vector matching (`on`, `ignoring`, `group_left`,
//! `group_right`) and the set operators `and`, `or`, `unless`.
//!
//! Promise: takes both sides already evaluated and answers with Prometheus's values,
//! labels and error messages (duplicate match groups, many-to-many matches).

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::token::{self, TokenType};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::super::error::{Error, Result};
use super::super::intern::Interner;
use super::super::value::{no_duplicates, Labels, Sample, Value, NAME};

/// `b` applied to its evaluated sides.
pub fn binary(names: &Interner, b: &BinaryExpr, lhs: Value, rhs: Value) -> Result<Value> {
    let op = b.op.id();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = elem(op, l, r)?;
            Ok(Value::Scalar(if is_comparison(op) {
                if keep {
                    1.0
                } else {
                    0.0
                }
            } else {
                v
            }))
        }
        (Value::Vector(l), Value::Scalar(r)) => {
            let out = vector_scalar(names, op, l, r, false, return_bool)?;
            no_duplicates(&out)?;
            Ok(Value::Vector(out))
        }
        (Value::Scalar(l), Value::Vector(r)) => {
            let out = vector_scalar(names, op, r, l, true, return_bool)?;
            no_duplicates(&out)?;
            Ok(Value::Vector(out))
        }
        (Value::Vector(l), Value::Vector(r)) => {
            let out = vector_vector(b, l, r, return_bool)?;
            no_duplicates(&out)?;
            Ok(Value::Vector(out))
        }
        (l, r) => Err(Error::Execution(format!(
            "binary expression between {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

/// Two vectors matched by their labels (`on`/`ignoring`, `group_left`/`group_right`).
fn vector_vector(
    b: &BinaryExpr,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    return_bool: bool,
) -> Result<Vec<Sample>> {
    let op = b.op.id();
    let (card, matching) = match &b.modifier {
        Some(m) => (m.card.clone(), m.matching.clone()),
        None => (VectorMatchCardinality::OneToOne, None),
    };
    let (on, names): (bool, Vec<String>) = match &matching {
        Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
        None => (false, Vec::new()),
    };
    let sig = |l: &Labels| -> Labels {
        if on {
            l.keep(&names)
        } else {
            l.drop(&names)
        }
    };
    if matches!(op, token::T_LAND | token::T_LOR | token::T_LUNLESS) {
        return Ok(set_operation(op, lhs, rhs, sig));
    }
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let (many, one, swapped, include) = match &card {
        VectorMatchCardinality::OneToMany(l) => (rhs, lhs, true, l.labels.clone()),
        VectorMatchCardinality::ManyToOne(l) => (lhs, rhs, false, l.labels.clone()),
        _ => (lhs, rhs, false, Vec::new()),
    };
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut one_side: HashMap<Labels, &Sample> = HashMap::new();
    for s in &one {
        let key = sig(&s.labels);
        if let Some(dup) = one_side.get(&key) {
            let side = if swapped { "left" } else { "right" };
            return Err(Error::Execution(format!(
                "found duplicate series for the match group {key} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                s.labels, dup.labels
            )));
        }
        one_side.insert(key, s);
    }
    let mut matched: HashMap<Labels, Vec<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for s in &many {
        let key = sig(&s.labels);
        let Some(o) = one_side.get(&key) else {
            continue;
        };
        let (l, r) = if swapped { (o.v, s.v) } else { (s.v, o.v) };
        let (mut v, keep) = elem(op, l, r)?;
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut labels = (*s.labels).clone();
        if should_drop_name(op) || return_bool {
            labels.set(NAME, "");
        }
        if one_to_one {
            labels = if on {
                labels.keep(&names)
            } else {
                let mut kept = labels.clone();
                for n in &names {
                    kept.set(n, "");
                }
                kept
            };
        }
        for n in &include {
            let value = o.labels.get(n).to_owned();
            labels.set(n, &value);
        }
        let seen = matched.entry(key).or_default();
        if one_to_one {
            if !seen.is_empty() {
                return Err(Error::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
        } else if seen.contains(&labels) {
            return Err(Error::Execution(format!(
                "multiple matches for matching labels in many-to-one matching: {labels}"
            )));
        }
        seen.push(labels.clone());
        out.push(Sample {
            labels: Arc::new(labels),
            v,
        });
    }
    Ok(out)
}

/// `and`, `or` and `unless`: samples kept by whether their match group is on the other
/// side.
fn set_operation(
    op: token::TokenId,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    sig: impl Fn(&Labels) -> Labels,
) -> Vec<Sample> {
    match op {
        token::T_LAND => {
            if lhs.is_empty() || rhs.is_empty() {
                return Vec::new();
            }
            let right: std::collections::HashSet<Labels> =
                rhs.iter().map(|s| sig(&s.labels)).collect();
            lhs.into_iter()
                .filter(|s| right.contains(&sig(&s.labels)))
                .collect()
        }
        token::T_LOR => {
            let left: std::collections::HashSet<Labels> =
                lhs.iter().map(|s| sig(&s.labels)).collect();
            let mut out = lhs;
            out.extend(rhs.into_iter().filter(|s| !left.contains(&sig(&s.labels))));
            out
        }
        _ => {
            if lhs.is_empty() || rhs.is_empty() {
                return lhs;
            }
            let right: std::collections::HashSet<Labels> =
                rhs.iter().map(|s| sig(&s.labels)).collect();
            lhs.into_iter()
                .filter(|s| !right.contains(&sig(&s.labels)))
                .collect()
        }
    }
}

/// A vector and a scalar, `swapped` when the scalar is on the left.
fn vector_scalar(
    names: &Interner,
    op: token::TokenId,
    vector: Vec<Sample>,
    scalar: f64,
    swapped: bool,
    return_bool: bool,
) -> Result<Vec<Sample>> {
    let drop = should_drop_name(op) || return_bool;
    let mut out = Vec::with_capacity(vector.len());
    for s in vector {
        let (l, r) = if swapped {
            (scalar, s.v)
        } else {
            (s.v, scalar)
        };
        let (mut v, keep) = elem(op, l, r)?;
        // A comparison keeps the vector's value, whichever side it is on.
        if is_comparison(op) && swapped {
            v = r;
        }
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let labels = if drop {
            names.unnamed(&s.labels)
        } else {
            s.labels
        };
        out.push(Sample { labels, v });
    }
    Ok(out)
}

/// `lhs op rhs`: the value and, for comparisons, whether it holds.
fn elem(op: token::TokenId, l: f64, r: f64) -> Result<(f64, bool)> {
    Ok(match op {
        token::T_ADD => (l + r, true),
        token::T_SUB => (l - r, true),
        token::T_MUL => (l * r, true),
        token::T_DIV => (l / r, true),
        token::T_MOD => (l % r, true),
        token::T_POW => (l.powf(r), true),
        token::T_ATAN2 => (l.atan2(r), true),
        token::T_EQLC => (l, l == r),
        token::T_NEQ => (l, l != r),
        token::T_GTR => (l, l > r),
        token::T_LSS => (l, l < r),
        token::T_GTE => (l, l >= r),
        token::T_LTE => (l, l <= r),
        other => {
            return Err(Error::Execution(format!(
                "operator {} is not defined between these operands",
                TokenType::new(other)
            )))
        }
    })
}

fn is_comparison(op: token::TokenId) -> bool {
    matches!(
        op,
        token::T_EQLC | token::T_NEQ | token::T_GTR | token::T_LSS | token::T_GTE | token::T_LTE
    )
}

/// Arithmetic drops the metric name; `atan2` does not in Prometheus 2.42 (fixed later).
fn should_drop_name(op: token::TokenId) -> bool {
    matches!(
        op,
        token::T_ADD | token::T_SUB | token::T_MUL | token::T_DIV | token::T_MOD | token::T_POW
    )
}
