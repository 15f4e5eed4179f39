//! The command line: one subcommand per role. Each subcommand's flags live with the code
//! that runs it.

use clap::{Parser, Subcommand};

use crate::aggregator::AggregatorArgs;
use crate::alerting::AlertingArgs;
use crate::billing::BillingCommand;
use crate::collector::CollectorArgs;
use crate::import::ImportArgs;
use crate::standalone::StandaloneArgs;

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
