//! The collector's own health, as `telltale_collector_*` families in an injected registry.

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
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

/// Samples appended to a destination's queue.
pub const REMOTE_QUEUED: &str = "telltale_collector_remote_samples_queued_total";
/// Samples delivered to a remote-write destination.
pub const REMOTE_SENT: &str = "telltale_collector_remote_samples_sent_total";
/// Samples whose request failed and will be sent again.
pub const REMOTE_RETRIED: &str = "telltale_collector_remote_samples_retried_total";
/// Samples given up, by destination and reason.
pub const DROPPED: &str = "telltale_collector_dropped_samples_total";
/// Bytes in a destination's queue.
pub const QUEUE_BYTES: &str = "telltale_collector_remote_queue_bytes";
/// Age of the oldest sample not yet delivered.
pub const QUEUE_AGE: &str = "telltale_collector_remote_queue_age_seconds";
/// Latency of remote-write requests.
pub const SEND_DURATION: &str = "telltale_collector_remote_send_duration_seconds";
/// 1 while a destination's queue is in memory because the disk failed.
pub const QUEUE_IN_MEMORY: &str = "telltale_collector_remote_queue_in_memory";

/// Every drop reason, pre-registered at 0 per destination.
pub const DROP_REASONS: &[&str] = &["buffer_full", "too_old", "rejected"];

/// Handles to the shipping metrics (one child per destination).
#[derive(Clone)]
pub struct ShipMetrics {
    /// Samples queued.
    pub queued: IntCounterVec,
    /// Delivered samples.
    pub sent: IntCounterVec,
    /// Samples sent again after a failure.
    pub retried: IntCounterVec,
    /// Dropped samples by reason.
    pub dropped: IntCounterVec,
    /// Queue size.
    pub queue_bytes: IntGaugeVec,
    /// Queue age.
    pub queue_age: GaugeVec,
    /// Request latency.
    pub send_duration: HistogramVec,
    /// Queue in memory.
    pub in_memory: IntGaugeVec,
}

impl ShipMetrics {
    /// Creates and registers the shipping metrics in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let d = &["destination"];
        let m = ShipMetrics {
            queued: IntCounterVec::new(
                Opts::new(
                    REMOTE_QUEUED,
                    "Samples appended to the destination's queue (stale markers included).",
                ),
                d,
            )?,
            sent: IntCounterVec::new(
                Opts::new(REMOTE_SENT, "Samples a remote-write destination accepted."),
                d,
            )?,
            retried: IntCounterVec::new(
                Opts::new(
                    REMOTE_RETRIED,
                    "Samples in requests that failed (5xx, 429, no answer) and are retried.",
                ),
                d,
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    DROPPED,
                    "Samples given up: buffer_full (over --buffer-max-bytes), too_old (over \
                     --buffer-max-age), rejected (a 4xx answer).",
                ),
                &["destination", "reason"],
            )?,
            queue_bytes: IntGaugeVec::new(
                Opts::new(
                    QUEUE_BYTES,
                    "Bytes in the destination's queue (disk and memory).",
                ),
                d,
            )?,
            queue_age: GaugeVec::new(
                Opts::new(
                    QUEUE_AGE,
                    "Age of the oldest sample not yet delivered (0 when all are).",
                ),
                d,
            )?,
            send_duration: HistogramVec::new(
                HistogramOpts::new(SEND_DURATION, "Latency of remote-write requests.").buckets(
                    vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ],
                ),
                d,
            )?,
            in_memory: IntGaugeVec::new(
                Opts::new(
                    QUEUE_IN_MEMORY,
                    "1 while the queue is kept in memory because the buffer disk failed.",
                ),
                d,
            )?,
        };
        registry.register(Box::new(m.queued.clone()))?;
        registry.register(Box::new(m.sent.clone()))?;
        registry.register(Box::new(m.retried.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.queue_bytes.clone()))?;
        registry.register(Box::new(m.queue_age.clone()))?;
        registry.register(Box::new(m.send_duration.clone()))?;
        registry.register(Box::new(m.in_memory.clone()))?;
        Ok(m)
    }

    /// Creates every child of `destination` at 0.
    pub fn init(&self, destination: &str) {
        self.queued.with_label_values(&[destination]);
        self.sent.with_label_values(&[destination]);
        self.send_duration.with_label_values(&[destination]);
        self.retried.with_label_values(&[destination]);
        for r in DROP_REASONS {
            self.dropped.with_label_values(&[destination, r]);
        }
        self.queue_bytes.with_label_values(&[destination]);
        self.queue_age.with_label_values(&[destination]);
        self.in_memory.with_label_values(&[destination]);
    }
}
