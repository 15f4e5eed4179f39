//! Telltale's bottom layer, shared by every role: what a metric family and a label set are,
//! the Prometheus text exposition format (0.0.4) written and read back, the remote-write 1.0
//! wire types, sample time and the calendar, and the Prometheus facts (stale marker, name
//! syntax, API times and durations) every role shares.
//!
//! Sources never build per-sample structures: they hold one [`LabelSet`] per object (a node, a
//! cgroup, a device) and push values into a [`Sink`], family by family. The text encoder is
//! one sink; the shipper reads its output back
//! ([`parse`]) into remote-write requests ([`remote`]).

pub mod calendar;
pub mod frame;
pub mod labels;
pub mod parse;
pub mod prom;
pub mod quantity;
pub mod remote;
pub mod text;
pub mod time;

pub use labels::LabelSet;
pub use text::{SampleAt, TextEncoder};

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
