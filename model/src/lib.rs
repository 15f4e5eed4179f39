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
pub mod remote_read;
pub mod sink;
pub mod text;
pub mod time;

pub use labels::LabelSet;
pub use sink::{MetricKind, Sink};
pub use text::{SampleAt, TextEncoder};
