//! `telltale billing report`: usage and cost per group over a window, from the files of
//! a data directory or from an aggregator's `GET /api/v1/billing`.

use std::path::PathBuf;

use clap::Args;

use crate::settings::{ConfigError, Failure};

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

/// `telltale billing report`: from the files of a data directory, or from an aggregator's
/// `/api/v1/billing`.
pub fn report(args: ReportArgs) -> Result<(), Failure> {
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
    let by: billing::By = args
        .by
        .parse()
        .map_err(|message| Failure::Usage(ConfigError::Invalid { key: "by", message }))?;
    let report = match (&args.data_dir, &args.url) {
        (Some(dir), None) => {
            let prices = match &args.prices {
                Some(p) => billing::Prices::load(p).map_err(|e| {
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
        ReportFormat::Table => report.table(),
        ReportFormat::Csv => report.csv(),
        ReportFormat::Json => format!("{:#}\n", report.json(start, end, &args.by)),
        ReportFormat::Parquet => {
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
