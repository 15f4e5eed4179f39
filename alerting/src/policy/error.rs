//! What goes wrong loading `--policies` ([`Error`]), and the helpers that build errors
//! naming the file, the policy or rule, and the key at fault.
//!
//! It promises that every error a policy or rule file can cause names its file, and for a
//! file that parses, the policy or rule and the key.

use std::path::{Path, PathBuf};

/// A problem in a policy or rule file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file or directory cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid YAML of the expected shape (serde names the key and the position).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A policy or rule is invalid.
    #[error("{path}: {what}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// `policy "x"`, `group "g" rule "r"`, `receiver "x"`.
        what: String,
        /// The key at fault.
        key: &'static str,
        /// Why.
        message: String,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A file that is not valid YAML of the expected shape.
pub(super) fn parse_err(path: &Path, e: serde_yaml::Error) -> Error {
    Error::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// A policy, rule or receiver that is invalid at `key`.
pub(super) fn invalid(path: &Path, what: String, key: &'static str, message: String) -> Error {
    Error::Invalid {
        path: path.to_owned(),
        what,
        key,
        message,
    }
}
