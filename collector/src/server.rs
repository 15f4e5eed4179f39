//! The collector's HTTP surface: `/metrics` serves the latest snapshot as it is (a scrape
//! never triggers a collection), `/healthz` says the process is alive, `/readyz` says
//! whether a first collection has finished and whether Kubernetes names are available
//! ("degraded: kubernetes"; still 200, since collection works without them).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::kube_watch::Health;
use crate::snapshot::Snapshot;

/// The latest snapshot, shared by the collection loop (sender) and every reader.
pub type Latest = watch::Receiver<Option<Arc<Snapshot>>>;

/// What the endpoints report on.
#[derive(Clone)]
pub struct Status {
    /// The latest snapshot.
    pub latest: Latest,
    /// The Kubernetes views (none with `--no-kube`).
    pub kube: Vec<Arc<dyn Health>>,
}

/// The collector's routes.
pub fn router(status: Status) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(status)
}

async fn metrics(State(status): State<Status>) -> Response {
    let snap = status.latest.borrow().clone();
    match snap {
        Some(s) => (
            [(header::CONTENT_TYPE, telltale_model::text::CONTENT_TYPE)],
            s.text.clone(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no collection has finished yet\n",
        )
            .into_response(),
    }
}

async fn readyz(State(status): State<Status>) -> Response {
    if status.latest.borrow().is_some() {
        match status.kube.iter().find_map(|v| v.degraded()) {
            Some(why) => (
                StatusCode::OK,
                format!("ready; degraded: kubernetes: {why}\n"),
            )
                .into_response(),
            None => (StatusCode::OK, "ready\n").into_response(),
        }
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first collection has not finished\n",
        )
            .into_response()
    }
}
