//! Range queries computed ahead: the nodes a walk can answer (selectors and range
//! functions, see `walk.rs`) and the aggregations over them (`fused.rs`) get their
//! answers for every step at once before step-by-step evaluation starts; `eval` then
//! takes them from the table instead of computing them at each step.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use promql_parser::parser::Expr;

use super::super::intern::Hash;
use super::walk::{distinct, Walk};
use super::{children, Evaluator, Steps, Table};

impl Evaluator {
    /// Computes the answers of the selectors and range functions of a range query for
    /// every step at once, series by series: each series' points are walked once with
    /// two cursors instead of searched at every step. Nodes under a subquery (evaluated
    /// at its own times) are left to step-by-step evaluation.
    pub(crate) fn precompute(&mut self, expr: &Expr, steps: Steps) {
        self.steps = Some(steps);
        let mut tables = HashMap::default();
        let mut unique = Default::default();
        self.precompute_node(expr, steps, &mut tables, &mut unique);
        self.precomputed = RefCell::new(tables);
        self.unique = unique;
    }

    fn precompute_node(
        &self,
        expr: &Expr,
        steps: Steps,
        tables: &mut HashMap<usize, Table, Hash>,
        unique: &mut HashSet<usize, Hash>,
    ) {
        let node = expr as *const Expr as usize;
        if let Expr::Aggregate(a) = expr {
            if let Some(table) = self.fused_table(a, steps) {
                tables.insert(node, table);
                return;
            }
        }
        if let Some(w) = Walk::of(expr, self.resolution) {
            let labels = self.walk_labels(w);
            tables.insert(node, self.walk_table(w, &labels, steps));
            if distinct(w, &labels) {
                unique.insert(node);
            }
            return;
        }
        match expr {
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.precompute_node(a, steps, tables, unique);
                }
            }
            // Evaluated at the subquery's own times, step by step.
            Expr::Subquery(_) => {}
            other => {
                for child in children(other) {
                    self.precompute_node(child, steps, tables, unique);
                }
            }
        }
    }
}
