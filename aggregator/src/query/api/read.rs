//! `POST /api/v1/read`: Prometheus remote read with the `SAMPLES` response, so that a
//! Prometheus can use the aggregator as long-term storage through its `remote_read`
//! config. Every sample the store holds in a query's window is sent, stale markers
//! included, as Prometheus's own remote read handler sends them; errors are plain text
//! with a status, as Prometheus answers them.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use promql_parser::label::Matcher;
use promql_parser::parser::token;
use telltale_model::remote::{Label, Sample, TimeSeries, CONTENT_ENCODING, CONTENT_TYPE};
use telltale_model::remote_read::{
    LabelMatcher, MatchType, QueryResult, ReadRequest, ReadResponse,
};

use super::super::source::Source;
use super::Api;

/// A refusal: status and the words saying why.
type Refusal = (StatusCode, String);

/// The handler.
pub async fn read(State(api): State<Api>, body: Bytes) -> Response {
    let req = match ReadRequest::decode_body(&body) {
        Ok(r) => r,
        Err(e) => return refuse((StatusCode::BAD_REQUEST, format!("remote read: {e}"))),
    };
    if !req.accepts_samples() {
        return refuse((
            StatusCode::BAD_REQUEST,
            "remote read: only the SAMPLES response type is served, and the request does not accept it".into(),
        ));
    }
    let (source, max) = (api.source.clone(), api.limits.max_samples);
    match tokio::task::spawn_blocking(move || answer(&*source, &req, max)).await {
        Ok(Ok(resp)) => (
            [
                (header::CONTENT_TYPE, CONTENT_TYPE),
                (header::CONTENT_ENCODING, CONTENT_ENCODING),
            ],
            resp.encode_body(),
        )
            .into_response(),
        Ok(Err(r)) => refuse(r),
        Err(e) => refuse((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("remote read task failed: {e}"),
        )),
    }
}

fn refuse((status, message): Refusal) -> Response {
    if status.is_server_error() {
        tracing::warn!(error = %message, "remote read failed");
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        message + "\n",
    )
        .into_response()
}

/// Each query's series, at most `max` samples over all of them.
fn answer(source: &dyn Source, req: &ReadRequest, max: usize) -> Result<ReadResponse, Refusal> {
    let mut total = 0usize;
    let mut results = Vec::with_capacity(req.queries.len());
    for (i, q) in req.queries.iter().enumerate() {
        let matchers = q
            .matchers
            .iter()
            .map(matcher)
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("remote read: query {i}: {e}"),
                )
            })?;
        if matchers.is_empty() {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("remote read: query {i} has no matchers"),
            ));
        }
        tracing::debug!(
            query = i,
            start = q.start_timestamp_ms,
            end = q.end_timestamp_ms,
            matchers = q.matchers.len(),
            "remote read"
        );
        let found = source
            .select(&matchers, q.start_timestamp_ms, q.end_timestamp_ms)
            .map_err(|e| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("remote read: query {i}: {e}"),
                )
            })?;
        let mut timeseries = Vec::with_capacity(found.len());
        for s in found.into_iter().filter(|s| !s.points.is_empty()) {
            total += s.points.len();
            if total > max {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("remote read: more than {max} samples (--query-max-samples); ask for a shorter range or fewer series"),
                ));
            }
            timeseries.push(TimeSeries {
                labels: s
                    .labels
                    .0
                    .iter()
                    .map(|(name, value)| Label {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                samples: s
                    .points
                    .iter()
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
            });
        }
        results.push(QueryResult { timeseries });
    }
    Ok(ReadResponse { results })
}

/// A wire matcher as the engine's.
fn matcher(m: &LabelMatcher) -> Result<Matcher, String> {
    let op = match MatchType::try_from(m.r#type) {
        Ok(MatchType::Eq) => token::T_EQL,
        Ok(MatchType::Neq) => token::T_NEQ,
        Ok(MatchType::Re) => token::T_EQL_REGEX,
        Ok(MatchType::Nre) => token::T_NEQ_REGEX,
        Err(_) => {
            return Err(format!(
                "matcher on {:?}: unknown type {}",
                m.name, m.r#type
            ))
        }
    };
    if m.name.is_empty() {
        return Err("a matcher without a label name".into());
    }
    Matcher::new_matcher(op, m.name.clone(), m.value.clone())
        .map_err(|e| format!("matcher on {:?}: {e}", m.name))
}
