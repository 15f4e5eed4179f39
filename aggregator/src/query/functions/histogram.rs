//! `histogram_quantile` over classic (bucketed) histograms, as Prometheus 2.42 computes
//! it: buckets grouped by their labels without `le`, equal bounds summed, counts made
//! monotonic, linear interpolation within the bucket the rank falls in.
//!
//! Promise: a group without a `+Inf` bucket answers NaN, as Prometheus's does; samples
//! without a parsable `le` are left out.

use std::sync::Arc;

use super::super::error::Result;
use super::super::value::{Labels, Sample, Value};
use super::args::Args;

/// `histogram_quantile(φ, buckets)`.
pub fn histogram_quantile(mut args: Args) -> Result<Value> {
    let q = args.scalar(0)?;
    let input = args.vector(1)?;
    Ok(Value::Vector(quantile_of_buckets(q, input)))
}

/// `histogram_quantile` over classic buckets: samples grouped by their labels without
/// `le`; samples without a parsable `le` skipped.
fn quantile_of_buckets(q: f64, input: Vec<Sample>) -> Vec<Sample> {
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    let mut index: std::collections::HashMap<Labels, usize> = std::collections::HashMap::new();
    for s in input {
        let Some(le) = parse_go_float(s.labels.get("le")) else {
            continue;
        };
        let mut key = s.labels.without_name();
        key.set("le", "");
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push((le, s.v));
    }
    groups
        .into_iter()
        .map(|(labels, mut buckets)| Sample {
            labels: Arc::new(labels),
            v: bucket_quantile(q, &mut buckets),
        })
        .collect()
}

/// Parses a float as Go's `strconv.ParseFloat` does for bucket bounds.
fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "" => None,
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// The φ-quantile of one group's buckets, (upper bound, cumulative count) each.
fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Buckets with the same bound are summed.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(le, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    // Counts must not fall as bounds grow.
    let mut max = f64::NEG_INFINITY;
    for b in merged.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1].partition_point(|b| b.1 < rank);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantile_interpolates_within_the_bucket() {
        let mut b = vec![(0.1, 10.0), (0.5, 30.0), (f64::INFINITY, 40.0)];
        // Rank 20 lies halfway through the 0.1..0.5 bucket.
        assert!((bucket_quantile(0.5, &mut b) - 0.3).abs() < 1e-12);
        let mut b = vec![(0.1, 10.0), (f64::INFINITY, 40.0)];
        // In the +Inf bucket: the highest finite bound.
        assert_eq!(bucket_quantile(0.99, &mut b), 0.1);
    }
}
