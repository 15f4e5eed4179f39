//! Rollups: a series' samples summarised per fixed time bucket (5 m or 1 h), so a long
//! range is answered from a few aggregates per hour instead of every sample.
//!
//! A [`Bucket`] covers `(end - resolution, end]` (left-open, so a step at `end` sees the
//! sample taken at `end`) and keeps what the range functions need to give the answer the
//! raw samples give: count, sum, min and max; the first and last sample with their
//! times; and, for counters, the sum of the values before each decrease (what `rate`
//! adds back at a reset), the number of decreases and the number of changes. Stale
//! markers are left out, as range functions leave them out.
//!
//! Promise: buckets of the same end built from time-ordered, disjoint parts of a
//! series (a day's file and the next day's, whose midnight sample belongs to the
//! previous day's last bucket) merge into exactly the bucket of the whole.

use std::sync::Arc;

use telltale_model::calendar::{HOUR_MS, MINUTE_MS};
use telltale_model::prom::is_stale;

use super::value::Labels;

/// How finely the samples a query reads are summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    /// Every sample.
    Raw,
    /// 5-minute buckets.
    FiveMinutes,
    /// 1-hour buckets.
    Hour,
}

impl Resolution {
    /// The rollup resolutions, finest first.
    pub const ROLLUPS: [Resolution; 2] = [Resolution::FiveMinutes, Resolution::Hour];

    /// The bucket width (ms); 0 for raw.
    pub fn ms(self) -> i64 {
        match self {
            Resolution::Raw => 0,
            Resolution::FiveMinutes => 5 * MINUTE_MS,
            Resolution::Hour => HOUR_MS,
        }
    }

    /// Its name in parameters, headers and paths: `raw`, `5m`, `1h`.
    pub fn name(self) -> &'static str {
        match self {
            Resolution::Raw => "raw",
            Resolution::FiveMinutes => "5m",
            Resolution::Hour => "1h",
        }
    }

    /// From its name (Thanos's `0s`, `5m`, `1h` and `raw` accepted).
    pub fn parse(s: &str) -> Option<Resolution> {
        match s {
            "raw" | "0s" | "0" => Some(Resolution::Raw),
            "5m" | "300s" => Some(Resolution::FiveMinutes),
            "1h" | "60m" | "3600s" => Some(Resolution::Hour),
            _ => None,
        }
    }
}

/// Which of a bucket's fields a query reads; the others may be left at zero by the source
/// (a file's columns not read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fields(u16);

impl Fields {
    /// `count`.
    pub const COUNT: Fields = Fields(1);
    /// `sum`.
    pub const SUM: Fields = Fields(1 << 1);
    /// `min`.
    pub const MIN: Fields = Fields(1 << 2);
    /// `max`.
    pub const MAX: Fields = Fields(1 << 3);
    /// `first_t` and `first`.
    pub const FIRST: Fields = Fields(1 << 4);
    /// `last_t` and `last` (a plain selector's value, a window's left-edge sample).
    pub const LAST: Fields = Fields(1 << 5);
    /// `drops`.
    pub const DROPS: Fields = Fields(1 << 6);
    /// `resets`.
    pub const RESETS: Fields = Fields(1 << 7);
    /// `changes`.
    pub const CHANGES: Fields = Fields(1 << 8);
    /// Every field.
    pub const ALL: Fields = Fields(0x1ff);

    /// Both sets.
    pub const fn and(self, other: Fields) -> Fields {
        Fields(self.0 | other.0)
    }

    /// Whether every field of `other` is in this set.
    pub fn has(self, other: Fields) -> bool {
        self.0 & other.0 == other.0
    }

    /// What the range function `name` reads of the buckets in its windows (with the last
    /// sample, for the window's left edge); every field for a function rollups do not
    /// answer.
    pub fn of_function(name: &str) -> Fields {
        let f = match name {
            "rate" | "increase" | "delta" => Fields::COUNT.and(Fields::FIRST).and(Fields::DROPS),
            "changes" => Fields::CHANGES.and(Fields::FIRST),
            "resets" => Fields::RESETS.and(Fields::FIRST),
            "count_over_time" | "present_over_time" => Fields::COUNT,
            "sum_over_time" => Fields::SUM,
            "avg_over_time" => Fields::SUM.and(Fields::COUNT),
            "min_over_time" => Fields::MIN,
            "max_over_time" => Fields::MAX,
            "last_over_time" => Fields::LAST,
            _ => Fields::ALL,
        };
        f.and(Fields::LAST)
    }
}

/// The samples of one series in `(end - resolution, end]`, summarised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The bucket's end (ms).
    pub end: i64,
    /// Samples (stale markers left out).
    pub count: u32,
    /// Their sum.
    pub sum: f64,
    /// Their minimum (as `min_over_time`: a NaN only if all are).
    pub min: f64,
    /// Their maximum.
    pub max: f64,
    /// The first sample's time (ms).
    pub first_t: i64,
    /// The first sample's value.
    pub first: f64,
    /// The last sample's time (ms).
    pub last_t: i64,
    /// The last sample's value.
    pub last: f64,
    /// The sum of the values just before each decrease: what `rate` adds back.
    pub drops: f64,
    /// Decreases between consecutive samples (`resets`).
    pub resets: u32,
    /// Changes of value between consecutive samples (`changes`).
    pub changes: u32,
}

/// Whether `a` then `b` is a change of value as `changes()` counts it (NaN to NaN is none).
fn changed(a: f64, b: f64) -> bool {
    !(a == b || (a.is_nan() && b.is_nan()))
}

/// Prometheus's min, which replaces a NaN.
fn min(acc: f64, v: f64) -> f64 {
    if v < acc || acc.is_nan() {
        v
    } else {
        acc
    }
}

/// Prometheus's max, which replaces a NaN.
fn max(acc: f64, v: f64) -> f64 {
    if v > acc || acc.is_nan() {
        v
    } else {
        acc
    }
}

impl Bucket {
    /// A bucket holding one sample.
    pub fn of(end: i64, t: i64, v: f64) -> Bucket {
        Bucket {
            end,
            count: 1,
            sum: v,
            min: v,
            max: v,
            first_t: t,
            first: v,
            last_t: t,
            last: v,
            drops: 0.0,
            resets: 0,
            changes: 0,
        }
    }

    /// Adds a sample later than every sample in the bucket.
    pub fn push(&mut self, t: i64, v: f64) {
        if v < self.last {
            self.drops += self.last;
            self.resets += 1;
        }
        if changed(self.last, v) {
            self.changes += 1;
        }
        self.count += 1;
        self.sum += v;
        self.min = min(self.min, v);
        self.max = max(self.max, v);
        self.last_t = t;
        self.last = v;
    }

    /// Adds the bucket of the same end summarising samples all later than this one's.
    pub fn merge(&mut self, later: &Bucket) {
        if later.first < self.last {
            self.drops += self.last;
            self.resets += 1;
        }
        if changed(self.last, later.first) {
            self.changes += 1;
        }
        self.count += later.count;
        self.sum += later.sum;
        self.min = min(self.min, later.min);
        self.max = max(self.max, later.max);
        self.drops += later.drops;
        self.resets += later.resets;
        self.changes += later.changes;
        self.last_t = later.last_t;
        self.last = later.last;
    }
}

/// The end of the bucket holding a sample at `t` (`width` > 0).
pub fn bucket_end(t: i64, width: i64) -> i64 {
    // (end - width, end]: a sample on a boundary closes the bucket ending there.
    (t + width - 1).div_euclid(width) * width
}

/// The buckets of `width` (ms) summarising time-ordered `points`, stale markers left out.
pub fn bucketize(points: &[(i64, f64)], width: i64) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for &(t, v) in points {
        if is_stale(v) {
            continue;
        }
        let end = bucket_end(t, width);
        match out.last_mut() {
            Some(b) if b.end == end => b.push(t, v),
            _ => out.push(Bucket::of(end, t, v)),
        }
    }
    out
}

/// Merges `later` (buckets of samples all later than `into`'s of the same end) into
/// `into`, both sorted by end.
pub fn merge_into(into: &mut Vec<Bucket>, mut later: Vec<Bucket>) {
    // The usual case: `later` starts after `into` ends, or with the bucket `into` ends
    // with (the one ending at midnight, split between two days).
    if let (Some(last), Some(first)) = (into.last_mut(), later.first()) {
        if first.end == last.end {
            last.merge(first);
            later.remove(0);
        }
    }
    if into
        .last()
        .is_none_or(|b| later.first().is_none_or(|l| l.end > b.end))
    {
        into.extend(later);
        return;
    }
    let mut out = Vec::with_capacity(into.len() + later.len());
    let (mut i, mut j) = (0, 0);
    while i < into.len() || j < later.len() {
        match (into.get(i), later.get(j)) {
            (Some(x), Some(y)) if x.end == y.end => {
                let mut x = *x;
                x.merge(y);
                out.push(x);
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.end > y.end => {
                out.push(*y);
                j += 1;
            }
            (Some(x), _) => {
                out.push(*x);
                i += 1;
            }
            (None, Some(y)) => {
                out.push(*y);
                j += 1;
            }
            (None, None) => break,
        }
    }
    *into = out;
}

/// A series' buckets, sorted by end.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupSeries {
    /// The series' labels.
    pub labels: Arc<Labels>,
    /// Its buckets, by end.
    pub buckets: Vec<Bucket>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boundary_sample_closes_the_bucket_ending_there() {
        assert_eq!(bucket_end(300_000, 300_000), 300_000);
        assert_eq!(bucket_end(300_001, 300_000), 600_000);
        assert_eq!(bucket_end(1, 300_000), 300_000);
        assert_eq!(bucket_end(0, 300_000), 0);
        assert_eq!(bucket_end(-1, 300_000), 0);
    }

    #[test]
    fn buckets_of_parts_merge_into_the_bucket_of_the_whole() {
        // A counter with a reset, sampled every 15 s for an hour, cut at any sample.
        let points: Vec<(i64, f64)> = (0..240)
            .map(|i| {
                let v = if i < 100 {
                    i as f64 * 3.0
                } else {
                    (i - 100) as f64
                };
                (i * 15_000 + 15_000, v)
            })
            .collect();
        for width in [300_000, 3_600_000] {
            let whole = bucketize(&points, width);
            for cut in [1, 20, 99, 100, 101, 239] {
                let mut parts = bucketize(&points[..cut], width);
                merge_into(&mut parts, bucketize(&points[cut..], width));
                assert_eq!(parts, whole, "width {width}, cut {cut}");
            }
        }
        let hour = bucketize(&points, 3_600_000);
        assert_eq!(hour.len(), 1);
        let b = hour[0];
        assert_eq!(
            (b.count, b.resets, b.first_t, b.last_t),
            (240, 1, 15_000, 3_600_000)
        );
        assert_eq!(b.drops, 99.0 * 3.0);
        assert_eq!(b.changes, 239);
    }

    #[test]
    fn stale_markers_are_left_out() {
        let stale = f64::from_bits(telltale_model::prom::STALE_NAN_BITS);
        let b = bucketize(&[(1, 1.0), (2, stale), (3, 2.0)], 10);
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].count, b[0].sum, b[0].changes), (2, 3.0, 1));
    }
}
