//! What an alarm is, shared by everything that handles one: an alarm and its state, the
//! notification that carries alarms to receivers, and the transition recorded in the
//! history.
//!
//! It owns only these data types and their serialized form: `state.json`, the history,
//! webhooks and the outbox all hold them, so a field renamed here changes those formats.
//! Nothing here decides anything; the state machine is [`crate::engine`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where an alarm is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    /// Breaching, not yet for long enough.
    Pending,
    /// Firing.
    Firing,
    /// Was firing; its label set stopped returning data.
    NoData,
    /// No longer breaching.
    Resolved,
}

impl AlarmState {
    /// The name used in the API, history and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Pending => "pending",
            AlarmState::Firing => "firing",
            AlarmState::NoData => "no_data",
            AlarmState::Resolved => "resolved",
        }
    }
}

/// One alarm: a rule's label set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// The group's id.
    pub group: String,
    /// The rule's key in its group (its name unless the group has several of that name).
    pub rule: String,
    /// Result labels (without `__name__`), the rule's labels and `alertname`.
    pub labels: BTreeMap<String, String>,
    /// Rendered annotations.
    pub annotations: BTreeMap<String, String>,
    /// State.
    pub state: AlarmState,
    /// The last value seen.
    pub value: f64,
    /// When it started breaching (ms).
    pub active_at: i64,
    /// When it started firing.
    pub fired_at: Option<i64>,
    /// When it resolved.
    pub resolved_at: Option<i64>,
    /// First evaluation without the condition while `keep_firing_for` holds it.
    pub keep_firing_since: Option<i64>,
    /// Breaching evaluations in a row.
    pub breaches: u32,
    /// Firing notifications queued for this episode.
    pub notified: u32,
    /// When the last firing notification was queued.
    pub last_notified: Option<i64>,
    /// A recovery notification is owed (silenced so far).
    pub recovery_owed: bool,
}

/// The kind of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Alarms started firing (or repeat).
    Firing,
    /// Alarms recovered.
    Resolved,
}

/// A message about some alarms of one rule, to be delivered to each of `receivers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable id: the same evaluation gives the same id.
    pub id: String,
    /// Firing or resolved.
    pub kind: Kind,
    /// Repeat count (0 = first notification of the episode).
    pub repeat: u32,
    /// The group's id.
    pub group: String,
    /// The rule or policy name.
    pub rule: String,
    /// Policy description.
    pub description: String,
    /// The condition, as written (`> 0.8`), for policies.
    pub threshold: Option<String>,
    /// The evaluation that produced it (ms).
    pub at: i64,
    /// The alarms, as they were then.
    pub alarms: Vec<Alarm>,
    /// Where it goes.
    pub receivers: Vec<String>,
}

/// What happened to one alarm in one evaluation, for the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Evaluation time (ms).
    pub at: i64,
    /// The group's id.
    pub group: String,
    /// The rule's name.
    pub rule: String,
    /// The alarm's labels.
    pub labels: BTreeMap<String, String>,
    /// Previous state (`inactive` when new).
    pub from: String,
    /// New state (`inactive` when forgotten).
    pub to: String,
    /// The value then.
    pub value: f64,
}
