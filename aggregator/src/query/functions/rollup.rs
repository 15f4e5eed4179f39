//! The range functions that rollups can answer, computed from the buckets in a window
//! instead of its samples: `rate`, `increase`, `delta`, `changes`, `resets` and the
//! `count`, `sum`, `avg`, `min`, `max`, `last` and `present` `_over_time` functions.
//!
//! Promise: a window's buckets merged in order are the summary of the window's samples
//! (see `query::rollup`), so each function here answers what its raw kernel answers over
//! those samples, up to the order of floating-point additions. Functions that need every
//! sample (quantiles, variance, regression, the last two samples) have no entry and are
//! answered from raw data.

use super::super::rollup::Bucket;
use super::super::value::Window;
use super::rate::extrapolate;

/// A window's samples summarised: the buckets ending in `(start, end]` and, as
/// Prometheus 2.42's windows are closed on the left, a sample exactly at `start` (the
/// last of the bucket ending there).
pub struct Buckets<'a> {
    /// The sample at the window's start, if there is one.
    pub edge: Option<(i64, f64)>,
    /// The buckets ending in the window.
    pub buckets: &'a [Bucket],
}

impl Buckets<'_> {
    /// Everything in the window as one bucket; `None` when it is empty.
    fn merged(&self) -> Option<Bucket> {
        let mut parts = self.buckets.iter();
        let mut all = match self.edge {
            Some((t, v)) => Bucket::of(t, t, v),
            None => *parts.next()?,
        };
        for b in parts {
            all.merge(b);
        }
        Some(all)
    }
}

/// What a function computes from a window's summary (`None`: no sample).
pub type BucketKernel = fn(&Bucket, Window) -> Option<f64>;

/// The kernel over buckets of a function whose only argument is a range vector, if
/// rollups can answer it exactly.
pub fn bucket_kernel(name: &str) -> Option<BucketKernel> {
    let k: BucketKernel = match name {
        "rate" => |b, w| change(b, w, true, true),
        "increase" => |b, w| change(b, w, true, false),
        "delta" => |b, w| change(b, w, false, false),
        "changes" => |b, _| Some(b.changes as f64),
        "resets" => |b, _| Some(b.resets as f64),
        "count_over_time" => |b, _| Some(b.count as f64),
        "sum_over_time" => |b, _| Some(b.sum),
        "avg_over_time" => |b, _| Some(b.sum / b.count as f64),
        "min_over_time" => |b, _| Some(b.min),
        "max_over_time" => |b, _| Some(b.max),
        "last_over_time" => |b, _| Some(b.last),
        "present_over_time" => |_, _| Some(1.0),
        _ => return None,
    };
    Some(k)
}

/// Runs `k` over a window's buckets.
pub fn over(k: BucketKernel, window: &Buckets<'_>, w: Window) -> Option<f64> {
    k(&window.merged()?, w)
}

/// `rate`, `increase` and `delta` from a summary, as `extrapolated_rate` computes them
/// from its samples.
fn change(b: &Bucket, w: Window, counter: bool, rate: bool) -> Option<f64> {
    if b.count < 2 {
        return None;
    }
    let mut result = b.last - b.first;
    if counter {
        result += b.drops;
    }
    Some(extrapolate(
        (b.first_t, b.first),
        (b.last_t, b.last),
        b.count as usize,
        result,
        w,
        counter,
        rate,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::super::rollup::bucketize;
    use super::super::range::kernel;
    use super::*;

    /// Every function here answers over buckets what its raw kernel answers over the
    /// samples, for windows aligned to the buckets, a sample on the window's left edge
    /// included.
    #[test]
    fn bucket_kernels_answer_what_raw_kernels_answer() {
        // A counter with resets and a gauge, every 15 s for 6 h, on the minute.
        let counter: Vec<(i64, f64)> = (0..1440)
            .map(|i| (i * 15_000, ((i * 7) % 500) as f64 + (i / 500) as f64 * 0.5))
            .collect();
        let gauge: Vec<(i64, f64)> = (0..1440)
            .map(|i| (i * 15_000, ((i as f64) / 10.0).sin() * 100.0))
            .collect();
        let names = [
            "rate",
            "increase",
            "delta",
            "changes",
            "resets",
            "count_over_time",
            "sum_over_time",
            "avg_over_time",
            "min_over_time",
            "max_over_time",
            "last_over_time",
            "present_over_time",
        ];
        for points in [&counter, &gauge] {
            for width in [300_000i64, 3_600_000] {
                let buckets = bucketize(points, width);
                for range in [width, 2 * width, 3_600_000] {
                    if range % width != 0 {
                        continue;
                    }
                    let mut end = range;
                    while end <= 6 * 3_600_000 {
                        let w = Window {
                            start: end - range,
                            end,
                            range,
                        };
                        let raw: Vec<(i64, f64)> = points
                            .iter()
                            .copied()
                            .filter(|p| p.0 >= w.start && p.0 <= w.end)
                            .collect();
                        let inside: Vec<Bucket> = buckets
                            .iter()
                            .copied()
                            .filter(|b| b.end > w.start && b.end <= w.end)
                            .collect();
                        let edge = buckets
                            .iter()
                            .find(|b| b.end == w.start && b.last_t == w.start)
                            .map(|b| (b.last_t, b.last));
                        let window = Buckets {
                            edge,
                            buckets: &inside,
                        };
                        for name in names {
                            let want = if raw.is_empty() {
                                None
                            } else {
                                (kernel(name).unwrap().0)(&raw, w)
                            };
                            let got = over(bucket_kernel(name).unwrap(), &window, w);
                            match (want, got) {
                                (Some(a), Some(b)) => assert!(
                                    (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                                    "{name} width {width} range {range} end {end}: {a} vs {b}"
                                ),
                                (a, b) => assert_eq!(a, b, "{name} at {end}"),
                            }
                        }
                        end += width;
                    }
                }
            }
        }
    }
}
