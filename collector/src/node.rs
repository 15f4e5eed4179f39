//! Node metrics from procfs and statfs, under node_exporter's and cAdvisor's names.
//!
//! Every file is read relative to `--proc-root`; network and mount tables come from PID 1's
//! view (`<proc-root>/1/net/...`, `<proc-root>/1/mountinfo`) so that a containerised
//! collector with the host's /proc mounted reports the host's network namespace and mounts.
//! A file that cannot be read or parsed yields no series this cycle (never a partial value)
//! and one error for its source.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use telltale_model::{LabelSet, MetricKind, Sink};

use crate::cycle_errors::CycleErrors;
use crate::kept_files::{KeptFile, ReadBuf, Shape};
use crate::kernel_text::{fields, key_value, lines, parse_f64, parse_i64, parse_u64};

/// Linux's USER_HZ: /proc/stat and cpuacct.stat count in 1/100 s on every architecture
/// Kubernetes runs on (the kernel ABI fixes it, whatever CONFIG_HZ is).
pub const USER_HZ: f64 = 100.0;

const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// One interface's counters from a `net/dev` table, in the kernel's column order
/// (8 receive columns, then 8 transmit columns).
#[derive(Debug, Default, Clone)]
pub struct NetDev {
    /// Interface name.
    pub name: String,
    /// rx bytes, packets, errs, drop, fifo, frame, compressed, multicast; then tx bytes,
    /// packets, errs, drop, fifo, colls, carrier, compressed.
    pub values: [u64; 16],
}

/// Parses a `net/dev` table into `out`, reusing its entries. Skips `lo`. Returns false (and
/// leaves `out` empty) if a line is malformed.
pub fn parse_net_dev(buf: &[u8], out: &mut Vec<NetDev>) -> bool {
    let mut n = 0;
    for line in lines(buf).skip(2) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            out.clear();
            return false;
        };
        let name = line[..colon].trim_ascii();
        if name == b"lo" {
            continue;
        }
        let Ok(name) = std::str::from_utf8(name) else {
            out.clear();
            return false;
        };
        if out.len() == n {
            out.push(NetDev::default());
        }
        let dev = &mut out[n];
        if dev.name != name {
            dev.name.clear();
            dev.name.push_str(name);
        }
        let mut count = 0;
        for (i, f) in fields(&line[colon + 1..]).enumerate() {
            if i >= 16 {
                break;
            }
            match parse_u64(f) {
                Some(v) => dev.values[i] = v,
                None => {
                    out.clear();
                    return false;
                }
            }
            count += 1;
        }
        if count < 16 {
            out.clear();
            return false;
        }
        n += 1;
    }
    out.truncate(n);
    true
}

/// The families of a pod's or the node's network table: (receive/transmit, column, suffix).
pub(crate) const NET_COLUMNS: [(&str, usize, &str); 8] = [
    ("receive", 0, "bytes"),
    ("receive", 1, "packets"),
    ("receive", 3, "drop"),
    ("receive", 2, "errs"),
    ("transmit", 8, "bytes"),
    ("transmit", 9, "packets"),
    ("transmit", 11, "drop"),
    ("transmit", 10, "errs"),
];

#[derive(Debug, Default)]
struct Stat {
    /// (cpu label, 8 mode counters in ticks)
    cpus: Vec<(String, [u64; 8])>,
    ctxt: u64,
    btime: u64,
    forks: u64,
    intr: u64,
    running: u64,
    blocked: u64,
}

#[derive(Debug, Default)]
struct MemEntry {
    family: String,
    help: String,
    key: String,
    value: f64,
}

#[derive(Debug, Default)]
struct Disk {
    major: u32,
    minor: u32,
    name: String,
    /// The 11 classic diskstats columns.
    v: [u64; 11],
}

#[derive(Debug, Default)]
struct Filesystem {
    device: String,
    fstype: String,
    mountpoint: String,
    size: f64,
    free: f64,
    avail: f64,
    files: f64,
    files_free: f64,
    readonly: f64,
}

const SNMP_KEYS: [(&str, &str, MetricKind); 12] = [
    ("Tcp", "CurrEstab", MetricKind::Gauge),
    ("Tcp", "ActiveOpens", MetricKind::Untyped),
    ("Tcp", "PassiveOpens", MetricKind::Untyped),
    ("Tcp", "InSegs", MetricKind::Untyped),
    ("Tcp", "OutSegs", MetricKind::Untyped),
    ("Tcp", "RetransSegs", MetricKind::Untyped),
    ("Tcp", "InErrs", MetricKind::Untyped),
    ("Tcp", "OutRsts", MetricKind::Untyped),
    ("Udp", "InDatagrams", MetricKind::Untyped),
    ("Udp", "OutDatagrams", MetricKind::Untyped),
    ("Udp", "NoPorts", MetricKind::Untyped),
    ("Udp", "InErrors", MetricKind::Untyped),
];

/// Reads and exports the node's own metrics.
pub struct NodeSource {
    proc_root: PathBuf,
    rootfs: PathBuf,
    files: [KeptFile; 7],
    stat: Option<Stat>,
    meminfo: Vec<MemEntry>,
    loadavg: Option<[f64; 3]>,
    net: Vec<NetDev>,
    disks: Vec<Disk>,
    filesystems: Vec<Filesystem>,
    snmp: Option<[i64; SNMP_KEYS.len()]>,
    devices: HashMap<(u32, u32), String>,
}

const F_STAT: usize = 0;
const F_MEMINFO: usize = 1;
const F_LOADAVG: usize = 2;
const F_NETDEV: usize = 3;
const F_DISKSTATS: usize = 4;
const F_MOUNTINFO: usize = 5;
const F_SNMP: usize = 6;

impl NodeSource {
    /// A source reading `<proc_root>/...` and calling statfs on `<rootfs>/<mountpoint>`.
    pub fn new(proc_root: &Path, rootfs: &Path) -> Self {
        NodeSource {
            proc_root: proc_root.to_owned(),
            rootfs: rootfs.to_owned(),
            files: Default::default(),
            stat: None,
            meminfo: Vec::new(),
            loadavg: None,
            net: Vec::new(),
            disks: Vec::new(),
            filesystems: Vec::new(),
            snmp: None,
            devices: HashMap::new(),
        }
    }

    /// Block device names by (major, minor), as `/dev/<name>`, from the last diskstats read.
    pub fn devices(&self) -> &HashMap<(u32, u32), String> {
        &self.devices
    }

    /// Whether the node has swap configured (meminfo SwapTotal > 0). Unknown counts as yes.
    pub fn has_swap(&self) -> bool {
        self.meminfo
            .iter()
            .find(|m| m.key == "SwapTotal")
            .is_none_or(|m| m.value > 0.0)
    }

    /// Reads every node file once.
    pub fn read(&mut self, buf: &mut ReadBuf, errors: &mut CycleErrors) {
        let root = &self.proc_root;
        // PID 1's view is the host's network namespace and mount table; fall back to the
        // process's own view where PID 1 is not visible (a non-root collector in a container).
        let pid1 = |rel: &str| -> PathBuf {
            let p = root.join("1").join(rel);
            if p.exists() {
                p
            } else {
                root.join(rel)
            }
        };
        macro_rules! read {
            ($slot:expr, $path:expr, $shape:expr, $source:literal) => {
                match self.files[$slot].read(|| $path, $shape, buf) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        errors.record($source, format_args!("{}: {e}", $path.display()));
                        None
                    }
                }
            };
        }

        let b = read!(F_STAT, root.join("stat"), Shape::Whole, "stat");
        self.stat = b.and_then(|b| {
            let mut st = self.stat.take().unwrap_or_default();
            let ok = parse_stat(b, &mut st);
            if !ok {
                errors.record("stat", "malformed /proc/stat");
            }
            ok.then_some(st)
        });

        let b = read!(F_MEMINFO, root.join("meminfo"), Shape::Whole, "meminfo");
        if !b.is_some_and(|b| parse_meminfo(b, &mut self.meminfo)) {
            if b.is_some() {
                errors.record("meminfo", "malformed meminfo");
            }
            self.meminfo.clear();
        }

        let b = read!(F_LOADAVG, root.join("loadavg"), Shape::Whole, "loadavg");
        self.loadavg = b.and_then(|b| {
            let mut it = fields(b).map(parse_f64);
            let v = (|| Some([it.next()??, it.next()??, it.next()??]))();
            if v.is_none() {
                errors.record("loadavg", "malformed loadavg");
            }
            v
        });

        let b = read!(F_NETDEV, pid1("net/dev"), Shape::TABLE, "netdev");
        match b {
            Some(b) if parse_net_dev(b, &mut self.net) => {}
            Some(_) => errors.record("netdev", "malformed net/dev"),
            None => self.net.clear(),
        }

        let b = read!(
            F_DISKSTATS,
            root.join("diskstats"),
            Shape::TABLE,
            "diskstats"
        );
        match b {
            Some(b) if parse_diskstats(b, &mut self.disks) => {
                if self.devices.len() != self.disks.len()
                    || self
                        .disks
                        .iter()
                        .any(|d| !self.devices.contains_key(&(d.major, d.minor)))
                {
                    self.devices = self
                        .disks
                        .iter()
                        .map(|d| ((d.major, d.minor), format!("/dev/{}", d.name)))
                        .collect();
                }
            }
            Some(_) => {
                self.disks.clear();
                errors.record("diskstats", "malformed diskstats");
            }
            None => self.disks.clear(),
        }

        let b = read!(F_MOUNTINFO, pid1("mountinfo"), Shape::MOUNTS, "mountinfo");
        match b {
            Some(b) => {
                if !parse_mountinfo(b, &mut self.filesystems) {
                    errors.record("mountinfo", "malformed mountinfo");
                }
            }
            None => self.filesystems.clear(),
        }
        let rootfs = &self.rootfs;
        self.filesystems.retain_mut(|fs| {
            let path = rootfs.join(fs.mountpoint.trim_start_matches('/'));
            match rustix::fs::statvfs(&path) {
                Ok(s) => {
                    let bs = s.f_frsize as f64;
                    fs.size = s.f_blocks as f64 * bs;
                    fs.free = s.f_bfree as f64 * bs;
                    fs.avail = s.f_bavail as f64 * bs;
                    fs.files = s.f_files as f64;
                    fs.files_free = s.f_ffree as f64;
                    fs.readonly = f64::from(u8::from(
                        s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
                    ));
                    true
                }
                Err(e) => {
                    errors.record("filesystem", format_args!("statfs {}: {e}", path.display()));
                    false
                }
            }
        });

        let b = read!(F_SNMP, pid1("net/snmp"), Shape::Whole, "netstat");
        self.snmp = b.and_then(parse_snmp);
        if b.is_some() && self.snmp.is_none() {
            errors.record("netstat", "malformed net/snmp");
        }
    }

    /// Writes the node families into `sink`.
    pub fn emit(&self, labels: &LabelSet, sink: &mut dyn Sink) {
        use MetricKind::{Counter, Gauge};
        if let Some(st) = &self.stat {
            sink.family(
                "node_cpu_seconds_total",
                "Seconds the CPUs spent in each mode.",
                Counter,
            );
            for (cpu, ticks) in &st.cpus {
                for (mode, t) in CPU_MODES.iter().zip(ticks) {
                    sink.sample(labels, &[("cpu", cpu), ("mode", mode)], *t as f64 / USER_HZ);
                }
            }
            let scalars: [(&str, &str, MetricKind, u64); 6] = [
                (
                    "node_boot_time_seconds",
                    "Node boot time, in unixtime.",
                    Gauge,
                    st.btime,
                ),
                (
                    "node_context_switches_total",
                    "Total number of context switches.",
                    Counter,
                    st.ctxt,
                ),
                (
                    "node_forks_total",
                    "Total number of forks.",
                    Counter,
                    st.forks,
                ),
                (
                    "node_intr_total",
                    "Total number of interrupts serviced.",
                    Counter,
                    st.intr,
                ),
                (
                    "node_procs_running",
                    "Number of processes in runnable state.",
                    Gauge,
                    st.running,
                ),
                (
                    "node_procs_blocked",
                    "Number of processes blocked waiting for I/O to complete.",
                    Gauge,
                    st.blocked,
                ),
            ];
            for (name, help, kind, v) in scalars {
                sink.family(name, help, kind);
                sink.sample(labels, &[], v as f64);
            }
            sink.family("machine_cpu_cores", "Number of logical CPU cores.", Gauge);
            sink.sample(labels, &[], st.cpus.len() as f64);
        }
        for m in &self.meminfo {
            sink.family(&m.family, &m.help, Gauge);
            sink.sample(labels, &[], m.value);
        }
        if let Some(total) = self.meminfo.iter().find(|m| m.key == "MemTotal") {
            sink.family(
                "machine_memory_bytes",
                "Amount of memory installed on the machine.",
                Gauge,
            );
            sink.sample(labels, &[], total.value);
        }
        if let Some(l) = self.loadavg {
            for (name, v) in ["node_load1", "node_load5", "node_load15"].iter().zip(l) {
                sink.family(
                    name,
                    "Load average over the last 1, 5 or 15 minutes.",
                    Gauge,
                );
                sink.sample(labels, &[], v);
            }
        }
        for (dir, col, what) in NET_COLUMNS {
            let name = net_family("node_network", dir, what);
            sink.family(
                &name,
                "Network device statistic from /proc/net/dev.",
                Counter,
            );
            for d in &self.net {
                sink.sample(labels, &[("device", &d.name)], d.values[col] as f64);
            }
        }
        self.emit_disks(labels, sink);
        self.emit_filesystems(labels, sink);
        if let Some(vals) = &self.snmp {
            for ((proto, key, kind), v) in SNMP_KEYS.iter().zip(vals) {
                let name = format!("node_netstat_{proto}_{key}");
                sink.family(&name, "Statistic from /proc/net/snmp.", *kind);
                sink.sample(labels, &[], *v as f64);
            }
        }
    }

    fn emit_disks(&self, labels: &LabelSet, sink: &mut dyn Sink) {
        use MetricKind::{Counter, Gauge};
        // (family, help, type, column, multiplier, divisor): sectors are 512 bytes; times are
        // in ms, divided by 1000 (not multiplied by 0.001) so that 3316 ms is exactly 3.316 s.
        let families: [(&str, &str, MetricKind, usize, f64, f64); 11] = [
            (
                "node_disk_reads_completed_total",
                "The total number of reads completed successfully.",
                Counter,
                0,
                1.0,
                1.0,
            ),
            (
                "node_disk_reads_merged_total",
                "The total number of reads merged.",
                Counter,
                1,
                1.0,
                1.0,
            ),
            (
                "node_disk_read_bytes_total",
                "The total number of bytes read successfully.",
                Counter,
                2,
                512.0,
                1.0,
            ),
            (
                "node_disk_read_time_seconds_total",
                "The total number of seconds spent by all reads.",
                Counter,
                3,
                1.0,
                1000.0,
            ),
            (
                "node_disk_writes_completed_total",
                "The total number of writes completed successfully.",
                Counter,
                4,
                1.0,
                1.0,
            ),
            (
                "node_disk_writes_merged_total",
                "The number of writes merged.",
                Counter,
                5,
                1.0,
                1.0,
            ),
            (
                "node_disk_written_bytes_total",
                "The total number of bytes written successfully.",
                Counter,
                6,
                512.0,
                1.0,
            ),
            (
                "node_disk_write_time_seconds_total",
                "This is the total number of seconds spent by all writes.",
                Counter,
                7,
                1.0,
                1000.0,
            ),
            (
                "node_disk_io_now",
                "The number of I/Os currently in progress.",
                Gauge,
                8,
                1.0,
                1.0,
            ),
            (
                "node_disk_io_time_seconds_total",
                "Total seconds spent doing I/Os.",
                Counter,
                9,
                1.0,
                1000.0,
            ),
            (
                "node_disk_io_time_weighted_seconds_total",
                "The weighted number of seconds spent doing I/Os.",
                Counter,
                10,
                1.0,
                1000.0,
            ),
        ];
        for (name, help, kind, col, mul, div) in families {
            sink.family(name, help, kind);
            for d in self.disks.iter().filter(|d| !ignored_disk(&d.name)) {
                sink.sample(labels, &[("device", &d.name)], d.v[col] as f64 * mul / div);
            }
        }
    }

    fn emit_filesystems(&self, labels: &LabelSet, sink: &mut dyn Sink) {
        use MetricKind::Gauge;
        type Get = fn(&Filesystem) -> f64;
        let families: [(&str, &str, Get); 6] = [
            (
                "node_filesystem_size_bytes",
                "Filesystem size in bytes.",
                |f| f.size,
            ),
            (
                "node_filesystem_free_bytes",
                "Filesystem free space in bytes.",
                |f| f.free,
            ),
            (
                "node_filesystem_avail_bytes",
                "Filesystem space available to non-root users in bytes.",
                |f| f.avail,
            ),
            (
                "node_filesystem_files",
                "Filesystem total file nodes.",
                |f| f.files,
            ),
            (
                "node_filesystem_files_free",
                "Filesystem total free file nodes.",
                |f| f.files_free,
            ),
            (
                "node_filesystem_readonly",
                "Filesystem read-only status.",
                |f| f.readonly,
            ),
        ];
        for (name, help, get) in families {
            sink.family(name, help, Gauge);
            for f in &self.filesystems {
                let extra = [
                    ("device", f.device.as_str()),
                    ("fstype", &f.fstype),
                    ("mountpoint", &f.mountpoint),
                ];
                sink.sample(labels, &extra, get(f));
            }
        }
    }
}

/// `node_network_receive_bytes_total` and friends.
pub(crate) fn net_family(prefix: &str, dir: &str, what: &str) -> String {
    format!("{prefix}_{dir}_{what}_total")
}

fn parse_stat(buf: &[u8], st: &mut Stat) -> bool {
    let mut n = 0;
    let mut seen = 0u8;
    for line in lines(buf) {
        let Some((key, rest)) = key_value(line) else {
            continue;
        };
        if let Some(idx) = key.strip_prefix(b"cpu").filter(|i| !i.is_empty()) {
            let Ok(idx) = std::str::from_utf8(idx) else {
                return false;
            };
            if st.cpus.len() == n {
                st.cpus.push((String::new(), [0; 8]));
            }
            let (name, ticks) = &mut st.cpus[n];
            if name != idx {
                name.clear();
                name.push_str(idx);
            }
            let mut count = 0;
            for (slot, f) in ticks.iter_mut().zip(fields(rest)) {
                let Some(v) = parse_u64(f) else { return false };
                *slot = v;
                count += 1;
            }
            if count < 8 {
                return false;
            }
            n += 1;
            continue;
        }
        let first = || fields(rest).next().and_then(parse_u64);
        let slot = match key {
            b"ctxt" => &mut st.ctxt,
            b"btime" => &mut st.btime,
            b"processes" => &mut st.forks,
            b"intr" => &mut st.intr,
            b"procs_running" => &mut st.running,
            b"procs_blocked" => &mut st.blocked,
            _ => continue,
        };
        let Some(v) = first() else { return false };
        *slot = v;
        seen += 1;
    }
    st.cpus.truncate(n);
    n > 0 && seen == 6
}

/// `Active(anon)` → `node_memory_Active_anon_bytes`, as node_exporter names them.
fn meminfo_family(key: &str, has_unit: bool) -> String {
    let key = key.replace('(', "_").replace(')', "");
    if has_unit {
        format!("node_memory_{key}_bytes")
    } else {
        format!("node_memory_{key}")
    }
}

fn parse_meminfo(buf: &[u8], out: &mut Vec<MemEntry>) -> bool {
    let mut n = 0;
    for line in lines(buf) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let Ok(key) = std::str::from_utf8(&line[..colon]) else {
            return false;
        };
        let mut f = fields(&line[colon + 1..]);
        let Some(v) = f.next().and_then(parse_u64) else {
            return false;
        };
        let kb = f.next() == Some(b"kB");
        if out.len() == n {
            out.push(MemEntry::default());
        }
        let e = &mut out[n];
        if e.key != key {
            e.key = key.to_owned();
            e.family = meminfo_family(key, kb);
            e.help = format!(
                "Memory information field {key} from /proc/meminfo{}.",
                if kb { ", in bytes" } else { "" }
            );
        }
        e.value = if kb { v as f64 * 1024.0 } else { v as f64 };
        n += 1;
    }
    out.truncate(n);
    n > 0
}

fn parse_diskstats(buf: &[u8], out: &mut Vec<Disk>) -> bool {
    let mut n = 0;
    for line in lines(buf) {
        let mut f = fields(line);
        let (Some(maj), Some(min), Some(name)) = (
            f.next().and_then(parse_u64),
            f.next().and_then(parse_u64),
            f.next().and_then(|n| std::str::from_utf8(n).ok()),
        ) else {
            return false;
        };
        if out.len() == n {
            out.push(Disk::default());
        }
        let d = &mut out[n];
        d.major = maj as u32;
        d.minor = min as u32;
        if d.name != name {
            d.name.clear();
            d.name.push_str(name);
        }
        for slot in d.v.iter_mut() {
            let Some(v) = f.next().and_then(parse_u64) else {
                return false;
            };
            *slot = v;
        }
        n += 1;
    }
    out.truncate(n);
    true
}

/// node_exporter's default: RAM disks, loops, floppies and partitions are not reported.
fn ignored_disk(name: &str) -> bool {
    let digits_tail = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if ["ram", "loop", "fd"]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(digits_tail))
    {
        return true;
    }
    // (h|s|v|xv)d[a-z]+<digits>: a partition of a whole disk
    for p in ["xvd", "hd", "sd", "vd"] {
        if let Some(rest) = name.strip_prefix(p) {
            let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            if letters > 0 && digits_tail(&rest[letters..]) {
                return true;
            }
        }
    }
    // nvme<d>n<d>p<d>
    if let Some(rest) = name.strip_prefix("nvme") {
        if let Some(p) = rest.find('p') {
            return rest[..p].contains('n') && digits_tail(&rest[p + 1..]);
        }
    }
    false
}

const PSEUDO_FSTYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "fuse.lxcfs",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
];

/// Mount points that are not the node's storage: kernel interfaces, and the per-container
/// and per-pod mounts of container runtimes and the kubelet (hundreds on a busy node).
fn ignored_mountpoint(m: &str) -> bool {
    let under = |p: &str| m == p || m.strip_prefix(p).is_some_and(|r| r.starts_with('/'));
    [
        "/dev",
        "/proc",
        "/sys",
        "/run/credentials",
        "/run/containerd",
        "/run/netns",
        "/run/k3s",
    ]
    .iter()
    .any(|p| under(p))
        || [
            "/var/lib/docker/",
            "/var/lib/containers/storage/",
            "/var/lib/kubelet/",
            "/run/user/",
        ]
        .iter()
        .any(|p| m.starts_with(p))
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_into(out: &mut String, s: &[u8]) {
    out.clear();
    if !s.contains(&b'\\') {
        out.push_str(&String::from_utf8_lossy(s));
        return;
    }
    let mut bytes = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let octal = s
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if s[i] == b'\\' => {
                bytes.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            _ => {
                bytes.push(s[i]);
                i += 1;
            }
        }
    }
    out.push_str(&String::from_utf8_lossy(&bytes));
}

fn parse_mountinfo(buf: &[u8], out: &mut Vec<Filesystem>) -> bool {
    let mut n = 0;
    let mut ok = true;
    let mut mp = String::new();
    for line in lines(buf) {
        // id parent maj:min root mountpoint options [optional...] - fstype source superoptions
        let mut f = fields(line);
        let Some(mountpoint) = f.nth(4) else {
            ok = false;
            continue;
        };
        let mut f = f.skip_while(|x| *x != b"-");
        let (Some(_), Some(fstype), Some(source)) = (f.next(), f.next(), f.next()) else {
            ok = false;
            continue;
        };
        let Ok(fstype) = std::str::from_utf8(fstype) else {
            continue;
        };
        if PSEUDO_FSTYPES.contains(&fstype) {
            continue;
        }
        unescape_into(&mut mp, mountpoint);
        if ignored_mountpoint(&mp) {
            continue;
        }
        // A later mount on the same point hides the earlier one.
        if let Some(prev) = out[..n].iter_mut().find(|e| e.mountpoint == mp) {
            prev.fstype = fstype.to_owned();
            unescape_into(&mut prev.device, source);
            continue;
        }
        if out.len() == n {
            out.push(Filesystem::default());
        }
        let e = &mut out[n];
        std::mem::swap(&mut e.mountpoint, &mut mp);
        if e.fstype != fstype {
            e.fstype = fstype.to_owned();
        }
        unescape_into(&mut e.device, source);
        n += 1;
    }
    out.truncate(n);
    ok
}

fn parse_snmp(buf: &[u8]) -> Option<[i64; SNMP_KEYS.len()]> {
    let mut out = [i64::MIN; SNMP_KEYS.len()];
    let mut it = lines(buf);
    while let (Some(head), Some(vals)) = (it.next(), it.next()) {
        let (Some(hp), Some(vp)) = (
            head.iter().position(|&b| b == b':'),
            vals.iter().position(|&b| b == b':'),
        ) else {
            return None;
        };
        let proto = &head[..hp];
        if proto != &vals[..vp] {
            return None;
        }
        for (k, v) in fields(&head[hp + 1..]).zip(fields(&vals[vp + 1..])) {
            if let Some(i) = SNMP_KEYS
                .iter()
                .position(|(p, key, _)| p.as_bytes() == proto && key.as_bytes() == k)
            {
                out[i] = parse_i64(v)?;
            }
        }
    }
    out.iter().all(|v| *v != i64::MIN).then_some(out)
}

#[cfg(test)]
mod tests;
