//! Telltale's per-node collector.
//!
//! It owns: reading the node (procfs, statfs: [`node`]) and its containers (cgroup v1, hybrid
//! and v2: [`cgroup`]), and with `--cluster-state` the cluster's objects ([`kube_state`]),
//! under the names node_exporter, cAdvisor and kube-state-metrics give them (so dashboards
//! and queries written for those work unchanged) with `cluster` and `node` on every series;
//! encoding one text-format snapshot per interval ([`collect`]); serving it ([`server`]);
//! and shipping it over remote write ([`ship`]). It promises: a scrape serves the latest
//! snapshot and never triggers a collection; series of vanished objects are gone from the
//! next snapshot; an unreadable or malformed file skips only the series that depend on it
//! and is counted in `telltale_collector_errors_total{source}` ([`cycle_errors`]).
//!
//! The data path: [`kept_files`] (kept handles, `pread`) → [`kernel_text`] and [`procfs`]
//! parsers → sources fill their state in place → `emit` into a [`telltale_model::Sink`]
//! family by family → [`snapshot::Snapshot`] → served, and appended to each remote-write
//! queue. Kubernetes names come from [`pod_names`] over the views of [`kube_watch`].
//! Settings: [`options::Options`].

pub mod cgroup;
pub mod collect;
pub mod cycle_errors;
#[cfg(feature = "fixture")]
pub mod fixture;
pub mod kept_files;
pub mod kernel_text;
pub mod kube_state;
pub mod kube_watch;
pub mod metrics;
pub mod node;
pub mod options;
pub mod pod_names;
pub mod procfs;
pub mod server;
pub mod ship;
pub mod snapshot;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::Registry;
use telltale_model::time::until_next_boundary;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, Instrument};

pub use collect::Collector;
pub use options::Options;
pub use snapshot::Snapshot;

/// Errors that stop the collector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Setting up the sources failed.
    #[error(transparent)]
    Setup(#[from] collect::Error),
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
    /// A collection cycle panicked (a bug): the collector stops rather than serve a
    /// snapshot that no longer changes.
    #[error("collection cycle failed: {0}")]
    Cycle(String),
    /// Remote write cannot be set up (a destination, TLS file or buffer directory).
    #[error(transparent)]
    Ship(#[from] ship::Error),
}

/// The registry of the collector's own metrics. They carry `cluster` and `node` like every
/// other series, so those of many collectors stay apart when shipped to one aggregator.
fn own_registry(opts: &Options) -> Registry {
    let labels = [
        ("cluster".to_owned(), opts.cluster.clone()),
        ("node".to_owned(), opts.node_name.clone()),
    ];
    // Refused only for invalid label names, and these two are valid.
    Registry::new_custom(None, Some(labels.into_iter().collect())).unwrap_or_default()
}

/// Collects one snapshot (`--once`). With Kubernetes, waits up to 10 s for the first lists
/// of pods so that series carry their names.
pub async fn once(opts: &Options) -> Result<Snapshot, Error> {
    let mut c = Collector::new(opts, own_registry(opts))?;
    let cancel = CancellationToken::new();
    let views = start_kube(opts, &mut c, &cancel).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while views.iter().any(|k| k.pending()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let snap = c.collect(SystemTime::now());
    cancel.cancel();
    Ok(snap)
}

/// Starts watching this node's pods unless `--no-kube` (and every object the state
/// families need with `--cluster-state`), handing the views to `collector`; returns them
/// for health reporting. A configuration that cannot be loaded leaves views that say why
/// they are empty.
async fn start_kube(
    opts: &Options,
    collector: &mut Collector,
    cancel: &CancellationToken,
) -> Vec<Arc<dyn kube_watch::Health>> {
    if opts.no_kube {
        return Vec::new();
    }
    let client = kube_watch::client(opts.kubeconfig.as_deref())
        .await
        .map_err(|e| e.to_string());
    let node_pods = match &client {
        Ok(c) => pod_names::watch_node_pods(c.clone(), &opts.node_name, cancel.clone()),
        Err(e) => pod_names::Kube::unavailable(e.clone()),
    };
    collector.set_kube(node_pods.clone());
    let mut views: Vec<Arc<dyn kube_watch::Health>> = vec![Arc::new(node_pods)];
    if opts.cluster_state {
        let allow = kube_state::AnnotationAllowlist::parse(&opts.pod_annotations_allowlist);
        let cluster = kube_state::ClusterState::watch(
            client.as_ref().map_err(String::as_str),
            cancel,
            allow,
            &opts.cluster,
        );
        views.extend(cluster.health());
        collector.set_cluster_state(cluster);
    }
    views
}

/// Runs the collector until `cancel`: a collection at start, then one at every interval
/// boundary, served on `listen`. `on_listen` learns the bound address (port 0 in tests).
pub async fn run(
    opts: Options,
    listen: SocketAddr,
    cancel: CancellationToken,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<(), Error> {
    let registry = own_registry(&opts);
    let mut collector = Collector::new(&opts, registry.clone())?;
    let shipper = Arc::new(ship::Shipper::start(
        &opts.remote,
        &registry,
        cancel.clone(),
    )?);
    let kube = start_kube(&opts, &mut collector, &cancel).await;
    let (tx, rx) = watch::channel(None);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(Error::Serve)?;
    info!(addr = %bound, interval = ?opts.interval, "collector serving /metrics");
    on_listen(bound);
    let server = axum::serve(
        listener,
        server::router(server::Status { latest: rx, kube }),
    )
    .with_graceful_shutdown(cancel.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await });
    let collected = collect_loop(collector, shipper.clone(), opts.interval, tx, cancel).await;
    shipper.sync();
    let served = server
        .await
        .map_err(|e| Error::Serve(std::io::Error::other(e)))?
        .map_err(Error::Serve);
    collected.and(served)
}

async fn collect_loop(
    mut collector: Collector,
    shipper: Arc<ship::Shipper>,
    interval: Duration,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    cancel: CancellationToken,
) -> Result<(), Error> {
    loop {
        let now = SystemTime::now();
        let ship = shipper.clone();
        let cycle = tokio::task::spawn_blocking(move || {
            let snap = collector.collect(now);
            ship.append(&snap, now);
            (collector, snap)
        })
        .instrument(info_span!("cycle"))
        .await;
        let snap;
        (collector, snap) = match cycle {
            Ok(done) => done,
            Err(e) => {
                // A panic in a source is a bug; stop rather than serve a frozen snapshot.
                tracing::error!(error = %e, "collection cycle panicked; stopping");
                cancel.cancel();
                return Err(Error::Cycle(e.to_string()));
            }
        };
        tx.send_replace(Some(Arc::new(snap)));
        let wait = until_next_boundary(SystemTime::now(), interval);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return Ok(()),
        }
    }
}
