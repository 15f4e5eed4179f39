//! The aggregator's own health, as `telltale_aggregator_*` families in an injected registry.

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Samples accepted (in the WAL).
pub const INGESTED: &str = "telltale_aggregator_samples_ingested_total";
/// Requests refused, by reason.
pub const REJECTED: &str = "telltale_aggregator_requests_rejected_total";
/// WAL bytes written since start.
pub const WAL_BYTES: &str = "telltale_aggregator_wal_bytes_total";
/// Bytes of the WAL's segments on disk.
pub const WAL_SIZE: &str = "telltale_aggregator_wal_size_bytes";
/// WAL fsyncs since start (one per group of requests).
pub const WAL_SYNCS: &str = "telltale_aggregator_wal_fsyncs_total";

/// Samples accepted but older than retention, so not stored.
pub const TOO_OLD: &str = "telltale_aggregator_samples_too_old_total";
/// Samples in the head.
pub const HEAD_SAMPLES: &str = "telltale_aggregator_head_samples";
/// Series in the head.
pub const HEAD_SERIES: &str = "telltale_aggregator_head_series";
/// Flush duration.
pub const FLUSH_DURATION: &str = "telltale_aggregator_flush_duration_seconds";
/// Compaction duration.
pub const COMPACTION_DURATION: &str = "telltale_aggregator_compaction_duration_seconds";
/// Unreadable files moved aside.
pub const CORRUPT_FILES: &str = "telltale_aggregator_corrupt_files_total";
/// Parquet files per day partition.
pub const PARTITION_FILES: &str = "telltale_aggregator_partition_files";
/// Bytes of Parquet files per day partition.
pub const PARTITION_BYTES: &str = "telltale_aggregator_partition_bytes";
/// Cost so far this UTC hour and month, by namespace.
pub const BILLING_COST: &str = "telltale_aggregator_billing_cost";
/// Namespaces [`BILLING_COST`] names at most (by month cost); the rest are summed as
/// `namespace="_other"`.
pub const BILLING_NAMESPACES: usize = 200;

/// Days rolled up (5-minute and 1-hour rollups built or rebuilt).
pub const ROLLUP_DAYS: &str = "telltale_aggregator_rollup_days_total";
/// Time to roll up the days a round found changed.
pub const ROLLUP_DURATION: &str = "telltale_aggregator_rollup_duration_seconds";
/// Bytes the query cache of file footers, series tables and label sets holds.
pub const QUERY_CACHE_BYTES: &str = "telltale_aggregator_query_cache_bytes";

/// 1 while the object store answers, 0 once an operation on it failed (until one works).
pub const OBJECT_STORE_UP: &str = "telltale_aggregator_object_store_up";
/// Files uploaded to the object store.
pub const OBJECT_STORE_UPLOADED: &str = "telltale_aggregator_object_store_uploaded_files_total";
/// Bytes uploaded to the object store.
pub const OBJECT_STORE_UPLOADED_BYTES: &str =
    "telltale_aggregator_object_store_uploaded_bytes_total";
/// Objects deleted from the object store (their files were compacted or retired).
pub const OBJECT_STORE_DELETED: &str = "telltale_aggregator_object_store_deleted_files_total";
/// Files downloaded from the object store (at start; on a query node, as it follows it).
pub const OBJECT_STORE_RESTORED: &str = "telltale_aggregator_object_store_restored_files_total";
/// Files on local disk not yet in the object store.
pub const OBJECT_STORE_PENDING: &str = "telltale_aggregator_object_store_pending_files";
/// Bytes a query node read from the object store in place (range reads).
pub const OBJECT_STORE_READ_BYTES: &str = "telltale_aggregator_object_store_read_bytes_total";
/// Range reads a query node asked of the object store.
pub const OBJECT_STORE_READS: &str = "telltale_aggregator_object_store_reads_total";
/// Blocks a query node found in its page cache.
pub const OBJECT_STORE_CACHE_HITS: &str = "telltale_aggregator_object_store_cache_hits_total";
/// Blocks a query node had to read from the object store.
pub const OBJECT_STORE_CACHE_MISSES: &str = "telltale_aggregator_object_store_cache_misses_total";
/// Bytes a query node's page cache holds on disk (at most --cache-max-bytes).
pub const OBJECT_STORE_CACHE_BYTES: &str = "telltale_aggregator_object_store_cache_bytes";

/// Parquet files written by flushes.
pub const FILES_WRITTEN: &str = "telltale_aggregator_parquet_files_written_total";

/// Every rejection reason, pre-registered at 0.
pub const REASONS: &[&str] = &[
    "content_type",
    "content_encoding",
    "too_large",
    "snappy",
    "protobuf",
    "labels",
    "unauthorized",
    "forbidden",
    "wal",
];

/// Handles to the aggregator's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// Samples accepted.
    pub ingested: IntCounter,
    /// Requests refused by reason.
    pub rejected: IntCounterVec,
    /// WAL bytes.
    pub wal_bytes: IntCounter,
    /// WAL fsyncs.
    pub wal_syncs: IntCounter,
    /// Bytes of the WAL on disk.
    pub wal_size: IntGauge,
    /// Samples older than retention.
    pub too_old: IntCounter,
    /// Samples in the head.
    pub head_samples: IntGauge,
    /// Series in the head.
    pub head_series: IntGauge,
    /// Flush durations.
    pub flush_duration: Histogram,
    /// Files written.
    pub files_written: IntCounter,
    /// Compaction durations.
    pub compaction_duration: Histogram,
    /// Files moved aside.
    pub corrupt_files: IntCounter,
    /// Files per day partition.
    pub partition_files: IntGaugeVec,
    /// Bytes per day partition.
    pub partition_bytes: IntGaugeVec,
    /// Cost so far by namespace, period (`hour`, `month`) and currency.
    pub billing_cost: GaugeVec,
    /// Days rolled up.
    pub rollup_days: IntCounter,
    /// Rollup rounds' durations.
    pub rollup_duration: Histogram,
    /// Bytes held by the query cache.
    pub query_cache_bytes: IntGauge,
    /// Whether the object store answers.
    pub object_store_up: IntGauge,
    /// Files uploaded.
    pub object_store_uploaded: IntCounter,
    /// Bytes uploaded.
    pub object_store_uploaded_bytes: IntCounter,
    /// Objects deleted.
    pub object_store_deleted: IntCounter,
    /// Files downloaded at start.
    pub object_store_restored: IntCounter,
    /// Files waiting for upload.
    pub object_store_pending: IntGauge,
    /// Bytes read in place.
    pub object_store_read_bytes: IntCounter,
    /// Range reads asked.
    pub object_store_reads: IntCounter,
    /// Page cache blocks found.
    pub object_store_cache_hits: IntCounter,
    /// Page cache blocks read from the bucket.
    pub object_store_cache_misses: IntCounter,
    /// Page cache bytes on disk.
    pub object_store_cache_bytes: IntGauge,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Metrics {
            ingested: IntCounter::new(
                INGESTED,
                "Samples accepted through remote write (durable in the WAL).",
            )?,
            rejected: IntCounterVec::new(
                Opts::new(REJECTED, "Remote-write requests refused, by reason."),
                &["reason"],
            )?,
            wal_bytes: IntCounter::new(WAL_BYTES, "Bytes appended to the WAL.")?,
            wal_size: IntGauge::new(
                WAL_SIZE,
                "Bytes of the WAL's segments on disk (remote write answers 503 from --wal-max-bytes).",
            )?,
            wal_syncs: IntCounter::new(
                WAL_SYNCS,
                "WAL fsyncs; each makes a group of requests durable.",
            )?,
            too_old: IntCounter::new(
                TOO_OLD,
                "Samples older than --retention in accepted requests; not stored.",
            )?,
            head_samples: IntGauge::new(HEAD_SAMPLES, "Samples in the head, not yet in Parquet.")?,
            head_series: IntGauge::new(
                HEAD_SERIES,
                "Series in the head (one per day partition they have samples in).",
            )?,
            flush_duration: Histogram::with_opts(
                HistogramOpts::new(FLUSH_DURATION, "Time to write the head to Parquet.").buckets(
                    vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0],
                ),
            )?,
            files_written: IntCounter::new(FILES_WRITTEN, "Parquet files written by flushes.")?,
            compaction_duration: Histogram::with_opts(
                HistogramOpts::new(
                    COMPACTION_DURATION,
                    "Time to merge a round of small Parquet files.",
                )
                .buckets(vec![
                    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                ]),
            )?,
            corrupt_files: IntCounter::new(
                CORRUPT_FILES,
                "Unreadable Parquet files moved aside to <data-dir>/corrupt.",
            )?,
            partition_files: IntGaugeVec::new(
                Opts::new(PARTITION_FILES, "Parquet files in each day partition."),
                &["day"],
            )?,
            partition_bytes: IntGaugeVec::new(
                Opts::new(
                    PARTITION_BYTES,
                    "Bytes of Parquet files in each day partition.",
                ),
                &["day"],
            )?,
            billing_cost: GaugeVec::new(
                Opts::new(
                    BILLING_COST,
                    "Cost so far this UTC hour (period=\"hour\") and month (period=\"month\") by namespace, in the price table's currency.",
                ),
                &["namespace", "period", "currency"],
            )?,
            rollup_days: IntCounter::new(
                ROLLUP_DAYS,
                "Days whose 5-minute and 1-hour rollups were built or rebuilt.",
            )?,
            rollup_duration: Histogram::with_opts(
                HistogramOpts::new(
                    ROLLUP_DURATION,
                    "Time to roll up the days a round found new or changed.",
                )
                .buckets(vec![0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0]),
            )?,
            query_cache_bytes: IntGauge::new(
                QUERY_CACHE_BYTES,
                "Bytes the query cache of file footers, series tables and label sets holds (at most --query-cache-max-bytes).",
            )?,
            object_store_up: IntGauge::new(
                OBJECT_STORE_UP,
                "1 while the object store (--object-store) answers, 0 after an operation on it failed and until one succeeds.",
            )?,
            object_store_uploaded: IntCounter::new(
                OBJECT_STORE_UPLOADED,
                "Files uploaded to the object store.",
            )?,
            object_store_uploaded_bytes: IntCounter::new(
                OBJECT_STORE_UPLOADED_BYTES,
                "Bytes uploaded to the object store.",
            )?,
            object_store_deleted: IntCounter::new(
                OBJECT_STORE_DELETED,
                "Objects deleted from the object store because their files were compacted away or retired.",
            )?,
            object_store_restored: IntCounter::new(
                OBJECT_STORE_RESTORED,
                "Files downloaded from the object store: at start, those the data directory lacked; on a replica, the other replicas' new parts; on a --read-only node, billing's frontier files (Parquet files are read in place).",
            )?,
            object_store_pending: IntGauge::new(
                OBJECT_STORE_PENDING,
                "Files on local disk that the object store does not hold yet.",
            )?,
            object_store_read_bytes: IntCounter::new(
                OBJECT_STORE_READ_BYTES,
                "Bytes a --read-only node read from the object store by range reads.",
            )?,
            object_store_reads: IntCounter::new(
                OBJECT_STORE_READS,
                "Range reads a --read-only node asked of the object store (the client merges reads less than 1 MiB apart into one request).",
            )?,
            object_store_cache_hits: IntCounter::new(
                OBJECT_STORE_CACHE_HITS,
                "Blocks of object store files a --read-only node found in its page cache.",
            )?,
            object_store_cache_misses: IntCounter::new(
                OBJECT_STORE_CACHE_MISSES,
                "Blocks of object store files a --read-only node read from the object store.",
            )?,
            object_store_cache_bytes: IntGauge::new(
                OBJECT_STORE_CACHE_BYTES,
                "Bytes the page cache of a --read-only node holds on disk (at most --cache-max-bytes).",
            )?,
        };
        registry.register(Box::new(m.rollup_days.clone()))?;
        registry.register(Box::new(m.rollup_duration.clone()))?;
        registry.register(Box::new(m.query_cache_bytes.clone()))?;
        registry.register(Box::new(m.billing_cost.clone()))?;
        registry.register(Box::new(m.partition_files.clone()))?;
        registry.register(Box::new(m.partition_bytes.clone()))?;
        registry.register(Box::new(m.compaction_duration.clone()))?;
        registry.register(Box::new(m.corrupt_files.clone()))?;
        registry.register(Box::new(m.too_old.clone()))?;
        registry.register(Box::new(m.head_samples.clone()))?;
        registry.register(Box::new(m.head_series.clone()))?;
        registry.register(Box::new(m.flush_duration.clone()))?;
        registry.register(Box::new(m.files_written.clone()))?;
        registry.register(Box::new(m.ingested.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.wal_bytes.clone()))?;
        registry.register(Box::new(m.wal_syncs.clone()))?;
        registry.register(Box::new(m.wal_size.clone()))?;
        for r in REASONS {
            m.rejected.with_label_values(&[*r]);
        }
        Ok(m)
    }

    /// Adds the object store's families to `registry` (only an aggregator with
    /// `--object-store` has them, so a missing bucket never reads as a down one).
    pub fn register_object_store(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.object_store_up.clone()))?;
        registry.register(Box::new(self.object_store_uploaded.clone()))?;
        registry.register(Box::new(self.object_store_uploaded_bytes.clone()))?;
        registry.register(Box::new(self.object_store_deleted.clone()))?;
        registry.register(Box::new(self.object_store_restored.clone()))?;
        registry.register(Box::new(self.object_store_pending.clone()))?;
        Ok(())
    }

    /// Adds the page cache's families to `registry` (a `--read-only` node with
    /// `--object-store`).
    pub fn register_page_cache(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.object_store_read_bytes.clone()))?;
        registry.register(Box::new(self.object_store_reads.clone()))?;
        registry.register(Box::new(self.object_store_cache_hits.clone()))?;
        registry.register(Box::new(self.object_store_cache_misses.clone()))?;
        registry.register(Box::new(self.object_store_cache_bytes.clone()))?;
        Ok(())
    }

    /// Sets the per-partition gauges to `partitions` (day, files, bytes); days no longer
    /// there disappear.
    pub fn set_partitions(&self, partitions: impl IntoIterator<Item = (String, usize, u64)>) {
        self.partition_files.reset();
        self.partition_bytes.reset();
        for (day, files, bytes) in partitions {
            self.partition_files
                .with_label_values(&[&day])
                .set(files as i64);
            self.partition_bytes
                .with_label_values(&[&day])
                .set(bytes as i64);
        }
    }

    /// Sets the cost gauges to `costs` (namespace, period, currency, cost); others
    /// disappear.
    pub fn set_billing(&self, costs: &[(String, &str, String, f64)]) {
        self.billing_cost.reset();
        for (namespace, period, currency, cost) in costs {
            self.billing_cost
                .with_label_values(&[namespace.as_str(), period, currency.as_str()])
                .set(*cost);
        }
    }
}
