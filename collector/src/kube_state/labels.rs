//! How Kubernetes fields become labels and values, as kube-state-metrics writes them: keys
//! sanitised into label names, the pod annotation allowlist, resource quantities with their
//! `unit` label, owner references, timestamps in seconds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use telltale_model::{quantity, LabelSet, Sink};

/// Which pod annotations become `kube_pod_annotations` labels: exact keys, or prefixes
/// ending in `*`.
#[derive(Debug, Clone)]
pub struct AnnotationAllowlist(Vec<String>);

impl AnnotationAllowlist {
    /// From a comma-separated list (`eks.tke.cloud.tencent.com/*,team`).
    pub fn parse(list: &str) -> Self {
        AnnotationAllowlist(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    pub(super) fn allows(&self, key: &str) -> bool {
        self.0.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => p == key,
        })
    }
}

/// A label name from a Kubernetes key, as kube-state-metrics writes it: `prefix_` then the
/// key with every character other than ASCII letters, digits and `_` replaced by `_`.
pub fn sanitize(prefix: &str, key: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + key.len());
    out.push_str(prefix);
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

/// A Kubernetes timestamp in seconds since the epoch.
pub(super) fn seconds(t: &Time) -> f64 {
    t.0.as_second() as f64 + f64::from(t.0.subsec_nanosecond()) / 1e9
}

/// (resource label, unit label, value) per kube-state-metrics' conventions.
pub(super) fn resource(name: &str, q: &str) -> Option<(String, &'static str, f64)> {
    let v = quantity::parse(q)?;
    let unit = match name {
        "cpu" => "core",
        "memory" | "ephemeral-storage" | "storage" => "byte",
        n if n.starts_with("hugepages-") => "byte",
        _ => "integer",
    };
    Some((sanitize("", name), unit, v))
}

/// One sample per owner reference (kube-state-metrics' owner families), or a single
/// `<none>` sample for an object without owners.
pub(super) fn sample_owners(sink: &mut dyn Sink, labels: &LabelSet, owners: &[OwnerReference]) {
    if owners.is_empty() {
        let none = [
            ("owner_kind", "<none>"),
            ("owner_name", "<none>"),
            ("owner_is_controller", "<none>"),
        ];
        sink.sample(labels, &none, 1.0);
    }
    for o in owners {
        let ctl = if o.controller == Some(true) {
            "true"
        } else {
            "false"
        };
        sink.sample(
            labels,
            &[
                ("owner_kind", &o.kind),
                ("owner_name", &o.name),
                ("owner_is_controller", ctl),
            ],
            1.0,
        );
    }
}
