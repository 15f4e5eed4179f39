//! Day partitions of immutable Parquet files (`data/day=YYYY-MM-DD/part-*.parquet`, named
//! in [`super::layout`]).
//!
//! Schema (one row per sample, rows sorted by series, then time):
//!
//! | column | type | encoding |
//! |---|---|---|
//! | `metric` | string | dictionary + RLE (constant within a series) |
//! | `labels` | string, a JSON object with sorted keys, `__name__` left out | dictionary + RLE |
//! | `timestamp` | timestamp (ms, UTC), int64 | delta (collectors align samples, so deltas repeat) |
//! | `value` | double | PLAIN, no dictionary |
//!
//! The footer holds the series table (key `telltale.series`): each series' metric, labels
//! and row count in row order, so a query finds its series' rows from the footer alone.
//!
//! zstd on every column. The dictionary of `metric` and `labels` is the per-file series
//! table; sorted rows make their indices long runs, so a series costs its labels once per
//! file. Exact duplicates (series, timestamp, value bits) are written once. A file is
//! written under a temporary name, fsynced, then renamed into place. Each choice was
//! measured against its alternatives by `cargo bench --bench storage` (BENCHMARKS.md):
//! PLAIN values beat byte stream split by 4% under zstd, because zstd finds repeated
//! whole values (constant series) that split bytes hide.

use std::borrow::Borrow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{
    DictionaryArray, Float64Array, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::bucket::remote::{stored_len, Marker, Source};
use super::head::{Day, SeriesKey};
use super::layout;

/// Errors writing a file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Arrow or Parquet refused the data (a bug).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// The files' schema, as readers see it (the table above).
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new("labels", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("value", DataType::Float64, false),
    ]))
}

/// The writer's view of [`schema`]: the string columns as dictionaries.
fn dictionary_schema() -> Arc<Schema> {
    let dict = || DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let fields: Vec<Field> = schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => Field::new(f.name(), dict(), false),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The footer key of a file's series table: a line per series in row order,
/// `metric<TAB>labels<TAB>rows`, so a reader finds a series' rows without reading the
/// `metric` and `labels` columns.
pub const SERIES_TABLE: &str = "telltale.series";

/// A file's series and the rows each holds (first row, count), from its footer; `None`
/// for files written without the table.
pub fn series_table(
    meta: &parquet::file::metadata::ParquetMetaData,
) -> Option<Vec<(SeriesKey, u64, u64)>> {
    let text = meta
        .file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == SERIES_TABLE)?
        .value
        .as_deref()?;
    let mut out = Vec::new();
    let mut row = 0u64;
    for line in text.lines() {
        let mut parts = line.splitn(3, '\t');
        let (metric, labels, rows) = (parts.next()?, parts.next()?, parts.next()?);
        let rows: u64 = rows.parse().ok()?;
        let key = SeriesKey {
            metric: metric.into(),
            labels: labels.into(),
        };
        out.push((key, row, rows));
        row += rows;
    }
    (row == meta.file_metadata().num_rows() as u64).then_some(out)
}

/// Largest dictionary page: a row group's series table.
pub const DICTIONARY_LIMIT: usize = 256 << 20;

/// How every file is written (the schema table above); public so the storage benchmark can
/// measure each choice against it.
pub fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        // The dictionary of `labels` is the series table: it must hold every series of a
        // row group, or the writer falls back to repeating the label text on every row
        // (the default limit, 1 MiB, is about 4,000 series).
        .set_dictionary_page_size_limit(DICTIONARY_LIMIT)
        // Pages of at most 8,192 rows: a query of one series decodes a few small pages of
        // `timestamp` and `value` (found by the page index), not megabyte pages.
        .set_data_page_row_count_limit(8192)
        .set_column_dictionary_enabled(ColumnPath::from("timestamp"), false)
        .set_column_encoding(ColumnPath::from("timestamp"), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from("value"), false)
        .set_column_encoding(ColumnPath::from("value"), Encoding::PLAIN)
        .build()
}

/// Writes one day's samples as `name` in its partition; returns the path and rows written.
pub fn write_day(
    data_dir: &Path,
    day: i64,
    series: impl IntoIterator<Item = (impl Borrow<SeriesKey>, impl AsRef<[(i64, u64)]>)>,
    name: &str,
) -> Result<(PathBuf, usize), Error> {
    let dir = layout::day_dir(data_dir, day);
    let path = dir.join(name);
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut keys: Vec<_> = series.into_iter().collect();
    // The head hands its series over in order: then this is one pass of comparisons.
    keys.sort_unstable_by(|a, b| a.0.borrow().cmp(b.0.borrow()));
    let rows: usize = keys.iter().map(|(_, p)| p.as_ref().len()).sum();
    // `metric` and `labels` go to the writer as dictionaries (each series' strings once,
    // an index per row) rather than a copy of the label text on every row.
    let mut metrics = StringBuilder::new();
    let mut labels = StringBuilder::new();
    let mut index = Vec::with_capacity(rows);
    let (mut ts, mut values) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    let mut copy = Vec::new();
    let mut table = String::new();
    for (i, (key, points)) in keys.iter().enumerate() {
        let key: &SeriesKey = key.borrow();
        metrics.append_value(&*key.metric);
        labels.append_value(&*key.labels);
        let first_row = index.len();
        // Points nearly always arrive in order; others are sorted in a copy (the caller's
        // points may be shared with readers).
        let mut points = points.as_ref();
        if !points.windows(2).all(|w| w[0] < w[1]) {
            copy.clear();
            copy.extend_from_slice(points);
            copy.sort_unstable();
            copy.dedup();
            points = &copy;
        }
        let i = i32::try_from(i).map_err(|_| Error::Format {
            path: path.clone(),
            message: "more than 2^31 series in one file".into(),
        })?;
        for &(t, bits) in points {
            index.push(i);
            ts.push(t);
            values.push(f64::from_bits(bits));
        }
        // Metric names and JSON hold no raw tab or newline.
        table.push_str(&key.metric);
        table.push('\t');
        table.push_str(&key.labels);
        table.push('\t');
        table.push_str(&(index.len() - first_row).to_string());
        table.push('\n');
    }
    let written = ts.len();
    let format_err = |e: arrow_schema::ArrowError| Error::Format {
        path: path.clone(),
        message: e.to_string(),
    };
    let index = Int32Array::from(index);
    let metric =
        DictionaryArray::try_new(index.clone(), Arc::new(metrics.finish())).map_err(format_err)?;
    let labels = DictionaryArray::try_new(index, Arc::new(labels.finish())).map_err(format_err)?;
    let batch = RecordBatch::try_new(
        dictionary_schema(),
        vec![
            Arc::new(metric),
            Arc::new(labels),
            Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
            Arc::new(Float64Array::from(values)),
        ],
    )
    .map_err(format_err)?;
    let tmp = layout::temporary(&dir, name);
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let format = |e: parquet::errors::ParquetError| Error::Format {
        path: path.clone(),
        message: e.to_string(),
    };
    // No Arrow schema in the footer: readers see plain string columns (the Parquet
    // schema), not the dictionaries used to write them.
    let options = ArrowWriterOptions::new()
        .with_properties(properties())
        .with_skip_arrow_metadata(true);
    let mut w =
        ArrowWriter::try_new_with_options(file, dictionary_schema(), options).map_err(format)?;
    w.write(&batch).map_err(format)?;
    w.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
        SERIES_TABLE.to_owned(),
        table,
    ));
    let file = w.into_inner().map_err(format)?;
    publish(&file, &tmp, &path).map_err(io)?;
    Ok((path, written))
}

/// Makes `file`, written under the temporary name `tmp`, durable and renames it to
/// `path` in the same directory, so a reader sees the whole file or none of it.
pub fn publish(file: &std::fs::File, tmp: &Path, path: &Path) -> std::io::Result<()> {
    file.sync_all()?;
    std::fs::rename(tmp, path)?;
    // The rename itself is durable once the directory is (best effort).
    if let Some(Ok(d)) = path.parent().map(std::fs::File::open) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Opens a file of the store, the error naming it: on local disk, or read in place from
/// the object store when the file is a query node's placeholder.
pub fn open(path: &Path) -> Result<Source, Error> {
    Source::open(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// The record batches of a Parquet file.
pub fn batches(
    path: &Path,
) -> Result<impl Iterator<Item = Result<RecordBatch, Error>> + '_, Error> {
    batches_of(path, None)
}

/// The record batches of a Parquet file, only the named columns when `columns` is given
/// (the others are not decoded).
pub fn batches_of<'p>(
    path: &'p Path,
    columns: Option<&[&str]>,
) -> Result<impl Iterator<Item = Result<RecordBatch, Error>> + 'p, Error> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let format = |message: String| Error::Format {
        path: path.to_owned(),
        message,
    };
    let file = open(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| {
            let b = match columns {
                Some(names) => {
                    let mask = parquet::arrow::ProjectionMask::columns(
                        b.parquet_schema(),
                        names.iter().copied(),
                    );
                    b.with_projection(mask)
                }
                None => b,
            };
            b.build()
        })
        .map_err(|e| format(e.to_string()))?;
    Ok(reader.map(move |b| b.map_err(|e| format(e.to_string()))))
}

/// A column of `batch` as the array type `T` it must be.
pub fn column<T: arrow_array::Array + Clone + 'static>(
    path: &Path,
    batch: &RecordBatch,
    name: &str,
) -> Result<T, Error> {
    let format = |message: String| Error::Format {
        path: path.to_owned(),
        message,
    };
    batch
        .column_by_name(name)
        .ok_or_else(|| format(format!("no column {name}")))?
        .as_any()
        .downcast_ref::<T>()
        .cloned()
        .ok_or_else(|| format(format!("column {name} is not of the expected type")))
}

/// Calls `f` with each series of a file whose metric passes `wanted`, its newest
/// sample and when it was taken: rows are sorted by series, then time, so a series'
/// last row is its newest, and nothing else is kept.
pub fn newest(
    path: &Path,
    wanted: impl Fn(&str) -> bool,
    mut f: impl FnMut(&SeriesKey, i64, u64),
) -> Result<(), Error> {
    if newest_by_table(path, &wanted, &mut f)? {
        return Ok(());
    }
    let mut current: Option<(SeriesKey, i64, u64)> = None;
    for batch in batches(path)? {
        let batch = batch?;
        let m = column::<StringArray>(path, &batch, "metric")?;
        let l = column::<StringArray>(path, &batch, "labels")?;
        let t = column::<TimestampMillisecondArray>(path, &batch, "timestamp")?;
        let v = column::<Float64Array>(path, &batch, "value")?;
        for i in 0..batch.num_rows() {
            let (metric, labels) = (m.value(i), l.value(i));
            if !wanted(metric) {
                continue;
            }
            match &mut current {
                Some((k, ts, bits)) if &*k.metric == metric && &*k.labels == labels => {
                    if t.value(i) >= *ts {
                        (*ts, *bits) = (t.value(i), v.value(i).to_bits());
                    }
                }
                _ => {
                    if let Some((k, ts, bits)) = current.take() {
                        f(&k, ts, bits);
                    }
                    let key = SeriesKey {
                        metric: metric.into(),
                        labels: labels.into(),
                    };
                    current = Some((key, t.value(i), v.value(i).to_bits()));
                }
            }
        }
    }
    if let Some((k, ts, bits)) = current {
        f(&k, ts, bits);
    }
    Ok(())
}

/// [`newest`] through the file's series table: only the last row of each wanted series
/// is decoded (its `timestamp` and `value`). `false` when the file has no table.
fn newest_by_table(
    path: &Path,
    wanted: &impl Fn(&str) -> bool,
    f: &mut impl FnMut(&SeriesKey, i64, u64),
) -> Result<bool, Error> {
    use parquet::arrow::arrow_reader::{
        ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
    };
    let format = |message: String| Error::Format {
        path: path.to_owned(),
        message,
    };
    let file = open(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
        file,
        ArrowReaderOptions::new().with_page_index(true),
    )
    .map_err(|e| format(e.to_string()))?;
    let Some(table) = series_table(builder.metadata()) else {
        return Ok(false);
    };
    let picks: Vec<(&SeriesKey, u64)> = table
        .iter()
        .filter(|(k, _, rows)| *rows > 0 && wanted(&k.metric))
        .map(|(k, first, rows)| (k, first + rows - 1))
        .collect();
    if picks.is_empty() {
        return Ok(true);
    }
    let total = builder.metadata().file_metadata().num_rows() as u64;
    let mut selectors = Vec::with_capacity(picks.len() * 2 + 1);
    let mut at = 0;
    for &(_, row) in &picks {
        if row > at {
            selectors.push(RowSelector::skip((row - at) as usize));
        }
        selectors.push(RowSelector::select(1));
        at = row + 1;
    }
    if total > at {
        selectors.push(RowSelector::skip((total - at) as usize));
    }
    let mask =
        parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), ["timestamp", "value"]);
    let reader = builder
        .with_row_selection(RowSelection::from(selectors))
        .with_projection(mask)
        .build()
        .map_err(|e| format(e.to_string()))?;
    let mut picks = picks.into_iter();
    for batch in reader {
        let batch = batch.map_err(|e| format(e.to_string()))?;
        let t = column::<TimestampMillisecondArray>(path, &batch, "timestamp")?;
        let v = column::<Float64Array>(path, &batch, "value")?;
        for (t, v) in t.values().iter().zip(v.values()) {
            let (key, _) = picks
                .next()
                .ok_or_else(|| format("more rows than the series table holds".into()))?;
            f(key, *t, v.to_bits());
        }
    }
    Ok(true)
}

/// Reads every sample of a file back into `into` (series → points).
pub fn read_file(path: &Path, into: &mut Day) -> Result<usize, Error> {
    use arrow_array::Array;
    let format = |message: String| Error::Format {
        path: path.to_owned(),
        message,
    };
    let mut rows = 0;
    for batch in batches(path)? {
        let batch = batch?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format(format!("no column {name}")))
        };
        let (m, l, t, v) = (
            col("metric")?,
            col("labels")?,
            col("timestamp")?,
            col("value")?,
        );
        let m = m.as_any().downcast_ref::<StringArray>();
        let l = l.as_any().downcast_ref::<StringArray>();
        let t = t.as_any().downcast_ref::<TimestampMillisecondArray>();
        let v = v.as_any().downcast_ref::<Float64Array>();
        let (Some(m), Some(l), Some(t), Some(v)) = (m, l, t, v) else {
            return Err(format("columns are not of the Telltale schema".into()));
        };
        let mut last: Option<(usize, super::head::SeriesKey)> = None;
        for i in 0..batch.num_rows() {
            if m.is_null(i) || l.is_null(i) || t.is_null(i) || v.is_null(i) {
                return Err(format(format!("null in row {i}")));
            }
            // Rows of a series are adjacent: reuse its key.
            let key = match &last {
                Some((_, k)) if &*k.metric == m.value(i) && &*k.labels == l.value(i) => k.clone(),
                _ => super::head::SeriesKey {
                    metric: m.value(i).into(),
                    labels: l.value(i).into(),
                },
            };
            into.entry(key.clone())
                .or_default()
                .push((t.value(i), v.value(i).to_bits()));
            last = Some((i, key));
        }
        rows += batch.num_rows();
    }
    Ok(rows)
}

/// Files smaller than this are merged by compaction.
pub const SMALL_FILE: u64 = 8 << 20;
/// One compaction reads at most this many bytes of files.
pub const COMPACT_INPUT: u64 = 64 << 20;

/// What a compaction or scan did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Files merged away.
    pub merged: usize,
    /// Files written.
    pub written: usize,
    /// Unreadable files moved aside.
    pub quarantined: Vec<PathBuf>,
}

/// Moves an unreadable file to `<data-dir>/corrupt/<partition>/`, with an ERROR line.
pub fn quarantine(data_dir: &Path, path: &Path, why: &str) -> Option<PathBuf> {
    let part = path.parent()?.file_name()?;
    let dir = layout::quarantine_dir(data_dir, part);
    let to = dir.join(path.file_name()?);
    let moved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::rename(path, &to));
    match moved {
        Ok(()) => {
            tracing::error!(file = %path.display(), moved_to = %to.display(), why, "unreadable Parquet file moved aside; its samples are no longer served");
            Some(to)
        }
        Err(e) => {
            tracing::error!(file = %path.display(), why, error = %e, "unreadable Parquet file, and it cannot be moved aside");
            None
        }
    }
}

/// The small files of a day partition one compaction round merges (under
/// [`SMALL_FILE`], up to [`COMPACT_INPUT`] in all); empty unless two or more.
fn small_files(part: &Path) -> Vec<PathBuf> {
    let mut small = Vec::new();
    let mut total = 0;
    for f in layout::parquet_files(part) {
        let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        if len < SMALL_FILE && total + len <= COMPACT_INPUT {
            total += len;
            small.push(f);
        }
    }
    if small.len() < 2 {
        small.clear();
    }
    small
}

/// The days with small files to merge.
pub fn compactable_days(data_dir: &Path) -> Vec<i64> {
    layout::day_dirs(data_dir)
        .into_iter()
        .filter(|(_, part)| !small_files(part).is_empty())
        .map(|(day, _)| day)
        .collect()
}

/// Merges the small files of every partition (two or more) into one, dropping exact
/// duplicates; unreadable files are moved aside. The merged file is durable before the
/// files it replaces are deleted (a crash in between leaves exact duplicates, which the
/// next compaction drops). `replica` names the writer in the merged file's name.
pub fn compact(data_dir: &Path, replica: Option<&str>) -> Compacted {
    let mut out = Compacted::default();
    for day in compactable_days(data_dir) {
        let c = compact_day(data_dir, day, replica);
        out.merged += c.merged;
        out.written += c.written;
        out.quarantined.extend(c.quarantined);
    }
    out
}

/// [`compact`] for one day partition.
pub fn compact_day(data_dir: &Path, day: i64, replica: Option<&str>) -> Compacted {
    let mut out = Compacted::default();
    let part = layout::day_dir(data_dir, day);
    let name = layout::day_dir_name(day);
    let small = small_files(&part);
    if small.is_empty() {
        return out;
    }
    let mut day_data = Day::default();
    let mut read = Vec::new();
    for f in small {
        match read_file(&f, &mut day_data) {
            Ok(_) => read.push(f),
            Err(e) => {
                if let Some(q) = quarantine(data_dir, &f, &e.to_string()) {
                    out.quarantined.push(q);
                }
            }
        }
    }
    if read.len() < 2 {
        return out;
    }
    let stamp = telltale_model::time::to_millis(std::time::SystemTime::now());
    let merged_name = layout::compacted_file(stamp, read.len(), replica);
    match write_day(data_dir, day, day_data, &merged_name) {
        Ok(_) => {
            for f in &read {
                if let Err(e) = std::fs::remove_file(f) {
                    tracing::warn!(file = %f.display(), error = %e, "cannot remove a compacted file");
                }
            }
            out.merged += read.len();
            out.written += 1;
        }
        Err(e) => {
            tracing::warn!(partition = %name, error = %e, "compaction failed; the files stay as they are")
        }
    }
    out
}

/// The earliest day partition (days since the epoch), if any.
pub fn first_day(data_dir: &Path) -> Option<i64> {
    layout::day_dirs(data_dir).first().map(|&(day, _)| day)
}

/// Checks every file's footer; unreadable ones are moved aside. Returns them.
pub fn scan(data_dir: &Path) -> Vec<PathBuf> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut moved = Vec::new();
    for (_, part) in layout::day_dirs(data_dir) {
        for f in layout::parquet_files(&part) {
            if Marker::read(&f).is_some() {
                // Read in place: its footer is checked when a query first opens it.
                continue;
            }
            let ok = std::fs::File::open(&f)
                .map_err(|e| e.to_string())
                .and_then(|file| SerializedFileReader::new(file).map_err(|e| e.to_string()))
                .map(|r| r.metadata().file_metadata().num_rows());
            if let Err(why) = ok {
                if let Some(q) = quarantine(data_dir, &f, &why) {
                    moved.push(q);
                }
            }
        }
    }
    moved
}

/// What one day partition holds on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Parquet files.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Files and bytes of every day partition, by day.
pub fn usage(data_dir: &Path) -> Vec<Usage> {
    layout::day_dirs(data_dir)
        .into_iter()
        .map(|(day, part)| {
            let files = layout::parquet_files(&part);
            let bytes = files.iter().filter_map(|f| stored_len(f)).sum();
            Usage {
                day: telltale_model::calendar::day_name(day),
                files: files.len(),
                bytes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::head::Head;
    use crate::store::layout::day_dir;
    use telltale_model::calendar::DAY_MS;
    use telltale_model::remote::{Label, Sample, TimeSeries, WriteRequest};

    fn req(name: &str, points: &[(i64, f64)]) -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: name.into(),
                    },
                    Label {
                        name: "pod".into(),
                        value: "p".into(),
                    },
                ],
                samples: points
                    .iter()
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
            }],
        }
    }

    fn flush(dir: &Path, h: &mut Head, n: usize) {
        for (day, series) in h.take() {
            write_day(dir, day, series, &format!("part-{n}.parquet")).unwrap();
        }
    }

    #[test]
    fn small_files_merge_into_one_without_duplicates_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let d = 20_000 * DAY_MS;
        let mut h = Head::default();
        h.insert(&req("a", &[(d + 1000, 1.0), (d + 2000, 2.0)]), 0);
        flush(dir.path(), &mut h, 1);
        // Later, an out-of-order sample and an exact duplicate.
        h.insert(&req("a", &[(d + 500, 0.5), (d + 2000, 2.0)]), 0);
        h.insert(&req("b", &[(d + 1000, f64::NAN)]), 0);
        flush(dir.path(), &mut h, 2);
        let part = day_dir(dir.path(), 20_000);
        assert_eq!(layout::parquet_files(&part).len(), 2);
        let c = compact(dir.path(), None);
        assert_eq!((c.merged, c.written), (2, 1));
        let left = layout::parquet_files(&part);
        assert_eq!(left.len(), 1);
        let mut back = Day::default();
        assert_eq!(read_file(&left[0], &mut back).unwrap(), 4);
        let a = back.iter().find(|(k, _)| &*k.metric == "a").unwrap().1;
        assert_eq!(
            a,
            &vec![
                (d + 500, 0.5f64.to_bits()),
                (d + 1000, 1f64.to_bits()),
                (d + 2000, 2f64.to_bits())
            ]
        );
    }

    #[test]
    fn an_unreadable_file_is_moved_aside_and_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Head::default();
        h.insert(&req("a", &[(5 * DAY_MS, 1.0)]), 0);
        flush(dir.path(), &mut h, 1);
        let part = day_dir(dir.path(), 5);
        std::fs::write(part.join("part-9.parquet"), b"PAR1 this is not parquet").unwrap();
        let moved = scan(dir.path());
        assert_eq!(moved.len(), 1);
        assert!(moved[0].starts_with(dir.path().join("corrupt")));
        assert_eq!(layout::parquet_files(&part).len(), 1);
        let mut back = Day::default();
        assert_eq!(
            read_file(&layout::parquet_files(&part)[0], &mut back).unwrap(),
            1
        );
    }
}
