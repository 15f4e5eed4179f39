//! Node metrics from procfs and statfs, under node_exporter's and cAdvisor's names.
//!
//! Every file is read relative to `--proc-root`; network and mount tables come from PID 1's
//! view (`<proc-root>/1/net/...`, `<proc-root>/1/mountinfo`) so that a containerised
//! collector with the host's /proc mounted reports the host's network namespace and mounts.
//! A file that cannot be read or parsed yields no series this cycle (never a partial value)
//! and one error for its source.
//!
//! `source` reads the files, `tables` parses them, `families` writes the families.

mod families;
mod source;
mod tables;

pub use source::NodeSource;

#[cfg(test)]
mod tests;
