//! What alerting is told ([`Options`]) and what stops it from running ([`Error`]).
//!
//! It owns the inputs of [`crate::service::Alerting::new`] and [`crate::server::run`] as
//! the binary fills them in; it promises that every error that stops alerting names its
//! cause (the policy file and key, the state directory, the listen address).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use telltale_model::time::Clock;

use crate::notify;
use crate::policy;
use crate::state_dir;

/// What alerting is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// Policy and rule files (a file or a directory).
    pub policies: PathBuf,
    /// The Prometheus-compatible query API.
    pub query_url: String,
    /// Where alarm state, the outbox and the history live.
    pub state_dir: PathBuf,
    /// The mail server, if any.
    pub smtp: Option<notify::Smtp>,
    /// Links placed in notifications.
    pub links: notify::Links,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Timeout of one query.
    pub query_timeout: Duration,
    /// How often the policy files are checked for changes.
    pub reload_interval: Duration,
    /// Where recording rules' results and `ALERTS`/`ALERTS_FOR_STATE` are written
    /// (remote write 1.0); nothing is written without it.
    pub remote_write: Option<String>,
}

/// Errors that stop alerting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policies do not load at start.
    #[error(transparent)]
    Policy(#[from] policy::Error),
    /// The state directory is unusable.
    #[error(transparent)]
    State(#[from] state_dir::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
    /// Registering own metrics failed.
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}
