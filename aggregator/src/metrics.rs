//! The aggregator's own health, as `telltale_aggregator_*` families in an injected registry.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Samples accepted (in the WAL).
pub const INGESTED: &str = "telltale_aggregator_samples_ingested_total";
/// Requests refused, by reason.
pub const REJECTED: &str = "telltale_aggregator_requests_rejected_total";
/// WAL bytes written since start.
pub const WAL_BYTES: &str = "telltale_aggregator_wal_bytes_total";
/// WAL fsyncs since start (one per group of requests).
pub const WAL_SYNCS: &str = "telltale_aggregator_wal_fsyncs_total";

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
            wal_syncs: IntCounter::new(
                WAL_SYNCS,
                "WAL fsyncs; each makes a group of requests durable.",
            )?,
        };
        registry.register(Box::new(m.ingested.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.wal_bytes.clone()))?;
        registry.register(Box::new(m.wal_syncs.clone()))?;
        for r in REASONS {
            m.rejected.with_label_values(&[*r]);
        }
        Ok(m)
    }
}
