//! Container metrics from cgroups, under cAdvisor's names: cgroup v1, hybrid (v1 controllers
//! beside a unified mount; the v1 controllers are read, as cAdvisor does) and pure v2.
//!
//! Each cycle `discovery` finds new and vanished cgroups (walking the hierarchy only after
//! inotify saw a change, and every [`REWALK_EVERY`] cycles), then every known cgroup is read
//! with one kept-handle `pread` per file (`v1` or `v2`, as `layout` found), then each pod's
//! network table (`network`); `families` writes what was read. A cgroup's identity,
//! labels, enabled controllers and start time are worked out once, when it first appears.
//! Cgroups that disappear are dropped with their series. The hierarchy root itself is not
//! exported: the node families describe the whole machine.

mod discovery;
mod families;
mod files;
pub mod identity;
mod labels;
mod layout;
mod network;
mod source;
mod stats;
mod v1;
mod v2;

pub use discovery::REWALK_EVERY;
pub use identity::Identity;
pub use layout::{Error, Layout, Version};
pub use source::CgroupSource;
pub use stats::SPEC_EVERY;

#[cfg(test)]
mod tests;
