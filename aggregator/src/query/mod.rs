//! PromQL over the store, answered through the Prometheus HTTP API.
//!
//! A query is parsed by `promql-parser`, checked against what Prometheus 2.42 accepts,
//! and evaluated by [`eval`]: every selector's series are loaded once for the whole query
//! (files by day and row-group statistics, the head merged in, see [`select`]), then the
//! expression is evaluated at each step with Prometheus 2.42's semantics (closed lookback
//! and range windows, stale markers, extrapolated rates). [`api`] maps it onto the HTTP
//! endpoints with Prometheus's JSON shapes and error types.
//!
//! Promise: on the same samples, every answer equals Prometheus 2.42's within float
//! rounding; `tests/promql.rs` holds us to it with a corpus run against both.

pub mod api;
pub mod eval;
mod functions;

use std::sync::Arc;
use std::time::Duration;

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
pub const NAME: &str = "__name__";

/// A stored series: its labels and points (timestamp ms, value) in time order, stale
/// markers included.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels.
    pub labels: Arc<Labels>,
    /// Its points.
    pub points: Vec<(i64, f64)>,
}

/// The bits of Prometheus's stale marker, a NaN written when a series disappears.
pub const STALE_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is a stale marker.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_BITS
}

/// Where series come from.
pub trait Source: Sync {
    /// Every series matching all `matchers` (missing labels match as empty) with its
    /// points in `[mint, maxt]` (ms, inclusive); series without a point there left out.
    fn select(
        &self,
        matchers: &[promql_parser::label::Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, Error>;
}

/// Bounds on one query, as Prometheus's flags of the same names.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `--query.timeout`.
    pub timeout: Duration,
    /// `--query.max-samples`: points loaded at once.
    pub max_samples: usize,
    /// `--query.lookback-delta`.
    pub lookback: Duration,
    /// Points one series of a range query may have (Prometheus's 11,000).
    pub max_points: i64,
    /// Steps of subqueries without their own (the rule evaluation interval, 1 m).
    pub default_step: Duration,
    /// Series one answer may hold.
    pub max_series: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            lookback: Duration::from_secs(300),
            max_points: 11_000,
            default_step: Duration::from_secs(60),
            max_series: 1_000_000,
        }
    }
}

/// Why a query failed; each maps onto Prometheus's `errorType`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query or a parameter is malformed (400, `bad_data`); not retryable.
    #[error("{0}")]
    BadData(String),
    /// The query is well formed but cannot be evaluated (422, `execution`).
    #[error("{0}")]
    Execution(String),
    /// The query ran past its timeout (503, `timeout`); retryable.
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// Reading the store failed (500, `internal`); retryable.
    #[error("reading the store: {0}")]
    Storage(Box<dyn std::error::Error + Send + Sync>),
}

/// `Result` of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
