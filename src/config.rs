//! Command line, environment and YAML config for every role.
//!
//! Precedence: a flag beats its `TELLTALE_<FLAG>` environment variable, which beats the key
//! of the same name in the `--config` YAML file, which beats the default shown by `--help`.
//! YAML keys are the flag names (`node-name: n1`); an unknown key is an error naming it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Deserialize;

/// Errors in the command line or config file; the process exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("--config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid YAML for this role, or has an unknown key.
    #[error("--config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde's message, naming the key and position.
        message: String,
    },
    /// A value is not acceptable.
    #[error("{key}: {message}")]
    Invalid {
        /// The flag or key.
        key: &'static str,
        /// Why.
        message: String,
    },
}

/// Telltale: monitoring, alarms and pay-as-you-go billing for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "telltale", version, about)]
pub struct Cli {
    /// The role to run.
    #[command(subcommand)]
    pub command: Command,
}

/// One subcommand per role.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Per-node agent: node and container metrics, served on /metrics.
    Collector(Box<CollectorArgs>),
    /// Central store: receives remote write (durable in a WAL before it answers).
    Aggregator(AggregatorArgs),
    /// Alarm policies and Prometheus rules evaluated against a query API; email, webhook
    /// and Alertmanager notifications.
    Alerting(AlertingArgs),
    /// Collector (this host, no Kubernetes), aggregator and alerting in one process: the
    /// first run on a laptop.
    Standalone(StandaloneArgs),
    /// Backfill Prometheus text or OpenMetrics files (with timestamps) into a data directory.
    Import(ImportArgs),
    /// Pay-as-you-go billing reports.
    #[command(subcommand)]
    Billing(BillingCommand),
}

/// `telltale billing` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BillingCommand {
    /// Usage and cost per group over a window, from a data directory or an aggregator.
    Report(ReportArgs),
}

/// `telltale billing report` arguments.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Read the Parquet files of this aggregator data directory directly (samples a
    /// running aggregator holds in its WAL and head are not included: use --url).
    #[arg(
        long,
        env = "TELLTALE_DATA_DIR",
        conflicts_with = "url",
        required_unless_present = "url"
    )]
    pub data_dir: Option<PathBuf>,

    /// Ask a running aggregator (`http://host:9201`).
    #[arg(long)]
    pub url: Option<String>,

    /// Window start: unix seconds or RFC 3339.
    #[arg(long)]
    pub start: String,

    /// Window end: unix seconds or RFC 3339.
    #[arg(long)]
    pub end: String,

    /// cluster, namespace, workload, pod or label:<name>.
    #[arg(long, default_value = "namespace")]
    pub by: String,

    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReportFormat,

    /// Price table (YAML) for --data-dir; docs/billing.md's example table without one.
    #[arg(long, env = "TELLTALE_PRICES")]
    pub prices: Option<PathBuf>,
}

/// `--format` of a report.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns with a totals row.
    Table,
    /// `group,cpu_core_seconds,memory_gib_seconds,gpu_seconds,cost`.
    Csv,
    /// What `GET /api/v1/billing` answers.
    Json,
    /// A Parquet file (to stdout: redirect it), the CSV's columns as decimal(38, 18).
    Parquet,
}

/// `telltale import` arguments.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Files to import: Prometheus text format (timestamps in ms) or OpenMetrics (ending
    /// in `# EOF`, timestamps in seconds).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// The aggregator's data directory.
    #[arg(long, env = "TELLTALE_DATA_DIR", default_value = "./telltale-data")]
    pub data_dir: PathBuf,
}

/// `telltale aggregator` flags. Every flag may also be set by `TELLTALE_<FLAG>` or in the
/// `--config` file under the flag's name.
#[derive(Debug, Clone, Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AggregatorArgs {
    /// YAML file with any of these flags as keys.
    #[arg(long, env = "TELLTALE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to serve the remote-write and query API, /metrics, /healthz and /readyz on.
    #[arg(long, env = "TELLTALE_LISTEN", default_value = "0.0.0.0:9201")]
    pub listen: SocketAddr,

    /// Directory of the WAL and the Parquet partitions.
    #[arg(long, env = "TELLTALE_DATA_DIR", default_value = "./telltale-data")]
    pub data_dir: PathBuf,

    /// How long samples are kept (e.g. 90d, 2w).
    #[arg(long, env = "TELLTALE_RETENTION", default_value = "90d", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub retention: Duration,

    /// YAML map of bearer token to the cluster names it may write; without it, every
    /// writer is accepted.
    #[arg(long, env = "TELLTALE_AUTH_TOKENS")]
    pub auth_tokens: Option<PathBuf>,

    /// Billing price table (YAML); used by billing.
    #[arg(long, env = "TELLTALE_PRICES")]
    pub prices: Option<PathBuf>,

    /// Write the in-memory head to Parquet at least this often.
    #[arg(long, env = "TELLTALE_FLUSH_INTERVAL", default_value = "15m", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,

    /// Write the head to Parquet when it holds this many samples.
    #[arg(long, env = "TELLTALE_FLUSH_SAMPLES", default_value = "5000000", value_parser = clap::value_parser!(u64).range(1..))]
    pub flush_samples: u64,
}

impl Default for AggregatorArgs {
    fn default() -> Self {
        let m = Cli::command().get_matches_from(["telltale", "aggregator"]);
        let (_, sub) = m.subcommand().expect("aggregator subcommand");
        let mut args = AggregatorArgs::from_arg_matches(sub).expect("defaults parse");
        args.config = None;
        args
    }
}

/// The aggregator's settings after layering flags, environment, file and defaults.
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Options for the aggregator library.
    pub opts: telltale_aggregator::Options,
}

/// Layers `cli` (whose sources `m` records) over the `--config` file and defaults.
pub fn aggregator(cli: AggregatorArgs, m: &ArgMatches) -> Result<AggregatorConfig, ConfigError> {
    let file: AggregatorArgs = load_file(cli.config.as_deref())?;
    macro_rules! pick {
        ($($field:ident),*) => {
            AggregatorArgs {
                config: cli.config.clone(),
                $($field: if explicit(m, stringify!($field)) { cli.$field.clone() } else { file.$field.clone() },)*
            }
        };
    }
    let a = pick!(
        listen,
        data_dir,
        retention,
        auth_tokens,
        prices,
        flush_interval,
        flush_samples
    );
    if let Some(p) = &a.auth_tokens {
        if !p.is_file() {
            return Err(ConfigError::Invalid {
                key: "auth-tokens",
                message: format!("{} is not a file", p.display()),
            });
        }
    }
    Ok(AggregatorConfig {
        listen: a.listen,
        opts: telltale_aggregator::Options {
            data_dir: a.data_dir,
            flush_interval: a.flush_interval,
            flush_samples: a.flush_samples as usize,
            clock: std::sync::Arc::new(telltale_model::time::SystemClock),
            retention: a.retention,
            auth_tokens: a.auth_tokens,
            prices: match &a.prices {
                Some(p) => telltale_aggregator::billing::prices::Prices::load(p).map_err(|e| {
                    ConfigError::Invalid {
                        key: "prices",
                        message: e.to_string(),
                    }
                })?,
                None => Default::default(),
            },
        },
    })
}

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
        let m = Cli::command().get_matches_from(["telltale", "alerting"]);
        let (_, sub) = m.subcommand().expect("alerting subcommand");
        let mut args = AlertingArgs::from_arg_matches(sub).expect("defaults parse");
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
pub fn alerting(cli: AlertingArgs, m: &ArgMatches) -> Result<AlertingConfig, ConfigError> {
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

/// `telltale standalone` flags: where things live and listen, each also settable by
/// `TELLTALE_<FLAG>`. Every other setting is the role's default, or the role's own
/// `TELLTALE_*` variable where one is set (`TELLTALE_RETENTION=30d`); `TELLTALE_CONFIG`
/// does not apply (the three roles' files differ).
#[derive(Debug, Clone, Args)]
pub struct StandaloneArgs {
    /// Samples (WAL, Parquet, billing) here; the collector's queue in `buffer/` and the
    /// alarm state in `alerting/` below it.
    #[arg(long, env = "TELLTALE_DATA_DIR", default_value = "./telltale-data")]
    pub data_dir: PathBuf,

    /// Alarm policies or Prometheus rule files: a file or a directory.
    #[arg(
        long,
        env = "TELLTALE_POLICIES",
        default_value = "examples/policies.yml"
    )]
    pub policies: PathBuf,

    /// Price table; when left at its default and the file does not exist, docs/billing.md's
    /// example table.
    #[arg(long, env = "TELLTALE_PRICES", default_value = "examples/prices.yml")]
    pub prices: PathBuf,

    /// The collector's `/metrics`.
    #[arg(
        long,
        env = "TELLTALE_COLLECTOR_LISTEN",
        default_value = "127.0.0.1:9101"
    )]
    pub collector_listen: SocketAddr,

    /// The aggregator: remote write and the Prometheus query API.
    #[arg(
        long,
        env = "TELLTALE_AGGREGATOR_LISTEN",
        default_value = "127.0.0.1:9201"
    )]
    pub aggregator_listen: SocketAddr,

    /// Alerting's API.
    #[arg(
        long,
        env = "TELLTALE_ALERTING_LISTEN",
        default_value = "127.0.0.1:9301"
    )]
    pub alerting_listen: SocketAddr,

    /// Collection interval.
    #[arg(long, env = "TELLTALE_INTERVAL", default_value = "15s")]
    pub interval: String,

    /// Mail server for alarm emails (as `telltale alerting --smtp-url`); without it emails
    /// are not sent and alarms are only listed.
    #[arg(long, env = "TELLTALE_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// Sender of alarm emails.
    #[arg(long, env = "TELLTALE_SMTP_FROM", default_value = "telltale@localhost")]
    pub smtp_from: String,

    /// File holding the SMTP password.
    #[arg(long, env = "TELLTALE_SMTP_PASSWORD_FILE")]
    pub smtp_password_file: Option<PathBuf>,

    /// Grafana's URL, for links in emails.
    #[arg(
        long,
        env = "TELLTALE_DASHBOARD_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    pub dashboard_url: String,
}

/// The three roles of `telltale standalone`, each configured as if run on its own.
#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    /// This host, no Kubernetes, shipping to the aggregator.
    pub collector: CollectorConfig,
    /// Data in `--data-dir`.
    pub aggregator: AggregatorConfig,
    /// Querying and writing to the aggregator.
    pub alerting: AlertingConfig,
}

/// Builds each role's configuration from the command line it would have, so every check
/// and default of the role applies unchanged. `m` records where `a`'s values came from.
pub fn standalone(a: &StandaloneArgs, m: &ArgMatches) -> Result<StandaloneConfig, ConfigError> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    // The others are told the aggregator's and alerting's addresses before they listen.
    for (key, addr) in [
        ("collector-listen", a.collector_listen),
        ("aggregator-listen", a.aggregator_listen),
        ("alerting-listen", a.alerting_listen),
    ] {
        if addr.port() == 0 {
            return Err(ConfigError::Invalid {
                key,
                message: "standalone needs a fixed port (the roles are told each other's)".into(),
            });
        }
    }
    // The others reach the aggregator on loopback when it listens on every address.
    let local = |addr: SocketAddr| match addr.ip().is_unspecified() {
        true => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        false => addr,
    };
    let aggregator_url = format!("http://{}", local(a.aggregator_listen));
    let mut aggregator = vec![
        "aggregator".to_owned(),
        "--listen".into(),
        a.aggregator_listen.to_string(),
        "--data-dir".into(),
        path(&a.data_dir),
    ];
    // The default names the repository's example, and docs/billing.md's table stands in
    // where it is missing; a file named by the user must exist.
    if a.prices.is_file() || explicit(m, "prices") {
        aggregator.extend(["--prices".into(), path(&a.prices)]);
    }
    let collector = vec![
        "collector".to_owned(),
        "--no-kube".into(),
        "--listen".into(),
        a.collector_listen.to_string(),
        "--interval".into(),
        a.interval.clone(),
        "--remote-write".into(),
        format!("{aggregator_url}/api/v1/write"),
        "--buffer-dir".into(),
        path(&a.data_dir.join("buffer")),
    ];
    let mut alerting = vec![
        "alerting".to_owned(),
        "--listen".into(),
        a.alerting_listen.to_string(),
        "--policies".into(),
        path(&a.policies),
        "--query-url".into(),
        aggregator_url.clone(),
        "--remote-write-url".into(),
        format!("{aggregator_url}/api/v1/write"),
        "--state-dir".into(),
        path(&a.data_dir.join("alerting")),
        "--external-url".into(),
        format!("http://{}", local(a.alerting_listen)),
        "--dashboard-url".into(),
        a.dashboard_url.clone(),
        "--smtp-from".into(),
        a.smtp_from.clone(),
    ];
    if let Some(url) = &a.smtp_url {
        alerting.extend(["--smtp-url".into(), url.clone()]);
    }
    if let Some(file) = &a.smtp_password_file {
        alerting.extend(["--smtp-password-file".into(), path(file)]);
    }
    let parse = |args: Vec<String>| -> Result<(Command, ArgMatches), ConfigError> {
        let invalid = |e: clap::Error| ConfigError::Invalid {
            key: "standalone",
            message: e.to_string().lines().next().unwrap_or_default().to_owned(),
        };
        let argv = std::iter::once("telltale".to_owned()).chain(args);
        // No role reads TELLTALE_CONFIG here; what standalone passes beats the
        // environment as any command line does.
        let role = argv.clone().nth(1).unwrap_or_default();
        let m = Cli::command()
            .mut_subcommand(role, |c| c.mut_args(|arg| arg.env(None)))
            .try_get_matches_from(argv)
            .map_err(invalid)?;
        let cli = Cli::from_arg_matches(&m).map_err(invalid)?;
        let sub = m.subcommand().map(|(_, s)| s.clone()).unwrap_or_default();
        Ok((cli.command, sub))
    };
    let mismatch = || ConfigError::Invalid {
        key: "standalone",
        message: "a role's command line parsed as another role".into(),
    };
    let collector = match parse(collector)? {
        (Command::Collector(c), m) => self::collector(*c, &m)?,
        _ => return Err(mismatch()),
    };
    let aggregator = match parse(aggregator)? {
        (Command::Aggregator(c), m) => self::aggregator(c, &m)?,
        _ => return Err(mismatch()),
    };
    let alerting = match parse(alerting)? {
        (Command::Alerting(c), m) => self::alerting(c, &m)?,
        _ => return Err(mismatch()),
    };
    Ok(StandaloneConfig {
        collector,
        aggregator,
        alerting,
    })
}

/// `telltale collector` flags. Every flag may also be set by `TELLTALE_<FLAG>` or in the
/// `--config` file under the flag's name.
#[derive(Debug, Clone, Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CollectorArgs {
    /// YAML file with any of these flags as keys.
    #[arg(long, env = "TELLTALE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to serve /metrics, /healthz and /readyz on.
    #[arg(long, env = "TELLTALE_LISTEN", default_value = "0.0.0.0:9101")]
    pub listen: SocketAddr,

    /// Collect one snapshot, print it in the text format to stdout, and exit.
    #[arg(long, env = "TELLTALE_ONCE")]
    pub once: bool,

    /// `node` label on every series. [default: $NODE_NAME, else the hostname]
    #[arg(long, env = "TELLTALE_NODE_NAME")]
    pub node_name: Option<String>,

    /// `cluster` label on every series.
    #[arg(long, env = "TELLTALE_CLUSTER", default_value = "default")]
    pub cluster: String,

    /// Where procfs is mounted (`/host/proc` in a container).
    #[arg(long, env = "TELLTALE_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,

    /// Where sysfs is mounted; cgroups are read under `<sys-root>/fs/cgroup`.
    #[arg(long, env = "TELLTALE_SYS_ROOT", default_value = "/sys")]
    pub sys_root: PathBuf,

    /// Where the host's root filesystem is mounted, for filesystem sizes (statfs of
    /// `<rootfs>/<mountpoint>`).
    #[arg(long, env = "TELLTALE_ROOTFS", default_value = "/")]
    pub rootfs: PathBuf,

    /// Collection interval; sample timestamps are aligned to it (e.g. 15s, 1m).
    #[arg(long, env = "TELLTALE_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub interval: Duration,

    /// Run without Kubernetes: node and raw cgroup metrics only, no pod names.
    #[arg(long, env = "TELLTALE_NO_KUBE")]
    pub no_kube: bool,

    /// Kubeconfig for the API server. [default: $KUBECONFIG, ~/.kube/config, or the
    /// in-cluster service account]
    #[arg(long, env = "TELLTALE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Also export cluster-wide `kube_*` state series (pods so far). Run it in exactly one
    /// replica.
    #[arg(long, env = "TELLTALE_CLUSTER_STATE")]
    pub cluster_state: bool,

    /// Pod annotations exported as `kube_pod_annotations` labels: keys, or prefixes ending
    /// in `*`, comma-separated.
    #[arg(
        long,
        env = "TELLTALE_POD_ANNOTATIONS_ALLOWLIST",
        default_value = "eks.tke.cloud.tencent.com/*"
    )]
    pub pod_annotations_allowlist: String,

    /// Prometheus remote-write 1.0 URL to ship every snapshot to; repeat for several
    /// destinations (each gets its own queue). Comma-separated in the environment.
    #[arg(long, env = "TELLTALE_REMOTE_WRITE", value_delimiter = ',')]
    pub remote_write: Vec<String>,

    /// File holding a bearer token for remote write; re-read when it changes.
    #[arg(long, env = "TELLTALE_REMOTE_WRITE_TOKEN_FILE")]
    pub remote_write_token_file: Option<PathBuf>,

    /// PEM CA bundle for the remote-write receivers' certificates. [default: the system's
    /// roots]
    #[arg(long, env = "TELLTALE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// PEM client certificate for mutual TLS with the receivers (with --tls-key).
    #[arg(long, env = "TELLTALE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "TELLTALE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Directory of the on-disk queues (one per destination).
    #[arg(long, env = "TELLTALE_BUFFER_DIR", default_value = "./telltale-buffer")]
    pub buffer_dir: PathBuf,

    /// Bytes each destination's queue may hold; beyond it the oldest segments are dropped
    /// and counted (e.g. 1GiB, 512MiB).
    #[arg(long, env = "TELLTALE_BUFFER_MAX_BYTES", default_value = "1GiB", value_parser = parse_bytes)]
    #[serde(deserialize_with = "bytes_from_yaml")]
    pub buffer_max_bytes: u64,

    /// Age beyond which queued samples are dropped and counted.
    #[arg(long, env = "TELLTALE_BUFFER_MAX_AGE", default_value = "72h", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub buffer_max_age: Duration,

    /// Longest time between fsyncs of the queue (what power loss can take).
    #[arg(long, env = "TELLTALE_BUFFER_FSYNC_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub buffer_fsync_interval: Duration,

    /// Samples per remote-write request at most.
    #[arg(long, env = "TELLTALE_REMOTE_WRITE_BATCH_SIZE", default_value = "2000", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub remote_write_batch_size: u64,

    /// Concurrent senders per destination (a series always uses the same one).
    #[arg(long, env = "TELLTALE_REMOTE_WRITE_SENDERS", default_value = "1", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub remote_write_senders: u64,

    /// Samples per second per destination at most, so that many nodes replaying a
    /// backlog at once do not flatten the receiver.
    #[arg(long, env = "TELLTALE_REMOTE_WRITE_MAX_SAMPLES_PER_SECOND", default_value = "20000", value_parser = clap::value_parser!(u64).range(1..))]
    pub remote_write_max_samples_per_second: u64,

    /// Timeout of one remote-write request.
    #[arg(long, env = "TELLTALE_REMOTE_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub remote_write_timeout: Duration,

    /// Longest wait between retries (they start at 100ms and double, with jitter).
    #[arg(long, env = "TELLTALE_REMOTE_WRITE_MAX_BACKOFF", default_value = "10s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub remote_write_max_backoff: Duration,
}

impl Default for CollectorArgs {
    fn default() -> Self {
        let m = Cli::command().get_matches_from(["telltale", "collector"]);
        let (_, sub) = m.subcommand().expect("collector subcommand");
        let mut args = CollectorArgs::from_arg_matches(sub).expect("defaults parse");
        args.config = None;
        args
    }
}

/// A byte size: a number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB, TiB).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (expected e.g. 1GiB, 512MiB, 1000000)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        u => {
            return Err(format!(
                "unknown unit {u:?} (use B, KB, MB, GB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let bytes = n * mult as f64;
    if bytes < 1.0 {
        return Err("must be at least 1 byte".into());
    }
    Ok(bytes as u64)
}

/// A size in YAML: a number of bytes, or a string with a unit.
fn bytes_from_yaml<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Number(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Number(n) => Ok(n),
        Size::Text(t) => parse_bytes(&t).map_err(serde::de::Error::custom),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 15s, 1m)"))?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

/// The collector's settings after layering flags, environment, file and defaults.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// `--once`.
    pub once: bool,
    opts: telltale_collector::Options,
}

impl CollectorConfig {
    /// Options for the collector library.
    pub fn options(&self) -> telltale_collector::Options {
        self.opts.clone()
    }
}

/// True when `id` was given on the command line or in the environment.
fn explicit(m: &ArgMatches, id: &str) -> bool {
    matches!(
        m.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

fn load_file<T: for<'de> Deserialize<'de> + Default>(
    path: Option<&Path>,
) -> Result<T, ConfigError> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Layers `cli` (whose sources `m` records) over the `--config` file and defaults.
pub fn collector(cli: CollectorArgs, m: &ArgMatches) -> Result<CollectorConfig, ConfigError> {
    let file: CollectorArgs = load_file(cli.config.as_deref())?;
    macro_rules! pick {
        ($($field:ident),*) => {
            CollectorArgs {
                config: cli.config.clone(),
                $($field: if explicit(m, stringify!($field)) { cli.$field.clone() } else { file.$field.clone() },)*
            }
        };
    }
    let a = pick!(
        listen,
        once,
        node_name,
        cluster,
        proc_root,
        sys_root,
        rootfs,
        interval,
        no_kube,
        kubeconfig,
        cluster_state,
        pod_annotations_allowlist,
        remote_write,
        remote_write_token_file,
        tls_ca,
        tls_cert,
        tls_key,
        buffer_dir,
        buffer_max_bytes,
        buffer_max_age,
        buffer_fsync_interval,
        remote_write_batch_size,
        remote_write_senders,
        remote_write_max_samples_per_second,
        remote_write_timeout,
        remote_write_max_backoff
    );
    if a.cluster_state && a.no_kube {
        return Err(ConfigError::Invalid {
            key: "cluster-state",
            message: "needs Kubernetes; it cannot be combined with --no-kube".into(),
        });
    }
    let node_name = match a.node_name.filter(|n| !n.is_empty()) {
        Some(n) => n,
        None => match std::env::var("NODE_NAME") {
            Ok(n) if !n.is_empty() => n,
            _ => rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
        },
    };
    if a.cluster.is_empty() {
        return Err(ConfigError::Invalid {
            key: "cluster",
            message: "must not be empty".into(),
        });
    }
    if !a.proc_root.join("stat").is_file() {
        return Err(ConfigError::Invalid {
            key: "proc-root",
            message: format!(
                "{} has no stat file; expected a procfs mount such as /proc",
                a.proc_root.display()
            ),
        });
    }
    if let Some(bad) = a
        .remote_write
        .iter()
        .position(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return Err(ConfigError::Invalid {
            key: "remote-write",
            message: format!("URL number {} must start with http:// or https://", bad + 1),
        });
    }
    if a.tls_cert.is_some() != a.tls_key.is_some() {
        return Err(ConfigError::Invalid {
            key: "tls-cert",
            message: "--tls-cert and --tls-key must be given together".into(),
        });
    }
    if a.interval.is_zero() {
        return Err(ConfigError::Invalid {
            key: "interval",
            message: "must be more than zero".into(),
        });
    }
    Ok(CollectorConfig {
        listen: a.listen,
        once: a.once,
        opts: telltale_collector::Options {
            cluster: a.cluster,
            node_name,
            proc_root: a.proc_root,
            sys_root: a.sys_root,
            rootfs: a.rootfs,
            interval: a.interval,
            no_kube: a.no_kube,
            kubeconfig: a.kubeconfig,
            cluster_state: a.cluster_state,
            pod_annotations_allowlist: a.pod_annotations_allowlist,
            remote: telltale_collector::ship::Config {
                urls: a.remote_write,
                token_file: a.remote_write_token_file,
                tls: telltale_collector::ship::send::TlsFiles {
                    ca: a.tls_ca,
                    cert: a.tls_cert,
                    key: a.tls_key,
                },
                buffer_dir: a.buffer_dir,
                max_bytes: a.buffer_max_bytes,
                max_age: a.buffer_max_age,
                fsync_every: a.buffer_fsync_interval,
                batch_size: a.remote_write_batch_size as usize,
                senders: a.remote_write_senders as usize,
                max_rate: a.remote_write_max_samples_per_second,
                timeout: a.remote_write_timeout,
                max_backoff: a.remote_write_max_backoff,
                ..Default::default()
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> (CollectorArgs, ArgMatches) {
        let m = Cli::command().try_get_matches_from(argv).unwrap();
        let sub = m.subcommand_matches("collector").unwrap().clone();
        (CollectorArgs::from_arg_matches(&sub).unwrap(), sub)
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "cluster: from-file\ninterval: 30s\nnode-name: n-file\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let (cli, m) = parse(&[
            "telltale",
            "collector",
            "--config",
            f,
            "--cluster",
            "from-flag",
        ]);
        let cfg = collector(cli, &m).unwrap();
        let o = cfg.options();
        assert_eq!(o.cluster, "from-flag");
        assert_eq!(o.interval, Duration::from_secs(30));
        assert_eq!(o.node_name, "n-file");
        assert_eq!(o.proc_root, PathBuf::from("/proc"));
        assert_eq!(cfg.listen, "0.0.0.0:9101".parse().unwrap());
    }

    #[test]
    fn unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "clutser: x\n").unwrap();
        let (cli, m) = parse(&["telltale", "collector", "--config", file.to_str().unwrap()]);
        let err = collector(cli, &m).unwrap_err().to_string();
        assert!(err.contains("unknown field `clutser`"), "{err}");
        assert!(err.contains("c.yaml"), "{err}");
    }

    #[test]
    fn bad_value_in_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "interval: soon\n").unwrap();
        let (cli, m) = parse(&["telltale", "collector", "--config", file.to_str().unwrap()]);
        let err = collector(cli, &m).unwrap_err().to_string();
        assert!(err.contains("interval"), "{err}");
    }

    #[test]
    fn remote_write_settings_are_checked_and_sizes_parse() {
        let (cli, m) = parse(&["telltale", "collector", "--remote-write", "ftp://x"]);
        let err = collector(cli, &m).unwrap_err().to_string();
        assert!(
            err.contains("remote-write") && err.contains("http://"),
            "{err}"
        );
        let (cli, m) = parse(&["telltale", "collector", "--tls-cert", "/c.pem"]);
        let err = collector(cli, &m).unwrap_err().to_string();
        assert!(err.contains("--tls-key"), "{err}");
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("40KiB"), Ok(40 << 10));
        assert_eq!(parse_bytes("1.5MB"), Ok(1_500_000));
        assert_eq!(parse_bytes("123"), Ok(123));
        assert!(parse_bytes("12 parsecs").unwrap_err().contains("unit"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "remote-write: [\"http://a/api/v1/write\", \"https://b/w\"]\nbuffer-max-bytes: 64MiB\n",
        )
        .unwrap();
        let (cli, m) = parse(&["telltale", "collector", "--config", file.to_str().unwrap()]);
        let o = collector(cli, &m).unwrap().options();
        assert_eq!(o.remote.urls.len(), 2);
        assert_eq!(o.remote.max_bytes, 64 << 20);
        assert_eq!(o.remote.batch_size, 2000);
    }

    #[test]
    fn defaults_match_help() {
        let d = CollectorArgs::default();
        assert_eq!(d.listen, "0.0.0.0:9101".parse().unwrap());
        assert_eq!(d.interval, Duration::from_secs(15));
        assert_eq!(d.cluster, "default");
        let help = Cli::command()
            .find_subcommand_mut("collector")
            .unwrap()
            .render_long_help()
            .to_string();
        for want in [
            "[default: 0.0.0.0:9101]",
            "[default: 15s]",
            "[default: /proc]",
            "[default: /sys]",
            "[default: default]",
            "TELLTALE_NODE_NAME",
        ] {
            assert!(help.contains(want), "help lacks {want}:\n{help}");
        }
    }
}
