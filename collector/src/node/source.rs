//! The node source: which procfs files it reads (PID 1's view for the network and mount
//! tables), with kept handles, and statfs of every mount point it reports. A file that
//! cannot be read or parsed yields no series this cycle and one error for its source.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use telltale_model::{LabelSet, Sink};

use super::families;
use super::tables::{
    parse_diskstats, parse_meminfo, parse_mountinfo, parse_snmp, parse_stat, Tables,
};
use crate::cycle_errors::CycleErrors;
use crate::kept_files::{KeptFile, ReadBuf, Shape};
use crate::kernel_text::{fields, parse_f64};
use crate::procfs::parse_net_dev;

/// Reads and exports the node's own metrics.
pub struct NodeSource {
    proc_root: PathBuf,
    rootfs: PathBuf,
    files: [KeptFile; 7],
    tables: Tables,
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
            tables: Tables::default(),
            devices: HashMap::new(),
        }
    }

    /// Block device names by (major, minor), as `/dev/<name>`, from the last diskstats read.
    pub fn devices(&self) -> &HashMap<(u32, u32), String> {
        &self.devices
    }

    /// Whether the node has swap configured (meminfo SwapTotal > 0). Unknown counts as yes.
    pub fn has_swap(&self) -> bool {
        self.tables
            .meminfo
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
        self.tables.stat = b.and_then(|b| {
            let mut st = self.tables.stat.take().unwrap_or_default();
            let ok = parse_stat(b, &mut st);
            if !ok {
                errors.record("stat", "malformed /proc/stat");
            }
            ok.then_some(st)
        });

        let b = read!(F_MEMINFO, root.join("meminfo"), Shape::Whole, "meminfo");
        if !b.is_some_and(|b| parse_meminfo(b, &mut self.tables.meminfo)) {
            if b.is_some() {
                errors.record("meminfo", "malformed meminfo");
            }
            self.tables.meminfo.clear();
        }

        let b = read!(F_LOADAVG, root.join("loadavg"), Shape::Whole, "loadavg");
        self.tables.loadavg = b.and_then(|b| {
            let mut it = fields(b).map(parse_f64);
            let v = (|| Some([it.next()??, it.next()??, it.next()??]))();
            if v.is_none() {
                errors.record("loadavg", "malformed loadavg");
            }
            v
        });

        let b = read!(F_NETDEV, pid1("net/dev"), Shape::TABLE, "netdev");
        match b {
            Some(b) if parse_net_dev(b, &mut self.tables.net) => {}
            Some(_) => errors.record("netdev", "malformed net/dev"),
            None => self.tables.net.clear(),
        }

        let b = read!(
            F_DISKSTATS,
            root.join("diskstats"),
            Shape::TABLE,
            "diskstats"
        );
        match b {
            Some(b) if parse_diskstats(b, &mut self.tables.disks) => {
                if self.devices.len() != self.tables.disks.len()
                    || self
                        .tables
                        .disks
                        .iter()
                        .any(|d| !self.devices.contains_key(&(d.major, d.minor)))
                {
                    self.devices = self
                        .tables
                        .disks
                        .iter()
                        .map(|d| ((d.major, d.minor), format!("/dev/{}", d.name)))
                        .collect();
                }
            }
            Some(_) => {
                self.tables.disks.clear();
                errors.record("diskstats", "malformed diskstats");
            }
            None => self.tables.disks.clear(),
        }

        let b = read!(F_MOUNTINFO, pid1("mountinfo"), Shape::MOUNTS, "mountinfo");
        match b {
            Some(b) => {
                if !parse_mountinfo(b, &mut self.tables.filesystems) {
                    errors.record("mountinfo", "malformed mountinfo");
                }
            }
            None => self.tables.filesystems.clear(),
        }
        let rootfs = &self.rootfs;
        self.tables.filesystems.retain_mut(|fs| {
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
        self.tables.snmp = b.and_then(parse_snmp);
        if b.is_some() && self.tables.snmp.is_none() {
            errors.record("netstat", "malformed net/snmp");
        }
    }

    /// Writes the node families into `sink`.
    pub fn emit(&self, labels: &LabelSet, sink: &mut dyn Sink) {
        families::emit(&self.tables, labels, sink);
    }
}
