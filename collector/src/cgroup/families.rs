//! The container families under cAdvisor's names (`container_*`): names, help, types and
//! units, and how they are written from what the cycle read. Only cgroups that answered
//! this cycle are written; block devices are named `/dev/<name>` where the node knows them,
//! `MAJ:MIN` otherwise; network families are per pod, on the pod-level cgroup.

use std::collections::{BTreeMap, HashMap};

use telltale_model::{MetricKind, Sink};
use MetricKind::{Counter, Gauge, Untyped};

use super::identity::Identity;
use super::network::PodNetworks;
use super::stats::{Cgroup, Io, Stats};
use crate::procfs::{net_family, NET_COLUMNS};

/// Writes the container families into `sink`. `devices` names block devices.
pub(super) fn emit(
    cgroups: &BTreeMap<String, Cgroup>,
    networks: &PodNetworks,
    devices: &HashMap<(u32, u32), String>,
    sink: &mut dyn Sink,
) {
    for f in SCALARS {
        sink.family(f.name, f.help, f.kind);
        for cg in live(cgroups) {
            if let Some(v) = (f.get)(&cg.stats) {
                sink.sample(&cg.labels, f.extra, v);
            }
        }
    }
    let mut unknown = String::new();
    for (name, help, get) in IO_FAMILIES {
        sink.family(name, help, MetricKind::Counter);
        for cg in live(cgroups) {
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
        for cg in live(cgroups) {
            let Identity::Pod { pod_uid } = &cg.identity else {
                continue;
            };
            let Some(devs) = networks.interfaces(pod_uid) else {
                continue;
            };
            for d in devs {
                sink.sample(&cg.labels, &[("interface", &d.name)], d.values[col] as f64);
            }
        }
    }
}

/// Cgroups that answered this cycle.
fn live(cgroups: &BTreeMap<String, Cgroup>) -> impl Iterator<Item = &Cgroup> {
    cgroups.values().filter(|c| c.stats.alive)
}

/// A family with at most one sample per cgroup.
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

/// The per-cgroup families, in exposition order.
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
/// The per-device families, one sample per cgroup and block device.
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
