//! Telltale policy files (docs/alarms.md): `policies:`, `routes:` and `receivers:` as written,
//! and their compilation into [`Rules`]: each policy becomes a one-rule group evaluated
//! every `period`, its built-in `metric:` (or `expr:`) scoped and aggregated into PromQL.
//!
//! It promises that a policy that loads has a valid expression, known receivers, a
//! condition when it needs one, and durations a millisecond clock can hold.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::builtin::{self, Builtin};
use crate::policy::check::{anchored, bounded, check_promql, check_url, prom_duration, resolution};
use crate::policy::error::{invalid, Result};
use crate::policy::rules::{
    Condition, Group, Notify, Receiver, Repeat, Route, Rule, Rules, HTTP_TIMEOUT,
};
use crate::policy::silence::{parse_silence, SilenceSpec};
use crate::template::Template;

/// A policy file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    #[serde(default)]
    pub(super) policies: Vec<PolicySpec>,
    #[serde(default)]
    pub(super) routes: Vec<RouteSpec>,
    #[serde(default)]
    pub(super) receivers: Vec<ReceiverSpec>,
}

/// One Telltale alarm policy as written (docs/alarms.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicySpec {
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
pub(super) struct RouteSpec {
    #[serde(default, rename = "match")]
    matchers: BTreeMap<String, String>,
    receivers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReceiverSpec {
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

impl Rules {
    /// Adds a file's routes, in order (first match wins).
    pub(super) fn add_routes(&mut self, file: &Path, routes: Vec<RouteSpec>) -> Result<()> {
        for r in routes {
            let matchers = r
                .matchers
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        anchored(v).map_err(|m| invalid(file, "route".into(), "match", m))?,
                    ))
                })
                .collect::<Result<_>>()?;
            self.check_receivers(file, "route", &r.receivers)?;
            self.routes.push(Route {
                matchers,
                receivers: r.receivers,
            });
        }
        Ok(())
    }

    /// Adds a receiver; its name must be new.
    pub(super) fn add_receiver(&mut self, file: &Path, r: &ReceiverSpec) -> Result<()> {
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

    /// Checks that every name in `names` is a receiver defined so far.
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

    /// Compiles a policy into a one-rule group.
    pub(super) fn add_policy(&mut self, file: &Path, p: PolicySpec) -> Result<()> {
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
}
