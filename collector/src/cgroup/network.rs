//! Pod network counters: a pod's containers share one network namespace, read as
//! `/proc/<pid>/net/dev` through one of the pod's processes (the same process while it
//! lives, since another may be in another namespace). The counters are exported on the
//! pod-level cgroup.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::identity::Identity;
use super::stats::Cgroup;
use crate::cycle_errors::CycleErrors;
use crate::kept_files::{KeptFile, ReadBuf, Shape};
use crate::procfs::{parse_net_dev, NetDev};

/// One pod's network namespace, read through one of its processes.
#[derive(Default)]
struct PodNet {
    pid: u32,
    file: KeptFile,
    devs: Vec<NetDev>,
    ok: bool,
    seen: u64,
}

/// Every pod's network table, by pod UID.
pub(super) struct PodNetworks {
    proc_root: PathBuf,
    pods: HashMap<String, PodNet>,
}

impl PodNetworks {
    /// Tables read from `<proc_root>/<pid>/net/dev`.
    pub(super) fn new(proc_root: &Path) -> Self {
        PodNetworks {
            proc_root: proc_root.to_owned(),
            pods: HashMap::new(),
        }
    }

    /// The interfaces of pod `pod_uid` as last read, if that read succeeded.
    pub(super) fn interfaces(&self, pod_uid: &str) -> Option<&[NetDev]> {
        self.pods
            .get(pod_uid)
            .filter(|n| n.ok)
            .map(|n| n.devs.as_slice())
    }

    /// Reads each pod's table through the first process of its first container cgroup that
    /// has one; pods without such a process this cycle are forgotten.
    pub(super) fn read(
        &mut self,
        cgroups: &BTreeMap<String, Cgroup>,
        cycle: u64,
        buf: &mut ReadBuf,
        errors: &mut CycleErrors,
    ) {
        for cg in cgroups.values() {
            let (Identity::Container { pod_uid, .. }, Some(pid)) =
                (&cg.identity, cg.stats.first_pid)
            else {
                continue;
            };
            let net = match self.pods.get_mut(pod_uid.as_str()) {
                Some(n) => n,
                None => self.pods.entry(pod_uid.clone()).or_default(),
            };
            if net.seen == cycle {
                continue; // the pod's first container with a process already chose
            }
            net.seen = cycle;
            if net.pid != pid {
                // A different process may live in a different network namespace.
                net.file.close();
                net.pid = pid;
            }
        }
        self.pods.retain(|_, n| n.seen == cycle);
        let proc_root = &self.proc_root;
        for net in self.pods.values_mut() {
            let pid = net.pid;
            let path = || proc_root.join(pid.to_string()).join("net/dev");
            net.ok = match net.file.read(path, Shape::TABLE, buf) {
                Ok(b) => {
                    let ok = parse_net_dev(b, &mut net.devs);
                    if !ok {
                        errors.record(
                            "pod_network",
                            format_args!("{}: malformed", path().display()),
                        );
                    }
                    ok
                }
                Err(e) => {
                    errors.record("pod_network", format_args!("{}: {e}", path().display()));
                    false
                }
            };
        }
    }
}
