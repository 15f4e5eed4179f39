//! Where billing settlement stands, shared by the store (which reports late samples) and
//! the ledger (which settles): the first hour not yet settled, the earliest hour late
//! samples asked to settle again, and both kept on disk (`billing/settled`,
//! `billing/resettle-from`) so a restart settles neither too little nor twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use telltale_model::calendar::HOUR_MS;

use super::pods::wanted;
use crate::store::{layout, partition, Watch};

/// An hour is settled this long after it ends, so the samples of its last collection
/// cycles have arrived.
pub const GRACE_MS: i64 = 10 * 60 * 1000;

/// A billing sample this close after the settled frontier (or before it) is late: the
/// hours it may change are settled again. Below [`GRACE_MS`], so samples arriving on time
/// are not.
pub const LATE_MS: i64 = 5 * 60 * 1000;

/// Where settlement stands: the first hour not yet settled (ms), and the earliest hour
/// late samples ask to settle again. Shared by the store's watcher (which marks) and the ledger.
#[derive(Debug)]
pub struct Frontier {
    pub(super) next: std::sync::atomic::AtomicI64,
    pub(super) resettle: std::sync::atomic::AtomicI64,
    /// Woken when a late sample marks an hour.
    pub marked: tokio::sync::Notify,
}

impl Frontier {
    /// Nothing settled yet (the ledger sets the frontier when it starts).
    pub fn new() -> Frontier {
        Frontier {
            next: std::sync::atomic::AtomicI64::new(i64::MIN),
            resettle: std::sync::atomic::AtomicI64::new(i64::MAX),
            marked: tokio::sync::Notify::new(),
        }
    }

    /// Notes a billing sample at `ts` (ms); true if it marked hours to settle again.
    pub fn sample(&self, ts: i64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let next = self.next.load(Relaxed);
        if next == i64::MIN || ts >= next.saturating_add(LATE_MS) {
            return false;
        }
        // A final sample can report a stop up to a cycle before it, in the hour before.
        let from = (ts.div_euclid(HOUR_MS) - 1) * HOUR_MS;
        self.resettle.fetch_min(from, Relaxed) > from
    }

    /// The first hour not yet settled (`i64::MIN` before the ledger starts).
    pub fn next(&self) -> i64 {
        self.next.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Hours before this are settled and not marked: their files are the record.
    pub fn settled_below(&self) -> i64 {
        self.next().min(self.resettle())
    }

    /// The earliest hour marked to settle again (`i64::MAX` for none).
    pub fn resettle(&self) -> i64 {
        self.resettle.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Default for Frontier {
    fn default() -> Self {
        Frontier::new()
    }
}

/// The store's watcher for billing: samples of the series billing reads mark the hours a
/// late one changes, and the marks are written down before a flush removes the WAL
/// segments that would replay them.
pub struct LateSamples {
    /// The frontier marked.
    pub frontier: Arc<Frontier>,
    /// `--data-dir`.
    pub data_dir: PathBuf,
}

impl Watch for LateSamples {
    fn wants(&self, metric: &str) -> bool {
        wanted(metric)
    }

    fn sample(&self, ts: i64) -> bool {
        self.frontier.sample(ts)
    }

    fn changed(&self) {
        self.frontier.marked.notify_one();
    }

    fn before_checkpoint(&self) -> Result<(), partition::Error> {
        persist_marks(&self.data_dir, &self.frontier).map_err(|source| partition::Error::Io {
            path: layout::billing_dir(&self.data_dir),
            source,
        })
    }
}

pub(super) fn read_ms(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writes `v` to `path` durably (temporary file, fsync, rename).
pub(super) fn write_ms(path: &Path, v: i64) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = layout::temporary(dir, "state");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{v}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Keeps the marks of late samples across a flush: the WAL that would replay them is
/// about to go, so they are written down first.
fn persist_marks(data_dir: &Path, frontier: &Frontier) -> std::io::Result<()> {
    let mark = frontier.resettle();
    if mark == i64::MAX {
        return Ok(());
    }
    let path = layout::billing_marks(data_dir);
    match read_ms(&path) {
        Some(old) if old <= mark => Ok(()),
        _ => write_ms(&path, mark),
    }
}

/// The saved frontier of a data directory, marked hours excluded (`i64::MIN`: nothing
/// settled).
pub fn saved_frontier(data_dir: &Path) -> i64 {
    let marked = read_ms(&layout::billing_marks(data_dir)).unwrap_or(i64::MAX);
    read_ms(&layout::billing_settled(data_dir))
        .unwrap_or(i64::MIN)
        .min(marked)
}
