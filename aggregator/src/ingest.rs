//! `POST /api/v1/write`: Prometheus remote write 1.0 in, a WAL record out.
//!
//! A request is checked whole before anything of it is kept: headers, size, snappy,
//! protobuf, every series' labels, and (with `--auth-tokens`) the bearer token and every
//! series' `cluster`. A 204 means the body is in the WAL, fsynced. Errors are answered with
//! a status and a one-line message naming what is wrong:
//! - 415: `Content-Type` is not `application/x-protobuf` or `Content-Encoding` not `snappy`;
//! - 413: body over the limit (compressed or decompressed);
//! - 400: not snappy, not a `WriteRequest`, or a series with an empty, duplicate, missing
//!   or oversized label (limits: [`MAX_LABEL_NAME`], [`MAX_LABEL_VALUE`], [`MAX_LABELS`]);
//! - 401: no or unknown bearer token; 403: a series of a cluster the token may not write
//!   (nothing of the request is kept);
//! - 503: the WAL cannot be written, or holds `--wal-max-bytes` while the object store
//!   does not answer (nothing acknowledged; senders keep the samples and retry).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use telltale_model::prom::METRIC_NAME;
use telltale_model::remote;
use tracing::warn;

use crate::metrics::Metrics;
use crate::store::Store;

/// Longest label name accepted.
pub const MAX_LABEL_NAME: usize = 1024;
/// Longest label value accepted.
pub const MAX_LABEL_VALUE: usize = 16 * 1024;
/// Most labels on one series.
pub const MAX_LABELS: usize = 128;
/// Largest request body (compressed).
pub const MAX_BODY: usize = 32 << 20;
/// Largest request body once decompressed.
pub const MAX_DECOMPRESSED: usize = 256 << 20;

/// Errors loading the token file.
#[derive(Debug, thiserror::Error)]
#[error("--auth-tokens {path}: {message}")]
pub struct TokensError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub message: String,
}

/// Bearer tokens and the clusters each may write (`--auth-tokens`, YAML: a map of token to
/// a list of cluster names).
#[derive(Debug, Clone, Default)]
pub struct Tokens(HashMap<String, Vec<String>>);

impl Tokens {
    /// Loads the YAML file.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let err = |message: String| TokensError {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let map: HashMap<String, Vec<String>> = serde_yaml::from_str(&text).map_err(|e| {
            err(format!(
                "{e} (expected a map of token to a list of cluster names)"
            ))
        })?;
        if map.keys().any(|k| k.trim().is_empty()) {
            return Err(err("a token is empty".into()));
        }
        Ok(Tokens(map))
    }
}

/// What the handler needs.
#[derive(Clone)]
pub struct Ingest {
    /// The WAL and head.
    pub store: Arc<Store>,
    /// `None`: no authentication.
    pub tokens: Option<Arc<Tokens>>,
    /// Own metrics.
    pub metrics: Metrics,
}

/// A refused request: status, reason label, message.
pub(crate) struct Refused(StatusCode, &'static str, String);

impl Refused {
    /// What is wrong.
    pub(crate) fn message(&self) -> &str {
        &self.2
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.2)).into_response()
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The handler.
pub async fn write(State(ingest): State<Ingest>, headers: HeaderMap, body: Bytes) -> Response {
    match accept(&ingest, &headers, body).await {
        Ok(samples) => {
            ingest.metrics.ingested.inc_by(samples);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => {
            ingest.metrics.rejected.with_label_values(&[r.1]).inc();
            r.into_response()
        }
    }
}

async fn accept(ingest: &Ingest, headers: &HeaderMap, body: Bytes) -> Result<u64, Refused> {
    let ct = header(headers, "content-type");
    if !ct.starts_with(remote::CONTENT_TYPE) {
        return Err(Refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            format!("Content-Type must be {} (got {ct:?})", remote::CONTENT_TYPE),
        ));
    }
    let ce = header(headers, "content-encoding");
    if ce != remote::CONTENT_ENCODING {
        return Err(Refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_encoding",
            format!("Content-Encoding must be snappy (got {ce:?})"),
        ));
    }
    let allowed = match &ingest.tokens {
        None => None,
        Some(tokens) => {
            let auth = header(headers, "authorization");
            let Some(token) = auth.strip_prefix("Bearer ") else {
                return Err(Refused(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a bearer token is required".into(),
                ));
            };
            match tokens.0.get(token.trim()) {
                Some(clusters) => Some(clusters),
                None => {
                    return Err(Refused(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "unknown bearer token".into(),
                    ))
                }
            }
        }
    };
    if body.len() > MAX_BODY {
        return Err(too_large(format!(
            "body of {} bytes is over {MAX_BODY}",
            body.len()
        )));
    }
    match snap::raw::decompress_len(&body) {
        Ok(n) if n > MAX_DECOMPRESSED => {
            return Err(too_large(format!(
                "body decompresses to {n} bytes, over {MAX_DECOMPRESSED}"
            )))
        }
        Ok(_) => {}
        Err(e) => {
            return Err(bad(
                "snappy",
                format!("body is not snappy (block format): {e}"),
            ))
        }
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .map_err(|e| bad("snappy", format!("body is not snappy (block format): {e}")))?;
    let req = remote::RequestRef::parse(&raw)?;
    for (i, remote::SeriesRef { labels, .. }) in req.series().enumerate() {
        check_labels(i, labels)?;
        if let Some(allowed) = allowed {
            let cluster = labels
                .iter()
                .find(|(n, _)| *n == "cluster")
                .map_or("", |(_, v)| *v);
            if !allowed.iter().any(|c| c == cluster) {
                return Err(Refused(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "series {i}: cluster {cluster:?} is not one this token may write; nothing of this request was stored"
                    ),
                ));
            }
        }
    }
    if let Err(e) = ingest.store.append(body.to_vec(), &req).await {
        // A full WAL is the object store's state, logged once per change there.
        if !matches!(e, crate::store::wal::Error::Full { .. }) {
            warn!(error = %e, "cannot log a write request");
        }
        return Err(Refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "wal",
            format!("cannot make the write durable: {e}"),
        ));
    }
    Ok(req.samples() as u64)
}

impl From<remote::BorrowError> for Refused {
    fn from(e: remote::BorrowError) -> Self {
        bad("protobuf", e.to_string())
    }
}

fn bad(reason: &'static str, message: String) -> Refused {
    Refused(StatusCode::BAD_REQUEST, reason, message)
}

fn too_large(message: String) -> Refused {
    Refused(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
}

pub(crate) fn check_labels(i: usize, labels: &[(&str, &str)]) -> Result<(), Refused> {
    if labels.len() > MAX_LABELS {
        return Err(bad(
            "labels",
            format!("series {i}: {} labels, over {MAX_LABELS}", labels.len()),
        ));
    }
    let mut name = None;
    for (j, &(n, v)) in labels.iter().enumerate() {
        if n.is_empty() {
            return Err(bad(
                "labels",
                format!("series {i}: label {j} has an empty name"),
            ));
        }
        if n.len() > MAX_LABEL_NAME {
            return Err(bad(
                "labels",
                format!(
                    "series {i}: a label name of {} bytes, over {MAX_LABEL_NAME}",
                    n.len()
                ),
            ));
        }
        if v.len() > MAX_LABEL_VALUE {
            return Err(bad(
                "labels",
                format!(
                    "series {i}: label {n:?} has a value of {} bytes, over {MAX_LABEL_VALUE}",
                    v.len()
                ),
            ));
        }
        if labels[..j].iter().any(|o| o.0 == n) {
            return Err(bad(
                "labels",
                format!("series {i}: label {n:?} appears twice"),
            ));
        }
        if n == METRIC_NAME {
            name = Some(v);
        }
    }
    match name {
        Some(n) if !n.is_empty() => Ok(()),
        _ => Err(bad(
            "labels",
            format!("series {i}: no metric name (__name__)"),
        )),
    }
}
