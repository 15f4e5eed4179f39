//! The node's procfs tables as parsed: `/proc/stat`, `meminfo`, `loadavg`, `net/dev`,
//! `diskstats`, `mountinfo` and `net/snmp`, each into reused entries. A parser returns
//! false (or `None`) on a malformed file, so its series are skipped rather than partly
//! wrong. Mount points that are not the node's storage are left out here.

use telltale_model::MetricKind;

use crate::kernel_text::{fields, key_value, lines, parse_i64, parse_u64};
use crate::procfs::NetDev;

/// What the last read found; `None` or empty where a file could not be read or parsed.
#[derive(Debug, Default)]
pub(super) struct Tables {
    pub(super) stat: Option<Stat>,
    pub(super) meminfo: Vec<MemEntry>,
    pub(super) loadavg: Option<[f64; 3]>,
    pub(super) net: Vec<NetDev>,
    pub(super) disks: Vec<Disk>,
    pub(super) filesystems: Vec<Filesystem>,
    pub(super) snmp: Option<[i64; SNMP_KEYS.len()]>,
}

/// `/proc/stat`: per-CPU mode times and the system-wide counters.
#[derive(Debug, Default)]
pub(super) struct Stat {
    /// (cpu label, 8 mode counters in ticks)
    pub(super) cpus: Vec<(String, [u64; 8])>,
    pub(super) ctxt: u64,
    pub(super) btime: u64,
    pub(super) forks: u64,
    pub(super) intr: u64,
    pub(super) running: u64,
    pub(super) blocked: u64,
}

/// One `meminfo` field, with the family it is exported as (named once, when first seen).
#[derive(Debug, Default)]
pub(super) struct MemEntry {
    pub(super) family: String,
    pub(super) help: String,
    pub(super) key: String,
    pub(super) value: f64,
}

/// One `diskstats` line.
#[derive(Debug, Default)]
pub(super) struct Disk {
    pub(super) major: u32,
    pub(super) minor: u32,
    pub(super) name: String,
    /// The 11 classic diskstats columns.
    pub(super) v: [u64; 11],
}

/// One reported mount point; the sizes come from statfs, not from `mountinfo`.
#[derive(Debug, Default)]
pub(super) struct Filesystem {
    pub(super) device: String,
    pub(super) fstype: String,
    pub(super) mountpoint: String,
    pub(super) size: f64,
    pub(super) free: f64,
    pub(super) avail: f64,
    pub(super) files: f64,
    pub(super) files_free: f64,
    pub(super) readonly: f64,
}

/// The `net/snmp` counters exported as `node_netstat_<proto>_<key>`, with their types.
pub(super) const SNMP_KEYS: [(&str, &str, MetricKind); 12] = [
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

pub(super) fn parse_stat(buf: &[u8], st: &mut Stat) -> bool {
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

pub(super) fn parse_meminfo(buf: &[u8], out: &mut Vec<MemEntry>) -> bool {
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

pub(super) fn parse_diskstats(buf: &[u8], out: &mut Vec<Disk>) -> bool {
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

pub(super) fn parse_mountinfo(buf: &[u8], out: &mut Vec<Filesystem>) -> bool {
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

pub(super) fn parse_snmp(buf: &[u8]) -> Option<[i64; SNMP_KEYS.len()]> {
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
