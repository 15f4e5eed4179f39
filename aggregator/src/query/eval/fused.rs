//! An aggregation over a walked node (a selector or a range function, see `walk.rs`)
//! computed for every step of a block at once: each series' group is found once per
//! block instead of at every step, and each value goes straight into its group's running
//! aggregate, without a table of samples in between.
//!
//! Promise: the answer at each step is the one `aggregate` gives for that step's input
//! vector: values are folded in the same order (series order within a step, which is the
//! order a walk hands them out in), and groups come out in order of first appearance.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::{AggregateExpr, Expr};

use super::super::intern::Hash;
use super::super::value::{Labels, Sample};
use super::aggregate::{grouping, Acc, Fold};
use super::walk::{distinct, in_parts, Walk};
use super::{Evaluator, Steps, Table};

impl Evaluator {
    /// `a` at every step, when it folds (sum, avg, count, group, min, max, stddev,
    /// stdvar) a walked node whose series have distinct labels and fall into at most half
    /// as many groups (so its running aggregates take less memory than the node's table
    /// would); `None` otherwise, for step-by-step evaluation.
    pub(super) fn fused_table(&self, a: &AggregateExpr, steps: Steps) -> Option<Table> {
        if a.param.is_some() {
            return None;
        }
        let fold = Fold::of(a.op.id())?;
        let mut inner: &Expr = &a.expr;
        while let Expr::Paren(p) = inner {
            inner = &p.expr;
        }
        let w = Walk::of(inner, self.resolution)?;
        let labels = self.walk_labels(w);
        if !distinct(w, &labels) {
            // Left to the step-by-step path, which refuses the duplicates.
            return None;
        }
        let (by, without) = grouping(a);
        let group_of = |l: &Labels| if without { l.drop(&by) } else { l.keep(&by) };
        let node = a as *const AggregateExpr as usize;
        let mut index: HashMap<usize, u32, Hash> = HashMap::default();
        let mut groups: Vec<Arc<Labels>> = Vec::new();
        let group: Vec<u32> = labels
            .iter()
            .map(|l| {
                let g = self.names.group(node, l, group_of);
                *index.entry(Arc::as_ptr(&g) as usize).or_insert_with(|| {
                    groups.push(g);
                    groups.len() as u32 - 1
                })
            })
            .collect();
        if groups.len() * 2 > labels.len() {
            return None;
        }
        let width = groups.len();
        let frame = self.frame();
        // Each run of steps (see `in_parts`) folds into its own cells.
        let parts = in_parts(steps, labels.len(), |part| {
            let mut cells = vec![Acc::default(); width * part.count];
            let mut order: Vec<Vec<u32>> = vec![Vec::new(); part.count];
            frame.walk(w, part, &mut |s, i, v| {
                let g = group[s];
                let cell = &mut cells[i * width + g as usize];
                if cell.is_empty() {
                    order[i].push(g);
                }
                cell.push(fold, v);
            });
            order
                .into_iter()
                .enumerate()
                .map(|(i, gs)| {
                    gs.into_iter()
                        .map(|g| Sample {
                            labels: groups[g as usize].clone(),
                            v: cells[i * width + g as usize].value(fold),
                        })
                        .collect()
                })
                .collect::<Vec<Vec<Sample>>>()
        });
        Some(parts.into_iter().flatten().map(Some).collect())
    }
}
