//! What went wrong during one collection cycle, by source.
//!
//! A source that fails skips only the series that depend on what it could not read; the
//! failure is counted in `telltale_collector_errors_total{source}` and logged once when a
//! source starts failing and once when it recovers (not every cycle).

use std::fmt::Display;

/// Errors recorded during one cycle: per source, how many and the first one's text.
#[derive(Debug, Default)]
pub struct CycleErrors {
    by_source: Vec<(&'static str, u64, String)>,
}

impl CycleErrors {
    /// Records one error of `source` (a bounded name such as `"cgroup"` or `"meminfo"`).
    pub fn record(&mut self, source: &'static str, detail: impl Display) {
        match self.by_source.iter_mut().find(|(s, _, _)| *s == source) {
            Some((_, n, _)) => *n += 1,
            None => self.by_source.push((source, 1, detail.to_string())),
        }
    }

    /// (source, count, first error) for each source that failed this cycle.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64, &str)> {
        self.by_source.iter().map(|(s, n, d)| (*s, *n, d.as_str()))
    }

    /// Errors of `source` this cycle.
    pub fn count(&self, source: &str) -> u64 {
        self.by_source
            .iter()
            .find(|(s, _, _)| *s == source)
            .map_or(0, |(_, n, _)| *n)
    }

    /// Forgets everything, for the next cycle.
    pub fn clear(&mut self) {
        self.by_source.clear();
    }
}
