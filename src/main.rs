//! The `telltale` binary: parses the command line and runs one role per subcommand, one
//! file each (`collector.rs`, `aggregator.rs`, `alerting.rs`, `standalone.rs`,
//! `import.rs`, `billing.rs`). Everything else lives in the role crates.

mod aggregator;
mod alerting;
mod billing;
mod cli;
mod collector;
mod import;
mod serve;
mod settings;
mod standalone;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Command};
use settings::Failure;

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
    serve::init_logging();
    let sub = matches
        .subcommand()
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    let result = match cli.command {
        Command::Collector(args) => collector::run(*args, &sub),
        Command::Aggregator(args) => aggregator::run(args, &sub),
        Command::Alerting(args) => alerting::run(args, &sub),
        Command::Standalone(args) => standalone::run(args, &sub),
        Command::Import(args) => import::run(args),
        Command::Billing(billing::BillingCommand::Report(args)) => billing::report(args),
    };
    match result {
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
