//! One collection's result as it is served and shipped: the text exposition, its
//! timestamp, and optionally where each sample sits in the text, so that shipping never
//! parses the text back.

use axum::body::Bytes;
use telltale_model::time::TimestampMs;

/// The latest collection, ready to serve.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When it was collected, aligned down to the interval (ms since the epoch).
    pub timestamp_ms: TimestampMs,
    /// Text exposition format 0.0.4, own metrics included.
    pub text: Bytes,
    /// Series (own metrics excluded).
    pub series: usize,
    /// Families with at least one series (own metrics excluded).
    pub families: usize,
    /// With [`Collector::index_samples`](crate::collect::Collector::index_samples): each
    /// series' key and value in `text` (own metrics excluded: they follow at `indexed_len`).
    pub index: Vec<telltale_model::SampleAt>,
    /// Bytes of `text` the index covers; the rest is own metrics.
    pub indexed_len: usize,
}
