//! Telltale's aggregator.
//!
//! It owns: the Prometheus remote-write receiver ([`ingest`]), the write-ahead log
//! ([`wal`]) that makes every acknowledged sample durable, the in-memory [`head`], its
//! flush into day-partitioned Parquet files with compaction and corrupt-file handling
//! ([`partition`]), [`retention`], `telltale import` ([`import`]) and pay-as-you-go
//! [`billing`] (`GET /api/v1/billing`). It promises: a 204
//! means the request is on stable storage and survives SIGKILL and power loss; a refused
//! request leaves nothing behind; a flush makes the files durable before the WAL segments
//! they cover are removed; SIGTERM flushes. The query API (PromQL) comes with its issue.

pub mod billing;
pub mod head;
pub mod import;
pub mod ingest;
pub mod metrics;
pub mod partition;
pub mod query;
pub mod retention;
pub mod wal;

use std::collections::BTreeMap;
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
    /// How long data is kept.
    pub retention: Duration,
    /// Bearer tokens and their clusters; `None` accepts every writer.
    pub auth_tokens: Option<PathBuf>,
    /// The billing price table (`--prices`; billing.md's example table without one).
    pub prices: billing::prices::Prices,
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
    /// A flush could not write its files (the WAL still holds the samples).
    #[error("flush: {0}")]
    Flush(#[from] partition::Error),
}

/// The WAL and the head, kept consistent: every request is appended to the WAL and
/// inserted in the head under the same gate a flush closes, so a flush takes exactly the
/// samples of the WAL segments it then retires.
pub struct Store {
    data_dir: PathBuf,
    wal: wal::Wal,
    head: std::sync::Mutex<head::Head>,
    gate: tokio::sync::RwLock<()>,
    flushes: std::sync::atomic::AtomicU64,
    /// Woken when the head is over its size.
    full: tokio::sync::Notify,
    flush_samples: usize,
    metrics: metrics::Metrics,
    clock: Arc<dyn telltale_model::time::Clock>,
    retention: Duration,
    /// Billing's settled frontier, and the hours late samples mark.
    billing: billing::Frontier,
    /// Heads taken by a flush and not yet in files: queries read them meanwhile.
    flushing: std::sync::Mutex<Vec<Arc<BTreeMap<i64, head::Sorted>>>>,
    /// Files' footers and series tables, for queries.
    files: query::select::FileCache,
}

impl Store {
    fn head(&self) -> std::sync::MutexGuard<'_, head::Head> {
        self.head.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flushing(&self) -> std::sync::MutexGuard<'_, Vec<Arc<BTreeMap<i64, head::Sorted>>>> {
        self.flushing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `body` durable, then adds `req` (it decompressed, validated) to the head.
    pub async fn append(
        &self,
        body: Vec<u8>,
        req: &telltale_model::remote::RequestRef<'_>,
    ) -> Result<(), wal::Error> {
        let _open = self.gate.read().await;
        self.wal.append(body).await?;
        let oldest = retention::cutoff(&*self.clock, self.retention);
        let mut head = self.head();
        let skipped = insert(&mut head, req, oldest, &self.billing);
        self.metrics.too_old.inc_by(skipped);
        self.metrics.head_samples.set(head.samples() as i64);
        self.metrics.head_series.set(head.series() as i64);
        if head.samples() >= self.flush_samples {
            self.full.notify_one();
        }
        Ok(())
    }

    /// Writes the head to Parquet and retires the WAL segments it came from. Returns the
    /// files written.
    pub async fn flush(&self) -> Result<Vec<PathBuf>, Error> {
        let start = std::time::Instant::now();
        let (days, seq) = {
            let _closed = self.gate.write().await;
            let seq = self.wal.rotate().await?;
            let mut head = self.head();
            let days = Arc::new(head.take());
            // Visible to queries before the head lets go of them.
            self.flushing().push(days.clone());
            drop(head);
            (days, seq)
        };
        self.metrics.head_samples.set(0);
        self.metrics.head_series.set(0);
        // The WAL segments that would replay late billing samples are about to go.
        billing::persist_marks(&self.data_dir, &self.billing).map_err(|source| {
            Error::Flush(partition::Error::Io {
                path: billing::records::billing_dir(&self.data_dir),
                source,
            })
        })?;
        if days.is_empty() {
            wal::checkpoint(&wal_dir(&self.data_dir), seq)?;
            return Ok(Vec::new());
        }
        let n = self
            .flushes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stamp = telltale_model::time::to_millis(std::time::SystemTime::now());
        let name = format!("part-{stamp}-{n}.parquet");
        let data_dir = self.data_dir.clone();
        let taken = days.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            for (day, series) in taken.iter() {
                let refs = series.iter().map(|(k, p)| (k, p));
                files.push(partition::write_day(&data_dir, *day, refs, &name)?);
            }
            Ok::<_, partition::Error>(files)
        })
        .await
        .map_err(|e| Error::Serve(std::io::Error::other(format!("flush task failed: {e}"))))??;
        // In files now (on failure it stays readable until the WAL replays it).
        self.flushing().retain(|d| !Arc::ptr_eq(d, &days));
        wal::checkpoint(&wal_dir(&self.data_dir), seq)?;
        self.metrics
            .flush_duration
            .observe(start.elapsed().as_secs_f64());
        self.metrics.files_written.inc_by(written.len() as u64);
        let rows: usize = written.iter().map(|(_, r)| r).sum();
        info!(files = written.len(), rows, "flushed the head to Parquet");
        Ok(written.into_iter().map(|(p, _)| p).collect())
    }
}

impl query::Source for Store {
    fn select(
        &self,
        matchers: &[promql_parser::label::Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<query::Series>, query::Error> {
        let mut found = query::select::Found::default();
        // Samples move head -> taken by a flush -> files; reading in that order sees each
        // in one place or another (twice at worst, and duplicates are dropped).
        query::select::from_head(&self.head(), matchers, mint, maxt, &mut found);
        let flushing = self.flushing().clone();
        for days in flushing {
            query::select::from_taken(&days, matchers, mint, maxt, &mut found);
        }
        query::select::from_files(
            &self.data_dir,
            &self.files,
            matchers,
            mint,
            maxt,
            &mut found,
        )
        .map_err(|e| query::Error::Storage(Box::new(e)))?;
        Ok(found.finish())
    }
}

/// Adds a validated request to the head; returns samples left out as older than `oldest`.
/// Billing series' late samples mark the hours they change.
fn insert(
    head: &mut head::Head,
    req: &telltale_model::remote::RequestRef<'_>,
    oldest: i64,
    frontier: &billing::Frontier,
) -> u64 {
    let mut marked = false;
    let skipped = req
        .series()
        .map(|series| {
            let name = series.labels.iter().find(|l| l.0 == "__name__");
            if name.is_some_and(|l| billing::wanted(l.1)) {
                for &(ts, _) in series.samples {
                    marked |= ts >= oldest && frontier.sample(ts);
                }
            }
            head.insert_ref(series, oldest)
        })
        .sum();
    if marked {
        frontier.marked.notify_one();
    }
    skipped
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
    let mut head = head::Head::default();
    let oldest = retention::cutoff(&*opts.clock, opts.retention);
    let prices = Arc::new(opts.prices.clone());
    let ledger = billing::Ledger::new(&opts.data_dir, prices.clone());
    let frontier = billing::Frontier::new();
    ledger.start(&frontier, telltale_model::time::to_millis(opts.clock.now()));
    let records = wal::replay(&dir, |body| {
        // Every record was validated before it was logged.
        let raw = snap::raw::Decoder::new().decompress_vec(body);
        match raw
            .as_deref()
            .map(telltale_model::remote::RequestRef::parse)
        {
            Ok(Ok(req)) => {
                insert(&mut head, &req, oldest, &frontier);
            }
            _ => tracing::warn!("a logged request no longer decodes; it is skipped"),
        }
    })?;
    let registry = Registry::new();
    let metrics = metrics::Metrics::new(&registry)?;
    let (bytes, syncs) = (metrics.wal_bytes.clone(), metrics.wal_syncs.clone());
    let wal = wal::Wal::open(&dir, 64 << 20, move |b, _| {
        bytes.inc_by(b);
        syncs.inc();
    })?;
    info!(records, samples = head.samples(), dir = %dir.display(), "WAL replayed");
    metrics.head_samples.set(head.samples() as i64);
    metrics.head_series.set(head.series() as i64);
    let data = opts.data_dir.clone();
    let moved = tokio::task::spawn_blocking(move || partition::scan(&data))
        .await
        .unwrap_or_default();
    metrics.corrupt_files.inc_by(moved.len() as u64);
    metrics.set_partitions(&partition::usage(&opts.data_dir));
    let store = Arc::new(Store {
        data_dir: opts.data_dir.clone(),
        wal,
        head: std::sync::Mutex::new(head),
        gate: tokio::sync::RwLock::new(()),
        flushes: std::sync::atomic::AtomicU64::new(0),
        full: tokio::sync::Notify::new(),
        flush_samples: opts.flush_samples.max(1),
        metrics: metrics.clone(),
        clock: opts.clock.clone(),
        retention: opts.retention,
        billing: frontier,
        flushing: std::sync::Mutex::new(Vec::new()),
        files: query::select::FileCache::default(),
    });
    let ingest = ingest::Ingest {
        store: store.clone(),
        tokens,
        metrics: metrics.clone(),
    };
    let flusher = tokio::spawn(flush_loop(
        store.clone(),
        opts.flush_interval,
        cancel.clone(),
    ));
    tokio::spawn(ledger_loop(store.clone(), ledger, cancel.clone()));
    tokio::spawn(retention_loop(
        opts.clone(),
        metrics.clone(),
        cancel.clone(),
    ));
    let own = Own { registry };
    let app = Router::new()
        .route("/api/v1/write", post(ingest::write))
        .with_state(ingest)
        .merge(
            Router::new()
                .route("/api/v1/billing", get(billing::handler))
                .with_state(billing::Api {
                    store: store.clone(),
                    prices,
                }),
        )
        .merge(query::api::router(query::api::Api {
            source: store.clone(),
            limits: query::Limits::default(),
            now: {
                let clock = opts.clock.clone();
                Arc::new(move || telltale_model::time::to_millis(clock.now()))
            },
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
    let _ = flusher.await;
    // Clean shutdown: everything accepted goes to Parquet.
    let flushed = store.flush().await;
    served.and(flushed.map(|_| ()))
}

/// Settles billing hours at start, every minute (an hour closes [`billing::GRACE_MS`]
/// after it ends) and a second after late samples mark hours, then sets the cost
/// gauges, until `cancel`.
async fn ledger_loop(store: Arc<Store>, ledger: billing::Ledger, cancel: CancellationToken) {
    let ledger = Arc::new(ledger);
    loop {
        let (s, l) = (store.clone(), ledger.clone());
        let settled = tokio::task::spawn_blocking(move || {
            let now = telltale_model::time::to_millis(s.clock.now());
            let head = |g: &mut billing::pods::Gather| billing::gather_head(&s.head(), g);
            let settled = l.settle(&s.billing, &head, now)?;
            let (hour, month) = l.costs(s.billing.settled_below(), &head, now)?;
            s.metrics.set_billing(&hour, &month);
            Ok::<_, partition::Error>(settled)
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
            _ = store.billing.marked.notified() => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ = cancel.cancelled() => return,
        }
    }
}

/// Applies retention at start and then every hour, until `cancel`.
async fn retention_loop(opts: Options, metrics: metrics::Metrics, cancel: CancellationToken) {
    loop {
        let o = opts.clone();
        let m = metrics.clone();
        let _ = tokio::task::spawn_blocking(move || {
            retention::enforce(&o.data_dir, &*o.clock, o.retention);
            m.set_partitions(&partition::usage(&o.data_dir));
        })
        .await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// Flushes every `interval`, and whenever the head is full, until `cancel`.
async fn flush_loop(store: Arc<Store>, interval: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = store.full.notified() => {}
            _ = cancel.cancelled() => return,
        }
        if let Err(e) = store.flush().await {
            tracing::error!(error = %e, "flush failed; the samples stay in the WAL and the next flush retries");
            continue;
        }
        let (dir, m) = (store.data_dir.clone(), store.metrics.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let start = std::time::Instant::now();
            let c = partition::compact(&dir);
            m.compaction_duration.observe(start.elapsed().as_secs_f64());
            m.corrupt_files.inc_by(c.quarantined.len() as u64);
            m.set_partitions(&partition::usage(&dir));
        })
        .await;
    }
}
