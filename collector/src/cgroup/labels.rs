//! A cgroup's label set: cAdvisor's labels (`id`, `name`, `container`, `image`, `pod`,
//! `namespace`) plus `cluster` and `node`, with Kubernetes names where this node's pods
//! are known. Without Kubernetes the names are empty and only `id` and `name` say which
//! cgroup a series is.

use std::collections::HashMap;

use telltale_model::LabelSet;

use super::identity::Identity;
use crate::pod_names::PodNames;

/// Labels cgroups for one cluster and node, with the pod names known so far.
pub(super) struct Labeler {
    cluster: String,
    node: String,
    /// Kubernetes names by pod UID (empty without Kubernetes).
    names: HashMap<String, PodNames>,
}

impl Labeler {
    /// Labels for `cluster` and `node`, before any pod name is known.
    pub(super) fn new(cluster: &str, node: &str) -> Self {
        Labeler {
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            names: HashMap::new(),
        }
    }

    /// Replaces the Kubernetes names.
    pub(super) fn set_names(&mut self, names: HashMap<String, PodNames>) {
        self.names = names;
    }

    /// The label set of a cgroup: cAdvisor's labels, with Kubernetes names where known.
    /// A container cgroup of a known pod whose id is none of the pod's containers, while all
    /// of them are known, is the pod's sandbox: `container="POD"`, as cAdvisor labels it.
    pub(super) fn labels_for(&self, rel: &str, identity: &Identity) -> LabelSet {
        let (uid, id) = match identity {
            Identity::Container {
                pod_uid,
                container_id,
            } => (Some(pod_uid), container_id.as_str()),
            Identity::Pod { pod_uid } => (Some(pod_uid), ""),
            Identity::Other => (None, ""),
        };
        let names = uid.and_then(|u| self.names.get(u.as_str()));
        let (mut container, mut image) = ("", "");
        if let (Some(n), Identity::Container { .. }) = (names, identity) {
            match n.containers.get(id) {
                Some((c, i)) => (container, image) = (c.as_str(), i.as_str()),
                None if n.all_ids_known => container = "POD",
                None => {}
            }
        }
        LabelSet::new([
            ("cluster", self.cluster.as_str()),
            ("container", container),
            ("id", rel),
            ("image", image),
            ("name", id),
            ("namespace", names.map_or("", |n| n.namespace.as_str())),
            ("node", self.node.as_str()),
            ("pod", names.map_or("", |n| n.pod.as_str())),
        ])
    }
}
