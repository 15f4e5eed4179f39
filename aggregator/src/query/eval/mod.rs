//! The evaluator: Prometheus 2.42's semantics, one evaluation time at a time.
//!
//! Every selector's series are loaded once for the times evaluated (the union of the time
//! ranges it is read over, subqueries and `@` included; a range query loads block by
//! block, see `query::run`), then the expression is evaluated at each step, from raw
//! samples or, where the planner chose a rollup, from buckets (`rollup.rs`). A range query's answer at a step is, by definition, the instant query's
//! at that time; evaluating step by step keeps the two the same by construction.
//!
//! This file walks the expression, reads selectors and evaluates each call's arguments;
//! binary operators (`binary.rs`), aggregations (`aggregate.rs`) and PromQL functions
//! (`query/functions/`) are given their operands evaluated and never call back.

mod aggregate;
mod binary;
mod fused;
mod precompute;
mod rollup;
mod walk;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AtModifier, Call, Expr, Offset, VectorSelector};
use telltale_model::prom::is_stale;

use super::error::{Error, Result};
use super::functions;
use super::functions::args::{Arg, Args, Ctx};
use super::intern::{Hash, Interner};
use super::limits::Limits;
use super::rollup::{Fields, Resolution, RollupSeries};
use super::source::{matchers, Source};
use super::value::{no_duplicates, Labels, RangeArg, Sample, Series, NAME};

use super::parse::offset_ms;
pub use super::parse::parse;
#[cfg(test)]
pub(crate) use super::parse::FUNCTIONS_2_42;
pub use super::value::Value;

/// Milliseconds since the epoch of a `SystemTime` (negative before it).
fn millis(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// A selector's key in the loaded data: its address in the parsed expression.
fn key(v: &VectorSelector) -> usize {
    v as *const VectorSelector as usize
}

/// Evaluates expressions over the loaded series.
pub struct Evaluator {
    data: HashMap<usize, Vec<Series>>,
    /// With a rollup resolution: each selector's buckets instead of its samples.
    rollups: HashMap<usize, Vec<RollupSeries>>,
    resolution: Resolution,
    /// The query's start and end (ms), what `@ start()` and `@ end()` mean.
    start: i64,
    end: i64,
    lookback: i64,
    default_step: i64,
    deadline: Instant,
    /// The query's derived label sets (without `__name__`, aggregation groups).
    names: Interner,
    /// A range query's steps, and the answers of selectors and range functions computed
    /// for all of them at once, series by series (see [`Evaluator::precompute`]).
    steps: Option<Steps>,
    precomputed: RefCell<HashMap<usize, Table, Hash>>,
    /// Precomputed nodes whose series' labels are all distinct.
    unique: std::collections::HashSet<usize, Hash>,
}

/// What walks over the loaded data read (see `walk.rs`): the samples or buckets and the
/// query's times. Plain references, so the threads sharing out a range's steps can all
/// hold it (the evaluator's caches of derived label sets cannot be shared).
#[derive(Clone, Copy)]
struct Frame<'a> {
    data: &'a HashMap<usize, Vec<Series>>,
    rollups: &'a HashMap<usize, Vec<RollupSeries>>,
    resolution: Resolution,
    start: i64,
    end: i64,
    lookback: i64,
}

impl<'a> Frame<'a> {
    fn at_ms(&self, at: &AtModifier) -> i64 {
        match at {
            AtModifier::Start => self.start,
            AtModifier::End => self.end,
            AtModifier::At(t) => millis(*t),
        }
    }

    /// The time a selector or subquery reads at when evaluated at `t`.
    fn reference(&self, at: &Option<AtModifier>, offset: &Option<Offset>, t: i64) -> i64 {
        at.as_ref().map_or(t, |a| self.at_ms(a)) - offset_ms(offset)
    }

    /// The samples loaded for `vs`.
    fn series(&self, vs: &VectorSelector) -> &'a [Series] {
        self.data.get(&key(vs)).map_or(&[], Vec::as_slice)
    }

    /// The buckets loaded for `vs` (at a rollup resolution).
    fn buckets_of(&self, vs: &VectorSelector) -> &'a [RollupSeries] {
        self.rollups.get(&key(vs)).map_or(&[], Vec::as_slice)
    }
}

/// A node's samples at each step of a range query (taken as they are used).
type Table = Vec<Option<Vec<Sample>>>;

/// A range query's evaluation times.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Steps {
    /// The first evaluation time (ms).
    pub start: i64,
    /// Between evaluation times (ms).
    pub step: i64,
    /// How many.
    pub count: usize,
}

impl Steps {
    fn times(self) -> impl Iterator<Item = (usize, i64)> {
        (0..self.count).map(move |i| (i, self.start + i as i64 * self.step))
    }

    fn index(self, t: i64) -> Option<usize> {
        let d = t - self.start;
        (d >= 0 && d % self.step == 0 && ((d / self.step) as usize) < self.count)
            .then_some((d / self.step) as usize)
    }
}

impl Evaluator {
    /// Loads what `expr` reads when evaluated at each time in `[start, end]`, from raw
    /// samples.
    pub fn load(
        src: &dyn Source,
        expr: &Expr,
        start: i64,
        end: i64,
        limits: &Limits,
    ) -> Result<Evaluator> {
        let mut ev = Evaluator::new(start, end, limits, Resolution::Raw);
        ev.load_times(src, expr, start, end, limits.max_samples)?;
        Ok(ev)
    }

    /// An evaluator of a query over `[start, end]` (what `@ start()` and `@ end()` mean)
    /// reading at `resolution`, with nothing loaded yet.
    pub(crate) fn new(start: i64, end: i64, limits: &Limits, resolution: Resolution) -> Evaluator {
        Evaluator {
            data: HashMap::new(),
            rollups: HashMap::new(),
            resolution,
            start,
            end,
            lookback: ms(limits.lookback),
            default_step: ms(limits.default_step).max(1),
            deadline: Instant::now() + limits.timeout,
            names: Interner::default(),
            steps: None,
            precomputed: RefCell::default(),
            unique: Default::default(),
        }
    }

    /// Loads, in place of what was loaded before, what `expr` reads when evaluated at
    /// each time in `[from, to]`; returns the samples (or buckets) loaded. Fails with
    /// [`Error::TooManySamples`] past `max_samples`.
    pub(crate) fn load_times(
        &mut self,
        src: &dyn Source,
        expr: &Expr,
        from: i64,
        to: i64,
        max_samples: usize,
    ) -> Result<usize> {
        self.data.clear();
        self.rollups.clear();
        let mut wanted: HashMap<usize, (&VectorSelector, i64, i64)> = HashMap::new();
        self.ranges(expr, from, to, &mut wanted);
        let mut fields = HashMap::new();
        if self.resolution != Resolution::Raw {
            rollup::fields(expr, &mut fields);
        }
        let mut loaded = 0usize;
        for (k, (vs, mint, maxt)) in wanted {
            if self.resolution == Resolution::Raw {
                let series = src.select(&matchers(vs), mint, maxt)?;
                loaded += series.iter().map(|s| s.points.len()).sum::<usize>();
                self.data.insert(k, series);
            } else {
                let f = fields.get(&k).copied().unwrap_or(Fields::ALL);
                let series = src.select_rollup(&matchers(vs), mint, maxt, self.resolution, f)?;
                loaded += series.iter().map(|s| s.buckets.len()).sum::<usize>();
                self.rollups.insert(k, series);
            }
            if loaded > max_samples {
                self.data.clear();
                self.rollups.clear();
                return Err(Error::TooManySamples);
            }
            if Instant::now() > self.deadline {
                return Err(Error::Timeout("query preparation"));
            }
        }
        Ok(loaded)
    }

    /// The loaded data and the query's times, shareable among threads.
    fn frame(&self) -> Frame<'_> {
        Frame {
            data: &self.data,
            rollups: &self.rollups,
            resolution: self.resolution,
            start: self.start,
            end: self.end,
            lookback: self.lookback,
        }
    }

    fn at_ms(&self, at: &AtModifier) -> i64 {
        self.frame().at_ms(at)
    }

    /// The time a selector or subquery reads at when evaluated at `t`.
    fn reference(&self, at: &Option<AtModifier>, offset: &Option<Offset>, t: i64) -> i64 {
        self.frame().reference(at, offset, t)
    }

    /// The span each selector is read over when `e` is evaluated over `[s, e]`.
    fn ranges<'e>(
        &self,
        expr: &'e Expr,
        s: i64,
        e: i64,
        out: &mut HashMap<usize, (&'e VectorSelector, i64, i64)>,
    ) {
        let mut add = |vs: &'e VectorSelector, before: i64| {
            let (lo, hi) = match &vs.at {
                Some(a) => (self.at_ms(a), self.at_ms(a)),
                None => (s, e),
            };
            let off = offset_ms(&vs.offset);
            let (mint, maxt) = (lo - off - before, hi - off);
            let entry = out.entry(key(vs)).or_insert((vs, mint, maxt));
            entry.1 = entry.1.min(mint);
            entry.2 = entry.2.max(maxt);
        };
        match expr {
            // A rollup's newest bucket may end up to a bucket before the evaluation time.
            Expr::VectorSelector(vs) => add(vs, self.lookback + self.resolution.ms()),
            Expr::MatrixSelector(m) => add(&m.vs, ms(m.range) + self.resolution.ms()),
            Expr::Subquery(sq) => {
                let (lo, hi) = match &sq.at {
                    Some(a) => (self.at_ms(a), self.at_ms(a)),
                    None => (s, e),
                };
                let off = offset_ms(&sq.offset);
                self.ranges(&sq.expr, lo - off - ms(sq.range), hi - off, out);
            }
            other => {
                for child in children(other) {
                    self.ranges(child, s, e, out);
                }
            }
        }
    }

    /// Evaluates `expr` at `t` (ms).
    pub fn eval(&self, expr: &Expr, t: i64) -> Result<Value> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(samples) => Ok(Value::Vector(
                    samples
                        .into_iter()
                        .map(|s| Sample {
                            labels: self.names.unnamed(&s.labels),
                            v: -s.v,
                        })
                        .collect(),
                )),
                other => Err(Error::Execution(format!(
                    "unary minus on a {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(
                self.take_precomputed(expr, t)
                    .unwrap_or_else(|| self.vector(vs, t)),
            )),
            Expr::MatrixSelector(m) => {
                let (series, _, _) = self.matrix(&m.vs, ms(m.range), t);
                Ok(Value::Matrix(series))
            }
            Expr::Subquery(_) => Ok(Value::Matrix(self.range_arg(expr, t)?.series)),
            Expr::Aggregate(a) => {
                if let Some(samples) = self.take_precomputed(expr, t) {
                    return Ok(Value::Vector(samples));
                }
                let input = self.instant(&a.expr, t)?;
                let param = a.param.as_deref().map(|p| self.eval(p, t));
                aggregate::aggregate(&self.names, a, input, param)
            }
            Expr::Binary(b) => {
                let lhs = self.eval(&b.lhs, t)?;
                let rhs = self.eval(&b.rhs, t)?;
                binary::binary(&self.names, b, lhs, rhs)
            }
            Expr::Call(c) => {
                if let Some(samples) = self.take_precomputed(expr, t) {
                    // A table whose series all have distinct labels cannot repeat one.
                    if !self.unique.contains(&(expr as *const Expr as usize)) {
                        no_duplicates(&samples)?;
                    }
                    return Ok(Value::Vector(samples));
                }
                let v = self.call(c, t)?;
                if let Value::Vector(samples) = &v {
                    no_duplicates(samples)?;
                }
                Ok(v)
            }
            Expr::Extension(_) => Err(Error::Execution("unsupported expression".into())),
        }
    }

    /// Fails when the deadline has passed.
    pub fn check_deadline(&self) -> Result<()> {
        if Instant::now() > self.deadline {
            return Err(Error::Timeout("query execution"));
        }
        Ok(())
    }

    /// A node's answer at `t` if it was computed ahead for the range query's steps.
    fn take_precomputed(&self, node: &Expr, t: i64) -> Option<Vec<Sample>> {
        let i = self.steps?.index(t)?;
        let mut map = self.precomputed.borrow_mut();
        map.get_mut(&(node as *const Expr as usize))?
            .get_mut(i)?
            .take()
    }

    /// The labels a range function's answer for a series has: the series' own when the
    /// function keeps the name, else without `__name__` (made once per label set).
    fn kernel_labels(&self, labels: &Arc<Labels>, keeps_name: bool) -> Arc<Labels> {
        if keeps_name {
            labels.clone()
        } else {
            self.names.unnamed(labels)
        }
    }

    fn series(&self, vs: &VectorSelector) -> &[Series] {
        self.frame().series(vs)
    }

    /// The labels of the series loaded for `vs`, raw or rolled up.
    fn labels_of<'a>(
        &'a self,
        vs: &VectorSelector,
    ) -> Box<dyn Iterator<Item = &'a Arc<Labels>> + 'a> {
        if self.resolution == Resolution::Raw {
            Box::new(self.series(vs).iter().map(|s| &s.labels))
        } else {
            Box::new(
                self.rollups
                    .get(&key(vs))
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .map(|s| &s.labels),
            )
        }
    }

    /// The instant vector `vs` selects at `t`: each series' newest point in the lookback
    /// window `[ref - 5m, ref]`, unless it is a stale marker.
    fn vector(&self, vs: &VectorSelector, t: i64) -> Vec<Sample> {
        self.vector_with_times(vs, t)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// [`Self::vector`] with each sample's own timestamp.
    fn vector_with_times(&self, vs: &VectorSelector, t: i64) -> Vec<(Sample, i64)> {
        let r = self.reference(&vs.at, &vs.offset, t);
        self.series(vs)
            .iter()
            .filter_map(|s| {
                let i = s.points.partition_point(|p| p.0 <= r);
                let (pt, v) = *s.points.get(i.checked_sub(1)?)?;
                (pt >= r - self.lookback && !is_stale(v)).then(|| {
                    (
                        Sample {
                            labels: s.labels.clone(),
                            v,
                        },
                        pt,
                    )
                })
            })
            .collect()
    }

    /// The range vector `vs[range]` at `t`: points in `[ref - range, ref]`, stale markers
    /// left out; with the window's start and end.
    fn matrix(&self, vs: &VectorSelector, range: i64, t: i64) -> (Vec<Series>, i64, i64) {
        let r = self.reference(&vs.at, &vs.offset, t);
        let series = self
            .series(vs)
            .iter()
            .filter_map(|s| {
                let lo = s.points.partition_point(|p| p.0 < r - range);
                let hi = s.points.partition_point(|p| p.0 <= r);
                let points: Vec<(i64, f64)> = s.points[lo..hi]
                    .iter()
                    .copied()
                    .filter(|p| !is_stale(p.1))
                    .collect();
                (!points.is_empty()).then(|| Series {
                    labels: s.labels.clone(),
                    points,
                })
            })
            .collect();
        (series, r - range, r)
    }

    /// A range argument (a matrix selector or a subquery, maybe in parentheses) at `t`.
    fn range_arg(&self, expr: &Expr, t: i64) -> Result<RangeArg> {
        match expr {
            Expr::Paren(p) => self.range_arg(&p.expr, t),
            Expr::MatrixSelector(m) => {
                let (series, start, end) = self.matrix(&m.vs, ms(m.range), t);
                Ok(RangeArg {
                    series,
                    start,
                    end,
                    range: ms(m.range),
                })
            }
            Expr::Subquery(sq) => {
                let r = self.reference(&sq.at, &sq.offset, t);
                let range = ms(sq.range);
                let step = sq.step.map_or(self.default_step, ms).max(1);
                let mut first = (r - range).div_euclid(step) * step;
                if first < r - range {
                    first += step;
                }
                let mut by_labels: HashMap<Arc<Labels>, Vec<(i64, f64)>> = HashMap::new();
                let mut ts = first;
                while ts <= r {
                    self.check_deadline()?;
                    match self.eval(&sq.expr, ts)? {
                        Value::Vector(samples) => {
                            for s in samples {
                                by_labels.entry(s.labels).or_default().push((ts, s.v));
                            }
                        }
                        Value::Scalar(v) => {
                            by_labels
                                .entry(Arc::new(Labels::default()))
                                .or_default()
                                .push((ts, v));
                        }
                        other => {
                            return Err(Error::Execution(format!(
                                "subquery over a {}",
                                other.type_name()
                            )))
                        }
                    }
                    ts += step;
                }
                let mut series: Vec<Series> = by_labels
                    .into_iter()
                    .map(|(labels, points)| Series { labels, points })
                    .collect();
                series.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
                Ok(RangeArg {
                    series,
                    start: r - range,
                    end: r,
                    range,
                })
            }
            other => Err(Error::Execution(format!(
                "expected a range vector, got {}",
                other
            ))),
        }
    }

    /// A scalar argument at `t`.
    fn scalar(&self, expr: &Expr, t: i64) -> Result<f64> {
        self.eval(expr, t)?.into_scalar()
    }

    /// An instant vector argument at `t`.
    fn instant(&self, expr: &Expr, t: i64) -> Result<Vec<Sample>> {
        self.eval(expr, t)?.into_vector()
    }

    /// A string argument at `t`.
    fn string(&self, expr: &Expr, t: i64) -> Result<String> {
        match self.eval(expr, t)? {
            Value::Str(s) => Ok(s),
            _ => Err(Error::BadData("parse error: expected a string".into())),
        }
    }

    /// `timestamp()`'s argument at `t`: a selector's samples with their own times,
    /// anything else's with `t`.
    fn timed(&self, expr: &Expr, t: i64) -> Result<Vec<(Sample, i64)>> {
        let mut inner = expr;
        while let Expr::Paren(p) = inner {
            inner = &p.expr;
        }
        Ok(match inner {
            Expr::VectorSelector(vs) => self.vector_with_times(vs, t),
            _ => self
                .instant(inner, t)?
                .into_iter()
                .map(|s| (s, t))
                .collect(),
        })
    }

    /// The call `c` at `t`: its arguments evaluated as the function declares them, then
    /// the function over their values.
    fn call(&self, c: &Call, t: i64) -> Result<Value> {
        let f = &c.func;
        let mut values = Vec::with_capacity(c.args.args.len());
        for (i, e) in c.args.args.iter().enumerate() {
            values.push(if f.name == "timestamp" {
                Arg::Timed(self.timed(e, t)?)
            } else {
                match f.arg_types.get(i).or(f.arg_types.last()) {
                    Some(ValueType::Scalar) => Arg::Scalar(self.scalar(e, t)?),
                    Some(ValueType::String) => Arg::Str(self.string(e, t)?),
                    Some(ValueType::Matrix) => Arg::Range(self.range_arg(e, t)?),
                    _ => Arg::Vector(self.instant(e, t)?),
                }
            });
        }
        // Only an empty argument makes `absent` answer, with the labels its selector fixes.
        let empty = match values.first() {
            Some(Arg::Vector(v)) => v.is_empty(),
            Some(Arg::Range(r)) => r.series.is_empty(),
            _ => false,
        };
        let absent = match (f.name, c.args.args.first()) {
            ("absent" | "absent_over_time", Some(e)) if empty => absent_labels(e),
            _ => Labels::default(),
        };
        let cx = Ctx {
            t,
            names: &self.names,
        };
        functions::call(f.name, Args::new(f.name, values, absent), &cx)
    }
}

/// The labels `absent(arg)` answers with: those the argument's selector fixes with an
/// equality matcher (each name once; a name also matched otherwise left out).
fn absent_labels(arg: &Expr) -> Labels {
    let mut inner = arg;
    while let Expr::Paren(p) = inner {
        inner = &p.expr;
    }
    let vs = match inner {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(m) => Some(&m.vs),
        _ => None,
    };
    let mut labels = Labels::default();
    if let Some(vs) = vs {
        let mut empty = Vec::new();
        for m in &vs.matchers.matchers {
            if m.name == NAME {
                continue;
            }
            if m.op == promql_parser::label::MatchOp::Equal && labels.get(&m.name).is_empty() {
                labels.set(&m.name, &m.value);
            } else {
                empty.push(m.name.clone());
            }
        }
        for n in empty {
            labels.set(&n, "");
        }
    }
    labels
}

/// The expressions `e` is made of.
fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Aggregate(a) => std::iter::once(&*a.expr)
            .chain(a.param.as_deref())
            .collect(),
        Expr::Unary(u) => vec![&u.expr],
        Expr::Binary(b) => vec![&b.lhs, &b.rhs],
        Expr::Paren(p) => vec![&p.expr],
        Expr::Subquery(sq) => vec![&sq.expr],
        Expr::Call(c) => c.args.args.iter().map(|a| &**a).collect(),
        Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => Vec::new(),
    }
}
