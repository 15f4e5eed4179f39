//! Measuring helpers shared by the benchmarks: CPU time of a thread or process, RSS, and
//! the tmpfs directory fixtures live in.

#![allow(dead_code)] // each benchmark uses its own subset

pub mod workload;

use std::path::Path;
use std::time::Duration;

/// CPU time of the calling thread (clock_gettime, nanoseconds).
pub fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// (user, system) CPU from a /proc `stat` file (10 ms ticks).
pub fn stat_cpu(path: &str) -> (Duration, Duration) {
    let stat = std::fs::read_to_string(path).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| Duration::from_millis(f[i].parse::<u64>().expect("ticks") * 10);
    (tick(11), tick(12))
}

/// (user, system) CPU of the calling thread.
pub fn thread_user_system() -> (Duration, Duration) {
    stat_cpu("/proc/thread-self/stat")
}

/// User plus system CPU of process `pid`.
pub fn process_cpu(pid: u32) -> Duration {
    let (user, system) = stat_cpu(&format!("/proc/{pid}/stat"));
    user + system
}

/// A field of /proc/<pid>/status in KiB (VmRSS, RssAnon, RssFile).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Fixtures live on tmpfs where there is one: cgroupfs and procfs are in-memory
/// filesystems, and ext4's journal and atime work is no part of reading them.
pub fn fixture_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tempdir in /dev/shm")
    } else {
        tempfile::tempdir().expect("tempdir")
    }
}

/// Every file under `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
