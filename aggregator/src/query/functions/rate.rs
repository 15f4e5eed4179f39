//! The maths of the rate family over one series' points in a window: `rate`, `increase`
//! and `delta` extrapolated to the window's edges, `irate` and `idelta` from the last two
//! points, least squares for `deriv` and `predict_linear`, and `holt_winters`' double
//! exponential smoothing.
//!
//! Promise: Prometheus 2.42's `promql/functions.go` is the reference for every edge
//! (extrapolation limits, counter resets, Kahan-compensated sums); points are never
//! stale markers (the evaluator leaves those out of windows).

use super::super::value::Window;

/// `rate`, `increase` and `delta`: the change over the points, extrapolated to the
/// window's edges (at most half an average interval beyond the points, and for counters
/// not below zero).
pub fn extrapolated_rate(p: &[(i64, f64)], w: Window, counter: bool, rate: bool) -> Option<f64> {
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
    Some(extrapolate(first, last, p.len(), result, w, counter, rate))
}

/// The change `result` between the first and last of `count` points in window `w`,
/// extrapolated to the window's edges as [`extrapolated_rate`] does; per second when
/// `rate`. Rollups give their first and last samples, count and change here.
pub fn extrapolate(
    first: (i64, f64),
    last: (i64, f64),
    count: usize,
    mut result: f64,
    w: Window,
    counter: bool,
    rate: bool,
) -> f64 {
    let (range_start, range_end, range) = (w.start, w.end, w.range);
    let mut to_start = (first.0 - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let average = sampled / (count - 1) as f64;
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
    // One factor, divided by the range for `rate`, then one multiplication: the order of
    // Prometheus 2.42's operations (since native histograms, which it scales by the same
    // factor), so answers agree to the last bit.
    let mut factor = interval / sampled;
    if rate {
        factor /= range as f64 / 1000.0;
    }
    result *= factor;
    result
}

/// `irate` and `idelta`: from the last two points.
pub fn instant_value(p: &[(i64, f64)], rate: bool) -> Option<f64> {
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
pub fn linear_regression(p: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
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

/// `holt_winters`: the smoothed value at the last point, with smoothing factor `sf` and
/// trend factor `tf`.
pub fn smooth(p: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
