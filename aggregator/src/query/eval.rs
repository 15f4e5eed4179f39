//! The evaluator: Prometheus 2.42's semantics, one evaluation time at a time.
//!
//! Every selector's series are loaded once for the whole query (the union of the time
//! ranges it is read over, subqueries and `@` included), then the expression is evaluated
//! at each step. A range query's answer at a step is, by definition, the instant query's
//! at that time; evaluating step by step keeps the two the same by construction.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use promql_parser::label::Matcher;
use promql_parser::parser::token::{self, TokenType};
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Expr, LabelModifier, Offset, VectorMatchCardinality,
    VectorSelector,
};

use super::{functions, is_stale, Error, Labels, Limits, Result, Series, Source, NAME};

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its labels.
    pub labels: Arc<Labels>,
    /// Its value.
    pub v: f64,
}

/// What an expression evaluates to at one time.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Scalar(f64),
    /// A string.
    Str(String),
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector.
    Matrix(Vec<Series>),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::Str(_) => "string",
            Value::Vector(_) => "instant vector",
            Value::Matrix(_) => "range vector",
        }
    }
}

/// Functions Prometheus 2.42 has (the parser knows later ones too).
pub(crate) const FUNCTIONS_2_42: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Parses `query`, refusing what Prometheus 2.42 would (later syntax and functions).
pub fn parse(query: &str) -> Result<Expr> {
    if query.trim().is_empty() {
        return Err(Error::BadData(
            "1:1: parse error: no expression found in input".into(),
        ));
    }
    register_2_42_functions();
    let expr = promql_parser::parser::parse(query).map_err(|e| {
        Error::BadData(match syntax_position(query, &e) {
            Some((line, col, what)) => format!("{line}:{col}: parse error: {what}"),
            None => format!("parse error: {e}"),
        })
    })?;
    check(&expr)?;
    Ok(expr)
}

/// Teaches the parser the 2.42 functions it no longer knows (`holt_winters` became
/// `double_exponential_smoothing` in Prometheus 3).
fn register_2_42_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use promql_parser::parser::{value::ValueType, Function};
        let holt_winters = Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        if let Err(e) = promql_parser::parser::register_extra_functions(vec![holt_winters]) {
            tracing::error!(error = %e, "holt_winters could not be registered with the parser");
        }
    });
}

/// Whether a parser message is about syntax (rather than types or values).
fn is_syntax_error(message: &str) -> bool {
    message == "invalid promql query"
        || message.starts_with("unexpected")
        || message.starts_with("unclosed")
        || message.starts_with("unterminated")
}

/// Where a syntax error is, as Prometheus reports it (line, column, what): the first token
/// after which no completion of the query parses. The parser says only that the query is
/// invalid, so this tries short completions of each prefix: a best effort that finds the
/// offending token for the usual mistakes (a missing operand, bracket, label value, unit).
fn syntax_position(query: &str, message: &str) -> Option<(usize, usize, String)> {
    if !is_syntax_error(message) {
        return None;
    }
    const COMPLETIONS: &[&str] = &[
        "", " 0", " x", "\"v\"", "=\"v\"", "m", " 5m", " (a)", " (a) (x)", " (x)", "1, x",
    ];
    let viable = |prefix: &str| {
        let closers = closers(prefix);
        COMPLETIONS.iter().any(|c| {
            [
                format!("{prefix}{c}{closers}"),
                format!("{prefix}{closers}{c}"),
            ]
            .iter()
            .any(|q| match promql_parser::parser::parse(q) {
                Ok(_) => true,
                Err(e) => !is_syntax_error(&e),
            })
        })
    };
    let at = |offset: usize| {
        let before = &query[..offset];
        let line = before.matches('\n').count() + 1;
        let col = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, col)
    };
    for (start, end) in tokens(query) {
        if !viable(&query[..end]) {
            let (line, col) = at(start);
            let what = if message == "invalid promql query" {
                format!("unexpected {:?}", &query[start..end])
            } else {
                message.to_owned()
            };
            return Some((line, col, what));
        }
    }
    let (line, col) = at(query.trim_end().len());
    let what = if message == "invalid promql query" {
        "unexpected end of input".to_owned()
    } else {
        message.to_owned()
    };
    Some((line, col, what))
}

/// The brackets `prefix` leaves open, closed in order (strings skipped).
fn closers(prefix: &str) -> String {
    let mut open = Vec::new();
    let mut quote = None;
    let mut escaped = false;
    for c in prefix.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '(' => open.push(')'),
                '{' => open.push('}'),
                '[' => open.push(']'),
                ')' | '}' | ']' => {
                    open.pop();
                }
                _ => {}
            },
        }
    }
    let mut out: String = quote.map(String::from).unwrap_or_default();
    out.extend(open.iter().rev());
    out
}

/// Approximate token spans (byte offsets): words, strings, runs of operator characters,
/// single brackets and commas.
fn tokens(query: &str) -> Vec<(usize, usize)> {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == ':' || c == '.';
    let op = |c: char| "+-*/%^=!<>~@".contains(c);
    let mut out = Vec::new();
    let mut chars = query.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        let mut end = start + c.len_utf8();
        if c == '"' || c == '\'' || c == '`' {
            let mut escaped = false;
            for (i, d) in chars.by_ref() {
                end = i + d.len_utf8();
                if escaped {
                    escaped = false;
                } else if d == '\\' && c != '`' {
                    escaped = true;
                } else if d == c {
                    break;
                }
            }
        } else if word(c) || op(c) {
            let same = if word(c) { word } else { op };
            while let Some(&(i, d)) = chars.peek() {
                if !same(d) {
                    break;
                }
                end = i + d.len_utf8();
                chars.next();
            }
        }
        out.push((start, end));
    }
    out
}

fn check(e: &Expr) -> Result<()> {
    let bad = |m: String| Err(Error::BadData(format!("parse error: {m}")));
    match e {
        Expr::Aggregate(a) => {
            if matches!(a.op.id(), token::T_LIMITK | token::T_LIMIT_RATIO) {
                return bad(format!("unknown aggregation {}", a.op));
            }
            check(&a.expr)?;
            if let Some(p) = &a.param {
                check(p)?;
            }
        }
        Expr::Unary(u) => check(&u.expr)?,
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    return bad("fill modifiers are not supported".into());
                }
            }
            check(&b.lhs)?;
            check(&b.rhs)?;
        }
        Expr::Paren(p) => check(&p.expr)?,
        Expr::Subquery(s) => check(&s.expr)?,
        Expr::VectorSelector(v) => check_selector(v)?,
        Expr::MatrixSelector(m) => check_selector(&m.vs)?,
        Expr::Call(c) => {
            if !FUNCTIONS_2_42.contains(&c.func.name) {
                return bad(format!("unknown function with name {:?}", c.func.name));
            }
            for a in &c.args.args {
                check(a)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        Expr::Extension(_) => return bad("unsupported expression".into()),
    }
    Ok(())
}

fn check_selector(v: &VectorSelector) -> Result<()> {
    if !v.matchers.or_matchers.is_empty() {
        return Err(Error::BadData(
            "parse error: unexpected \"or\" in label matching".into(),
        ));
    }
    Ok(())
}

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

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => ms(*d),
        Some(Offset::Neg(d)) => -ms(*d),
        None => 0,
    }
}

/// A selector's key in the loaded data: its address in the parsed expression.
fn key(v: &VectorSelector) -> usize {
    v as *const VectorSelector as usize
}

/// The matchers of a selector, its name as a `__name__` matcher.
pub(crate) fn matchers(v: &VectorSelector) -> Vec<Matcher> {
    let mut m = v.matchers.matchers.clone();
    if let Some(name) = &v.name {
        m.push(Matcher::new(
            promql_parser::label::MatchOp::Equal,
            NAME,
            name,
        ));
    }
    m
}

/// Evaluates expressions over the loaded series.
pub struct Evaluator {
    data: HashMap<usize, Vec<Series>>,
    /// The query's start and end (ms), what `@ start()` and `@ end()` mean.
    start: i64,
    end: i64,
    lookback: i64,
    default_step: i64,
    deadline: Instant,
    /// Labels without `__name__`, by the address of the labels they came from (the
    /// originals are held, so an address is not reused while it is a key).
    unnamed: RefCell<HashMap<usize, Derived, Hash>>,
    /// Each aggregation's group of an input label set: (aggregation, labels address) ->
    /// (the labels, held; the group's labels, one `Arc` per group).
    groups: RefCell<HashMap<(usize, usize), Derived, Hash>>,
    interned: RefCell<HashMap<(usize, Labels), Arc<Labels>, Hash>>,
    /// A range query's steps, and the answers of selectors and range functions computed
    /// for all of them at once, series by series (see [`Evaluator::precompute`]).
    steps: Option<Steps>,
    precomputed: RefCell<HashMap<usize, Table, Hash>>,
    /// Precomputed nodes whose series' labels are all distinct.
    unique: std::collections::HashSet<usize, Hash>,
}

/// Label sets derived from another: (the original, held so its address stays its own;
/// the derived one).
type Derived = (Arc<Labels>, Arc<Labels>);

/// A node's samples at each step of a range query (taken as they are used).
type Table = Vec<Option<Vec<Sample>>>;

/// The hasher of the evaluator's maps.
type Hash = foldhash::fast::RandomState;

/// A range query's evaluation times.
#[derive(Debug, Clone, Copy)]
struct Steps {
    start: i64,
    step: i64,
    count: usize,
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
    /// Loads what `expr` reads when evaluated at each time in `[start, end]`.
    pub fn load(
        src: &dyn Source,
        expr: &Expr,
        start: i64,
        end: i64,
        limits: &Limits,
    ) -> Result<Evaluator> {
        let deadline = Instant::now() + limits.timeout;
        let mut ev = Evaluator {
            data: HashMap::new(),
            start,
            end,
            lookback: ms(limits.lookback),
            default_step: ms(limits.default_step).max(1),
            deadline,
            unnamed: RefCell::default(),
            groups: RefCell::default(),
            interned: RefCell::default(),
            steps: None,
            precomputed: RefCell::default(),
            unique: Default::default(),
        };
        let mut wanted: HashMap<usize, (&VectorSelector, i64, i64)> = HashMap::new();
        ev.ranges(expr, start, end, &mut wanted);
        let mut loaded = 0usize;
        for (k, (vs, mint, maxt)) in wanted {
            let series = src.select(&matchers(vs), mint, maxt)?;
            loaded += series.iter().map(|s| s.points.len()).sum::<usize>();
            if loaded > limits.max_samples {
                return Err(Error::Execution(
                    "query processing would load too many samples into memory in query execution"
                        .into(),
                ));
            }
            if Instant::now() > ev.deadline {
                return Err(Error::Timeout("query preparation"));
            }
            ev.data.insert(k, series);
        }
        Ok(ev)
    }

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
            Expr::VectorSelector(vs) => add(vs, self.lookback),
            Expr::MatrixSelector(m) => add(&m.vs, ms(m.range)),
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
                            labels: self.unnamed(&s.labels),
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
            Expr::Aggregate(a) => self.aggregate(a, t),
            Expr::Binary(b) => self.binary(b, t),
            Expr::Call(c) => {
                if let Some(samples) = self.take_precomputed(expr, t) {
                    // A table whose series all have distinct labels cannot repeat one.
                    if !self.unique.contains(&(expr as *const Expr as usize)) {
                        no_duplicates(&samples)?;
                    }
                    return Ok(Value::Vector(samples));
                }
                let v = functions::call(self, c, t)?;
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

    /// `labels` without `__name__`; the same `Arc` each time for the same input.
    pub fn unnamed(&self, labels: &Arc<Labels>) -> Arc<Labels> {
        if !labels.has_name() {
            return labels.clone();
        }
        let key = Arc::as_ptr(labels) as usize;
        self.unnamed
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| (labels.clone(), Arc::new(labels.without_name())))
            .1
            .clone()
    }

    /// The labels of the group `labels` falls in for aggregation `node`; one `Arc` per
    /// group.
    fn group(
        &self,
        node: usize,
        labels: &Arc<Labels>,
        of: impl Fn(&Labels) -> Labels,
    ) -> Arc<Labels> {
        let key = (node, Arc::as_ptr(labels) as usize);
        if let Some((_, g)) = self.groups.borrow().get(&key) {
            return g.clone();
        }
        let g = of(labels);
        let g = self
            .interned
            .borrow_mut()
            .entry((node, g))
            .or_insert_with_key(|(_, g)| Arc::new(g.clone()))
            .clone();
        self.groups
            .borrow_mut()
            .insert(key, (labels.clone(), g.clone()));
        g
    }

    /// A node's answer at `t` if it was computed ahead for the range query's steps.
    fn take_precomputed(&self, node: &Expr, t: i64) -> Option<Vec<Sample>> {
        let i = self.steps?.index(t)?;
        let mut map = self.precomputed.borrow_mut();
        map.get_mut(&(node as *const Expr as usize))?
            .get_mut(i)?
            .take()
    }

    /// Computes the answers of the selectors and range functions of a range query for
    /// every step at once, series by series: each series' points are walked once with
    /// two cursors instead of searched at every step. Nodes under a subquery (evaluated
    /// at its own times) are left to step-by-step evaluation.
    fn precompute(&mut self, expr: &Expr, steps: Steps) {
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
        unique: &mut std::collections::HashSet<usize, Hash>,
    ) {
        let node = expr as *const Expr as usize;
        match expr {
            Expr::VectorSelector(vs) => {
                tables.insert(node, self.selector_table(vs, steps));
            }
            Expr::Call(c) => {
                let matrix = match c.args.args.as_slice() {
                    [only] => match &**only {
                        Expr::MatrixSelector(m) => Some(m),
                        _ => None,
                    },
                    _ => None,
                };
                match (matrix, functions::kernel(c.func.name)) {
                    (Some(m), Some((k, keeps_name))) => {
                        tables.insert(node, self.kernel_table(m, k, keeps_name, steps));
                        let mut seen = std::collections::HashSet::new();
                        let distinct = self.series(&m.vs).iter().all(|s| {
                            seen.insert(if keeps_name {
                                s.labels.clone()
                            } else {
                                self.unnamed(&s.labels)
                            })
                        });
                        if distinct {
                            unique.insert(node);
                        }
                    }
                    _ => {
                        for a in &c.args.args {
                            self.precompute_node(a, steps, tables, unique);
                        }
                    }
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

    /// [`Self::vector`] at every step.
    fn selector_table(&self, vs: &VectorSelector, steps: Steps) -> Table {
        let mut table: Vec<Vec<Sample>> = vec![Vec::new(); steps.count];
        for s in self.series(vs) {
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
                    table[i].push(Sample {
                        labels: s.labels.clone(),
                        v,
                    });
                }
            }
        }
        table.into_iter().map(Some).collect()
    }

    /// A range function over `m` at every step.
    fn kernel_table(
        &self,
        m: &promql_parser::parser::MatrixSelector,
        k: functions::Kernel,
        keeps_name: bool,
        steps: Steps,
    ) -> Table {
        let range = ms(m.range);
        let mut table: Vec<Vec<Sample>> = vec![Vec::new(); steps.count];
        for s in self.series(&m.vs) {
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
            let labels = if keeps_name {
                s.labels.clone()
            } else {
                self.unnamed(&s.labels)
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
                let w = functions::Window {
                    start: r - range,
                    end: r,
                    range,
                };
                if let Some(v) = k(&points[lo..hi], w) {
                    table[i].push(Sample {
                        labels: labels.clone(),
                        v,
                    });
                }
            }
        }
        table.into_iter().map(Some).collect()
    }

    fn series(&self, vs: &VectorSelector) -> &[Series] {
        self.data.get(&key(vs)).map_or(&[], Vec::as_slice)
    }

    /// The instant vector `vs` selects at `t`: each series' newest point in the lookback
    /// window `[ref - 5m, ref]`, unless it is a stale marker.
    pub fn vector(&self, vs: &VectorSelector, t: i64) -> Vec<Sample> {
        self.vector_with_times(vs, t)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// [`Self::vector`] with each sample's own timestamp.
    pub fn vector_with_times(&self, vs: &VectorSelector, t: i64) -> Vec<(Sample, i64)> {
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
    pub fn range_arg(&self, expr: &Expr, t: i64) -> Result<RangeArg> {
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
    pub fn scalar(&self, expr: &Expr, t: i64) -> Result<f64> {
        match self.eval(expr, t)? {
            Value::Scalar(v) => Ok(v),
            other => Err(Error::Execution(format!(
                "expected a scalar, got {}",
                other.type_name()
            ))),
        }
    }

    /// An instant vector argument at `t`.
    pub fn instant(&self, expr: &Expr, t: i64) -> Result<Vec<Sample>> {
        match self.eval(expr, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(Error::Execution(format!(
                "expected an instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    fn aggregate(&self, a: &AggregateExpr, t: i64) -> Result<Value> {
        let input = self.instant(&a.expr, t)?;
        let op = a.op.id();
        let (mut grouping, without): (Vec<String>, bool) = match &a.modifier {
            Some(LabelModifier::Include(l)) => (l.labels.clone(), false),
            Some(LabelModifier::Exclude(l)) => (l.labels.clone(), true),
            None => (Vec::new(), false),
        };
        let mut param_k = 0usize;
        let mut param_q = 0.0;
        let mut value_label = String::new();
        match op {
            token::T_TOPK | token::T_BOTTOMK => {
                let p = self.scalar(param(a)?, t)?;
                if !(-9.223_372_036_854_776e18..=9.223_372_036_854_776e18).contains(&p) {
                    return Err(Error::Execution(format!(
                        "Scalar value {p} overflows int64"
                    )));
                }
                let k = p as i64;
                if k < 1 {
                    return Ok(Value::Vector(Vec::new()));
                }
                param_k = k as usize;
            }
            token::T_QUANTILE => {
                param_q = self.scalar(param(a)?, t)?;
            }
            token::T_COUNT_VALUES => match a.param.as_deref().map(|p| self.eval(p, t)) {
                Some(Ok(Value::Str(s))) => {
                    if !valid_label_name(&s) {
                        return Err(Error::Execution(format!("invalid label name {s:?}")));
                    }
                    // The value label is part of each group.
                    if !without {
                        grouping.push(s.clone());
                    }
                    value_label = s;
                }
                _ => return Err(Error::Execution("count_values needs a label name".into())),
            },
            _ => {}
        }
        let grouping = grouping;
        let group_of = |l: &Labels| -> Labels {
            if without {
                l.drop(&grouping)
            } else {
                l.keep(&grouping)
            }
        };
        // Groups in order of first appearance, as Prometheus emits them.
        let node = a as *const AggregateExpr as usize;
        let mut index: HashMap<usize, usize, Hash> = HashMap::default();
        // Per group: its labels, its values, and (topk, bottomk) its samples.
        let keeps_samples = matches!(op, token::T_TOPK | token::T_BOTTOMK);
        let mut groups: Vec<(Arc<Labels>, Vec<f64>, Vec<Sample>)> = Vec::new();
        for s in input {
            let s = if op == token::T_COUNT_VALUES {
                let mut l = (*s.labels).clone();
                l.set(&value_label, &functions::format_value(s.v));
                Sample {
                    labels: Arc::new(l),
                    v: s.v,
                }
            } else {
                s
            };
            // count_values makes new label sets each time: they are not remembered.
            let g = if op == token::T_COUNT_VALUES {
                let g = group_of(&s.labels);
                self.interned
                    .borrow_mut()
                    .entry((node, g))
                    .or_insert_with_key(|(_, g)| Arc::new(g.clone()))
                    .clone()
            } else {
                self.group(node, &s.labels, group_of)
            };
            let i = *index.entry(Arc::as_ptr(&g) as usize).or_insert_with(|| {
                groups.push((g, Vec::new(), Vec::new()));
                groups.len() - 1
            });
            if keeps_samples {
                groups[i].2.push(s);
            } else {
                groups[i].1.push(s.v);
            }
        }
        let mut out = Vec::with_capacity(groups.len());
        for (labels, values, members) in groups {
            let count = values.len();
            let values = values.into_iter();
            let v = match op {
                token::T_SUM => values.sum(),
                token::T_AVG => avg(values),
                token::T_COUNT | token::T_COUNT_VALUES => count as f64,
                token::T_GROUP => 1.0,
                token::T_MAX => {
                    values.fold(
                        f64::NAN,
                        |acc, v| {
                            if acc < v || acc.is_nan() {
                                v
                            } else {
                                acc
                            }
                        },
                    )
                }
                token::T_MIN => {
                    values.fold(
                        f64::NAN,
                        |acc, v| {
                            if acc > v || acc.is_nan() {
                                v
                            } else {
                                acc
                            }
                        },
                    )
                }
                token::T_STDVAR => variance(values),
                token::T_STDDEV => variance(values).sqrt(),
                token::T_QUANTILE => {
                    let mut v: Vec<f64> = values.collect();
                    functions::quantile(param_q, &mut v)
                }
                token::T_TOPK | token::T_BOTTOMK => {
                    let mut m = members;
                    let top = op == token::T_TOPK;
                    // NaN sorts last either way: topk and bottomk prefer numbers.
                    let order = |a: &Sample, b: &Sample| match (a.v.is_nan(), b.v.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ if top => b.v.total_cmp(&a.v),
                        _ => a.v.total_cmp(&b.v),
                    };
                    if param_k < m.len() {
                        m.select_nth_unstable_by(param_k - 1, order);
                        m.truncate(param_k);
                    }
                    m.sort_by(order);
                    out.extend(m);
                    continue;
                }
                _ => {
                    return Err(Error::Execution(format!(
                        "aggregation {} is not supported",
                        a.op
                    )))
                }
            };
            out.push(Sample { labels, v });
        }
        Ok(Value::Vector(out))
    }

    fn binary(&self, b: &BinaryExpr, t: i64) -> Result<Value> {
        let op = b.op.id();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&b.lhs, t)?;
        let rhs = self.eval(&b.rhs, t)?;
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => {
                let (v, keep) = elem(op, l, r)?;
                Ok(Value::Scalar(if is_comparison(op) {
                    if keep {
                        1.0
                    } else {
                        0.0
                    }
                } else {
                    v
                }))
            }
            (Value::Vector(l), Value::Scalar(r)) => {
                let out = vector_scalar(self, op, l, r, false, return_bool)?;
                no_duplicates(&out)?;
                Ok(Value::Vector(out))
            }
            (Value::Scalar(l), Value::Vector(r)) => {
                let out = vector_scalar(self, op, r, l, true, return_bool)?;
                no_duplicates(&out)?;
                Ok(Value::Vector(out))
            }
            (Value::Vector(l), Value::Vector(r)) => {
                let out = self.vector_vector(b, l, r, return_bool)?;
                no_duplicates(&out)?;
                Ok(Value::Vector(out))
            }
            (l, r) => Err(Error::Execution(format!(
                "binary expression between {} and {}",
                l.type_name(),
                r.type_name()
            ))),
        }
    }

    fn vector_vector(
        &self,
        b: &BinaryExpr,
        lhs: Vec<Sample>,
        rhs: Vec<Sample>,
        return_bool: bool,
    ) -> Result<Vec<Sample>> {
        let op = b.op.id();
        let (card, matching) = match &b.modifier {
            Some(m) => (m.card.clone(), m.matching.clone()),
            None => (VectorMatchCardinality::OneToOne, None),
        };
        let (on, names): (bool, Vec<String>) = match &matching {
            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
            None => (false, Vec::new()),
        };
        let sig = |l: &Labels| -> Labels {
            if on {
                l.keep(&names)
            } else {
                l.drop(&names)
            }
        };
        if matches!(op, token::T_LAND | token::T_LOR | token::T_LUNLESS) {
            return Ok(set_operation(op, lhs, rhs, sig));
        }
        if lhs.is_empty() || rhs.is_empty() {
            return Ok(Vec::new());
        }
        let (many, one, swapped, include) = match &card {
            VectorMatchCardinality::OneToMany(l) => (rhs, lhs, true, l.labels.clone()),
            VectorMatchCardinality::ManyToOne(l) => (lhs, rhs, false, l.labels.clone()),
            _ => (lhs, rhs, false, Vec::new()),
        };
        let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
        let mut one_side: HashMap<Labels, &Sample> = HashMap::new();
        for s in &one {
            let key = sig(&s.labels);
            if let Some(dup) = one_side.get(&key) {
                let side = if swapped { "left" } else { "right" };
                return Err(Error::Execution(format!(
                    "found duplicate series for the match group {key} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    s.labels, dup.labels
                )));
            }
            one_side.insert(key, s);
        }
        let mut matched: HashMap<Labels, Vec<Labels>> = HashMap::new();
        let mut out = Vec::new();
        for s in &many {
            let key = sig(&s.labels);
            let Some(o) = one_side.get(&key) else {
                continue;
            };
            let (l, r) = if swapped { (o.v, s.v) } else { (s.v, o.v) };
            let (mut v, keep) = elem(op, l, r)?;
            if return_bool {
                v = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            let mut labels = (*s.labels).clone();
            if should_drop_name(op) || return_bool {
                labels.set(NAME, "");
            }
            if one_to_one {
                labels = if on {
                    labels.keep(&names)
                } else {
                    let mut kept = labels.clone();
                    for n in &names {
                        kept.set(n, "");
                    }
                    kept
                };
            }
            for n in &include {
                let value = o.labels.get(n).to_owned();
                labels.set(n, &value);
            }
            let seen = matched.entry(key).or_default();
            if one_to_one {
                if !seen.is_empty() {
                    return Err(Error::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                    ));
                }
            } else if seen.contains(&labels) {
                return Err(Error::Execution(format!(
                    "multiple matches for matching labels in many-to-one matching: {labels}"
                )));
            }
            seen.push(labels.clone());
            out.push(Sample {
                labels: Arc::new(labels),
                v,
            });
        }
        Ok(out)
    }
}

/// The parameter of `topk`, `bottomk`, `quantile` and `count_values`.
fn param(a: &AggregateExpr) -> Result<&Expr> {
    a.param
        .as_deref()
        .ok_or_else(|| Error::BadData(format!("parse error: {} needs a parameter", a.op)))
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

/// A range argument's series and the window they were read over (ms).
pub struct RangeArg {
    /// The series and their points in the window.
    pub series: Vec<Series>,
    /// The window's start (ms).
    pub start: i64,
    /// The window's end (ms).
    pub end: i64,
    /// Its width (ms).
    pub range: i64,
}

fn set_operation(
    op: token::TokenId,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    sig: impl Fn(&Labels) -> Labels,
) -> Vec<Sample> {
    match op {
        token::T_LAND => {
            if lhs.is_empty() || rhs.is_empty() {
                return Vec::new();
            }
            let right: std::collections::HashSet<Labels> =
                rhs.iter().map(|s| sig(&s.labels)).collect();
            lhs.into_iter()
                .filter(|s| right.contains(&sig(&s.labels)))
                .collect()
        }
        token::T_LOR => {
            let left: std::collections::HashSet<Labels> =
                lhs.iter().map(|s| sig(&s.labels)).collect();
            let mut out = lhs;
            out.extend(rhs.into_iter().filter(|s| !left.contains(&sig(&s.labels))));
            out
        }
        _ => {
            if lhs.is_empty() || rhs.is_empty() {
                return lhs;
            }
            let right: std::collections::HashSet<Labels> =
                rhs.iter().map(|s| sig(&s.labels)).collect();
            lhs.into_iter()
                .filter(|s| !right.contains(&sig(&s.labels)))
                .collect()
        }
    }
}

fn vector_scalar(
    ev: &Evaluator,
    op: token::TokenId,
    vector: Vec<Sample>,
    scalar: f64,
    swapped: bool,
    return_bool: bool,
) -> Result<Vec<Sample>> {
    let drop = should_drop_name(op) || return_bool;
    let mut out = Vec::with_capacity(vector.len());
    for s in vector {
        let (l, r) = if swapped {
            (scalar, s.v)
        } else {
            (s.v, scalar)
        };
        let (mut v, keep) = elem(op, l, r)?;
        // A comparison keeps the vector's value, whichever side it is on.
        if is_comparison(op) && swapped {
            v = r;
        }
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let labels = if drop {
            ev.unnamed(&s.labels)
        } else {
            s.labels
        };
        out.push(Sample { labels, v });
    }
    Ok(out)
}

/// `lhs op rhs`: the value and, for comparisons, whether it holds.
fn elem(op: token::TokenId, l: f64, r: f64) -> Result<(f64, bool)> {
    Ok(match op {
        token::T_ADD => (l + r, true),
        token::T_SUB => (l - r, true),
        token::T_MUL => (l * r, true),
        token::T_DIV => (l / r, true),
        token::T_MOD => (l % r, true),
        token::T_POW => (l.powf(r), true),
        token::T_ATAN2 => (l.atan2(r), true),
        token::T_EQLC => (l, l == r),
        token::T_NEQ => (l, l != r),
        token::T_GTR => (l, l > r),
        token::T_LSS => (l, l < r),
        token::T_GTE => (l, l >= r),
        token::T_LTE => (l, l <= r),
        other => {
            return Err(Error::Execution(format!(
                "operator {} is not defined between these operands",
                TokenType::new(other)
            )))
        }
    })
}

fn is_comparison(op: token::TokenId) -> bool {
    matches!(
        op,
        token::T_EQLC | token::T_NEQ | token::T_GTR | token::T_LSS | token::T_GTE | token::T_LTE
    )
}

/// Arithmetic drops the metric name; `atan2` does not in Prometheus 2.42 (fixed later).
fn should_drop_name(op: token::TokenId) -> bool {
    matches!(
        op,
        token::T_ADD | token::T_SUB | token::T_MUL | token::T_DIV | token::T_MOD | token::T_POW
    )
}

/// Prometheus's check that an operation did not make two samples alike.
fn no_duplicates(samples: &[Sample]) -> Result<()> {
    if samples.len() < 2 {
        return Ok(());
    }
    let mut seen: std::collections::HashSet<&Labels, Hash> =
        std::collections::HashSet::with_capacity_and_hasher(samples.len(), Hash::default());
    for s in samples {
        if !seen.insert(&*s.labels) {
            return Err(Error::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(())
}

/// Whether `s` is a valid label name.
pub fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Prometheus's running mean, which survives infinities and large values.
pub fn avg(values: impl Iterator<Item = f64>) -> f64 {
    let mut mean = 0.0;
    let mut count = 0.0;
    for v in values {
        count += 1.0;
        if count == 1.0 {
            mean = v;
            continue;
        }
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        mean += v / count - mean / count;
    }
    mean
}

/// Population variance by Welford's method, as Prometheus computes it.
pub fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for v in values {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        m2 += delta * (v - mean);
    }
    m2 / count
}

/// Runs `expr` as an instant query at `t` (ms).
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

/// Runs `expr` as a range query: a series per label set with a point per step where it
/// has a value.
pub fn range_query(
    src: &dyn Source,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
    limits: &Limits,
) -> Result<Vec<Series>> {
    let mut ev = Evaluator::load(src, expr, start, end, limits)?;
    let steps = Steps {
        start,
        step,
        count: ((end - start) / step + 1) as usize,
    };
    ev.precompute(expr, steps);
    ev.check_deadline()?;
    // Every step hashes each output series' labels again: a fast hasher.
    let mut by_labels: HashMap<Arc<Labels>, Vec<(i64, f64)>, foldhash::fast::RandomState> =
        HashMap::default();
    let mut points = 0usize;
    let mut t = start;
    while t <= end {
        ev.check_deadline()?;
        match ev.eval(expr, t)? {
            Value::Scalar(v) => by_labels
                .entry(Arc::new(Labels::default()))
                .or_default()
                .push((t, v)),
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
        if points > limits.max_samples {
            return Err(Error::Execution(
                "query processing would load too many samples into memory in query execution"
                    .into(),
            ));
        }
        t += step;
    }
    let mut out: Vec<Series> = by_labels
        .into_iter()
        .map(|(labels, points)| Series { labels, points })
        .collect();
    out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}
