//! cgroup v2: one cgroup's files from the unified hierarchy, into cAdvisor's values:
//! `cpu.stat`, `cpu.max` and `cpu.weight` (as v1 shares), `memory.*`, `io.stat`,
//! `pids.current`; a cgroup that delegates controllers to children holds no process.

use std::path::Path;

use super::files::{count_procs, io_entry, limit_bytes, parse_dev, Reader};
use super::layout::{CPU, IO, MEMORY, PIDS};
use super::stats::{Cgroup, Io, F};
use crate::cycle_errors::CycleErrors;
use crate::kept_files::{ReadBuf, Shape};
use crate::kernel_text::{fields, lines, parse_u64, scan_keys};

/// Reads one cgroup's files from the unified hierarchy under `root`. Without swap on the
/// node (`node_has_swap` false) `memory.swap.current` is not read.
pub(super) fn read(
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

/// cAdvisor's conversion of a cgroup v2 `cpu.weight` (1..10000) back to v1 shares (2..262144).
fn weight_to_shares(weight: u64) -> u64 {
    2 + (weight.clamp(1, 10000) - 1) * 262142 / 9999
}
