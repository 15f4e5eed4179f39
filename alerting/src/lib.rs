//! Telltale's alerting.
//!
//! It owns: loading Telltale alarm policies and Prometheus rule files ([`config`],
//! [`builtin`], [`template`]), evaluating them against any Prometheus-compatible query
//! API ([`query`]) on their intervals, the alarm state machine ([`engine`]), its
//! persistence ([`store`]), and the notification outbox ([`outbox`]) with its receivers:
//! email, webhook, Alertmanager ([`notify`]).
//!
//! It promises: an evaluation's transitions and the notifications they cause are on disk
//! together before anything is sent, so a restart neither loses a notification nor forgets
//! a recovery; an unreachable query API changes no alarm (no false recoveries) and raises
//! a self-alarm; an invalid policy reload keeps the previous policies running.

pub mod builtin;
pub mod config;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod outbox;
pub mod query;
pub mod remote;
pub mod store;
pub mod template;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt as _;
use prometheus::Registry;
use telltale_model::time::{align_down, to_millis, Clock};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument as _};

use config::Rules;
use engine::AlarmState;
use notify::Senders;
use store::{State, Store};

/// What alerting is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// Policy and rule files (a file or a directory).
    pub policies: PathBuf,
    /// The Prometheus-compatible query API.
    pub query_url: String,
    /// Where alarm state, the outbox and the history live.
    pub state_dir: PathBuf,
    /// The mail server, if any.
    pub smtp: Option<notify::Smtp>,
    /// Links placed in notifications.
    pub links: notify::Links,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Timeout of one query.
    pub query_timeout: Duration,
    /// How often the policy files are checked for changes.
    pub reload_interval: Duration,
    /// Where recording rules' results and `ALERTS`/`ALERTS_FOR_STATE` are written
    /// (remote write 1.0); nothing is written without it.
    pub remote_write: Option<String>,
}

/// Errors that stop alerting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policies do not load at start.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// The state directory is unusable.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
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
}

/// Everything the loops and handlers share.
#[derive(Debug)]
pub struct Alerting {
    opts: Options,
    rules: Mutex<Arc<Rules>>,
    state: Mutex<State>,
    store: Mutex<Store>,
    api: query::Api,
    writer: Option<remote::Writer>,
    senders: Senders,
    /// Metrics, registered in `registry`.
    pub metrics: metrics::Metrics,
    registry: Registry,
    wake_sender: tokio::sync::Notify,
    query_error: Mutex<Option<String>>,
    resent: Mutex<BTreeMap<String, i64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Each rule's query result, in the group's order.
type RuleResults = Vec<Result<Vec<query::Sample>, query::Error>>;

/// What one evaluation cycle did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// Groups evaluated.
    pub groups: usize,
    /// Rules whose query failed.
    pub query_errors: usize,
    /// Notifications queued.
    pub notifications: usize,
}

impl Alerting {
    /// Loads the policies and the saved state.
    pub fn new(opts: Options) -> Result<Arc<Alerting>, Error> {
        let rules = Rules::load(&opts.policies)?;
        warn_unsupported(&rules, opts.remote_write.is_some());
        let store = Store::open(&opts.state_dir)?;
        let mut state = store.load()?;
        state.engine.retain_configured(&rules.groups);
        let registry = Registry::new();
        let metrics = metrics::Metrics::new(&registry)?;
        metrics.reload_ok.set(1);
        metrics.query_up.set(1);
        let client = http::Client::new();
        let resend_for = Duration::from_secs(4 * 60).max(
            rules
                .groups
                .iter()
                .map(|g| g.interval * 4)
                .max()
                .unwrap_or_default(),
        );
        let a = Arc::new(Alerting {
            api: query::Api::new(client.clone(), &opts.query_url, opts.query_timeout),
            writer: opts
                .remote_write
                .as_deref()
                .map(|url| remote::Writer::new(client.clone(), url, opts.query_timeout)),
            senders: Senders {
                smtp: opts.smtp.clone(),
                http: client,
                links: opts.links.clone(),
                resend_for,
            },
            rules: Mutex::new(Arc::new(rules)),
            state: Mutex::new(state),
            store: Mutex::new(store),
            metrics,
            registry,
            wake_sender: tokio::sync::Notify::new(),
            query_error: Mutex::new(None),
            resent: Mutex::new(BTreeMap::new()),
            opts,
        });
        a.update_gauges();
        Ok(a)
    }

    fn now(&self) -> i64 {
        to_millis(self.opts.clock.now())
    }

    /// Evaluates every group due at `now` (each at the latest multiple of its interval),
    /// applies the results, and persists state and new notifications in one write.
    pub async fn cycle(self: &Arc<Self>, now: i64) -> Cycle {
        let started = std::time::Instant::now();
        let rules = lock(&self.rules).clone();
        let due: Vec<(usize, i64)> = {
            let st = lock(&self.state);
            rules
                .groups
                .iter()
                .enumerate()
                .filter_map(|(i, g)| {
                    let t = align_down(now, g.interval);
                    let last = st.engine.evaluated.get(&g.id).copied().unwrap_or(i64::MIN);
                    (t > last).then_some((i, t))
                })
                .collect()
        };
        if due.is_empty() {
            return Cycle::default();
        }
        // Query every due rule, 16 groups at once, each group a task (answers are parsed
        // on every core); rules of a group in order.
        let results: Vec<(usize, i64, RuleResults)> = futures::stream::iter(due.iter().copied())
            .map(|(i, t)| {
                let (this, rules) = (self.clone(), rules.clone());
                let task = tokio::spawn(async move {
                    let group = &rules.groups[i];
                    let mut out = Vec::with_capacity(group.rules.len());
                    for r in &group.rules {
                        out.push(this.evaluate(r, t).await);
                    }
                    out
                });
                async move {
                    let out = task.await.unwrap_or_else(|e| {
                        vec![Err(query::Error::Answer {
                            expr: String::new(),
                            message: format!("evaluation task failed: {e}"),
                        })]
                    });
                    (i, t, out)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;

        let mut report = Cycle {
            groups: results.len(),
            ..Cycle::default()
        };
        let mut transitions = Vec::new();
        let mut refresh = Vec::new();
        let mut alerts_written = Vec::new();
        let mut last_error = None;
        let mut answered = false;
        {
            let mut st = lock(&self.state);
            if !Arc::ptr_eq(&rules, &lock(&self.rules)) {
                // Reloaded while querying: these results may belong to rules that are
                // gone. The groups stay due and are evaluated again with the new set.
                info!("policies changed during the evaluation; its results are dropped");
                return Cycle::default();
            }
            let route = |l: &BTreeMap<String, String>| rules.route(l);
            for (i, t, outs) in results {
                let group = &rules.groups[i];
                for (rule, result) in group.rules.iter().zip(outs) {
                    if rule.record {
                        continue;
                    }
                    let samples = match result {
                        Ok(s) => s,
                        Err(e) => {
                            if !matches!(e, query::Error::Http(_)) {
                                answered = true;
                            }
                            warn!(group = %group.id, rule = %rule.name, error = %e, "evaluation failed; alarm state kept");
                            self.metrics
                                .evaluations
                                .with_label_values(&["query_error"])
                                .inc();
                            report.query_errors += 1;
                            last_error = Some(e.to_string());
                            continue;
                        }
                    };
                    answered = true;
                    match st.engine.apply(group, rule, &samples, t, &route) {
                        Ok(outcome) => {
                            self.metrics.evaluations.with_label_values(&["ok"]).inc();
                            for n in &outcome.notifications {
                                outbox::enqueue(&mut st, n, now);
                            }
                            report.notifications += outcome.notifications.len();
                            transitions.extend(outcome.transitions);
                        }
                        Err(e) => {
                            warn!(group = %group.id, rule = %rule.name, error = %e, "evaluation failed; alarm state kept");
                            self.metrics
                                .evaluations
                                .with_label_values(&["apply_error"])
                                .inc();
                        }
                    }
                    refresh.push((
                        group.id.clone(),
                        rule.key.clone(),
                        rule.notify.receivers.clone(),
                    ));
                }
                st.engine.evaluated.insert(group.id.clone(), t);
                if self.writer.is_some() {
                    let alarms = st.engine.of_group(&group.id);
                    alerts_written.extend(remote::alerts_series(alarms, t));
                }
            }
            if let Err(e) = lock(&self.store).save(&st) {
                tracing::error!(error = %e, "cannot save alarm state; notifications of this cycle may repeat after a restart");
            }
        }
        let all_failed = report.query_errors > 0 && !answered;
        self.metrics.query_up.set(i64::from(!all_failed));
        *lock(&self.query_error) = if all_failed { last_error } else { None };
        let history: Vec<serde_json::Value> = transitions
            .iter()
            .map(|t| {
                serde_json::json!({
                    "type": "transition", "at": rfc3339(t.at), "group": t.group, "rule": t.rule,
                    "labels": t.labels, "from": t.from, "to": t.to, "value": template::go_float(t.value, None),
                })
            })
            .collect();
        lock(&self.store).record(&history);
        for t in &transitions {
            info!(group = %t.group, rule = %t.rule, labels = ?t.labels, from = %t.from, to = %t.to, "alarm");
        }
        if let Some(w) = &self.writer {
            self.write_back(w, alerts_written).await;
        }
        self.resend_to_alertmanagers(&rules, refresh, now);
        self.update_gauges();
        self.metrics.cycles.inc();
        self.metrics.cycle.observe(started.elapsed().as_secs_f64());
        if report.notifications > 0 {
            self.wake_sender.notify_one();
        }
        report
    }

    /// Queries one rule at `t`. A recording rule's result is written back before this
    /// returns, so the group's later rules see it (as in Prometheus); without a writer
    /// recording rules are skipped.
    async fn evaluate(&self, r: &config::Rule, t: i64) -> Result<Vec<query::Sample>, query::Error> {
        match (&self.writer, r.record) {
            (None, true) => Ok(Vec::new()),
            (Some(w), true) => {
                let result = self.api.instant(&r.expr, t).await;
                if let Ok(samples) = &result {
                    let series = remote::recorded(&r.name, &static_labels(r), samples, t);
                    self.write_back(w, series).await;
                }
                result
            }
            (_, false) => self.api.instant(&r.expr, t).await,
        }
    }

    async fn write_back(
        &self,
        w: &remote::Writer,
        series: Vec<telltale_model::remote::TimeSeries>,
    ) {
        if let Err(e) = w.write(series).await {
            self.metrics.write_failed.inc();
            warn!(error = %e, "remote write of rule results failed");
        }
    }

    /// Alertmanager forgets a firing alert that is not re-sent: post each rule's firing
    /// alarms to its Alertmanager receivers at most once a minute (best effort; the
    /// first notification and the recovery go through the outbox).
    fn resend_to_alertmanagers(
        &self,
        rules: &Rules,
        evaluated: Vec<(String, String, Vec<String>)>,
        now: i64,
    ) {
        let any = rules
            .receivers
            .values()
            .any(|r| matches!(r, config::Receiver::Alertmanager { .. }));
        if !any {
            return;
        }
        let st = lock(&self.state);
        let mut resent = lock(&self.resent);
        for (group, rule, receivers) in evaluated {
            // Each firing alarm goes to its own receivers (routes match per alarm).
            let mut by_receiver: BTreeMap<String, Vec<engine::Alarm>> = BTreeMap::new();
            for a in st
                .engine
                .of_rule(&group, &rule)
                .filter(|a| a.state == AlarmState::Firing && a.notified > 0)
            {
                let names = if receivers.is_empty() {
                    rules.route(&a.labels)
                } else {
                    receivers.clone()
                };
                for name in names {
                    by_receiver.entry(name).or_default().push(a.clone());
                }
            }
            for (name, firing) in by_receiver {
                let Some(config::Receiver::Alertmanager { url, timeout }) =
                    rules.receivers.get(&name)
                else {
                    continue;
                };
                let key = format!("{group}\u{0}{rule}\u{0}{name}");
                if resent.get(&key).is_some_and(|&last| now - last < 60_000) {
                    continue;
                }
                resent.insert(key, now);
                let body = notify::alertmanager_json(
                    &firing,
                    now,
                    self.senders.resend_for,
                    &self.senders.links,
                );
                let (http, url, timeout) = (
                    self.senders.http.clone(),
                    format!("{url}/api/v2/alerts"),
                    *timeout,
                );
                tokio::spawn(async move {
                    let body = serde_json::to_vec(&body).unwrap_or_default();
                    if let Err(e) = http.post(&url, "application/json", body, timeout).await {
                        warn!(error = %e, "re-sending firing alerts to Alertmanager failed");
                    }
                });
            }
        }
    }

    /// Tries every delivery due at `now` once; returns how many were attempted. Each
    /// outcome is settled and saved as soon as it is known, so a crash repeats at most
    /// the sends in flight (up to 8), not the round.
    pub async fn deliver_due(&self, now: i64) -> usize {
        let due = outbox::due(&lock(&self.state), now);
        if due.is_empty() {
            return 0;
        }
        let rules = lock(&self.rules).clone();
        let mut attempts = futures::stream::iter(due)
            .map(|d| {
                let rules = rules.clone();
                async move {
                    let result = match rules.receivers.get(&d.receiver) {
                        Some(r) => self.senders.deliver(r, &d.notification, now).await,
                        None => Err(notify::Failed {
                            message: format!("receiver {:?} is no longer configured", d.receiver),
                            retryable: false,
                        }),
                    };
                    (d, result)
                }
            })
            .buffer_unordered(8);
        let mut n = 0;
        while let Some((d, result)) = attempts.next().await {
            n += 1;
            let kind = rules
                .receivers
                .get(&d.receiver)
                .map(receiver_type)
                .unwrap_or("email");
            let record = {
                let mut st = lock(&self.state);
                let Some(settled) = outbox::settle(&mut st, &d.id, &result, now) else {
                    continue;
                };
                if let Err(e) = lock(&self.store).save(&st) {
                    tracing::error!(error = %e, "cannot save the outbox; delivered notifications may repeat after a restart");
                }
                settled
            };
            let error = result
                .as_ref()
                .err()
                .map(|e| e.message.as_str())
                .unwrap_or("");
            let event = match record {
                outbox::Settled::Delivered => {
                    self.metrics.sent.with_label_values(&[kind]).inc();
                    info!(id = %d.id, rule = %d.notification.rule, kind = ?d.notification.kind, "notification delivered");
                    "delivered"
                }
                outbox::Settled::Retry(_) => {
                    self.metrics.failed.with_label_values(&[kind]).inc();
                    warn!(id = %d.id, attempt = d.attempts + 1, error, "notification not delivered; will retry");
                    "retry"
                }
                outbox::Settled::Dropped => {
                    self.metrics.failed.with_label_values(&[kind]).inc();
                    self.metrics.dropped.with_label_values(&[kind]).inc();
                    tracing::error!(id = %d.id, error, "notification given up");
                    "dropped"
                }
            };
            lock(&self.store).record(&[serde_json::json!({
                "type": "notification", "at": rfc3339(now), "event": event, "id": d.id,
                "receiver": d.receiver, "kind": d.notification.kind, "rule": d.notification.rule,
                "alarms": d.notification.alarms.len(), "attempts": d.attempts + 1,
                "error": result.as_ref().err().map(|e| e.message.clone()),
            })]);
            self.update_gauges();
        }
        n
    }

    fn update_gauges(&self) {
        let st = lock(&self.state);
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for a in st.engine.list(true) {
            *counts.entry(a.state.as_str()).or_default() += 1;
        }
        for s in ["pending", "firing", "no_data", "resolved"] {
            self.metrics
                .alarms
                .with_label_values(&[s])
                .set(counts.get(s).copied().unwrap_or(0));
        }
        self.metrics.queued.set(st.outbox.len() as i64);
    }

    /// Reloads the policies; an invalid set keeps the running one.
    pub fn reload(&self) -> Result<(), config::Error> {
        match Rules::load(&self.opts.policies) {
            Ok(rules) => {
                warn_unsupported(&rules, self.writer.is_some());
                let rules = Arc::new(rules);
                // Swapped first: a cycle still holding the old rules sees the change
                // and drops its results (see `cycle`); then the state follows.
                *lock(&self.rules) = rules.clone();
                lock(&self.state).engine.retain_configured(&rules.groups);
                self.metrics.reload_ok.set(1);
                info!(path = %self.opts.policies.display(), "policies reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics.reload_ok.set(0);
                tracing::error!(error = %e, "policy reload failed; the previous policies keep running");
                Err(e)
            }
        }
    }

    /// When the next group is due after `now`.
    fn next_due(&self, now: i64) -> i64 {
        let rules = lock(&self.rules).clone();
        rules
            .groups
            .iter()
            .map(|g| align_down(now, g.interval) + g.interval.as_millis() as i64)
            .min()
            .unwrap_or(now + 60_000)
    }
}

fn warn_unsupported(rules: &Rules, writing: bool) {
    let recording = rules
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| r.record)
        .count();
    if recording > 0 && !writing {
        warn!(
            recording,
            "recording rules are not evaluated without --remote-write-url"
        );
    }
}

/// A recording rule's labels (not templated in Prometheus: rendered as plain text).
fn static_labels(r: &config::Rule) -> Vec<(String, String)> {
    r.labels
        .iter()
        .map(|(k, t)| (k.clone(), t.render(&BTreeMap::new(), 0.0)))
        .collect()
}

fn receiver_type(r: &config::Receiver) -> &'static str {
    match r {
        config::Receiver::Email { .. } => "email",
        config::Receiver::Webhook { .. } => "webhook",
        config::Receiver::Alertmanager { .. } => "alertmanager",
    }
}

fn rfc3339(ms: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

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
                let wait = (a.next_due(a.now()) - a.now()).clamp(10, 60_000) as u64;
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
        if let Err(e) = lock(&a.store).save(&st) {
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
    let records = lock(&a.store).history(p.limit.unwrap_or(1000).min(100_000));
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
