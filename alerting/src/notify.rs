//! Delivering one notification to one receiver: email (lettre: STARTTLS, implicit TLS or
//! none, AUTH PLAIN/LOGIN, text and HTML), webhook (JSON) and Alertmanager
//! (`POST /api/v2/alerts`). Each call is one attempt; retries and backoff belong to the
//! outbox ([`crate::outbox`]).
//!
//! It promises that each attempt reports whether it may be retried ([`Failed`]), and
//! that emails and webhooks carry the notification's id (`Message-ID`, `id`) so a
//! receiver can drop a copy sent twice (Alertmanager deduplicates by labels itself).

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{header, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::alarm::{Alarm, Kind, Notification};
use crate::http;
use crate::policy::Receiver;

/// A delivery attempt that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Failed {
    /// What went wrong (never a password).
    pub message: String,
    /// Whether a later attempt may succeed.
    pub retryable: bool,
}

/// Errors in `--smtp-*` settings.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// The URL is not `smtp[s]://[user[:pass]@]host[:port][?tls=...]`.
    #[error("--smtp-url: {0}")]
    Url(String),
    /// `--smtp-from` is not an address.
    #[error("--smtp-from {0:?}: not an email address")]
    From(String),
    /// The password file cannot be read.
    #[error("--smtp-password-file {path}: {source}")]
    Password {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TLS setup failed.
    #[error("--smtp-url: TLS: {0}")]
    Tls(String),
}

/// How to reach the mail server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte (smtps, usually port 465).
    Implicit,
    /// Plain text.
    None,
}

/// A mail server and the sender address.
#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// For log lines: `host:port (tls)`.
    pub describe: String,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Smtp({})", self.describe)
    }
}

impl Smtp {
    /// From `--smtp-url`, `--smtp-from` and `--smtp-password-file` (which overrides a
    /// password in the URL).
    pub fn new(
        url: &str,
        from: &str,
        password_file: Option<&std::path::Path>,
    ) -> Result<Smtp, SmtpError> {
        let bad = |m: &str| {
            SmtpError::Url(format!(
                "{m} (expected smtp[s]://[user[:pass]@]host[:port][?tls=starttls|implicit|none])"
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let hostport = hostport.trim_end_matches('/');
        let mut tls = match scheme {
            "smtp" => TlsMode::Starttls,
            "smtps" => TlsMode::Implicit,
            _ => return Err(bad(&format!("scheme {scheme:?} is not smtp or smtps"))),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("tls", "starttls")) => tls = TlsMode::Starttls,
                Some(("tls", "implicit")) => tls = TlsMode::Implicit,
                Some(("tls", "none")) => tls = TlsMode::None,
                _ => return Err(bad(&format!("unknown parameter {pair:?}"))),
            }
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>()
                    .map_err(|_| bad(&format!("port {p:?} is not a number")))?,
            ),
            _ => (hostport, if tls == TlsMode::Implicit { 465 } else { 587 }),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let from: Mailbox = from.parse().map_err(|_| SmtpError::From(from.to_owned()))?;
        let params = || {
            TlsParameters::builder(host.to_owned())
                .build_rustls()
                .map_err(|e| SmtpError::Tls(e.to_string()))
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(Duration::from_secs(20)));
        b = match tls {
            TlsMode::Starttls => b.tls(Tls::Required(params()?)),
            TlsMode::Implicit => b.tls(Tls::Wrapper(params()?)),
            TlsMode::None => b.tls(Tls::None),
        };
        if let Some(u) = userinfo {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let pass = match password_file {
                Some(p) => std::fs::read_to_string(p)
                    .map_err(|source| SmtpError::Password {
                        path: p.to_owned(),
                        source,
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
                None => percent_decode(pass),
            };
            b = b
                .credentials(Credentials::new(percent_decode(user), pass))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(Smtp {
            transport: b.build(),
            from,
            describe: format!("{host}:{port} ({tls:?})"),
        })
    }

    /// Sends `n` to `to`; the `Message-ID` is the notification's id.
    pub async fn send(&self, n: &Notification, to: &[String], links: &Links) -> Result<(), Failed> {
        let mut m = Message::builder()
            .from(self.from.clone())
            .subject(subject(n))
            .message_id(Some(format!("<{}@telltale>", n.id)));
        for a in to {
            let mb: Mailbox = a.parse().map_err(|_| Failed {
                message: format!("{a:?} is not an email address"),
                retryable: false,
            })?;
            m = m.to(mb);
        }
        let body = MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(header::ContentType::TEXT_PLAIN)
                    .body(text_body(n, links)),
            )
            .singlepart(
                SinglePart::builder()
                    .header(header::ContentType::TEXT_HTML)
                    .body(html_body(n, links)),
            );
        let msg = m.multipart(body).map_err(|e| Failed {
            message: format!("building the message: {e}"),
            retryable: false,
        })?;
        self.transport
            .send(msg)
            .await
            .map(|_| ())
            .map_err(|e| Failed {
                retryable: !e.is_permanent(),
                message: format!("SMTP {}: {}", self.describe, http::source_chain(&e)),
            })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where links in notifications point.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// Grafana (or any dashboard) base URL; alarms link to it.
    pub dashboard: String,
    /// This alerting instance's URL (generatorURL for Alertmanager).
    pub alerting: String,
}

/// `[FIRING] name: 2 objects` / `[RESOLVED] name: ...`.
pub fn subject(n: &Notification) -> String {
    let tag = match n.kind {
        Kind::Firing => "[FIRING]",
        Kind::Resolved => "[RESOLVED]",
    };
    let what = match n.alarms.as_slice() {
        [one] => object(one),
        many => format!("{} objects", many.len()),
    };
    format!("{tag} {}: {what}", n.rule)
}

/// The object an alarm is about: its labels other than alertname and severity.
fn object(a: &Alarm) -> String {
    let parts: Vec<String> = a
        .labels
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if parts.is_empty() {
        "(no labels)".into()
    } else {
        parts.join(", ")
    }
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn dashboard_link(n: &Notification, links: &Links) -> String {
    if links.dashboard.is_empty() {
        return String::new();
    }
    format!(
        "{}/d/telltale-alarms?var-alertname={}",
        links.dashboard.trim_end_matches('/'),
        n.rule
    )
}

/// The plain-text body.
pub fn text_body(n: &Notification, links: &Links) -> String {
    let mut s = String::new();
    let state = match n.kind {
        Kind::Firing => "is firing",
        Kind::Resolved => "has recovered",
    };
    s.push_str(&format!("Alarm {} {state}.\n", n.rule));
    if !n.description.is_empty() {
        s.push_str(&format!("{}\n", n.description));
    }
    if let Some(t) = &n.threshold {
        s.push_str(&format!("Threshold: {t}\n"));
    }
    s.push('\n');
    for a in &n.alarms {
        s.push_str(&format!("- {}\n", object(a)));
        s.push_str(&format!(
            "  value: {}\n",
            crate::template::go_float(a.value, None)
        ));
        s.push_str(&format!(
            "  since: {}\n",
            rfc3339(a.fired_at.unwrap_or(a.active_at))
        ));
        if let Some(r) = a.resolved_at.filter(|_| n.kind == Kind::Resolved) {
            s.push_str(&format!("  resolved: {}\n", rfc3339(r)));
        }
        for (k, v) in &a.annotations {
            if k != "threshold" && k != "description" {
                s.push_str(&format!("  {k}: {v}\n"));
            }
        }
    }
    let link = dashboard_link(n, links);
    if !link.is_empty() {
        s.push_str(&format!("\nDashboard: {link}\n"));
    }
    s.push_str(&format!("\nNotification {} at {}\n", n.id, rfc3339(n.at)));
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML body: the same facts as the text body, as a table.
pub fn html_body(n: &Notification, links: &Links) -> String {
    let (colour, state) = match n.kind {
        Kind::Firing => ("#c0392b", "firing"),
        Kind::Resolved => ("#27ae60", "resolved"),
    };
    let mut s = format!(
        "<html><body><h2 style=\"color:{colour}\">{} {state}</h2>",
        esc(&n.rule)
    );
    if !n.description.is_empty() {
        s.push_str(&format!("<p>{}</p>", esc(&n.description)));
    }
    if let Some(t) = &n.threshold {
        s.push_str(&format!("<p>Threshold: <b>{}</b></p>", esc(t)));
    }
    s.push_str("<table border=\"1\" cellpadding=\"4\" cellspacing=\"0\"><tr><th>object</th><th>value</th><th>since</th><th>details</th></tr>");
    for a in &n.alarms {
        let details: Vec<String> = a
            .annotations
            .iter()
            .filter(|(k, _)| k.as_str() != "threshold" && k.as_str() != "description")
            .map(|(k, v)| format!("{}: {}", esc(k), esc(v)))
            .collect();
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&object(a)),
            esc(&crate::template::go_float(a.value, None)),
            rfc3339(a.fired_at.unwrap_or(a.active_at)),
            details.join("<br>")
        ));
    }
    s.push_str("</table>");
    let link = dashboard_link(n, links);
    if !link.is_empty() {
        s.push_str(&format!("<p><a href=\"{0}\">{0}</a></p>", esc(&link)));
    }
    s.push_str("</body></html>");
    s
}

/// The webhook's JSON: status, the rule, and every alarm with its labels, annotations,
/// value and times (RFC 3339), plus the notification id for deduplication.
pub fn webhook_json(n: &Notification, links: &Links) -> serde_json::Value {
    serde_json::json!({
        "id": n.id,
        "status": match n.kind { Kind::Firing => "firing", Kind::Resolved => "resolved" },
        "repeat": n.repeat,
        "rule": n.rule,
        "group": n.group,
        "description": n.description,
        "threshold": n.threshold,
        "at": rfc3339(n.at),
        "dashboard": dashboard_link(n, links),
        "alarms": n.alarms.iter().map(|a| serde_json::json!({
            "labels": a.labels,
            "annotations": a.annotations,
            "value": a.value.is_finite().then_some(a.value),
            "valueText": crate::template::go_float(a.value, None),
            "activeAt": rfc3339(a.active_at),
            "firedAt": a.fired_at.map(rfc3339),
            "resolvedAt": a.resolved_at.map(rfc3339),
        })).collect::<Vec<_>>(),
    })
}

/// Alertmanager v2 alerts: firing ones end `resend_for` after `now` unless re-sent,
/// resolved ones end when they resolved.
pub fn alertmanager_json(
    alarms: &[Alarm],
    now: i64,
    resend_for: Duration,
    links: &Links,
) -> serde_json::Value {
    serde_json::Value::Array(
        alarms
            .iter()
            .map(|a| {
                let ends = a.resolved_at.unwrap_or(now + resend_for.as_millis() as i64);
                serde_json::json!({
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.fired_at.unwrap_or(a.active_at)),
                    "endsAt": rfc3339(ends),
                    "generatorURL": format!("{}/api/v1/alerts", links.alerting.trim_end_matches('/')),
                })
            })
            .collect(),
    )
}

/// Everything a delivery attempt needs.
#[derive(Debug, Clone)]
pub struct Senders {
    /// The mail server, if configured.
    pub smtp: Option<Smtp>,
    /// HTTP for webhooks and Alertmanager.
    pub http: http::Client,
    /// Links in messages.
    pub links: Links,
    /// How long Alertmanager keeps a firing alert without a re-send.
    pub resend_for: Duration,
}

impl Senders {
    /// One attempt to deliver `n` to `receiver` at `now`.
    pub async fn deliver(
        &self,
        receiver: &Receiver,
        n: &Notification,
        now: i64,
    ) -> Result<(), Failed> {
        let http_failed = |e: http::Error| Failed {
            retryable: e.retryable(),
            message: e.to_string(),
        };
        match receiver {
            Receiver::Email { to } => match &self.smtp {
                Some(smtp) => smtp.send(n, to, &self.links).await,
                // The mail server is a start-up setting: an email with none is dropped
                // (counted, logged) rather than held for a day on the chance of a restart
                // with one.
                None => Err(Failed {
                    message: "no mail server configured (--smtp-url)".into(),
                    retryable: false,
                }),
            },
            Receiver::Webhook { url, timeout } => {
                let body = serde_json::to_vec(&webhook_json(n, &self.links)).unwrap_or_default();
                self.http
                    .post(url, "application/json", body, *timeout)
                    .await
                    .map(|_| ())
                    .map_err(http_failed)
            }
            Receiver::Alertmanager { url, timeout } => {
                let body = serde_json::to_vec(&alertmanager_json(
                    &n.alarms,
                    now,
                    self.resend_for,
                    &self.links,
                ))
                .unwrap_or_default();
                self.http
                    .post(
                        &format!("{url}/api/v2/alerts"),
                        "application/json",
                        body,
                        *timeout,
                    )
                    .await
                    .map(|_| ())
                    .map_err(http_failed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn notification(kind: Kind) -> Notification {
        let labels: BTreeMap<String, String> = [
            ("alertname", "pod-cpu-high"),
            ("namespace", "shop"),
            ("pod", "web-1"),
            ("severity", "warning"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Notification {
            id: "00112233aabbccdd".into(),
            kind,
            repeat: 0,
            group: "policy/pod-cpu-high".into(),
            rule: "pod-cpu-high".into(),
            description: "Pod CPU above 80% of its limit".into(),
            threshold: Some("> 0.8".into()),
            at: 1_700_000_060_000,
            alarms: vec![Alarm {
                group: "policy/pod-cpu-high".into(),
                rule: "pod-cpu-high".into(),
                labels,
                annotations: BTreeMap::new(),
                state: crate::alarm::AlarmState::Firing,
                value: 0.93,
                active_at: 1_700_000_000_000,
                fired_at: Some(1_700_000_060_000),
                resolved_at: (kind == Kind::Resolved).then_some(1_700_000_600_000),
                keep_firing_since: None,
                breaches: 2,
                notified: 1,
                last_notified: None,
                recovery_owed: false,
            }],
            receivers: vec!["mail".into()],
        }
    }

    #[test]
    fn bodies_name_policy_object_value_threshold_time_and_link() {
        let links = Links {
            dashboard: "http://grafana:3000".into(),
            alerting: String::new(),
        };
        let n = notification(Kind::Firing);
        assert_eq!(
            subject(&n),
            "[FIRING] pod-cpu-high: namespace=shop, pod=web-1"
        );
        let text = text_body(&n, &links);
        for want in [
            "Alarm pod-cpu-high is firing.",
            "Pod CPU above 80% of its limit",
            "Threshold: > 0.8",
            "- namespace=shop, pod=web-1",
            "value: 0.93",
            "since: 2023-11-14T22:14:20Z",
            "Dashboard: http://grafana:3000/d/telltale-alarms?var-alertname=pod-cpu-high",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        let html = html_body(&n, &links);
        assert!(
            html.contains("<td>namespace=shop, pod=web-1</td><td>0.93</td>"),
            "{html}"
        );
        let r = notification(Kind::Resolved);
        assert!(subject(&r).starts_with("[RESOLVED] pod-cpu-high"));
        assert!(text_body(&r, &links).contains("resolved: 2023-11-14T22:23:20Z"));
    }

    #[tokio::test]
    async fn email_without_a_mail_server_is_refused_for_good() {
        let senders = Senders {
            smtp: None,
            http: http::Client::new(),
            links: Links {
                dashboard: String::new(),
                alerting: String::new(),
            },
            resend_for: Duration::from_secs(240),
        };
        let to = Receiver::Email {
            to: vec!["ops@example.com".into()],
        };
        let err = senders
            .deliver(&to, &notification(Kind::Firing), 0)
            .await
            .unwrap_err();
        assert!(!err.retryable);
        assert!(err.message.contains("--smtp-url"), "{}", err.message);
    }

    #[test]
    fn smtp_urls_are_checked() {
        for (url, says) in [
            ("mail.example.com", "no scheme"),
            ("http://mail.example.com", "scheme \"http\""),
            (
                "smtp://mail.example.com?tls=maybe",
                "unknown parameter \"tls=maybe\"",
            ),
            ("smtp://mail.example.com:x", "port \"x\""),
            ("smtp://", "no host"),
        ] {
            let e = Smtp::new(url, "a@b.c", None).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
        assert!(Smtp::new("smtp://h", "not an address", None)
            .unwrap_err()
            .to_string()
            .contains("--smtp-from"));
        let s = Smtp::new("smtps://u:p%40ss@mail.example.com", "a@b.c", None).unwrap();
        assert_eq!(s.describe, "mail.example.com:465 (Implicit)");
        let s = Smtp::new("smtp://mail.example.com:2525?tls=none", "a@b.c", None).unwrap();
        assert_eq!(s.describe, "mail.example.com:2525 (None)");
        assert_eq!(percent_decode("p%40ss%"), "p@ss%");
        assert_eq!(percent_decode("%é%4"), "%é%4");
    }

    #[test]
    fn alertmanager_alerts_end_when_resolved_or_after_the_resend_window() {
        let links = Links::default();
        let f = notification(Kind::Firing);
        let j = alertmanager_json(
            &f.alarms,
            1_700_000_060_000,
            Duration::from_secs(240),
            &links,
        );
        assert_eq!(j[0]["endsAt"], "2023-11-14T22:18:20Z");
        assert_eq!(j[0]["labels"]["pod"], "web-1");
        let r = notification(Kind::Resolved);
        let j = alertmanager_json(
            &r.alarms,
            1_700_000_900_000,
            Duration::from_secs(240),
            &links,
        );
        assert_eq!(j[0]["endsAt"], "2023-11-14T22:23:20Z");
    }
}
