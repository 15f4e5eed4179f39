//! Which resolution answers a range query: raw samples, or 5-minute or 1-hour rollups.
//!
//! A resolution can answer an expression when every selector in it is read either as a
//! plain instant selector or as the only argument of a range function rollups keep
//! (`functions::rollup`), with no subquery, `@` or `timestamp()` in the way. `auto`
//! then takes the coarsest resolution that answers as raw data would:
//! - aligned: the step, the start, every offset and every range window are whole
//!   buckets; the answer is then the raw answer (up to float rounding; see the rollup
//!   kernels), or
//! - coarse: the step and every range window are at least five buckets (Thanos's rule
//!   for its downsampled blocks); a step between bucket boundaries is then answered as
//!   raw data answers at the last boundary before it (at most a bucket earlier).
//!
//! Anything else, and every instant query, reads raw samples. A resolution asked for by
//! `max_source_resolution` is used when it can answer the expression at all.

use promql_parser::parser::{Expr, VectorSelector};

use super::functions::rollup::bucket_kernel;
use super::parse::{offset_ms, only_matrix};
use super::rollup::Resolution;

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// The coarsest resolution that answers as raw data would.
    Auto,
    /// This one, where it can answer the expression.
    Exactly(Resolution),
}

impl Requested {
    /// From `max_source_resolution`: `auto`, `raw` (or `0s`), `5m`, `1h`; absent is auto.
    pub fn parse(s: Option<&str>) -> Option<Requested> {
        match s {
            None | Some("") | Some("auto") => Some(Requested::Auto),
            Some(s) => Resolution::parse(s).map(Requested::Exactly),
        }
    }
}

/// What a rollup must cover: the range windows, offsets, and whether it can answer.
#[derive(Default)]
struct Reads {
    ranges: Vec<i64>,
    offsets: Vec<i64>,
    answerable: bool,
}

/// The resolution a range query over `[start, ..]` at `step` (ms) is answered at.
pub fn resolution(expr: &Expr, start: i64, step: i64, requested: Requested) -> Resolution {
    let mut reads = Reads {
        answerable: true,
        ..Reads::default()
    };
    walk(expr, &mut reads);
    if !reads.answerable {
        return Resolution::Raw;
    }
    match requested {
        Requested::Exactly(r) => r,
        Requested::Auto => Resolution::ROLLUPS
            .into_iter()
            .rev()
            .find(|r| {
                let w = r.ms();
                let aligned = step % w == 0
                    && start % w == 0
                    && reads.offsets.iter().all(|o| o % w == 0)
                    && reads.ranges.iter().all(|x| x % w == 0);
                let coarse = step >= 5 * w && reads.ranges.iter().all(|x| *x >= 5 * w);
                aligned || coarse
            })
            .unwrap_or(Resolution::Raw),
    }
}

fn selector(vs: &VectorSelector, reads: &mut Reads) {
    if vs.at.is_some() {
        reads.answerable = false;
    }
    reads.offsets.push(offset_ms(&vs.offset));
}

fn walk(expr: &Expr, reads: &mut Reads) {
    match expr {
        Expr::VectorSelector(vs) => selector(vs, reads),
        Expr::Call(c) => match only_matrix(c) {
            Some(m) if bucket_kernel(c.func.name).is_some() => {
                selector(&m.vs, reads);
                reads.ranges.push(m.range.as_millis() as i64);
            }
            _ if c.func.name == "timestamp" => reads.answerable = false,
            _ => {
                for a in &c.args.args {
                    walk(a, reads);
                }
            }
        },
        // A range vector anywhere else is read sample by sample.
        Expr::MatrixSelector(_) | Expr::Subquery(_) | Expr::Extension(_) => {
            reads.answerable = false
        }
        Expr::Aggregate(a) => {
            walk(&a.expr, reads);
            if let Some(p) = &a.param {
                walk(p, reads);
            }
        }
        Expr::Unary(u) => walk(&u.expr, reads),
        Expr::Binary(b) => {
            walk(&b.lhs, reads);
            walk(&b.rhs, reads);
        }
        Expr::Paren(p) => walk(&p.expr, reads),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::query::eval::parse;

    const M: i64 = 60_000;
    const H: i64 = 3_600_000;

    fn auto(q: &str, start: i64, step: i64) -> Resolution {
        resolution(&parse(q).unwrap(), start, step, Requested::Auto)
    }

    #[test]
    fn auto_takes_the_coarsest_resolution_that_answers_as_raw() {
        let day = 24 * H;
        // Aligned whole buckets: the coarsest that divides everything.
        assert_eq!(auto("sum(rate(x[1h]))", day, H), Resolution::Hour);
        assert_eq!(auto("sum(x)", day, H), Resolution::Hour);
        assert_eq!(auto("rate(x[1h])", day, 10 * M), Resolution::FiveMinutes);
        assert_eq!(auto("rate(x[10m])", day, H), Resolution::FiveMinutes);
        // Five buckets or more, not aligned.
        assert_eq!(auto("rate(x[7h])", day + M, 6 * H), Resolution::Hour);
        assert_eq!(
            auto("rate(x[30m])", day + M, 30 * M),
            Resolution::FiveMinutes
        );
        // Short steps and windows, and what rollups cannot answer: raw.
        assert_eq!(auto("rate(x[5m])", day, 15_000), Resolution::Raw);
        assert_eq!(auto("x", day + 1, M), Resolution::Raw);
        assert_eq!(auto("irate(x[1h])", day, H), Resolution::Raw);
        assert_eq!(
            auto("quantile_over_time(0.9, x[1h])", day, H),
            Resolution::Raw
        );
        assert_eq!(
            auto("max_over_time(rate(x[5m])[1h:])", day, H),
            Resolution::Raw
        );
        assert_eq!(auto("timestamp(x)", day, H), Resolution::Raw);
        assert_eq!(auto("x @ 100", day, H), Resolution::Raw);
        // Not aligned, but five buckets per step or more.
        assert_eq!(auto("x offset 7m", day, H), Resolution::FiveMinutes);
        assert_eq!(auto("x offset 7m", day, 10 * M), Resolution::Raw);
        assert_eq!(auto("x offset 1d", day, H), Resolution::Hour);
        assert_eq!(auto("time()", day, H), Resolution::Hour);
    }

    #[test]
    fn a_requested_resolution_is_used_where_it_can_answer() {
        let ask = |q: &str, r| resolution(&parse(q).unwrap(), 0, 15_000, Requested::Exactly(r));
        assert_eq!(ask("rate(x[1m])", Resolution::Hour), Resolution::Hour);
        assert_eq!(ask("irate(x[1h])", Resolution::Hour), Resolution::Raw);
        assert_eq!(ask("rate(x[1h])", Resolution::Raw), Resolution::Raw);
        assert_eq!(
            Requested::parse(Some("5m")),
            Some(Requested::Exactly(Resolution::FiveMinutes))
        );
        assert_eq!(
            Requested::parse(Some("0s")),
            Some(Requested::Exactly(Resolution::Raw))
        );
        assert_eq!(Requested::parse(None), Some(Requested::Auto));
        assert_eq!(Requested::parse(Some("7m")), None);
    }
}
