//! The collector's own health, as `telltale_collector_*` families in an injected registry.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Duration of a collection cycle's phases (`phase` = read | encode).
pub const CYCLE_DURATION: &str = "telltale_collector_cycle_duration_seconds";
/// Collection cycles completed.
pub const CYCLES: &str = "telltale_collector_cycles_total";
/// Series in the latest snapshot.
pub const SERIES: &str = "telltale_collector_series";
/// Errors by source.
pub const ERRORS: &str = "telltale_collector_errors_total";
/// Cgroups being tracked.
pub const CGROUPS: &str = "telltale_collector_cgroups";
/// Size of the latest exposition.
pub const EXPOSITION_BYTES: &str = "telltale_collector_exposition_bytes";
/// File handles kept open between cycles.
pub const KEPT_FILES: &str = "telltale_collector_kept_files";
/// Reads of procfs and cgroup files.
pub const FILE_READS: &str = "telltale_collector_file_reads_total";

/// Every error source, pre-registered at 0 so that rate() works from the first failure.
pub const SOURCES: &[&str] = &[
    "stat",
    "meminfo",
    "loadavg",
    "netdev",
    "diskstats",
    "mountinfo",
    "filesystem",
    "netstat",
    "cgroup",
    "cgroup_discovery",
    "pod_network",
];

/// Handles to the collector's own metrics.
#[derive(Clone)]
pub struct Metrics {
    /// Phase durations.
    pub cycle_duration: HistogramVec,
    /// Cycles completed.
    pub cycles: IntCounter,
    /// Series in the latest snapshot.
    pub series: IntGauge,
    /// Errors by source.
    pub errors: IntCounterVec,
    /// Cgroups tracked.
    pub cgroups: IntGauge,
    /// Exposition size.
    pub exposition_bytes: IntGauge,
    /// Kept file handles.
    pub kept_files: IntGauge,
    /// File reads (read system calls).
    pub file_reads: IntCounter,
}

impl Metrics {
    /// Creates and registers the metrics in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ];
        let m = Metrics {
            cycle_duration: HistogramVec::new(
                HistogramOpts::new(
                    CYCLE_DURATION,
                    "Wall time of each collection cycle phase (read, encode).",
                )
                .buckets(buckets),
                &["phase"],
            )?,
            cycles: IntCounter::new(CYCLES, "Collection cycles completed.")?,
            series: IntGauge::new(
                SERIES,
                "Series in the latest snapshot (own metrics excluded).",
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    ERRORS,
                    "Read or parse errors by source; the affected series were skipped.",
                ),
                &["source"],
            )?,
            cgroups: IntGauge::new(CGROUPS, "Cgroups tracked.")?,
            exposition_bytes: IntGauge::new(
                EXPOSITION_BYTES,
                "Size of the latest exposition in bytes.",
            )?,
            kept_files: IntGauge::new(KEPT_FILES, "File handles kept open between cycles.")?,
            file_reads: IntCounter::new(
                FILE_READS,
                "Reads (read system calls) of procfs and cgroup files.",
            )?,
        };
        registry.register(Box::new(m.cycle_duration.clone()))?;
        registry.register(Box::new(m.cycles.clone()))?;
        registry.register(Box::new(m.series.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.cgroups.clone()))?;
        registry.register(Box::new(m.exposition_bytes.clone()))?;
        registry.register(Box::new(m.kept_files.clone()))?;
        registry.register(Box::new(m.file_reads.clone()))?;
        for s in SOURCES {
            m.errors.with_label_values(&[*s]);
        }
        Ok(m)
    }
}
