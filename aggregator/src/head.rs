//! The head: samples accepted since the last flush, in memory, grouped by day partition and
//! series, until they are written to Parquet.
//!
//! A series is its metric name plus the rest of its labels as a JSON object with sorted
//! keys (the `labels` column of the files). Any timestamp is accepted into its UTC day, so
//! a node replaying days of backlog lands in the right partitions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use telltale_model::remote::{SeriesRef, WriteRequest};

/// FNV-1a: a fast hash for keys that are not attacker-chosen in a way that matters here
/// (a collision costs a comparison, never a wrong answer).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Builds [`Fnv`] hashers.
pub type FnvBuild = std::hash::BuildHasherDefault<Fnv>;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// A series' identity in the files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// `__name__`.
    pub metric: Arc<str>,
    /// The other labels, a JSON object with sorted keys.
    pub labels: Arc<str>,
}

/// One day's series and their points (timestamp ms, value bits), in arrival order.
pub type Day = HashMap<SeriesKey, Vec<(i64, u64)>, FnvBuild>;

/// Samples waiting for a flush.
#[derive(Debug, Default)]
pub struct Head {
    days: BTreeMap<i64, Day>,
    samples: usize,
    /// A series' labels as sent (name, value, ...) → its key, so a known series costs a
    /// lookup instead of building its key again.
    keys: HashMap<Box<[u8]>, SeriesKey, FnvBuild>,
    scratch: Vec<u8>,
}

/// Known series remembered at most; beyond it the memory is started afresh.
const MAX_KEYS: usize = 4_000_000;

/// `pairs` (name, value) as a JSON object with keys sorted, `__name__` left out.
pub fn labels_json(pairs: &mut [(&str, &str)]) -> String {
    pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(64);
    out.push('{');
    let mut first = true;
    for (n, v) in pairs.iter().filter(|(n, _)| *n != "__name__") {
        if !first {
            out.push(',');
        }
        first = false;
        json_string(&mut out, n);
        out.push(':');
        json_string(&mut out, v);
    }
    out.push('}');
    out
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Head {
    /// Adds every sample of a (validated) request at or after `oldest` (ms); returns how
    /// many were older and left out.
    pub fn insert(&mut self, req: &WriteRequest, oldest: i64) -> u64 {
        let mut skipped = 0;
        let mut series = SeriesRef::default();
        for ts in &req.timeseries {
            series.labels = ts
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            series.samples = ts.samples.iter().map(|s| (s.timestamp, s.value)).collect();
            skipped += self.insert_series(&series, oldest);
        }
        skipped
    }

    /// Adds one (validated) series' samples at or after `oldest`; returns how many were
    /// older and left out.
    pub fn insert_series(&mut self, series: &SeriesRef<'_>, oldest: i64) -> u64 {
        self.scratch.clear();
        for (n, v) in &series.labels {
            self.scratch.extend_from_slice(n.as_bytes());
            self.scratch.push(0xff);
            self.scratch.extend_from_slice(v.as_bytes());
            self.scratch.push(0xff);
        }
        let key = match self.keys.get(&self.scratch[..]) {
            Some(k) => k.clone(),
            None => {
                let mut pairs = series.labels.clone();
                let metric = pairs
                    .iter()
                    .find(|(n, _)| *n == "__name__")
                    .map_or("", |(_, v)| *v);
                let key = SeriesKey {
                    metric: metric.into(),
                    labels: labels_json(&mut pairs).into(),
                };
                if self.keys.len() >= MAX_KEYS {
                    self.keys.clear();
                }
                self.keys
                    .insert(self.scratch.as_slice().into(), key.clone());
                key
            }
        };
        let mut skipped = 0;
        for &(t, v) in &series.samples {
            if t < oldest {
                skipped += 1;
                continue;
            }
            let day = t.div_euclid(DAY_MS);
            let points = self.days.entry(day).or_default();
            match points.get_mut(&key) {
                Some(p) => p.push((t, v.to_bits())),
                None => {
                    points.insert(key.clone(), vec![(t, v.to_bits())]);
                }
            }
            self.samples += 1;
        }
        skipped
    }

    /// Samples held.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Series held (a series in two days counts twice).
    pub fn series(&self) -> usize {
        self.days.values().map(HashMap::len).sum()
    }

    /// Takes everything, leaving the head empty.
    pub fn take(&mut self) -> BTreeMap<i64, Day> {
        self.samples = 0;
        std::mem::take(&mut self.days)
    }
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01, UTC).
pub fn day_name(day: i64) -> String {
    // Howard Hinnant's days_from_civil, inverted.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_named_in_utc() {
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(-1), "1969-12-31");
        assert_eq!(day_name(19_723), "2024-01-01");
        assert_eq!(day_name(20_513), "2026-03-01");
        assert_eq!(day_name(19_782), "2024-02-29");
    }

    #[test]
    fn late_samples_land_in_their_day_and_too_old_ones_are_left_out() {
        use telltale_model::remote::{Label, Sample, TimeSeries};
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: [100 * DAY_MS + 5, 70 * DAY_MS, 10 * DAY_MS, 100 * DAY_MS + 1]
                    .iter()
                    .map(|&timestamp| Sample {
                        value: 1.0,
                        timestamp,
                    })
                    .collect(),
            }],
        };
        let mut h = Head::default();
        assert_eq!(h.insert(&req, 11 * DAY_MS), 1);
        assert_eq!(h.samples(), 3);
        let days = h.take();
        assert_eq!(days.keys().copied().collect::<Vec<_>>(), vec![70, 100]);
        assert_eq!(days[&100].values().next().map(Vec::len), Some(2));
        assert_eq!(h.samples(), 0);
    }

    #[test]
    fn labels_become_sorted_json_without_the_name() {
        let mut p = vec![("zone", "a\"b"), ("__name__", "up"), ("az", "x\ny")];
        assert_eq!(labels_json(&mut p), r#"{"az":"x\ny","zone":"a\"b"}"#);
        assert_eq!(labels_json(&mut []), "{}");
    }
}
