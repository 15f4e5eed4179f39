//! The node families under node_exporter's and cAdvisor's names (`node_*`, `machine_*`):
//! names, help, types and units, written from what the last read parsed. Partitions, RAM
//! disks and loop devices are not reported, as node_exporter does by default.

use telltale_model::{LabelSet, MetricKind, Sink};

use super::tables::{Disk, Filesystem, Tables, SNMP_KEYS};
use crate::procfs::{net_family, NET_COLUMNS, USER_HZ};

const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// Writes the node families into `sink`.
pub(super) fn emit(t: &Tables, labels: &LabelSet, sink: &mut dyn Sink) {
    use MetricKind::{Counter, Gauge};
    if let Some(st) = &t.stat {
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
    for m in &t.meminfo {
        sink.family(&m.family, &m.help, Gauge);
        sink.sample(labels, &[], m.value);
    }
    if let Some(total) = t.meminfo.iter().find(|m| m.key == "MemTotal") {
        sink.family(
            "machine_memory_bytes",
            "Amount of memory installed on the machine.",
            Gauge,
        );
        sink.sample(labels, &[], total.value);
    }
    if let Some(l) = t.loadavg {
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
        for d in &t.net {
            sink.sample(labels, &[("device", &d.name)], d.values[col] as f64);
        }
    }
    emit_disks(&t.disks, labels, sink);
    emit_filesystems(&t.filesystems, labels, sink);
    if let Some(vals) = &t.snmp {
        for ((proto, key, kind), v) in SNMP_KEYS.iter().zip(vals) {
            let name = format!("node_netstat_{proto}_{key}");
            sink.family(&name, "Statistic from /proc/net/snmp.", *kind);
            sink.sample(labels, &[], *v as f64);
        }
    }
}

fn emit_disks(disks: &[Disk], labels: &LabelSet, sink: &mut dyn Sink) {
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
        for d in disks.iter().filter(|d| !ignored_disk(&d.name)) {
            sink.sample(labels, &[("device", &d.name)], d.v[col] as f64 * mul / div);
        }
    }
}

fn emit_filesystems(filesystems: &[Filesystem], labels: &LabelSet, sink: &mut dyn Sink) {
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
        for f in filesystems {
            let extra = [
                ("device", f.device.as_str()),
                ("fstype", &f.fstype),
                ("mountpoint", &f.mountpoint),
            ];
            sink.sample(labels, &extra, get(f));
        }
    }
}

/// node_exporter's default: RAM disks, loops, floppies and partitions are not reported.
pub(super) fn ignored_disk(name: &str) -> bool {
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
