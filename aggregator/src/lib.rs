//! Telltale's aggregator.
//!
//! Its rooms, each using only those listed before it:
//! - [`metrics`]: its own metrics (plain gauges and counters; it names no other room);
//! - [`query`]: PromQL and the Prometheus HTTP query API, reaching storage only through
//!   [`query::Source`];
//! - [`store`]: the write-ahead log, the in-memory head, day-partitioned Parquet files,
//!   compaction, retention, and every path under `--data-dir` ([`store::layout`]);
//! - [`ingest`]: `POST /api/v1/write` (Prometheus remote write) into the store;
//! - [`import`]: `telltale import`, exposition files into day partitions;
//! - [`billing`]: pay-as-you-go billing settled from the store (`GET /api/v1/billing`);
//! - here: wiring: the options, the HTTP router and the background loops.
//!
//! It promises: a 204 means the request is on stable storage and survives SIGKILL and
//! power loss; a refused request leaves nothing behind; a flush makes the files durable
//! before the WAL segments they cover are removed; SIGTERM flushes.

pub mod billing;
pub mod import;
pub mod ingest;
pub mod metrics;
pub mod query;
pub mod store;

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
    /// Where the WAL and the Parquet partitions live.
    pub data_dir: PathBuf,
    /// Flush the head to Parquet at least this often.
    pub flush_interval: Duration,
    /// Flush the head when it holds this many samples.
    pub flush_samples: usize,
    /// Where "now" comes from (retention).
    pub clock: Arc<dyn telltale_model::time::Clock>,
    /// How long raw samples are kept.
    pub retention: Duration,
    /// How long 5-minute rollups are kept (`--retention-5m`).
    pub retention_5m: Duration,
    /// How long 1-hour rollups are kept (`--retention-1h`).
    pub retention_1h: Duration,
    /// Bounds on each query (`--query-max-samples`, `--query-timeout`).
    pub query_limits: query::Limits,
    /// Bearer tokens and their clusters; `None` accepts every writer.
    pub auth_tokens: Option<PathBuf>,
    /// Bytes the query cache of file footers, series tables and label sets may hold
    /// (`--query-cache-max-bytes`).
    pub query_cache_max_bytes: usize,
    /// The billing price table (`--prices`; docs/billing.md's example table without one).
    pub prices: billing::prices::Prices,
    /// The object store keeping a copy of every file (`--object-store`), if any.
    pub object_store: Option<store::bucket::Target>,
    /// Bytes the WAL may hold before remote write answers 503 (`--wal-max-bytes`; 0: no
    /// bound).
    pub wal_max_bytes: u64,
    /// This writer's name among replicas sharing `object_store` (`--replica`).
    pub replica: String,
    /// A query node (`--read-only`): no ingest, flush, compaction, settlement or
    /// retention; the data directory follows the bucket.
    pub read_only: bool,
    /// With `read_only`: how often the bucket is listed for new files.
    pub refresh_interval: Duration,
    /// With `read_only`: disk bytes of the page cache of blocks read from the bucket
    /// (`--cache-max-bytes`).
    pub cache_max_bytes: u64,
    /// Ingesting aggregators asked over remote read for their newest samples
    /// (`--ingesters`).
    pub ingesters: Vec<String>,
    /// How far back from now the ingesters are asked (`--ingester-window`).
    pub ingester_window: Duration,
}

/// Errors that stop the aggregator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store cannot be opened, or its last flush failed (the WAL still holds the
    /// samples).
    #[error(transparent)]
    Store(#[from] store::Error),
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
    /// `--object-store` is not usable.
    #[error(transparent)]
    Bucket(#[from] store::bucket::Error),
    /// Registering own metrics failed.
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
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
    let registry = Registry::new();
    let metrics = metrics::Metrics::new(&registry)?;
    let bucket = match &opts.object_store {
        Some(target) => {
            metrics.register_object_store(&registry)?;
            let mut b = store::bucket::Bucket::new(target, &opts.data_dir, metrics.clone())?;
            if opts.read_only {
                metrics.register_page_cache(&registry)?;
                b = b.read_in_place(opts.cache_max_bytes)?;
            } else {
                b = b.with_replica(&opts.replica);
            }
            let b = Arc::new(b);
            // Before anything reads the data directory (billing's frontier included):
            // what the bucket keeps and the directory lacks comes back first. An
            // unreachable bucket is logged and retried by the upload loop.
            let _ = b.restore().await;
            Some(b)
        }
        None => None,
    };
    let prices = Arc::new(opts.prices.clone());
    let ledger = billing::Ledger::new(&opts.data_dir, prices.clone());
    let frontier = Arc::new(billing::Frontier::new());
    ledger.start(&frontier, telltale_model::time::to_millis(opts.clock.now()));
    let store = Arc::new(
        store::Store::open(store::Config {
            data_dir: opts.data_dir.clone(),
            flush_samples: opts.flush_samples,
            clock: opts.clock.clone(),
            retention: opts.retention,
            retention_5m: opts.retention_5m,
            retention_1h: opts.retention_1h,
            watch: Arc::new(billing::LateSamples {
                frontier: frontier.clone(),
                data_dir: opts.data_dir.clone(),
            }),
            metrics: metrics.clone(),
            query_cache_max_bytes: opts.query_cache_max_bytes,
            bucket: bucket.clone(),
            wal_max_bytes: opts.wal_max_bytes,
        })
        .await?,
    );
    let ingest = ingest::Ingest {
        store: store.clone(),
        tokens,
        metrics: metrics.clone(),
    };
    let flusher = if opts.read_only {
        // The ingesting aggregators flush, compact, settle and retire; this one follows
        // the bucket.
        if let Some(b) = bucket {
            tokio::spawn(refresh_loop(
                b,
                ledger,
                frontier.clone(),
                opts.clock.clone(),
                opts.refresh_interval,
                cancel.clone(),
            ));
        }
        None
    } else {
        tokio::spawn(ledger_loop(
            store.clone(),
            frontier.clone(),
            ledger,
            opts.clock.clone(),
            metrics.clone(),
            cancel.clone(),
        ));
        tokio::spawn(store.clone().retention_loop(cancel.clone()));
        tokio::spawn(store.clone().bucket_loop(cancel.clone()));
        Some(tokio::spawn(
            store
                .clone()
                .flush_loop(opts.flush_interval, cancel.clone()),
        ))
    };
    let now: Arc<dyn Fn() -> i64 + Send + Sync> = {
        let clock = opts.clock.clone();
        Arc::new(move || telltale_model::time::to_millis(clock.now()))
    };
    let source: Arc<dyn query::Source + Send + Sync> = if opts.ingesters.is_empty() {
        store.clone()
    } else {
        Arc::new(query::ingesters::WithIngesters {
            local: store.clone(),
            ingesters: opts.ingesters.clone(),
            window: opts.ingester_window.as_millis() as i64,
            now: now.clone(),
            runtime: tokio::runtime::Handle::current(),
            client: reqwest::Client::new(),
        })
    };
    let own = Own { registry };
    let write = if opts.read_only {
        Router::new().route("/api/v1/write", post(read_only_write))
    } else {
        Router::new()
            .route("/api/v1/write", post(ingest::write))
            .with_state(ingest)
    };
    let app = write
        .merge(
            Router::new()
                .route("/api/v1/billing", get(billing::api::handler))
                .with_state(billing::api::Api {
                    store: store.clone(),
                    frontier,
                    prices,
                    clock: opts.clock.clone(),
                }),
        )
        .merge(query::api::router(query::api::Api {
            source,
            limits: opts.query_limits.clone(),
            now,
        }))
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
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.clone().cancelled_owned())
        .await
        .map_err(Error::Serve);
    let Some(flusher) = flusher else {
        return served;
    };
    let _ = flusher.await;
    // Clean shutdown: everything accepted goes to Parquet.
    let flushed = store.flush().await;
    // With an object store, the last files go up too (or stay, with the WAL, for the next
    // start to upload).
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(60), store.upload()).await {
        tracing::warn!(error = %e, "the last files were not uploaded; the next start uploads them");
    }
    served.and(flushed.map(|_| ()).map_err(Error::from))
}

/// `POST /api/v1/write` on a query node.
async fn read_only_write() -> impl IntoResponse {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "this aggregator is --read-only: send remote write to an ingesting one\n",
    )
}

/// A query node's data directory follows the bucket every `every`, billing's frontier
/// with it, until `cancel`.
async fn refresh_loop(
    bucket: Arc<store::bucket::Bucket>,
    ledger: billing::Ledger,
    frontier: Arc<billing::Frontier>,
    clock: Arc<dyn telltale_model::time::Clock>,
    every: Duration,
    cancel: CancellationToken,
) {
    loop {
        match bucket.pull().await {
            Ok(p) if p.fetched + p.removed > 0 => {
                tracing::debug!(
                    fetched = p.fetched,
                    removed = p.removed,
                    "followed the bucket"
                );
                ledger.start(&frontier, telltale_model::time::to_millis(clock.now()));
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "listing the bucket failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// Settles billing hours at start, every minute (an hour closes [`billing::GRACE_MS`]
/// after it ends) and a second after late samples mark hours, then sets the cost
/// gauges, until `cancel`.
async fn ledger_loop(
    store: Arc<store::Store>,
    frontier: Arc<billing::Frontier>,
    ledger: billing::Ledger,
    clock: Arc<dyn telltale_model::time::Clock>,
    metrics: metrics::Metrics,
    cancel: CancellationToken,
) {
    let ledger = Arc::new(ledger);
    loop {
        let (s, l, f, c, m) = (
            store.clone(),
            ledger.clone(),
            frontier.clone(),
            clock.clone(),
            metrics.clone(),
        );
        let settled = tokio::task::spawn_blocking(move || {
            let now = telltale_model::time::to_millis(c.now());
            let head = |g: &mut billing::pods::Gather| billing::gather_head(&s, g);
            let settled = l.settle(&f, &head, now)?;
            let (hour, month) = l.costs(f.settled_below(), &head, now)?;
            let costs = billing::cost_gauges(&hour, &month, metrics::BILLING_NAMESPACES);
            m.set_billing(&costs);
            Ok::<_, store::partition::Error>(settled)
        })
        .await;
        match settled {
            Ok(Ok(0)) => {}
            Ok(Ok(hours)) => info!(hours, "settled billing hours"),
            Ok(Err(e)) => tracing::error!(error = %e, "billing settlement failed; it is retried"),
            Err(e) => tracing::error!(error = %e, "billing settlement task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = frontier.marked.notified() => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ = cancel.cancelled() => return,
        }
    }
}
