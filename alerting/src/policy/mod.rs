//! The policy compiler: Telltale policy files and Prometheus rule files in `--policies`
//! (a file, or every `*.yml`/`*.yaml` in a directory), validated and compiled into
//! [`Rules`], the evaluation groups the service runs.
//!
//! A file with a top-level `groups:` key is a Prometheus rule file (`rule_file.rs`); any
//! other is a policy file (`policy_file.rs`) with policies, routes and receivers. Every
//! error names the file, the policy or rule, and the key: a bad file is refused whole, so
//! the caller can keep running what it loaded before (`load.rs`). This file is only the
//! wiring and re-exports.

mod check;
mod error;
mod load;
mod policy_file;
mod rule_file;
mod rules;
mod silence;

pub use check::prom_duration;
pub use error::{Error, Result};
pub use rules::{
    Condition, Group, Notify, Op, Receiver, Repeat, Route, Rule, Rules, GROUP_INTERVAL,
    HTTP_TIMEOUT,
};
pub use silence::Silence;

#[cfg(test)]
mod tests;
