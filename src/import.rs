//! `telltale import`: Prometheus text or OpenMetrics files (with timestamps) into an
//! aggregator's data directory.

use std::path::PathBuf;

use clap::Args;

use crate::settings::{ConfigError, Failure};

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

/// `telltale import`: a progress bar on a terminal, a summary at the end; exit 1 when some
/// lines were refused.
pub fn run(args: ImportArgs) -> Result<(), Failure> {
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
        "imported {} samples into {} files under {}; rejected {}; rolled up {} days",
        summary.imported,
        summary.files.len(),
        telltale_aggregator::store::layout::days_dir(&args.data_dir).display(),
        summary.rejected,
        summary.rolled_up
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
