//! Node fixture trees in real kernel file formats, for tests and benchmarks.
//!
//! A fixture is a directory holding `proc/`, `sys/fs/cgroup/` and `rootfs/`, laid out as on
//! a Kubernetes node: cgroup v1 with `cpu,cpuacct` co-mounted behind `cpu` and `cpuacct`
//! symlinks, hybrid (the same plus systemd's `unified` cgroup2 mount), or pure v2; the
//! cgroupfs or systemd driver; containerd, CRI-O or Docker naming. File contents follow
//! the formats of Linux 5.x/6.x (key order and all the keys the kernel writes, not only the
//! ones Telltale reads), so parsers are tested against what they will meet.
//!
//! Files are rewritten in place (same inode), as the kernel's are: a collector holding a
//! file open sees new values.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// cgroup layout of a fixture node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// v1 controllers only.
    V1,
    /// v1 controllers plus a `unified` cgroup2 mount (systemd's hybrid mode).
    Hybrid,
    /// The unified hierarchy only.
    V2,
}

/// The kubelet's cgroup driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// `/kubepods/burstable/pod<uid>/<id>`
    Cgroupfs,
    /// `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/<rt>-<id>.scope`
    Systemd,
}

/// The container runtime, which names container cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `cri-containerd-<id>.scope` (systemd) or `<id>` (cgroupfs).
    Containerd,
    /// `crio-<id>.scope` (systemd) or `crio-<id>` (cgroupfs).
    Crio,
    /// `docker-<id>.scope` (systemd) or `<id>` (cgroupfs).
    Docker,
}

/// A pod's QoS class, which places its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// Directly under kubepods.
    Guaranteed,
    /// Under kubepods/burstable.
    Burstable,
    /// Under kubepods/besteffort.
    BestEffort,
}

/// One block device's I/O in a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevIo {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Bytes read.
    pub rbytes: u64,
    /// Bytes written.
    pub wbytes: u64,
    /// Reads completed.
    pub rios: u64,
    /// Writes completed.
    pub wios: u64,
}

/// What a cgroup's files say, in the kernel's units; written as v1 or v2 files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// Total CPU time (v2 usage_usec; v1 cpuacct.usage is this × 1000 ns).
    pub usage_usec: u64,
    /// User CPU time (v1 cpuacct.stat gets it in USER_HZ ticks, so keep it a multiple of 10 ms).
    pub user_usec: u64,
    /// System CPU time (same rule).
    pub system_usec: u64,
    /// CFS periods elapsed.
    pub nr_periods: u64,
    /// CFS periods throttled.
    pub nr_throttled: u64,
    /// Time throttled.
    pub throttled_usec: u64,
    /// memory.usage_in_bytes / memory.current.
    pub memory_usage: u64,
    /// Anonymous memory (v1 total_rss, v2 anon).
    pub anon: u64,
    /// Page cache (v1 total_cache, v2 file).
    pub file: u64,
    /// Inactive page cache.
    pub inactive_file: u64,
    /// Swap in use.
    pub swap: u64,
    /// v1 memory.failcnt.
    pub failcnt: u64,
    /// OOM kills.
    pub oom_kills: u64,
    /// Memory limit; `None` is unlimited.
    pub memory_limit: Option<u64>,
    /// CFS quota; `None` is unlimited.
    pub cpu_quota_us: Option<u64>,
    /// CFS period.
    pub cpu_period_us: u64,
    /// v1 cpu.shares (v2 gets the matching cpu.weight).
    pub cpu_shares: u64,
    /// Block I/O per device.
    pub io: Vec<DevIo>,
    /// Processes (cgroup.procs).
    pub pids: Vec<u32>,
    /// Threads (pids.current).
    pub threads: u64,
}

impl Usage {
    /// Plausible, distinct values derived from `seed`.
    pub fn sample(seed: u64) -> Usage {
        let s = seed + 1;
        Usage {
            usage_usec: 1_000_000 * s + 123_456,
            user_usec: 600_000 * s,
            system_usec: 300_000 * s,
            nr_periods: 1000 * s,
            nr_throttled: 10 * s,
            throttled_usec: 5_000 * s,
            memory_usage: 100 * 1024 * 1024 + s * 4096,
            anon: 60 * 1024 * 1024 + s * 4096,
            file: 30 * 1024 * 1024,
            inactive_file: 20 * 1024 * 1024,
            swap: 0,
            failcnt: s % 3,
            oom_kills: s % 2,
            memory_limit: Some(512 * 1024 * 1024),
            cpu_quota_us: Some(50_000),
            cpu_period_us: 100_000,
            cpu_shares: 512,
            io: vec![DevIo {
                major: 254,
                minor: 0,
                rbytes: 4096 * s,
                wbytes: 8192 * s,
                rios: s,
                wios: 2 * s,
            }],
            pids: vec![],
            threads: 0,
        }
    }
}

/// A fixture node under a directory.
#[derive(Debug, Clone)]
pub struct Node {
    root: PathBuf,
    version: Version,
    driver: Driver,
}

const DELEGATED: &str = "cpuset cpu io memory hugetlb pids rdma misc\n";

const V1_DIRS: [&str; 5] = ["cpu,cpuacct", "memory", "blkio", "pids", "systemd"];

impl Node {
    /// Creates an empty node (procfs files, cgroup roots, a rootfs with two mount points)
    /// under `root`.
    pub fn new(root: &Path, version: Version, driver: Driver) -> io::Result<Node> {
        let node = Node {
            root: root.to_owned(),
            version,
            driver,
        };
        let cg = node.sys_root().join("fs/cgroup");
        fs::create_dir_all(&cg)?;
        match version {
            Version::V1 | Version::Hybrid => {
                for d in V1_DIRS {
                    fs::create_dir_all(cg.join(d))?;
                    write(&cg.join(d).join("cgroup.procs"), "1\n")?;
                    write(&cg.join(d).join("cgroup.clone_children"), "0\n")?;
                }
                std::os::unix::fs::symlink("cpu,cpuacct", cg.join("cpu"))?;
                std::os::unix::fs::symlink("cpu,cpuacct", cg.join("cpuacct"))?;
                write(&cg.join("cpu,cpuacct/cpuacct.usage"), "99000000000\n")?;
                write(
                    &cg.join("blkio/blkio.throttle.io_service_bytes_recursive"),
                    "Total 0\n",
                )?;
                if version == Version::Hybrid {
                    let u = cg.join("unified");
                    fs::create_dir_all(&u)?;
                    write(&u.join("cgroup.controllers"), "\n")?;
                    write(&u.join("cgroup.procs"), "1\n")?;
                    write(
                        &u.join("cpu.stat"),
                        "usage_usec 99000000\nuser_usec 60000000\nsystem_usec 39000000\n",
                    )?;
                }
            }
            Version::V2 => {
                write(
                    &cg.join("cgroup.controllers"),
                    "cpuset cpu io memory hugetlb pids rdma misc\n",
                )?;
                write(
                    &cg.join("cgroup.subtree_control"),
                    "cpuset cpu io memory pids\n",
                )?;
                write(&cg.join("cgroup.procs"), "1\n")?;
                write(
                    &cg.join("cpu.stat"),
                    "usage_usec 99000000\nuser_usec 60000000\nsystem_usec 39000000\n",
                )?;
            }
        }
        node.write_proc()?;
        Ok(node)
    }

    /// The fixture's `--proc-root`.
    pub fn proc_root(&self) -> PathBuf {
        self.root.join("proc")
    }

    /// The fixture's `--sys-root`.
    pub fn sys_root(&self) -> PathBuf {
        self.root.join("sys")
    }

    /// The fixture's `--rootfs` (mount points of its mountinfo exist under it).
    pub fn rootfs(&self) -> PathBuf {
        self.root.join("rootfs")
    }

    /// `--proc-root`, `--sys-root` and `--rootfs` flags reading this node.
    pub fn root_flags(&self) -> Vec<String> {
        let path = |p: PathBuf| p.display().to_string();
        vec![
            "--proc-root".into(),
            path(self.proc_root()),
            "--sys-root".into(),
            path(self.sys_root()),
            "--rootfs".into(),
            path(self.rootfs()),
        ]
    }

    /// Collector options reading this node (15 s interval, no Kubernetes).
    pub fn options(&self, cluster: &str, node_name: &str) -> crate::options::Options {
        crate::options::Options {
            cluster: cluster.into(),
            node_name: node_name.into(),
            proc_root: self.proc_root(),
            sys_root: self.sys_root(),
            rootfs: self.rootfs(),
            interval: std::time::Duration::from_secs(15),
            no_kube: true,
            kubeconfig: None,
            cluster_state: false,
            pod_annotations_allowlist: String::new(),
            remote: crate::ship::Config::default(),
        }
    }

    /// The cgroup layout.
    pub fn version(&self) -> Version {
        self.version
    }

    fn qos_parts(&self, qos: Qos) -> Vec<String> {
        match (self.driver, qos) {
            (Driver::Cgroupfs, Qos::Guaranteed) => vec!["kubepods".into()],
            (Driver::Cgroupfs, Qos::Burstable) => vec!["kubepods".into(), "burstable".into()],
            (Driver::Cgroupfs, Qos::BestEffort) => vec!["kubepods".into(), "besteffort".into()],
            (Driver::Systemd, Qos::Guaranteed) => vec!["kubepods.slice".into()],
            (Driver::Systemd, Qos::Burstable) => {
                vec!["kubepods.slice".into(), "kubepods-burstable.slice".into()]
            }
            (Driver::Systemd, Qos::BestEffort) => {
                vec!["kubepods.slice".into(), "kubepods-besteffort.slice".into()]
            }
        }
    }

    /// The path of a pod's cgroup relative to the hierarchy root.
    pub fn pod_rel(&self, qos: Qos, uid: &str) -> String {
        let mut parts = self.qos_parts(qos);
        parts.push(match self.driver {
            Driver::Cgroupfs => format!("pod{uid}"),
            Driver::Systemd => {
                let prefix = parts
                    .last()
                    .map(|p| p.trim_end_matches(".slice").to_owned())
                    .unwrap_or_default();
                format!("{prefix}-pod{}.slice", uid.replace('-', "_"))
            }
        });
        format!("/{}", parts.join("/"))
    }

    /// The path of a container's cgroup relative to the hierarchy root.
    pub fn container_rel(&self, qos: Qos, uid: &str, runtime: Runtime, id: &str) -> String {
        let leaf = match (self.driver, runtime) {
            (Driver::Cgroupfs, Runtime::Crio) => format!("crio-{id}"),
            (Driver::Cgroupfs, _) => id.to_owned(),
            (Driver::Systemd, Runtime::Containerd) => format!("cri-containerd-{id}.scope"),
            (Driver::Systemd, Runtime::Crio) => format!("crio-{id}.scope"),
            (Driver::Systemd, Runtime::Docker) => format!("docker-{id}.scope"),
        };
        format!("{}/{leaf}", self.pod_rel(qos, uid))
    }

    /// The directories of cgroup `rel` in every hierarchy of the layout.
    fn dirs(&self, rel: &str) -> Vec<PathBuf> {
        let cg = self.sys_root().join("fs/cgroup");
        let rel = rel.trim_start_matches('/');
        match self.version {
            Version::V1 => V1_DIRS.iter().map(|d| cg.join(d).join(rel)).collect(),
            Version::Hybrid => V1_DIRS
                .iter()
                .chain(&["unified"])
                .map(|d| cg.join(d).join(rel))
                .collect(),
            Version::V2 => vec![cg.join(rel)],
        }
    }

    /// A file of cgroup `rel`: for v1, `controller` picks the hierarchy (`cpu,cpuacct`,
    /// `memory`, `blkio`, `pids`); for v2 it is ignored.
    pub fn cgroup_file(&self, rel: &str, controller: &str, name: &str) -> PathBuf {
        let cg = self.sys_root().join("fs/cgroup");
        let rel = rel.trim_start_matches('/');
        match self.version {
            Version::V2 => cg.join(rel).join(name),
            _ => cg.join(controller).join(rel).join(name),
        }
    }

    /// Creates (or rewrites) cgroup `rel` and its ancestors with `usage`'s values.
    /// Ancestors that do not exist yet get empty-usage files.
    pub fn write_cgroup(&self, rel: &str, usage: &Usage) -> io::Result<()> {
        let parts: Vec<&str> = rel.trim_start_matches('/').split('/').collect();
        for i in 1..parts.len() {
            let anc = format!("/{}", parts[..i].join("/"));
            if !self.dirs(&anc)[0].exists() {
                self.write_files(
                    &anc,
                    &Usage {
                        memory_limit: None,
                        cpu_quota_us: None,
                        io: vec![],
                        ..Usage::sample(0)
                    },
                )?;
            }
        }
        self.write_files(rel, usage)
    }

    fn write_files(&self, rel: &str, u: &Usage) -> io::Result<()> {
        for d in self.dirs(rel) {
            fs::create_dir_all(&d)?;
        }
        let procs: String = u.pids.iter().map(|p| format!("{p}\n")).collect();
        match self.version {
            Version::V1 | Version::Hybrid => {
                let f = |ctrl: &str, name: &str| self.cgroup_file(rel, ctrl, name);
                for d in V1_DIRS {
                    write(&f(d, "cgroup.procs"), &procs)?;
                    write(&f(d, "cgroup.clone_children"), "0\n")?;
                }
                let c = "cpu,cpuacct";
                write(
                    &f(c, "cpuacct.usage"),
                    &format!("{}\n", u.usage_usec * 1000),
                )?;
                write(
                    &f(c, "cpuacct.stat"),
                    &format!(
                        "user {}\nsystem {}\n",
                        u.user_usec / 10_000,
                        u.system_usec / 10_000
                    ),
                )?;
                write(&f(c, "cpu.stat"), &format!(
                    "nr_periods {}\nnr_throttled {}\nthrottled_time {}\nnr_bursts 0\nburst_time 0\n",
                    u.nr_periods, u.nr_throttled, u.throttled_usec * 1000
                ))?;
                let quota = u.cpu_quota_us.map_or("-1".to_owned(), |q| q.to_string());
                write(&f(c, "cpu.cfs_quota_us"), &format!("{quota}\n"))?;
                write(
                    &f(c, "cpu.cfs_period_us"),
                    &format!("{}\n", u.cpu_period_us),
                )?;
                write(&f(c, "cpu.shares"), &format!("{}\n", u.cpu_shares))?;
                let m = "memory";
                write(
                    &f(m, "memory.usage_in_bytes"),
                    &format!("{}\n", u.memory_usage),
                )?;
                write(&f(m, "memory.stat"), &v1_memory_stat(u))?;
                write(&f(m, "memory.failcnt"), &format!("{}\n", u.failcnt))?;
                write(
                    &f(m, "memory.oom_control"),
                    &format!(
                        "oom_kill_disable 0\nunder_oom 0\noom_kill {}\n",
                        u.oom_kills
                    ),
                )?;
                let limit = u.memory_limit.unwrap_or(9_223_372_036_854_771_712);
                write(&f(m, "memory.limit_in_bytes"), &format!("{limit}\n"))?;
                let (mut bytes, mut ops) = (String::new(), String::new());
                for d in &u.io {
                    let dev = format!("{}:{}", d.major, d.minor);
                    for (out, r, w) in
                        [(&mut bytes, d.rbytes, d.wbytes), (&mut ops, d.rios, d.wios)]
                    {
                        let _ = write!(out, "{dev} Read {r}\n{dev} Write {w}\n{dev} Sync {w}\n{dev} Async {r}\n{dev} Discard 0\n{dev} Total {}\n", r + w);
                    }
                }
                let total: u64 = u.io.iter().map(|d| d.rbytes + d.wbytes).sum();
                let _ = writeln!(bytes, "Total {total}");
                let total: u64 = u.io.iter().map(|d| d.rios + d.wios).sum();
                let _ = writeln!(ops, "Total {total}");
                write(
                    &f("blkio", "blkio.throttle.io_service_bytes_recursive"),
                    &bytes,
                )?;
                write(&f("blkio", "blkio.throttle.io_serviced_recursive"), &ops)?;
                write(&f("pids", "pids.current"), &format!("{}\n", u.threads))?;
                if self.version == Version::Hybrid {
                    let un = self.dirs(rel).pop().unwrap_or_default();
                    write(&un.join("cgroup.procs"), &procs)?;
                    write(&un.join("cgroup.controllers"), "\n")?;
                    write(
                        &un.join("cpu.stat"),
                        &format!("usage_usec {}\nuser_usec 1\nsystem_usec 1\n", u.usage_usec),
                    )?;
                }
            }
            Version::V2 => {
                let f = |name: &str| self.cgroup_file(rel, "", name);
                write(
                    &f("cgroup.controllers"),
                    "cpuset cpu io memory hugetlb pids rdma misc\n",
                )?;
                // Non-leaf cgroups (QoS, pods) delegate controllers to their children.
                let leaf = !self.dirs(rel)[0]
                    .read_dir()?
                    .flatten()
                    .any(|e| e.path().is_dir());
                write(
                    &f("cgroup.subtree_control"),
                    if leaf { "\n" } else { DELEGATED },
                )?;
                let parts: Vec<&str> = rel.trim_start_matches('/').split('/').collect();
                for i in 1..parts.len() {
                    let anc = format!("/{}", parts[..i].join("/"));
                    write(
                        &self.cgroup_file(&anc, "", "cgroup.subtree_control"),
                        DELEGATED,
                    )?;
                }
                write(&f("cgroup.events"), "populated 1\nfrozen 0\n")?;
                write(&f("cgroup.procs"), &procs)?;
                write(&f("cpu.stat"), &format!(
                    "usage_usec {}\nuser_usec {}\nsystem_usec {}\ncore_sched.force_idle_usec 0\nnr_periods {}\nnr_throttled {}\nthrottled_usec {}\nnr_bursts 0\nburst_usec 0\n",
                    u.usage_usec, u.user_usec, u.system_usec, u.nr_periods, u.nr_throttled, u.throttled_usec
                ))?;
                let quota = u.cpu_quota_us.map_or("max".to_owned(), |q| q.to_string());
                write(&f("cpu.max"), &format!("{quota} {}\n", u.cpu_period_us))?;
                // runc's conversion from shares to weight
                let weight = 1 + (u.cpu_shares.max(2) - 2) * 9999 / 262142;
                write(&f("cpu.weight"), &format!("{weight}\n"))?;
                write(&f("memory.current"), &format!("{}\n", u.memory_usage))?;
                write(&f("memory.stat"), &v2_memory_stat(u))?;
                write(&f("memory.swap.current"), &format!("{}\n", u.swap))?;
                write(
                    &f("memory.events"),
                    &format!(
                        "low 0\nhigh 0\nmax 0\noom 0\noom_kill {}\noom_group_kill 0\n",
                        u.oom_kills
                    ),
                )?;
                let limit = u.memory_limit.map_or("max".to_owned(), |l| l.to_string());
                write(&f("memory.max"), &format!("{limit}\n"))?;
                let mut io = String::new();
                for d in &u.io {
                    let _ = writeln!(
                        io,
                        "{}:{} rbytes={} wbytes={} rios={} wios={} dbytes=0 dios=0",
                        d.major, d.minor, d.rbytes, d.wbytes, d.rios, d.wios
                    );
                }
                write(&f("io.stat"), &io)?;
                write(&f("pids.current"), &format!("{}\n", u.threads))?;
            }
        }
        Ok(())
    }

    /// Removes cgroup `rel` (and anything below it) from every hierarchy.
    pub fn remove_cgroup(&self, rel: &str) -> io::Result<()> {
        for d in self.dirs(rel) {
            fs::remove_dir_all(d)?;
        }
        Ok(())
    }

    /// Sets cgroup `rel`'s creation time (directory and marker file mtimes).
    pub fn set_start_time(&self, rel: &str, unix_seconds: i64) -> io::Result<()> {
        use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
        let t = Timespec {
            tv_sec: unix_seconds,
            tv_nsec: 0,
        };
        let times = Timestamps {
            last_access: t,
            last_modification: t,
        };
        let marker = match self.version {
            Version::V2 => "cgroup.events",
            _ => "cgroup.clone_children",
        };
        for d in self.dirs(rel) {
            if d.join(marker).exists() {
                rustix::fs::utimensat(CWD, d.join(marker), &times, AtFlags::empty())?;
            }
            rustix::fs::utimensat(CWD, &d, &times, AtFlags::empty())?;
        }
        Ok(())
    }

    /// Writes `/proc/<pid>/net/dev` for a process in a pod's network namespace.
    pub fn write_pod_net(&self, pid: u32, rx_bytes: u64, tx_bytes: u64) -> io::Result<()> {
        let dir = self.proc_root().join(pid.to_string()).join("net");
        fs::create_dir_all(&dir)?;
        write(
            &dir.join("dev"),
            &net_dev(&[
                (
                    "lo",
                    [1000, 10, 0, 0, 0, 0, 0, 0, 1000, 10, 0, 0, 0, 0, 0, 0],
                ),
                (
                    "eth0",
                    [
                        rx_bytes,
                        rx_bytes / 1000,
                        1,
                        2,
                        0,
                        0,
                        0,
                        0,
                        tx_bytes,
                        tx_bytes / 1000,
                        3,
                        4,
                        0,
                        0,
                        0,
                        0,
                    ],
                ),
            ]),
        )
    }

    /// Writes the node's procfs files with fixed, known values.
    pub fn write_proc(&self) -> io::Result<()> {
        let p = self.proc_root();
        fs::create_dir_all(p.join("1/net"))?;
        write(&p.join("stat"), PROC_STAT)?;
        write(&p.join("meminfo"), PROC_MEMINFO)?;
        write(&p.join("loadavg"), "0.26 0.06 0.02 4/83 2137\n")?;
        write(&p.join("diskstats"), PROC_DISKSTATS)?;
        write(
            &p.join("1/net/dev"),
            &net_dev(&[
                (
                    "lo",
                    [3193, 29, 0, 0, 0, 0, 0, 0, 3193, 29, 0, 0, 0, 0, 0, 0],
                ),
                (
                    "eth0",
                    [
                        55_814_743, 1447, 1, 2, 0, 0, 0, 0, 62_324, 787, 3, 4, 0, 0, 0, 0,
                    ],
                ),
            ]),
        )?;
        write(&p.join("1/net/snmp"), PROC_SNMP)?;
        let rootfs = self.rootfs();
        fs::create_dir_all(rootfs.join("data"))?;
        fs::create_dir_all(rootfs.join("mnt/with space"))?;
        write(&p.join("1/mountinfo"), PROC_MOUNTINFO)?;
        Ok(())
    }
}

/// A pod UID that is stable for `i`.
pub fn pod_uid(i: usize) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", 0x5eed_0000 + i, i)
}

/// A 64-hex-digit container id that is stable for `i`.
pub fn container_id(i: usize) -> String {
    format!("{:016x}{:048x}", 0xc0ffee_u64 + i as u64, i)
}

/// Fills `node` with `pods` pods holding `containers` containers in all, sandboxes
/// included (each pod has its sandbox plus one or more application containers, spread
/// evenly), a few system services outside kubepods, and a network table per pod. Returns
/// the container cgroup paths.
pub fn populate(
    node: &Node,
    pods: usize,
    containers: usize,
    runtime: Runtime,
) -> io::Result<Vec<String>> {
    let mut rels = Vec::new();
    for svc in [
        "containerd.service",
        "kubelet.service",
        "sshd.service",
        "systemd-journald.service",
        "cron.service",
    ] {
        let rel = format!("/system.slice/{svc}");
        node.write_cgroup(&rel, &Usage::sample(7))?;
        node.set_start_time(&rel, 1_700_000_000)?;
    }
    let mut next = 0;
    for p in 0..pods {
        let qos = [
            Qos::Burstable,
            Qos::Burstable,
            Qos::BestEffort,
            Qos::Guaranteed,
        ][p % 4];
        let uid = pod_uid(p);
        let pod = node.pod_rel(qos, &uid);
        node.write_cgroup(
            &pod,
            &Usage {
                pids: vec![],
                ..Usage::sample(p as u64)
            },
        )?;
        let per_pod = containers / pods + usize::from(p < containers % pods);
        for c in 0..per_pod.max(1) {
            let rel = node.container_rel(qos, &uid, runtime, &container_id(next));
            let pid = 10_000 + 10 * next as u32;
            let usage = Usage {
                pids: vec![pid, pid + 1],
                threads: 7,
                ..Usage::sample(next as u64)
            };
            node.write_cgroup(&rel, &usage)?;
            node.set_start_time(&rel, 1_700_000_000 + next as i64)?;
            if c == 0 {
                node.write_pod_net(pid, 1_000_000 + p as u64, 2_000_000 + p as u64)?;
            }
            rels.push(rel);
            next += 1;
        }
        node.set_start_time(&pod, 1_700_000_000)?;
    }
    Ok(rels)
}

fn write(path: &Path, content: &str) -> io::Result<()> {
    fs::write(path, content)
}

fn net_dev(rows: &[(&str, [u64; 16])]) -> String {
    let mut s = String::from(
        "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
    );
    for (name, v) in rows {
        let _ = write!(s, "{name:>6}:");
        for x in v {
            let _ = write!(s, " {x:>8}");
        }
        s.push('\n');
    }
    s
}

fn v1_memory_stat(u: &Usage) -> String {
    let active_file = u.file - u.inactive_file;
    let mut s = String::new();
    for prefix in ["", "total_"] {
        let _ = write!(
            s,
            "{prefix}cache {}\n{prefix}rss {}\n{prefix}rss_huge 0\n{prefix}shmem 0\n{prefix}mapped_file 4096\n{prefix}dirty 0\n{prefix}writeback 0\n{prefix}swap {}\n{prefix}pgpgin 100\n{prefix}pgpgout 50\n{prefix}pgfault 300\n{prefix}pgmajfault 1\n{prefix}inactive_anon {}\n{prefix}active_anon 0\n{prefix}inactive_file {}\n{prefix}active_file {active_file}\n{prefix}unevictable 0\n",
            u.file, u.anon, u.swap, u.anon, u.inactive_file
        );
        if prefix.is_empty() {
            let limit = u.memory_limit.unwrap_or(9_223_372_036_854_771_712);
            let _ = write!(
                s,
                "hierarchical_memory_limit {limit}\nhierarchical_memsw_limit 9223372036854771712\n"
            );
        }
    }
    s
}

fn v2_memory_stat(u: &Usage) -> String {
    let active_file = u.file - u.inactive_file;
    format!(
        "anon {}\nfile {}\nkernel 1048576\nkernel_stack 65536\npagetables 131072\nsec_pagetables 0\npercpu 0\nsock 0\nvmalloc 0\nshmem 0\nzswap 0\nzswapped 0\nfile_mapped 4096\nfile_dirty 0\nfile_writeback 0\nswapcached 0\nanon_thp 0\nfile_thp 0\nshmem_thp 0\ninactive_anon {}\nactive_anon 0\ninactive_file {}\nactive_file {active_file}\nunevictable 0\nslab_reclaimable 0\nslab_unreclaimable 0\nslab 0\nworkingset_refault_anon 0\nworkingset_refault_file 0\nworkingset_activate_anon 0\nworkingset_activate_file 0\nworkingset_restore_anon 0\nworkingset_restore_file 0\nworkingset_nodereclaim 0\npgscan 0\npgsteal 0\npgfault 300\npgmajfault 1\n",
        u.anon, u.file, u.anon, u.inactive_file
    )
}

/// /proc/stat of a 2-CPU node (Linux 6.x columns).
pub const PROC_STAT: &str = "cpu  1489 0 899 7859 155 0 34 43 0 0
cpu0 500 0 405 4298 16 0 11 21 0 0
cpu1 989 0 494 3561 139 0 23 22 0 0
intr 70759 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 1 10 0 0
ctxt 150180
btime 1795461552
processes 2132
procs_running 2
procs_blocked 1
softirq 37281 2 11013 1 3011 1110 0 55 11023 0 11066
";

/// /proc/meminfo (Linux 6.x keys).
pub const PROC_MEMINFO: &str = "MemTotal:       24683656 kB
MemFree:        23871368 kB
MemAvailable:   24311112 kB
Buffers:           28988 kB
Cached:           614808 kB
SwapCached:            0 kB
Active:           178596 kB
Inactive:         461840 kB
Active(anon):       1564 kB
Inactive(anon):    55196 kB
Active(file):     177032 kB
Inactive(file):   406644 kB
Unevictable:        8912 kB
Mlocked:               0 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Dirty:               212 kB
Writeback:             0 kB
AnonPages:         55436 kB
Mapped:            85296 kB
Shmem:              9120 kB
KReclaimable:      32088 kB
Slab:              62476 kB
SReclaimable:      32088 kB
SUnreclaim:        30388 kB
KernelStack:        2656 kB
PageTables:         2040 kB
CommitLimit:    12341828 kB
Committed_AS:     238820 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       12756 kB
VmallocChunk:          0 kB
Percpu:             1200 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:               0 kB
";

/// /proc/diskstats: a virtio disk and its partition, a loop device, an NVMe namespace.
pub const PROC_DISKSTATS: &str = "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 5629 2988 867106 3626 622 1195 332560 2015 0 3316 6416 3006 66 97256 731 58 42
 254       1 vda1 5500 2900 860000 3600 600 1100 330000 2000 0 3300 6400 0 0 0 0 0 0
 259       0 nvme0n1 100 5 2048 40 200 10 4096 80 1 150 120 0 0 0 0 0 0
";

/// /proc/net/snmp (the lines Telltale reads and their neighbours).
pub const PROC_SNMP: &str = "Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits
Ip: 1 64 1479 0 0 0 0 0 1479 803 0 0 0 0 0 0 0 0 0 803
Icmp: InMsgs InErrors InCsumErrors InDestUnreachs InTimeExcds InParmProbs InSrcQuenchs InRedirects InEchos InEchoReps InTimestamps InTimestampReps InAddrMasks InAddrMaskReps OutMsgs OutErrors OutRateLimitGlobal OutRateLimitHost OutDestUnreachs OutTimeExcds OutParmProbs OutSrcQuenchs OutRedirects OutEchos OutEchoReps OutTimestamps OutTimestampReps OutAddrMasks OutAddrMaskReps
Icmp: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 12 2 0 0 5 1450 784 3 0 2 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 40 1 0 41 0 0 0 0 0
";

/// PID 1's mountinfo: a root and a data volume, one mount point with a space, and the
/// pseudo and per-pod mounts that must be left out.
pub const PROC_MOUNTINFO: &str = r"22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334432k
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 27 254:16 / /data rw,relatime shared:1 - xfs /dev/vdb rw
51 27 254:17 / /mnt/with\040space rw,relatime - ext4 /dev/vdc rw
60 27 0:50 / /var/lib/kubelet/pods/0f6c1a52/volumes/kubernetes.io~projected/kube-api-access rw,relatime - tmpfs tmpfs rw
61 27 0:51 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw,relatime - overlay overlay rw
";
