//! What `--policies` compiles to: [`Rules`] (evaluation groups of rules, routes,
//! receivers) and the parts of a rule: its [`Condition`], how it notifies ([`Notify`],
//! [`Repeat`]), where its alarms go ([`Route`], [`Receiver`]).
//!
//! It promises that a value of these types came out of validation: every expression
//! parsed, every template checked, every receiver a rule names defined.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

use crate::policy::silence::Silence;
use crate::template::{self, Template};

/// Everything `--policies` holds.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Evaluation groups: one per policy, one per rule-file group.
    pub groups: Vec<Group>,
    /// Where rule-file alarms go; first match wins.
    pub routes: Vec<Route>,
    /// Receivers by name.
    pub receivers: BTreeMap<String, Receiver>,
}

/// Rules evaluated together on one interval, in order.
#[derive(Debug, Clone)]
pub struct Group {
    /// `policy/<name>` or `<file>/<group>`: unique, the key of persisted state.
    pub id: String,
    /// Evaluation interval.
    pub interval: Duration,
    /// At most this many alerts per rule (0 = no limit), as Prometheus's `limit`.
    pub limit: u64,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// One alerting rule or policy, or a recording rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The alert name (`alertname` label) or recorded metric name.
    pub name: String,
    /// Unique within the group: the name, then `name#2`, `name#3` for later rules of the
    /// same name (kubernetes-mixin has several `KubeAPIErrorBudgetBurn` in one group).
    pub key: String,
    /// The PromQL evaluated at each interval.
    pub expr: String,
    /// Recording rule: the result is written back, nothing alarms.
    pub record: bool,
    /// Applied to each value (policies with a `condition`); without it every returned
    /// series breaches, as in Prometheus.
    pub condition: Option<Condition>,
    /// Result labels that must match (scope keys not pushed into the query).
    pub filter: Vec<(String, Regex)>,
    /// Pending → firing after this long (rule files)...
    pub for_: Duration,
    /// ...or after this many breaching evaluations in a row (policies).
    pub consecutive: u32,
    /// Stays firing this long after the condition clears.
    pub keep_firing_for: Duration,
    /// A label set that disappears is `no_data` (policies with a `condition`) rather than
    /// resolved (rule files, and policies whose expression is the condition).
    pub no_data: bool,
    /// Labels added to each alarm (templated).
    pub labels: Vec<(String, Template)>,
    /// Annotations (templated).
    pub annotations: Vec<(String, Template)>,
    /// How to notify.
    pub notify: Notify,
}

/// A policy's condition on a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    /// The comparison.
    pub op: Op,
    /// The threshold.
    pub threshold: f64,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Condition {
    /// Whether `v` breaches.
    pub fn holds(&self, v: f64) -> bool {
        let t = self.threshold;
        match self.op {
            Op::Gt => v > t,
            Op::Ge => v >= t,
            Op::Lt => v < t,
            Op::Le => v <= t,
            Op::Eq => v == t,
            Op::Ne => v != t,
        }
    }

    /// `> 0.8` and the like; the error says what is wrong.
    pub(super) fn parse(s: &str) -> Result<Condition, String> {
        let s = s.trim();
        let (op, rest) = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
        ]
        .into_iter()
        .find_map(|(text, op)| s.strip_prefix(text).map(|r| (op, r)))
        .ok_or_else(|| format!("{s:?} does not start with one of > >= < <= == !="))?;
        let threshold = rest
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("{:?} is not a number", rest.trim()))?;
        Ok(Condition { op, threshold })
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        };
        write!(f, "{op} {}", template::go_float(self.threshold, None))
    }
}

/// How an alarm's notifications go out.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    /// Receiver names; empty = by [`Rules::routes`].
    pub receivers: Vec<String>,
    /// When to repeat while firing.
    pub repeat: Repeat,
    /// Send a recovery notification.
    pub recovery: bool,
    /// Labels whose values split alarms into separate notifications.
    pub group_by: Vec<String>,
    /// When not to notify.
    pub silences: Vec<Silence>,
    /// The policy's description (empty for rule files).
    pub description: String,
}

/// Repeat notifications while an alarm keeps firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Only the first.
    Once,
    /// Every so long.
    Every(Duration),
    /// On the 1st, 2nd, 4th, 8th... breaching evaluation.
    Exponential,
}

/// Rule-file alarms with all of `matchers` go to `receivers`.
#[derive(Debug, Clone)]
pub struct Route {
    /// Label → exact value or anchored regex.
    pub matchers: Vec<(String, Regex)>,
    /// Receiver names.
    pub receivers: Vec<String>,
}

/// A destination.
#[derive(Debug, Clone, PartialEq)]
pub enum Receiver {
    /// Email through `--smtp-url` to these addresses.
    Email {
        /// Recipients.
        to: Vec<String>,
    },
    /// JSON POST to a URL.
    Webhook {
        /// Where.
        url: String,
        /// Per attempt.
        timeout: Duration,
    },
    /// Alertmanager's `POST /api/v2/alerts`.
    Alertmanager {
        /// Its base URL.
        url: String,
        /// Per attempt.
        timeout: Duration,
    },
}

/// Default HTTP timeout of webhook and Alertmanager receivers.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default evaluation interval of rule-file groups (Prometheus's global default).
pub const GROUP_INTERVAL: Duration = Duration::from_secs(60);

impl Rules {
    /// The receivers a rule-file alarm with `labels` goes to.
    pub fn route(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        self.routes
            .iter()
            .find(|r| {
                r.matchers
                    .iter()
                    .all(|(k, re)| re.is_match(labels.get(k).map(String::as_str).unwrap_or("")))
            })
            .map(|r| r.receivers.clone())
            .unwrap_or_default()
    }
}
