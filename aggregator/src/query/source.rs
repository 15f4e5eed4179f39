//! Where series come from: the [`Source`] trait is the only way the query engine reaches
//! storage, and [`matchers`] is what a selector asks it for.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::VectorSelector;

use super::error::Error;
use super::rollup::{bucketize, Fields, Resolution, RollupSeries};
use super::value::{Series, NAME};

/// Where series come from.
pub trait Source: Sync {
    /// Every series matching all `matchers` (missing labels match as empty) with its
    /// points in `[mint, maxt]` (ms, inclusive); series without a point there left out.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error>;

    /// Every series matching `matchers` with its buckets at `resolution` (not raw) whose
    /// end is in `[mint, maxt]`; series without one left out. Only `fields` need be
    /// filled in. Unless the source keeps rollups, they are built here from the raw
    /// samples they summarise.
    fn select_rollup(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        resolution: Resolution,
        fields: Fields,
    ) -> Result<Vec<RollupSeries>, Error> {
        let _ = fields;
        let width = resolution.ms().max(1);
        let raw = self.select(matchers, mint - width + 1, maxt)?;
        Ok(raw
            .into_iter()
            .filter_map(|s| {
                let mut buckets = bucketize(&s.points, width);
                buckets.retain(|b| b.end >= mint && b.end <= maxt);
                (!buckets.is_empty()).then_some(RollupSeries {
                    labels: s.labels,
                    buckets,
                })
            })
            .collect())
    }
}

/// The matchers of a selector, its name as a `__name__` matcher.
pub fn matchers(v: &VectorSelector) -> Vec<Matcher> {
    let mut m = v.matchers.matchers.clone();
    if let Some(name) = &v.name {
        m.push(Matcher::new(MatchOp::Equal, NAME, name));
    }
    m
}
