//! The bounds one query runs within, as Prometheus's flags of the same names set them.
//!
//! Promise: the defaults are Prometheus 2.42's (2 min timeout, 50 M samples, 5 min
//! lookback, 11,000 points a series, 1 min subquery step).

use std::time::Duration;

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
