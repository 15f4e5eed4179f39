//! Rollup files: each complete day's samples summarised per series in 5-minute and
//! 1-hour buckets (`query::rollup::Bucket`), written beside the raw day partitions
//! (`data/resolution=5m/day=.../`, named in [`super::layout`]) so a long range reads a
//! few buckets per hour instead of every sample.
//!
//! Schema (one row per series and bucket, rows sorted by series, then bucket end; the
//! series table in the footer as in raw files, so the same planner finds a series' rows):
//!
//! | column | type |
//! |---|---|
//! | `metric`, `labels` | string, as in raw files |
//! | `timestamp` | the bucket's end, timestamp (ms, UTC); samples in `(end - width, end]` |
//! | `count`, `resets`, `changes` | uint32 |
//! | `sum`, `min`, `max`, `first`, `last`, `drops` | double |
//! | `first_timestamp`, `last_timestamp` | timestamp (ms, UTC) |
//!
//! A day is rolled up once it is over (plus [`SETTLE_MS`]) and again whenever its raw
//! files change (late samples flushed into it, a compaction): a rollup's name carries a
//! hash of the raw file names it was built from, so a day whose files changed has no
//! current rollup. Building streams the day's raw files series by series (their rows are
//! sorted by series), merging the files, so it holds one series at a time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{
    Array, DictionaryArray, Float64Array, Int32Array, RecordBatch, TimestampMillisecondArray,
    UInt32Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use telltale_model::calendar::DAY_MS;

use super::head::SeriesKey;
use super::layout;
use super::partition::{self, column, Error, SERIES_TABLE};
use crate::query::rollup::{bucketize, Bucket, Resolution};

/// How long after a day ends its rollups are first built (late samples of the last
/// minutes arrive and are flushed meanwhile).
pub const SETTLE_MS: i64 = 15 * 60_000;

/// Rows of rollups written per record batch while building.
const BATCH_ROWS: usize = 64 * 1024;

const FLOATS: [&str; 6] = ["sum", "min", "max", "first", "last", "drops"];
const COUNTS: [&str; 3] = ["count", "resets", "changes"];
const TIMES: [&str; 3] = ["timestamp", "first_timestamp", "last_timestamp"];

fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The rollup files' schema, string columns as the dictionaries they are written from.
fn dictionary_schema() -> Arc<Schema> {
    let dict = || DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let mut fields = vec![
        Field::new("metric", dict(), false),
        Field::new("labels", dict(), false),
    ];
    fields.extend(TIMES.iter().map(|n| Field::new(*n, time_type(), false)));
    fields.extend(
        COUNTS
            .iter()
            .map(|n| Field::new(*n, DataType::UInt32, false)),
    );
    fields.extend(
        FLOATS
            .iter()
            .map(|n| Field::new(*n, DataType::Float64, false)),
    );
    Arc::new(Schema::new(fields))
}

/// How rollup files of buckets `width` (ms) wide are written. Hourly files are LZ4: the
/// longest queries decode every hourly bucket of months, zstd's decoding was a third of
/// such a query's work and LZ4's is under half of that, for files 1.7 times as large
/// (still a fraction of a byte per raw sample). Five-minute files, twelve times as many
/// buckets, stay zstd: LZ4 made them 2.5 times as large. (BENCHMARKS.md, "Long ranges".)
fn properties(width: i64) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(if width >= Resolution::Hour.ms() {
            Compression::LZ4_RAW
        } else {
            Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default())
        })
        .set_dictionary_page_size_limit(partition::DICTIONARY_LIMIT)
        .set_data_page_row_count_limit(8192);
    for n in TIMES.iter().chain(&COUNTS) {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(*n), false)
            .set_column_encoding(ColumnPath::from(*n), Encoding::DELTA_BINARY_PACKED);
    }
    for n in FLOATS {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(n), false)
            .set_column_encoding(ColumnPath::from(n), Encoding::PLAIN);
    }
    b.build()
}

/// A hash of the raw files' names a rollup is built from (FNV-1a, stable across builds).
pub fn sources_hash(files: &[PathBuf]) -> u64 {
    let mut names: Vec<String> = files
        .iter()
        .filter_map(|f| Some(f.file_name()?.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for n in names {
        for b in n.bytes().chain(std::iter::once(b'\n')) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The current rollup file of `day` at `resolution`: the newest by name there (two only
/// after a crash between writing one and deleting the other).
pub fn current(data_dir: &Path, resolution: Resolution, day: i64) -> Option<PathBuf> {
    layout::parquet_files(&layout::rollup_day_dir(data_dir, resolution.name(), day))
        .into_iter()
        .last()
}

/// Writes one rollup file, record batch by record batch.
struct Writer {
    path: PathBuf,
    tmp: PathBuf,
    width: i64,
    writer: ArrowWriter<std::fs::File>,
    table: String,
    metrics: StringBuilder,
    labels: StringBuilder,
    index: Vec<i32>,
    series: i32,
    buckets: Vec<Bucket>,
}

impl Writer {
    fn create(dir: &Path, name: &str, width: i64) -> Result<Writer, Error> {
        let path = dir.join(name);
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = layout::temporary(dir, name);
        let file = std::fs::File::create(&tmp).map_err(io)?;
        let options = ArrowWriterOptions::new()
            .with_properties(properties(width))
            .with_skip_arrow_metadata(true);
        let writer = ArrowWriter::try_new_with_options(file, dictionary_schema(), options)
            .map_err(|e| Error::Format {
                path: path.clone(),
                message: e.to_string(),
            })?;
        Ok(Writer {
            path,
            tmp,
            width,
            writer,
            table: String::new(),
            metrics: StringBuilder::new(),
            labels: StringBuilder::new(),
            index: Vec::new(),
            series: 0,
            buckets: Vec::new(),
        })
    }

    fn format(&self, message: impl ToString) -> Error {
        Error::Format {
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    /// Adds a series' buckets (in order).
    fn push(&mut self, key: &SeriesKey, points: &[(i64, f64)]) -> Result<(), Error> {
        let buckets = bucketize(points, self.width);
        if buckets.is_empty() {
            return Ok(());
        }
        self.metrics.append_value(&*key.metric);
        self.labels.append_value(&*key.labels);
        self.table.push_str(&key.metric);
        self.table.push('\t');
        self.table.push_str(&key.labels);
        self.table.push('\t');
        self.table.push_str(&buckets.len().to_string());
        self.table.push('\n');
        self.index
            .extend(std::iter::repeat_n(self.series, buckets.len()));
        self.series += 1;
        self.buckets.extend(buckets);
        if self.buckets.len() >= BATCH_ROWS {
            self.write_batch()?;
        }
        Ok(())
    }

    fn write_batch(&mut self) -> Result<(), Error> {
        if self.buckets.is_empty() {
            return Ok(());
        }
        let b = std::mem::take(&mut self.buckets);
        let index = Int32Array::from(std::mem::take(&mut self.index));
        self.series = 0;
        let metric = DictionaryArray::try_new(index.clone(), Arc::new(self.metrics.finish()))
            .map_err(|e| self.format(e))?;
        let labels = DictionaryArray::try_new(index, Arc::new(self.labels.finish()))
            .map_err(|e| self.format(e))?;
        let time = |f: fn(&Bucket) -> i64| {
            Arc::new(
                TimestampMillisecondArray::from_iter_values(b.iter().map(f)).with_timezone("UTC"),
            ) as Arc<dyn Array>
        };
        let count = |f: fn(&Bucket) -> u32| {
            Arc::new(UInt32Array::from_iter_values(b.iter().map(f))) as Arc<dyn Array>
        };
        let float = |f: fn(&Bucket) -> f64| {
            Arc::new(Float64Array::from_iter_values(b.iter().map(f))) as Arc<dyn Array>
        };
        let columns: Vec<Arc<dyn Array>> = vec![
            Arc::new(metric),
            Arc::new(labels),
            time(|b| b.end),
            time(|b| b.first_t),
            time(|b| b.last_t),
            count(|b| b.count),
            count(|b| b.resets),
            count(|b| b.changes),
            float(|b| b.sum),
            float(|b| b.min),
            float(|b| b.max),
            float(|b| b.first),
            float(|b| b.last),
            float(|b| b.drops),
        ];
        let batch =
            RecordBatch::try_new(dictionary_schema(), columns).map_err(|e| self.format(e))?;
        self.writer.write(&batch).map_err(|e| self.format(e))?;
        Ok(())
    }

    /// Writes what is left and the series table, makes the file durable and renames it
    /// into place; returns its path.
    fn finish(mut self) -> Result<PathBuf, Error> {
        self.write_batch()?;
        let table = std::mem::take(&mut self.table);
        self.writer
            .append_key_value_metadata(parquet::file::metadata::KeyValue::new(
                SERIES_TABLE.to_owned(),
                table,
            ));
        let (path, tmp) = (self.path.clone(), self.tmp.clone());
        let file = self.writer.into_inner().map_err(|e| Error::Format {
            path: path.clone(),
            message: e.to_string(),
        })?;
        partition::publish(&file, &tmp, &path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

/// One raw file read series by series, in its row order.
struct FileSeries {
    path: PathBuf,
    table: std::vec::IntoIter<(SeriesKey, u64, u64)>,
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    batch: (Vec<i64>, Vec<f64>),
    at: usize,
    /// The next series and its points, read ahead.
    next: Option<(SeriesKey, Vec<(i64, f64)>)>,
}

impl FileSeries {
    fn open(path: PathBuf) -> Result<FileSeries, Error> {
        let format = |message: String| Error::Format {
            path: path.clone(),
            message,
        };
        let file = partition::open(&path)?;
        let meta = ArrowReaderMetadata::load(&file, Default::default())
            .map_err(|e| format(e.to_string()))?;
        let table = partition::series_table(meta.metadata())
            .ok_or_else(|| format("written before series tables; not rolled up".into()))?;
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta);
        let mask = parquet::arrow::ProjectionMask::columns(
            builder.parquet_schema(),
            ["timestamp", "value"],
        );
        let reader = builder
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| format(e.to_string()))?;
        let mut f = FileSeries {
            path,
            table: table.into_iter(),
            reader,
            batch: (Vec::new(), Vec::new()),
            at: 0,
            next: None,
        };
        f.advance()?;
        Ok(f)
    }

    /// Reads the next series into `next` (`None` at the end).
    fn advance(&mut self) -> Result<(), Error> {
        let Some((key, _, rows)) = self.table.next() else {
            self.next = None;
            return Ok(());
        };
        let mut points = Vec::with_capacity(rows as usize);
        let mut left = rows as usize;
        while left > 0 {
            if self.at == self.batch.0.len() {
                let batch = match self.reader.next() {
                    Some(b) => b.map_err(|e| Error::Format {
                        path: self.path.clone(),
                        message: e.to_string(),
                    })?,
                    None => {
                        return Err(Error::Format {
                            path: self.path.clone(),
                            message: "fewer rows than the series table holds".into(),
                        })
                    }
                };
                let t = column::<TimestampMillisecondArray>(&self.path, &batch, "timestamp")?;
                let v = column::<Float64Array>(&self.path, &batch, "value")?;
                self.batch = (t.values().to_vec(), v.values().to_vec());
                self.at = 0;
            }
            let n = left.min(self.batch.0.len() - self.at);
            let (t, v) = (
                &self.batch.0[self.at..self.at + n],
                &self.batch.1[self.at..self.at + n],
            );
            points.extend(t.iter().copied().zip(v.iter().copied()));
            self.at += n;
            left -= n;
        }
        self.next = Some((key, points));
        Ok(())
    }
}

/// What rolling up a day did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Built {
    /// Series rolled up.
    pub series: usize,
    /// Raw samples read.
    pub samples: usize,
}

/// Builds `day`'s rollups from its raw files unless the current ones were built from
/// exactly these files; `None` when there was nothing to do.
pub fn build_day(data_dir: &Path, day: i64) -> Result<Option<Built>, Error> {
    let raw = layout::parquet_files(&layout::day_dir(data_dir, day));
    if raw.is_empty() {
        return Ok(None);
    }
    let name = layout::rollup_file(sources_hash(&raw));
    let dirs: Vec<(Resolution, PathBuf)> = Resolution::ROLLUPS
        .iter()
        .map(|r| (*r, layout::rollup_day_dir(data_dir, r.name(), day)))
        .collect();
    if dirs.iter().all(|(_, d)| d.join(&name).exists()) {
        return Ok(None);
    }
    let mut files = raw
        .into_iter()
        .map(FileSeries::open)
        .collect::<Result<Vec<_>, _>>()?;
    let mut writers = dirs
        .iter()
        .map(|(r, d)| Writer::create(d, &name, r.ms()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut built = Built::default();
    let mut points: Vec<(i64, f64)> = Vec::new();
    // Every file is sorted by series: the smallest next key of all files is the next
    // series, its points taken from each file that has it.
    while let Some(key) = files
        .iter()
        .filter_map(|f| f.next.as_ref().map(|n| &n.0))
        .min()
        .cloned()
    {
        points.clear();
        for f in files.iter_mut() {
            if f.next.as_ref().is_some_and(|n| n.0 == key) {
                if let Some((_, p)) = f.next.take() {
                    points.extend(p);
                }
                f.advance()?;
            }
        }
        // As queries read them: by time, a timestamp seen twice kept once.
        points.sort_by_key(|p| p.0);
        points.dedup_by_key(|p| p.0);
        let (lo, hi) = (day * DAY_MS, (day + 1) * DAY_MS);
        points.retain(|p| p.0 >= lo && p.0 < hi);
        built.series += 1;
        built.samples += points.len();
        for w in writers.iter_mut() {
            w.push(&key, &points)?;
        }
    }
    for (w, (_, dir)) in writers.into_iter().zip(&dirs) {
        let path = w.finish()?;
        // The rollups built from older raw files are no longer current.
        for old in layout::parquet_files(dir) {
            if old != path {
                if let Err(e) = std::fs::remove_file(&old) {
                    tracing::warn!(file = %old.display(), error = %e, "cannot remove a replaced rollup file");
                }
            }
        }
    }
    Ok(Some(built))
}

/// Rolls up every day over by `now` (ms, plus [`SETTLE_MS`]) whose rollups are missing or
/// were built from other raw files; a day that cannot be rolled up is logged and left to
/// be answered from raw samples. Returns the days built.
pub fn maintain(data_dir: &Path, now: i64) -> Vec<(i64, Built)> {
    let mut out = Vec::new();
    for (day, _) in layout::day_dirs(data_dir) {
        if (day + 1) * DAY_MS + SETTLE_MS > now {
            continue;
        }
        let start = std::time::Instant::now();
        match build_day(data_dir, day) {
            Ok(Some(b)) => {
                let seconds = start.elapsed().as_secs_f64();
                tracing::info!(day = %telltale_model::calendar::day_name(day), series = b.series, samples = b.samples, seconds, "rolled up a day");
                out.push((day, b));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(day = %telltale_model::calendar::day_name(day), error = %e, "cannot roll up a day; its long-range queries read raw samples")
            }
        }
    }
    out
}
