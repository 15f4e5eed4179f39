//! Alerting's own health, as `telltale_alerting_*` families in an injected registry.
//!
//! It owns the families' names (the dashboards and the deployment's alarms read them, so
//! a rename here breaks them) and promises that every labelled series a dashboard shows
//! (each result, state and receiver type) exists at 0 from the start rather than
//! appearing at its first event.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Rule and policy evaluations, by result (`ok`, `query_error`, `apply_error`).
pub const EVALUATIONS: &str = "telltale_alerting_evaluations_total";
/// Wall time of one evaluation cycle (every group due at one instant).
pub const CYCLE_DURATION: &str = "telltale_alerting_evaluation_cycle_duration_seconds";
/// Alarms by state.
pub const ALARMS: &str = "telltale_alerting_alarms";
/// Deliveries accepted by their receiver, by receiver type.
pub const SENT: &str = "telltale_alerting_notifications_sent_total";
/// Delivery attempts that failed, by receiver type (each retry counts).
pub const FAILED: &str = "telltale_alerting_notifications_failed_total";
/// Deliveries given up (refused for good, or too old), by receiver type.
pub const DROPPED: &str = "telltale_alerting_notifications_dropped_total";
/// Deliveries waiting in the outbox.
pub const QUEUED: &str = "telltale_alerting_notifications_queued";
/// 1 if the last query to the query API got an answer.
pub const QUERY_UP: &str = "telltale_alerting_query_api_up";
/// 1 if the last policy reload succeeded.
pub const RELOAD_OK: &str = "telltale_alerting_config_last_reload_successful";

/// Remote writes of rule results that failed.
pub const WRITE_FAILED: &str = "telltale_alerting_remote_write_failures_total";

/// Receiver types, pre-registered at 0.
pub const RECEIVER_TYPES: &[&str] = &["email", "webhook", "alertmanager"];

/// The families, registered.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// See [`EVALUATIONS`].
    pub evaluations: IntCounterVec,
    /// See [`CYCLE_DURATION`].
    pub cycle: Histogram,
    /// See [`ALARMS`].
    pub alarms: IntGaugeVec,
    /// See [`SENT`].
    pub sent: IntCounterVec,
    /// See [`FAILED`].
    pub failed: IntCounterVec,
    /// See [`DROPPED`].
    pub dropped: IntCounterVec,
    /// See [`QUEUED`].
    pub queued: IntGauge,
    /// See [`QUERY_UP`].
    pub query_up: IntGauge,
    /// See [`RELOAD_OK`].
    pub reload_ok: IntGauge,
    /// Cycles run (for tests and the self-alarm).
    pub cycles: IntCounter,
    /// See [`WRITE_FAILED`].
    pub write_failed: IntCounter,
}

impl Metrics {
    /// Registers every family in `r`.
    pub fn new(r: &Registry) -> Result<Metrics, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let m = Metrics {
            evaluations: counter(
                EVALUATIONS,
                "Rule and policy evaluations, by result.",
                &["result"],
            )?,
            cycle: Histogram::with_opts(
                HistogramOpts::new(CYCLE_DURATION, "Wall time of one evaluation cycle.")
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            )?,
            alarms: IntGaugeVec::new(Opts::new(ALARMS, "Alarms by state."), &["state"])?,
            sent: counter(
                SENT,
                "Notifications accepted by their receiver.",
                &["receiver_type"],
            )?,
            failed: counter(
                FAILED,
                "Notification delivery attempts that failed.",
                &["receiver_type"],
            )?,
            dropped: counter(DROPPED, "Notifications given up.", &["receiver_type"])?,
            queued: IntGauge::new(QUEUED, "Notifications waiting in the outbox.")?,
            query_up: IntGauge::new(
                QUERY_UP,
                "1 if the last query to the query API got an answer.",
            )?,
            reload_ok: IntGauge::new(RELOAD_OK, "1 if the last policy reload succeeded.")?,
            cycles: IntCounter::new(
                "telltale_alerting_evaluation_cycles_total",
                "Evaluation cycles run.",
            )?,
            write_failed: IntCounter::new(
                WRITE_FAILED,
                "Remote writes of rule results that failed.",
            )?,
        };
        r.register(Box::new(m.evaluations.clone()))?;
        r.register(Box::new(m.cycle.clone()))?;
        r.register(Box::new(m.alarms.clone()))?;
        r.register(Box::new(m.sent.clone()))?;
        r.register(Box::new(m.failed.clone()))?;
        r.register(Box::new(m.dropped.clone()))?;
        r.register(Box::new(m.queued.clone()))?;
        r.register(Box::new(m.query_up.clone()))?;
        r.register(Box::new(m.reload_ok.clone()))?;
        r.register(Box::new(m.cycles.clone()))?;
        r.register(Box::new(m.write_failed.clone()))?;
        for result in ["ok", "query_error", "apply_error"] {
            m.evaluations.with_label_values(&[result]);
        }
        for state in ["pending", "firing", "no_data", "resolved"] {
            m.alarms.with_label_values(&[state]);
        }
        for t in RECEIVER_TYPES {
            m.sent.with_label_values(&[t]);
            m.failed.with_label_values(&[t]);
            m.dropped.with_label_values(&[t]);
        }
        Ok(m)
    }
}
