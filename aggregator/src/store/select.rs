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
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelector};
use parquet::file::statistics::Statistics;
use promql_parser::label::{MatchOp, Matcher};

use telltale_model::calendar::DAY_MS;

use super::head::{Hash, Head, SeriesKey, Sorted};
use super::partition::{self, column};
use crate::query::{Labels, Series, NAME};

/// What a query needs of a file before reading rows: its footer and its series table with
/// each series' labels parsed, kept between queries (files are immutable; a compacted
/// file has a new name). One `Arc<Labels>` per series across files, so a query decides
/// each series once however many days it spans.
///
/// Bounded in bytes (`--query-cache-max-bytes`), as it counts them: footers by their
/// in-memory size, series tables and label sets (with their postings) by the bytes of
/// their strings plus a fixed overhead per entry. A file that would take the cache past
/// its bound first empties it; a file larger than the bound on its own is used by the
/// query that read it and not kept.
pub struct FileCache {
    inner: std::sync::Mutex<CacheInner>,
    max_bytes: usize,
}

/// What the file cache holds at most unless told otherwise.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

impl Default for FileCache {
    fn default() -> Self {
        FileCache::new(DEFAULT_CACHE_BYTES)
    }
}

#[derive(Default)]
struct CacheInner {
    /// Bytes held, as counted by [`table_cost`] and [`labels_cost`] plus footers' sizes.
    bytes: usize,
    files: HashMap<std::path::PathBuf, Arc<FileIndex>, Hash>,
    labels: HashMap<SeriesKey, Arc<Labels>, Hash>,
    /// The label sets holding each (name, value) pair: what an equality matcher looks up
    /// instead of trying every series of a file.
    postings: HashMap<(String, String), Vec<Arc<Labels>>, Hash>,
}

/// A file's index and the candidate label sets of a query's matchers.
pub(super) type Indexed = (Arc<FileIndex>, Option<Vec<Arc<Labels>>>);

impl CacheInner {
    /// The cached label sets holding the pair of the most selective equality matcher
    /// of `matchers` (a superset of those passing all); `None` without one.
    fn candidates(&self, matchers: &[Matcher]) -> Option<Vec<Arc<Labels>>> {
        matchers
            .iter()
            .filter(|m| m.op == MatchOp::Equal && !m.value.is_empty())
            .map(|m| {
                self.postings
                    .get(&(m.name.clone(), m.value.clone()))
                    .map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|list| list.len())
            .map(<[Arc<Labels>]>::to_vec)
    }
}

/// What a series table row costs the cache beyond its strings: the row, its entry in the
/// row index, and the key's two `Arc` headers.
const ROW_OVERHEAD: usize = std::mem::size_of::<TableRow>() + 48;

/// What one parsed label pair costs the cache beyond its strings: the pair in the label
/// set and its key and entry in the postings.
const PAIR_OVERHEAD: usize = 4 * std::mem::size_of::<String>() + 16;

/// Bytes a file's series table takes in the cache, its label sets left out.
fn table_cost(table: &[(SeriesKey, u64, u64)]) -> usize {
    table
        .iter()
        .map(|(k, _, _)| ROW_OVERHEAD + k.metric.len() + k.labels.len())
        .sum()
}

/// Bytes one label set takes in the cache, with its postings.
fn labels_cost(labels: &Labels) -> usize {
    64 + labels
        .0
        .iter()
        .map(|(n, v)| PAIR_OVERHEAD + 2 * (n.len() + v.len()))
        .sum::<usize>()
}

/// A series in a file: key, labels, first row, rows.
pub(super) type TableRow = (SeriesKey, Arc<Labels>, u64, u64);

/// A file's footer and series table.
pub struct FileIndex {
    pub(super) meta: parquet::arrow::arrow_reader::ArrowReaderMetadata,
    /// Per series in row order: key, labels, first row, rows; `None` for files written
    /// before the table existed.
    pub(super) series: Option<Vec<TableRow>>,
    /// Table index by labels address.
    rows: HashMap<usize, usize, Hash>,
    /// What the footer and the table take in the cache.
    cost: usize,
}

impl FileCache {
    /// A cache holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> FileCache {
        FileCache {
            inner: Default::default(),
            max_bytes,
        }
    }

    /// Those of `paths` whose index the cache does not hold.
    pub(super) fn uncached(&self, paths: &[std::path::PathBuf]) -> Vec<std::path::PathBuf> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        paths
            .iter()
            .filter(|p| !inner.files.contains_key(*p))
            .cloned()
            .collect()
    }

    /// Bytes held now, as the cache counts them (at most its bound).
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    /// Drops the files of `dir` that are no longer among `present` (compaction and
    /// retention remove files; their names are not reused).
    pub(super) fn forget_gone(&self, dir: &Path, present: &[std::path::PathBuf]) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut freed = 0;
        inner.files.retain(|path, index| {
            let keep = path.parent() != Some(dir) || present.contains(path);
            if !keep {
                freed += index.cost;
            }
            keep
        });
        inner.bytes = inner.bytes.saturating_sub(freed);
    }

    /// A file's index, and the candidates for `matchers` (see
    /// [`CacheInner::candidates`]), looked up together so both see the same postings.
    pub(super) fn index(
        &self,
        path: &Path,
        matchers: &[Matcher],
    ) -> Result<Indexed, partition::Error> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = inner.files.get(path) {
            let candidates = inner.candidates(matchers);
            return Ok((i.clone(), candidates));
        }
        let format = |message: String| partition::Error::Format {
            path: path.to_owned(),
            message,
        };
        let file = partition::open(path)?;
        file.prefetch_footer();
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new().with_page_index(true);
        let meta = parquet::arrow::arrow_reader::ArrowReaderMetadata::load(&file, options)
            .map_err(|e| format(e.to_string()))?;
        let table = partition::series_table(meta.metadata());
        // What keeping the file adds: its footer, its table, and the label sets not
        // cached yet (parsed once here).
        let rows = table.as_deref().unwrap_or_default();
        let mut parsed: Vec<Option<Labels>> = rows
            .iter()
            .map(|(key, _, _)| {
                (!inner.labels.contains_key(key)).then(|| parse_labels(&key.metric, &key.labels))
            })
            .collect();
        let fixed = meta.metadata().memory_size() + table_cost(rows);
        let added = |parsed: &[Option<Labels>]| {
            fixed + parsed.iter().flatten().map(labels_cost).sum::<usize>()
        };
        let mut cost = added(&parsed);
        if inner.bytes + cost > self.max_bytes {
            // Forget everything before adding, so this file's label sets are all posted.
            inner.files.clear();
            inner.labels.clear();
            inner.postings.clear();
            inner.bytes = 0;
            for (p, (key, _, _)) in parsed.iter_mut().zip(rows) {
                if p.is_none() {
                    *p = Some(parse_labels(&key.metric, &key.labels));
                }
            }
            cost = added(&parsed);
        }
        let keep = cost <= self.max_bytes;
        if keep {
            inner.bytes += fixed;
        }
        let series = table.map(|table| {
            table
                .into_iter()
                .zip(parsed)
                .map(|((key, first, rows), parsed)| {
                    let labels = match (inner.labels.get(&key), parsed) {
                        (Some(l), _) => l.clone(),
                        (None, parsed) => {
                            let l = Arc::new(
                                parsed.unwrap_or_else(|| parse_labels(&key.metric, &key.labels)),
                            );
                            if keep {
                                inner.bytes += labels_cost(&l);
                                inner.labels.insert(key.clone(), l.clone());
                                for pair in &l.0 {
                                    inner
                                        .postings
                                        .entry(pair.clone())
                                        .or_default()
                                        .push(l.clone());
                                }
                            }
                            l
                        }
                    };
                    (key, labels, first, rows)
                })
                .collect()
        });
        let rows = series
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, row): (usize, &TableRow)| (Arc::as_ptr(&row.1) as usize, i))
            .collect();
        let index = Arc::new(FileIndex {
            meta,
            series,
            rows,
            cost: fixed,
        });
        if !keep {
            return Ok((index, None));
        }
        inner.files.insert(path.to_owned(), index.clone());
        let candidates = inner.candidates(matchers);
        Ok((index, candidates))
    }
}

/// A found series: its labels and points.
type Points = (Arc<Labels>, Vec<(i64, f64)>);

/// Series found so far, by key, with their points in any order.
#[derive(Default)]
pub struct Found {
    series: HashMap<SeriesKey, Points, Hash>,
    /// Decisions on keys already seen (`None`: the matchers reject it).
    seen: HashMap<SeriesKey, Option<Arc<Labels>>, Hash>,
    /// Decisions on cached label sets, by address (the cache holds them).
    decided: HashMap<usize, bool, Hash>,
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

    /// Whether cached `labels` pass `matchers`, deciding once per label set.
    fn passes(&mut self, labels: &Arc<Labels>, matchers: &[Matcher]) -> bool {
        *self
            .decided
            .entry(Arc::as_ptr(labels) as usize)
            .or_insert_with(|| matchers.iter().all(|m| m.is_match(labels.get(&m.name))))
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
pub(super) fn exact_name(matchers: &[Matcher]) -> Option<&str> {
    matchers
        .iter()
        .find(|m| m.name == NAME && m.op == MatchOp::Equal)
        .map(|m| m.value.as_str())
}

/// Adds what the files of every day partition touching `[mint, maxt]` hold. Every file is
/// planned first (which rows of which row groups), then the planned rows of all files are
/// read at once, shared among the cores. A file compacted away between the two is planned
/// again from the files that replaced it (once: a second miss is an error).
pub fn from_files(
    data_dir: &Path,
    cache: &FileCache,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    found: &mut Found,
) -> Result<(), partition::Error> {
    let (first, last) = (mint.div_euclid(DAY_MS), maxt.div_euclid(DAY_MS));
    let once = |found: &mut Found| -> Result<(), partition::Error> {
        let mut files = Vec::new();
        for (day, dir) in super::layout::day_dirs(data_dir) {
            if day < first || day > last {
                continue;
            }
            let present = super::layout::parquet_files(&dir);
            cache.forget_gone(&dir, &present);
            files.extend(present);
        }
        super::bucket::remote::prefetch_footers(&cache.uncached(&files));
        let mut reads = Vec::new();
        for path in files {
            if let Some(read) = from_file(path, cache, matchers, mint, maxt, found)? {
                reads.push(read);
            }
        }
        read_all(&reads, mint, maxt, found)
    };
    match once(found) {
        Err(partition::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            once(found)
        }
        done => done,
    }
}

/// Row groups of a file that may hold rows of `name` (when given) in `[mint, maxt]`.
pub(super) fn row_groups(
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

/// What to read of one file with a series table: its plans, in row order.
pub(crate) struct FileRead {
    path: std::path::PathBuf,
    index: Arc<FileIndex>,
    plans: Vec<Plan>,
}

/// The planned read of a file with a series table (None when it holds nothing wanted);
/// a file written before series tables existed is read here, whole row groups.
pub(crate) fn from_file(
    path: std::path::PathBuf,
    cache: &FileCache,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    found: &mut Found,
) -> Result<Option<FileRead>, partition::Error> {
    let (index, candidates) = cache.index(&path, matchers)?;
    let groups = row_groups(index.meta.metadata(), exact_name(matchers), mint, maxt);
    if groups.is_empty() {
        return Ok(None);
    }
    if let Some(table) = &index.series {
        let wanted = wanted_rows(candidates, &index, table, matchers, found);
        let plans = plan(index.meta.metadata(), &groups, &wanted);
        return Ok((!plans.is_empty()).then_some(FileRead { path, index, plans }));
    }
    from_untabled(&path, &index, groups, matchers, mint, maxt, found)?;
    Ok(None)
}

/// Reads the row groups `groups` of a file without a series table, every column.
fn from_untabled(
    path: &Path,
    index: &FileIndex,
    groups: Vec<usize>,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    found: &mut Found,
) -> Result<(), partition::Error> {
    let format = |message: String| partition::Error::Format {
        path: path.to_owned(),
        message,
    };
    let file = partition::open(path)?;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, index.meta.clone());
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

/// The rows of `groups` to read for the `wanted` series (from the file's series table,
/// in row order): per row group, a row selection and the series runs it selects.
pub(super) fn plan(
    meta: &parquet::file::metadata::ParquetMetaData,
    groups: &[usize],
    wanted: &[(u64, u64, usize)],
) -> Vec<Plan> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let mut starts = Vec::with_capacity(meta.num_row_groups());
    let mut row = 0u64;
    for g in 0..meta.num_row_groups() {
        starts.push(row);
        row += meta.row_group(g).num_rows() as u64;
    }
    let mut plans: Vec<Plan> = Vec::new();
    for &g in groups {
        let (gs, ge) = (starts[g], starts[g] + meta.row_group(g).num_rows() as u64);
        let mut plan = Plan {
            group: g,
            selectors: Vec::new(),
            runs: Vec::new(),
            rows: 0,
        };
        let mut at = gs;
        // The wanted series overlapping this group (`wanted` is in row order).
        let from = wanted.partition_point(|w| w.1 <= gs);
        for &(first, end, i) in wanted[from..].iter().take_while(|w| w.0 < ge) {
            let (s, e) = (first.max(gs), end.min(ge));
            if s > at {
                plan.selectors.push(RowSelector::skip((s - at) as usize));
            }
            plan.selectors.push(RowSelector::select((e - s) as usize));
            plan.runs.push((i, (e - s) as usize));
            plan.rows += (e - s) as usize;
            at = e;
        }
        if plan.runs.is_empty() {
            continue;
        }
        if ge > at {
            plan.selectors.push(RowSelector::skip((ge - at) as usize));
        }
        plans.push(plan);
    }
    plans
}

/// A share of the reading: (file, its plans `from..to`) in order.
type Share = Vec<(usize, std::ops::Range<usize>)>;

/// What a share read: per (file, its plans), the series runs' points.
type ShareRead = Result<Vec<(usize, Vec<RunPoints>)>, partition::Error>;

/// Reads the planned rows of every file, only the `timestamp` and `value` columns, the
/// plans shared among the cores by rows to read (a single series over a week reads its
/// seven days two or more at a time), and adds the points to `found`.
pub(crate) fn read_all(
    reads: &[FileRead],
    mint: i64,
    maxt: i64,
    found: &mut Found,
) -> Result<(), partition::Error> {
    let total: usize = reads.iter().flat_map(|r| &r.plans).map(|p| p.rows).sum();
    let plans: usize = reads.iter().map(|r| r.plans.len()).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parts = cores.min(plans).max(1);
    let mut shares: Vec<Share> = vec![Vec::new(); parts];
    let mut taken = 0;
    for (f, read) in reads.iter().enumerate() {
        for (p, plan) in read.plans.iter().enumerate() {
            // The share this plan's first row falls in.
            let part = (taken * parts / total.max(1)).min(parts - 1);
            taken += plan.rows;
            let share = &mut shares[part];
            match share.last_mut() {
                Some((file, range)) if *file == f && range.end == p => range.end = p + 1,
                _ => share.push((f, p..p + 1)),
            }
        }
    }
    let read_share = |share: &Share| -> ShareRead {
        share
            .iter()
            .map(|(f, range)| {
                let r = &reads[*f];
                let meta = r.index.meta.clone();
                read_plans(&r.path, meta, &r.plans[range.clone()], mint, maxt).map(|p| (*f, p))
            })
            .collect()
    };
    let results: Vec<ShareRead> = if shares.len() == 1 {
        vec![read_share(&shares[0])]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = shares
                .iter()
                .filter(|s| !s.is_empty())
                .map(|share| scope.spawn(|| read_share(share)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(partition::Error::Format {
                            path: reads[0].path.clone(),
                            message: "a reading thread failed".into(),
                        })
                    })
                })
                .collect()
        })
    };
    // All or nothing, so a caller may plan and read again after an error.
    let results = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    for (f, runs) in results.into_iter().flatten() {
        let Some(table) = &reads[f].index.series else {
            continue;
        };
        for (i, points) in runs {
            let (key, labels, _, _) = &table[i];
            found.points(key, labels.clone()).extend(points);
        }
    }
    Ok(())
}

/// A table index and the points read of that series.
type RunPoints = (usize, Vec<(i64, f64)>);

/// The rows of a file's series that pass `matchers`, in row order: (first, end, table
/// index). With an equality matcher only the label sets holding its pair are tried.
pub(super) fn wanted_rows(
    candidates: Option<Vec<Arc<Labels>>>,
    index: &FileIndex,
    table: &[TableRow],
    matchers: &[Matcher],
    found: &mut Found,
) -> Vec<(u64, u64, usize)> {
    let mut wanted: Vec<(u64, u64, usize)> = match candidates {
        Some(candidates) => candidates
            .iter()
            .filter_map(|l| {
                let &i = index.rows.get(&(Arc::as_ptr(l) as usize))?;
                let (_, labels, first, rows) = &table[i];
                found
                    .passes(labels, matchers)
                    .then_some((*first, first + rows, i))
            })
            .collect(),
        None => table
            .iter()
            .enumerate()
            .filter_map(|(i, (_, labels, first, rows))| {
                found
                    .passes(labels, matchers)
                    .then_some((*first, first + rows, i))
            })
            .collect(),
    };
    wanted.sort_unstable();
    wanted
}

/// What to read of one row group: its row selection and the series runs it selects
/// (table index, rows).
pub(super) struct Plan {
    pub(super) group: usize,
    pub(super) selectors: Vec<parquet::arrow::arrow_reader::RowSelector>,
    pub(super) runs: Vec<(usize, usize)>,
    pub(super) rows: usize,
}

/// Reads the planned rows' timestamps and values: per run, the series and its points in
/// `[mint, maxt]`.
fn read_plans(
    path: &Path,
    meta: parquet::arrow::arrow_reader::ArrowReaderMetadata,
    plans: &[Plan],
    mint: i64,
    maxt: i64,
) -> Result<Vec<RunPoints>, partition::Error> {
    use parquet::arrow::arrow_reader::RowSelection;
    let format = |message: String| partition::Error::Format {
        path: path.to_owned(),
        message,
    };
    let file = partition::open(path)?;
    if file.is_remote() {
        let columns = super::prefetch::leaves(meta.metadata(), &["timestamp", "value"]);
        let ranges: Vec<_> = plans
            .iter()
            .flat_map(|p| {
                super::prefetch::page_ranges(meta.metadata(), p.group, &p.selectors, &columns)
            })
            .collect();
        file.prefetch(&ranges);
    }
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta);
    let mask =
        parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), ["timestamp", "value"]);
    let selectors: Vec<_> = plans
        .iter()
        .flat_map(|p| p.selectors.iter().copied())
        .collect();
    let reader = builder
        .with_row_groups(plans.iter().map(|p| p.group).collect())
        .with_row_selection(RowSelection::from(selectors))
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| format(e.to_string()))?;
    let mut runs = Runs::new(plans);
    let mut out: Vec<RunPoints> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format(e.to_string()))?;
        let t = column::<TimestampMillisecondArray>(path, &batch, "timestamp")?;
        let v = column::<Float64Array>(path, &batch, "value")?;
        let (t, v) = (t.values(), v.values());
        let whole = runs.split(t.len(), &mut out, |points, rows| {
            points.extend(
                t[rows.clone()]
                    .iter()
                    .zip(&v[rows])
                    .filter(|(ts, _)| **ts >= mint && **ts <= maxt)
                    .map(|(ts, v)| (*ts, *v)),
            );
        });
        if !whole {
            return Err(format("more rows than the series table holds".into()));
        }
    }
    Ok(out)
}

/// The planned series runs of a file's reads, handed out over the rows of the record
/// batches as they come (a run may span batches, a batch many runs).
pub(super) struct Runs<'p> {
    runs: Box<dyn Iterator<Item = (usize, usize)> + 'p>,
    /// The run under way: table index, rows left.
    current: Option<(usize, usize)>,
}

impl<'p> Runs<'p> {
    pub(super) fn new(plans: &'p [Plan]) -> Runs<'p> {
        Runs {
            runs: Box::new(plans.iter().flat_map(|p| p.runs.iter().copied())),
            current: None,
        }
    }

    /// Splits the next `rows` rows among the runs: `fill` gets each run's part, with the
    /// list of its series in `out` (a new entry when the series changes). False when
    /// the rows outnumber the runs.
    pub(super) fn split<T>(
        &mut self,
        rows: usize,
        out: &mut Vec<(usize, Vec<T>)>,
        mut fill: impl FnMut(&mut Vec<T>, std::ops::Range<usize>),
    ) -> bool {
        let mut i = 0;
        while i < rows {
            let (series, left) = match self.current.take() {
                Some(c) if c.1 > 0 => c,
                _ => match self.runs.next() {
                    Some(r) => r,
                    None => return false,
                },
            };
            let n = left.min(rows - i);
            if out.last().is_none_or(|o| o.0 != series) {
                out.push((series, Vec::with_capacity(n)));
            }
            if let Some((_, items)) = out.last_mut() {
                fill(items, i..i + n);
            }
            i += n;
            self.current = Some((series, left - n));
        }
        true
    }
}

/// Adds what a flush has taken from the head and not yet written.
pub fn from_taken(
    days: &std::collections::BTreeMap<i64, Sorted>,
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
/// With an equality matcher, only the series holding its pair are tried (the most
/// selective such matcher's).
pub fn from_head(head: &Head, matchers: &[Matcher], mint: i64, maxt: i64, found: &mut Found) {
    let add = |key: &SeriesKey, points: &[(i64, u64)], found: &mut Found| {
        add_points(key, points, matchers, mint, maxt, found)
    };
    let narrowest = matchers
        .iter()
        .filter(|m| m.op == MatchOp::Equal && !m.value.is_empty())
        .min_by_key(|m| head.pair_count(&m.name, &m.value));
    match narrowest {
        Some(m) => head.visit_pair(&m.name, &m.value, |k, p| add(k, p, found)),
        None => head.visit(|k, p| add(k, p, found)),
    }
}
