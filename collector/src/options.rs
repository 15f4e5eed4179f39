//! The collector's settings: what it reads and how it labels it, and beside that, where
//! its snapshots are shipped. Collection never looks into the shipping settings; it only
//! asks [`Options::ships`] whether a sample index is worth recording.

use std::path::PathBuf;
use std::time::Duration;

use crate::ship::Config as ShipConfig;

/// What the collector reads, how it labels it, and where it ships its snapshots.
#[derive(Debug, Clone)]
pub struct Options {
    /// `cluster` label on every series.
    pub cluster: String,
    /// `node` label on every series.
    pub node_name: String,
    /// Where procfs is (`/proc`, or `/host/proc` in a container).
    pub proc_root: PathBuf,
    /// Where sysfs is; cgroups are under `<sys_root>/fs/cgroup`.
    pub sys_root: PathBuf,
    /// Prefix for statfs of mount points (`/`, or `/host/root` in a container).
    pub rootfs: PathBuf,
    /// Collection interval; sample timestamps are aligned to it.
    pub interval: Duration,
    /// Run without Kubernetes (no names on cgroup series).
    pub no_kube: bool,
    /// Kubeconfig file; without it the configuration is inferred ($KUBECONFIG,
    /// ~/.kube/config, in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// Also export cluster-wide `kube_*` state (run in exactly one replica).
    pub cluster_state: bool,
    /// Pod annotations exported by `kube_pod_annotations`: keys or `prefix*`, comma-separated.
    pub pod_annotations_allowlist: String,
    /// Remote write (no destinations: nothing is shipped).
    pub remote: ShipConfig,
}

impl Options {
    /// Whether snapshots are shipped anywhere (at least one `--remote-write` destination).
    pub fn ships(&self) -> bool {
        !self.remote.urls.is_empty()
    }
}
