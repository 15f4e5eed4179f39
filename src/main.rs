//! The `telltale` binary: parses the command line and wires up one role per subcommand.
//! Everything else lives in the role crates.

mod config;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use tokio_util::sync::CancellationToken;

use config::{Cli, Command, ConfigError};

fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let hint = env_hint(&e);
            let _ = e.print();
            if let Some(hint) = hint {
                eprintln!("{hint}");
            }
            std::process::exit(e.exit_code());
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging();
    match run(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("telltale: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            tracing::error!(error = %e, "telltale stopped");
            eprintln!("telltale: {e}");
            ExitCode::from(1)
        }
    }
}

/// For an invalid value that came from a `TELLTALE_*` variable rather than the command
/// line, names the variable (clap's message names only the flag).
fn env_hint(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) else {
        return None;
    };
    let flag = arg.split_whitespace().next()?.trim_start_matches("--");
    let var = format!("TELLTALE_{}", flag.to_uppercase().replace('-', "_"));
    let from_env = std::env::var(&var).is_ok_and(|v| &v == value);
    let on_command_line =
        std::env::args().any(|a| a == format!("--{flag}") || a.starts_with(&format!("--{flag}=")));
    (from_env && !on_command_line)
        .then(|| format!("note: the value came from the environment variable {var}"))
}

enum Failure {
    Usage(ConfigError),
    Runtime(Box<dyn std::error::Error>),
}

fn run(cli: Cli, matches: &clap::ArgMatches) -> Result<(), Failure> {
    let sub = matches
        .subcommand()
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    match cli.command {
        Command::Collector(args) => {
            let cfg = config::collector(*args, &sub).map_err(Failure::Usage)?;
            let opts = cfg.options();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::Runtime(e.into()))?;
            if cfg.once {
                let snap = rt
                    .block_on(telltale_collector::once(&opts))
                    .map_err(|e| Failure::Runtime(e.into()))?;
                use std::io::Write as _;
                std::io::stdout()
                    .write_all(&snap.text)
                    .map_err(|e| Failure::Runtime(e.into()))?;
                return Ok(());
            }
            rt.block_on(async {
                let cancel = CancellationToken::new();
                tokio::spawn(stop_on_signal(cancel.clone()));
                telltale_collector::run(opts, cfg.listen, cancel, |_| {}).await
            })
            .map_err(|e| Failure::Runtime(e.into()))
        }
        Command::Alerting(args) => {
            let cfg = config::alerting(args, &sub).map_err(Failure::Usage)?;
            serve(|cancel| telltale_alerting::run(cfg.opts, cfg.listen, cancel, |_| {}))
        }
        Command::Standalone(args) => standalone(args, &sub),
        Command::Import(args) => import(args),
        Command::Billing(config::BillingCommand::Report(args)) => billing_report(args),
        Command::Aggregator(args) => {
            let cfg = config::aggregator(args, &sub).map_err(Failure::Usage)?;
            // Ingest decodes and validates on every core; the WAL has its own thread.
            serve(|cancel| telltale_aggregator::run(cfg.opts, cfg.listen, cancel, |_| {}))
        }
    }
}

/// `telltale standalone`: the aggregator first, then the collector shipping to it and
/// alerting querying it, on one runtime; the URLs on stdout once all three listen. On
/// SIGTERM or Ctrl-C the collector and alerting stop first, then the aggregator flushes.
/// A role that fails stops the others.
fn standalone(args: config::StandaloneArgs, m: &clap::ArgMatches) -> Result<(), Failure> {
    use tokio::sync::oneshot;
    let cfg = config::standalone(&args, m).map_err(Failure::Usage)?;
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

/// `telltale billing report`: from the files of a data directory, or from an aggregator's
/// `/api/v1/billing`.
fn billing_report(args: config::ReportArgs) -> Result<(), Failure> {
    use telltale_aggregator::billing;
    let time = |key: &'static str, v: &str| {
        telltale_model::prom::parse_time(v).ok_or(Failure::Usage(ConfigError::Invalid {
            key,
            message: format!("{v:?} is not a time (unix seconds or RFC 3339)"),
        }))
    };
    let (start, end) = (time("start", &args.start)?, time("end", &args.end)?);
    if end <= start {
        return Err(Failure::Usage(ConfigError::Invalid {
            key: "end",
            message: "must be after --start".into(),
        }));
    }
    let by: billing::settle::By = args
        .by
        .parse()
        .map_err(|message| Failure::Usage(ConfigError::Invalid { key: "by", message }))?;
    let report = match (&args.data_dir, &args.url) {
        (Some(dir), None) => {
            let prices = match &args.prices {
                Some(p) => billing::prices::Prices::load(p).map_err(|e| {
                    Failure::Usage(ConfigError::Invalid {
                        key: "prices",
                        message: e.to_string(),
                    })
                })?,
                None => Default::default(),
            };
            let now = telltale_model::time::to_millis(std::time::SystemTime::now());
            let frontier = billing::saved_frontier(dir);
            billing::report_of(dir, &prices, frontier, None, (start, end), now, &by)
                .map_err(|e| Failure::Runtime(e.into()))?
        }
        (None, Some(url)) => {
            let url = format!("{}/api/v1/billing", url.trim_end_matches('/'));
            let json: serde_json::Value = ureq::get(&url)
                .query("start", &args.start)
                .query("end", &args.end)
                .query("by", &args.by)
                .call()
                .map_err(|e| Failure::Runtime(format!("{url}: {e}").into()))?
                .into_string()
                .map_err(|e| Failure::Runtime(format!("{url}: {e}").into()))
                .and_then(|body| {
                    serde_json::from_str(&body)
                        .map_err(|e| Failure::Runtime(format!("{url}: {e}").into()))
                })?;
            billing::Report::from_json(&json)
                .ok_or_else(|| Failure::Runtime(format!("{url}: not a billing report").into()))?
        }
        _ => {
            return Err(Failure::Usage(ConfigError::Invalid {
                key: "data-dir",
                message: "give exactly one of --data-dir and --url".into(),
            }))
        }
    };
    let text = match args.format {
        config::ReportFormat::Table => report.table(),
        config::ReportFormat::Csv => report.csv(),
        config::ReportFormat::Json => format!("{:#}\n", report.json(start, end, &args.by)),
        config::ReportFormat::Parquet => {
            use std::io::Write as _;
            let bytes = report.parquet().map_err(|e| Failure::Runtime(e.into()))?;
            return std::io::stdout()
                .write_all(&bytes)
                .map_err(|e| Failure::Runtime(e.into()));
        }
    };
    print!("{text}");
    Ok(())
}

/// `telltale import`: a progress bar on a terminal, a summary at the end; exit 1 when some
/// lines were refused.
fn import(args: config::ImportArgs) -> Result<(), Failure> {
    for f in &args.files {
        if !f.is_file() {
            return Err(Failure::Usage(ConfigError::Invalid {
                key: "FILE",
                message: format!("{} is not a readable file", f.display()),
            }));
        }
    }
    let total: u64 = args
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let summary = telltale_aggregator::import::import(&args.files, &args.data_dir, |n| bar.inc(n))
        .map_err(|e| Failure::Runtime(e.into()))?;
    bar.finish_and_clear();
    println!(
        "imported {} samples into {} files under {}; rejected {}",
        summary.imported,
        summary.files.len(),
        telltale_aggregator::store::layout::days_dir(&args.data_dir).display(),
        summary.rejected
    );
    for p in &summary.problems {
        println!("  rejected: {p}");
    }
    if summary.rejected > summary.problems.len() as u64 {
        println!(
            "  ... and {} more",
            summary.rejected - summary.problems.len() as u64
        );
    }
    if summary.rejected > 0 {
        return Err(Failure::Runtime(
            format!("{} lines could not be imported", summary.rejected).into(),
        ));
    }
    Ok(())
}

/// Runs a role's server on a runtime with a worker per core until SIGTERM or Ctrl-C.
fn serve<E, F>(run: impl FnOnce(CancellationToken) -> F) -> Result<(), Failure>
where
    E: std::error::Error + 'static,
    F: std::future::Future<Output = Result<(), E>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    rt.block_on(async {
        let cancel = CancellationToken::new();
        tokio::spawn(stop_on_signal(cancel.clone()));
        run(cancel).await
    })
    .map_err(|e| Failure::Runtime(e.into()))
}

/// Cancels `cancel` on SIGTERM or Ctrl-C.
async fn stop_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    cancel.cancel();
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // kube-client logs every failed request at ERROR; the collector reports Kubernetes
    // health itself, once per change, so the client's own lines are off unless asked for.
    let filter = EnvFilter::try_from_env("TELLTALE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,kube_client=off,kube_runtime=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
