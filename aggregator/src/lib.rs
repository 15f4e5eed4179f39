//! Telltale's aggregator (not built yet).
//!
//! It will own: the Prometheus remote-write receiver, the write-ahead log and in-memory head,
//! day-partitioned Parquet files with compaction and retention, the Prometheus query API
//! (PromQL), and pay-as-you-go billing. See `../shared/design/interfaces.md` and the
//! "Aggregator", "Query" and "Billing" issues.
