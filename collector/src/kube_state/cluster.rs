//! The cluster-wide views `--cluster-state` exports from: one watcher per kind (pods,
//! nodes, ReplicaSets, Deployments, DaemonSets, StatefulSets, Jobs), their health, and one
//! cycle's families written over what they hold. Deleted pods are exported for a few more
//! cycles in their final state; every view forgets deleted objects after that.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use telltale_model::{LabelSet, Sink};
use tokio_util::sync::CancellationToken;

use super::labels::AnnotationAllowlist;
use super::nodes::emit_nodes;
use super::pods::emit_pods;
use super::workloads::{emit_workloads, Workloads};
use crate::kube_watch::{watch_all, Health, View, Watchable};

/// Every view `--cluster-state` exports from.
pub struct ClusterState {
    pods: View<Pod>,
    nodes: View<Node>,
    replicasets: View<ReplicaSet>,
    deployments: View<Deployment>,
    daemonsets: View<DaemonSet>,
    statefulsets: View<StatefulSet>,
    jobs: View<Job>,
    allow: AnnotationAllowlist,
    base: LabelSet,
}

impl ClusterState {
    /// Starts one watcher per kind; without a client every view says why it is empty.
    pub fn watch(
        client: Result<&Client, &str>,
        cancel: &CancellationToken,
        allow: AnnotationAllowlist,
        cluster: &str,
    ) -> Self {
        fn view<K: Watchable>(
            client: Result<&Client, &str>,
            cancel: &CancellationToken,
        ) -> View<K> {
            match client {
                Ok(c) => watch_all(c.clone(), cancel.clone()),
                Err(why) => View::unavailable(why.to_owned()),
            }
        }
        ClusterState {
            pods: view(client, cancel),
            nodes: view(client, cancel),
            replicasets: view(client, cancel),
            deployments: view(client, cancel),
            daemonsets: view(client, cancel),
            statefulsets: view(client, cancel),
            jobs: view(client, cancel),
            allow,
            base: LabelSet::new([("cluster", cluster)]),
        }
    }

    /// The views, for health reporting.
    pub fn health(&self) -> Vec<Arc<dyn Health>> {
        vec![
            Arc::new(self.pods.clone()),
            Arc::new(self.nodes.clone()),
            Arc::new(self.replicasets.clone()),
            Arc::new(self.deployments.clone()),
            Arc::new(self.daemonsets.clone()),
            Arc::new(self.statefulsets.clone()),
            Arc::new(self.jobs.clone()),
        ]
    }

    /// Writes every state family; each call is a cycle. Deleted pods are exported for
    /// [`RETAIN_CYCLES`](crate::kube_watch::RETAIN_CYCLES) more calls in their final state (with
    /// completion and deletion times).
    pub fn emit(&self, sink: &mut dyn Sink) {
        emit_pods(
            &self.pods.objects_with_departed(),
            &self.base,
            &self.allow,
            sink,
        );
        emit_nodes(&self.nodes.objects(), &self.base, sink);
        emit_workloads(
            &Workloads {
                replicasets: self.replicasets.objects(),
                deployments: self.deployments.objects(),
                daemonsets: self.daemonsets.objects(),
                statefulsets: self.statefulsets.objects(),
                jobs: self.jobs.objects(),
            },
            &self.base,
            sink,
        );
        // A cycle has passed for every view: departed objects are kept for a bounded number
        // of cycles only (workload families do not export them, but must not hoard them).
        self.pods.age_departed();
        self.nodes.age_departed();
        self.replicasets.age_departed();
        self.deployments.age_departed();
        self.daemonsets.age_departed();
        self.statefulsets.age_departed();
        self.jobs.age_departed();
    }
}

#[cfg(test)]
mod tests {
    use telltale_model::TextEncoder;

    use super::*;

    #[test]
    fn every_view_forgets_departed_objects_after_the_retention_cycles() {
        let cancel = CancellationToken::new();
        let cs = ClusterState::watch(
            Err("no client in this test"),
            &cancel,
            AnnotationAllowlist::parse(""),
            "c1",
        );
        let node: Node = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "gone", "uid": "n-uid"}}),
        )
        .unwrap();
        let job: Job = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "j", "namespace": "x", "uid": "j-uid"}}),
        )
        .unwrap();
        cs.nodes.depart(Arc::new(node));
        cs.jobs.depart(Arc::new(job));
        for _ in 0..crate::kube_watch::RETAIN_CYCLES {
            cs.emit(&mut TextEncoder::default());
        }
        assert!(cs.nodes.objects_with_departed().is_empty());
        assert!(cs.jobs.objects_with_departed().is_empty());
    }
}
