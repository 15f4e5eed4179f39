//! A range query's selectors and range functions answered from rollup buckets, for every
//! step at once (the counterpart of the walks over samples in `walk.rs`).
//!
//! Promise: at a step on a bucket boundary, with range windows that are whole buckets,
//! each table holds what the raw tables hold over the same samples (see
//! `functions::rollup`); between boundaries, what they hold at the last boundary, except that a series ending with a stale marker stays visible
//! until its lookback has passed: buckets keep no stale markers.

use std::collections::HashMap;

use promql_parser::parser::{Expr, MatrixSelector, VectorSelector};

use super::super::functions::rollup::{over, BucketKernel, Buckets};
use super::super::parse::only_matrix;
use super::super::rollup::{Bucket, Fields};
use super::super::value::Window;
use super::{children, key, ms, Frame, Steps};

/// What each selector of `expr` reads of its buckets, by selector: the last sample of a
/// plain selector, what its range function needs of a matrix selector.
pub(super) fn fields(expr: &Expr, out: &mut HashMap<usize, Fields>) {
    let mut add = |vs: &VectorSelector, f: Fields| {
        let e = out.entry(key(vs)).or_default();
        *e = e.and(f);
    };
    match expr {
        Expr::VectorSelector(vs) => add(vs, Fields::LAST),
        Expr::MatrixSelector(m) => add(&m.vs, Fields::ALL),
        Expr::Call(c) => match only_matrix(c) {
            Some(m) => add(&m.vs, Fields::of_function(c.func.name)),
            None => {
                for a in &c.args.args {
                    fields(a, out);
                }
            }
        },
        other => {
            for child in children(other) {
                fields(child, out);
            }
        }
    }
}

impl Frame<'_> {
    /// A plain selector at every step: the last sample of the newest bucket ending at or
    /// before the step, if it is within the lookback of the step's bucket boundary
    /// (exactly the raw answer on a boundary; between boundaries the samples after the
    /// boundary are not seen).
    pub(super) fn rollup_selector_each(
        &self,
        vs: &VectorSelector,
        steps: Steps,
        emit: &mut impl FnMut(usize, usize, f64),
    ) {
        let width = self.resolution.ms();
        for (si, s) in self.buckets_of(vs).iter().enumerate() {
            let b = &s.buckets;
            let mut next = 0;
            for (i, t) in steps.times() {
                let r = self.reference(&vs.at, &vs.offset, t);
                if next > 0 && b[next - 1].end > r {
                    next = b.partition_point(|x| x.end <= r);
                }
                while next < b.len() && b[next].end <= r {
                    next += 1;
                }
                let Some(newest) = next.checked_sub(1).map(|n| &b[n]) else {
                    continue;
                };
                let boundary = r - r.rem_euclid(width);
                if newest.last_t >= boundary - self.lookback {
                    emit(si, i, newest.last);
                }
            }
        }
    }

    /// A range function over `m` at every step, from the buckets ending in each window
    /// and the sample on its left edge; between bucket boundaries, the window ending at
    /// the last boundary.
    pub(super) fn rollup_kernel_each(
        &self,
        m: &MatrixSelector,
        k: BucketKernel,
        steps: Steps,
        emit: &mut impl FnMut(usize, usize, f64),
    ) {
        let range = ms(m.range);
        let width = self.resolution.ms();
        for (si, s) in self.buckets_of(&m.vs).iter().enumerate() {
            let b: &[Bucket] = &s.buckets;
            let (mut lo, mut hi) = (0, 0);
            for (i, t) in steps.times() {
                // Between bucket boundaries the window is moved back to the last one, so
                // the answer is the raw one for that window (extrapolated to its edges).
                let r = self.reference(&m.vs.at, &m.vs.offset, t);
                let r = r - r.rem_euclid(width);
                if hi > 0 && b[hi - 1].end > r {
                    lo = 0;
                    hi = 0;
                }
                while hi < b.len() && b[hi].end <= r {
                    hi += 1;
                }
                while lo < hi && b[lo].end <= r - range {
                    lo += 1;
                }
                let edge = lo
                    .checked_sub(1)
                    .map(|e| &b[e])
                    .filter(|e| e.end == r - range && e.last_t == e.end)
                    .map(|e| (e.last_t, e.last));
                if lo >= hi && edge.is_none() {
                    continue;
                }
                let window = Buckets {
                    edge,
                    buckets: &b[lo..hi],
                };
                let w = Window {
                    start: r - range,
                    end: r,
                    range,
                };
                if let Some(v) = over(k, &window, w) {
                    emit(si, i, v);
                }
            }
        }
    }
}
