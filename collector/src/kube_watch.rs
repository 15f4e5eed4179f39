//! Live views of Kubernetes objects, generic over the kind ([`View`]): this node's pods
//! ([`crate::pod_names`]) and the cluster-wide objects `--cluster-state` exports
//! ([`crate::kube_state`]) are all watched this way.
//!
//! A kube-runtime watcher (list, then watch; relist after 410 Gone; backoff after errors)
//! feeds a reflector store. Objects deleted are kept in their final state for
//! [`RETAIN_CYCLES`] cycles, so one that came and went between two cycles is still seen.
//! Health changes are logged once per change ("degraded: kubernetes") and shown on
//! `/readyz`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Errors connecting to the API server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig file could not be read or understood.
    #[error("--kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// No configuration: no kubeconfig, not in a cluster.
    #[error("no Kubernetes configuration found (--kubeconfig, $KUBECONFIG, ~/.kube/config or in-cluster): {0}")]
    Infer(String),
    /// The client could not be built from the configuration.
    #[error("Kubernetes client: {0}")]
    Client(String),
}

const NOT_YET: &str = "not connected yet";

/// Cycles for which a deleted object is still exported with its final state, so that a pod
/// that started and ended between two cycles is seen, with its start and end.
pub const RETAIN_CYCLES: u32 = 2;

/// Deleted objects in their final state, each with the cycles it is still exported for.
type Departed<K> = Vec<(Arc<K>, u32)>;

/// A live view of one kind of Kubernetes object, fed by a watcher.
#[derive(Clone)]
pub struct View<K: kube::Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    /// Objects deleted since the last cycles, with the cycles they are still exported for.
    departed: Arc<Mutex<Departed<K>>>,
    generation: Arc<AtomicU64>,
    degraded: Arc<Mutex<Option<String>>>,
    /// False when no client could be built: nothing will ever arrive.
    watching: bool,
}

/// What a [`View`] can hold: any Kubernetes object kube-runtime can watch and reflect.
pub trait Watchable:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watchable for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// What `/readyz` and `--once` need to know of any view.
pub trait Health: Send + Sync {
    /// Why data may be missing right now, if it may.
    fn degraded(&self) -> Option<String>;
    /// A watcher runs but has not delivered its first list yet.
    fn pending(&self) -> bool;
}

impl<K> Health for View<K>
where
    K: Watchable,
{
    fn degraded(&self) -> Option<String> {
        View::degraded(self).map(|why| format!("{}: {why}", K::plural(&())))
    }

    fn pending(&self) -> bool {
        self.is_watching() && self.generation() == 0
    }
}

impl<K> View<K>
where
    K: Watchable,
{
    /// Changes whenever the set of objects or their statuses changed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a watcher is running (false when no client could be configured).
    pub fn is_watching(&self) -> bool {
        self.watching
    }

    /// Why names may be missing right now, if they may.
    pub fn degraded(&self) -> Option<String> {
        self.degraded
            .lock()
            .map(|d| d.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The objects in the store.
    pub fn objects(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    /// The objects in the store, then those deleted within the last [`RETAIN_CYCLES`]
    /// cycles (in their final state).
    pub fn objects_with_departed(&self) -> Vec<Arc<K>> {
        let mut all = self.store.state();
        let departed = self.departed.lock().unwrap_or_else(|e| e.into_inner());
        let known: std::collections::HashSet<&str> =
            all.iter().filter_map(|o| o.meta().uid.as_deref()).collect();
        let gone: Vec<Arc<K>> = departed
            .iter()
            .filter(|(o, _)| o.meta().uid.as_deref().is_none_or(|u| !known.contains(u)))
            .map(|(o, _)| o.clone())
            .collect();
        drop(departed);
        all.extend(gone);
        all
    }

    /// Ends a cycle for deleted objects: each is exported for [`RETAIN_CYCLES`] cycles.
    /// Dropping one is a change of the view (its names go).
    pub fn age_departed(&self) {
        let mut departed = self.departed.lock().unwrap_or_else(|e| e.into_inner());
        let before = departed.len();
        departed.retain_mut(|(_, left)| {
            *left = left.saturating_sub(1);
            *left > 0
        });
        if departed.len() != before {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn depart(&self, obj: Arc<K>) {
        let mut departed = self.departed.lock().unwrap_or_else(|e| e.into_inner());
        let uid = obj.meta().uid.clone();
        departed.retain(|(o, _)| o.meta().uid != uid);
        departed.push((obj, RETAIN_CYCLES));
    }

    /// A view that is degraded from the start, for when no client could be built.
    pub fn unavailable(reason: String) -> Self {
        let (store, _writer) = reflector::store();
        warn!(reason = %reason, "degraded: kubernetes");
        View {
            store,
            departed: Arc::default(),
            generation: Arc::new(AtomicU64::new(0)),
            degraded: Arc::new(Mutex::new(Some(reason))),
            watching: false,
        }
    }

    /// Records the state; logs once per change (the state before the first answer,
    /// "not connected yet", is not announced until it turns out to be a failure).
    fn set_degraded(&self, reason: Option<String>) {
        let mut d = self.degraded.lock().unwrap_or_else(|e| e.into_inner());
        let was_announced = d.as_deref().is_some_and(|r| r != NOT_YET);
        match (&*d, &reason) {
            (_, Some(r)) if !was_announced => warn!(reason = %r, "degraded: kubernetes"),
            (Some(_), None) if was_announced => info!("kubernetes: connected again"),
            (Some(_), None) => info!("kubernetes: connected"),
            _ => {}
        }
        *d = reason;
    }
}

/// Builds a client from `--kubeconfig`, or infers one ($KUBECONFIG, ~/.kube/config,
/// in-cluster service account).
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            let bad = |message: String| Error::Kubeconfig {
                path: path.display().to_string(),
                message,
            };
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| bad(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Infer(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| Error::Client(e.to_string()))
}

/// Watches every object of kind `K` in the cluster until `cancel`.
pub fn watch_all<K>(client: Client, cancel: CancellationToken) -> View<K>
where
    K: Watchable,
{
    watch(Api::all(client), watcher::Config::default(), cancel)
}

/// Watches the objects of kind `K` that `config` selects until `cancel`; the returned view
/// fills as events arrive.
pub fn watch<K>(api: Api<K>, config: watcher::Config, cancel: CancellationToken) -> View<K>
where
    K: Watchable,
{
    let (store, writer) = reflector::store();
    let kube = View {
        store,
        departed: Arc::default(),
        generation: Arc::new(AtomicU64::new(0)),
        degraded: Arc::new(Mutex::new(Some(NOT_YET.into()))),
        watching: true,
    };
    let stream = watcher(api, config).default_backoff().reflect(writer);
    let view = kube.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut before_relist = Vec::new();
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = cancel.cancelled() => return,
            };
            match event {
                // A (re)list starts: remember what was there, to see what it no longer has.
                Some(Ok(watcher::Event::Init)) => before_relist = view.store.state(),
                Some(Ok(watcher::Event::InitApply(_))) => {}
                Some(Ok(watcher::Event::InitDone)) => {
                    let now: std::collections::HashSet<String> = view
                        .store
                        .state()
                        .iter()
                        .filter_map(|o| o.meta().uid.clone())
                        .collect();
                    for gone in std::mem::take(&mut before_relist) {
                        if gone.meta().uid.as_ref().is_some_and(|u| !now.contains(u)) {
                            view.depart(gone);
                        }
                    }
                    view.generation.fetch_add(1, Ordering::AcqRel);
                    view.set_degraded(None);
                }
                Some(Ok(watcher::Event::Delete(obj))) => {
                    view.depart(Arc::new(obj));
                    view.generation.fetch_add(1, Ordering::AcqRel);
                    view.set_degraded(None);
                }
                Some(Ok(watcher::Event::Apply(_))) => {
                    view.generation.fetch_add(1, Ordering::AcqRel);
                    view.set_degraded(None);
                }
                Some(Err(e)) => view.set_degraded(Some(e.to_string())),
                None => return,
            }
        }
    });
    kube
}
