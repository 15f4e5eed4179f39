//! The running alerting service: the policies in force, the alarm state and outbox, and
//! what one evaluation cycle, one delivery round and one reload do ([`Alerting`]).
//!
//! It promises: an evaluation's transitions and the notifications they cause are saved in
//! one write before anything is sent; a query API that does not answer changes no alarm;
//! results of a cycle that overlapped a reload are dropped, never applied to the new
//! rules; an invalid reload keeps the running policies.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use prometheus::Registry;
use telltale_model::calendar::MINUTE_MS;
use telltale_model::time::{align_down, to_millis};
use tracing::{info, warn};

use crate::alarm::{Alarm, AlarmState};
use crate::http;
use crate::metrics;
use crate::notify::{self, Senders};
use crate::options::{Error, Options};
use crate::outbox;
use crate::policy::{self, Rules};
use crate::query;
use crate::remote;
use crate::state_dir::{SavedState, StateDir};
use crate::template;

/// Everything the loops and handlers share.
#[derive(Debug)]
pub struct Alerting {
    pub(crate) opts: Options,
    pub(crate) rules: Mutex<Arc<Rules>>,
    pub(crate) state: Mutex<SavedState>,
    pub(crate) state_dir: Mutex<StateDir>,
    api: query::Api,
    writer: Option<remote::Writer>,
    senders: Senders,
    /// Metrics, registered in `registry`.
    pub metrics: metrics::Metrics,
    pub(crate) registry: Registry,
    pub(crate) wake_sender: tokio::sync::Notify,
    pub(crate) query_error: Mutex<Option<String>>,
    resent: Mutex<BTreeMap<String, i64>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
        let state_dir = StateDir::open(&opts.state_dir)?;
        let mut state = state_dir.load()?;
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
            state_dir: Mutex::new(state_dir),
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

    pub(crate) fn now(&self) -> i64 {
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
            if let Err(e) = lock(&self.state_dir).save(&st) {
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
        lock(&self.state_dir).record(&history);
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
    async fn evaluate(&self, r: &policy::Rule, t: i64) -> Result<Vec<query::Sample>, query::Error> {
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
            .any(|r| matches!(r, policy::Receiver::Alertmanager { .. }));
        if !any {
            return;
        }
        let st = lock(&self.state);
        let mut resent = lock(&self.resent);
        for (group, rule, receivers) in evaluated {
            // Each firing alarm goes to its own receivers (routes match per alarm).
            let mut by_receiver: BTreeMap<String, Vec<Alarm>> = BTreeMap::new();
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
                let Some(policy::Receiver::Alertmanager { url, timeout }) =
                    rules.receivers.get(&name)
                else {
                    continue;
                };
                let key = format!("{group}\u{0}{rule}\u{0}{name}");
                if resent.get(&key).is_some_and(|&last| now - last < MINUTE_MS) {
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
                if let Err(e) = lock(&self.state_dir).save(&st) {
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
            lock(&self.state_dir).record(&[serde_json::json!({
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
    pub fn reload(&self) -> Result<(), policy::Error> {
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
    pub(crate) fn next_due(&self, now: i64) -> i64 {
        let rules = lock(&self.rules).clone();
        rules
            .groups
            .iter()
            .map(|g| align_down(now, g.interval) + g.interval.as_millis() as i64)
            .min()
            .unwrap_or(now + MINUTE_MS)
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
fn static_labels(r: &policy::Rule) -> Vec<(String, String)> {
    r.labels
        .iter()
        .map(|(k, t)| (k.clone(), t.render(&BTreeMap::new(), 0.0)))
        .collect()
}

fn receiver_type(r: &policy::Receiver) -> &'static str {
    match r {
        policy::Receiver::Email { .. } => "email",
        policy::Receiver::Webhook { .. } => "webhook",
        policy::Receiver::Alertmanager { .. } => "alertmanager",
    }
}

pub(crate) fn rfc3339(ms: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}
