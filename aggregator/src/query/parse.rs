//! Reading a query: `promql-parser` taught the functions Prometheus 2.42 had and no
//! later ones, syntax errors placed at the line and column Prometheus reports, and the
//! parsed expression checked for what 2.42 refuses (later aggregations, fill modifiers,
//! `or` in label matching).
//!
//! Promise: a query parses here exactly when Prometheus 2.42 parses it, and a syntax
//! error's message starts with its `line:column:` as Prometheus's does.

use promql_parser::parser::token;
use promql_parser::parser::{Call, Expr, MatrixSelector, Offset, VectorSelector};

use super::error::{Error, Result};

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

/// Refuses what Prometheus 2.42 would not parse.
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

/// Refuses `or` between a selector's matchers (later syntax).
fn check_selector(v: &VectorSelector) -> Result<()> {
    if !v.matchers.or_matchers.is_empty() {
        return Err(Error::BadData(
            "parse error: unexpected \"or\" in label matching".into(),
        ));
    }
    Ok(())
}

/// An `offset` in ms (negative for `offset -5m`), 0 without one.
pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
        None => 0,
    }
}

/// The matrix selector that is a call's only argument (`rate(x[5m])`), if it is one.
pub(crate) fn only_matrix(c: &Call) -> Option<&MatrixSelector> {
    match c.args.args.as_slice() {
        [only] => match &**only {
            Expr::MatrixSelector(m) => Some(m),
            _ => None,
        },
        _ => None,
    }
}
