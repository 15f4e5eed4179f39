//! The procfs formats both the node and the cgroup sources read: the clock tick that
//! `/proc/stat` and cgroup v1's `cpuacct.stat` count in, and the `net/dev` table (the
//! node's, and each pod's network namespace as `/proc/<pid>/net/dev`) with the family names
//! its columns are exported under.

use crate::kernel_text::{fields, lines, parse_u64};

/// Linux's USER_HZ: /proc/stat and cpuacct.stat count in 1/100 s on every architecture
/// Kubernetes runs on (the kernel ABI fixes it, whatever CONFIG_HZ is).
pub const USER_HZ: f64 = 100.0;

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
pub const NET_COLUMNS: [(&str, usize, &str); 8] = [
    ("receive", 0, "bytes"),
    ("receive", 1, "packets"),
    ("receive", 3, "drop"),
    ("receive", 2, "errs"),
    ("transmit", 8, "bytes"),
    ("transmit", 9, "packets"),
    ("transmit", 11, "drop"),
    ("transmit", 10, "errs"),
];

/// `node_network_receive_bytes_total` and friends.
pub fn net_family(prefix: &str, dir: &str, what: &str) -> String {
    format!("{prefix}_{dir}_{what}_total")
}
