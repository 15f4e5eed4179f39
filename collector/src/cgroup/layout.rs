//! Where the cgroup hierarchies are and which version is read: pure v2 (the unified root),
//! v1 (one directory per controller, co-mounted ones included) or hybrid (v1 controllers
//! beside a unified mount; the v1 controllers are read, as cAdvisor does). Also which
//! controllers have files for a given cgroup, worked out once when it first appears.

use std::path::{Path, PathBuf};

use crate::kept_files::{ReadBuf, Shape};
use crate::kernel_text::fields;

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

/// Controller bits: which controllers have files for a cgroup.
pub(super) const CPU: u8 = 1;
pub(super) const CPUACCT: u8 = 2;
pub(super) const MEMORY: u8 = 4;
pub(super) const IO: u8 = 8;
pub(super) const PIDS: u8 = 16;

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
    pub(super) fn discovery_root(&self) -> Option<&Path> {
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
    pub(super) fn controllers(&self, rel: &str, buf: &mut ReadBuf) -> u8 {
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
