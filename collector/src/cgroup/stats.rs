//! One cgroup as the source keeps it between cycles: its identity, labels and controllers,
//! a kept handle per interface file, and what the last cycle read from them ([`Stats`]).
//! Values are `None` where a file failed; a cgroup that answered nothing this cycle is not
//! alive and exports nothing. Limits and shares are re-read only every [`SPEC_EVERY`]
//! cycles.

use telltale_model::LabelSet;

use super::identity::Identity;
use crate::kept_files::KeptFile;

/// One block device's counters in a cgroup.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Io {
    pub(super) major: u32,
    pub(super) minor: u32,
    pub(super) rbytes: u64,
    pub(super) wbytes: u64,
    pub(super) rios: u64,
    pub(super) wios: u64,
}

/// What one cycle read for one cgroup; `None` where the source failed or does not apply.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) cpu_usage: Option<f64>,
    pub(super) cpu_user: Option<f64>,
    pub(super) cpu_system: Option<f64>,
    pub(super) cfs_periods: Option<f64>,
    pub(super) cfs_throttled_periods: Option<f64>,
    pub(super) cfs_throttled_seconds: Option<f64>,
    pub(super) mem_usage: Option<f64>,
    pub(super) mem_working_set: Option<f64>,
    pub(super) mem_rss: Option<f64>,
    pub(super) mem_cache: Option<f64>,
    pub(super) mem_swap: Option<f64>,
    pub(super) mem_failcnt: Option<f64>,
    pub(super) oom_events: Option<f64>,
    pub(super) mem_limit: Option<f64>,
    pub(super) cpu_quota: Option<f64>,
    pub(super) cpu_period: Option<f64>,
    pub(super) cpu_shares: Option<f64>,
    pub(super) processes: Option<f64>,
    pub(super) threads: Option<f64>,
    pub(super) start_time: Option<f64>,
    pub(super) io: Vec<Io>,
    pub(super) first_pid: Option<u32>,
    /// v2: memory.swap.current was absent at the last spec read (no swap accounting).
    pub(super) no_swap_file: bool,
    /// v2: controllers are enabled for children (cgroup.subtree_control is not empty), so by
    /// the kernel's no-internal-process rule this cgroup holds no process.
    pub(super) delegates: bool,
    /// At least one file of the cgroup was read this cycle. A cgroup that answered nothing
    /// (it vanished) exports nothing, not even values kept from earlier cycles.
    pub(super) alive: bool,
}

impl Stats {
    pub(super) fn mark_alive(&mut self) {
        self.alive = self.cpu_usage.is_some()
            || self.mem_usage.is_some()
            || self.threads.is_some()
            || self.cfs_periods.is_some()
            || !self.io.is_empty()
            || self.first_pid.is_some();
    }
}

impl Stats {
    /// Forgets last cycle's values, keeping the start time and, unless `spec_due`, the
    /// spec values (limits and shares) which are re-read only every [`SPEC_EVERY`] cycles.
    pub(super) fn clear(&mut self, spec_due: bool) {
        let io = std::mem::take(&mut self.io);
        let keep = Stats {
            start_time: self.start_time,
            ..Default::default()
        };
        let spec = (
            self.cpu_quota,
            self.cpu_period,
            self.cpu_shares,
            self.mem_limit,
            self.no_swap_file,
            self.delegates,
        );
        *self = Stats { io, ..keep };
        self.io.clear();
        if !spec_due {
            (
                self.cpu_quota,
                self.cpu_period,
                self.cpu_shares,
                self.mem_limit,
                self.no_swap_file,
                self.delegates,
            ) = spec;
        }
    }
}

/// Limits and shares (`container_spec_*`) change only when a pod is resized: they are read
/// when a cgroup appears and then every this many cycles (1 minute at the default 15 s).
/// cAdvisor reads them once, at container creation.
pub const SPEC_EVERY: u64 = 4;

/// File slots of a cgroup; v1 and v2 use the slots by meaning.
#[derive(Clone, Copy)]
pub(super) enum F {
    CpuUsage,    // v1 cpuacct.usage | v2 cpu.stat
    CpuTimes,    // v1 cpuacct.stat
    CpuThrottle, // v1 cpu.stat
    CpuQuota,    // v1 cpu.cfs_quota_us | v2 cpu.max
    CpuPeriod,   // v1 cpu.cfs_period_us
    CpuShares,   // v1 cpu.shares | v2 cpu.weight
    MemUsage,    // memory.usage_in_bytes | memory.current
    MemStat,     // memory.stat
    MemFailcnt,  // v1 memory.failcnt
    MemOom,      // v1 memory.oom_control | v2 memory.events
    MemLimit,    // memory.limit_in_bytes | memory.max
    MemSwap,     // v2 memory.swap.current
    IoBytes,     // blkio.*io_service_bytes_recursive | io.stat
    IoOps,       // blkio.*io_serviced_recursive
    Pids,        // pids.current
    Procs,       // cgroup.procs
    Subtree,     // v2 cgroup.subtree_control
}
const SLOTS: usize = 17;

/// One known cgroup: what it is, its labels and controllers (worked out once, when it
/// first appeared), its kept files, and what the last cycle read.
pub(super) struct Cgroup {
    pub(super) rel: String,
    pub(super) identity: Identity,
    pub(super) labels: LabelSet,
    pub(super) ctrl: u8,
    pub(super) files: [KeptFile; SLOTS],
    pub(super) stats: Stats,
    pub(super) seen: u64,
    /// Cycles this cgroup has been read in.
    pub(super) reads: u64,
}

impl Cgroup {
    /// Starts this cycle's read: forgets last cycle's values (spec values are kept between
    /// spec reads) and says whether the spec files are due.
    pub(super) fn begin_read(&mut self) -> bool {
        let spec_due = self.reads.is_multiple_of(SPEC_EVERY);
        self.reads += 1;
        self.stats.clear(spec_due);
        spec_due
    }
}
