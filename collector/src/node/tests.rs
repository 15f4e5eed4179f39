//! Node source tests on fixture procfs files, with exact values.

use telltale_model::{LabelSet, TextEncoder};

use super::families::ignored_disk;
use super::tables::parse_mountinfo;
use super::NodeSource;
use crate::cycle_errors::CycleErrors;
use crate::fixture::{Driver, Node, Version};
use crate::kept_files::ReadBuf;

fn fixture() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new(dir.path(), Version::V2, Driver::Systemd).unwrap();
    (dir, node)
}

fn collect(node: &Node) -> (String, CycleErrors) {
    let mut src = NodeSource::new(&node.proc_root(), &node.rootfs());
    let (mut buf, mut errors) = (ReadBuf::default(), CycleErrors::default());
    src.read(&mut buf, &mut errors);
    let mut enc = TextEncoder::default();
    src.emit(&LabelSet::new([("node", "n1")]), &mut enc);
    (String::from_utf8(enc.take()).unwrap(), errors)
}

/// The value of the sample line that starts with `series` (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn exact_values_from_procfs() {
    let (_d, node) = fixture();
    let (t, errors) = collect(&node);
    assert_eq!(
        errors.iter().count(),
        0,
        "{:?}",
        errors.iter().collect::<Vec<_>>()
    );
    let v = |s: &str| value(&t, s).unwrap_or_else(|| panic!("no {s} in\n{t}"));
    assert_eq!(
        v(r#"node_cpu_seconds_total{node="n1",cpu="0",mode="user"}"#),
        5.0
    );
    assert_eq!(
        v(r#"node_cpu_seconds_total{node="n1",cpu="1",mode="system"}"#),
        4.94
    );
    assert_eq!(
        v(r#"node_cpu_seconds_total{node="n1",cpu="1",mode="steal"}"#),
        0.22
    );
    assert_eq!(v(r#"machine_cpu_cores{node="n1"}"#), 2.0);
    assert_eq!(v(r#"node_boot_time_seconds{node="n1"}"#), 1_795_461_552.0);
    assert_eq!(v(r#"node_context_switches_total{node="n1"}"#), 150_180.0);
    assert_eq!(v(r#"node_procs_blocked{node="n1"}"#), 1.0);
    assert_eq!(
        v(r#"node_memory_MemTotal_bytes{node="n1"}"#),
        24_683_656.0 * 1024.0
    );
    assert_eq!(
        v(r#"machine_memory_bytes{node="n1"}"#),
        24_683_656.0 * 1024.0
    );
    assert_eq!(
        v(r#"node_memory_Active_anon_bytes{node="n1"}"#),
        1564.0 * 1024.0
    );
    assert_eq!(v(r#"node_memory_HugePages_Total{node="n1"}"#), 0.0);
    assert_eq!(v(r#"node_load1{node="n1"}"#), 0.26);
    assert_eq!(v(r#"node_load15{node="n1"}"#), 0.02);
    assert_eq!(
        v(r#"node_network_receive_bytes_total{node="n1",device="eth0"}"#),
        55_814_743.0
    );
    assert_eq!(
        v(r#"node_network_receive_errs_total{node="n1",device="eth0"}"#),
        1.0
    );
    assert_eq!(
        v(r#"node_network_receive_drop_total{node="n1",device="eth0"}"#),
        2.0
    );
    assert_eq!(
        v(r#"node_network_transmit_errs_total{node="n1",device="eth0"}"#),
        3.0
    );
    assert_eq!(
        v(r#"node_network_transmit_drop_total{node="n1",device="eth0"}"#),
        4.0
    );
    assert!(
        !t.contains(r#"device="lo""#),
        "loopback is not a node interface"
    );
    assert_eq!(
        v(r#"node_disk_read_bytes_total{node="n1",device="vda"}"#),
        867_106.0 * 512.0
    );
    assert_eq!(
        v(r#"node_disk_written_bytes_total{node="n1",device="vda"}"#),
        332_560.0 * 512.0
    );
    assert_eq!(
        v(r#"node_disk_reads_completed_total{node="n1",device="vda"}"#),
        5629.0
    );
    assert_eq!(
        v(r#"node_disk_writes_completed_total{node="n1",device="vda"}"#),
        622.0
    );
    assert_eq!(
        v(r#"node_disk_io_time_seconds_total{node="n1",device="vda"}"#),
        3.316
    );
    assert_eq!(v(r#"node_disk_io_now{node="n1",device="nvme0n1"}"#), 1.0);
    for ignored in ["vda1", "loop0"] {
        assert!(
            !t.contains(&format!(r#"device="{ignored}""#)),
            "{ignored} must be left out"
        );
    }
    assert_eq!(v(r#"node_netstat_Tcp_CurrEstab{node="n1"}"#), 5.0);
    assert_eq!(v(r#"node_netstat_Tcp_RetransSegs{node="n1"}"#), 3.0);
    assert_eq!(v(r#"node_netstat_Udp_OutDatagrams{node="n1"}"#), 41.0);
}

#[test]
fn filesystems_are_real_mounts_only() {
    let (_d, node) = fixture();
    let (t, _) = collect(&node);
    let sizes: Vec<&str> = t
        .lines()
        .filter(|l| l.starts_with("node_filesystem_size_bytes{"))
        .collect();
    let mounts: Vec<&str> = sizes
        .iter()
        .map(|l| {
            l.split("mountpoint=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(mounts, ["/", "/data", "/mnt/with space"], "{t}");
    assert!(t.contains(
        r#"node_filesystem_size_bytes{node="n1",device="/dev/vdb",fstype="xfs",mountpoint="/data"}"#
    ));
    // statfs of the fixture's rootfs: compare with what the kernel says about that directory.
    let want = rustix::fs::statvfs(node.rootfs().join("data")).unwrap();
    let size = value(
        &t,
        r#"node_filesystem_size_bytes{node="n1",device="/dev/vdb",fstype="xfs",mountpoint="/data"}"#,
    );
    assert_eq!(size, Some(want.f_blocks as f64 * want.f_frsize as f64));
    let files = value(
        &t,
        r#"node_filesystem_files{node="n1",device="/dev/vdb",fstype="xfs",mountpoint="/data"}"#,
    );
    assert_eq!(files, Some(want.f_files as f64));
}

#[test]
fn device_names_come_from_diskstats() {
    let (_d, node) = fixture();
    let mut src = NodeSource::new(&node.proc_root(), &node.rootfs());
    src.read(&mut ReadBuf::default(), &mut CycleErrors::default());
    assert_eq!(
        src.devices().get(&(254, 0)).map(String::as_str),
        Some("/dev/vda")
    );
    assert_eq!(
        src.devices().get(&(254, 1)).map(String::as_str),
        Some("/dev/vda1")
    );
    assert!(!src.has_swap(), "fixture meminfo has SwapTotal: 0");
}

#[test]
fn malformed_files_skip_only_their_series_and_count_errors() {
    let (_d, node) = fixture();
    let p = node.proc_root();
    // Truncated mid-line, a non-number, a missing file, garbage.
    std::fs::write(
        p.join("stat"),
        "cpu  1489 0 899 7859 155 0 34 43 0 0\ncpu0 500 0 40",
    )
    .unwrap();
    std::fs::write(p.join("loadavg"), "0.26 zero 0.02 4/83 2137\n").unwrap();
    std::fs::remove_file(p.join("diskstats")).unwrap();
    std::fs::write(p.join("1/net/snmp"), "Tcp: CurrEstab\n").unwrap();
    std::fs::write(p.join("1/net/dev"), "header\nheader\n  eth0: 1 2 3\n").unwrap();
    let (t, errors) = collect(&node);
    for source in ["stat", "loadavg", "diskstats", "netstat", "netdev"] {
        assert_eq!(
            errors.count(source),
            1,
            "{source}: {:?}",
            errors.iter().collect::<Vec<_>>()
        );
    }
    for gone in [
        "node_cpu_seconds_total",
        "node_load1",
        "node_disk_",
        "node_netstat_",
        "node_network_",
    ] {
        assert!(
            !t.contains(gone),
            "{gone} must be skipped, not partial:\n{t}"
        );
    }
    assert_eq!(errors.count("meminfo"), 0);
    assert!(
        t.contains("node_memory_MemTotal_bytes"),
        "meminfo still reads"
    );
    assert!(
        t.contains("node_filesystem_size_bytes"),
        "filesystems still read"
    );
}

#[test]
fn a_file_that_comes_back_is_read_again() {
    let (_d, node) = fixture();
    let p = node.proc_root();
    let mut src = NodeSource::new(&p, &node.rootfs());
    let (mut buf, mut errors) = (ReadBuf::default(), CycleErrors::default());
    std::fs::remove_file(p.join("loadavg")).unwrap();
    src.read(&mut buf, &mut errors);
    assert_eq!(errors.count("loadavg"), 1);
    std::fs::write(p.join("loadavg"), "1.5 1.0 0.5 1/1 1\n").unwrap();
    errors.clear();
    src.read(&mut buf, &mut errors);
    assert_eq!(errors.count("loadavg"), 0);
    let mut enc = TextEncoder::default();
    src.emit(&LabelSet::default(), &mut enc);
    let t = String::from_utf8(enc.take()).unwrap();
    assert_eq!(value(&t, "node_load1"), Some(1.5));
}

#[test]
fn partitions_ram_and_loop_devices_are_ignored() {
    for name in [
        "vda1",
        "sda12",
        "xvdb3",
        "nvme0n1p2",
        "loop7",
        "ram0",
        "fd0",
    ] {
        assert!(ignored_disk(name), "{name}");
    }
    for name in ["vda", "sda", "xvdaa", "nvme0n1", "dm-0", "md0", "zram0"] {
        assert!(!ignored_disk(name), "{name}");
    }
}

#[test]
fn mountinfo_escapes_and_overmounts() {
    let mut out = Vec::new();
    let mi = b"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 8:2 / /a\\040b rw - ext4 /dev/sda2 rw\n3 1 8:3 / /a\\040b rw - xfs /dev/sdb1 rw\n";
    assert!(parse_mountinfo(mi, &mut out));
    let got: Vec<(&str, &str, &str)> = out
        .iter()
        .map(|f| (f.mountpoint.as_str(), f.fstype.as_str(), f.device.as_str()))
        .collect();
    assert_eq!(
        got,
        [("/", "ext4", "/dev/sda1"), ("/a b", "xfs", "/dev/sdb1")]
    );
}
