//! The values PromQL computes with: a series' labels, stored series, the samples of an
//! instant vector, what an expression evaluates to, and a range argument's window.
//!
//! Promise: `Labels` are always sorted by name with no empty values, so equal label sets
//! compare, hash and print alike wherever they were built.

use std::sync::Arc;

use super::error::{Error, Result};

/// A series' labels, `__name__` included, sorted by name; no empty values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(pub Vec<(String, String)>);

impl Labels {
    /// From pairs in any order (empty values left out).
    pub fn new(mut pairs: Vec<(String, String)>) -> Labels {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort_unstable();
        pairs.dedup_by(|a, b| a.0 == b.0);
        Labels(pairs)
    }

    /// The value of `name`, empty when absent (as PromQL treats it).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map_or("", |i| self.0[i].1.as_str())
    }

    /// Sets `name` to `value`, or removes it when `value` is empty.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].1 = value.to_owned(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (name.to_owned(), value.to_owned())),
        }
    }

    /// Without `__name__`.
    pub fn without_name(&self) -> Labels {
        Labels(self.0.iter().filter(|(n, _)| n != NAME).cloned().collect())
    }

    /// Only the labels named in `names`.
    pub fn keep(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(n, _)| names.contains(n))
                .cloned()
                .collect(),
        )
    }

    /// Without the labels named in `names`, and without `__name__`.
    pub fn drop(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(n, _)| n != NAME && !names.contains(n))
                .cloned()
                .collect(),
        )
    }

    /// Whether `__name__` is set.
    pub fn has_name(&self) -> bool {
        !self.get(NAME).is_empty()
    }
}

impl std::fmt::Display for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// The metric name label.
pub const NAME: &str = telltale_model::prom::METRIC_NAME;

/// A stored series: its labels and points (timestamp ms, value) in time order, stale
/// markers included.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels.
    pub labels: Arc<Labels>,
    /// Its points.
    pub points: Vec<(i64, f64)>,
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its labels.
    pub labels: Arc<Labels>,
    /// Its value.
    pub v: f64,
}

/// What an expression evaluates to at one time.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Scalar(f64),
    /// A string.
    Str(String),
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector.
    Matrix(Vec<Series>),
}

impl Value {
    /// The type's name as PromQL's messages spell it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::Str(_) => "string",
            Value::Vector(_) => "instant vector",
            Value::Matrix(_) => "range vector",
        }
    }

    /// The number of a scalar; an error naming what it is otherwise.
    pub fn into_scalar(self) -> Result<f64> {
        match self {
            Value::Scalar(v) => Ok(v),
            other => Err(Error::Execution(format!(
                "expected a scalar, got {}",
                other.type_name()
            ))),
        }
    }

    /// The samples of an instant vector; an error naming what it is otherwise.
    pub fn into_vector(self) -> Result<Vec<Sample>> {
        match self {
            Value::Vector(v) => Ok(v),
            other => Err(Error::Execution(format!(
                "expected an instant vector, got {}",
                other.type_name()
            ))),
        }
    }
}

/// A range vector's window: where it starts and ends and its width (ms).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The window's start (ms).
    pub start: i64,
    /// The window's end (ms).
    pub end: i64,
    /// Its width (ms).
    pub range: i64,
}

/// A range argument's series and the window they were read over (ms).
pub struct RangeArg {
    /// The series and their points in the window.
    pub series: Vec<Series>,
    /// The window's start (ms).
    pub start: i64,
    /// The window's end (ms).
    pub end: i64,
    /// Its width (ms).
    pub range: i64,
}

impl RangeArg {
    /// The window the series were read over.
    pub fn window(&self) -> Window {
        Window {
            start: self.start,
            end: self.end,
            range: self.range,
        }
    }
}

/// Prometheus's check that an operation did not make two samples alike.
pub fn no_duplicates(samples: &[Sample]) -> Result<()> {
    if samples.len() < 2 {
        return Ok(());
    }
    let mut seen: std::collections::HashSet<&Labels, foldhash::fast::RandomState> =
        std::collections::HashSet::with_capacity_and_hasher(samples.len(), Default::default());
    for s in samples {
        if !seen.insert(&*s.labels) {
            return Err(Error::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(())
}
