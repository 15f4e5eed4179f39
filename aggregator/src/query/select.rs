//! Finding a selector's series in the store: the day partitions its time range touches,
//! in each file only the row groups whose statistics can hold its metric and times, and
//! the head merged in.
//!
//! Rows are sorted by series, so a file's rows come in runs of one series: the matchers
//! are tried once per run, and a run that fails them is skipped without decoding its
//! labels.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Float64Array, StringArray, TimestampMillisecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::statistics::Statistics;
use promql_parser::label::{MatchOp, Matcher};

use super::{Labels, Series, NAME};
use crate::head::{Head, SeriesKey, DAY_MS};
use crate::partition::{self, column};

/// A found series: its labels and points.
type Points = (Arc<Labels>, Vec<(i64, f64)>);

/// Series found so far, by key, with their points in any order.
#[derive(Default)]
pub struct Found {
    series: HashMap<SeriesKey, Points, crate::head::Hash>,
    /// Decisions on keys already seen (`None`: the matchers reject it).
    seen: HashMap<SeriesKey, Option<Arc<Labels>>, crate::head::Hash>,
}

impl Found {
    /// The series, points sorted by time, a timestamp seen twice kept once (the first
    /// written), series without points left out; sorted by labels.
    pub fn finish(self) -> Vec<Series> {
        let mut out: Vec<Series> = self
            .series
            .into_values()
            .filter(|(_, p)| !p.is_empty())
            .map(|(labels, mut points)| {
                points.sort_by_key(|p| p.0);
                points.dedup_by_key(|p| p.0);
                Series { labels, points }
            })
            .collect();
        out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// The labels of `key` if it passes `matchers`, deciding once per key.
    fn accept(&mut self, key: &SeriesKey, matchers: &[Matcher]) -> Option<Arc<Labels>> {
        if let Some(d) = self.seen.get(key) {
            return d.clone();
        }
        let decision = if name_passes(&key.metric, matchers) {
            let labels = parse_labels(&key.metric, &key.labels);
            matchers
                .iter()
                .all(|m| m.is_match(labels.get(&m.name)))
                .then(|| Arc::new(labels))
        } else {
            None
        };
        self.seen.insert(key.clone(), decision.clone());
        decision
    }

    fn push(&mut self, key: &SeriesKey, labels: Arc<Labels>, t: i64, v: f64) {
        self.points(key, labels).push((t, v));
    }

    /// The points found so far of `key`.
    fn points(&mut self, key: &SeriesKey, labels: Arc<Labels>) -> &mut Vec<(i64, f64)> {
        &mut self
            .series
            .entry(key.clone())
            .or_insert_with(|| (labels, Vec::new()))
            .1
    }
}

/// Whether a metric name can pass the `__name__` matchers (the rest are tried later).
fn name_passes(metric: &str, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .filter(|m| m.name == NAME)
        .all(|m| m.is_match(metric))
}

/// The metric names' labels from the `labels` column's JSON object (keys sorted).
pub fn parse_labels(metric: &str, json: &str) -> Labels {
    let map: std::collections::BTreeMap<String, String> =
        serde_json::from_str(json).unwrap_or_default();
    let mut pairs: Vec<(String, String)> = map.into_iter().collect();
    pairs.push((NAME.to_owned(), metric.to_owned()));
    Labels::new(pairs)
}

/// The one metric name `matchers` ask for by equality, if any.
fn exact_name(matchers: &[Matcher]) -> Option<&str> {
    matchers
        .iter()
        .find(|m| m.name == NAME && m.op == MatchOp::Equal)
        .map(|m| m.value.as_str())
}

/// Adds what the files of every day partition touching `[mint, maxt]` hold.
pub fn from_files(
    data_dir: &Path,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    found: &mut Found,
) -> Result<(), partition::Error> {
    let (first, last) = (mint.div_euclid(DAY_MS), maxt.div_euclid(DAY_MS));
    for day in partition::days(data_dir) {
        if day < first || day > last {
            continue;
        }
        for path in partition::files(&partition::day_dir(data_dir, day)) {
            from_file(&path, matchers, mint, maxt, found)?;
        }
    }
    Ok(())
}

/// Row groups of a file that may hold rows of `name` (when given) in `[mint, maxt]`.
fn row_groups(
    meta: &parquet::file::metadata::ParquetMetaData,
    name: Option<&str>,
    mint: i64,
    maxt: i64,
) -> Vec<usize> {
    let schema = meta.file_metadata().schema_descr();
    let index = |col: &str| (0..schema.num_columns()).find(|&i| schema.column(i).name() == col);
    let (metric, ts) = (index("metric"), index("timestamp"));
    (0..meta.num_row_groups())
        .filter(|&g| {
            let rg = meta.row_group(g);
            let name_ok = match (name, metric.and_then(|i| rg.column(i).statistics())) {
                (Some(n), Some(Statistics::ByteArray(s))) => match (s.min_opt(), s.max_opt()) {
                    (Some(lo), Some(hi)) => lo.data() <= n.as_bytes() && n.as_bytes() <= hi.data(),
                    _ => true,
                },
                _ => true,
            };
            let time_ok = match ts.and_then(|i| rg.column(i).statistics()) {
                Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                    (Some(&lo), Some(&hi)) => lo <= maxt && hi >= mint,
                    _ => true,
                },
                _ => true,
            };
            name_ok && time_ok
        })
        .collect()
}

fn from_file(
    path: &Path,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    found: &mut Found,
) -> Result<(), partition::Error> {
    let format = |message: String| partition::Error::Format {
        path: path.to_owned(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| partition::Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| format(e.to_string()))?;
    let groups = row_groups(builder.metadata(), exact_name(matchers), mint, maxt);
    if groups.is_empty() {
        return Ok(());
    }
    if let Some(table) = partition::series_table(builder.metadata()) {
        return from_table(path, builder, &groups, table, matchers, mint, maxt, found);
    }
    let reader = builder
        .with_row_groups(groups)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| format(e.to_string()))?;
    let mut run: Option<(SeriesKey, Option<Arc<Labels>>)> = None;
    for batch in reader {
        let batch = batch.map_err(|e| format(e.to_string()))?;
        let m = column::<StringArray>(path, &batch, "metric")?;
        let l = column::<StringArray>(path, &batch, "labels")?;
        let t = column::<TimestampMillisecondArray>(path, &batch, "timestamp")?;
        let v = column::<Float64Array>(path, &batch, "value")?;
        for i in 0..batch.num_rows() {
            let ts = t.value(i);
            if ts < mint || ts > maxt {
                continue;
            }
            let (metric, labels) = (m.value(i), l.value(i));
            let same = matches!(&run, Some((k, _)) if &*k.metric == metric && &*k.labels == labels);
            if !same {
                let key = SeriesKey {
                    metric: metric.into(),
                    labels: labels.into(),
                };
                let decision = found.accept(&key, matchers);
                run = Some((key, decision));
            }
            if let Some((key, Some(labels))) = &run {
                found.push(key, labels.clone(), ts, v.value(i));
            }
        }
    }
    Ok(())
}

/// Reads only the rows of the series that pass `matchers`, found from the file's series
/// table, and of them only the `timestamp` and `value` columns.
#[allow(clippy::too_many_arguments)]
fn from_table(
    path: &Path,
    builder: ParquetRecordBatchReaderBuilder<std::fs::File>,
    groups: &[usize],
    table: Vec<(SeriesKey, u64, u64)>,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    found: &mut Found,
) -> Result<(), partition::Error> {
    use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
    let format = |message: String| partition::Error::Format {
        path: path.to_owned(),
        message,
    };
    // Wanted series' rows, in row order: (first, end, table index, labels).
    let wanted: Vec<(u64, u64, usize, Arc<Labels>)> = table
        .iter()
        .enumerate()
        .filter_map(|(i, (key, first, rows))| {
            let labels = found.accept(key, matchers)?;
            Some((*first, first + rows, i, labels))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    // The chosen row groups' row ranges, in file order.
    let meta = builder.metadata().clone();
    let mut starts = Vec::with_capacity(meta.num_row_groups());
    let mut row = 0u64;
    for g in 0..meta.num_row_groups() {
        starts.push(row);
        row += meta.row_group(g).num_rows() as u64;
    }
    let mut selectors: Vec<RowSelector> = Vec::new();
    // Per selected run: (table index, labels, rows).
    let mut runs: Vec<(usize, Arc<Labels>, usize)> = Vec::new();
    let mut kept: Vec<usize> = Vec::new();
    for &g in groups {
        let (gs, ge) = (starts[g], starts[g] + meta.row_group(g).num_rows() as u64);
        let mut at = gs;
        let mut any = false;
        let mut group_selectors = Vec::new();
        for (first, end, i, labels) in &wanted {
            let (s, e) = ((*first).max(gs), (*end).min(ge));
            if s >= e {
                continue;
            }
            if s > at {
                group_selectors.push(RowSelector::skip((s - at) as usize));
            }
            group_selectors.push(RowSelector::select((e - s) as usize));
            runs.push((*i, labels.clone(), (e - s) as usize));
            at = e;
            any = true;
        }
        if !any {
            continue;
        }
        if ge > at {
            group_selectors.push(RowSelector::skip((ge - at) as usize));
        }
        kept.push(g);
        selectors.extend(group_selectors);
    }
    if kept.is_empty() {
        return Ok(());
    }
    let mask =
        parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), ["timestamp", "value"]);
    let reader = builder
        .with_row_groups(kept)
        .with_row_selection(RowSelection::from(selectors))
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| format(e.to_string()))?;
    let mut runs = runs.into_iter();
    let mut current: Option<(usize, Arc<Labels>, usize)> = None;
    for batch in reader {
        let batch = batch.map_err(|e| format(e.to_string()))?;
        let t = column::<TimestampMillisecondArray>(path, &batch, "timestamp")?;
        let v = column::<Float64Array>(path, &batch, "value")?;
        let (t, v) = (t.values(), v.values());
        let mut i = 0;
        while i < t.len() {
            let (series, labels, left) = match current.take() {
                Some(c) if c.2 > 0 => c,
                _ => match runs.next() {
                    Some(r) => r,
                    None => return Err(format("more rows than the series table holds".into())),
                },
            };
            let n = left.min(t.len() - i);
            let points = found.points(&table[series].0, labels.clone());
            points.extend(
                t[i..i + n]
                    .iter()
                    .zip(&v[i..i + n])
                    .filter(|(ts, _)| **ts >= mint && **ts <= maxt)
                    .map(|(ts, v)| (*ts, *v)),
            );
            i += n;
            current = Some((series, labels, left - n));
        }
    }
    Ok(())
}

/// Adds what a flush has taken from the head and not yet written.
pub fn from_taken(
    days: &std::collections::BTreeMap<i64, crate::head::Sorted>,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    found: &mut Found,
) {
    let (first, last) = (mint.div_euclid(DAY_MS), maxt.div_euclid(DAY_MS));
    for (_, series) in days.range(first..=last) {
        for (key, points) in series {
            add_points(key, points, matchers, mint, maxt, found);
        }
    }
}

fn add_points(
    key: &SeriesKey,
    points: &[(i64, u64)],
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    found: &mut Found,
) {
    if !points.iter().any(|&(t, _)| t >= mint && t <= maxt) {
        return;
    }
    if let Some(labels) = found.accept(key, matchers) {
        for &(t, bits) in points.iter().filter(|&&(t, _)| t >= mint && t <= maxt) {
            found.push(key, labels.clone(), t, f64::from_bits(bits));
        }
    }
}

/// Adds what the head holds.
pub fn from_head(head: &Head, matchers: &[Matcher], mint: i64, maxt: i64, found: &mut Found) {
    head.visit(|key, points| add_points(key, points, matchers, mint, maxt, found));
}
