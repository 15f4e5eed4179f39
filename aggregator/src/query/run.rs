//! Running a query: an instant query evaluated once, a range query in blocks of steps.
//!
//! A range query loads and evaluates one block of steps at a time (a day of steps from
//! raw samples or 5-minute rollups, a week from 1-hour ones), so what it holds
//! at once is what one block's windows read plus the answer so far, however long its
//! range. A block that would hold more than `--query-max-samples` is halved and read
//! again; a single step that would is refused, with Prometheus's words.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::Expr;
use telltale_model::calendar::DAY_MS;

use super::error::{Error, Result};
use super::eval::{Evaluator, Steps};
use super::intern::Hash;
use super::limits::Limits;
use super::plan::{self, Requested};
use super::rollup::Resolution;
use super::source::Source;
use super::value::{Labels, Series, Value};

/// A range query's answer and how it was reached.
#[derive(Debug)]
pub struct Answer {
    /// A series per label set with a point per step where it has a value.
    pub series: Vec<Series>,
    /// What the samples were read at.
    pub resolution: Resolution,
    /// Samples (or buckets) read, over all blocks.
    pub total_samples: usize,
    /// The most held at once: one block's samples plus the answer's points so far.
    pub peak_samples: usize,
}

/// Runs `expr` as an instant query at `t` (ms), from raw samples.
pub fn instant_query(src: &dyn Source, expr: &Expr, t: i64, limits: &Limits) -> Result<Value> {
    let ev = Evaluator::load(src, expr, t, t, limits)?;
    let value = ev.eval(expr, t)?;
    let series = match &value {
        Value::Vector(v) => v.len(),
        Value::Matrix(m) => m.len(),
        _ => 0,
    };
    too_many_series(series, limits)?;
    Ok(value)
}

fn too_many_series(n: usize, limits: &Limits) -> Result<()> {
    if n > limits.max_series {
        return Err(Error::Execution(format!(
            "the answer would hold {n} series, more than the limit of {}; narrow the selectors or aggregate",
            limits.max_series
        )));
    }
    Ok(())
}

/// The span of evaluation times one block starts with at `resolution`.
fn block_span(resolution: Resolution) -> i64 {
    match resolution {
        Resolution::Raw => DAY_MS,
        // A bucket takes five times a sample's memory, and there are 20 to 240 times fewer.
        Resolution::FiveMinutes => DAY_MS,
        Resolution::Hour => 7 * DAY_MS,
    }
}

/// Runs `expr` as a range query over `[start, end]` at `step` (ms), at the resolution
/// `requested` allows (see [`plan::resolution`]).
pub fn range_query(
    src: &dyn Source,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
    limits: &Limits,
    requested: Requested,
) -> Result<Answer> {
    let resolution = plan::resolution(expr, start, step, requested);
    let mut ev = Evaluator::new(start, end, limits, resolution);
    let count = ((end - start) / step + 1) as usize;
    let mut block = ((block_span(resolution) / step) as usize).max(1);
    // Every step hashes each output series' labels again: a fast hasher.
    let mut by_labels: HashMap<Arc<Labels>, Vec<(i64, f64)>, Hash> = HashMap::default();
    let (mut points, mut total, mut peak) = (0usize, 0usize, 0usize);
    let mut done = 0;
    while done < count {
        ev.check_deadline()?;
        let n = block.min(count - done);
        let from = start + done as i64 * step;
        let to = from + (n as i64 - 1) * step;
        let budget = limits.max_samples.saturating_sub(points);
        let loaded = match ev.load_times(src, expr, from, to, budget) {
            Err(Error::TooManySamples) if n > 1 => {
                block = n / 2;
                continue;
            }
            other => other?,
        };
        total += loaded;
        ev.precompute(
            expr,
            Steps {
                start: from,
                step,
                count: n,
            },
        );
        for i in 0..n {
            ev.check_deadline()?;
            let t = from + i as i64 * step;
            match ev.eval(expr, t)? {
                Value::Scalar(v) => {
                    points += 1;
                    by_labels
                        .entry(Arc::new(Labels::default()))
                        .or_default()
                        .push((t, v))
                }
                Value::Vector(samples) => {
                    points += samples.len();
                    for s in samples {
                        by_labels.entry(s.labels).or_default().push((t, s.v));
                    }
                }
                other => {
                    return Err(Error::BadData(format!(
                        "invalid expression type {:?} for range query, must be Scalar or instant Vector",
                        other.type_name()
                    )))
                }
            }
            too_many_series(by_labels.len(), limits)?;
            if loaded + points > limits.max_samples {
                return Err(Error::TooManySamples);
            }
        }
        peak = peak.max(loaded + points);
        done += n;
    }
    let mut series: Vec<Series> = by_labels
        .into_iter()
        .map(|(labels, points)| Series { labels, points })
        .collect();
    series.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
    Ok(Answer {
        series,
        resolution,
        total_samples: total,
        peak_samples: peak,
    })
}
