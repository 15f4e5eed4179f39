//! The nodes of a range query whose values at every step are computed ahead, series by
//! series: plain selectors and range functions over a matrix selector, from raw samples
//! or rollup buckets. A walk hands out `(series, step, value)` in series order and,
//! within a series, in step order, which is the order the step-by-step evaluator sees
//! them in; what is made of them (a table of samples per step, or an aggregation's
//! groups, see `fused.rs`) is up to the caller.

use std::sync::Arc;

use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, MatrixSelector, VectorSelector};
use telltale_model::prom::is_stale;

use super::super::functions::range::{kernel, Kernel};
use super::super::functions::rollup::{bucket_kernel, BucketKernel};
use super::super::parse::only_matrix;
use super::super::rollup::Resolution;
use super::super::value::{Labels, Sample, Window, NAME};
use super::{ms, Evaluator, Frame, Steps, Table};

/// A node walked series by series.
#[derive(Clone, Copy)]
pub(super) enum Walk<'e> {
    /// A plain selector.
    Selector(&'e VectorSelector),
    /// A range function over raw samples; whether its answer keeps the metric name.
    Kernel(&'e MatrixSelector, Kernel, bool),
    /// A range function over rollup buckets; whether its answer keeps the metric name.
    Buckets(&'e MatrixSelector, BucketKernel, bool),
}

impl<'e> Walk<'e> {
    /// How `expr` is walked at `resolution`, if it can be.
    pub(super) fn of(expr: &'e Expr, resolution: Resolution) -> Option<Walk<'e>> {
        match expr {
            Expr::VectorSelector(vs) => Some(Walk::Selector(vs)),
            Expr::Call(c) => {
                let m = only_matrix(c)?;
                let (k, keeps_name) = kernel(c.func.name)?;
                if resolution == Resolution::Raw {
                    Some(Walk::Kernel(m, k, keeps_name))
                } else {
                    // The planner chose rollups only where every range function has a
                    // kernel over buckets.
                    Some(Walk::Buckets(m, bucket_kernel(c.func.name)?, keeps_name))
                }
            }
            _ => None,
        }
    }
}

impl Evaluator {
    /// The labels of each series a walk hands out, by index.
    pub(super) fn walk_labels(&self, w: Walk<'_>) -> Vec<Arc<Labels>> {
        match w {
            Walk::Selector(vs) => self.labels_of(vs).cloned().collect(),
            Walk::Kernel(m, _, keeps) | Walk::Buckets(m, _, keeps) => self
                .labels_of(&m.vs)
                .map(|l| self.kernel_labels(l, keeps))
                .collect(),
        }
    }

    /// The walk's values as a table: each step's samples, in series order, labelled
    /// with `labels` (its [`Self::walk_labels`]). The steps are shared out among the cores
    /// in runs (see [`in_parts`]).
    pub(super) fn walk_table(&self, w: Walk<'_>, labels: &[Arc<Labels>], steps: Steps) -> Table {
        let frame = self.frame();
        in_parts(steps, labels.len(), |part| {
            let mut table: Vec<Vec<Sample>> = vec![Vec::new(); part.count];
            frame.walk(w, part, &mut |s, i, v| {
                table[i].push(Sample {
                    labels: labels[s].clone(),
                    v,
                })
            });
            table
        })
        .into_iter()
        .flatten()
        .map(Some)
        .collect()
    }
}

/// Whether the labels a walk hands out (`labels`, its [`Evaluator::walk_labels`]) are all
/// distinct: a range function's answer drops `__name__`, so two series may collide,
/// unless the selector names one metric (series of one name that differ still differ
/// without it).
pub(super) fn distinct(w: Walk<'_>, labels: &[Arc<Labels>]) -> bool {
    match w {
        Walk::Selector(_) => true,
        Walk::Kernel(_, _, true) | Walk::Buckets(_, _, true) => true,
        Walk::Kernel(m, _, false) | Walk::Buckets(m, _, false) if one_name(&m.vs) => true,
        _ => {
            let mut seen = std::collections::HashSet::new();
            labels.iter().all(|l| seen.insert(l))
        }
    }
}

/// Whether `vs` selects series of a single metric name.
fn one_name(vs: &VectorSelector) -> bool {
    let m = &vs.matchers;
    vs.name.is_some()
        || (m.or_matchers.is_empty()
            && m.matchers
                .iter()
                .any(|m| m.name == NAME && m.op == MatchOp::Equal))
}

/// The (series × steps) a run of steps gets at least before a walk is shared out: a
/// thread costs tens of microseconds, a series at one step well under one.
const MIN_WORK_PER_PART: usize = 1 << 16;

/// `f(part)` for runs of consecutive steps of `steps`, one per core when `series` times
/// the steps is worth it, results in step order. Each run walks every series over its
/// own steps, so every step sees its series in the same order as on one thread, and
/// answers are identical.
pub(super) fn in_parts<T: Send>(
    steps: Steps,
    series: usize,
    f: impl Fn(Steps) -> T + Sync,
) -> Vec<T> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parts = cores
        .min(steps.count)
        .min(series.saturating_mul(steps.count) / MIN_WORK_PER_PART)
        .max(1);
    if parts == 1 {
        return vec![f(steps)];
    }
    let per = steps.count.div_ceil(parts);
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = (0..steps.count)
            .step_by(per)
            .map(|first| {
                let part = Steps {
                    start: steps.start + first as i64 * steps.step,
                    step: steps.step,
                    count: per.min(steps.count - first),
                };
                scope.spawn(move || f(part))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

impl Frame<'_> {
    /// Hands out the walk's values at every step, as `emit(series, step, value)`.
    pub(super) fn walk(&self, w: Walk<'_>, steps: Steps, emit: &mut impl FnMut(usize, usize, f64)) {
        match (w, self.resolution) {
            (Walk::Selector(vs), Resolution::Raw) => self.selector_each(vs, steps, emit),
            (Walk::Selector(vs), _) => self.rollup_selector_each(vs, steps, emit),
            (Walk::Kernel(m, k, _), _) => self.kernel_each(m, k, steps, emit),
            (Walk::Buckets(m, k, _), _) => self.rollup_kernel_each(m, k, steps, emit),
        }
    }

    /// `Evaluator::vector` at every step.
    fn selector_each(
        &self,
        vs: &VectorSelector,
        steps: Steps,
        emit: &mut impl FnMut(usize, usize, f64),
    ) {
        for (si, s) in self.series(vs).iter().enumerate() {
            let mut next = 0;
            for (i, t) in steps.times() {
                let r = self.reference(&vs.at, &vs.offset, t);
                if next > 0 && s.points[next - 1].0 > r {
                    // Not monotonic (never for these nodes); search afresh.
                    next = s.points.partition_point(|p| p.0 <= r);
                }
                while next < s.points.len() && s.points[next].0 <= r {
                    next += 1;
                }
                if next == 0 {
                    continue;
                }
                let (pt, v) = s.points[next - 1];
                if pt >= r - self.lookback && !is_stale(v) {
                    emit(si, i, v);
                }
            }
        }
    }

    /// A range function over `m` at every step.
    fn kernel_each(
        &self,
        m: &MatrixSelector,
        k: Kernel,
        steps: Steps,
        emit: &mut impl FnMut(usize, usize, f64),
    ) {
        let range = ms(m.range);
        for (si, s) in self.series(&m.vs).iter().enumerate() {
            let points: std::borrow::Cow<'_, [(i64, f64)]> =
                if s.points.iter().any(|p| is_stale(p.1)) {
                    s.points
                        .iter()
                        .copied()
                        .filter(|p| !is_stale(p.1))
                        .collect()
                } else {
                    std::borrow::Cow::Borrowed(&s.points)
                };
            let (mut lo, mut hi) = (0, 0);
            for (i, t) in steps.times() {
                let r = self.reference(&m.vs.at, &m.vs.offset, t);
                if hi > 0 && points[hi - 1].0 > r {
                    lo = 0;
                    hi = 0;
                }
                while hi < points.len() && points[hi].0 <= r {
                    hi += 1;
                }
                while lo < hi && points[lo].0 < r - range {
                    lo += 1;
                }
                if lo >= hi {
                    continue;
                }
                let w = Window {
                    start: r - range,
                    end: r,
                    range,
                };
                if let Some(v) = k(&points[lo..hi], w) {
                    emit(si, i, v);
                }
            }
        }
    }
}
