//! The policy compiler against policy and rule files as users write them: what loads,
//! what it compiles to, and that every refusal names the file, the policy or rule and the
//! key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::check::resolution;
use super::silence::{parse_silence, SilenceSpec};
use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const RECEIVERS: &str = r#"
receivers:
  - name: mail
    email: { to: [ops@example.com] }
  - name: hook
    webhook: { url: "http://127.0.0.1:9/hook" }
"#;

fn load_one(text: &str) -> Result<Rules> {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "p.yml", text);
    Rules::load(&p)
}

#[test]
fn loads_the_design_example_policy() {
    let text = format!(
        "{RECEIVERS}{}",
        r#"
policies:
  - name: pod-cpu-high
    description: Pod CPU above 80% of its limit
    metric: pod_cpu_usage_ratio_of_limit
    scope: { namespace: shop, workload: checkout }
    statistic: avg
    period: 1m
    condition: "> 0.8"
    consecutive: 3
    repeat: 1h
    notify_recovery: true
    severity: warning
    receivers: [mail]
    silence: [{ weekdays: [sat, sun], from: "00:00", to: "08:00" }]
routes:
  - match: { severity: page }
    receivers: [mail]
  - receivers: [hook]
"#
    );
    let rules = load_one(&text).unwrap();
    assert_eq!(rules.groups.len(), 1);
    let g = &rules.groups[0];
    assert_eq!(g.id, "policy/pod-cpu-high");
    assert_eq!(g.interval, Duration::from_secs(60));
    let r = &g.rules[0];
    assert!(r.expr.starts_with("avg_over_time(("), "{}", r.expr);
    assert!(r.expr.ends_with(")[1m:15s])"), "{}", r.expr);
    assert!(r.expr.contains(r#"namespace="shop""#));
    // workload is not on the selectors: it filters the result.
    assert_eq!(r.filter.len(), 1);
    assert_eq!(r.filter[0].0, "workload");
    assert!(r.filter[0].1.is_match("checkout") && !r.filter[0].1.is_match("checkout2"));
    assert_eq!(r.consecutive, 3);
    assert_eq!(r.notify.repeat, Repeat::Every(Duration::from_secs(3600)));
    assert_eq!(
        r.condition,
        Some(Condition {
            op: Op::Gt,
            threshold: 0.8
        })
    );
    assert!(r.no_data, "a series without data is not a recovery");
    let page: BTreeMap<String, String> = [("severity".to_owned(), "page".to_owned())].into();
    assert_eq!(rules.route(&page), vec!["mail"]);
    assert_eq!(rules.route(&BTreeMap::new()), vec!["hook"]);
}

#[test]
fn errors_name_the_file_the_policy_and_the_key() {
    for (policy, says) in [
        (
            "metric: nope\n    condition: '> 1'",
            r#"policy "p": metric: unknown built-in metric "nope""#,
        ),
        (
            "expr: 'rate(x[5m]'",
            r#"policy "p": expr: "rate(x[5m]" is not valid PromQL"#,
        ),
        (
            "expr: up\n    receivers: [pager]",
            r#"policy "p": receivers: unknown receiver "pager" (defined: hook, mail)"#,
        ),
        ("expr: up\n    colour: red", "unknown field `colour`"),
        (
            "expr: up\n    condition: '>> 1'",
            r#"policy "p": condition: "> 1" is not a number"#,
        ),
        (
            "expr: up\n    repeat: sometimes",
            r#"policy "p": repeat: "sometimes" is not once"#,
        ),
        (
            "metric: node_memory_utilization",
            r#"policy "p": condition: required with metric:"#,
        ),
        (
            "expr: up\n    scope: { zone: a }",
            r#"policy "p": scope: unknown key "zone""#,
        ),
        (
            "expr: up\n    silence: [{ from: '25:00' }]",
            r#"policy "p": silence: from: "25:00" is not HH:MM"#,
        ),
        (
            "expr: up\n    repeat: 0s",
            r#"policy "p": repeat: must be at least 1s"#,
        ),
        ("expr: up\n    period: 400d", r#"policy "p": period: "#),
    ] {
        let receivers = if policy.contains("receivers") {
            ""
        } else {
            "\n    receivers: [mail]"
        };
        let text = format!("{RECEIVERS}policies:\n  - name: p\n    {policy}{receivers}\n");
        let e = load_one(&text).unwrap_err().to_string();
        assert!(e.contains("p.yml: "), "{e}");
        assert!(e.contains(says), "{policy}:\n  got {e}\n  want {says}");
    }
}

#[test]
fn loads_prometheus_rule_files_and_checks_them() {
    let rules = load_one(
        r#"
groups:
  - name: k8s
    interval: 30s
    rules:
      - alert: PodCrashLooping
        expr: rate(kube_pod_container_status_restarts_total[5m]) > 0
        for: 15m
        keep_firing_for: 5m
        labels: { severity: "{{ $labels.namespace }}-page" }
        annotations: { summary: "{{ $labels.pod }} restarts {{ $value | humanize }}/s" }
      - record: namespace:restarts:rate5m
        expr: sum by (namespace) (rate(kube_pod_container_status_restarts_total[5m]))
"#,
    )
    .unwrap();
    let g = &rules.groups[0];
    assert_eq!(
        (g.id.as_str(), g.interval),
        ("p.yml/k8s", Duration::from_secs(30))
    );
    assert_eq!(g.rules[0].for_, Duration::from_secs(900));
    assert_eq!(g.rules[0].keep_firing_for, Duration::from_secs(300));
    assert!(!g.rules[0].no_data && g.rules[1].record);

    for (rule, says) in [
        (
            "alert: A\n        expr: up >",
            r#"group "g" rule "A": expr:"#,
        ),
        (
            "alert: A\n        expr: up\n        annotations: { s: '{{ $value | title }}' }",
            r#"group "g" rule "A": annotations: template"#,
        ),
        (
            "record: r\n        expr: up\n        for: 1m",
            r#"group "g" rule "r": for: recording rules"#,
        ),
        (
            "alert: A\n        expr: up\n        fore: 1m",
            "unknown field `fore`",
        ),
        (
            "alert: A\n        expr: up\n        for: 500000000y",
            r#"group "g" rule "A": for: "#,
        ),
        (
            "alert: A\n        expr: up\n        labels: { team-name: x }",
            r#"group "g" rule "A": labels: "team-name" is not a valid label name"#,
        ),
        (
            "alert: A\n        expr: up\n        annotations: { 1st: x }",
            r#"group "g" rule "A": annotations: "1st" is not a valid label name"#,
        ),
        (
            "record: job-rate\n        expr: up",
            r#"group "g" rule "job-rate": record: "job-rate" is not a valid metric name"#,
        ),
    ] {
        let e = load_one(&format!(
            "groups:\n  - name: g\n    rules:\n      - {rule}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains(says), "{rule}:\n  got {e}\n  want {says}");
    }
}

#[test]
fn a_directory_loads_every_yaml_file_and_receivers_cross_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a-receivers.yml", RECEIVERS);
    write(
        dir.path(),
        "b-policies.yaml",
        "policies:\n  - name: up\n    expr: up == 0\n    receivers: [hook]\n",
    );
    write(
        dir.path(),
        "c.rules.yml",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n",
    );
    write(dir.path(), "c.test.yml", "rule_files: [c.rules.yml]\n");
    write(dir.path(), "notes.txt", "not yaml: [");
    let rules = Rules::load(dir.path()).unwrap();
    let ids: Vec<&str> = rules.groups.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, ["c.rules.yml/g", "policy/up"]);
    // `expr: up == 0` is its own condition: when it stops returning a series, that
    // series has recovered (as a Prometheus alert resolves).
    assert!(!rules.groups[1].rules[0].no_data);
    write(
        dir.path(),
        "d.yml",
        "policies:\n  - name: up\n    expr: up\n    receivers: [hook]\n",
    );
    let e = Rules::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("policy/up: name: defined twice"), "{e}");
}

#[test]
fn silences_cover_their_weekly_window() {
    let s = parse_silence(&SilenceSpec {
        weekdays: vec!["sat".into(), "sun".into()],
        from: Some("22:00".into()),
        to: Some("08:00".into()),
    })
    .unwrap();
    let day = |y_m_d_h_m: (i64, i64)| y_m_d_h_m.0 * 86_400_000 + y_m_d_h_m.1 * 60_000;
    // Day 20_421 since the epoch (2025-11-29) is a Saturday: (20_421 + 3) % 7 == 5.
    assert_eq!((20_421 + 3) % 7, 5);
    assert!(s.covers(day((20_421, 23 * 60))), "Saturday 23:00");
    assert!(s.covers(day((20_422, 7 * 60))), "Sunday 07:00");
    assert!(
        s.covers(day((20_423, 7 * 60))),
        "Monday 07:00 belongs to Sunday night"
    );
    assert!(!s.covers(day((20_423, 9 * 60))), "Monday 09:00");
    assert!(!s.covers(day((20_421, 12 * 60))), "Saturday noon");
    assert!(!s.covers(day((20_420, 7 * 60))), "Friday 07:00");
}

#[test]
fn durations_print_as_promql_reads_them() {
    assert_eq!(prom_duration(Duration::from_secs(90)), "1m30s");
    assert_eq!(prom_duration(Duration::from_secs(86_400 + 3600)), "1d1h");
    assert_eq!(prom_duration(Duration::from_millis(1500)), "1500ms");
    assert_eq!(
        resolution(Duration::from_secs(3600)),
        Duration::from_secs(300)
    );
    assert_eq!(resolution(Duration::from_secs(60)), Duration::from_secs(15));
}
