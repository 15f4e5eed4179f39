//! What survives a restart, in `--state-dir` ([`StateDir`]):
//! - `state.json` ([`SavedState`]): every alarm and the outbox (notifications not yet
//!   delivered), written whole and atomically (temporary file, fsync, rename, directory
//!   fsync). An evaluation's transitions and the notifications they cause land in one
//!   write, so a crash either loses the evaluation entirely (it is redone) or keeps both.
//! - `history.jsonl`: one JSON line per transition and per delivery outcome, appended;
//!   at 16 MiB it becomes `history.1.jsonl` and a new file starts.
//!
//! A delivery is removed from the outbox (and the state rewritten) right after the
//! receiver accepted it; a crash in between sends it again on restart. That window is the
//! only way a notification is delivered twice; its id (email `Message-ID`, webhook
//! `id`) lets a receiver drop the copy.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::alarm::Notification;
use crate::engine::Engine;

/// Persistence errors. Writing state is retried at the next change; reading a corrupt
/// state file stops the start (an operator must look).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `state.json` is not what this version writes.
    #[error(
        "{path}: not a Telltale alerting state file: {message} (move it aside to start afresh)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// serde's message.
        message: String,
    },
}

/// One notification for one receiver, waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// `<notification id>/<receiver>`.
    pub id: String,
    /// The receiver's name.
    pub receiver: String,
    /// What to send.
    pub notification: Notification,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before this time (ms).
    pub next_attempt: i64,
    /// When it was queued (ms): what the give-up age counts from.
    pub queued_at: i64,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Alarm state and the outbox: what `state.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    /// Format version.
    pub version: u32,
    /// The alarms.
    pub engine: Engine,
    /// Undelivered notifications by delivery id.
    pub outbox: BTreeMap<String, Delivery>,
}

/// The state directory: `state.json` and the history files.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    history: Option<std::fs::File>,
}

const STATE: &str = "state.json";
const HISTORY: &str = "history.jsonl";
const HISTORY_MAX: u64 = 16 << 20;

impl StateDir {
    /// Opens (creating) `dir`.
    pub fn open(dir: &Path) -> Result<StateDir, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(StateDir {
            dir: dir.to_owned(),
            history: None,
        })
    }

    /// The saved state, or an empty one on first start.
    pub fn load(&self) -> Result<SavedState, Error> {
        let path = self.dir.join(STATE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SavedState {
                version: 1,
                ..SavedState::default()
            }),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Writes `state`; when this returns, it survives a crash or power loss.
    pub fn save(&self, state: &SavedState) -> Result<(), Error> {
        let path = self.dir.join(STATE);
        let tmp = self.dir.join("state.json.tmp");
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        let bytes = serde_json::to_vec(state).map_err(|e| Error::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }

    /// Appends history records (not fsynced: history is for people, state is the truth).
    pub fn record<T: Serialize>(&mut self, events: &[T]) {
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.append(events) {
            tracing::warn!(error = %e, "cannot append to the alarm history");
            self.history = None;
        }
    }

    fn append<T: Serialize>(&mut self, events: &[T]) -> std::io::Result<()> {
        let path = self.dir.join(HISTORY);
        if self.history.is_none() {
            self.history = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?,
            );
        }
        let mut buf = Vec::new();
        for e in events {
            serde_json::to_writer(&mut buf, e)?;
            buf.push(b'\n');
        }
        let f = self
            .history
            .as_mut()
            .ok_or_else(|| std::io::Error::other("closed"))?;
        f.write_all(&buf)?;
        if f.metadata()?.len() > HISTORY_MAX {
            std::fs::rename(&path, self.dir.join("history.1.jsonl"))?;
            self.history = None;
        }
        Ok(())
    }

    /// The last `limit` history records, oldest first.
    pub fn history(&self, limit: usize) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for name in [HISTORY, "history.1.jsonl"] {
            if out.len() >= limit {
                break;
            }
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let mut older: Vec<serde_json::Value> = text
                .lines()
                .rev()
                .filter_map(|l| serde_json::from_str(l).ok())
                .take(limit - out.len())
                .collect();
            out.append(&mut older);
        }
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_corrupt_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::open(dir.path()).unwrap();
        let mut s = state_dir.load().unwrap();
        assert_eq!(s.version, 1);
        s.engine.evaluated.insert("policy/p".into(), 42);
        state_dir.save(&s).unwrap();
        assert_eq!(state_dir.load().unwrap(), s);
        std::fs::write(dir.path().join(STATE), b"{\"version\":").unwrap();
        let e = state_dir.load().unwrap_err().to_string();
        assert!(
            e.contains("state.json: not a Telltale alerting state file"),
            "{e}"
        );
    }

    #[test]
    fn history_keeps_the_newest_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut state_dir = StateDir::open(dir.path()).unwrap();
        let events: Vec<serde_json::Value> =
            (0..10).map(|i| serde_json::json!({ "n": i })).collect();
        state_dir.record(&events);
        let last = state_dir.history(3);
        assert_eq!(last, events[7..].to_vec());
    }
}
