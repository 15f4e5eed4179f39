//! What billing knows of each pod, gathered from the kube-state series the collector
//! exports (docs/metrics.md), and the pod's billable size (docs/billing.md).
//!
//! Every series is read for its latest sample, so the order samples arrive in (an edge
//! node replaying a backlog) does not matter. Pods are identified by `uid`.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::prices::{from_f64, gib, quantity_decimal, Prices, Size};

/// Whether billing reads this metric.
pub fn wanted(metric: &str) -> bool {
    metric.starts_with("kube_pod_")
        || metric == "kube_replicaset_owner"
        || metric == "kube_job_owner"
}

/// The annotations that set a pod's size (TKE's serverless mode), as the collector's
/// `kube_pod_annotations` names them (`annotation_` left off).
pub const CPU_ANNOTATION: &str = "eks_tke_cloud_tencent_com_cpu";
/// Memory (`4Gi`).
pub const MEMORY_ANNOTATION: &str = "eks_tke_cloud_tencent_com_mem";
/// GPU count, billed as `nvidia.com/gpu`.
pub const GPU_ANNOTATION: &str = "eks_tke_cloud_tencent_com_gpu_count";
/// The resource a GPU-count annotation bills.
pub const ANNOTATED_GPU: &str = "nvidia.com/gpu";

/// How long a running pod's series may be silent before it is taken as gone: then it is
/// billed up to when it was last seen (its end was never reported).
pub const GONE_AFTER_MS: i64 = 5 * 60 * 1000;

/// A pod's containers' requests and limits, by resource label (`cpu`, `memory`,
/// `nvidia_com_gpu`) in base units (cores, bytes, count).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// Requests per container, then resource.
    pub requests: BTreeMap<String, BTreeMap<String, f64>>,
    /// Limits per container, then resource.
    pub limits: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Resources {
    /// max(sum of requests, largest single limit) of `resource`.
    fn size(&self, resource: &str) -> f64 {
        let sum: f64 = self.requests.values().filter_map(|r| r.get(resource)).sum();
        let largest = self
            .limits
            .values()
            .filter_map(|r| r.get(resource))
            .fold(0.0, |a: f64, b| a.max(*b));
        sum.max(largest)
    }

    fn resources(&self) -> impl Iterator<Item = &String> {
        self.requests
            .values()
            .chain(self.limits.values())
            .flat_map(|r| r.keys())
    }
}

/// One pod as billing sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pod {
    /// `uid`.
    pub uid: String,
    /// `cluster`.
    pub cluster: String,
    /// `namespace`.
    pub namespace: String,
    /// `pod`.
    pub name: String,
    /// Its workload: the controller owner, followed ReplicaSet → Deployment and
    /// Job → CronJob; (`Pod`, its name) for a pod without one.
    pub workload: (String, String),
    /// Pod labels (`label_` left off the collector's names).
    pub labels: BTreeMap<String, String>,
    /// Allowlisted pod annotations (`annotation_` left off).
    pub annotations: BTreeMap<String, String>,
    /// `status.startTime`, ms.
    pub start: Option<i64>,
    /// The latest container `finishedAt` once all have terminated, ms.
    pub completion: Option<i64>,
    /// `metadata.deletionTimestamp`, ms.
    pub deletion: Option<i64>,
    /// The newest sample of any of its series, ms.
    pub last_seen: i64,
    /// App containers.
    pub containers: Resources,
    /// Init containers.
    pub init_containers: Resources,
}

impl Pod {
    /// The running interval `[start, stop)` in ms as of `now`, or `None` if it never
    /// started (or stopped before it started). Stop: completion, else deletion, else now
    /// while its series still arrive, else when it was last seen.
    pub fn running(&self, now: i64) -> Option<(i64, i64)> {
        let start = self.start?;
        let stop = match self.completion.or(self.deletion) {
            Some(stop) => stop,
            None if now - self.last_seen > GONE_AFTER_MS => self.last_seen,
            None => now,
        };
        (stop > start).then_some((start, stop))
    }

    /// Whether the price table's spot annotation marks it.
    pub fn is_spot(&self, prices: &Prices) -> bool {
        prices.spot.as_ref().is_some_and(|s| {
            self.annotations
                .get(&sanitize(&s.annotation))
                .is_some_and(|v| v.trim() == "true")
        })
    }

    /// The billable size (docs/billing.md): size annotations win; otherwise per resource
    /// max(sum of app requests, largest app limit), the same over init containers, the
    /// larger of the two; nothing set at all is the default pod; then the ladder.
    pub fn size(&self, prices: &Prices) -> Size {
        let annotation = |key: &str| self.annotations.get(key).and_then(|v| quantity_decimal(v));
        let computed = |resource: &str| {
            from_f64(
                self.containers
                    .size(resource)
                    .max(self.init_containers.size(resource)),
            )
            .unwrap_or_default()
        };
        let mut size = Size {
            cpu: annotation(CPU_ANNOTATION).unwrap_or_else(|| computed("cpu")),
            memory_gib: annotation(MEMORY_ANNOTATION).unwrap_or_else(|| computed("memory")) / gib(),
            gpu: BTreeMap::new(),
        };
        let extended = self
            .containers
            .resources()
            .chain(self.init_containers.resources())
            .filter(|r| {
                !matches!(
                    r.as_str(),
                    "cpu" | "memory" | "ephemeral_storage" | "storage"
                )
            })
            .filter(|r| !r.starts_with("hugepages_"));
        for resource in extended {
            let n = computed(resource);
            if n > Decimal::ZERO {
                size.gpu.insert(price_name(prices, resource), n);
            }
        }
        if let Some(n) = annotation(GPU_ANNOTATION) {
            size.gpu.insert(ANNOTATED_GPU.to_string(), n);
        }
        if size == Size::default() {
            size = prices.default_pod.clone();
        }
        prices.on_ladder(size)
    }
}

/// A Kubernetes name as a Prometheus label name (`nvidia.com/gpu` → `nvidia_com_gpu`), as
/// the collector writes resource and annotation names.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The price table's name of a resource label (`nvidia_com_gpu` → `nvidia.com/gpu`), or the
/// label itself when the table does not price it.
fn price_name(prices: &Prices, resource: &str) -> String {
    prices
        .gpu_second
        .keys()
        .find(|k| sanitize(k) == resource)
        .cloned()
        .unwrap_or_else(|| resource.to_string())
}

/// The latest sample of a series: (timestamp ms, value).
type Latest = (i64, f64);

/// Builds [`Pod`]s from kube-state samples, in any order.
#[derive(Debug, Default)]
pub struct Gather {
    pods: BTreeMap<String, PodSeries>,
    /// (cluster, namespace, replicaset or job) → (owner kind, owner name).
    owners: BTreeMap<(String, String, String), (Latest, String, String)>,
}

#[derive(Debug, Default)]
struct PodSeries {
    ids: (String, String, String),
    last_seen: i64,
    times: BTreeMap<&'static str, Latest>,
    owner: Option<(Latest, String, String)>,
    labels: Option<(i64, BTreeMap<String, String>)>,
    annotations: Option<(i64, BTreeMap<String, String>)>,
    /// (init, request, container, resource) → latest.
    resources: BTreeMap<(bool, bool, String, String), Latest>,
}

fn newer(slot: &mut Option<(Latest, String, String)>, at: i64, v: f64, kind: &str, name: &str) {
    if slot.as_ref().is_none_or(|((t, _), _, _)| *t <= at) {
        *slot = Some(((at, v), kind.to_string(), name.to_string()));
    }
}

impl Gather {
    /// Takes one sample of a series (metric name, labels); series billing does not use
    /// are ignored.
    pub fn add(&mut self, metric: &str, labels: &BTreeMap<String, String>, at: i64, value: f64) {
        let get = |k: &str| labels.get(k).map_or("", String::as_str);
        match metric {
            "kube_replicaset_owner" | "kube_job_owner" => {
                let object = if metric == "kube_replicaset_owner" {
                    get("replicaset")
                } else {
                    get("job_name")
                };
                if get("owner_is_controller") != "true" {
                    return;
                }
                let key = (
                    get("cluster").into(),
                    get("namespace").into(),
                    object.into(),
                );
                let mut slot = self.owners.remove(&key);
                newer(&mut slot, at, value, get("owner_kind"), get("owner_name"));
                self.owners.extend(slot.map(|s| (key, s)));
                return;
            }
            m if !m.starts_with("kube_pod_") => return,
            _ => {}
        }
        let uid = get("uid");
        if uid.is_empty() {
            return;
        }
        let pod = self
            .pods
            .entry(uid.to_string())
            .or_insert_with(|| PodSeries {
                ids: (
                    get("cluster").into(),
                    get("namespace").into(),
                    get("pod").into(),
                ),
                last_seen: i64::MIN,
                ..PodSeries::default()
            });
        pod.last_seen = pod.last_seen.max(at);
        let keep = |slot: &mut Latest| {
            if slot.0 <= at {
                *slot = (at, value);
            }
        };
        match metric {
            "kube_pod_start_time" | "kube_pod_completion_time" | "kube_pod_deletion_timestamp" => {
                let name = match metric {
                    "kube_pod_start_time" => "start",
                    "kube_pod_completion_time" => "completion",
                    _ => "deletion",
                };
                keep(pod.times.entry(name).or_insert((i64::MIN, 0.0)));
            }
            "kube_pod_owner" if get("owner_is_controller") == "true" => {
                newer(
                    &mut pod.owner,
                    at,
                    value,
                    get("owner_kind"),
                    get("owner_name"),
                );
            }
            "kube_pod_labels" | "kube_pod_annotations" => {
                let (prefix, slot) = if metric == "kube_pod_labels" {
                    ("label_", &mut pod.labels)
                } else {
                    ("annotation_", &mut pod.annotations)
                };
                if slot.as_ref().is_none_or(|(t, _)| *t <= at) {
                    let map = labels
                        .iter()
                        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone())))
                        .collect();
                    *slot = Some((at, map));
                }
            }
            "kube_pod_container_resource_requests"
            | "kube_pod_container_resource_limits"
            | "kube_pod_init_container_resource_requests"
            | "kube_pod_init_container_resource_limits" => {
                let key = (
                    metric.starts_with("kube_pod_init_"),
                    metric.ends_with("_requests"),
                    get("container").to_string(),
                    get("resource").to_string(),
                );
                keep(pod.resources.entry(key).or_insert((i64::MIN, 0.0)));
            }
            _ => {}
        }
    }

    /// The pods seen, by uid.
    pub fn pods(&self) -> Vec<Pod> {
        let ms = |s: Option<&Latest>| s.map(|(_, v)| (v * 1000.0).round() as i64);
        self.pods
            .iter()
            .map(|(uid, p)| {
                let (cluster, namespace, name) = p.ids.clone();
                let mut pod = Pod {
                    uid: uid.clone(),
                    workload: self.workload(p),
                    labels: p.labels.clone().map(|(_, m)| m).unwrap_or_default(),
                    annotations: p.annotations.clone().map(|(_, m)| m).unwrap_or_default(),
                    start: ms(p.times.get("start")),
                    completion: ms(p.times.get("completion")),
                    deletion: ms(p.times.get("deletion")),
                    last_seen: p.last_seen,
                    cluster,
                    namespace,
                    name,
                    ..Pod::default()
                };
                for ((init, request, container, resource), (_, v)) in &p.resources {
                    let r = if *init {
                        &mut pod.init_containers
                    } else {
                        &mut pod.containers
                    };
                    let side = if *request {
                        &mut r.requests
                    } else {
                        &mut r.limits
                    };
                    side.entry(container.clone())
                        .or_default()
                        .insert(resource.clone(), *v);
                }
                pod
            })
            .collect()
    }

    /// A pod's workload: its controller, followed one step for ReplicaSets and Jobs.
    fn workload(&self, p: &PodSeries) -> (String, String) {
        let Some((_, kind, name)) = &p.owner else {
            return ("Pod".into(), p.ids.2.clone());
        };
        if kind == "ReplicaSet" || kind == "Job" {
            let key = (p.ids.0.clone(), p.ids.1.clone(), name.clone());
            if let Some((_, k, n)) = self.owners.get(&key) {
                return (k.clone(), n.clone());
            }
        }
        (kind.clone(), name.clone())
    }
}
