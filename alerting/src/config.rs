//! Loading `--policies`: Telltale policy files and Prometheus rule files (a file, or every
//! `*.yml`/`*.yaml` in a directory), validated and compiled into [`Rules`].
//!
//! A file with a top-level `groups:` key is a Prometheus rule file; any other is a policy
//! file. Every error names the file, the policy or rule, and the key: a bad file is refused
//! whole, so the caller can keep running what it loaded before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::builtin::{self, Builtin};
use crate::template::Template;

/// A problem in a policy or rule file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file or directory cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid YAML of the expected shape (serde names the key and the position).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A policy or rule is invalid.
    #[error("{path}: {what}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// `policy "x"`, `group "g" rule "r"`, `receiver "x"`.
        what: String,
        /// The key at fault.
        key: &'static str,
        /// Why.
        message: String,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

// ---- the files as written ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    policies: Vec<PolicySpec>,
    #[serde(default)]
    routes: Vec<RouteSpec>,
    #[serde(default)]
    receivers: Vec<ReceiverSpec>,
}

/// One Telltale alarm policy as written (alarms.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySpec {
    /// Unique name; the alert name in notifications.
    name: String,
    /// Shown in notifications.
    #[serde(default)]
    description: String,
    /// A built-in metric name.
    metric: Option<String>,
    /// PromQL instead of `metric`.
    expr: Option<String>,
    /// Label selectors on cluster/namespace/workload/pod/node (regex allowed).
    #[serde(default)]
    scope: BTreeMap<String, String>,
    /// avg | max | min | sum | last over each period.
    statistic: Option<String>,
    /// Evaluation period.
    #[serde(default, with = "humantime_serde")]
    period: Option<Duration>,
    /// `> 0.8` and the like.
    condition: Option<String>,
    /// Breaching periods in a row before firing.
    consecutive: Option<u32>,
    /// once | exponential | an interval.
    repeat: Option<String>,
    /// Send a recovery notification.
    notify_recovery: Option<bool>,
    /// Becomes the `severity` label.
    severity: Option<String>,
    /// Receiver names.
    #[serde(default)]
    receivers: Vec<String>,
    /// Times when notifications are held back.
    #[serde(default)]
    silence: Vec<SilenceSpec>,
    /// Labels that split one policy's alarms into separate notifications.
    #[serde(default)]
    group_by: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceSpec {
    #[serde(default)]
    weekdays: Vec<String>,
    from: Option<String>,
    to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSpec {
    #[serde(default, rename = "match")]
    matchers: BTreeMap<String, String>,
    receivers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiverSpec {
    name: String,
    email: Option<EmailSpec>,
    webhook: Option<UrlSpec>,
    alertmanager: Option<UrlSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailSpec {
    to: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlSpec {
    url: String,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<GroupSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupSpec {
    name: String,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default)]
    limit: u64,
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    #[serde(default, rename = "for", with = "humantime_serde")]
    for_: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    keep_firing_for: Option<Duration>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

// ---- what they compile to ----

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

    fn parse(s: &str) -> std::result::Result<Condition, String> {
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
        write!(
            f,
            "{op} {}",
            crate::template::go_float(self.threshold, None)
        )
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

/// A weekly window in UTC during which notifications wait (they go out when it ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    /// Days (0 = Monday); empty = every day.
    pub weekdays: Vec<u8>,
    /// Minutes after midnight, from (inclusive)...
    pub from: u32,
    /// ...to (exclusive); `to <= from` spans midnight.
    pub to: u32,
}

impl Silence {
    /// Whether `t_ms` falls in the window.
    pub fn covers(&self, t_ms: i64) -> bool {
        let secs = t_ms.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let minute = (secs.rem_euclid(86_400) / 60) as u32;
        // 1970-01-01 was a Thursday (3 counting from Monday = 0).
        let weekday = ((days + 3).rem_euclid(7)) as u8;
        let day_ok = |d: u8| self.weekdays.is_empty() || self.weekdays.contains(&d);
        if self.from < self.to {
            day_ok(weekday) && (self.from..self.to).contains(&minute)
        } else {
            // Spans midnight: the part after midnight belongs to the day before.
            (day_ok(weekday) && minute >= self.from)
                || (day_ok((weekday + 6) % 7) && minute < self.to)
        }
    }
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
    /// Loads `path`: a file, or every `*.yml`/`*.yaml` file in a directory (sorted).
    pub fn load(path: &Path) -> Result<Rules> {
        let read_err = |source| Error::Read {
            path: path.to_owned(),
            source,
        };
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(read_err)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension().is_some_and(|e| e == "yml" || e == "yaml")
                        && !p.to_string_lossy().ends_with(".test.yml")
                })
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_owned()]
        };
        let mut rules = Rules::default();
        let mut policy_files = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
                path: file.clone(),
                source,
            })?;
            let value: serde_yaml::Value =
                serde_yaml::from_str(&text).map_err(|e| parse_err(file, e))?;
            if value.get("groups").is_some() {
                let f: RuleFile = serde_yaml::from_str(&text).map_err(|e| parse_err(file, e))?;
                rules.add_rule_file(file, f)?;
            } else {
                let f: PolicyFile = serde_yaml::from_str(&text).map_err(|e| parse_err(file, e))?;
                policy_files.push((file.clone(), f));
            }
        }
        // Receivers first, so a policy may name one from another file.
        for (file, f) in &policy_files {
            for r in &f.receivers {
                rules.add_receiver(file, r)?;
            }
        }
        for (file, f) in policy_files {
            for r in f.routes {
                let matchers = r
                    .matchers
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            k.clone(),
                            anchored(v).map_err(|m| invalid(&file, "route".into(), "match", m))?,
                        ))
                    })
                    .collect::<Result<_>>()?;
                rules.check_receivers(&file, "route", &r.receivers)?;
                rules.routes.push(Route {
                    matchers,
                    receivers: r.receivers,
                });
            }
            for p in f.policies {
                rules.add_policy(&file, p)?;
            }
        }
        let mut seen = std::collections::HashSet::new();
        for g in &rules.groups {
            if !seen.insert(&g.id) {
                return Err(Error::Invalid {
                    path: path.to_owned(),
                    what: g.id.clone(),
                    key: "name",
                    message: "defined twice".into(),
                });
            }
        }
        Ok(rules)
    }

    fn add_receiver(&mut self, file: &Path, r: &ReceiverSpec) -> Result<()> {
        let what = format!("receiver {:?}", r.name);
        let receiver = match (&r.email, &r.webhook, &r.alertmanager) {
            (Some(e), None, None) => {
                if e.to.is_empty() {
                    return Err(invalid(file, what, "email.to", "no address".into()));
                }
                for a in &e.to {
                    if a.parse::<lettre::Address>().is_err() {
                        return Err(invalid(
                            file,
                            what,
                            "email.to",
                            format!("{a:?} is not an email address"),
                        ));
                    }
                }
                Receiver::Email { to: e.to.clone() }
            }
            (None, Some(w), None) => Receiver::Webhook {
                url: check_url(file, &what, "webhook.url", &w.url)?,
                timeout: w.timeout.unwrap_or(HTTP_TIMEOUT),
            },
            (None, None, Some(a)) => Receiver::Alertmanager {
                url: check_url(file, &what, "alertmanager.url", &a.url)?,
                timeout: a.timeout.unwrap_or(HTTP_TIMEOUT),
            },
            _ => {
                return Err(invalid(
                    file,
                    what,
                    "email",
                    "give exactly one of email, webhook, alertmanager".into(),
                ))
            }
        };
        if self.receivers.insert(r.name.clone(), receiver).is_some() {
            return Err(invalid(file, what, "name", "defined twice".into()));
        }
        Ok(())
    }

    fn check_receivers(&self, file: &Path, what: &str, names: &[String]) -> Result<()> {
        for n in names {
            if !self.receivers.contains_key(n) {
                let known: Vec<&str> = self.receivers.keys().map(String::as_str).collect();
                return Err(invalid(
                    file,
                    what.to_owned(),
                    "receivers",
                    format!("unknown receiver {n:?} (defined: {})", known.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn add_policy(&mut self, file: &Path, p: PolicySpec) -> Result<()> {
        let what = format!("policy {:?}", p.name);
        let bad = |key, message: String| invalid(file, what.clone(), key, message);
        if p.name.is_empty() {
            return Err(bad("name", "must not be empty".into()));
        }
        let period = p.period.unwrap_or(Duration::from_secs(60));
        if period < Duration::from_secs(1) {
            return Err(bad("period", "must be at least 1s".into()));
        }
        bounded(period).map_err(|m| bad("period", m))?;
        let condition = p
            .condition
            .as_deref()
            .map(Condition::parse)
            .transpose()
            .map_err(|m| bad("condition", m))?;
        for k in p.scope.keys() {
            if ![
                "cluster",
                "namespace",
                "workload",
                "pod",
                "node",
                "container",
            ]
            .contains(&k.as_str())
            {
                return Err(bad(
                    "scope",
                    format!(
                        "unknown key {k:?} (cluster, namespace, workload, pod, node, container)"
                    ),
                ));
            }
        }
        let scope: Vec<(String, String)> = p.scope.clone().into_iter().collect();
        let (expr, filter_keys): (String, Vec<&str>) = match (&p.metric, &p.expr) {
            (Some(m), None) => {
                let b = Builtin::find(m).ok_or_else(|| {
                    let names: Vec<&str> = builtin::BUILTINS.iter().map(|b| b.name).collect();
                    bad(
                        "metric",
                        format!(
                            "unknown built-in metric {m:?} (known: {}; or use expr:)",
                            names.join(", ")
                        ),
                    )
                })?;
                if condition.is_none() {
                    return Err(bad("condition", "required with metric:".into()));
                }
                let statistic = p.statistic.as_deref().unwrap_or("avg");
                let inner = b.scoped(&scope);
                let expr = match statistic {
                    "last" => inner,
                    "avg" | "max" | "min" | "sum" => format!(
                        "{statistic}_over_time(({inner})[{}:{}])",
                        prom_duration(period),
                        prom_duration(resolution(period))
                    ),
                    other => {
                        return Err(bad(
                            "statistic",
                            format!("{other:?} is not one of avg, max, min, sum, last"),
                        ))
                    }
                };
                // Scope keys the selectors cannot carry are matched on the result.
                let rest = scope
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .filter(|k| !b.pushed.contains(k))
                    .collect();
                (expr, rest)
            }
            (None, Some(e)) => {
                if p.statistic.is_some() {
                    return Err(bad("statistic", "applies to metric:, not expr:".into()));
                }
                (e.clone(), scope.iter().map(|(k, _)| k.as_str()).collect())
            }
            _ => return Err(bad("metric", "give exactly one of metric and expr".into())),
        };
        check_promql(&expr)
            .map_err(|m| bad(if p.expr.is_some() { "expr" } else { "metric" }, m))?;
        let filter = filter_keys
            .into_iter()
            .map(|k| {
                let v = &p.scope[k];
                let re = if builtin::is_regex(v) {
                    anchored(v)
                } else {
                    anchored(&regex::escape(v))
                };
                re.map(|re| (k.to_owned(), re)).map_err(|m| bad("scope", m))
            })
            .collect::<Result<_>>()?;
        let repeat = match p.repeat.as_deref().unwrap_or("1h") {
            "once" => Repeat::Once,
            "exponential" => Repeat::Exponential,
            d => {
                let every = humantime::parse_duration(d).map_err(|_| {
                    bad(
                        "repeat",
                        format!("{d:?} is not once, exponential or a duration"),
                    )
                })?;
                if every < Duration::from_secs(1) {
                    return Err(bad("repeat", "must be at least 1s (or once)".into()));
                }
                Repeat::Every(bounded(every).map_err(|m| bad("repeat", m))?)
            }
        };
        if p.receivers.is_empty() {
            return Err(bad(
                "receivers",
                "a policy needs at least one receiver".into(),
            ));
        }
        self.check_receivers(file, &what, &p.receivers)?;
        let silences = p
            .silence
            .iter()
            .map(|s| parse_silence(s).map_err(|m| bad("silence", m)))
            .collect::<Result<_>>()?;
        let mut labels = vec![(
            "severity".to_owned(),
            Template::parse(p.severity.as_deref().unwrap_or("warning"))
                .map_err(|e| bad("severity", e.to_string()))?,
        )];
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let mut annotations = Vec::new();
        if !p.description.is_empty() {
            annotations.push((
                "description".to_owned(),
                Template::parse(&p.description).map_err(|e| bad("description", e.to_string()))?,
            ));
        }
        if let Some(c) = condition {
            annotations.push((
                "threshold".to_owned(),
                Template::parse(&c.to_string()).map_err(|e| bad("condition", e.to_string()))?,
            ));
        }
        self.groups.push(Group {
            id: format!("policy/{}", p.name),
            interval: period,
            limit: 0,
            rules: vec![Rule {
                key: p.name.clone(),
                name: p.name,
                expr,
                record: false,
                condition,
                filter,
                for_: Duration::ZERO,
                consecutive: p.consecutive.unwrap_or(1).max(1),
                keep_firing_for: Duration::ZERO,
                // With a condition, a series that stops answering is missing data; when
                // the expression is the condition, its absence is the recovery.
                no_data: condition.is_some(),
                labels,
                annotations,
                notify: Notify {
                    receivers: p.receivers,
                    repeat,
                    recovery: p.notify_recovery.unwrap_or(true),
                    group_by: p.group_by,
                    silences,
                    description: p.description,
                },
            }],
        });
        Ok(())
    }

    fn add_rule_file(&mut self, file: &Path, f: RuleFile) -> Result<()> {
        let stem = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for g in f.groups {
            // As in Prometheus, no interval (or 0) is the default.
            let interval = match g.interval {
                None => GROUP_INTERVAL,
                Some(d) if d.is_zero() => GROUP_INTERVAL,
                Some(d) if d < Duration::from_secs(1) => {
                    return Err(invalid(
                        file,
                        format!("group {:?}", g.name),
                        "interval",
                        "must be at least 1s".into(),
                    ))
                }
                Some(d) => bounded(d)
                    .map_err(|m| invalid(file, format!("group {:?}", g.name), "interval", m))?,
            };
            let mut rules = Vec::new();
            for (i, r) in g.rules.into_iter().enumerate() {
                let what = format!(
                    "group {:?} rule {}",
                    g.name,
                    r.alert
                        .as_deref()
                        .or(r.record.as_deref())
                        .map(|n| format!("{n:?}"))
                        .unwrap_or_else(|| format!("#{}", i + 1))
                );
                let bad = |key, message: String| invalid(file, what.clone(), key, message);
                let (name, record) = match (&r.alert, &r.record) {
                    (Some(a), None) => (a.clone(), false),
                    (None, Some(m)) => (m.clone(), true),
                    _ => return Err(bad("alert", "give exactly one of alert and record".into())),
                };
                if name.is_empty() {
                    return Err(bad(
                        if record { "record" } else { "alert" },
                        "must not be empty".into(),
                    ));
                }
                if record && !is_metric_name(&name) {
                    return Err(bad(
                        "record",
                        format!("{name:?} is not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"),
                    ));
                }
                check_promql(&r.expr).map_err(|m| bad("expr", m))?;
                if record
                    && (r.for_.is_some()
                        || !r.annotations.is_empty()
                        || r.keep_firing_for.is_some())
                {
                    return Err(bad(
                        "for",
                        "recording rules take no for, keep_firing_for or annotations".into(),
                    ));
                }
                let template = |pairs: BTreeMap<String, String>, key| {
                    pairs
                        .into_iter()
                        .map(|(k, v)| {
                            if !is_label_name(&k) {
                                return Err(bad(
                                    key,
                                    format!(
                                        "{k:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                                    ),
                                ));
                            }
                            Template::parse(&v)
                                .map(|t| (k, t))
                                .map_err(|e| bad(key, e.to_string()))
                        })
                        .collect::<Result<Vec<_>>>()
                };
                let same = rules.iter().filter(|r: &&Rule| r.name == name).count();
                rules.push(Rule {
                    key: if same == 0 {
                        name.clone()
                    } else {
                        format!("{name}#{}", same + 1)
                    },
                    name,
                    expr: r.expr,
                    record,
                    condition: None,
                    filter: Vec::new(),
                    for_: bounded(r.for_.unwrap_or_default()).map_err(|m| bad("for", m))?,
                    consecutive: 1,
                    keep_firing_for: bounded(r.keep_firing_for.unwrap_or_default())
                        .map_err(|m| bad("keep_firing_for", m))?,
                    no_data: false,
                    labels: template(r.labels, "labels")?,
                    annotations: template(r.annotations, "annotations")?,
                    notify: Notify {
                        receivers: Vec::new(),
                        repeat: Repeat::Every(Duration::from_secs(4 * 3600)),
                        recovery: true,
                        group_by: Vec::new(),
                        silences: Vec::new(),
                        description: String::new(),
                    },
                });
            }
            self.groups.push(Group {
                id: format!("{stem}/{}", g.name),
                interval,
                limit: g.limit,
                rules,
            });
        }
        Ok(())
    }

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

fn parse_err(path: &Path, e: serde_yaml::Error) -> Error {
    Error::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn invalid(path: &Path, what: String, key: &'static str, message: String) -> Error {
    Error::Invalid {
        path: path.to_owned(),
        what,
        key,
        message,
    }
}

fn check_url(file: &Path, what: &str, key: &'static str, url: &str) -> Result<String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.trim_end_matches('/').to_owned())
    } else {
        Err(invalid(
            file,
            what.to_owned(),
            key,
            format!("{url:?} is not an http(s) URL"),
        ))
    }
}

fn anchored(re: &str) -> std::result::Result<Regex, String> {
    Regex::new(&format!("^(?:{re})$"))
        .map_err(|e| format!("{re:?} is not a regular expression: {e}"))
}

fn check_promql(expr: &str) -> std::result::Result<(), String> {
    promql_parser::parser::parse(expr)
        .map(|_| ())
        .map_err(|e| format!("{expr:?} is not valid PromQL: {e}"))
}

fn parse_silence(s: &SilenceSpec) -> std::result::Result<Silence, String> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let weekdays = s
        .weekdays
        .iter()
        .map(|d| {
            let d3: String = d.to_lowercase().chars().take(3).collect();
            DAYS.iter()
                .position(|x| *x == d3)
                .map(|i| i as u8)
                .ok_or_else(|| format!("weekdays: {d:?} is not a day (mon..sun)"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let minute =
        |v: &Option<String>, default: u32, key: &str| -> std::result::Result<u32, String> {
            let Some(v) = v else { return Ok(default) };
            let (h, m) = v
                .split_once(':')
                .ok_or_else(|| format!("{key}: {v:?} is not HH:MM"))?;
            match (h.parse::<u32>(), m.parse::<u32>()) {
                (Ok(h), Ok(m)) if h <= 24 && m < 60 && h * 60 + m <= 1440 => Ok(h * 60 + m),
                _ => Err(format!("{key}: {v:?} is not HH:MM")),
            }
        };
    Ok(Silence {
        weekdays,
        from: minute(&s.from, 0, "from")?,
        to: minute(&s.to, 1440, "to")?,
    })
}

/// Prometheus's label name syntax.
fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Prometheus's metric name syntax (label name syntax plus `:`).
fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The longest duration a policy or rule may give (a year): beyond it, time arithmetic in
/// milliseconds would be meaningless.
fn bounded(d: Duration) -> std::result::Result<Duration, String> {
    if d > Duration::from_secs(366 * 86_400) {
        Err(format!(
            "{} is longer than a year",
            humantime::format_duration(d)
        ))
    } else {
        Ok(d)
    }
}

/// The step of a policy's subquery: about four points per period, 15 s to 5 m.
fn resolution(period: Duration) -> Duration {
    (period / 4).clamp(Duration::from_secs(15), Duration::from_secs(300))
}

/// `d` in PromQL's duration syntax (`1h30m`, `15s`, `1500ms`).
pub fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut s = ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests;
