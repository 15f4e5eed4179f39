//! Where series come from: the [`Source`] trait is the only way the query engine reaches
//! storage, and [`matchers`] is what a selector asks it for.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::VectorSelector;

use super::error::Error;
use super::value::{Series, NAME};

/// Where series come from.
pub trait Source: Sync {
    /// Every series matching all `matchers` (missing labels match as empty) with its
    /// points in `[mint, maxt]` (ms, inclusive); series without a point there left out.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error>;
}

/// The matchers of a selector, its name as a `__name__` matcher.
pub fn matchers(v: &VectorSelector) -> Vec<Matcher> {
    let mut m = v.matchers.matchers.clone();
    if let Some(name) = &v.name {
        m.push(Matcher::new(MatchOp::Equal, NAME, name));
    }
    m
}
