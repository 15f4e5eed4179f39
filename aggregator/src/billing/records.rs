//! Hourly billing records on disk: `<data-dir>/billing/day=YYYY-MM-DD/hour=HH.parquet`, one
//! file per settled UTC hour, rewritten whole (temporary name, fsync, rename) when late
//! data re-settles it.
//!
//! Schema (one row per pod and hour):
//!
//! | column | type |
//! |---|---|
//! | `hour`, `from`, `to` | timestamp (ms, UTC): the hour, and the part of it the pod ran |
//! | `cluster`, `namespace`, `workload_kind`, `workload`, `pod`, `uid` | string |
//! | `labels` | string, the pod's labels as a JSON object |
//! | `cpu`, `memory_gib` | decimal(38, 18): the billable size |
//! | `gpu` | string, a JSON object of extended resource → count |
//! | `rate` | decimal(38, 18): cost per second, spot multiplier applied |
//! | `seconds`, `cpu_core_seconds`, `memory_gib_seconds`, `gpu_seconds`, `cost` | decimal(38, 18) |
//!
//! Records keep 18 decimal places (no other rounding); DuckDB sums `cost` directly:
//! `SELECT namespace, sum(cost) FROM read_parquet('<data-dir>/billing/day=*/*.parquet')
//! WHERE hour >= ... GROUP BY namespace`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Decimal128Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{
    Array, ArrayRef, Decimal128Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use rust_decimal::Decimal;

use super::prices::Size;
use telltale_model::calendar::HOUR_MS;

use super::settle::{By, Record, Usage};
use crate::store::layout;
use crate::store::partition::{self, Error};

/// The string columns, in order (`gpu` comes after the size; see the table above).
const TEXT: [&str; 7] = [
    "cluster",
    "namespace",
    "workload_kind",
    "workload",
    "pod",
    "uid",
    "labels",
];

/// Decimal places kept in the files.
pub const SCALE: u32 = 18;

fn schema() -> Arc<Schema> {
    let ts = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let dec = || DataType::Decimal128(38, SCALE as i8);
    let mut fields = vec![
        Field::new("hour", ts(), false),
        Field::new("from", ts(), false),
        Field::new("to", ts(), false),
    ];
    for s in TEXT {
        fields.push(Field::new(s, DataType::Utf8, false));
    }
    fields.push(Field::new("cpu", dec(), false));
    fields.push(Field::new("memory_gib", dec(), false));
    fields.push(Field::new("gpu", DataType::Utf8, false));
    for d in [
        "rate",
        "seconds",
        "cpu_core_seconds",
        "memory_gib_seconds",
        "gpu_seconds",
        "cost",
    ] {
        fields.push(Field::new(d, dec(), false));
    }
    Arc::new(Schema::new(fields))
}

/// A decimal as the files' i128 at [`SCALE`] places.
pub fn to_i128(d: Decimal) -> i128 {
    let mut d = d.round_dp(SCALE);
    d.rescale(SCALE);
    d.mantissa()
}

/// Writes (or replaces) the file of `hour` with `records`; no records removes it.
pub fn write_hour(data_dir: &Path, hour: i64, records: &[Record]) -> Result<(), Error> {
    let path = layout::billing_hour_file(data_dir, hour);
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    if records.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        };
    }
    let format = |message: String| Error::Format {
        path: path.clone(),
        message,
    };
    let n = records.len();
    let mut times: Vec<TimestampMillisecondBuilder> = (0..3)
        .map(|_| TimestampMillisecondBuilder::with_capacity(n))
        .collect();
    let mut strings: Vec<StringBuilder> = (0..8).map(|_| StringBuilder::new()).collect();
    let mut decimals: Vec<Decimal128Builder> = (0..8)
        .map(|_| Decimal128Builder::with_capacity(n))
        .collect();
    for r in records {
        for (b, v) in times.iter_mut().zip([r.hour, r.from, r.to]) {
            b.append_value(v);
        }
        let labels = serde_json::to_string(&r.labels).unwrap_or_default();
        let gpu: BTreeMap<&String, String> = r
            .size
            .gpu
            .iter()
            .map(|(k, v)| (k, v.normalize().to_string()))
            .collect();
        let gpu = serde_json::to_string(&gpu).unwrap_or_default();
        let texts = [
            &r.cluster,
            &r.namespace,
            &r.workload_kind,
            &r.workload,
            &r.pod,
            &r.uid,
            &labels,
        ];
        for (b, v) in strings.iter_mut().zip(texts) {
            b.append_value(v);
        }
        let u = r.usage(i64::MIN, i64::MAX);
        let values = [
            r.size.cpu,
            r.size.memory_gib,
            r.rate,
            u.seconds,
            u.cpu_core_seconds,
            u.memory_gib_seconds,
            u.gpu_seconds,
            u.cost,
        ];
        for (b, v) in decimals.iter_mut().zip(values) {
            b.append_value(to_i128(v));
        }
        strings[7].append_value(&gpu);
    }
    let ts = |b: &mut TimestampMillisecondBuilder| -> ArrayRef {
        Arc::new(b.finish().with_timezone("UTC"))
    };
    let dec = |b: &mut Decimal128Builder| -> Result<ArrayRef, Error> {
        Ok(Arc::new(
            b.finish()
                .with_precision_and_scale(38, SCALE as i8)
                .map_err(|e| format(e.to_string()))?,
        ))
    };
    let mut columns: Vec<ArrayRef> = times.iter_mut().map(ts).collect();
    for b in strings.iter_mut().take(7) {
        columns.push(Arc::new(b.finish()));
    }
    columns.push(dec(&mut decimals[0])?);
    columns.push(dec(&mut decimals[1])?);
    columns.push(Arc::new(strings[7].finish()));
    for b in decimals.iter_mut().skip(2) {
        columns.push(dec(b)?);
    }
    let batch = RecordBatch::try_new(schema(), columns).map_err(|e| format(e.to_string()))?;
    let dir = path.parent().unwrap_or(data_dir);
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = layout::temporary(dir, &name);
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut w = ArrowWriter::try_new(file, schema(), Some(partition::properties()))
        .map_err(|e| format(e.to_string()))?;
    w.write(&batch).map_err(|e| format(e.to_string()))?;
    let file = w.into_inner().map_err(|e| format(e.to_string()))?;
    partition::publish(&file, &tmp, &path).map_err(io)?;
    Ok(())
}

/// The records of the hours in `[start, end)` (ms) that have files.
pub fn read_hours(data_dir: &Path, start: i64, end: i64) -> Result<Vec<Record>, Error> {
    let mut out = Vec::new();
    let mut hour = start.div_euclid(HOUR_MS) * HOUR_MS;
    while hour < end {
        let path = layout::billing_hour_file(data_dir, hour);
        if path.exists() {
            read_file(&path, &mut out)?;
        }
        hour += HOUR_MS;
    }
    Ok(out)
}

/// Sums `[start, end)` (ms) of the record files by `by` into `into`, without building
/// records: a record the window holds adds its stored columns; one the window cuts adds
/// its size and rate times the seconds inside.
pub fn sum_hours(
    data_dir: &Path,
    (start, end): (i64, i64),
    by: &By,
    into: &mut BTreeMap<String, Usage>,
) -> Result<(), Error> {
    // Only what the sums and the group need is decoded; the times, size and rate only
    // in the hours at the window's edges, where records may be cut.
    let group_columns: &[&str] = match by {
        By::Cluster => &["cluster"],
        By::Namespace => &["namespace"],
        By::Workload => &["namespace", "workload_kind", "workload"],
        By::Pod => &["namespace", "pod"],
        By::Label(_) => &["labels"],
    };
    // The hour files, shared out among the cores; each sums its own, then they merge.
    let mut files = Vec::new();
    let mut hour = start.div_euclid(HOUR_MS) * HOUR_MS;
    while hour < end {
        let path = layout::billing_hour_file(data_dir, hour);
        if path.exists() {
            files.push((path, hour >= start && hour + HOUR_MS <= end));
        }
        hour += HOUR_MS;
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let parts: Vec<Result<Sums, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let mine: Vec<_> = files.iter().skip(w).step_by(workers).collect();
                scope.spawn(move || {
                    let mut sums = Sums::default();
                    for (path, inside) in mine {
                        sum_file(path, *inside, (start, end), by, group_columns, &mut sums)?;
                    }
                    Ok(sums)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Format {
                        path: layout::billing_dir(data_dir),
                        message: "a billing report worker panicked".into(),
                    })
                })
            })
            .collect()
    });
    let mut sums = Sums::default();
    for part in parts {
        for (group, add) in part? {
            let s = sums.entry(group).or_default();
            s.iter_mut().zip(add).for_each(|(s, a)| *s += a);
        }
    }
    for (group, s) in sums {
        let u = Usage {
            seconds: from_scaled(s[0]),
            cpu_core_seconds: from_scaled(s[1]),
            memory_gib_seconds: from_scaled(s[2]),
            gpu_seconds: from_scaled(s[3]),
            cost: from_scaled(s[4]),
        };
        *into.entry(group).or_default() += u;
    }
    Ok(())
}

/// Per group: seconds, cpu, memory, gpu, cost as i128 at [`SCALE`] places.
type Sums = std::collections::HashMap<String, [i128; 5]>;

/// Stored sums read first, then the times, size and rate at the window's edges.
const STORED: [&str; 5] = [
    "seconds",
    "cpu_core_seconds",
    "memory_gib_seconds",
    "gpu_seconds",
    "cost",
];
const EDGE: [&str; 5] = ["from", "to", "cpu", "memory_gib", "rate"];

/// Adds one hour file to `sums` ([`sum_hours`]); `inside`: the window holds the hour.
fn sum_file(
    path: &Path,
    inside: bool,
    (start, end): (i64, i64),
    by: &By,
    group_columns: &[&str],
    sums: &mut Sums,
) -> Result<(), Error> {
    use partition::column;
    let path = path.to_owned();
    let mut wanted: Vec<&str> = STORED.iter().chain(group_columns).copied().collect();
    if !inside {
        wanted.extend(EDGE);
    }
    for batch in partition::batches_of(&path, Some(&wanted))? {
        let batch = batch?;
        let dec = |name| column::<Decimal128Array>(&path, &batch, name);
        let group: Vec<StringArray> = group_columns
            .iter()
            .map(|c| column::<StringArray>(&path, &batch, c))
            .collect::<Result<_, _>>()?;
        let stored: Vec<Decimal128Array> =
            STORED.iter().map(|c| dec(c)).collect::<Result<_, _>>()?;
        let edge = if inside {
            None
        } else {
            let ts = |name| column::<TimestampMillisecondArray>(&path, &batch, name);
            Some((
                ts("from")?,
                ts("to")?,
                dec("cpu")?,
                dec("memory_gib")?,
                dec("rate")?,
            ))
        };
        let mut key = String::new();
        for i in 0..batch.num_rows() {
            let add: [i128; 5] = match &edge {
                None => std::array::from_fn(|c| stored[c].value(i)),
                Some((from, to, cpu, memory, rate)) => {
                    let (f, t) = (from.value(i), to.value(i));
                    let (lo, hi) = (f.max(start), t.min(end));
                    if hi <= lo {
                        continue;
                    }
                    if (lo, hi) == (f, t) {
                        std::array::from_fn(|c| stored[c].value(i))
                    } else {
                        // Cut by the window: the part inside, from size and rate (gpu
                        // from its stored total per second of the whole record).
                        let part = i128::from(hi - lo);
                        let whole = i128::from(t - f);
                        [
                            part * 10i128.pow(SCALE - 3),
                            cpu.value(i) * part / 1000,
                            memory.value(i) * part / 1000,
                            stored[3].value(i) * part / whole,
                            rate.value(i) * part / 1000,
                        ]
                    }
                }
            };
            key.clear();
            match by {
                By::Label(name) => {
                    let l: BTreeMap<String, String> = serde_json::from_str(group[0].value(i))
                        .map_err(|e| Error::Format {
                            path: path.clone(),
                            message: format!("row {i}: labels: {e}"),
                        })?;
                    key.push_str(l.get(name).map_or("", String::as_str));
                }
                // namespace/kind/name, namespace/pod, or the one column.
                _ => {
                    for (c, col) in group.iter().enumerate() {
                        if c > 0 {
                            key.push('/');
                        }
                        key.push_str(col.value(i));
                    }
                }
            }
            match sums.get_mut(key.as_str()) {
                Some(s) => s.iter_mut().zip(add).for_each(|(s, a)| *s += a),
                None => {
                    sums.insert(key.clone(), add);
                }
            }
        }
    }
    Ok(())
}

/// An i128 at [`SCALE`] places as a decimal, giving up the last places when the value
/// is too large for one (beyond 7.9e10 units).
fn from_scaled(mut v: i128) -> Decimal {
    let mut scale = SCALE;
    loop {
        if let Ok(d) = Decimal::try_from_i128_with_scale(v, scale) {
            return d.normalize();
        }
        if scale == 0 {
            return if v < 0 { Decimal::MIN } else { Decimal::MAX };
        }
        v = (v + v.signum() * 5) / 10;
        scale -= 1;
    }
}

fn read_file(path: &Path, out: &mut Vec<Record>) -> Result<(), Error> {
    use partition::column;
    let format = |message: String| Error::Format {
        path: path.to_owned(),
        message,
    };
    for batch in partition::batches(path)? {
        let batch = batch?;
        let ts = |name| column::<TimestampMillisecondArray>(path, &batch, name);
        let text = |name| column::<StringArray>(path, &batch, name);
        let dec = |name| column::<Decimal128Array>(path, &batch, name);
        let (hour, from, to) = (ts("hour")?, ts("from")?, ts("to")?);
        let strings: Vec<StringArray> = TEXT
            .iter()
            .chain(&["gpu"])
            .map(|n| text(n))
            .collect::<Result<_, _>>()?;
        let (cpu, memory, rate) = (dec("cpu")?, dec("memory_gib")?, dec("rate")?);
        let d = |a: &Decimal128Array, i: usize| {
            Decimal::try_from_i128_with_scale(a.value(i), SCALE)
                .map(|d| d.normalize())
                .map_err(|e| format(e.to_string()))
        };
        for i in 0..batch.num_rows() {
            if hour.is_null(i) || from.is_null(i) || to.is_null(i) {
                return Err(format(format!("null time in row {i}")));
            }
            let s = |k: usize| strings[k].value(i).to_string();
            let labels = serde_json::from_str(strings[6].value(i))
                .map_err(|e| format(format!("row {i}: labels: {e}")))?;
            let gpu: BTreeMap<String, String> = serde_json::from_str(strings[7].value(i))
                .map_err(|e| format(format!("row {i}: gpu: {e}")))?;
            let gpu = gpu
                .into_iter()
                .map(|(k, v)| {
                    Ok((
                        k,
                        std::str::FromStr::from_str(&v)
                            .map_err(|e: rust_decimal::Error| format(e.to_string()))?,
                    ))
                })
                .collect::<Result<_, Error>>()?;
            out.push(Record {
                hour: hour.value(i),
                from: from.value(i),
                to: to.value(i),
                cluster: s(0),
                namespace: s(1),
                workload_kind: s(2),
                workload: s(3),
                pod: s(4),
                uid: s(5),
                labels,
                size: Size {
                    cpu: d(&cpu, i)?,
                    memory_gib: d(&memory, i)?,
                    gpu,
                },
                rate: d(&rate, i)?,
            });
        }
    }
    Ok(())
}
