//! Running alerting as a service ([`run`]): the evaluation, delivery and policy-reload
//! loops, and the HTTP API they answer on: `/api/v1/alerts` (Prometheus's shape),
//! `/api/v1/history`, `/metrics` and `/healthz`.
//!
//! It promises: the loops stop on cancellation and the state is saved once more before
//! [`run`] returns; `/api/v1/alerts` lists a self-alarm while every query of the last
//! evaluation failed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use telltale_model::calendar::MINUTE_MS;
use tokio_util::sync::CancellationToken;
use tracing::{info, Instrument as _};

use crate::options::{Error, Options};
use crate::outbox;
use crate::service::{lock, rfc3339, Alerting};
use crate::template;

/// A fingerprint of the policy files (names, sizes, modification times).
fn fingerprint(path: &std::path::Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let entries: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    } else {
        vec![path.to_owned()]
    };
    let mut fp: Vec<_> = entries
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).ok();
            let len = m.as_ref().map(|m| m.len()).unwrap_or(0);
            let modified = m.and_then(|m| m.modified().ok());
            (p, len, modified)
        })
        .collect();
    fp.sort();
    fp
}

/// Runs alerting until `cancel`: evaluation, delivery and reload loops and the HTTP API.
/// `ready` gets the bound address.
pub async fn run(
    opts: Options,
    listen: SocketAddr,
    cancel: CancellationToken,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), Error> {
    let a = Alerting::new(opts)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    info!(%addr, policies = %a.opts.policies.display(), query_url = %a.opts.query_url, groups = lock(&a.rules).groups.len(), "alerting listening");
    ready(addr);

    let eval = {
        let a = a.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            loop {
                let now = a.now();
                a.cycle(now).instrument(tracing::info_span!("cycle")).await;
                let wait = (a.next_due(a.now()) - a.now()).clamp(10, MINUTE_MS) as u64;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                }
            }
        })
    };
    let send = {
        let a = a.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            loop {
                a.deliver_due(a.now()).await;
                let next = outbox::next_due(&lock(&a.state));
                let wait = next.map(|t| (t - a.now()).clamp(10, 1000)).unwrap_or(1000) as u64;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = a.wake_sender.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                }
            }
        })
    };
    let reload = {
        let a = a.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut seen = fingerprint(&a.opts.policies);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(a.opts.reload_interval) => {}
                }
                let now = fingerprint(&a.opts.policies);
                if now != seen {
                    seen = now;
                    let _ = a.reload();
                }
            }
        })
    };

    let app = Router::new()
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/history", get(history))
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(a.clone());
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.clone().cancelled_owned())
        .await
        .map_err(Error::Serve);
    cancel.cancel();
    let _ = tokio::join!(eval, send, reload);
    // What the loops changed is saved as they go; save once more for a clean stop.
    {
        let st = lock(&a.state);
        if let Err(e) = lock(&a.state_dir).save(&st) {
            tracing::error!(error = %e, "cannot save alarm state at shutdown");
        }
    }
    served
}

/// Prometheus's answer shape for `/api/v1/alerts`, with Telltale's states (`no_data`
/// besides `pending` and `firing`) and a self-alarm while the query API is unreachable.
async fn alerts(AxumState(a): AxumState<Arc<Alerting>>) -> Response {
    let st = lock(&a.state);
    let mut list: Vec<serde_json::Value> = st
        .engine
        .list(false)
        .map(|x| {
            serde_json::json!({
                "labels": x.labels,
                "annotations": x.annotations,
                "state": x.state.as_str(),
                "activeAt": rfc3339(x.active_at),
                "firedAt": x.fired_at.map(rfc3339),
                "value": template::go_float(x.value, None),
                "group": x.group,
            })
        })
        .collect();
    drop(st);
    if let Some(e) = lock(&a.query_error).clone() {
        list.push(serde_json::json!({
            "labels": { "alertname": "TelltaleAlertingQueryFailing", "severity": "critical" },
            "annotations": { "description": format!("every query of the last evaluation failed, alarm states are frozen: {e}") },
            "state": "firing",
            "value": "1",
        }));
    }
    json(serde_json::json!({ "status": "success", "data": { "alerts": list } }))
}

#[derive(serde::Deserialize)]
struct HistoryParams {
    limit: Option<usize>,
}

async fn history(
    AxumState(a): AxumState<Arc<Alerting>>,
    Query(p): Query<HistoryParams>,
) -> Response {
    let records = lock(&a.state_dir).history(p.limit.unwrap_or(1000).min(100_000));
    json(serde_json::json!({ "status": "success", "data": records }))
}

async fn metrics_handler(AxumState(a): AxumState<Arc<Alerting>>) -> Response {
    let mut buf = Vec::new();
    let enc = prometheus::TextEncoder::new();
    if let Err(e) = prometheus::Encoder::encode(&enc, &a.registry.gather(), &mut buf) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response()
}

fn json(v: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}
