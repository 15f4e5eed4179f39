//! `telltale import`: backfill Prometheus text-format or OpenMetrics files (samples with
//! timestamps) straight into the day partitions.
//!
//! A file whose last line is `# EOF` is OpenMetrics (timestamps in seconds); any other is
//! the Prometheus text format (timestamps in milliseconds). Lines are read one at a time;
//! the head is written to Parquet every [`FLUSH_EVERY`] samples, so memory stays bounded.
//! A line that cannot be imported (malformed, no timestamp, bad labels) is counted and the
//! first few are reported with file and line; the rest of the file goes on.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use telltale_model::parse::{key_labels, parse_line};

use crate::store::head::Head;
use crate::store::{layout, partition};

/// Samples held before an intermediate write.
pub const FLUSH_EVERY: usize = 5_000_000;
/// Problems reported in full (the rest are only counted).
const REPORTED: usize = 10;

/// Errors that stop an import.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the partitions failed.
    #[error(transparent)]
    Write(#[from] partition::Error),
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Samples written.
    pub imported: u64,
    /// Lines refused.
    pub rejected: u64,
    /// The first refusals, as `file:line: why`.
    pub problems: Vec<String>,
    /// Parquet files written.
    pub files: Vec<PathBuf>,
    /// Complete days whose 5-minute and 1-hour rollups were built afterwards.
    pub rolled_up: usize,
}

fn is_openmetrics(path: &Path) -> std::io::Result<bool> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(64)))?;
    let mut tail = String::new();
    f.read_to_string(&mut tail).ok();
    Ok(tail.trim_end().ends_with("# EOF"))
}

fn write(head: &mut Head, data_dir: &Path, n: &mut usize, out: &mut Summary) -> Result<(), Error> {
    let stamp = telltale_model::time::to_millis(std::time::SystemTime::now());
    for (day, series) in head.take() {
        let name = layout::import_file(stamp, *n);
        let (path, _) = partition::write_day(data_dir, day, series, &name)?;
        out.files.push(path);
    }
    *n += 1;
    Ok(())
}

/// Imports `files` into `data_dir`; `progress(bytes)` is called as input is read.
pub fn import(
    files: &[PathBuf],
    data_dir: &Path,
    progress: impl Fn(u64),
) -> Result<Summary, Error> {
    let mut out = Summary::default();
    let mut head = Head::default();
    let mut written = 0;
    for path in files {
        let read_err = |source| Error::Read {
            path: path.clone(),
            source,
        };
        let om = is_openmetrics(path).map_err(read_err)?;
        let mut reader =
            BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(read_err)?);
        let mut line = Vec::new();
        let mut no = 0usize;
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(read_err)?;
            if n == 0 {
                break;
            }
            no += 1;
            progress(n as u64);
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let refused = match parse_line(text) {
                Ok(None) => continue,
                Ok(Some((key, value, ts))) => match timestamp(ts, om) {
                    Err(why) => Some(why),
                    Ok(ts) => match key_labels(key) {
                        Err(why) => Some(why),
                        Ok(pairs) => {
                            let labels: Vec<_> = pairs
                                .iter()
                                .map(|(n, v)| (n.as_str(), v.as_str()))
                                .collect();
                            match crate::ingest::check_labels(0, &labels) {
                                Err(why) => Some(why.message().to_string()),
                                Ok(()) => {
                                    head.insert_series(&labels, &[(ts, value)], i64::MIN);
                                    out.imported += 1;
                                    None
                                }
                            }
                        }
                    },
                },
                Err(why) => Some(why),
            };
            if let Some(why) = refused {
                out.rejected += 1;
                if out.problems.len() < REPORTED {
                    out.problems.push(format!("{}:{no}: {why}", path.display()));
                }
            }
            if head.samples() >= FLUSH_EVERY {
                write(&mut head, data_dir, &mut written, &mut out)?;
            }
        }
    }
    if head.samples() > 0 {
        write(&mut head, data_dir, &mut written, &mut out)?;
    }
    // Long ranges over what was imported are answered from rollups at once, as they are
    // for days the aggregator rolled up itself.
    let now = telltale_model::time::to_millis(std::time::SystemTime::now());
    out.rolled_up = crate::store::rollup::maintain(data_dir, now).len();
    Ok(out)
}

/// A sample's timestamp in ms: seconds (may have a fraction) in OpenMetrics, integer ms
/// in the Prometheus text format. Backfill needs one.
fn timestamp(token: Option<&[u8]>, openmetrics: bool) -> Result<i64, String> {
    let t = token.ok_or("no timestamp (a backfill needs one on every sample)")?;
    let s = std::str::from_utf8(t).map_err(|_| "timestamp is not text".to_string())?;
    if openmetrics {
        let secs: f64 = s
            .parse()
            .map_err(|_| format!("timestamp {s:?} is not a number of seconds"))?;
        if !secs.is_finite() {
            return Err(format!("timestamp {s:?} is not finite"));
        }
        Ok((secs * 1000.0).round() as i64)
    } else {
        s.parse()
            .map_err(|_| format!("timestamp {s:?} is not an integer of milliseconds"))
    }
}
