//! Black-box tests of `telltale alerting` against real peers: Prometheus 2.42 as the query
//! backend (fed by remote write), a real SMTP server (aiosmtpd) with STARTTLS, implicit
//! TLS and AUTH, and a real Alertmanager 0.25.
//!
//! Policies evaluate every second here (`period: 1s`), so a firing-and-recovery story
//! takes seconds; outages last a few seconds of real time with several retries in them.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::peers::{self, Alertmanager, Hook, Smtp};
use common::{eventually, free_port, get, Prometheus, Running};
use telltale_model::remote::{TimeSeries, WriteRequest};

const WAIT: Duration = Duration::from_secs(30);

/// Prometheus with its remote-write receiver on.
fn prometheus(dir: &Path) -> Option<Prometheus> {
    let p = Prometheus::start(
        dir,
        |_| "global:\n  scrape_interval: 15s\n".into(),
        &["--web.enable-remote-write-receiver"],
    )?;
    eventually(WAIT, || {
        common::try_get(&format!("{}/-/ready", p.url))
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .expect("prometheus ready");
    Some(p)
}

/// Writes one gauge to Prometheus every 250 ms with the value it is set to.
struct Feed {
    value: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Feed {
    fn start(prom: &str, labels: &[(&str, &str)], value: f64) -> Feed {
        let feed = Feed {
            value: Arc::new(AtomicU64::new(value.to_bits())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (v, stop) = (feed.value.clone(), feed.stop.clone());
        let url = format!("{prom}/api/v1/write");
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64;
                let l: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let body = WriteRequest {
                    timeseries: vec![TimeSeries::new(
                        &l,
                        &[(now, f64::from_bits(v.load(Ordering::Relaxed)))],
                    )],
                }
                .encode_body();
                let _ = ureq::post(&url)
                    .set("Content-Encoding", "snappy")
                    .set("Content-Type", "application/x-protobuf")
                    .set("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .send_bytes(&body);
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        feed
    }

    fn set(&self, v: f64) {
        self.value.store(v.to_bits(), Ordering::Relaxed);
    }
}

const CPU: &[(&str, &str)] = &[
    ("__name__", "test_pod_cpu_ratio"),
    ("namespace", "shop"),
    ("pod", "web-1"),
];

fn policy_file(dir: &Path, receivers: &str, receiver: &str) -> PathBuf {
    let p = dir.join("policies.yml");
    std::fs::write(
        &p,
        format!(
            r#"receivers:
{receivers}
policies:
  - name: pod-cpu-high
    description: Pod CPU above 80% of its limit
    expr: test_pod_cpu_ratio
    scope: {{ namespace: shop }}
    period: 1s
    condition: "> 0.8"
    consecutive: 2
    repeat: once
    receivers: [{receiver}]
"#
        ),
    )
    .unwrap();
    p
}

const MAIL: &str = "  - name: mail\n    email: { to: [ops@example.com] }";

fn alerting(
    dir: &Path,
    policies: &Path,
    query: &str,
    smtp: Option<&str>,
    ca: Option<&Path>,
) -> Running {
    common::spawn_cmd(alerting_cmd(dir, policies, query, smtp, ca))
}

fn alerting_cmd(
    dir: &Path,
    policies: &Path,
    query: &str,
    smtp: Option<&str>,
    ca: Option<&Path>,
) -> std::process::Command {
    let mut cmd = common::telltale();
    cmd.arg("alerting")
        .arg("--policies")
        .arg(policies)
        .args([
            "--query-url",
            query,
            "--smtp-from",
            "Telltale <telltale@example.com>",
        ])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--reload-interval", "1s"]);
    if let Some(u) = smtp {
        cmd.args(["--smtp-url", u]);
    }
    if let Some(ca) = ca {
        cmd.env("SSL_CERT_FILE", ca);
    }
    cmd
}

fn json(url: &str) -> serde_json::Value {
    serde_json::from_str(&get(url).1).expect("json")
}

fn alert_states(a: &Running) -> Vec<String> {
    json(&a.url("/api/v1/alerts"))["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            format!(
                "{}:{}",
                x["labels"]["alertname"].as_str().unwrap(),
                x["state"].as_str().unwrap()
            )
        })
        .collect()
}

fn wait_mails(smtp_out: &Path, n: usize) -> Vec<serde_json::Value> {
    eventually(WAIT, || {
        Some(peers::mails(smtp_out)).filter(|m| m.len() >= n)
    })
    .unwrap_or_else(|| panic!("expected {n} mails, got {:#?}", peers::mails(smtp_out)))
}

fn subjects(mails: &[serde_json::Value]) -> Vec<String> {
    mails
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_owned())
        .collect()
}

/// The email story end to end over STARTTLS with AUTH: firing, then recovery.
#[test]
fn starttls_with_auth_delivers_the_firing_and_the_recovery_email() {
    let dir = tempfile::tempdir().unwrap();
    let (Some(prom), Some(certs)) = (prometheus(dir.path()), peers::certs(dir.path())) else {
        return;
    };
    let smtp = Smtp::start(
        0,
        "starttls",
        Some(&certs),
        Some("alerts:s3cret"),
        &dir.path().join("mail"),
    );
    let feed = Feed::start(&prom.url, CPU, 0.93);
    let policies = policy_file(dir.path(), MAIL, "mail");
    std::fs::write(dir.path().join("password"), "s3cret\n").unwrap();
    // The password comes from --smtp-password-file (the URL has only the user).
    let url = format!("smtp://alerts@localhost:{}?tls=starttls", smtp.port);
    let mut cmd = alerting_cmd(
        dir.path(),
        &policies,
        &prom.url,
        Some(&url),
        Some(&certs.ca),
    );
    cmd.arg("--smtp-password-file")
        .arg(dir.path().join("password"));
    let a = common::spawn_cmd(cmd);

    let firing = wait_mails(&smtp.out, 1);
    let m = &firing[0];
    assert_eq!(
        m["subject"],
        "[FIRING] pod-cpu-high: namespace=shop, pod=web-1"
    );
    assert_eq!(m["auth_user"], "alerts", "AUTH happened");
    assert_eq!(m["tls"], true, "over STARTTLS");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["ops@example.com"]));
    assert_eq!(m["mail_from"], "telltale@example.com");
    let text = m["text"].as_str().unwrap();
    for want in [
        "Alarm pod-cpu-high is firing.",
        "Pod CPU above 80% of its limit",
        "Threshold: > 0.8",
        "- namespace=shop, pod=web-1",
        "value: 0.93",
        "since: ",
        "Dashboard: http://127.0.0.1:3000/d/telltale-alarms",
    ] {
        assert!(
            text.contains(want),
            "{want:?} not in the text body:\n{text}"
        );
    }
    let html = m["html"].as_str().unwrap();
    assert!(
        html.contains("<td>namespace=shop, pod=web-1</td><td>0.93</td>"),
        "{html}"
    );
    assert!(m["message_id"].as_str().unwrap().ends_with("@telltale>"));
    assert_eq!(alert_states(&a), ["pod-cpu-high:firing"]);

    feed.set(0.1);
    let both = wait_mails(&smtp.out, 2);
    assert!(
        both[1]["subject"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] pod-cpu-high"),
        "{:?}",
        subjects(&both)
    );
    assert!(both[1]["text"].as_str().unwrap().contains("has recovered"));
    assert!(eventually(WAIT, || alert_states(&a).is_empty().then_some(())).is_some());

    let history = || -> Vec<String> {
        json(&a.url("/api/v1/history"))["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| match e["type"].as_str().unwrap() {
                "transition" => format!(
                    "{}->{}",
                    e["from"].as_str().unwrap(),
                    e["to"].as_str().unwrap()
                ),
                _ => format!(
                    "{}:{}",
                    e["event"].as_str().unwrap(),
                    e["kind"].as_str().unwrap()
                ),
            })
            .collect()
    };
    // The SMTP server has the recovery mail as soon as the server accepts it; the
    // delivery is in the history once the client has heard that back.
    let events = eventually(WAIT, || {
        let events = history();
        (events.len() >= 5).then_some(events)
    })
    .unwrap_or_else(history);
    assert_eq!(
        events,
        [
            "inactive->pending",
            "pending->firing",
            "delivered:firing",
            "firing->resolved",
            "delivered:resolved"
        ]
    );
    let metrics = get(&a.url("/metrics")).1;
    assert_eq!(
        common::sample(
            &metrics,
            r#"telltale_alerting_notifications_sent_total{receiver_type="email"}"#
        ),
        Some(2.0)
    );
    assert!(
        common::sample(
            &metrics,
            r#"telltale_alerting_evaluations_total{result="ok"}"#
        )
        .unwrap()
            >= 3.0
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(smtp.mails().len(), 2, "nothing more was sent");
}

/// Implicit TLS (smtps) with AUTH PLAIN and plain text with AUTH LOGIN (the only one the
/// server offers) both deliver.
#[test]
fn implicit_tls_and_plain_smtp_deliver_with_auth_plain_and_login() {
    let dir = tempfile::tempdir().unwrap();
    let (Some(prom), Some(certs)) = (prometheus(dir.path()), peers::certs(dir.path())) else {
        return;
    };
    let _feed = Feed::start(&prom.url, CPU, 0.95);
    let policies = policy_file(dir.path(), MAIL, "mail");
    for (tls, auth, url) in [
        ("implicit", "u:p PLAIN", "smtps://u:p@localhost:{port}"),
        ("none", "u:p LOGIN", "smtp://u:p@127.0.0.1:{port}?tls=none"),
    ] {
        let run = dir.path().join(tls);
        std::fs::create_dir_all(&run).unwrap();
        let smtp = Smtp::start(0, tls, Some(&certs), Some(auth), &run.join("mail"));
        let url = url.replace("{port}", &smtp.port.to_string());
        let _a = alerting(&run, &policies, &prom.url, Some(&url), Some(&certs.ca));
        let m = wait_mails(&smtp.out, 1);
        assert_eq!(
            m[0]["subject"], "[FIRING] pod-cpu-high: namespace=shop, pod=web-1",
            "{tls}"
        );
        assert_eq!(m[0]["auth_user"], "u", "{tls}");
        assert_eq!(
            m[0]["auth_mechanism"],
            auth.split(' ').nth(1).unwrap(),
            "{tls}"
        );
        assert_eq!(m[0]["tls"], tls == "implicit", "{tls}");
    }
}

/// The mail server is down when the alarm fires and comes back seconds later (several
/// failed attempts in between): exactly one email.
#[test]
fn smtp_down_then_up_delivers_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(prom) = prometheus(dir.path()) else {
        return;
    };
    let _feed = Feed::start(&prom.url, CPU, 0.95);
    let policies = policy_file(dir.path(), MAIL, "mail");
    let port = free_port();
    let a = alerting(
        dir.path(),
        &policies,
        &prom.url,
        Some(&format!("smtp://127.0.0.1:{port}?tls=none")),
        None,
    );
    // At least three failed attempts (1 s, 2 s backoff between them).
    let failed = r#"telltale_alerting_notifications_failed_total{receiver_type="email"}"#;
    eventually(WAIT, || {
        common::sample(&get(&a.url("/metrics")).1, failed).filter(|n| *n >= 3.0)
    })
    .expect("delivery retried while the server is down");
    assert_eq!(alert_states(&a), ["pod-cpu-high:firing"]);
    let smtp = Smtp::start(port, "none", None, None, &dir.path().join("mail"));
    let m = wait_mails(&smtp.out, 1);
    assert!(m[0]["subject"].as_str().unwrap().starts_with("[FIRING]"));
    // Backoff reaches 60 s at most; the alarm keeps firing (repeat: once). Wait past the
    // next few evaluations and attempts: still one.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(smtp.mails().len(), 1);
    let metrics = get(&a.url("/metrics")).1;
    assert_eq!(
        common::sample(&metrics, "telltale_alerting_notifications_queued"),
        Some(0.0)
    );
}

/// SIGKILL after the alarm fired and its notification was queued but before it could be
/// sent; on restart it is sent, once.
#[test]
fn sigkill_between_firing_and_sending_sends_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(prom) = prometheus(dir.path()) else {
        return;
    };
    let _feed = Feed::start(&prom.url, CPU, 0.95);
    let policies = policy_file(dir.path(), MAIL, "mail");
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}?tls=none");
    let mut a = alerting(dir.path(), &policies, &prom.url, Some(&url), None);
    let queued = "telltale_alerting_notifications_queued";
    eventually(WAIT, || {
        common::sample(&get(&a.url("/metrics")).1, queued).filter(|n| *n == 1.0)
    })
    .expect("notification queued");
    a.child.kill().unwrap();
    a.child.wait().unwrap();

    let smtp = Smtp::start(port, "none", None, None, &dir.path().join("mail"));
    let a = alerting(dir.path(), &policies, &prom.url, Some(&url), None);
    let m = wait_mails(&smtp.out, 1);
    assert!(m[0]["subject"]
        .as_str()
        .unwrap()
        .starts_with("[FIRING] pod-cpu-high"));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(smtp.mails().len(), 1, "{:?}", subjects(&smtp.mails()));
    assert_eq!(
        alert_states(&a),
        ["pod-cpu-high:firing"],
        "the alarm kept firing across the restart"
    );
}

/// SIGKILL while firing; the value recovers while alerting is down; after restart the
/// recovery is sent.
#[test]
fn a_recovery_while_down_is_sent_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(prom) = prometheus(dir.path()) else {
        return;
    };
    let feed = Feed::start(&prom.url, CPU, 0.95);
    let policies = policy_file(dir.path(), MAIL, "mail");
    let smtp = Smtp::start(0, "none", None, None, &dir.path().join("mail"));
    let url = format!("smtp://127.0.0.1:{}?tls=none", smtp.port);
    let mut a = alerting(dir.path(), &policies, &prom.url, Some(&url), None);
    wait_mails(&smtp.out, 1);
    // Killed once the delivery is settled (a kill between the server's acceptance and
    // the state write would send it again: the documented window, not this test's).
    let sent = r#"telltale_alerting_notifications_sent_total{receiver_type="email"}"#;
    eventually(WAIT, || {
        common::sample(&get(&a.url("/metrics")).1, sent).filter(|n| *n == 1.0)
    })
    .expect("delivery settled");
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    feed.set(0.2);
    std::thread::sleep(Duration::from_secs(2));
    let _a = alerting(dir.path(), &policies, &prom.url, Some(&url), None);
    let m = wait_mails(&smtp.out, 2);
    assert_eq!(
        subjects(&m),
        [
            "[FIRING] pod-cpu-high: namespace=shop, pod=web-1",
            "[RESOLVED] pod-cpu-high: namespace=shop, pod=web-1"
        ]
    );
}

/// A webhook gets JSON; one that answers 503 at first gets the same notification id
/// again until it accepts.
#[test]
fn webhooks_get_json_and_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let Some(prom) = prometheus(dir.path()) else {
        return;
    };
    let _feed = Feed::start(&prom.url, CPU, 0.97);
    let hook = Hook::start();
    hook.set_status(503);
    let receivers = format!(
        "  - name: hook\n    webhook: {{ url: \"{}/hook\" }}",
        hook.url()
    );
    let policies = policy_file(dir.path(), &receivers, "hook");
    let a = alerting(dir.path(), &policies, &prom.url, None, None);
    eventually(WAIT, || (hook.bodies().len() >= 2).then_some(())).expect("retried");
    hook.set_status(200);
    let accepted = eventually(WAIT, || {
        let b = hook.bodies();
        let accepted = b.last().is_some_and(|(status, _)| *status == 200);
        accepted.then_some(b)
    })
    .expect("accepted");
    let ids: std::collections::BTreeSet<String> = accepted
        .iter()
        .map(|(_, b)| b["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same id");
    let body = &accepted.last().unwrap().1;
    assert_eq!(body["status"], "firing");
    assert_eq!(body["rule"], "pod-cpu-high");
    assert_eq!(body["threshold"], "> 0.8");
    assert_eq!(body["alarms"][0]["labels"]["pod"], "web-1");
    assert_eq!(body["alarms"][0]["value"], 0.97);
    let metrics = get(&a.url("/metrics")).1;
    assert_eq!(
        common::sample(
            &metrics,
            r#"telltale_alerting_notifications_sent_total{receiver_type="webhook"}"#
        ),
        Some(1.0)
    );
}

/// A real Alertmanager receives the firing alert through its v2 API, and the resolve.
#[test]
fn alertmanager_receives_firing_and_resolved_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let Some(prom) = prometheus(dir.path()) else {
        return;
    };
    let Some(am) = Alertmanager::start(dir.path()) else {
        return;
    };
    let feed = Feed::start(&prom.url, CPU, 0.99);
    let receivers = format!("  - name: am\n    alertmanager: {{ url: \"{}\" }}", am.url);
    let policies = policy_file(dir.path(), &receivers, "am");
    let _a = alerting(dir.path(), &policies, &prom.url, None, None);
    let alerts = eventually(WAIT, || am.alerts().ok().filter(|a| !a.is_empty()))
        .expect("alert in Alertmanager");
    assert_eq!(alerts[0]["labels"]["alertname"], "pod-cpu-high");
    assert_eq!(alerts[0]["labels"]["pod"], "web-1");
    assert_eq!(alerts[0]["labels"]["severity"], "warning");
    assert_eq!(alerts[0]["annotations"]["threshold"], "> 0.8");
    assert_eq!(alerts[0]["status"]["state"], "active");
    feed.set(0.1);
    eventually(WAIT, || am.alerts().ok().filter(|a| a.is_empty()))
        .expect("resolved in Alertmanager");
}

/// The query API goes away while an alarm fires: the alarm stays firing (no false
/// recovery), a self-alarm appears, and it clears when the API is back.
#[test]
fn an_unreachable_query_api_freezes_alarms_and_raises_a_self_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let Some(prom) = prometheus(dir.path()) else {
        return;
    };
    let _feed = Feed::start(&prom.url, CPU, 0.95);
    let hook = Hook::start();
    let receivers = format!(
        "  - name: hook\n    webhook: {{ url: \"{}/hook\" }}",
        hook.url()
    );
    let policies = policy_file(dir.path(), &receivers, "hook");
    // A TCP forwarder to Prometheus that the test can cut.
    let proxy = peers::Proxy::start(prom.url.trim_start_matches("http://"));
    let a = alerting(dir.path(), &policies, &proxy.url(), None, None);
    eventually(WAIT, || {
        (alert_states(&a) == ["pod-cpu-high:firing"]).then_some(())
    })
    .expect("firing");
    proxy.set_up(false);
    eventually(WAIT, || {
        (alert_states(&a) == ["pod-cpu-high:firing", "TelltaleAlertingQueryFailing:firing"])
            .then_some(())
    })
    .expect("self-alarm");
    let metrics = get(&a.url("/metrics")).1;
    assert_eq!(
        common::sample(&metrics, "telltale_alerting_query_api_up"),
        Some(0.0)
    );
    std::thread::sleep(Duration::from_secs(2));
    let statuses: Vec<String> = hook
        .bodies()
        .iter()
        .map(|(_, b)| b["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["firing"], "no recovery was sent");
    proxy.set_up(true);
    eventually(WAIT, || {
        (alert_states(&a) == ["pod-cpu-high:firing"]).then_some(())
    })
    .expect("self-alarm cleared");
}

/// Bad policy files stop the start (exit 2, a configuration error) with the file, policy
/// and key named; a bad reload
/// keeps the running policies.
#[test]
fn bad_policies_are_refused_with_file_policy_and_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, says) in [
        ("policies: [", "did not find expected"),
        ("policies:\n  - name: p\n    expr: up\n    colour: red\n", "unknown field `colour`"),
        ("policies:\n  - name: p\n    expr: 'rate(up[5m]'\n    receivers: [x]\n", r#"policy "p": expr: "rate(up[5m]" is not valid PromQL"#),
        ("policies:\n  - name: p\n    expr: up\n    receivers: [pager]\n", r#"policy "p": receivers: unknown receiver "pager""#),
        ("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations: { s: '{{ $value | title }}' }\n", r#"group "g" rule "A": annotations: template"#),
    ] {
        let p = dir.path().join("policies.yml");
        std::fs::write(&p, text).unwrap();
        let out = common::telltale()
            .arg("alerting")
            .arg("--policies")
            .arg(&p)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(says), "{text}:\n  got {err}\n  want {says}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = common::telltale()
        .args(["alerting", "--policies", "/nonexistent/policies.yml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("policies: /nonexistent/policies.yml does not exist"));

    // Hot reload: a broken edit keeps the old policies; a good one replaces them.
    let Some(prom) = prometheus(dir.path()) else {
        return;
    };
    let _feed = Feed::start(&prom.url, CPU, 0.95);
    let hook = Hook::start();
    let receivers = format!(
        "  - name: hook\n    webhook: {{ url: \"{}/hook\" }}",
        hook.url()
    );
    let policies = policy_file(dir.path(), &receivers, "hook");
    let mut a = alerting(dir.path(), &policies, &prom.url, None, None);
    eventually(WAIT, || {
        (alert_states(&a) == ["pod-cpu-high:firing"]).then_some(())
    })
    .expect("firing");
    let good = std::fs::read_to_string(&policies).unwrap();
    std::fs::write(
        &policies,
        good.replace("condition: \"> 0.8\"", "condition: \"> oops\""),
    )
    .unwrap();
    eventually(WAIT, || {
        a.log()
            .into_iter()
            .find(|l| l.contains("policy reload failed") && l.contains("is not a number"))
    })
    .expect("reload error logged");
    assert_eq!(
        common::sample(
            &get(&a.url("/metrics")).1,
            "telltale_alerting_config_last_reload_successful"
        ),
        Some(0.0)
    );
    assert_eq!(
        alert_states(&a),
        ["pod-cpu-high:firing"],
        "old policies still running"
    );
    std::fs::write(
        &policies,
        good.replace("condition: \"> 0.8\"", "condition: \"> 0.99\""),
    )
    .unwrap();
    eventually(WAIT, || alert_states(&a).is_empty().then_some(())).expect("new threshold applied");
    assert_eq!(
        common::sample(
            &get(&a.url("/metrics")).1,
            "telltale_alerting_config_last_reload_successful"
        ),
        Some(1.0)
    );
}

/// An instant query's vector: (labels, value) per series.
fn instant(base: &str, q: &str) -> Vec<(serde_json::Value, f64)> {
    let url = format!("{base}/api/v1/query?query={}", common::urlencode(q));
    let v = json(&url);
    v["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            (
                s["metric"].clone(),
                s["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// Recording rules and `ALERTS`/`ALERTS_FOR_STATE` are written back through remote write
/// (to the aggregator here), and a later rule of the group reads the recorded series.
#[test]
fn recording_rules_and_alerts_series_are_written_back() {
    let dir = tempfile::tempdir().unwrap();
    let agg = common::spawn(&[
        "aggregator",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    let base = agg.url("");
    let _feed = Feed::start(&base, CPU, 0.93);
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        r#"groups:
  - name: shop
    interval: 1s
    rules:
      - record: namespace:test_pod_cpu_ratio:max
        expr: max by (namespace) (test_pod_cpu_ratio)
        labels: { source: telltale }
      - alert: NamespaceHot
        expr: namespace:test_pod_cpu_ratio:max > 0.8
        for: 2s
        labels: { severity: page }
"#,
    )
    .unwrap();
    let mut cmd = alerting_cmd(dir.path(), &rules, &base, None, None);
    cmd.args(["--remote-write-url", &format!("{base}/api/v1/write")]);
    let a = common::spawn_cmd(cmd);
    eventually(WAIT, || {
        (alert_states(&a) == ["NamespaceHot:firing"]).then_some(())
    })
    .expect("firing on the recorded series");
    let recorded = instant(&base, "namespace:test_pod_cpu_ratio:max");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].0["namespace"], "shop");
    assert_eq!(recorded[0].0["source"], "telltale");
    assert_eq!(recorded[0].1, 0.93);
    let alerts = eventually(WAIT, || {
        Some(instant(&base, r#"ALERTS{alertstate="firing"}"#)).filter(|v| !v.is_empty())
    })
    .expect("ALERTS written");
    assert_eq!(alerts[0].0["alertname"], "NamespaceHot");
    assert_eq!(alerts[0].0["severity"], "page");
    assert_eq!(alerts[0].0["namespace"], "shop");
    assert_eq!(alerts[0].1, 1.0);
    let active = json(&a.url("/api/v1/alerts"))["data"]["alerts"][0]["activeAt"]
        .as_str()
        .unwrap()
        .to_owned();
    let for_state = instant(&base, "ALERTS_FOR_STATE");
    assert_eq!(for_state.len(), 1, "{for_state:?}");
    let secs = humantime::parse_rfc3339(&active)
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (for_state[0].1 - secs).abs() < 0.001,
        "{} vs {active}",
        for_state[0].1
    );
    assert!(!common::sample(
        &get(&a.url("/metrics")).1,
        "telltale_alerting_remote_write_failures_total"
    )
    .is_some_and(|n| n > 0.0));
}
