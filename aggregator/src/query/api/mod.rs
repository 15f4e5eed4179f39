//! The Prometheus HTTP query API: `/api/v1/query`, `query_range`, `series`, `labels`,
//! `label/<name>/values`, `metadata` and `status/buildinfo`, GET or form-encoded POST,
//! and remote read ([`mod@read`]),
//! answered with Prometheus's JSON shapes ([`mod@format`]) and error types (400 `bad_data`,
//! 422 `execution`, 503 `timeout`, 500 `internal`).

pub mod format;
pub mod read;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use promql_parser::label::Matcher;
use promql_parser::parser::Expr;
use telltale_model::prom::{is_label_name, parse_duration, parse_time};

use self::format::{instant_json, push_labels, series_json};
use super::error::Error;
use super::eval;
use super::limits::Limits;
use super::plan::Requested;
use super::run;
use super::source::{matchers, Source};
use super::value::{Series, NAME};

/// What the query endpoints need.
#[derive(Clone)]
pub struct Api {
    /// Where series come from.
    pub source: Arc<dyn Source + Send + Sync>,
    /// Bounds on each query.
    pub limits: Limits,
    /// Now, in ms (the injected clock).
    pub now: Arc<dyn Fn() -> i64 + Send + Sync>,
}

/// The query API's routes.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/read", axum::routing::post(read::read))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .with_state(api)
}

/// The request's parameters: the URL's, then a form body's.
struct Params(Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Params {
    type Rejection = Error;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Params, Error> {
        let raw = req.uri().query().map(str::to_owned);
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| Error::BadData(format!("reading the request body: {e}")))?;
        Params::of(raw, &headers, &body)
    }
}

impl Params {
    fn of(raw: Option<String>, headers: &HeaderMap, body: &Bytes) -> Result<Params, Error> {
        let bad =
            |e: serde_urlencoded::de::Error| Error::BadData(format!("invalid parameters: {e}"));
        let mut out: Vec<(String, String)> =
            serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).map_err(bad)?;
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if form && !body.is_empty() {
            out.extend(serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).map_err(bad)?);
        }
        Ok(Params(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A time parameter in ms: unix seconds or RFC 3339; `default` when absent.
    fn time(&self, name: &str, default: i64) -> Result<i64, Error> {
        match self.get(name) {
            None | Some("") => Ok(default),
            Some(v) => parse_time(v).ok_or_else(|| {
                Error::BadData(format!(
                    "invalid parameter {name:?}: cannot parse {v:?} to a valid timestamp"
                ))
            }),
        }
    }

    /// The server's limits, with a shorter timeout when the request's `timeout` asks.
    fn limits(&self, server: &Limits) -> Result<Limits, Error> {
        let mut limits = server.clone();
        if let Some(v) = self.get("timeout").filter(|v| !v.is_empty()) {
            let ms = parse_duration(v).filter(|ms| *ms > 0).ok_or_else(|| {
                Error::BadData(format!(
                    "invalid parameter \"timeout\": cannot parse {v:?} to a valid duration"
                ))
            })?;
            limits.timeout = limits
                .timeout
                .min(std::time::Duration::from_millis(ms as u64));
        }
        Ok(limits)
    }

    fn limit(&self) -> Result<usize, Error> {
        match self.get("limit") {
            None | Some("") => Ok(usize::MAX),
            Some(v) => match v.parse::<i64>() {
                Ok(0) => Ok(usize::MAX),
                Ok(n) if n > 0 => Ok(n as usize),
                _ => Err(Error::BadData(format!(
                    "invalid parameter \"limit\": cannot parse {v:?} to a valid limit"
                ))),
            },
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            Error::BadData(_) => (StatusCode::BAD_REQUEST, "bad_data"),
            Error::Execution(_) | Error::TooManySamples => {
                (StatusCode::UNPROCESSABLE_ENTITY, "execution")
            }
            Error::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            Error::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "query failed");
        }
        // Keys in Prometheus's order.
        let body = format!(
            "{{\"status\":\"error\",\"errorType\":\"{kind}\",\"error\":{}}}",
            serde_json::to_string(&self.to_string()).unwrap_or_default()
        );
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn success(data: &str) -> Response {
    json(format!("{{\"status\":\"success\",\"data\":{data}}}"))
}

/// Runs blocking evaluation off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Execution(format!("query task failed: {e}")))?
}

async fn query(State(api): State<Api>, p: Params) -> Result<Response, Error> {
    let expr = parse_param(&p)?;
    let t = p.time("time", (api.now)())?;
    let (source, limits) = (api.source.clone(), p.limits(&api.limits)?);
    let value = blocking(move || run::instant_query(&*source, &expr, t, &limits)).await?;
    Ok(success(&instant_json(&value, t)))
}

async fn query_range(State(api): State<Api>, p: Params) -> Result<Response, Error> {
    let start = p.time("start", i64::MIN)?;
    let end = p.time("end", i64::MIN)?;
    if start == i64::MIN {
        return Err(Error::BadData(
            "invalid parameter \"start\": missing".into(),
        ));
    }
    if end == i64::MIN {
        return Err(Error::BadData("invalid parameter \"end\": missing".into()));
    }
    if end < start {
        return Err(Error::BadData(
            "invalid parameter \"end\": end timestamp must not be before start time".into(),
        ));
    }
    let step_text = p.get("step").unwrap_or("");
    let step = parse_duration(step_text).ok_or_else(|| {
        Error::BadData(format!(
            "invalid parameter \"step\": cannot parse {step_text:?} to a valid duration"
        ))
    })?;
    if step <= 0 {
        return Err(Error::BadData(
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
    }
    if (end - start) / step >= api.limits.max_points {
        return Err(Error::BadData(format!(
                "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                api.limits.max_points
            )));
    }
    let expr = parse_param(&p)?;
    if matches!(
        strip_parens(&expr),
        Expr::MatrixSelector(_) | Expr::Subquery(_) | Expr::StringLiteral(_)
    ) {
        let kind = match strip_parens(&expr) {
            Expr::StringLiteral(_) => "string",
            _ => "range vector",
        };
        return Err(Error::BadData(format!(
            "invalid expression type \"{kind}\" for range query, must be Scalar or instant Vector"
        )));
    }
    let asked = p.get("max_source_resolution");
    let requested = Requested::parse(asked).ok_or_else(|| {
        Error::BadData(format!(
            "invalid parameter \"max_source_resolution\": {:?} is not one of raw, 5m, 1h, auto",
            asked.unwrap_or_default()
        ))
    })?;
    let stats = p.get("stats").is_some_and(|v| !v.is_empty());
    let (source, limits) = (api.source.clone(), p.limits(&api.limits)?);
    let answer =
        blocking(move || run::range_query(&*source, &expr, start, end, step, &limits, requested))
            .await?;
    let mut out = String::from("{\"resultType\":\"matrix\",\"result\":[");
    for (i, s) in answer.series.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        series_json(&mut out, s);
    }
    out.push(']');
    if stats {
        // Prometheus's names for the samples a query read and held at once.
        out.push_str(&format!(
            ",\"stats\":{{\"samples\":{{\"totalQueryableSamples\":{},\"peakSamples\":{}}},\"resolution\":\"{}\"}}",
            answer.total_samples,
            answer.peak_samples,
            answer.resolution.name()
        ));
    }
    out.push('}');
    let mut response = success(&out);
    response.headers_mut().insert(
        RESOLUTION_HEADER,
        header::HeaderValue::from_static(answer.resolution.name()),
    );
    Ok(response)
}

/// The response header naming the resolution a range query was answered at.
pub const RESOLUTION_HEADER: &str = "x-telltale-resolution";

fn strip_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip_parens(&p.expr),
        e => e,
    }
}

fn parse_param(p: &Params) -> Result<Expr, Error> {
    match p.get("query") {
        None => Err(Error::BadData(
            "invalid parameter \"query\": 1:1: parse error: no expression found in input".into(),
        )),
        Some(q) => eval::parse(q).map_err(|e| match e {
            Error::BadData(m) => Error::BadData(format!("invalid parameter \"query\": {m}")),
            other => other,
        }),
    }
}

/// The series matching any of the `match[]` selectors (all series when none is given)
/// in `[start, end]`.
fn matching_series(
    source: &dyn Source,
    selectors: &[&str],
    start: i64,
    end: i64,
    required: bool,
) -> Result<Vec<Series>, Error> {
    let mut sets: Vec<Vec<Matcher>> = Vec::new();
    for s in selectors {
        let expr = eval::parse(s)
            .map_err(|e| Error::BadData(format!("invalid parameter \"match[]\": {e}")))?;
        match expr {
            Expr::VectorSelector(vs) => sets.push(matchers(&vs)),
            _ => {
                return Err(Error::BadData(format!(
                    "invalid parameter \"match[]\": {s:?} is not a series selector"
                )))
            }
        }
    }
    if sets.is_empty() {
        if required {
            return Err(Error::BadData("no match[] parameter provided".into()));
        }
        let all = promql_parser::label::Matcher::new_matcher(
            promql_parser::parser::token::T_EQL_REGEX,
            NAME.into(),
            ".+".into(),
        )
        .map_err(Error::BadData)?;
        sets.push(vec![all]);
    }
    let mut out: Vec<Series> = Vec::new();
    for m in sets {
        out.extend(source.select(&m, start, end)?);
    }
    out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
    out.dedup_by(|a, b| a.labels == b.labels);
    Ok(out)
}

/// The window of the metadata endpoints: all of time when not given, as Prometheus.
fn window(p: &Params) -> Result<(i64, i64), Error> {
    Ok((
        p.time("start", -62_135_596_800_000)?,
        p.time("end", 253_402_300_799_000)?,
    ))
}

async fn series(State(api): State<Api>, p: Params) -> Result<Response, Error> {
    let (start, end) = window(&p)?;
    let limit = p.limit()?;
    let selectors: Vec<String> = p.all("match[]").into_iter().map(String::from).collect();
    let source = api.source.clone();
    let found = blocking(move || {
        let refs: Vec<&str> = selectors.iter().map(String::as_str).collect();
        matching_series(&*source, &refs, start, end, true)
    })
    .await?;
    let mut out = String::from("[");
    for (i, s) in found.iter().take(limit).enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_labels(&mut out, &s.labels);
    }
    out.push(']');
    Ok(success(&out))
}

/// `labels` and `label/<name>/values`: sorted, distinct, limited.
async fn names_or_values(api: Api, p: Params, of: Option<String>) -> Result<Response, Error> {
    let (start, end) = window(&p)?;
    let limit = p.limit()?;
    let selectors: Vec<String> = p.all("match[]").into_iter().map(String::from).collect();
    let source = api.source.clone();
    let set = blocking(move || {
        let refs: Vec<&str> = selectors.iter().map(String::as_str).collect();
        let found = matching_series(&*source, &refs, start, end, false)?;
        let mut set = BTreeSet::new();
        for s in &found {
            match &of {
                Some(name) => {
                    let v = s.labels.get(name);
                    if !v.is_empty() {
                        set.insert(v.to_owned());
                    }
                }
                None => set.extend(s.labels.0.iter().map(|(n, _)| n.clone())),
            }
        }
        Ok(set)
    })
    .await?;
    let list: Vec<&String> = set.iter().take(limit).collect();
    Ok(success(&serde_json::to_string(&list).unwrap_or_default()))
}

async fn labels(State(api): State<Api>, p: Params) -> Result<Response, Error> {
    names_or_values(api, p, None).await
}

async fn label_values(
    State(api): State<Api>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, Error> {
    if !is_label_name(&name) {
        return Err(Error::BadData(format!("invalid label name: {name:?}")));
    }
    names_or_values(api, p, Some(name)).await
}

/// Metric metadata (type, help, unit) is not carried by remote write 1.0 requests as we
/// store them, so there is none to give; the shape is Prometheus's.
async fn metadata() -> Response {
    success("{}")
}

/// Grafana reads the version to pick the PromQL features it offers: we answer as the
/// Prometheus release whose query semantics we implement.
async fn buildinfo() -> Response {
    success(&format!(
        "{{\"version\":\"2.42.0\",\"revision\":\"telltale-{}\",\"branch\":\"telltale\",\"buildUser\":\"telltale\",\"buildDate\":\"\",\"goVersion\":\"none (Rust)\"}}",
        env!("CARGO_PKG_VERSION")
    ))
}
