//! `telltale standalone`: the collector (this host, no Kubernetes), the aggregator and
//! alerting in one process, each configured from the command line it would have been
//! given on its own, so every check and default of each role applies unchanged.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{ArgMatches, Args, FromArgMatches};
use tokio_util::sync::CancellationToken;

use crate::aggregator::AggregatorConfig;
use crate::alerting::AlertingConfig;
use crate::collector::CollectorConfig;
use crate::serve::serve;
use crate::settings::{explicit, ConfigError, Failure};

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
pub fn config(a: &StandaloneArgs, m: &ArgMatches) -> Result<StandaloneConfig, ConfigError> {
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
    let collector = parse_role("collector", collector)
        .and_then(|(args, m)| crate::collector::config(args, &m))?;
    let aggregator = parse_role("aggregator", aggregator)
        .and_then(|(args, m)| crate::aggregator::config(args, &m))?;
    let alerting =
        parse_role("alerting", alerting).and_then(|(args, m)| crate::alerting::config(args, &m))?;
    Ok(StandaloneConfig {
        collector,
        aggregator,
        alerting,
    })
}

/// Parses a role's command line (its first word is the role) as that role would, except
/// that no `TELLTALE_*` variable of the role applies: what standalone passes beats the
/// environment as any command line does.
fn parse_role<A: Args + FromArgMatches>(
    role: &'static str,
    argv: Vec<String>,
) -> Result<(A, ArgMatches), ConfigError> {
    let invalid = |e: clap::Error| ConfigError::Invalid {
        key: "standalone",
        message: e.to_string().lines().next().unwrap_or_default().to_owned(),
    };
    let m = A::augment_args(clap::Command::new(role))
        .mut_args(|arg| arg.env(None))
        .try_get_matches_from(argv)
        .map_err(invalid)?;
    let args = A::from_arg_matches(&m).map_err(invalid)?;
    Ok((args, m))
}

/// `telltale standalone`: the aggregator first, then the collector shipping to it and
/// alerting querying it, on one runtime; the URLs on stdout once all three listen. On
/// SIGTERM or Ctrl-C the collector and alerting stop first, then the aggregator flushes.
/// A role that fails stops the others.
pub fn run(args: StandaloneArgs, m: &ArgMatches) -> Result<(), Failure> {
    use tokio::sync::oneshot;
    let cfg = config(&args, m).map_err(Failure::Usage)?;
    serve(|cancel| async move {
        let aggregator_cancel = CancellationToken::new();
        let (aggregator_up, aggregator_listening) = oneshot::channel();
        let aggregator = role(
            "aggregator",
            &cancel,
            telltale_aggregator::run(
                cfg.aggregator.opts,
                cfg.aggregator.listen,
                aggregator_cancel.clone(),
                |a| {
                    let _ = aggregator_up.send(a);
                },
            ),
        );
        let others = async {
            let Ok(aggregator_addr) = aggregator_listening.await else {
                return Ok(());
            };
            let (collector_up, collector_listening) = oneshot::channel();
            let (alerting_up, alerting_listening) = oneshot::channel();
            let collector = role(
                "collector",
                &cancel,
                telltale_collector::run(
                    cfg.collector.options(),
                    cfg.collector.listen,
                    cancel.clone(),
                    |a| {
                        let _ = collector_up.send(a);
                    },
                ),
            );
            let alerting = role(
                "alerting",
                &cancel,
                telltale_alerting::run(
                    cfg.alerting.opts,
                    cfg.alerting.listen,
                    cancel.clone(),
                    |a| {
                        let _ = alerting_up.send(a);
                    },
                ),
            );
            let urls = async {
                if let (Ok(c), Ok(l)) = (collector_listening.await, alerting_listening.await) {
                    print_urls(&args.data_dir, c, aggregator_addr, l);
                }
            };
            let (c, l, ()) = tokio::join!(collector, alerting, urls);
            aggregator_cancel.cancel();
            c.and(l)
        };
        let (a, o) = tokio::join!(aggregator, others);
        a.and(o)
    })
}

/// A role of `telltale standalone` that stopped with an error.
#[derive(Debug, thiserror::Error)]
#[error("{role}: {message}")]
struct RoleFailed {
    role: &'static str,
    message: String,
}

/// Runs one role; its failure cancels the others.
async fn role<E: std::fmt::Display>(
    name: &'static str,
    cancel: &CancellationToken,
    run: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), RoleFailed> {
    let result = run.await.map_err(|e| RoleFailed {
        role: name,
        message: e.to_string(),
    });
    if result.is_err() {
        cancel.cancel();
    }
    result
}

fn print_urls(
    data_dir: &std::path::Path,
    collector: std::net::SocketAddr,
    aggregator: std::net::SocketAddr,
    alerting: std::net::SocketAddr,
) {
    println!(
        "Telltale is running (Ctrl-C stops it; data in {}):",
        data_dir.display()
    );
    println!("  this host's metrics      http://{collector}/metrics");
    println!("  Prometheus query API     http://{aggregator}  (Grafana: a Prometheus data source with this URL)");
    println!("  try a query              http://{aggregator}/api/v1/query?query=node_load1");
    println!("  alarms                   http://{alerting}/api/v1/alerts");
    println!(
        "  bill of the last hour    telltale billing report --url http://{aggregator} --start $(date -d -1hour +%s) --end $(date +%s)"
    );
}
