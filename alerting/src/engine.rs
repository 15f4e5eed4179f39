//! The alarm state machine: query results in, alarm transitions and notifications out.
//!
//! Per (group, rule, label set): pending → firing → resolved, with `no_data` for a
//! policy's label set that stops returning data (not a recovery). Rule-file alerts follow
//! Prometheus 2.42's rule manager exactly: pending until `for` has passed since the first
//! evaluation that returned the label set, firing at once with `for: 0`, resolved at the
//! first evaluation without it unless `keep_firing_for` holds it, resolved alerts listed
//! for 15 minutes. Policies fire after `consecutive` breaching evaluations in a row.
//!
//! [`Engine::apply`] is pure with respect to time: it takes the evaluation timestamp, so
//! tests drive it with any clock. The notifications it returns carry ids derived from
//! (group, rule, kind, evaluation time, alarms), so the same evaluation yields the same id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use serde::{Deserializer, Serializer};
use telltale_model::calendar::MINUTE_MS;
use telltale_model::prom::METRIC_NAME;

use crate::alarm::{Alarm, AlarmState, Kind, Notification, Transition};
use crate::policy::{Group, Repeat, Rule};
use crate::query::Sample;

/// How long a resolved alarm stays listed (Prometheus's `resolvedRetention`).
pub const RESOLVED_RETENTION_MS: i64 = 15 * MINUTE_MS;

/// An alarm's key: group id, rule key, label text.
type Key = (String, String, String);

/// A label set that breaches in this evaluation.
struct Breach {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    value: f64,
}

/// Alarms notified together: kind, `group_by` values, receivers.
type BatchKey = (Kind, Vec<String>, Vec<String>);

/// Every alarm, keyed by group, rule and labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Engine {
    /// The alarms (a sorted list, so the state file reads well).
    #[serde(
        serialize_with = "serialize_alarms",
        deserialize_with = "deserialize_alarms"
    )]
    pub alarms: BTreeMap<Key, Alarm>,
    /// Last evaluation time of each group (ms).
    pub evaluated: BTreeMap<String, i64>,
}

/// The alarms as a list in key order (the key is derived from each alarm).
fn serialize_alarms<S: Serializer>(m: &BTreeMap<Key, Alarm>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.values())
}

/// The alarms from their list, keyed again.
fn deserialize_alarms<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<Key, Alarm>, D::Error> {
    let list = Vec::<Alarm>::deserialize(d)?;
    Ok(list
        .into_iter()
        .map(|a| (key(&a.group, &a.rule, &a.labels), a))
        .collect())
}

fn key(group: &str, rule: &str, labels: &BTreeMap<String, String>) -> Key {
    (group.to_owned(), rule.to_owned(), label_text(labels))
}

/// Labels as one string, the last part of a [`Key`].
fn label_text(labels: &BTreeMap<String, String>) -> String {
    let mut text = String::with_capacity(labels.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (k, v) in labels {
        text.push_str(k);
        text.push('\u{1}');
        text.push_str(v);
        text.push('\u{2}');
    }
    text
}

/// Why one rule's result could not be applied (state left as it was).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// Two result series map to one alarm.
    #[error("vector contains metrics with the same labelset after applying alert labels")]
    Duplicate,
    /// More alerts than the group's `limit`.
    #[error("exceeded limit of {0} with {1} alerts")]
    Limit(u64, usize),
}

/// What one evaluation of one rule produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// State changes.
    pub transitions: Vec<Transition>,
    /// Notifications to queue.
    pub notifications: Vec<Notification>,
}

impl Engine {
    /// Applies `result` of `rule` (of `group`) evaluated at `t`. `route` gives the
    /// receivers of rule-file alarms.
    pub fn apply(
        &mut self,
        group: &Group,
        rule: &Rule,
        result: &[Sample],
        t: i64,
        route: &dyn Fn(&BTreeMap<String, String>) -> Vec<String>,
    ) -> Result<Outcome, ApplyError> {
        let mut out = Outcome::default();
        // The label sets (as key text) that breach now, and (policies, for no_data) those
        // that returned data at all.
        let mut breaching: BTreeMap<String, Breach> = BTreeMap::new();
        let mut present = std::collections::HashSet::new();
        for s in result {
            if !rule
                .filter
                .iter()
                .all(|(k, re)| re.is_match(s.labels.get(k).map(String::as_str).unwrap_or("")))
            {
                continue;
            }
            let labels = alarm_labels(rule, s);
            let k = label_text(&labels);
            if rule.no_data {
                present.insert(k.clone());
            }
            if rule.condition.is_some_and(|c| !c.holds(s.value)) {
                continue;
            }
            let annotations = rule
                .annotations
                .iter()
                .map(|(n, t)| (n.clone(), t.render(&s.labels, s.value)))
                .collect();
            let b = Breach {
                labels,
                annotations,
                value: s.value,
            };
            if breaching.insert(k, b).is_some() {
                return Err(ApplyError::Duplicate);
            }
        }
        if group.limit > 0 && breaching.len() as u64 > group.limit {
            return Err(ApplyError::Limit(group.limit, breaching.len()));
        }
        let transition = |a: &Alarm, from: &str, to: &str| Transition {
            at: t,
            group: a.group.clone(),
            rule: a.rule.clone(),
            labels: a.labels.clone(),
            from: from.to_owned(),
            to: to.to_owned(),
            value: a.value,
        };

        // Existing alarms of this rule.
        let mut forget = Vec::new();
        for (k, a) in self.alarms.range_mut(rule_range(&group.id, &rule.key)) {
            let before = a.state;
            if let Some(Breach {
                annotations, value, ..
            }) = breaching.remove(&k.2)
            {
                if a.state == AlarmState::Resolved {
                    // A new episode (its transition is recorded below).
                    *a = new_alarm(group, rule, a.labels.clone(), annotations, value, t);
                } else {
                    a.value = value;
                    a.annotations = annotations;
                    a.keep_firing_since = None;
                    a.breaches += 1;
                    if a.state == AlarmState::NoData {
                        a.state = if a.fired_at.is_some() {
                            AlarmState::Firing
                        } else {
                            AlarmState::Pending
                        };
                    }
                }
            } else if a.state != AlarmState::Resolved {
                let keep = a.state == AlarmState::Firing && !rule.keep_firing_for.is_zero() && {
                    let since = *a.keep_firing_since.get_or_insert(t);
                    t - since < rule.keep_firing_for.as_millis() as i64
                };
                if keep {
                    // Held firing.
                } else if rule.no_data && !present.contains(&k.2) {
                    if a.state == AlarmState::Firing {
                        a.state = AlarmState::NoData;
                    } else if a.state == AlarmState::Pending {
                        forget.push(k.clone());
                    }
                } else if a.state == AlarmState::Pending {
                    forget.push(k.clone());
                } else {
                    a.state = AlarmState::Resolved;
                    a.resolved_at = Some(t);
                    a.breaches = 0;
                    a.recovery_owed = a.notified > 0 && rule.notify.recovery;
                }
            } else if t - a.resolved_at.unwrap_or(t) > RESOLVED_RETENTION_MS && !a.recovery_owed {
                forget.push(k.clone());
            }
            // A pending alarm that just went away is forgotten, not fired.
            let leaving = forget.last() == Some(k);
            if a.state == AlarmState::Pending && !leaving && fires(rule, a, t) {
                a.state = AlarmState::Firing;
                a.fired_at = Some(t);
            }
            if a.state != before && !leaving {
                out.transitions
                    .push(transition(a, before.as_str(), a.state.as_str()));
            }
        }
        for k in forget {
            if let Some(a) = self.alarms.remove(&k) {
                if a.state == AlarmState::Pending {
                    out.transitions.push(transition(&a, "pending", "inactive"));
                }
            }
        }
        // New alarms.
        for (text, b) in breaching {
            let k = (group.id.clone(), rule.key.clone(), text);
            let mut a = new_alarm(group, rule, b.labels, b.annotations, b.value, t);
            if fires(rule, &a, t) {
                a.state = AlarmState::Firing;
                a.fired_at = Some(t);
            }
            out.transitions
                .push(transition(&a, "inactive", a.state.as_str()));
            self.alarms.insert(k, a);
        }
        if !rule.record {
            self.notifications(group, rule, t, route, &mut out);
        }
        Ok(out)
    }

    /// Queues what is due for `rule`'s alarms at `t`: first notifications, repeats and
    /// recoveries, held back while a silence covers `t`.
    fn notifications(
        &mut self,
        group: &Group,
        rule: &Rule,
        t: i64,
        route: &dyn Fn(&BTreeMap<String, String>) -> Vec<String>,
        out: &mut Outcome,
    ) {
        if rule.notify.silences.iter().any(|s| s.covers(t)) {
            return;
        }
        // (kind, group_by values, receivers) → alarms.
        let mut batches: BTreeMap<BatchKey, (u32, Vec<Alarm>)> = BTreeMap::new();
        for a in self
            .alarms
            .range_mut(rule_range(&group.id, &rule.key))
            .map(|(_, a)| a)
        {
            let kind = match a.state {
                AlarmState::Firing if due(rule.notify.repeat, a, rule.consecutive, t) => {
                    a.notified += 1;
                    a.last_notified = Some(t);
                    Kind::Firing
                }
                AlarmState::Resolved if a.recovery_owed => {
                    a.recovery_owed = false;
                    Kind::Resolved
                }
                _ => continue,
            };
            let receivers = if rule.notify.receivers.is_empty() {
                route(&a.labels)
            } else {
                rule.notify.receivers.clone()
            };
            if receivers.is_empty() {
                continue;
            }
            let by: Vec<String> = rule
                .notify
                .group_by
                .iter()
                .map(|l| a.labels.get(l).cloned().unwrap_or_default())
                .collect();
            let batch = batches.entry((kind, by, receivers)).or_default();
            batch.0 = batch.0.max(a.notified.saturating_sub(1));
            batch.1.push(a.clone());
        }
        for ((kind, _, receivers), (repeat, alarms)) in batches {
            let mut h = Fnv::new();
            for part in [
                group.id.as_str(),
                rule.key.as_str(),
                &format!("{kind:?}"),
                &t.to_string(),
            ] {
                h.write(part.as_bytes());
            }
            for a in &alarms {
                h.write(label_text(&a.labels).as_bytes());
            }
            out.notifications.push(Notification {
                id: format!("{:016x}", h.0),
                kind,
                repeat: if kind == Kind::Firing { repeat } else { 0 },
                group: group.id.clone(),
                rule: rule.name.clone(),
                description: rule.notify.description.clone(),
                threshold: rule.condition.map(|c| c.to_string()),
                at: t,
                alarms,
                receivers,
            });
        }
    }

    /// The alarms of one rule of one group, in key order.
    pub fn of_rule<'a>(&'a self, group: &str, rule: &str) -> impl Iterator<Item = &'a Alarm> + 'a {
        self.alarms.range(rule_range(group, rule)).map(|(_, a)| a)
    }

    /// The alarms of one group, in key order.
    pub fn of_group<'a>(&'a self, group: &str) -> impl Iterator<Item = &'a Alarm> + 'a {
        let range = (group.to_owned(), String::new(), String::new())
            ..(format!("{group}\u{0}"), String::new(), String::new());
        self.alarms.range(range).map(|(_, a)| a)
    }

    /// The alarms not resolved, or all, in key order.
    pub fn list(&self, with_resolved: bool) -> impl Iterator<Item = &Alarm> {
        self.alarms
            .values()
            .filter(move |a| with_resolved || a.state != AlarmState::Resolved)
    }

    /// Drops the state of groups and rules no longer configured.
    pub fn retain_configured(&mut self, groups: &[Group]) {
        let known: std::collections::HashSet<(&str, &str)> = groups
            .iter()
            .flat_map(|g| g.rules.iter().map(move |r| (g.id.as_str(), r.key.as_str())))
            .collect();
        self.alarms
            .retain(|(g, r, _), _| known.contains(&(g.as_str(), r.as_str())));
        self.evaluated
            .retain(|g, _| groups.iter().any(|x| &x.id == g));
    }
}

/// The keys of one rule's alarms (no key of another rule sorts between them: `\0` is the
/// least character).
fn rule_range(group: &str, rule: &str) -> std::ops::Range<Key> {
    (group.to_owned(), rule.to_owned(), String::new())
        ..(group.to_owned(), format!("{rule}\u{0}"), String::new())
}

fn new_alarm(
    group: &Group,
    rule: &Rule,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    value: f64,
    t: i64,
) -> Alarm {
    Alarm {
        group: group.id.clone(),
        rule: rule.key.clone(),
        labels,
        annotations,
        state: AlarmState::Pending,
        value,
        active_at: t,
        fired_at: None,
        resolved_at: None,
        keep_firing_since: None,
        breaches: 1,
        notified: 0,
        last_notified: None,
        recovery_owed: false,
    }
}

/// A pending alarm fires when `for` has passed since it became active (rule files) and
/// it has breached `consecutive` times in a row (policies).
fn fires(rule: &Rule, a: &Alarm, t: i64) -> bool {
    t - a.active_at >= rule.for_.as_millis() as i64 && a.breaches >= rule.consecutive
}

/// Whether a firing alarm is owed a (repeat) notification at `t`.
fn due(repeat: Repeat, a: &Alarm, consecutive: u32, t: i64) -> bool {
    let Some(last) = a.last_notified else {
        return true;
    };
    match repeat {
        Repeat::Once => false,
        Repeat::Every(d) => t - last >= d.as_millis() as i64,
        Repeat::Exponential => {
            // The 1st, 2nd, 4th, 8th... breaching evaluation since it fired.
            let n = a.breaches.saturating_sub(consecutive) + 1;
            n.is_power_of_two() && t > last
        }
    }
}

/// Result labels without `__name__`, the rule's labels (templated), then `alertname`.
fn alarm_labels(rule: &Rule, s: &Sample) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = s
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != METRIC_NAME)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (name, t) in &rule.labels {
        let v = t.render(&s.labels, s.value);
        if v.is_empty() {
            labels.remove(name);
        } else {
            labels.insert(name.clone(), v);
        }
    }
    labels.insert("alertname".into(), rule.name.clone());
    labels
}

/// FNV-1a, 64 bits: a stable hash for notification ids (the same across builds).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().chain(&[0xff]) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests;
