//! The head: samples accepted since the last flush, in memory, grouped by day partition and
//! series, until they are written to Parquet.
//!
//! A series is its metric name plus the rest of its labels as a JSON object with sorted
//! keys (the `labels` column of the files). Any timestamp is accepted into its UTC day, so
//! a node replaying days of backlog lands in the right partitions.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;

use telltale_model::calendar::DAY_MS;
use telltale_model::prom::METRIC_NAME;
use telltale_model::remote::{self, SeriesRef, WriteRequest};

/// The hasher of the head's maps: foldhash, seeded per process (hashes 8+ bytes a step;
/// the byte-at-a-time FNV it replaced was most of the ingest profile).
pub type Hash = foldhash::fast::RandomState;

/// A series' identity in the files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// `__name__`.
    pub metric: Arc<str>,
    /// The other labels, a JSON object with sorted keys.
    pub labels: Arc<str>,
}

/// One day's series and their points (timestamp ms, value bits), in arrival order.
pub type Day = HashMap<SeriesKey, Vec<(i64, u64)>, Hash>;

/// One day's series and their points, in key order (as [`Head::take`] gives them).
pub type Sorted = Vec<(SeriesKey, Vec<(i64, u64)>)>;

/// A known series and its points since the last flush, by day (nearly always one day).
#[derive(Debug)]
struct Series {
    key: SeriesKey,
    days: Vec<(i64, Vec<(i64, u64)>)>,
}

/// Samples waiting for a flush.
///
/// A sample costs one hash lookup (its raw labels → series id) and a push onto that
/// series' points: the points live with the series, indexed by id, not in a second map.
#[derive(Debug, Default)]
pub struct Head {
    samples: usize,
    /// (series, day) pairs holding points.
    pairs: usize,
    /// Series ids, found by their labels' canonical encoding (see [`Head::id`]; 4 bytes
    /// an entry, the bytes kept in `raw`): a known series costs one lookup and one
    /// compare, without building its key again.
    ids: hashbrown::HashTable<u32>,
    hasher: Hash,
    /// Series by id.
    series: Vec<Series>,
    /// Per id: its labels' canonical encoding ([`remote::encode_labels`] of the pairs
    /// sorted by name), what a lookup compares with.
    raw: Vec<Box<[u8]>>,
    /// Ids of `series[..ordered.len()]` in key order; later ones are merged in at a take.
    ordered: Vec<u32>,
    /// Ids of the series holding each label pair (`name\0value`, `__name__` included), in
    /// id order: what a query's equality matcher reads instead of every series.
    postings: HashMap<Box<str>, Vec<u32>, Hash>,
    scratch: Vec<u8>,
}

/// Known series remembered at most; past it, the memory is started afresh at the next
/// flush (ids must stay valid while the head holds points).
const MAX_KEYS: usize = 4_000_000;

/// `pairs` (name, value) as a JSON object with keys sorted, `__name__` left out.
pub fn labels_json(pairs: &mut [(&str, &str)]) -> String {
    pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(64);
    out.push('{');
    let mut first = true;
    for (n, v) in pairs.iter().filter(|(n, _)| *n != METRIC_NAME) {
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
        for ts in &req.timeseries {
            let labels: Vec<_> = ts
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            let samples: Vec<_> = ts.samples.iter().map(|s| (s.timestamp, s.value)).collect();
            skipped += self.insert_series(&labels, &samples, oldest);
        }
        skipped
    }

    /// Adds one (validated) series' samples at or after `oldest`; returns how many were
    /// older and left out.
    pub fn insert_series(
        &mut self,
        labels: &[(&str, &str)],
        samples: &[(i64, f64)],
        oldest: i64,
    ) -> u64 {
        let id = self.id(labels, &[]);
        self.add_points(id, samples, oldest)
    }

    /// [`Head::insert_series`] of a series read from a request.
    pub fn insert_ref(&mut self, series: SeriesRef<'_, '_>, oldest: i64) -> u64 {
        let id = self.id(series.labels, series.encoded);
        self.add_points(id, series.samples, oldest)
    }

    fn add_points(&mut self, id: u32, samples: &[(i64, f64)], oldest: i64) -> u64 {
        let mut skipped = 0;
        // Samples of one series nearly always share a day: one lookup per run of them.
        let same_day =
            |a: &(i64, f64), b: &(i64, f64)| a.0.div_euclid(DAY_MS) == b.0.div_euclid(DAY_MS);
        for run in samples.chunk_by(same_day) {
            let mut kept = run.iter().filter(|s| s.0 >= oldest).peekable();
            let Some(first) = kept.peek() else {
                skipped += run.len() as u64;
                continue;
            };
            let day = first.0.div_euclid(DAY_MS);
            let days = &mut self.series[id as usize].days;
            let at = match days.iter().position(|(d, _)| *d == day) {
                Some(at) => at,
                None => {
                    days.push((day, Vec::new()));
                    self.pairs += 1;
                    days.len() - 1
                }
            };
            let points = &mut days[at].1;
            let had = points.len();
            points.extend(kept.map(|&(t, v)| (t, v.to_bits())));
            let added = points.len() - had;
            self.samples += added;
            skipped += (run.len() - added) as u64;
        }
        skipped
    }

    /// The id of the series with these labels, made on first sight. `encoded` is
    /// [`SeriesRef::encoded`]: the labels' canonical encoding as the request holds it, so
    /// a known series costs one hash and one compare of bytes it already has; empty when
    /// the sender encoded them otherwise (unsorted, say), and they are encoded here.
    fn id(&mut self, labels: &[(&str, &str)], encoded: &[u8]) -> u32 {
        let mut scratch = std::mem::take(&mut self.scratch);
        let key = if encoded.is_empty() {
            let mut sorted = labels.to_vec();
            sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
            scratch.clear();
            remote::encode_labels(&mut scratch, &sorted);
            &scratch[..]
        } else {
            encoded
        };
        let hash = self.hasher.hash_one(key);
        let id = match self.ids.find(hash, |&id| *self.raw[id as usize] == *key) {
            Some(&id) => id,
            None => self.add(labels, key, hash),
        };
        self.scratch = scratch;
        id
    }

    /// Makes a series.
    fn add(&mut self, labels: &[(&str, &str)], key: &[u8], hash: u64) -> u32 {
        let mut pairs = labels.to_vec();
        let metric = pairs
            .iter()
            .find(|(n, _)| *n == METRIC_NAME)
            .map_or("", |(_, v)| *v);
        let id = self.series.len() as u32;
        self.series.push(Series {
            key: SeriesKey {
                metric: metric.into(),
                labels: labels_json(&mut pairs).into(),
            },
            days: Vec::new(),
        });
        self.raw.push(key.into());
        for (n, v) in labels {
            let pair = format!("{n}\0{v}");
            match self.postings.get_mut(pair.as_str()) {
                Some(ids) => ids.push(id),
                None => {
                    self.postings.insert(pair.into(), vec![id]);
                }
            }
        }
        let (hasher, raw) = (&self.hasher, &self.raw);
        self.ids
            .insert_unique(hash, id, |&id| hasher.hash_one(&*raw[id as usize]));
        id
    }

    /// How many series (with points or not) hold the label pair `name`=`value`.
    pub fn pair_count(&self, name: &str, value: &str) -> usize {
        self.postings
            .get(format!("{name}\0{value}").as_str())
            .map_or(0, Vec::len)
    }

    /// [`Head::visit`] of only the series holding the label pair `name`=`value`.
    pub fn visit_pair(
        &self,
        name: &str,
        value: &str,
        mut f: impl FnMut(&SeriesKey, &[(i64, u64)]),
    ) {
        let Some(ids) = self.postings.get(format!("{name}\0{value}").as_str()) else {
            return;
        };
        for &id in ids {
            let s = &self.series[id as usize];
            for (_, points) in &s.days {
                f(&s.key, points);
            }
        }
    }

    /// Calls `f` with every series holding points and its points (one call per day).
    pub fn visit(&self, mut f: impl FnMut(&SeriesKey, &[(i64, u64)])) {
        for s in &self.series {
            for (_, points) in &s.days {
                f(&s.key, points);
            }
        }
    }

    /// Samples held.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Series held (a series in two days counts twice).
    pub fn series(&self) -> usize {
        self.pairs
    }

    /// Takes everything, leaving the head empty: per day, every series with points, in
    /// key order (as files are written).
    pub fn take(&mut self) -> BTreeMap<i64, Sorted> {
        self.order();
        let mut out: BTreeMap<i64, Vec<_>> = BTreeMap::new();
        for &id in &self.ordered {
            let s = &mut self.series[id as usize];
            for (day, points) in s.days.drain(..) {
                out.entry(day).or_default().push((s.key.clone(), points));
            }
        }
        self.samples = 0;
        self.pairs = 0;
        if self.series.len() >= MAX_KEYS {
            self.ids = hashbrown::HashTable::new();
            self.series = Vec::new();
            self.raw = Vec::new();
            self.ordered = Vec::new();
            self.postings = HashMap::default();
        }
        out
    }

    /// Merges the series made since the last take into `ordered`: a sort of the new
    /// ones and one merge pass, instead of sorting every series at every flush.
    fn order(&mut self) {
        let known = self.ordered.len();
        if known == self.series.len() {
            return;
        }
        let series = &self.series;
        let by_key = |a: &u32, b: &u32| series[*a as usize].key.cmp(&series[*b as usize].key);
        let mut new: Vec<u32> = (known as u32..series.len() as u32).collect();
        new.sort_unstable_by(by_key);
        let old = std::mem::take(&mut self.ordered);
        let mut merged = Vec::with_capacity(old.len() + new.len());
        let (mut i, mut j) = (0, 0);
        while i < old.len() && j < new.len() {
            if by_key(&old[i], &new[j]).is_le() {
                merged.push(old[i]);
                i += 1;
            } else {
                merged.push(new[j]);
                j += 1;
            }
        }
        merged.extend_from_slice(&old[i..]);
        merged.extend_from_slice(&new[j..]);
        self.ordered = merged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postings_find_the_series_of_a_label_pair() {
        let mut h = Head::default();
        for i in 0..10 {
            let (pod, ns) = (format!("p{i}"), format!("ns{}", i % 3));
            h.insert_series(
                &[("__name__", "up"), ("pod", &pod), ("ns", &ns)],
                &[(1000, 1.0)],
                0,
            );
        }
        // Known again: no second posting.
        h.insert_series(
            &[("__name__", "up"), ("pod", "p0"), ("ns", "ns0")],
            &[(2000, 1.0)],
            0,
        );
        assert_eq!(h.pair_count("ns", "ns0"), 4);
        assert_eq!(h.pair_count("__name__", "up"), 10);
        assert_eq!(h.pair_count("ns", "nope"), 0);
        let mut pods = Vec::new();
        h.visit_pair("ns", "ns1", |k, points| {
            pods.push((k.labels.to_string(), points.len()))
        });
        assert_eq!(
            pods,
            [
                (r#"{"ns":"ns1","pod":"p1"}"#.to_owned(), 1),
                (r#"{"ns":"ns1","pod":"p4"}"#.to_owned(), 1),
                (r#"{"ns":"ns1","pod":"p7"}"#.to_owned(), 1)
            ]
        );
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
        assert_eq!(days[&100].first().map(|(_, p)| p.len()), Some(2));
        assert_eq!(h.samples(), 0);
    }

    #[test]
    fn every_take_lists_series_in_key_order_as_new_ones_arrive() {
        let mut h = Head::default();
        let mut seen = Vec::new();
        // New series arrive out of order, between takes.
        for batch in [&["m", "c", "x"][..], &["a", "n", "c", "z", "b"][..]] {
            for name in batch {
                h.insert_series(&[("__name__", name)], &[(DAY_MS, 1.0)], 0);
            }
            let days = h.take();
            let names: Vec<String> = days[&1].iter().map(|(k, _)| k.metric.to_string()).collect();
            seen.push(names);
        }
        assert_eq!(seen[0], ["c", "m", "x"]);
        assert_eq!(seen[1], ["a", "b", "c", "n", "z"]);
        assert_eq!(h.series(), 0);
    }

    #[test]
    fn one_label_set_is_one_series_in_whatever_order_it_is_sent() {
        let mut h = Head::default();
        let sorted = [("__name__", "up"), ("job", "a"), ("zone", "z")];
        let shuffled = [("zone", "z"), ("__name__", "up"), ("job", "a")];
        // As a request holds them (canonically encoded), and as pairs in another order.
        let mut body = remote::Body::default();
        body.push(&remote::Body::labels(&sorted), DAY_MS, 1.0);
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body.finish())
            .unwrap();
        let req = remote::RequestRef::parse(&raw).unwrap();
        let series = req.series().next().unwrap();
        assert!(!series.encoded.is_empty());
        h.insert_ref(series, 0);
        h.insert_series(&shuffled, &[(DAY_MS + 15_000, 2.0)], 0);
        // Same values, other names: another series.
        h.insert_series(
            &[("__name__", "up"), ("jab", "a"), ("zone", "z")],
            &[(DAY_MS, 3.0)],
            0,
        );
        assert_eq!(h.series(), 2);
        let days = h.take();
        let up = &days[&1];
        assert_eq!(up.len(), 2);
        let (key, points) = &up[1];
        assert_eq!(&*key.labels, r#"{"job":"a","zone":"z"}"#);
        assert_eq!(
            points,
            &[(DAY_MS, 1f64.to_bits()), (DAY_MS + 15_000, 2f64.to_bits())]
        );
    }

    #[test]
    fn labels_become_sorted_json_without_the_name() {
        let mut p = vec![("zone", "a\"b"), ("__name__", "up"), ("az", "x\ny")];
        assert_eq!(labels_json(&mut p), r#"{"az":"x\ny","zone":"a\"b"}"#);
        assert_eq!(labels_json(&mut []), "{}");
    }
}
