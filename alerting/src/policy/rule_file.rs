//! Prometheus rule files (`groups:` of alerting and recording rules) as written, and
//! their compilation into [`Rules`]: one group each, with Prometheus's defaults (a 1m
//! interval, a 4h repeat) and its checks (metric and label name syntax, no `for` on a
//! recording rule).
//!
//! It promises to accept what Prometheus 2.42 accepts in these fields and to refuse the
//! rest with the group, the rule and the key named.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use telltale_model::prom::{is_label_name, is_metric_name};

use crate::policy::check::{bounded, check_promql};
use crate::policy::error::{invalid, Result};
use crate::policy::rules::{Group, Notify, Repeat, Rule, Rules, GROUP_INTERVAL};
use crate::template::Template;

/// A rule file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFile {
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

impl Rules {
    /// Compiles a rule file's groups, each `<file name>/<group name>`.
    pub(super) fn add_rule_file(&mut self, file: &Path, f: RuleFile) -> Result<()> {
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
}
