//! The built-in metric names a policy's `metric:` may use: the TKE console's alarm list,
//! each a PromQL expression over the catalogue in `docs/metrics.md`.
//!
//! `SCOPE` inside a selector's braces is replaced by the policy's scope matchers for the
//! labels that selector carries (see [`Builtin::scoped`]); scope keys a selector does not
//! carry (a pod's `workload`) are matched on the result instead, so every scope key holds
//! whichever expression it is given to.
//!
//! It promises that every built-in, with or without a scope, is valid PromQL.

/// One built-in metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Builtin {
    /// The name used in policies.
    pub name: &'static str,
    /// What it measures, for documentation and notifications.
    pub help: &'static str,
    /// The unit of its value (`ratio` values are 0–1).
    pub unit: &'static str,
    /// PromQL with `SCOPE` placeholders.
    pub expr: &'static str,
    /// Scope keys pushed into the selectors (the rest filter the result).
    pub pushed: &'static [&'static str],
}

const NODE: &[&str] = &["cluster", "node"];
const POD: &[&str] = &["cluster", "namespace", "pod"];
const CLUSTER: &[&str] = &["cluster"];

/// `kube_pod_info` with a `workload` label: the owning Deployment's name for pods of a
/// ReplicaSet (the pod-template hash dropped), the owner's name otherwise.
macro_rules! pod_workload {
    () => {
        r#"(label_replace(kube_pod_info{created_by_kind="ReplicaSet"SCOPE}, "workload", "$1", "created_by_name", "(.+)-[a-z0-9]{5,10}") or label_replace(kube_pod_info{created_by_kind!="ReplicaSet"SCOPE}, "workload", "$1", "created_by_name", "(.*)"))"#
    };
}

/// Per pod: `sum by (cluster, namespace, pod)` of a container family, with the pod's
/// node and workload joined from `kube_pod_info`.
macro_rules! per_pod {
    ($inner:literal) => {
        concat!(
            "sum by (cluster, namespace, pod, node, workload) (",
            $inner,
            " * on (cluster, namespace, pod) group_left (node, workload) ",
            pod_workload!(),
            ")"
        )
    };
}

/// Every built-in metric.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "node_cpu_utilization",
        help: "Node CPU busy ratio (all modes but idle), averaged over its CPUs",
        unit: "ratio",
        expr: r#"1 - avg by (cluster, node) (rate(node_cpu_seconds_total{mode="idle"SCOPE}[5m]))"#,
        pushed: NODE,
    },
    Builtin {
        name: "node_memory_utilization",
        help: "Node memory in use, as a ratio of total (MemAvailable counts as free)",
        unit: "ratio",
        expr: "1 - node_memory_MemAvailable_bytes{SCOPE} / node_memory_MemTotal_bytes{SCOPE}",
        pushed: NODE,
    },
    Builtin {
        name: "node_not_ready",
        help: "1 while the node's Ready condition is not true",
        unit: "boolean",
        expr: r#"max by (cluster, node) (kube_node_status_condition{condition="Ready",status=~"false|unknown"SCOPE})"#,
        pushed: NODE,
    },
    Builtin {
        name: "node_disk_utilization",
        help: "Filesystem space in use per mount, as a ratio of its size",
        unit: "ratio",
        expr: r#"1 - node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs"SCOPE} / node_filesystem_size_bytes{fstype!~"tmpfs|overlay|squashfs"SCOPE}"#,
        pushed: NODE,
    },
    Builtin {
        name: "pod_restarts",
        help: "Container restarts of the pod in the last 5 minutes",
        unit: "count",
        expr: per_pod!("increase(kube_pod_container_status_restarts_total{SCOPE}[5m])"),
        pushed: POD,
    },
    Builtin {
        name: "pod_not_ready",
        help: "1 while the pod's Ready condition is not true",
        unit: "boolean",
        expr: per_pod!(r#"kube_pod_status_ready{condition=~"false|unknown"SCOPE}"#),
        pushed: POD,
    },
    Builtin {
        name: "pod_cpu_usage_ratio_of_request",
        help: "Pod CPU use as a ratio of its containers' CPU requests",
        unit: "ratio",
        expr: concat!(
            per_pod!(r#"rate(container_cpu_usage_seconds_total{container!=""SCOPE}[5m])"#),
            r#" / on (cluster, namespace, pod) sum by (cluster, namespace, pod) (kube_pod_container_resource_requests{resource="cpu"SCOPE})"#
        ),
        pushed: POD,
    },
    Builtin {
        name: "pod_cpu_usage_ratio_of_limit",
        help: "Pod CPU use as a ratio of its containers' CPU limits",
        unit: "ratio",
        expr: concat!(
            per_pod!(r#"rate(container_cpu_usage_seconds_total{container!=""SCOPE}[5m])"#),
            r#" / on (cluster, namespace, pod) sum by (cluster, namespace, pod) (kube_pod_container_resource_limits{resource="cpu"SCOPE})"#
        ),
        pushed: POD,
    },
    Builtin {
        name: "pod_cpu_usage_ratio_of_node",
        help: "Pod CPU use as a ratio of its node's cores",
        unit: "ratio",
        expr: concat!(
            per_pod!(r#"rate(container_cpu_usage_seconds_total{container!=""SCOPE}[5m])"#),
            r#" / on (cluster, node) group_left machine_cpu_cores"#
        ),
        pushed: POD,
    },
    Builtin {
        name: "pod_memory_usage_ratio_of_request",
        help: "Pod working-set memory as a ratio of its containers' memory requests",
        unit: "ratio",
        expr: concat!(
            per_pod!(r#"container_memory_working_set_bytes{container!=""SCOPE}"#),
            r#" / on (cluster, namespace, pod) sum by (cluster, namespace, pod) (kube_pod_container_resource_requests{resource="memory"SCOPE})"#
        ),
        pushed: POD,
    },
    Builtin {
        name: "pod_memory_usage_ratio_of_limit",
        help: "Pod working-set memory as a ratio of its containers' memory limits",
        unit: "ratio",
        expr: concat!(
            per_pod!(r#"container_memory_working_set_bytes{container!=""SCOPE}"#),
            r#" / on (cluster, namespace, pod) sum by (cluster, namespace, pod) (kube_pod_container_resource_limits{resource="memory"SCOPE})"#
        ),
        pushed: POD,
    },
    Builtin {
        name: "pod_memory_usage_ratio_of_node",
        help: "Pod working-set memory as a ratio of its node's memory",
        unit: "ratio",
        expr: concat!(
            per_pod!(r#"container_memory_working_set_bytes{container!=""SCOPE}"#),
            r#" / on (cluster, node) group_left machine_memory_bytes"#
        ),
        pushed: POD,
    },
    Builtin {
        name: "container_oom_killed",
        help: "OOM kills of the container in the last 5 minutes",
        unit: "count",
        expr: r#"increase(container_oom_events_total{container!=""SCOPE}[5m])"#,
        pushed: &["cluster", "namespace", "pod", "container"],
    },
    Builtin {
        name: "workload_unavailable_replicas",
        help: "Replicas a Deployment, StatefulSet or DaemonSet wants but does not have ready",
        unit: "count",
        expr: concat!(
            r#"label_replace(kube_deployment_spec_replicas{SCOPE} - kube_deployment_status_replicas_available{SCOPE}, "workload", "$1", "deployment", "(.*)")"#,
            r#" or label_replace(kube_statefulset_replicas{SCOPE} - kube_statefulset_status_replicas_ready{SCOPE}, "workload", "$1", "statefulset", "(.*)")"#,
            r#" or label_replace(kube_daemonset_status_desired_number_scheduled{SCOPE} - kube_daemonset_status_number_ready{SCOPE}, "workload", "$1", "daemonset", "(.*)")"#
        ),
        pushed: &["cluster", "namespace"],
    },
    Builtin {
        name: "cluster_cpu_allocation_ratio",
        help: "CPU requested by pods as a ratio of the nodes' allocatable CPU",
        unit: "ratio",
        expr: r#"sum by (cluster) (kube_pod_container_resource_requests{resource="cpu"SCOPE}) / sum by (cluster) (kube_node_status_allocatable{resource="cpu"SCOPE})"#,
        pushed: CLUSTER,
    },
    Builtin {
        name: "cluster_memory_allocation_ratio",
        help: "Memory requested by pods as a ratio of the nodes' allocatable memory",
        unit: "ratio",
        expr: r#"sum by (cluster) (kube_pod_container_resource_requests{resource="memory"SCOPE}) / sum by (cluster) (kube_node_status_allocatable{resource="memory"SCOPE})"#,
        pushed: CLUSTER,
    },
];

impl Builtin {
    /// The built-in metric called `name`.
    pub fn find(name: &str) -> Option<&'static Builtin> {
        BUILTINS.iter().find(|b| b.name == name)
    }

    /// The expression with `scope`'s pushed keys as matchers in every selector. Values
    /// with regex metacharacters match as regexes (`=~`), others exactly.
    pub fn scoped(&self, scope: &[(String, String)]) -> String {
        let mut matchers = String::new();
        for (k, v) in scope
            .iter()
            .filter(|(k, _)| self.pushed.contains(&k.as_str()))
        {
            let op = if is_regex(v) { "=~" } else { "=" };
            matchers.push_str(&format!(",{k}{op}{}", quote(v)));
        }
        let alone = format!("{{{}}}", matchers.trim_start_matches(','));
        self.expr
            .replace("{SCOPE}", &alone)
            .replace("SCOPE", &matchers)
    }
}

/// Whether a scope value is meant as a regular expression.
pub fn is_regex(v: &str) -> bool {
    v.chars().any(|c| ".*+?()[]{}|^$\\".contains(c))
}

/// `v` as a PromQL double-quoted string.
fn quote(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses_with_and_without_scope() {
        let scope = [
            ("cluster".to_owned(), "prod".to_owned()),
            ("namespace".to_owned(), "shop|pay".to_owned()),
            ("node".to_owned(), "n1".to_owned()),
            ("pod".to_owned(), "web-.*".to_owned()),
            ("workload".to_owned(), "web".to_owned()),
        ];
        for b in BUILTINS {
            for s in [&[][..], &scope[..]] {
                let e = b.scoped(s);
                assert!(!e.contains("SCOPE"), "{}: {e}", b.name);
                promql_parser::parser::parse(&e)
                    .unwrap_or_else(|err| panic!("{}: {err}\n{e}", b.name));
            }
        }
    }

    #[test]
    fn pushes_only_the_labels_its_selectors_carry() {
        let b = Builtin::find("node_memory_utilization").unwrap();
        let e = b.scoped(&[
            ("node".into(), "n1".into()),
            ("namespace".into(), "shop".into()),
        ]);
        assert_eq!(
            e,
            r#"1 - node_memory_MemAvailable_bytes{node="n1"} / node_memory_MemTotal_bytes{node="n1"}"#
        );
        let e = Builtin::find("pod_restarts")
            .unwrap()
            .scoped(&[("pod".into(), "web-.*".into())]);
        assert!(e.contains(r#"kube_pod_container_status_restarts_total{pod=~"web-.*"}"#));
        assert!(e.contains(r#"kube_pod_info{created_by_kind="ReplicaSet",pod=~"web-.*"}"#));
    }
}
