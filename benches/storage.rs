//! Bytes on disk per sample: one simulated day of a collector's data at 15 s, stored by
//! `telltale import` (our Parquet partitions) and by
//! `promtool tsdb create-blocks-from openmetrics` (Prometheus 2.42's TSDB blocks), from the
//! same OpenMetrics file, in one run. Then each encoding choice of our schema is measured
//! by writing the same rows again with that one choice changed.
//!
//! `cargo bench --bench storage` (BENCH_CYCLES=N for a shorter day; default 5,760 = 24 h
//! at 15 s; BENCH_EVERY=K keeps one series in K, default 10). The data is the real
//! collector's output on the fixture node (110 pods, 250 containers) with its counters
//! advanced between cycles the way a busy node's are (`common::workload`); one series in
//! K is kept (chosen by a hash of its labels, so the kinds stay mixed) to keep the text
//! file near a gigabyte.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed benchmark

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use arrow_array::TimestampMillisecondArray;
use arrow_array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;
use telltale_aggregator::store::head::Day;
use telltale_aggregator::store::partition;
use telltale_collector::fixture::{Driver, Node, Version};
use telltale_collector::ship::snapshot_samples;
use telltale_collector::Collector;

mod common;
use common::workload::Workload;
use common::{dir_bytes, fixture_dir, walk};

/// 2026-11-17T00:00:00Z: the simulated day starts at a UTC midnight, so it is one partition.
const DAY_START: u64 = 1_794_960_000;

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Writes the day as OpenMetrics; returns (series, samples).
fn generate(path: &Path, cycles: usize, every: u64) -> (usize, usize) {
    let fixture = fixture_dir();
    let node = Node::new(fixture.path(), Version::V2, Driver::Systemd).unwrap();
    let mut work = Workload::new(&node, 110, 250);
    let mut collector = Collector::new(
        &node.options("bench", "node-1"),
        prometheus::Registry::new(),
    )
    .unwrap();
    collector.index_samples(true);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let (mut series, mut samples) = (0, 0);
    for c in 0..cycles {
        work.step(&node);
        let secs = DAY_START + 15 * c as u64;
        let snap = collector.collect(UNIX_EPOCH + Duration::from_secs(secs));
        let kept = snapshot_samples(&snap)
            .into_iter()
            .filter(|(key, _)| {
                let mut h = std::hash::DefaultHasher::new();
                key.hash(&mut h);
                h.finish().is_multiple_of(every)
            })
            .inspect(|(key, v)| {
                out.write_all(key).unwrap();
                writeln!(out, " {} {secs}", number(*v)).unwrap();
            })
            .count();
        series = series.max(kept);
        samples += kept;
    }
    out.write_all(b"# EOF\n").unwrap();
    out.flush().unwrap();
    (series, samples)
}

/// Every row of our files, sorted by series then time, as the writer lays them out.
struct Rows {
    metric: Vec<Arc<str>>,
    labels: Vec<Arc<str>>,
    ts: Vec<i64>,
    values: Vec<f64>,
}

fn read_back(data_dir: &Path) -> Rows {
    let mut day = Day::default();
    for e in walk(data_dir) {
        if e.extension().is_some_and(|x| x == "parquet") {
            partition::read_file(&e, &mut day).unwrap();
        }
    }
    let mut series: Vec<_> = day.into_iter().collect();
    series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut rows = Rows {
        metric: Vec::new(),
        labels: Vec::new(),
        ts: Vec::new(),
        values: Vec::new(),
    };
    for (key, mut points) in series {
        points.sort_unstable();
        for (t, bits) in points {
            rows.metric.push(key.metric.clone());
            rows.labels.push(key.labels.clone());
            rows.ts.push(t);
            rows.values.push(f64::from_bits(bits));
        }
    }
    rows
}

/// The rows in time order instead of series order (as samples arrive).
fn time_major(rows: &Rows) -> Rows {
    let mut order: Vec<usize> = (0..rows.ts.len()).collect();
    order.sort_by_key(|&i| rows.ts[i]);
    Rows {
        metric: order.iter().map(|&i| rows.metric[i].clone()).collect(),
        labels: order.iter().map(|&i| rows.labels[i].clone()).collect(),
        ts: order.iter().map(|&i| rows.ts[i]).collect(),
        values: order.iter().map(|&i| rows.values[i]).collect(),
    }
}

/// Bytes of a Parquet file of `rows` under `props`; with `integers`, integral values go
/// to an int64 column and the double column holds only the others (nulls elsewhere).
fn encoded(rows: &Rows, props: WriterProperties, integers: bool) -> usize {
    let strings = |v: &[Arc<str>]| Arc::new(StringArray::from_iter_values(v.iter().map(|s| &**s)));
    let ts = Arc::new(TimestampMillisecondArray::from(rows.ts.clone()).with_timezone("UTC"));
    // The files' schema; with `integers`, its `value` becomes two nullable columns.
    let mut fields: Vec<Field> = partition::schema().fields()[..3]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<Arc<dyn Array>> = vec![strings(&rows.metric), strings(&rows.labels), ts];
    if integers {
        let integral = |v: f64| v.fract() == 0.0 && v.abs() < 9.0e15;
        fields.push(Field::new("value", DataType::Float64, true));
        fields.push(Field::new("value_int", DataType::Int64, true));
        columns.push(Arc::new(Float64Array::from_iter(
            rows.values.iter().map(|&v| (!integral(v)).then_some(v)),
        )));
        columns.push(Arc::new(Int64Array::from_iter(
            rows.values.iter().map(|&v| integral(v).then_some(v as i64)),
        )));
    } else {
        fields.push(Field::new("value", DataType::Float64, false));
        columns.push(Arc::new(Float64Array::from(rows.values.clone())));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut w = ArrowWriter::try_new(Vec::new(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.into_inner().unwrap().len()
}

/// Our writer's settings with one change.
fn with(
    change: impl FnOnce(WriterPropertiesBuilder) -> WriterPropertiesBuilder,
) -> WriterProperties {
    change(partition::properties().into_builder()).build()
}

fn main() {
    let cycles: usize = std::env::var("BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5760);
    let every: u64 = std::env::var("BENCH_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let text = work.path().join("day.om");
    let (series, samples) = generate(&text, cycles, every);
    println!(
        "storage: {series} series x {cycles} cycles at 15 s = {samples} samples ({:.0} MB of OpenMetrics)",
        std::fs::metadata(&text).unwrap().len() as f64 / 1e6
    );

    // Ours.
    let ours = work.path().join("telltale");
    let status = Command::new(env!("CARGO_BIN_EXE_telltale"))
        .args(["import", "--data-dir"])
        .arg(&ours)
        .arg(&text)
        .status()
        .unwrap();
    assert!(status.success(), "telltale import failed");
    let (our_bytes, our_files) = dir_bytes(&ours);
    let ours_per = our_bytes as f64 / samples as f64;
    println!("  telltale: {our_bytes} bytes in {our_files} files = {ours_per:.3} bytes per sample");

    // The anchor.
    let blocks = work.path().join("prometheus");
    match Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(&text)
        .arg(&blocks)
        .status()
    {
        Ok(s) if s.success() => {
            let (prom_bytes, prom_files) = dir_bytes(&blocks);
            let prom_per = prom_bytes as f64 / samples as f64;
            println!(
                "  anchor: Prometheus 2.42 TSDB blocks {prom_bytes} bytes in {prom_files} files = {prom_per:.3} bytes per sample; ours / Prometheus = {:.2}x (target <= 1.0x, stretch 0.6x)",
                ours_per / prom_per
            );
        }
        other => println!(
            "  anchor: promtool failed or is not installed (apt-get install prometheus): {other:?}"
        ),
    }
    std::fs::remove_file(&text).unwrap();

    // Each choice, against the same rows.
    let rows = read_back(&ours);
    assert_eq!(rows.ts.len(), samples, "every sample is in the files");
    let per = |bytes: usize| bytes as f64 / samples as f64;
    let chosen = encoded(&rows, partition::properties(), false);
    println!("  encoding choices (one file of all rows; bytes per sample):");
    println!(
        "    chosen (dictionary labels, delta timestamps, PLAIN values, zstd 3): {:.3}",
        per(chosen)
    );
    let ts = ColumnPath::from("timestamp");
    let value = ColumnPath::from("value");
    let variants: Vec<(&str, usize)> = vec![
        (
            "timestamps PLAIN instead of delta",
            encoded(
                &rows,
                with(|b| b.set_column_encoding(ts.clone(), Encoding::PLAIN)),
                false,
            ),
        ),
        (
            "timestamps dictionary instead of delta",
            encoded(
                &rows,
                with(|b| b.set_column_dictionary_enabled(ts.clone(), true)),
                false,
            ),
        ),
        (
            "values byte stream split instead of PLAIN",
            encoded(
                &rows,
                with(|b| b.set_column_encoding(value.clone(), Encoding::BYTE_STREAM_SPLIT)),
                false,
            ),
        ),
        (
            "values dictionary instead of PLAIN",
            encoded(
                &rows,
                with(|b| b.set_column_dictionary_enabled(value.clone(), true)),
                false,
            ),
        ),
        (
            "integral values in an int64 column (delta), others double",
            encoded(
                &rows,
                with(|b| {
                    b.set_column_dictionary_enabled(ColumnPath::from("value_int"), false)
                        .set_column_encoding(
                            ColumnPath::from("value_int"),
                            Encoding::DELTA_BINARY_PACKED,
                        )
                }),
                true,
            ),
        ),
        (
            "no compression instead of zstd 3",
            encoded(
                &rows,
                with(|b| b.set_compression(Compression::UNCOMPRESSED)),
                false,
            ),
        ),
        (
            "zstd 9 instead of zstd 3",
            encoded(
                &rows,
                with(|b| b.set_compression(Compression::ZSTD(ZstdLevel::try_new(9).unwrap()))),
                false,
            ),
        ),
        (
            "rows in time order instead of series order",
            encoded(&time_major(&rows), partition::properties(), false),
        ),
    ];
    for (what, bytes) in variants {
        println!(
            "    {what}: {:.3} ({:+.0}%)",
            per(bytes),
            (bytes as f64 / chosen as f64 - 1.0) * 100.0
        );
    }
}
