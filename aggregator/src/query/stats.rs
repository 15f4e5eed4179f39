//! The statistics aggregations and `*_over_time` functions share, computed as Prometheus
//! 2.42 computes them (running mean, Welford's variance, rank-interpolated quantile), so
//! `avg(x)` and `avg_over_time(x[1m])` round alike.

/// Prometheus's running mean, which survives infinities and large values.
pub fn avg(values: impl Iterator<Item = f64>) -> f64 {
    let mut m = Mean::default();
    values.for_each(|v| m.push(v));
    m.mean
}

/// A running mean, one value at a time (see [`avg`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mean {
    /// Values so far.
    pub count: f64,
    /// Their mean.
    pub mean: f64,
}

impl Mean {
    /// Takes in `v`.
    pub fn push(&mut self, v: f64) {
        self.count += 1.0;
        if self.count == 1.0 {
            self.mean = v;
            return;
        }
        if self.mean.is_infinite() {
            if v.is_infinite() && (self.mean > 0.0) == (v > 0.0) {
                return;
            }
            if !v.is_infinite() && !v.is_nan() {
                return;
            }
        }
        self.mean += v / self.count - self.mean / self.count;
    }
}

/// Population variance by Welford's method, as Prometheus computes it.
pub fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let mut w = Welford::default();
    values.for_each(|v| w.push(v));
    w.variance()
}

/// Welford's running variance, one value at a time (see [`variance`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Welford {
    count: f64,
    mean: f64,
    m2: f64,
}

impl Welford {
    /// Takes in `v`.
    pub fn push(&mut self, v: f64) {
        self.count += 1.0;
        let delta = v - self.mean;
        self.mean += delta / self.count;
        self.m2 += delta * (v - self.mean);
    }

    /// The population variance of the values so far.
    pub fn variance(&self) -> f64 {
        self.m2 / self.count
    }
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
