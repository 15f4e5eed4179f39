//! The cgroup source: each cycle finds new and vanished cgroups, reads every known one with
//! the reader of the layout's version, then the pods' network tables; on request it writes
//! the container families. It also relabels cgroups as Kubernetes names arrive.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use telltale_model::{LabelSet, Sink};

use super::discovery::{self, Watcher};
use super::families;
use super::identity::Identity;
use super::labels::Labeler;
use super::layout::Layout;
use super::network::PodNetworks;
use super::stats::Cgroup;
use super::v1;
use super::v2;
use crate::cycle_errors::CycleErrors;
use crate::kept_files::ReadBuf;
use crate::pod_names::PodNames;

/// Reads every cgroup of the node and exports the container families.
pub struct CgroupSource {
    pub(super) watcher: Watcher,
    layout: Layout,
    labels: Labeler,
    cgroups: BTreeMap<String, Cgroup>,
    networks: PodNetworks,
    /// Cycles read so far.
    pub(super) cycle: u64,
}

impl CgroupSource {
    /// A source for the hierarchies in `layout`; pod network tables are read from
    /// `<proc_root>/<pid>/net/dev`.
    pub fn new(layout: Layout, proc_root: &Path, cluster: &str, node: &str) -> Self {
        CgroupSource {
            watcher: Watcher::new(),
            layout,
            labels: Labeler::new(cluster, node),
            cgroups: BTreeMap::new(),
            networks: PodNetworks::new(proc_root),
            cycle: 0,
        }
    }

    /// The layout being read.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Cgroups known after the last cycle.
    pub fn len(&self) -> usize {
        self.cgroups.len()
    }

    /// True when no cgroup is known.
    pub fn is_empty(&self) -> bool {
        self.cgroups.is_empty()
    }

    /// Finds new and vanished cgroups, then reads every known one. `node_has_swap` false
    /// (the node's SwapTotal is 0) means no cgroup can use swap, so v2's memory.swap.current
    /// is not read.
    pub fn read(&mut self, buf: &mut ReadBuf, errors: &mut CycleErrors, node_has_swap: bool) {
        self.cycle += 1;
        self.discover(buf, errors);
        self.read_known(buf, errors, node_has_swap);
    }

    /// Reads every cgroup found by the last discovery.
    pub(super) fn read_known(
        &mut self,
        buf: &mut ReadBuf,
        errors: &mut CycleErrors,
        node_has_swap: bool,
    ) {
        for cg in self.cgroups.values_mut() {
            match &self.layout {
                Layout::V1 { .. } => v1::read(&self.layout, cg, buf, errors),
                Layout::V2 { root } => v2::read(root, cg, buf, errors, node_has_swap),
            }
        }
        self.networks.read(&self.cgroups, self.cycle, buf, errors);
    }

    /// Finds new and vanished cgroups (see [`discovery`]).
    pub(super) fn discover(&mut self, buf: &mut ReadBuf, errors: &mut CycleErrors) {
        discovery::discover(
            &mut self.watcher,
            &self.layout,
            &self.labels,
            self.cycle,
            &mut self.cgroups,
            buf,
            errors,
        );
    }

    /// Replaces the Kubernetes names and relabels the cgroups whose names changed.
    pub fn set_names(&mut self, names: HashMap<String, PodNames>) {
        self.labels.set_names(names);
        let relabels: Vec<(String, LabelSet)> = self
            .cgroups
            .values()
            .filter(|cg| !matches!(cg.identity, Identity::Other))
            .map(|cg| {
                (
                    cg.rel.clone(),
                    self.labels.labels_for(&cg.rel, &cg.identity),
                )
            })
            .filter(|(rel, l)| self.cgroups.get(rel).is_some_and(|cg| &cg.labels != l))
            .collect();
        for (rel, labels) in relabels {
            if let Some(cg) = self.cgroups.get_mut(&rel) {
                cg.labels = labels;
            }
        }
    }

    /// Writes the container families into `sink`. `devices` names block devices.
    pub fn emit(&self, devices: &HashMap<(u32, u32), String>, sink: &mut dyn Sink) {
        families::emit(&self.cgroups, &self.networks, devices, sink);
    }
}
