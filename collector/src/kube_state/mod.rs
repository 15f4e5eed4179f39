//! Cluster state from the Kubernetes API under kube-state-metrics' names (`--cluster-state`,
//! run in exactly one replica): pods, nodes, ReplicaSets, Deployments, DaemonSets,
//! StatefulSets and Jobs, each from its own watcher and reflector.
//!
//! Families are written family by family over the reflectors' objects; label values come
//! from the objects the reflectors already hold. `cluster` holds the views, `pods`, `nodes`
//! and `workloads` write the families, `labels` turns fields into labels and values.

mod cluster;
mod labels;
mod nodes;
mod pods;
mod workloads;

pub use cluster::ClusterState;
pub use labels::{sanitize, AnnotationAllowlist};
pub use nodes::emit_nodes;
pub use pods::emit_pods;
pub use workloads::{emit_workloads, Workloads};

#[cfg(test)]
mod tests;
