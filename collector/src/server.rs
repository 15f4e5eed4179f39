//! The collector's HTTP surface: `/metrics` serves the latest snapshot as it is (a scrape
//! never triggers a collection), `/healthz` says the process is alive, `/readyz` says
//! whether a first collection has finished.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::collect::Snapshot;

/// The latest snapshot, shared by the collection loop (sender) and every reader.
pub type Latest = watch::Receiver<Option<Arc<Snapshot>>>;

/// The collector's routes.
pub fn router(latest: Latest) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(latest)
}

async fn metrics(State(latest): State<Latest>) -> Response {
    let snap = latest.borrow().clone();
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

async fn readyz(State(latest): State<Latest>) -> Response {
    if latest.borrow().is_some() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first collection has not finished\n",
        )
            .into_response()
    }
}
