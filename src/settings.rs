//! What every subcommand's settings share: how they are layered, how they fail, and the
//! parsers of sizes and durations.
//!
//! Precedence: a flag beats its `TELLTALE_<FLAG>` environment variable, which beats the key
//! of the same name in the `--config` YAML file, which beats the default shown by `--help`.
//! YAML keys are the flag names (`node-name: n1`); an unknown key is an error naming it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, FromArgMatches};
use serde::Deserialize;

/// Errors in the command line or config file; the process exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("--config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid YAML for this role, or has an unknown key.
    #[error("--config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde's message, naming the key and position.
        message: String,
    },
    /// A value is not acceptable.
    #[error("{key}: {message}")]
    Invalid {
        /// The flag or key.
        key: &'static str,
        /// Why.
        message: String,
    },
}

/// How a subcommand failed: a usage error exits 2, anything else 1.
pub enum Failure {
    /// The command line or a file it names is wrong.
    Usage(ConfigError),
    /// The role could not run or stopped with an error.
    Runtime(Box<dyn std::error::Error>),
}

/// A role's flags at their defaults (and the `TELLTALE_*` variables set), as `--help`
/// shows them.
pub fn defaults<A: Args + FromArgMatches>(role: &'static str) -> A {
    let m = A::augment_args(clap::Command::new(role)).get_matches_from([role]);
    A::from_arg_matches(&m).expect("the defaults parse")
}

/// True when `id` was given on the command line or in the environment.
pub fn explicit(m: &ArgMatches, id: &str) -> bool {
    matches!(
        m.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// The `--config` YAML file as a role's flags (the defaults without one).
pub fn load_file<T: for<'de> Deserialize<'de> + Default>(
    path: Option<&Path>,
) -> Result<T, ConfigError> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// A byte size: a number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB, TiB).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (expected e.g. 1GiB, 512MiB, 1000000)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        u => {
            return Err(format!(
                "unknown unit {u:?} (use B, KB, MB, GB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let bytes = n * mult as f64;
    if bytes < 1.0 {
        return Err("must be at least 1 byte".into());
    }
    Ok(bytes as u64)
}

/// A byte size as [`parse_bytes`] reads it, or `0` (for bounds where 0 turns a use off).
pub fn parse_bytes_or_zero(s: &str) -> Result<u64, String> {
    match s.trim() {
        "0" | "0B" => Ok(0),
        _ => parse_bytes(s),
    }
}

/// A size in YAML: a number of bytes, or a string with a unit.
pub fn bytes_from_yaml<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Number(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Number(n) => Ok(n),
        Size::Text(t) => parse_bytes(&t).map_err(serde::de::Error::custom),
    }
}

/// A duration flag (`15s`, `1m`, `90d`), more than zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 15s, 1m)"))?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}
