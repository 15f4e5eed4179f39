//! Settlement: a pod's running time split at UTC hour boundaries into hourly records,
//! and reports that sum records over a window, grouped.
//!
//! A record keeps the exact sub-interval of its hour the pod ran and the pod's cost per
//! second, so a window that cuts an hour counts only its own seconds, and the records of
//! a pod always add up to its charge over the whole interval (decimal arithmetic, no
//! rounding until a report asks for it).

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;

use super::pods::Pod;
use telltale_model::calendar::HOUR_MS;

use super::prices::{Prices, Size};

/// One pod's use within one UTC hour.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The hour's start, ms since the epoch (UTC).
    pub hour: i64,
    /// The part of the hour the pod ran, `[from, to)` in ms.
    pub from: i64,
    /// See `from`.
    pub to: i64,
    /// `cluster`.
    pub cluster: String,
    /// `namespace`.
    pub namespace: String,
    /// Workload kind (`Deployment`, `CronJob`, `StatefulSet`, `Pod`...).
    pub workload_kind: String,
    /// Workload name.
    pub workload: String,
    /// Pod name.
    pub pod: String,
    /// Pod uid.
    pub uid: String,
    /// Pod labels, for `label:<name>` groups.
    pub labels: BTreeMap<String, String>,
    /// The billable size.
    pub size: Size,
    /// Cost per second of running (spot multiplier applied).
    pub rate: Decimal,
}

/// A record's (or a part's) quantities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Seconds run.
    pub seconds: Decimal,
    /// Cores x seconds.
    pub cpu_core_seconds: Decimal,
    /// GiB x seconds.
    pub memory_gib_seconds: Decimal,
    /// Extended resources x seconds, summed over resources.
    pub gpu_seconds: Decimal,
    /// Money.
    pub cost: Decimal,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.seconds += o.seconds;
        self.cpu_core_seconds += o.cpu_core_seconds;
        self.memory_gib_seconds += o.memory_gib_seconds;
        self.gpu_seconds += o.gpu_seconds;
        self.cost += o.cost;
    }
}

impl Record {
    /// The usage in `[start, end)` (ms): the whole record when the window holds it.
    pub fn usage(&self, start: i64, end: i64) -> Usage {
        let (from, to) = (self.from.max(start), self.to.min(end));
        if to <= from {
            return Usage::default();
        }
        let seconds = Decimal::new(to - from, 3);
        Usage {
            seconds,
            cpu_core_seconds: self.size.cpu * seconds,
            memory_gib_seconds: self.size.memory_gib * seconds,
            gpu_seconds: self.size.gpu.values().sum::<Decimal>() * seconds,
            cost: self.rate * seconds,
        }
    }
}

/// A pod's hourly records as of `now` (ms): one per UTC hour it ran in.
pub fn settle(pod: &Pod, prices: &Prices, now: i64) -> Vec<Record> {
    let Some((start, stop)) = pod.running(now) else {
        return Vec::new();
    };
    let size = pod.size(prices);
    let mut rate = prices.per_second(&size);
    if pod.is_spot(prices) {
        rate *= prices.spot.as_ref().map_or(Decimal::ONE, |s| s.multiplier);
    }
    let mut out = Vec::new();
    let mut hour = start.div_euclid(HOUR_MS) * HOUR_MS;
    while hour < stop {
        out.push(Record {
            hour,
            from: start.max(hour),
            to: stop.min(hour + HOUR_MS),
            cluster: pod.cluster.clone(),
            namespace: pod.namespace.clone(),
            workload_kind: pod.workload.0.clone(),
            workload: pod.workload.1.clone(),
            pod: pod.name.clone(),
            uid: pod.uid.clone(),
            labels: pod.labels.clone(),
            size: size.clone(),
            rate,
        });
        hour += HOUR_MS;
    }
    out
}

/// What a report groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum By {
    /// `cluster`.
    Cluster,
    /// `namespace`.
    Namespace,
    /// `workload`: `namespace/Kind/name`.
    Workload,
    /// `pod`: `namespace/name`.
    Pod,
    /// `label:<name>`: the pod label's value (empty when unset).
    Label(String),
}

impl FromStr for By {
    type Err = String;
    fn from_str(s: &str) -> Result<By, String> {
        Ok(match s {
            "cluster" => By::Cluster,
            "namespace" => By::Namespace,
            "workload" => By::Workload,
            "pod" => By::Pod,
            s => match s.strip_prefix("label:") {
                Some(name) if !name.is_empty() => By::Label(name.to_string()),
                _ => {
                    return Err(format!(
                        "by={s:?}: expected cluster, namespace, workload, pod or label:<name>"
                    ))
                }
            },
        })
    }
}

impl By {
    fn group(&self, r: &Record) -> String {
        match self {
            By::Cluster => r.cluster.clone(),
            By::Namespace => r.namespace.clone(),
            By::Workload => format!("{}/{}/{}", r.namespace, r.workload_kind, r.workload),
            By::Pod => format!("{}/{}", r.namespace, r.pod),
            By::Label(name) => r.labels.get(name).cloned().unwrap_or_default(),
        }
    }
}

/// Usage per group over `[start, end)` (ms), groups in name order.
pub fn report<'r>(
    records: impl IntoIterator<Item = &'r Record>,
    start: i64,
    end: i64,
    by: &By,
) -> BTreeMap<String, Usage> {
    let mut out: BTreeMap<String, Usage> = BTreeMap::new();
    for r in records {
        if r.to <= start || r.from >= end {
            continue;
        }
        *out.entry(by.group(r)).or_default() += r.usage(start, end);
    }
    out
}
