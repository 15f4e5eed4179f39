//! The statistics aggregations and `*_over_time` functions share, computed as Prometheus
//! 2.42 computes them (running mean, Welford's variance, rank-interpolated quantile), so
//! `avg(x)` and `avg_over_time(x[1m])` round alike.

/// Prometheus's running mean, which survives infinities and large values.
pub fn avg(values: impl Iterator<Item = f64>) -> f64 {
    let mut mean = 0.0;
    let mut count = 0.0;
    for v in values {
        count += 1.0;
        if count == 1.0 {
            mean = v;
            continue;
        }
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        mean += v / count - mean / count;
    }
    mean
}

/// Population variance by Welford's method, as Prometheus computes it.
pub fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for v in values {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        m2 += delta * (v - mean);
    }
    m2 / count
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
