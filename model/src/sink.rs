//! What sources push into: a metric family's header, then its samples; the text encoder
//! is one such sink.

use crate::labels::LabelSet;

/// The Prometheus type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic, reset only by a restart of what it counts.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Prometheus's "untyped": used where an ecosystem name must be kept but breaks a
    /// convention of its declared type (e.g. cAdvisor's `container_memory_failcnt`).
    Untyped,
}

impl MetricKind {
    /// The word used on a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Untyped => "untyped",
        }
    }
}

/// Where sources put what they collected: a family header, then that family's samples.
///
/// All samples of a family are pushed after its `family` call and before the next one.
/// A family with no samples leaves no trace in the output.
pub trait Sink {
    /// Starts a family. `help` is plain text (escaped by the sink).
    fn family(&mut self, name: &str, help: &str, kind: MetricKind);
    /// One sample of the current family: the object's labels, then extra per-sample labels
    /// (e.g. `cpu`, `mode`, `device`) which must not repeat a name in `labels`.
    fn sample(&mut self, labels: &LabelSet, extra: &[(&str, &str)], value: f64);
}
