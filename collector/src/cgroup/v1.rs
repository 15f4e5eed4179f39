//! cgroup v1 (and hybrid): one cgroup's files from each controller's hierarchy, into
//! cAdvisor's values: `cpuacct.usage` and `cpuacct.stat`, CFS throttling and limits from
//! `cpu`, `memory.*`, the `blkio` service counters and `pids.current`.

use super::files::{count_procs, io_entry, limit_bytes, parse_dev, Reader};
use super::layout::{Layout, CPU, CPUACCT, IO, MEMORY, PIDS};
use super::stats::{Cgroup, Io, F};
use crate::cycle_errors::CycleErrors;
use crate::kept_files::{ReadBuf, Shape};
use crate::kernel_text::{fields, lines, parse_i64, parse_u64, scan_keys};
use crate::procfs::USER_HZ;

/// Reads one cgroup's files from every v1 controller that has them.
pub(super) fn read(layout: &Layout, cg: &mut Cgroup, buf: &mut ReadBuf, errors: &mut CycleErrors) {
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
