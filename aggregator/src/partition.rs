//! Day partitions of immutable Parquet files:
//! `<data-dir>/data/day=YYYY-MM-DD/part-<first flush ms>-<n>.parquet`.
//!
//! Schema (one row per sample, rows sorted by series, then time):
//!
//! | column | type | encoding |
//! |---|---|---|
//! | `metric` | string | dictionary + RLE (constant within a series) |
//! | `labels` | string, a JSON object with sorted keys, `__name__` left out | dictionary + RLE |
//! | `timestamp` | timestamp (ms, UTC), int64 | delta (collectors align samples, so deltas repeat) |
//! | `value` | double | byte stream split, no dictionary |
//!
//! zstd on every column. The dictionary of `metric` and `labels` is the per-file series
//! table; sorted rows make their indices long runs, so a series costs its labels once per
//! file. Exact duplicates (series, timestamp, value bits) are written once. A file is
//! written under a temporary name, fsynced, then renamed into place.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::head::{day_name, Day};

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

/// The directory of a day partition.
pub fn day_dir(data_dir: &Path, day: i64) -> PathBuf {
    data_dir.join("data").join(format!("day={}", day_name(day)))
}

fn schema() -> Arc<Schema> {
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

fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_column_dictionary_enabled(ColumnPath::from("timestamp"), false)
        .set_column_encoding(ColumnPath::from("timestamp"), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from("value"), false)
        .set_column_encoding(ColumnPath::from("value"), Encoding::BYTE_STREAM_SPLIT)
        .build()
}

/// Writes one day's samples as `name` in its partition; returns the path and rows written.
pub fn write_day(
    data_dir: &Path,
    day: i64,
    series: Day,
    name: &str,
) -> Result<(PathBuf, usize), Error> {
    let dir = day_dir(data_dir, day);
    let path = dir.join(name);
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut keys: Vec<_> = series.into_iter().collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let rows: usize = keys.iter().map(|(_, p)| p.len()).sum();
    let (mut metric, mut labels) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    let (mut ts, mut values) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    for (key, mut points) in keys {
        points.sort_unstable();
        points.dedup();
        for (t, bits) in points {
            metric.push(key.metric.clone());
            labels.push(key.labels.clone());
            ts.push(t);
            values.push(f64::from_bits(bits));
        }
    }
    let written = ts.len();
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter_values(metric.iter().map(|m| &**m))),
            Arc::new(StringArray::from_iter_values(labels.iter().map(|l| &**l))),
            Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
            Arc::new(Float64Array::from(values)),
        ],
    )
    .map_err(|e| Error::Format {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let format = |e: parquet::errors::ParquetError| Error::Format {
        path: path.clone(),
        message: e.to_string(),
    };
    let mut w = ArrowWriter::try_new(file, schema(), Some(properties())).map_err(format)?;
    w.write(&batch).map_err(format)?;
    let file = w.into_inner().map_err(format)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok((path, written))
}
