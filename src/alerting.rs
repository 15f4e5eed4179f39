//! `telltale alerting`: its flags, their layering into alerting's options (policies
//! checked here, so a bad file exits 2 naming it), and running it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args};
use serde::Deserialize;

use crate::serve::serve;
use crate::settings::{defaults, explicit, load_file, parse_duration, ConfigError, Failure};

/// `telltale alerting` flags. Every flag may also be set by `TELLTALE_<FLAG>` or in the
/// `--config` file under the flag's name.
#[derive(Debug, Clone, Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AlertingArgs {
    /// YAML file with any of these flags as keys.
    #[arg(long, env = "TELLTALE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to serve /api/v1/alerts, /api/v1/history, /metrics and /healthz on.
    #[arg(long, env = "TELLTALE_LISTEN", default_value = "0.0.0.0:9301")]
    pub listen: SocketAddr,

    /// Telltale policy files and Prometheus rule files: a file, or a directory of
    /// `*.yml`/`*.yaml` (re-read when they change).
    #[arg(long, env = "TELLTALE_POLICIES")]
    pub policies: Option<PathBuf>,

    /// Any Prometheus-compatible query API (the aggregator, Prometheus).
    #[arg(
        long,
        env = "TELLTALE_QUERY_URL",
        default_value = "http://127.0.0.1:9201"
    )]
    pub query_url: String,

    /// Alarm state, the notification outbox and the history.
    #[arg(
        long,
        env = "TELLTALE_STATE_DIR",
        default_value = "./telltale-alerting"
    )]
    pub state_dir: PathBuf,

    /// Mail server: `smtp[s]://[user[:pass]@]host[:port]?tls=starttls|implicit|none`.
    #[arg(long, env = "TELLTALE_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// Sender address of alarm emails.
    #[arg(long, env = "TELLTALE_SMTP_FROM", default_value = "telltale@localhost")]
    pub smtp_from: String,

    /// File holding the SMTP password (overrides one in --smtp-url).
    #[arg(long, env = "TELLTALE_SMTP_PASSWORD_FILE")]
    pub smtp_password_file: Option<PathBuf>,

    /// Grafana's URL; notifications link to the alarms dashboard there.
    #[arg(
        long,
        env = "TELLTALE_DASHBOARD_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    pub dashboard_url: String,

    /// This service's URL as others reach it (Alertmanager's generatorURL).
    #[arg(
        long,
        env = "TELLTALE_EXTERNAL_URL",
        default_value = "http://127.0.0.1:9301"
    )]
    pub external_url: String,

    /// Timeout of one query.
    #[arg(long, env = "TELLTALE_QUERY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,

    /// How often the policy files are checked for changes.
    #[arg(long, env = "TELLTALE_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,

    /// Remote-write URL for recording rules' results and the ALERTS and ALERTS_FOR_STATE
    /// series (e.g. http://127.0.0.1:9201/api/v1/write); recording rules are skipped
    /// without it.
    #[arg(long, env = "TELLTALE_REMOTE_WRITE_URL")]
    pub remote_write_url: Option<String>,
}

impl Default for AlertingArgs {
    fn default() -> Self {
        let mut args: AlertingArgs = defaults("alerting");
        args.config = None;
        args
    }
}

/// Alerting's settings after layering flags, environment, file and defaults.
#[derive(Debug, Clone)]
pub struct AlertingConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Options for the alerting library.
    pub opts: telltale_alerting::Options,
}

/// Layers `cli` (whose sources `m` records) over the `--config` file and defaults.
pub fn config(cli: AlertingArgs, m: &ArgMatches) -> Result<AlertingConfig, ConfigError> {
    let file: AlertingArgs = load_file(cli.config.as_deref())?;
    macro_rules! pick {
        ($($field:ident),*) => {
            AlertingArgs {
                config: cli.config.clone(),
                $($field: if explicit(m, stringify!($field)) { cli.$field.clone() } else { file.$field.clone() },)*
            }
        };
    }
    let a = pick!(
        listen,
        policies,
        query_url,
        state_dir,
        smtp_url,
        smtp_from,
        smtp_password_file,
        dashboard_url,
        external_url,
        query_timeout,
        reload_interval,
        remote_write_url
    );
    let policies = a.policies.ok_or(ConfigError::Invalid {
        key: "policies",
        message: "required: a policy or rule file, or a directory of them".into(),
    })?;
    if !policies.exists() {
        return Err(ConfigError::Invalid {
            key: "policies",
            message: format!("{} does not exist", policies.display()),
        });
    }
    // Checked here so a bad policy file is a configuration error (exit 2), named.
    telltale_alerting::policy::Rules::load(&policies).map_err(|e| ConfigError::Invalid {
        key: "policies",
        message: e.to_string(),
    })?;
    if !(a.query_url.starts_with("http://") || a.query_url.starts_with("https://")) {
        return Err(ConfigError::Invalid {
            key: "query-url",
            message: format!("{:?} is not an http(s) URL", a.query_url),
        });
    }
    let smtp = match &a.smtp_url {
        Some(url) => Some(
            telltale_alerting::notify::Smtp::new(
                url,
                &a.smtp_from,
                a.smtp_password_file.as_deref(),
            )
            .map_err(|e| ConfigError::Invalid {
                key: "smtp-url",
                message: e.to_string(),
            })?,
        ),
        None => None,
    };
    Ok(AlertingConfig {
        listen: a.listen,
        opts: telltale_alerting::Options {
            policies,
            query_url: a.query_url,
            state_dir: a.state_dir,
            smtp,
            links: telltale_alerting::notify::Links {
                dashboard: a.dashboard_url,
                alerting: a.external_url,
            },
            clock: std::sync::Arc::new(telltale_model::time::SystemClock),
            query_timeout: a.query_timeout,
            reload_interval: a.reload_interval,
            remote_write: a.remote_write_url,
        },
    })
}

/// Runs alerting until SIGTERM or Ctrl-C.
pub fn run(args: AlertingArgs, m: &ArgMatches) -> Result<(), Failure> {
    let cfg = config(args, m).map_err(Failure::Usage)?;
    serve(|cancel| telltale_alerting::run(cfg.opts, cfg.listen, cancel, |_| {}))
}
