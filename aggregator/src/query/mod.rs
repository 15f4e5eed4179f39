//! PromQL over the store, answered through the Prometheus HTTP API.
//!
//! A query is parsed by `promql-parser`, checked against what Prometheus 2.42 accepts
//! (`parse.rs`), and run by [`run`]: an instant query is evaluated once; a range query a
//! block of steps at a time, each block's selectors loaded through the [`Source`] trait
//! (the only way the engine reaches storage; the store's side is `store::select`), so
//! what a query holds at once does not grow with its range. [`eval`] evaluates with
//! Prometheus 2.42's semantics (closed lookback and range windows, stale markers,
//! extrapolated rates). [`plan`] decides whether a range query can be answered from the
//! 5-minute or 1-hour [`rollup`] buckets instead of raw samples. [`api`] maps it onto
//! the HTTP endpoints with Prometheus's JSON shapes and error types.
//!
//! This file only declares the modules and re-exports what the rest of the aggregator
//! names; every item lives in the file that owns it.
//!
//! Promise: on the same samples, every answer equals Prometheus 2.42's within float
//! rounding; `tests/promql.rs` holds us to it with a corpus run against both.

pub mod api;
mod error;
pub mod eval;
mod functions;
pub mod ingesters;
mod intern;
mod limits;
mod number;
mod parse;
pub mod plan;
pub mod rollup;
pub mod run;
mod source;
mod stats;
mod value;

pub use error::{Error, Result};
pub use limits::Limits;
pub use source::Source;
pub use value::{Labels, Series, NAME};

#[cfg(test)]
mod tests;
