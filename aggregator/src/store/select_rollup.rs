//! Finding a selector's buckets in rollup files: the counterpart of [`super::select`]
//! for `data/resolution=*/`. The same file cache and planner pick a file's row groups and
//! series runs; only the columns read differ. Days are read in parallel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Float64Array, TimestampMillisecondArray, UInt32Array};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};
use promql_parser::label::Matcher;

use super::head::Hash;
use super::partition::{self, column, Error};
use super::select::{self, FileCache, FileIndex, Found, Plan, Runs};
use crate::query::rollup::{merge_into, Bucket, Fields, RollupSeries};
use crate::query::Labels;

/// One series' buckets from one file.
pub type Part = (Arc<Labels>, Vec<Bucket>);

/// Parts of each series merged in the order they are added (days in time order), into
/// one vector of buckets per series.
///
/// A label set read from files is one `Arc` per series across files (the file cache), so
/// a part finds its series by the address of its labels, and by the labels themselves
/// (hashing every pair) only the first time an address is seen. Every address seen is
/// kept alive here, so it cannot come back holding another label set.
pub struct Merged {
    series: Vec<(Arc<Labels>, Vec<Bucket>)>,
    by_labels: HashMap<Arc<Labels>, usize, Hash>,
    by_address: HashMap<usize, (Arc<Labels>, usize), Hash>,
    /// Buckets each series' vector is allocated for.
    expected: usize,
}

impl Merged {
    /// Merging series of about `expected` buckets each.
    pub fn new(expected: usize) -> Merged {
        Merged {
            series: Vec::new(),
            by_labels: HashMap::default(),
            by_address: HashMap::default(),
            expected,
        }
    }

    /// Adds a series' part, after the parts added before it.
    pub fn add(&mut self, (labels, buckets): Part) {
        let address = Arc::as_ptr(&labels) as usize;
        let i = match self.by_address.get(&address) {
            Some(&(_, i)) => i,
            None => {
                let series = &mut self.series;
                let expected = self.expected;
                let i = *self.by_labels.entry(labels.clone()).or_insert_with(|| {
                    series.push((labels.clone(), Vec::with_capacity(expected)));
                    series.len() - 1
                });
                self.by_address.insert(address, (labels, i));
                i
            }
        };
        merge_into(&mut self.series[i].1, buckets);
    }

    /// The series with buckets ending in `[mint, maxt]`, sorted by labels.
    pub fn finish(self, mint: i64, maxt: i64) -> Vec<RollupSeries> {
        let mut out: Vec<RollupSeries> = self
            .series
            .into_iter()
            .filter_map(|(labels, mut buckets)| {
                buckets.retain(|b| b.end >= mint && b.end <= maxt);
                (!buckets.is_empty()).then_some(RollupSeries { labels, buckets })
            })
            .collect();
        out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

/// A planned read of one rollup file.
struct Read {
    path: PathBuf,
    index: Arc<FileIndex>,
    plans: Vec<Plan>,
}

/// The buckets ending in `[mint, maxt]` of the series passing `matchers`, from each of
/// `files` (in the order given; a file with nothing wanted gives nothing).
pub fn from_files(
    cache: &FileCache,
    files: &[PathBuf],
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    fields: Fields,
) -> Result<Vec<Vec<Part>>, Error> {
    let mut found = Found::default();
    let mut reads = Vec::with_capacity(files.len());
    super::bucket::remote::prefetch_footers(&cache.uncached(files));
    for path in files {
        let (index, candidates) = cache.index(path, matchers)?;
        let meta = index.meta.metadata().clone();
        let groups = select::row_groups(&meta, select::exact_name(matchers), mint, maxt);
        let Some(table) = &index.series else {
            return Err(Error::Format {
                path: path.clone(),
                message: "a rollup file without its series table".into(),
            });
        };
        let wanted = select::wanted_rows(candidates, &index, table, matchers, &mut found);
        let plans = select::plan(&meta, &groups, &wanted);
        reads.push(Read {
            path: path.clone(),
            index: index.clone(),
            plans,
        });
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = reads.len().div_ceil(cores).max(1);
    let results: Vec<Result<Vec<Vec<Part>>, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = reads
            .chunks(chunk)
            .map(|share| {
                scope.spawn(move || {
                    share
                        .iter()
                        .map(|r| read(r, mint, maxt, fields))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Format {
                        path: PathBuf::new(),
                        message: "a rollup reading thread failed".into(),
                    })
                })
            })
            .collect()
    });
    let mut out = Vec::with_capacity(files.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// The columns holding each field.
const COLUMNS: [(Fields, &[&str]); 9] = [
    (Fields::COUNT, &["count"]),
    (Fields::SUM, &["sum"]),
    (Fields::MIN, &["min"]),
    (Fields::MAX, &["max"]),
    (Fields::FIRST, &["first_timestamp", "first"]),
    (Fields::LAST, &["last_timestamp", "last"]),
    (Fields::DROPS, &["drops"]),
    (Fields::RESETS, &["resets"]),
    (Fields::CHANGES, &["changes"]),
];

/// The planned series runs of one file, buckets ending in `[mint, maxt]`, with only
/// `fields` read (the others left zero).
fn read(r: &Read, mint: i64, maxt: i64, fields: Fields) -> Result<Vec<Part>, Error> {
    let Some(table) = &r.index.series else {
        return Ok(Vec::new());
    };
    if r.plans.is_empty() {
        return Ok(Vec::new());
    }
    let path: &Path = &r.path;
    let format = |message: String| Error::Format {
        path: path.to_owned(),
        message,
    };
    let file = partition::open(path)?;
    let mut columns = vec!["timestamp"];
    for (f, names) in COLUMNS {
        if fields.has(f) {
            columns.extend_from_slice(names);
        }
    }
    if file.is_remote() {
        let meta = r.index.meta.metadata();
        let leaves = super::prefetch::leaves(meta, &columns);
        let ranges: Vec<_> = r
            .plans
            .iter()
            .flat_map(|p| super::prefetch::page_ranges(meta, p.group, &p.selectors, &leaves))
            .collect();
        file.prefetch(&ranges);
    }
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, r.index.meta.clone());
    let mask = parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), columns);
    let selectors: Vec<_> = r
        .plans
        .iter()
        .flat_map(|p| p.selectors.iter().copied())
        .collect();
    let reader = builder
        .with_row_groups(r.plans.iter().map(|p| p.group).collect())
        .with_row_selection(RowSelection::from(selectors))
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| format(e.to_string()))?;
    let mut runs = Runs::new(&r.plans);
    let mut out: Vec<(usize, Vec<Bucket>)> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format(e.to_string()))?;
        let wanted = |f: Fields| fields.has(f);
        let time = |n| column::<TimestampMillisecondArray>(path, &batch, n);
        let count = |f, n| {
            wanted(f)
                .then(|| column::<UInt32Array>(path, &batch, n))
                .transpose()
        };
        let float = |f, n| {
            wanted(f)
                .then(|| column::<Float64Array>(path, &batch, n))
                .transpose()
        };
        let end = time("timestamp")?;
        let first_t = wanted(Fields::FIRST)
            .then(|| time("first_timestamp"))
            .transpose()?;
        let last_t = wanted(Fields::LAST)
            .then(|| time("last_timestamp"))
            .transpose()?;
        let cnt = count(Fields::COUNT, "count")?;
        let resets = count(Fields::RESETS, "resets")?;
        let changes = count(Fields::CHANGES, "changes")?;
        let sum = float(Fields::SUM, "sum")?;
        let min = float(Fields::MIN, "min")?;
        let max = float(Fields::MAX, "max")?;
        let first = float(Fields::FIRST, "first")?;
        let last = float(Fields::LAST, "last")?;
        let drops = float(Fields::DROPS, "drops")?;
        let ts =
            |a: &Option<TimestampMillisecondArray>, j: usize| a.as_ref().map_or(0, |a| a.value(j));
        let u = |a: &Option<UInt32Array>, j: usize| a.as_ref().map_or(0, |a| a.value(j));
        let f = |a: &Option<Float64Array>, j: usize| a.as_ref().map_or(0.0, |a| a.value(j));
        let whole = runs.split(batch.num_rows(), &mut out, |buckets, rows| {
            for j in rows {
                let e = end.value(j);
                if e < mint || e > maxt {
                    continue;
                }
                buckets.push(Bucket {
                    end: e,
                    count: u(&cnt, j),
                    sum: f(&sum, j),
                    min: f(&min, j),
                    max: f(&max, j),
                    first_t: ts(&first_t, j),
                    first: f(&first, j),
                    last_t: ts(&last_t, j),
                    last: f(&last, j),
                    drops: f(&drops, j),
                    resets: u(&resets, j),
                    changes: u(&changes, j),
                });
            }
        });
        if !whole {
            return Err(format("more rows than the series table holds".into()));
        }
    }
    Ok(out
        .into_iter()
        .filter(|(_, b)| !b.is_empty())
        .map(|(i, b)| (table[i].1.clone(), b))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pod: &str) -> Arc<Labels> {
        Arc::new(Labels::new(vec![
            ("__name__".into(), "x".into()),
            ("pod".into(), pod.into()),
        ]))
    }

    /// Parts meet their series by address or, for a new address, by labels; days are
    /// merged in the order added and the series come out sorted by labels.
    #[test]
    fn parts_merge_by_address_or_by_labels() {
        let (a, b, a_again) = (labels("a"), labels("b"), labels("a"));
        let mut m = Merged::new(4);
        m.add((b.clone(), vec![Bucket::of(60, 30, 1.0)]));
        m.add((a.clone(), vec![Bucket::of(60, 60, 5.0)]));
        m.add((b, vec![Bucket::of(120, 90, 2.0)]));
        // Equal labels under another address: the same series.
        m.add((a_again, vec![Bucket::of(120, 120, 6.0)]));
        m.add((
            a,
            vec![Bucket::of(180, 150, 7.0), Bucket::of(240, 200, 8.0)],
        ));
        let out = m.finish(0, 180);
        let got: Vec<(String, Vec<(i64, f64)>)> = out
            .iter()
            .map(|s| {
                let pod = s.labels.get("pod").to_string();
                (pod, s.buckets.iter().map(|b| (b.end, b.last)).collect())
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), vec![(60, 5.0), (120, 6.0), (180, 7.0)]),
                ("b".to_string(), vec![(60, 1.0), (120, 2.0)]),
            ]
        );
    }
}
