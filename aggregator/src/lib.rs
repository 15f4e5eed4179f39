//! Telltale's aggregator.
//!
//! It owns, so far: the Prometheus remote-write receiver ([`ingest`]) and the write-ahead
//! log ([`wal`]) that makes every acknowledged sample durable. It promises: a 204 means the
//! request is on stable storage and survives SIGKILL and power loss; a refused request
//! leaves nothing behind. Still to come with the "Aggregator" issue: the in-memory head,
//! day-partitioned Parquet files with compaction and retention, and `telltale import`;
//! then the query API (PromQL) and billing.

pub mod ingest;
pub mod metrics;
pub mod wal;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// What the aggregator is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the WAL (and later the Parquet partitions) live.
    pub data_dir: PathBuf,
    /// How long data is kept.
    pub retention: Duration,
    /// Bearer tokens and their clusters; `None` accepts every writer.
    pub auth_tokens: Option<PathBuf>,
}

/// Errors that stop the aggregator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The WAL cannot be opened or replayed.
    #[error(transparent)]
    Wal(#[from] wal::Error),
    /// The token file is unusable.
    #[error(transparent)]
    Tokens(#[from] ingest::TokensError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
    /// Registering own metrics failed.
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The WAL directory under a data directory.
pub fn wal_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("wal")
}

#[derive(Clone)]
struct Own {
    registry: Registry,
}

async fn own_metrics(State(own): State<Own>) -> impl IntoResponse {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&own.registry.gather())
        .unwrap_or_default();
    (
        [(header::CONTENT_TYPE, telltale_model::text::CONTENT_TYPE)],
        text,
    )
}

/// Runs the aggregator until `cancel`, serving on `listen`; `on_listen` learns the bound
/// address.
pub async fn run(
    opts: Options,
    listen: SocketAddr,
    cancel: CancellationToken,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<(), Error> {
    let tokens = match &opts.auth_tokens {
        Some(p) => Some(Arc::new(ingest::Tokens::load(p)?)),
        None => None,
    };
    let dir = wal_dir(&opts.data_dir);
    let records = wal::replay(&dir, |_| {})?;
    let registry = Registry::new();
    let metrics = metrics::Metrics::new(&registry)?;
    let (bytes, syncs) = (metrics.wal_bytes.clone(), metrics.wal_syncs.clone());
    let wal = wal::Wal::open(&dir, 64 << 20, move |b, _| {
        bytes.inc_by(b);
        syncs.inc();
    })?;
    info!(records, dir = %dir.display(), "WAL replayed");
    let ingest = ingest::Ingest {
        wal,
        tokens,
        metrics: metrics.clone(),
    };
    let own = Own { registry };
    let app = Router::new()
        .route("/api/v1/write", post(ingest::write))
        .with_state(ingest)
        .layer(DefaultBodyLimit::max(ingest::MAX_BODY))
        .merge(
            Router::new()
                .route("/metrics", get(own_metrics))
                .with_state(own),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(Error::Serve)?;
    info!(addr = %bound, data_dir = %opts.data_dir.display(), "aggregator serving remote write");
    on_listen(bound);
    axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
        .map_err(Error::Serve)
}
