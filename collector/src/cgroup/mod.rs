//! Container metrics from cgroups, under cAdvisor's names: cgroup v1, hybrid (v1 controllers
//! beside a unified mount; the v1 controllers are read, as cAdvisor does) and pure v2.
//!
//! Discovery walks one hierarchy with `getdents` into a stack buffer (no allocation for
//! cgroups already known) and stops at container cgroups: containers are leaves. Every
//! directory walked carries an inotify watch, so the walk is repeated only in cycles after a
//! cgroup was created or removed (and every [`REWALK_EVERY`] cycles as a safety net); a
//! quiet cycle costs one non-blocking read of the inotify descriptor. A cgroup's identity, labels, enabled controllers and start time are worked out
//! once, when it first appears; each cycle then costs one kept-handle `pread` per file.
//! Cgroups that disappear are dropped with their series. The hierarchy root itself is not
//! exported: the node families describe the whole machine.

pub mod identity;

use std::collections::{BTreeMap, HashMap};
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

use rustix::fd::OwnedFd;
use rustix::fs::inotify;
use rustix::fs::{FileType, Mode, OFlags, RawDir};
use telltale_model::{LabelSet, MetricKind, Sink};

use crate::cycle_errors::CycleErrors;
use crate::kept_files::{KeptFile, ReadBuf, Shape};
use crate::kernel_text::{fields, lines, parse_i64, parse_u64, scan_keys};
use crate::pod_names::PodNames;
use crate::procfs::{net_family, parse_net_dev, NetDev, NET_COLUMNS, USER_HZ};
pub use identity::Identity;

/// Errors finding the cgroup hierarchy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither a v2 root nor any of the v1 controllers we read was found.
    #[error("no cgroup hierarchy under {path}: expected {path}/cgroup.controllers (v2) or {path}/memory, {path}/cpu (v1)")]
    NotFound {
        /// The directory searched (`<sys-root>/fs/cgroup`).
        path: PathBuf,
    },
}

/// Which cgroup version is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Per-controller hierarchies (also used on hybrid hosts).
    V1,
    /// The unified hierarchy.
    V2,
}

/// Where the hierarchies are.
#[derive(Debug, Clone)]
pub enum Layout {
    /// cgroup v1: one directory per controller (absent ones are skipped).
    V1 {
        /// `cpu` controller root.
        cpu: Option<PathBuf>,
        /// `cpuacct` controller root.
        cpuacct: Option<PathBuf>,
        /// `memory` controller root.
        memory: Option<PathBuf>,
        /// `blkio` controller root.
        blkio: Option<PathBuf>,
        /// `pids` controller root.
        pids: Option<PathBuf>,
        /// The (bytes, operations) files: `blkio.throttle.io_service*_recursive`, or
        /// `blkio.io_service*_recursive` on kernels without the throttle files.
        blkio_files: (&'static str, &'static str),
    },
    /// cgroup v2: one tree.
    V2 {
        /// The unified root.
        root: PathBuf,
    },
}

const CPU: u8 = 1;
const CPUACCT: u8 = 2;
const MEMORY: u8 = 4;
const IO: u8 = 8;
const PIDS: u8 = 16;

impl Layout {
    /// Finds the hierarchies under `<sys_root>/fs/cgroup`.
    pub fn detect(sys_root: &Path) -> Result<Layout, Error> {
        let base = sys_root.join("fs/cgroup");
        if base.join("cgroup.controllers").is_file() {
            return Ok(Layout::V2 { root: base });
        }
        let find = |ctrl: &str| -> Option<PathBuf> {
            let direct = base.join(ctrl);
            if direct.is_dir() {
                return Some(direct);
            }
            // Co-mounted controllers without the usual symlinks: `cpu,cpuacct`.
            std::fs::read_dir(&base).ok()?.flatten().find_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                (name.split(',').any(|c| c == ctrl) && e.path().is_dir()).then(|| e.path())
            })
        };
        let (cpu, cpuacct, memory, blkio, pids) = (
            find("cpu"),
            find("cpuacct"),
            find("memory"),
            find("blkio"),
            find("pids"),
        );
        if cpu.is_none() && cpuacct.is_none() && memory.is_none() {
            let unified = base.join("unified");
            if unified.join("cgroup.controllers").is_file() {
                return Ok(Layout::V2 { root: unified });
            }
            return Err(Error::NotFound { path: base });
        }
        let blkio_files = match &blkio {
            Some(b)
                if !b.join("blkio.throttle.io_service_bytes_recursive").exists()
                    && b.join("blkio.io_service_bytes_recursive").exists() =>
            {
                (
                    "blkio.io_service_bytes_recursive",
                    "blkio.io_serviced_recursive",
                )
            }
            _ => (
                "blkio.throttle.io_service_bytes_recursive",
                "blkio.throttle.io_serviced_recursive",
            ),
        };
        Ok(Layout::V1 {
            cpu,
            cpuacct,
            memory,
            blkio,
            pids,
            blkio_files,
        })
    }

    /// The version read.
    pub fn version(&self) -> Version {
        match self {
            Layout::V1 { .. } => Version::V1,
            Layout::V2 { .. } => Version::V2,
        }
    }

    /// The hierarchy walked to find cgroups.
    fn discovery_root(&self) -> Option<&Path> {
        match self {
            Layout::V1 {
                memory,
                cpu,
                cpuacct,
                pids,
                ..
            } => memory
                .as_deref()
                .or(cpu.as_deref())
                .or(cpuacct.as_deref())
                .or(pids.as_deref()),
            Layout::V2 { root } => Some(root),
        }
    }

    /// Controllers that have files for cgroup `rel` (checked once, at discovery).
    fn controllers(&self, rel: &str, buf: &mut ReadBuf) -> u8 {
        let rel = rel.trim_start_matches('/');
        match self {
            Layout::V1 {
                cpu,
                cpuacct,
                memory,
                blkio,
                pids,
                ..
            } => {
                let has = |root: &Option<PathBuf>, bit: u8| match root {
                    Some(r) if r.join(rel).is_dir() => bit,
                    _ => 0,
                };
                has(cpu, CPU)
                    | has(cpuacct, CPUACCT)
                    | has(memory, MEMORY)
                    | has(blkio, IO)
                    | has(pids, PIDS)
            }
            Layout::V2 { root } => {
                // cpu.stat's usage fields exist in every v2 cgroup; the rest follow
                // cgroup.controllers.
                let mut mask = CPUACCT;
                if let Ok(b) =
                    buf.read_once(&root.join(rel).join("cgroup.controllers"), Shape::Whole)
                {
                    for c in fields(b) {
                        mask |= match c {
                            b"cpu" => CPU,
                            b"memory" => MEMORY,
                            b"io" => IO,
                            b"pids" => PIDS,
                            _ => 0,
                        };
                    }
                }
                mask
            }
        }
    }
}

/// One block device's counters in a cgroup.
#[derive(Debug, Default, Clone, Copy)]
struct Io {
    major: u32,
    minor: u32,
    rbytes: u64,
    wbytes: u64,
    rios: u64,
    wios: u64,
}

/// What one cycle read for one cgroup; `None` where the source failed or does not apply.
#[derive(Debug, Default)]
struct Stats {
    cpu_usage: Option<f64>,
    cpu_user: Option<f64>,
    cpu_system: Option<f64>,
    cfs_periods: Option<f64>,
    cfs_throttled_periods: Option<f64>,
    cfs_throttled_seconds: Option<f64>,
    mem_usage: Option<f64>,
    mem_working_set: Option<f64>,
    mem_rss: Option<f64>,
    mem_cache: Option<f64>,
    mem_swap: Option<f64>,
    mem_failcnt: Option<f64>,
    oom_events: Option<f64>,
    mem_limit: Option<f64>,
    cpu_quota: Option<f64>,
    cpu_period: Option<f64>,
    cpu_shares: Option<f64>,
    processes: Option<f64>,
    threads: Option<f64>,
    start_time: Option<f64>,
    io: Vec<Io>,
    first_pid: Option<u32>,
    /// v2: memory.swap.current was absent at the last spec read (no swap accounting).
    no_swap_file: bool,
    /// v2: controllers are enabled for children (cgroup.subtree_control is not empty), so by
    /// the kernel's no-internal-process rule this cgroup holds no process.
    delegates: bool,
    /// At least one file of the cgroup was read this cycle. A cgroup that answered nothing
    /// (it vanished) exports nothing, not even values kept from earlier cycles.
    alive: bool,
}

impl Stats {
    fn mark_alive(&mut self) {
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
    fn clear(&mut self, spec_due: bool) {
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
enum F {
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

struct Cgroup {
    rel: String,
    identity: Identity,
    labels: LabelSet,
    ctrl: u8,
    files: [KeptFile; SLOTS],
    stats: Stats,
    seen: u64,
    /// Cycles this cgroup has been read in.
    reads: u64,
}

impl Cgroup {
    /// Starts this cycle's read: forgets last cycle's values (spec values are kept between
    /// spec reads) and says whether the spec files are due.
    fn begin_read(&mut self) -> bool {
        let spec_due = self.reads.is_multiple_of(SPEC_EVERY);
        self.reads += 1;
        self.stats.clear(spec_due);
        spec_due
    }
}

#[derive(Default)]
struct PodNet {
    pid: u32,
    file: KeptFile,
    devs: Vec<NetDev>,
    ok: bool,
    seen: u64,
}

/// Cycles between walks of an unchanged hierarchy: inotify tells of every change, but a
/// lost watch (the kernel's per-user watch limit) must not hide a cgroup for long.
pub const REWALK_EVERY: u64 = 20;

/// Says whether the hierarchy may have changed since the last walk.
struct Watcher {
    /// None when inotify is not available: every cycle walks.
    fd: Option<OwnedFd>,
    /// The last walk's cycle.
    walked_at: u64,
}

impl Watcher {
    fn new() -> Self {
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
            .map_err(|e| tracing::warn!(error = %e, "no inotify: cgroups are listed every cycle"))
            .ok();
        Watcher { fd, walked_at: 0 }
    }

    /// Watches `dir` for cgroups created or removed in it. Called before listing it, so a
    /// cgroup created in between is either listed or announced.
    fn watch(&mut self, dir: &Path) {
        let Some(fd) = &self.fd else { return };
        let mask = inotify::WatchFlags::CREATE
            | inotify::WatchFlags::DELETE
            | inotify::WatchFlags::MOVED_FROM
            | inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::DELETE_SELF
            | inotify::WatchFlags::ONLYDIR;
        if let Err(e) = inotify::add_watch(fd, dir, mask) {
            if e != rustix::io::Errno::NOENT {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot watch cgroups (fs.inotify.max_user_watches?): listing them every cycle");
                self.fd = None;
            }
        }
    }

    /// Drains pending events; true if a directory came or went (or events were lost).
    fn changed(&mut self) -> bool {
        let Some(fd) = &self.fd else { return true };
        let mut space = [MaybeUninit::<u8>::uninit(); 4096];
        let mut events = inotify::Reader::new(fd, &mut space);
        let mut changed = false;
        loop {
            match events.next() {
                Ok(ev) => {
                    let f = ev.events();
                    changed |= f.contains(inotify::ReadFlags::ISDIR)
                        || f.intersects(
                            inotify::ReadFlags::QUEUE_OVERFLOW | inotify::ReadFlags::DELETE_SELF,
                        );
                }
                Err(rustix::io::Errno::AGAIN) => return changed,
                Err(_) => return true,
            }
        }
    }
}

/// Reads every cgroup of the node and exports the container families.
pub struct CgroupSource {
    watcher: Watcher,
    layout: Layout,
    proc_root: PathBuf,
    cluster: String,
    node: String,
    cgroups: BTreeMap<String, Cgroup>,
    pods: HashMap<String, PodNet>,
    /// Kubernetes names by pod UID (empty without Kubernetes).
    names: HashMap<String, PodNames>,
    cycle: u64,
}

impl CgroupSource {
    /// A source for the hierarchies in `layout`; pod network tables are read from
    /// `<proc_root>/<pid>/net/dev`.
    pub fn new(layout: Layout, proc_root: &Path, cluster: &str, node: &str) -> Self {
        CgroupSource {
            watcher: Watcher::new(),
            layout,
            proc_root: proc_root.to_owned(),
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            cgroups: BTreeMap::new(),
            pods: HashMap::new(),
            names: HashMap::new(),
            cycle: 0,
        }
    }

    /// The layout being read.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Cgroups known after the last cycle.
    pub fn len(&self) -> usize {
        self.cgroups.len()
    }

    /// True when no cgroup is known.
    pub fn is_empty(&self) -> bool {
        self.cgroups.is_empty()
    }

    /// Finds new and vanished cgroups, then reads every known one. `node_has_swap` false
    /// (the node's SwapTotal is 0) means no cgroup can use swap, so v2's memory.swap.current
    /// is not read.
    pub fn read(&mut self, buf: &mut ReadBuf, errors: &mut CycleErrors, node_has_swap: bool) {
        self.cycle += 1;
        self.discover(buf, errors);
        self.read_known(buf, errors, node_has_swap);
    }

    /// Reads every cgroup found by the last discovery.
    fn read_known(&mut self, buf: &mut ReadBuf, errors: &mut CycleErrors, node_has_swap: bool) {
        for cg in self.cgroups.values_mut() {
            match &self.layout {
                Layout::V1 { .. } => read_v1(&self.layout, cg, buf, errors),
                Layout::V2 { root } => read_v2(root, cg, buf, errors, node_has_swap),
            }
        }
        self.read_pod_networks(buf, errors);
    }

    fn discover(&mut self, buf: &mut ReadBuf, errors: &mut CycleErrors) {
        let due = self.cycle.saturating_sub(self.watcher.walked_at) >= REWALK_EVERY;
        let changed = self.watcher.changed();
        if self.watcher.walked_at != 0 && !changed && !due {
            return; // nothing came or went since the last walk
        }
        self.watcher.walked_at = self.cycle;
        let Some(root) = self.layout.discovery_root().map(Path::to_owned) else {
            return;
        };
        let mut path = root;
        let mut rel = String::with_capacity(256);
        if let Err(e) = self.walk(&mut path, &mut rel, 0, buf, errors) {
            errors.record("cgroup_discovery", format_args!("{}: {e}", path.display()));
            self.watcher.walked_at = 0; // try again next cycle
            return; // keep what we knew rather than dropping every series
        }
        let cycle = self.cycle;
        self.cgroups.retain(|_, c| c.seen == cycle);
    }

    fn walk(
        &mut self,
        path: &mut PathBuf,
        rel: &mut String,
        depth: usize,
        buf: &mut ReadBuf,
        errors: &mut CycleErrors,
    ) -> rustix::io::Result<()> {
        const MAX_DEPTH: usize = 16;
        self.watcher.watch(path);
        let fd = match rustix::fs::open(
            &*path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if depth == 0 => return Err(e),
            // A cgroup removed while we walk: it is simply gone.
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            // Any other failure below the root costs that subtree only.
            Err(e) => {
                errors.record("cgroup_discovery", format_args!("{}: {e}", path.display()));
                return Ok(());
            }
        };
        let mut space = [MaybeUninit::<u8>::uninit(); 4096];
        let mut dir = RawDir::new(&fd, &mut space);
        while let Some(entry) = dir.next() {
            let Ok(entry) = entry else { break };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let is_dir = match entry.file_type() {
                FileType::Directory => true,
                FileType::Unknown => rustix::fs::statat(
                    &fd,
                    entry.file_name(),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory),
                _ => false,
            };
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            if !is_dir {
                continue;
            }
            let rel_len = rel.len();
            rel.push('/');
            rel.push_str(name);
            path.push(name);
            let descend = self.visit(rel, path, buf);
            if descend && depth < MAX_DEPTH {
                self.walk(path, rel, depth + 1, buf, errors)?;
            }
            path.pop();
            rel.truncate(rel_len);
        }
        Ok(())
    }

    /// Marks `rel` as present this cycle, adding it if new. Returns whether to walk below it.
    fn visit(&mut self, rel: &str, path: &Path, buf: &mut ReadBuf) -> bool {
        if let Some(cg) = self.cgroups.get_mut(rel) {
            cg.seen = self.cycle;
            return !cg.identity.is_container();
        }
        let identity = identity::parse(rel);
        let descend = !identity.is_container();
        let labels = self.labels_for(rel, &identity);
        let stats = Stats {
            start_time: start_time(path, self.layout.version()),
            ..Default::default()
        };
        let cg = Cgroup {
            rel: rel.to_owned(),
            ctrl: self.layout.controllers(rel, buf),
            identity,
            labels,
            files: Default::default(),
            stats,
            seen: self.cycle,
            reads: 0,
        };
        self.cgroups.insert(cg.rel.clone(), cg);
        descend
    }

    /// The label set of a cgroup: cAdvisor's labels, with Kubernetes names where known.
    /// A container cgroup of a known pod whose id is none of the pod's containers, while all
    /// of them are known, is the pod's sandbox: `container="POD"`, as cAdvisor labels it.
    fn labels_for(&self, rel: &str, identity: &Identity) -> LabelSet {
        let (uid, id) = match identity {
            Identity::Container {
                pod_uid,
                container_id,
            } => (Some(pod_uid), container_id.as_str()),
            Identity::Pod { pod_uid } => (Some(pod_uid), ""),
            Identity::Other => (None, ""),
        };
        let names = uid.and_then(|u| self.names.get(u.as_str()));
        let (mut container, mut image) = ("", "");
        if let (Some(n), Identity::Container { .. }) = (names, identity) {
            match n.containers.get(id) {
                Some((c, i)) => (container, image) = (c.as_str(), i.as_str()),
                None if n.all_ids_known => container = "POD",
                None => {}
            }
        }
        LabelSet::new([
            ("cluster", self.cluster.as_str()),
            ("container", container),
            ("id", rel),
            ("image", image),
            ("name", id),
            ("namespace", names.map_or("", |n| n.namespace.as_str())),
            ("node", self.node.as_str()),
            ("pod", names.map_or("", |n| n.pod.as_str())),
        ])
    }

    /// Replaces the Kubernetes names and relabels the cgroups whose names changed.
    pub fn set_names(&mut self, names: HashMap<String, PodNames>) {
        self.names = names;
        let relabels: Vec<(String, LabelSet)> = self
            .cgroups
            .values()
            .filter(|cg| !matches!(cg.identity, Identity::Other))
            .map(|cg| (cg.rel.clone(), self.labels_for(&cg.rel, &cg.identity)))
            .filter(|(rel, l)| self.cgroups.get(rel).is_some_and(|cg| &cg.labels != l))
            .collect();
        for (rel, labels) in relabels {
            if let Some(cg) = self.cgroups.get_mut(&rel) {
                cg.labels = labels;
            }
        }
    }

    fn read_pod_networks(&mut self, buf: &mut ReadBuf, errors: &mut CycleErrors) {
        let cycle = self.cycle;
        for cg in self.cgroups.values() {
            let (Identity::Container { pod_uid, .. }, Some(pid)) =
                (&cg.identity, cg.stats.first_pid)
            else {
                continue;
            };
            let net = match self.pods.get_mut(pod_uid.as_str()) {
                Some(n) => n,
                None => self.pods.entry(pod_uid.clone()).or_default(),
            };
            if net.seen == cycle {
                continue; // the pod's first container with a process already chose
            }
            net.seen = cycle;
            if net.pid != pid {
                // A different process may live in a different network namespace.
                net.file.close();
                net.pid = pid;
            }
        }
        self.pods.retain(|_, n| n.seen == cycle);
        let proc_root = &self.proc_root;
        for net in self.pods.values_mut() {
            let pid = net.pid;
            let path = || proc_root.join(pid.to_string()).join("net/dev");
            net.ok = match net.file.read(path, Shape::TABLE, buf) {
                Ok(b) => {
                    let ok = parse_net_dev(b, &mut net.devs);
                    if !ok {
                        errors.record(
                            "pod_network",
                            format_args!("{}: malformed", path().display()),
                        );
                    }
                    ok
                }
                Err(e) => {
                    errors.record("pod_network", format_args!("{}: {e}", path().display()));
                    false
                }
            };
        }
    }

    /// Writes the container families into `sink`. `devices` names block devices.
    pub fn emit(&self, devices: &HashMap<(u32, u32), String>, sink: &mut dyn Sink) {
        for f in SCALARS {
            sink.family(f.name, f.help, f.kind);
            for cg in self.live() {
                if let Some(v) = (f.get)(&cg.stats) {
                    sink.sample(&cg.labels, f.extra, v);
                }
            }
        }
        let mut unknown = String::new();
        for (name, help, get) in IO_FAMILIES {
            sink.family(name, help, MetricKind::Counter);
            for cg in self.live() {
                for io in &cg.stats.io {
                    let dev = match devices.get(&(io.major, io.minor)) {
                        Some(d) => d.as_str(),
                        None => {
                            unknown.clear();
                            use std::fmt::Write as _;
                            let _ = write!(unknown, "{}:{}", io.major, io.minor);
                            &unknown
                        }
                    };
                    sink.sample(&cg.labels, &[("device", dev)], get(io) as f64);
                }
            }
        }
        for (dir, col, what) in NET_COLUMNS {
            let what = match what {
                "drop" => "packets_dropped",
                "errs" => "errors",
                w => w,
            };
            let name = net_family("container_network", dir, what);
            sink.family(
                &name,
                "Network statistic of the pod's network namespace, from /proc/<pid>/net/dev.",
                MetricKind::Counter,
            );
            for cg in self.live() {
                let Identity::Pod { pod_uid } = &cg.identity else {
                    continue;
                };
                let Some(net) = self.pods.get(pod_uid.as_str()).filter(|n| n.ok) else {
                    continue;
                };
                for d in &net.devs {
                    sink.sample(&cg.labels, &[("interface", &d.name)], d.values[col] as f64);
                }
            }
        }
    }
}

impl CgroupSource {
    /// Cgroups that answered this cycle.
    fn live(&self) -> impl Iterator<Item = &Cgroup> {
        self.cgroups.values().filter(|c| c.stats.alive)
    }
}

/// cAdvisor's creation time: the earlier of the directory's mtime and that of a file the
/// kernel rarely touches (the directory's mtime moves when children come and go).
fn start_time(dir: &Path, version: Version) -> Option<f64> {
    let marker = match version {
        Version::V1 => "cgroup.clone_children",
        Version::V2 => "cgroup.events",
    };
    let mtime = |p: &Path| {
        rustix::fs::stat(p)
            .ok()
            .map(|s| s.st_mtime as f64 + s.st_mtime_nsec as f64 / 1e9)
    };
    match (mtime(dir), mtime(&dir.join(marker))) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

struct Scalar {
    name: &'static str,
    help: &'static str,
    kind: MetricKind,
    extra: &'static [(&'static str, &'static str)],
    get: fn(&Stats) -> Option<f64>,
}

const fn scalar(
    name: &'static str,
    help: &'static str,
    kind: MetricKind,
    get: fn(&Stats) -> Option<f64>,
) -> Scalar {
    Scalar {
        name,
        help,
        kind,
        extra: &[],
        get,
    }
}

use MetricKind::{Counter, Gauge, Untyped};
const SCALARS: &[Scalar] = &[
    Scalar {
        name: "container_cpu_usage_seconds_total",
        help: "Cumulative cpu time consumed in seconds.",
        kind: Counter,
        extra: &[("cpu", "total")],
        get: |s| s.cpu_usage,
    },
    scalar(
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
        Counter,
        |s| s.cpu_user,
    ),
    scalar(
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
        Counter,
        |s| s.cpu_system,
    ),
    scalar(
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
        Counter,
        |s| s.cfs_periods,
    ),
    scalar(
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
        Counter,
        |s| s.cfs_throttled_periods,
    ),
    scalar(
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        Counter,
        |s| s.cfs_throttled_seconds,
    ),
    scalar(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        Gauge,
        |s| s.mem_usage,
    ),
    scalar(
        "container_memory_working_set_bytes",
        "Current working set in bytes: usage minus inactive file cache, floored at 0.",
        Gauge,
        |s| s.mem_working_set,
    ),
    scalar(
        "container_memory_rss",
        "Size of RSS (anonymous memory) in bytes.",
        Gauge,
        |s| s.mem_rss,
    ),
    scalar(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        Gauge,
        |s| s.mem_cache,
    ),
    scalar(
        "container_memory_swap",
        "Container swap usage in bytes.",
        Gauge,
        |s| s.mem_swap,
    ),
    // Untyped: cAdvisor's name lacks `_total`, which a counter must have.
    scalar(
        "container_memory_failcnt",
        "Number of memory usage hits limits (cumulative; 0 on cgroup v2).",
        Untyped,
        |s| s.mem_failcnt,
    ),
    scalar(
        "container_oom_events_total",
        "Count of out of memory events observed for the container.",
        Counter,
        |s| s.oom_events,
    ),
    scalar(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container (0 when unlimited).",
        Gauge,
        |s| s.mem_limit,
    ),
    scalar(
        "container_spec_cpu_quota",
        "CPU quota of the container, in microseconds per period (absent when unlimited).",
        Gauge,
        |s| s.cpu_quota,
    ),
    scalar(
        "container_spec_cpu_period",
        "CPU period of the container, in microseconds.",
        Gauge,
        |s| s.cpu_period,
    ),
    scalar(
        "container_spec_cpu_shares",
        "CPU share of the container (cgroup v2 weight converted to shares).",
        Gauge,
        |s| s.cpu_shares,
    ),
    scalar(
        "container_processes",
        "Number of processes running inside the container (its cgroup.procs).",
        Gauge,
        |s| s.processes,
    ),
    scalar(
        "container_threads",
        "Number of threads running inside the container and its children (pids.current).",
        Gauge,
        |s| s.threads,
    ),
    scalar(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        Gauge,
        |s| s.start_time,
    ),
];

type IoGet = fn(&Io) -> u64;
const IO_FAMILIES: [(&str, &str, IoGet); 4] = [
    (
        "container_fs_reads_bytes_total",
        "Cumulative count of bytes read.",
        |i| i.rbytes,
    ),
    (
        "container_fs_writes_bytes_total",
        "Cumulative count of bytes written.",
        |i| i.wbytes,
    ),
    (
        "container_fs_reads_total",
        "Cumulative count of reads completed.",
        |i| i.rios,
    ),
    (
        "container_fs_writes_total",
        "Cumulative count of writes completed.",
        |i| i.wios,
    ),
];

/// Reads cgroup files into the cycle's shared buffer and records failures.
struct Reader<'a> {
    buf: &'a mut ReadBuf,
    errors: &'a mut CycleErrors,
}

impl Reader<'_> {
    /// Reads `<root>/<rel>/<name>` and parses it; a read or parse failure records one
    /// error and yields `None`.
    fn file<T>(
        &mut self,
        file: &mut KeptFile,
        (root, rel, name): (&Path, &str, &str),
        shape: Shape,
        parse: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Option<T> {
        let rel = rel.trim_start_matches('/');
        match file.read(|| root.join(rel).join(name), shape, self.buf) {
            Ok(b) => {
                let v = parse(b);
                if v.is_none() {
                    self.errors.record(
                        "cgroup",
                        format_args!("{}/{rel}/{name}: malformed", root.display()),
                    );
                }
                v
            }
            Err(e) => {
                self.errors.record(
                    "cgroup",
                    format_args!("{}/{rel}/{name}: {e}", root.display()),
                );
                None
            }
        }
    }
}

/// A limit of 2^62 bytes or more is the kernel's "unlimited" (v1 writes a page-aligned
/// i64::MAX).
fn limit_bytes(v: u64) -> f64 {
    if v >= 1 << 62 {
        0.0
    } else {
        v as f64
    }
}

fn count_procs(b: &[u8], first_pid: &mut Option<u32>) -> Option<f64> {
    let mut n = 0u32;
    for l in lines(b) {
        let pid = parse_u64(l)?;
        if n == 0 {
            *first_pid = u32::try_from(pid).ok();
        }
        n += 1;
    }
    Some(n as f64)
}

fn io_entry(io: &mut Vec<Io>, major: u32, minor: u32) -> &mut Io {
    let i = match io.iter().position(|e| e.major == major && e.minor == minor) {
        Some(i) => i,
        None => {
            io.push(Io {
                major,
                minor,
                ..Default::default()
            });
            io.len() - 1
        }
    };
    &mut io[i]
}

fn parse_dev(s: &[u8]) -> Option<(u32, u32)> {
    let colon = s.iter().position(|&b| b == b':')?;
    Some((
        parse_u64(&s[..colon])? as u32,
        parse_u64(&s[colon + 1..])? as u32,
    ))
}

/// blkio `MAJ:MIN Read N` lines into `io` (the `Total` line and other ops are ignored).
fn parse_blkio(b: &[u8], io: &mut Vec<Io>, bytes: bool) -> Option<()> {
    for l in lines(b) {
        let mut f = fields(l);
        let (Some(dev), Some(op), Some(v)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let (maj, min) = parse_dev(dev)?;
        let v = parse_u64(v)?;
        let e = io_entry(io, maj, min);
        match (op, bytes) {
            (b"Read", true) => e.rbytes = v,
            (b"Write", true) => e.wbytes = v,
            (b"Read", false) => e.rios = v,
            (b"Write", false) => e.wios = v,
            _ => {}
        }
    }
    Some(())
}

/// v2 io.stat: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N`.
fn parse_io_stat(b: &[u8], io: &mut Vec<Io>) -> Option<()> {
    for l in lines(b) {
        let mut f = fields(l);
        let (maj, min) = parse_dev(f.next()?)?;
        let e = io_entry(io, maj, min);
        for kv in f {
            let eq = kv.iter().position(|&b| b == b'=')?;
            let v = parse_u64(&kv[eq + 1..])?;
            match &kv[..eq] {
                b"rbytes" => e.rbytes = v,
                b"wbytes" => e.wbytes = v,
                b"rios" => e.rios = v,
                b"wios" => e.wios = v,
                _ => {}
            }
        }
    }
    Some(())
}

fn read_v1(layout: &Layout, cg: &mut Cgroup, buf: &mut ReadBuf, errors: &mut CycleErrors) {
    let Layout::V1 {
        cpu,
        cpuacct,
        memory,
        blkio,
        pids,
        blkio_files,
    } = layout
    else {
        return;
    };
    let spec_due = cg.begin_read();
    let Cgroup {
        rel,
        ctrl,
        files,
        stats: s,
        ..
    } = cg;
    let ctrl = *ctrl;
    let rel = rel.as_str();
    let mut r = Reader { buf, errors };
    macro_rules! file {
        ($root:expr, $slot:expr, $name:expr, $shape:expr, $parse:expr) => {
            r.file(
                &mut files[$slot as usize],
                ($root, rel, $name),
                $shape,
                $parse,
            )
        };
    }
    if let (Some(root), true) = (cpuacct, ctrl & CPUACCT != 0) {
        s.cpu_usage = file!(root, F::CpuUsage, "cpuacct.usage", Shape::Whole, |b| {
            parse_u64(b).map(|ns| ns as f64 / 1e9)
        });
        let mut want: [(&[u8], Option<u64>); 2] = [(b"user", None), (b"system", None)];
        if let Some([u, sy]) = file!(root, F::CpuTimes, "cpuacct.stat", Shape::Whole, |b| {
            (scan_keys(b, &mut want) && want.iter().all(|w| w.1.is_some()))
                .then(|| [want[0].1, want[1].1])
        }) {
            s.cpu_user = u.map(|t| t as f64 / USER_HZ);
            s.cpu_system = sy.map(|t| t as f64 / USER_HZ);
        }
    }
    if let (Some(root), true) = (cpu, ctrl & CPU != 0) {
        let mut want: [(&[u8], Option<u64>); 3] = [
            (b"nr_periods", None),
            (b"nr_throttled", None),
            (b"throttled_time", None),
        ];
        if let Some([p, t, ns]) = file!(root, F::CpuThrottle, "cpu.stat", Shape::Whole, |b| {
            (scan_keys(b, &mut want) && want.iter().all(|w| w.1.is_some()))
                .then(|| [want[0].1, want[1].1, want[2].1])
        }) {
            s.cfs_periods = p.map(|v| v as f64);
            s.cfs_throttled_periods = t.map(|v| v as f64);
            s.cfs_throttled_seconds = ns.map(|v| v as f64 / 1e9);
        }
        if spec_due {
            s.cpu_quota = file!(
                root,
                F::CpuQuota,
                "cpu.cfs_quota_us",
                Shape::Whole,
                parse_i64
            )
            .and_then(|q| (q > 0).then_some(q as f64));
            s.cpu_period = file!(
                root,
                F::CpuPeriod,
                "cpu.cfs_period_us",
                Shape::Whole,
                parse_u64
            )
            .map(|v| v as f64);
            s.cpu_shares =
                file!(root, F::CpuShares, "cpu.shares", Shape::Whole, parse_u64).map(|v| v as f64);
        }
    }
    if let (Some(root), true) = (memory, ctrl & MEMORY != 0) {
        let usage = file!(
            root,
            F::MemUsage,
            "memory.usage_in_bytes",
            Shape::Whole,
            parse_u64
        );
        s.mem_usage = usage.map(|v| v as f64);
        let mut want: [(&[u8], Option<u64>); 4] = [
            (b"total_rss", None),
            (b"total_cache", None),
            (b"total_inactive_file", None),
            (b"total_swap", None),
        ];
        let stat = file!(root, F::MemStat, "memory.stat", Shape::Whole, |b| {
            (scan_keys(b, &mut want) && want[..3].iter().all(|w| w.1.is_some()))
                .then(|| [want[0].1, want[1].1, want[2].1, want[3].1])
        });
        if let Some([rss, cache, inactive, swap]) = stat {
            s.mem_rss = rss.map(|v| v as f64);
            s.mem_cache = cache.map(|v| v as f64);
            s.mem_swap = Some(swap.unwrap_or(0) as f64); // absent without swap accounting
            if let (Some(u), Some(i)) = (usage, inactive) {
                s.mem_working_set = Some(u.saturating_sub(i) as f64);
            }
        }
        s.mem_failcnt = file!(
            root,
            F::MemFailcnt,
            "memory.failcnt",
            Shape::Whole,
            parse_u64
        )
        .map(|v| v as f64);
        let mut want: [(&[u8], Option<u64>); 1] = [(b"oom_kill", None)];
        s.oom_events = file!(root, F::MemOom, "memory.oom_control", Shape::Whole, |b| {
            scan_keys(b, &mut want).then(|| want[0].1.unwrap_or(0) as f64) // oom_kill is absent before Linux 4.13
        });
        if spec_due {
            s.mem_limit = file!(
                root,
                F::MemLimit,
                "memory.limit_in_bytes",
                Shape::Whole,
                parse_u64
            )
            .map(limit_bytes);
        }
    }
    if let (Some(root), true) = (blkio, ctrl & IO != 0) {
        let io = &mut s.io;
        let (bytes, ops) = *blkio_files;
        let ok = file!(root, F::IoBytes, bytes, Shape::Whole, |b| parse_blkio(
            b, io, true
        ))
        .is_some();
        let ok = ok
            && file!(root, F::IoOps, ops, Shape::Whole, |b| parse_blkio(
                b, io, false
            ))
            .is_some();
        if !ok {
            io.clear();
        }
    }
    if let (Some(root), true) = (pids, ctrl & PIDS != 0) {
        s.threads = file!(root, F::Pids, "pids.current", Shape::Whole, parse_u64).map(|v| v as f64);
    }
    if let Some(root) = layout.discovery_root() {
        let first = &mut s.first_pid;
        s.processes = file!(
            root,
            F::Procs,
            "cgroup.procs",
            Shape::PIDS,
            |b| count_procs(b, first)
        );
    }
    s.mark_alive();
}

fn read_v2(
    root: &Path,
    cg: &mut Cgroup,
    buf: &mut ReadBuf,
    errors: &mut CycleErrors,
    node_has_swap: bool,
) {
    let spec_due = cg.begin_read();
    let Cgroup {
        rel,
        ctrl,
        files,
        stats: s,
        ..
    } = cg;
    let ctrl = *ctrl;
    let rel = rel.as_str();
    let mut r = Reader { buf, errors };
    macro_rules! file {
        ($slot:expr, $name:expr, $shape:expr, $parse:expr) => {
            r.file(
                &mut files[$slot as usize],
                (root, rel, $name),
                $shape,
                $parse,
            )
        };
    }
    let mut want: [(&[u8], Option<u64>); 6] = [
        (b"usage_usec", None),
        (b"user_usec", None),
        (b"system_usec", None),
        (b"nr_periods", None),
        (b"nr_throttled", None),
        (b"throttled_usec", None),
    ];
    let throttling = ctrl & CPU != 0;
    if let Some(v) = file!(F::CpuUsage, "cpu.stat", Shape::Whole, |b| {
        // The throttling keys exist only where the cpu controller is enabled.
        let needed = if throttling { 6 } else { 3 };
        (scan_keys(b, &mut want) && want[..needed].iter().all(|w| w.1.is_some()))
            .then(|| want.map(|w| w.1))
    }) {
        s.cpu_usage = v[0].map(|us| us as f64 / 1e6);
        s.cpu_user = v[1].map(|us| us as f64 / 1e6);
        s.cpu_system = v[2].map(|us| us as f64 / 1e6);
        if throttling {
            s.cfs_periods = v[3].map(|n| n as f64);
            s.cfs_throttled_periods = v[4].map(|n| n as f64);
            s.cfs_throttled_seconds = v[5].map(|us| us as f64 / 1e6);
        }
    }
    if throttling && spec_due {
        // "max 100000" or "50000 100000"
        if let Some((quota, period)) = file!(F::CpuQuota, "cpu.max", Shape::Whole, |b| {
            let mut f = fields(b);
            let q = f.next()?;
            let quota = if q == b"max" {
                None
            } else {
                Some(parse_u64(q)?)
            };
            Some((quota, parse_u64(f.next()?)?))
        }) {
            s.cpu_quota = quota.map(|q| q as f64);
            s.cpu_period = Some(period as f64);
        }
        s.cpu_shares = file!(F::CpuShares, "cpu.weight", Shape::Whole, parse_u64)
            .map(|w| weight_to_shares(w) as f64);
    }
    if ctrl & MEMORY != 0 {
        let usage = file!(F::MemUsage, "memory.current", Shape::Whole, parse_u64);
        s.mem_usage = usage.map(|v| v as f64);
        let mut want: [(&[u8], Option<u64>); 3] =
            [(b"anon", None), (b"file", None), (b"inactive_file", None)];
        let stat = file!(F::MemStat, "memory.stat", Shape::Whole, |b| {
            (scan_keys(b, &mut want) && want.iter().all(|w| w.1.is_some()))
                .then(|| want.map(|w| w.1.unwrap_or(0)))
        });
        if let Some([anon, file, inactive]) = stat {
            s.mem_rss = Some(anon as f64);
            s.mem_cache = Some(file as f64);
            if let Some(u) = usage {
                s.mem_working_set = Some(u.saturating_sub(inactive) as f64);
            }
        }
        // memory.swap.current exists only with swap accounting: absent means no swap (and
        // is not looked for again until the next spec read).
        let swap_path = || {
            root.join(rel.trim_start_matches('/'))
                .join("memory.swap.current")
        };
        s.mem_swap = if s.no_swap_file || !node_has_swap {
            Some(0.0)
        } else {
            match files[F::MemSwap as usize].read(swap_path, Shape::Whole, r.buf) {
                Ok(b) => parse_u64(b).map(|v| v as f64),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    s.no_swap_file = true;
                    Some(0.0)
                }
                Err(e) => {
                    r.errors
                        .record("cgroup", format_args!("{}: {e}", swap_path().display()));
                    None
                }
            }
        };
        s.mem_failcnt = Some(0.0);
        let mut want: [(&[u8], Option<u64>); 1] = [(b"oom_kill", None)];
        s.oom_events = file!(F::MemOom, "memory.events", Shape::Whole, |b| {
            (scan_keys(b, &mut want))
                .then_some(want[0].1)
                .flatten()
                .map(|v| v as f64)
        });
        if spec_due {
            s.mem_limit = file!(F::MemLimit, "memory.max", Shape::Whole, |b| {
                if b.trim_ascii() == b"max" {
                    Some(0.0)
                } else {
                    parse_u64(b).map(limit_bytes)
                }
            });
        }
    }
    if ctrl & IO != 0 {
        let io = &mut s.io;
        if file!(F::IoBytes, "io.stat", Shape::Whole, |b| parse_io_stat(
            b, io
        ))
        .is_none()
        {
            io.clear();
        }
    }
    if ctrl & PIDS != 0 {
        s.threads = file!(F::Pids, "pids.current", Shape::Whole, parse_u64).map(|v| v as f64);
    }
    if spec_due {
        s.delegates = file!(
            F::Subtree,
            "cgroup.subtree_control",
            Shape::Whole,
            |b| Some(!b.trim_ascii().is_empty())
        )
        .unwrap_or(false);
    }
    if s.delegates {
        s.processes = Some(0.0);
    } else {
        let first = &mut s.first_pid;
        s.processes = file!(F::Procs, "cgroup.procs", Shape::PIDS, |b| count_procs(
            b, first
        ));
    }
    s.mark_alive();
}

/// cAdvisor's conversion of a cgroup v2 `cpu.weight` (1..10000) back to v1 shares (2..262144).
fn weight_to_shares(weight: u64) -> u64 {
    2 + (weight.clamp(1, 10000) - 1) * 262142 / 9999
}

#[cfg(test)]
mod tests;
