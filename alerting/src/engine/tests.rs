//! The state machine against Prometheus's rule-manager semantics and Telltale's policy
//! rules, driven with explicit evaluation times: `for`, `keep_firing_for`, `consecutive`,
//! no data, repeats, grouping, silences, stable notification ids, and state that
//! survives serialization.

use super::*;
use crate::policy::{Condition, Notify, Op, Silence};
use crate::template::Template;
use std::time::Duration;
use telltale_model::calendar::MINUTE_MS;

const MIN: i64 = MINUTE_MS;

fn group(rule: Rule) -> Group {
    Group {
        id: "g".into(),
        interval: Duration::from_secs(60),
        limit: 0,
        rules: vec![rule],
    }
}

fn rule_file_rule(for_: u64, keep: u64) -> Rule {
    Rule {
        name: "A".into(),
        key: "A".into(),
        expr: "x > 1".into(),
        record: false,
        condition: None,
        filter: Vec::new(),
        for_: Duration::from_secs(for_),
        consecutive: 1,
        keep_firing_for: Duration::from_secs(keep),
        no_data: false,
        labels: vec![("severity".into(), Template::parse("page").unwrap())],
        annotations: vec![(
            "summary".into(),
            Template::parse("{{ $labels.pod }} at {{ $value }}").unwrap(),
        )],
        notify: Notify {
            receivers: vec!["mail".into()],
            repeat: Repeat::Every(Duration::from_secs(3600)),
            recovery: true,
            group_by: Vec::new(),
            silences: Vec::new(),
            description: String::new(),
        },
    }
}

fn policy(consecutive: u32, repeat: Repeat) -> Rule {
    Rule {
        condition: Some(Condition {
            op: Op::Gt,
            threshold: 0.8,
        }),
        consecutive,
        no_data: true,
        labels: Vec::new(),
        annotations: Vec::new(),
        notify: Notify {
            repeat,
            ..rule_file_rule(0, 0).notify
        },
        ..rule_file_rule(0, 0)
    }
}

fn s(pod: &str, v: f64) -> Sample {
    Sample {
        labels: [("__name__", "x"), ("pod", pod)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        value: v,
    }
}

fn no_route(_: &BTreeMap<String, String>) -> Vec<String> {
    Vec::new()
}

/// After one evaluation: (state by pod, notifications as "kind:pods").
type Step = (Vec<(String, &'static str)>, Vec<String>);

/// Runs `results` at 0, 1m, 2m...
fn run(rule: &Rule, results: &[Vec<Sample>]) -> Vec<Step> {
    let g = group(rule.clone());
    let mut e = Engine::default();
    results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let out = e.apply(&g, rule, r, i as i64 * MIN, &no_route).unwrap();
            let states = e
                .list(true)
                .map(|a| (a.labels["pod"].clone(), a.state.as_str()))
                .collect();
            let notes = out
                .notifications
                .iter()
                .map(|n| {
                    let pods: Vec<&str> =
                        n.alarms.iter().map(|a| a.labels["pod"].as_str()).collect();
                    format!("{:?}:{}", n.kind, pods.join(","))
                })
                .collect();
            (states, notes)
        })
        .collect()
}

fn states(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|(s, _)| {
            s.iter()
                .map(|(p, st)| format!("{p}={st}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn for_holds_pending_then_fires_and_a_gap_restarts_it() {
    let r = rule_file_rule(120, 0);
    let steps = run(
        &r,
        &[
            vec![s("a", 2.0)],
            vec![s("a", 2.0)],
            vec![],
            vec![s("a", 2.0)],
            vec![s("a", 2.0)],
            vec![s("a", 2.0)],
            vec![],
        ],
    );
    assert_eq!(
        states(&steps),
        [
            "a=pending",
            "a=pending",
            "",
            "a=pending",
            "a=pending",
            "a=firing",
            "a=resolved"
        ]
    );
    assert_eq!(steps[5].1, ["Firing:a"]);
    assert_eq!(steps[6].1, ["Resolved:a"]);
}

#[test]
fn for_zero_fires_at_the_first_evaluation() {
    let steps = run(&rule_file_rule(0, 0), &[vec![s("a", 2.0)]]);
    assert_eq!(states(&steps), ["a=firing"]);
    assert_eq!(steps[0].1, ["Firing:a"]);
}

#[test]
fn keep_firing_for_counts_from_the_first_missing_evaluation() {
    let steps = run(
        &rule_file_rule(0, 180),
        &[vec![s("a", 5.0)], vec![], vec![], vec![], vec![]],
    );
    assert_eq!(
        states(&steps),
        ["a=firing", "a=firing", "a=firing", "a=firing", "a=resolved"]
    );
}

#[test]
fn labels_and_annotations_are_templated_and_alertname_set() {
    let r = rule_file_rule(0, 0);
    let g = group(r.clone());
    let mut e = Engine::default();
    e.apply(&g, &r, &[s("web-1", 2.5)], 0, &no_route).unwrap();
    let a = e.list(false).next().unwrap();
    assert_eq!(
        a.labels,
        [("alertname", "A"), ("pod", "web-1"), ("severity", "page")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    );
    assert_eq!(a.annotations["summary"], "web-1 at 2.5");
    // Two series that differ only in __name__ collide once it is dropped.
    let mut other = s("web-1", 3.0);
    other.labels.insert("__name__".into(), "y".into());
    assert_eq!(
        e.apply(&g, &r, &[s("web-1", 2.5), other], MIN, &no_route)
            .unwrap_err(),
        ApplyError::Duplicate
    );
}

#[test]
fn policies_fire_after_consecutive_breaches_and_missing_data_is_not_recovery() {
    let p = policy(3, Repeat::Once);
    let steps = run(
        &p,
        &[
            vec![s("a", 0.9)],
            vec![s("a", 0.9)],
            vec![s("a", 0.5)], // recovers while pending: starts over
            vec![s("a", 0.9)],
            vec![s("a", 0.9)],
            vec![s("a", 0.9)],
            vec![],             // no data
            vec![s("a", 0.95)], // back, still firing, no new notification
            vec![s("a", 0.1)],  // recovered
        ],
    );
    assert_eq!(
        states(&steps),
        [
            "a=pending",
            "a=pending",
            "",
            "a=pending",
            "a=pending",
            "a=firing",
            "a=no_data",
            "a=firing",
            "a=resolved"
        ]
    );
    let notes: Vec<_> = steps.iter().map(|s| s.1.join(" ")).collect();
    assert_eq!(
        notes,
        ["", "", "", "", "", "Firing:a", "", "", "Resolved:a"]
    );
}

#[test]
fn repeats_by_interval_once_or_exponentially() {
    let firing: Vec<Vec<Sample>> = (0..10).map(|_| vec![s("a", 1.0)]).collect();
    let count = |repeat| {
        run(&policy(1, repeat), &firing)
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.1.is_empty())
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    assert_eq!(count(Repeat::Once), [0]);
    assert_eq!(count(Repeat::Every(Duration::from_secs(180))), [0, 3, 6, 9]);
    assert_eq!(count(Repeat::Exponential), [0, 1, 3, 7]);
}

#[test]
fn alarms_of_one_evaluation_share_a_notification_unless_grouped_apart() {
    let p = policy(1, Repeat::Once);
    let both = [vec![s("a", 1.0), s("b", 1.0)]];
    assert_eq!(run(&p, &both)[0].1, ["Firing:a,b"]);
    let mut split = p.clone();
    split.notify.group_by = vec!["pod".into()];
    assert_eq!(run(&split, &both)[0].1, ["Firing:a", "Firing:b"]);
}

#[test]
fn silences_hold_notifications_until_they_end() {
    let mut p = policy(1, Repeat::Once);
    // Silent during the first three minutes of every day (t = 0 is a day's start).
    p.notify.silences = vec![Silence {
        weekdays: Vec::new(),
        from: 0,
        to: 3,
    }];
    let steps = run(
        &p,
        &[
            vec![s("a", 1.0)],
            vec![s("a", 1.0)],
            vec![s("a", 1.0)],
            vec![s("a", 1.0)],
        ],
    );
    let notes: Vec<_> = steps.iter().map(|s| s.1.join(" ")).collect();
    assert_eq!(notes, ["", "", "", "Firing:a"]);
}

#[test]
fn notification_ids_are_the_same_for_the_same_evaluation() {
    let p = policy(1, Repeat::Once);
    let g = group(p.clone());
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let mut e = Engine::default();
            e.apply(&g, &p, &[s("a", 1.0)], 5 * MIN, &no_route)
                .unwrap()
                .notifications[0]
                .id
                .clone()
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
    let mut e = Engine::default();
    let other = e.apply(&g, &p, &[s("a", 1.0)], 6 * MIN, &no_route).unwrap();
    assert_ne!(other.notifications[0].id, ids[0]);
}

#[test]
fn state_survives_serialization() {
    let r = rule_file_rule(120, 0);
    let g = group(r.clone());
    let mut e = Engine::default();
    e.apply(&g, &r, &[s("a", 2.0)], 0, &no_route).unwrap();
    e.evaluated.insert("g".into(), 0);
    let json = serde_json::to_string(&e).unwrap();
    let mut back: Engine = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e);
    // The pending timer carries on: fires at 2m, not 2m after the restart.
    back.apply(&g, &r, &[s("a", 2.0)], MIN, &no_route).unwrap();
    let out = back
        .apply(&g, &r, &[s("a", 2.0)], 2 * MIN, &no_route)
        .unwrap();
    assert_eq!(out.notifications.len(), 1);
}

#[test]
fn rule_file_alarms_follow_routes() {
    let mut r = rule_file_rule(0, 0);
    r.notify.receivers.clear();
    let g = group(r.clone());
    let mut e = Engine::default();
    let route = |l: &BTreeMap<String, String>| {
        if l.get("severity").map(String::as_str) == Some("page") {
            vec!["pager".to_owned()]
        } else {
            Vec::new()
        }
    };
    let out = e.apply(&g, &r, &[s("a", 2.0)], 0, &route).unwrap();
    assert_eq!(out.notifications[0].receivers, ["pager"]);
}

#[test]
fn transitions_are_recorded_once_each() {
    let r = rule_file_rule(60, 0);
    let g = group(r.clone());
    let mut e = Engine::default();
    let mut log = Vec::new();
    for (i, result) in [
        vec![s("a", 2.0)],
        vec![], // pending, for elapsed at this step, but gone: forgotten
        vec![s("a", 2.0)],
        vec![s("a", 2.0)], // fires
        vec![],            // resolves
        vec![s("a", 2.0)], // back within the retention: a new episode
    ]
    .iter()
    .enumerate()
    {
        let out = e.apply(&g, &r, result, i as i64 * MIN, &no_route).unwrap();
        for t in out.transitions {
            log.push(format!("{}:{}->{}", i, t.from, t.to));
        }
    }
    assert_eq!(
        log,
        [
            "0:inactive->pending",
            "1:pending->inactive",
            "2:inactive->pending",
            "3:pending->firing",
            "4:firing->resolved",
            "5:resolved->pending"
        ]
    );
}
