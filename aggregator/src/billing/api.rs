//! `GET /api/v1/billing?start=&end=&by=`: a billing report over any window as JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use telltale_model::prom::parse_time;

use super::frontier::Frontier;
use super::pods::Gather;
use super::prices::Prices;
use super::settle::By;
use super::{gather_head, report_of};
use crate::store::Store;

/// What the billing endpoint needs.
#[derive(Clone)]
pub struct Api {
    /// The store (its files and head).
    pub store: Arc<Store>,
    /// Where settlement stands.
    pub frontier: Arc<Frontier>,
    /// Where "now" comes from.
    pub clock: Arc<dyn telltale_model::time::Clock>,
    /// The price table.
    pub prices: Arc<Prices>,
}

/// `GET /api/v1/billing?start=&end=&by=`: the report as JSON; 400 with Prometheus's error
/// shape for a bad parameter.
pub async fn handler(
    axum::extract::State(api): axum::extract::State<Api>,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let bad = |message: String| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(
                serde_json::json!({"status": "error", "errorType": "bad_data", "error": message}),
            ),
        )
            .into_response()
    };
    let time = |name: &str| match q.get(name) {
        None => Err(format!("{name} is required (unix seconds or RFC 3339)")),
        Some(v) => parse_time(v)
            .ok_or_else(|| format!("{name}={v:?} is not a time (unix seconds or RFC 3339)")),
    };
    let (start, end) = match (time("start"), time("end")) {
        (Ok(s), Ok(e)) if s < e => (s, e),
        (Ok(_), Ok(_)) => return bad("end must be after start".into()),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let by_text = q.get("by").map_or("namespace", String::as_str);
    let by: By = match by_text.parse() {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let (store, prices, by) = (api.store.clone(), api.prices.clone(), by.clone());
    let (frontier, clock) = (api.frontier.clone(), api.clock.clone());
    let report = tokio::task::spawn_blocking(move || {
        let now = telltale_model::time::to_millis(clock.now());
        let head = |g: &mut Gather| gather_head(&store, g);
        let frontier = frontier.settled_below();
        report_of(
            store.data_dir(),
            &prices,
            frontier,
            Some(&head),
            (start, end),
            now,
            &by,
        )
    })
    .await;
    match report {
        Ok(Ok(r)) => axum::Json(r.json(start, end, by_text)).into_response(),
        Ok(Err(e)) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({"status": "error", "errorType": "internal", "error": e.to_string()})),
        )
            .into_response(),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("billing task failed: {e}\n"),
        )
            .into_response(),
    }
}
