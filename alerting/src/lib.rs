//! Telltale's alerting.
//!
//! It owns: loading Telltale alarm policies and Prometheus rule files ([`policy`],
//! [`builtin`], [`template`]), evaluating them against any Prometheus-compatible query
//! API ([`query`]) on their intervals ([`service`]), the alarm state machine ([`engine`])
//! over the alarms it keeps ([`alarm`]), their persistence ([`state_dir`]), and the
//! notification outbox ([`outbox`]) with its receivers: email, webhook, Alertmanager
//! ([`notify`]); [`server`] runs it all with its HTTP API. This file is only the wiring
//! and the re-exports the binary uses.
//!
//! It promises: an evaluation's transitions and the notifications they cause are on disk
//! together before anything is sent, so a restart neither loses a notification nor forgets
//! a recovery; an unreachable query API changes no alarm (no false recoveries) and raises
//! a self-alarm; an invalid policy reload keeps the previous policies running.

pub mod alarm;
pub mod builtin;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod options;
pub mod outbox;
pub mod policy;
pub mod query;
pub mod remote;
pub mod server;
pub mod service;
pub mod state_dir;
pub mod template;

pub use options::{Error, Options};
pub use server::run;
pub use service::{Alerting, Cycle};
