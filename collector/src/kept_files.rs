//! Reading small kernel files fast: a kept file handle per file, `pread` at offset 0 into a
//! reused buffer (the parsers of what is read are in [`crate::kernel_text`]).
//!
//! Kernel cgroup and procfs files are regenerated on every read from offset 0, so a handle
//! opened once serves every cycle (2–18 µs a read instead of 8–31 µs with open/read/close).
//! Handles are kept while the process has file descriptors to spare (see [`FdBudget`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How a file's contents arrive from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Produced by one `show` call (cgroup interface files, /proc/stat, meminfo): a read that
    /// does not fill the buffer has returned everything.
    Whole,
    /// A sequence of records (/proc/net/dev, diskstats, mountinfo, cgroup.procs) none longer
    /// than `max_record` bytes. The kernel fills at most one page-sized buffer per read and
    /// stops before a record that does not fit, so a read that returns less than a page less
    /// one record has reached the end; otherwise read on.
    Records {
        /// Longest possible record, in bytes.
        max_record: usize,
    },
}

impl Shape {
    /// cgroup.procs: one pid per line.
    pub const PIDS: Shape = Shape::Records { max_record: 16 };
    /// /proc/net/dev and diskstats lines.
    pub const TABLE: Shape = Shape::Records { max_record: 512 };
    /// mountinfo lines (paths may be long).
    pub const MOUNTS: Shape = Shape::Records { max_record: 4096 };
}

/// The smallest buffer the kernel's seq_file fills per read.
const PAGE: usize = 4096;

/// Counts kept handles against the process's descriptor limit.
///
/// File descriptors are a per-process resource, so the count is process-wide.
pub struct FdBudget;

static KEPT: AtomicUsize = AtomicUsize::new(0);
static READS: AtomicU64 = AtomicU64::new(0);

/// `read` system calls made by this process's collectors so far.
pub fn reads_total() -> u64 {
    READS.load(Ordering::Relaxed)
}
static LIMIT: AtomicUsize = AtomicUsize::new(0);

impl FdBudget {
    /// Raises the soft `RLIMIT_NOFILE` to the hard limit and sets the budget for kept handles
    /// to that limit less a reserve for sockets and one-off opens.
    pub fn init() {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut lim = getrlimit(Resource::Nofile);
        if let Some(hard) = lim.maximum {
            if lim.current.is_some_and(|cur| cur < hard) {
                lim.current = Some(hard);
                let _ = setrlimit(Resource::Nofile, lim);
            }
        }
        let cur = getrlimit(Resource::Nofile).current.unwrap_or(1 << 20);
        let budget = (cur as usize).saturating_sub(512).min(1 << 18);
        LIMIT.store(budget, Ordering::Relaxed);
    }

    fn try_take() -> bool {
        let limit = LIMIT.load(Ordering::Relaxed);
        KEPT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |k| {
            (k < limit).then_some(k + 1)
        })
        .is_ok()
    }

    fn give_back() {
        KEPT.fetch_sub(1, Ordering::Relaxed);
    }

    /// Handles kept open right now.
    pub fn kept() -> usize {
        KEPT.load(Ordering::Relaxed)
    }
}

/// A file read again every cycle: the handle is opened on first use and kept when the budget
/// allows. Dropping it closes the handle.
#[derive(Debug, Default)]
pub struct KeptFile {
    file: Option<File>,
}

impl Drop for KeptFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            FdBudget::give_back();
        }
    }
}

impl KeptFile {
    /// Reads the whole file into `buf`. `path` is only called to open the file the first
    /// time (or again after an error), so a kept handle costs no path building. On error the
    /// handle is dropped.
    pub fn read<'b>(
        &mut self,
        path: impl FnOnce() -> PathBuf,
        shape: Shape,
        buf: &'b mut ReadBuf,
    ) -> io::Result<&'b [u8]> {
        if let Some(file) = &self.file {
            match buf.fill(file, shape) {
                Ok(n) => return Ok(&buf.data[..n]),
                Err(_) => self.close(),
            }
        }
        let file = File::open(path())?;
        let n = buf.fill(&file, shape)?;
        if FdBudget::try_take() {
            self.file = Some(file);
        }
        Ok(&buf.data[..n])
    }

    /// Closes the kept handle, if any.
    pub fn close(&mut self) {
        if self.file.take().is_some() {
            FdBudget::give_back();
        }
    }
}

/// A reusable read buffer that grows to the largest file seen.
#[derive(Debug)]
pub struct ReadBuf {
    data: Vec<u8>,
}

impl Default for ReadBuf {
    fn default() -> Self {
        ReadBuf {
            data: vec![0; 16 * 1024],
        }
    }
}

impl ReadBuf {
    fn fill(&mut self, file: &File, shape: Shape) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            if filled == self.data.len() {
                self.data.resize(self.data.len() * 2, 0);
            }
            READS.fetch_add(1, Ordering::Relaxed);
            let n = file.read_at(&mut self.data[filled..], filled as u64)?;
            filled += n;
            let more = filled == self.data.len()
                || match shape {
                    Shape::Whole => false,
                    Shape::Records { max_record } => n > 0 && n + max_record >= PAGE,
                };
            if !more {
                return Ok(filled);
            }
        }
    }

    /// Reads `path` once with open/read/close (for files read on discovery only).
    pub fn read_once(&mut self, path: &Path, shape: Shape) -> io::Result<&[u8]> {
        let file = File::open(path)?;
        let n = self.fill(&file, shape)?;
        Ok(&self.data[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_file_sees_rewrites_in_place_and_reads_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "1\n").unwrap();
        let mut kf = KeptFile::default();
        let mut buf = ReadBuf::default();
        let path = || p.clone();
        assert_eq!(kf.read(path, Shape::Whole, &mut buf).unwrap(), b"1\n");
        std::fs::write(&p, "22\n").unwrap();
        assert_eq!(kf.read(path, Shape::Whole, &mut buf).unwrap(), b"22\n");
        let big = "x".repeat(100_000);
        std::fs::write(&p, &big).unwrap();
        assert_eq!(
            kf.read(path, Shape::Whole, &mut buf).unwrap().len(),
            100_000
        );
        assert_eq!(kf.read(path, Shape::PIDS, &mut buf).unwrap().len(), 100_000);
        assert_eq!(
            kf.read(path, Shape::MOUNTS, &mut buf).unwrap().len(),
            100_000
        );
        let missing = || dir.path().join("none");
        assert!(KeptFile::default()
            .read(missing, Shape::Whole, &mut buf)
            .is_err());
    }
}
