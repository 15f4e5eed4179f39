//! One collection cycle: read every source, then encode one snapshot of the text exposition.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use prometheus::Registry;
use telltale_model::time::{align_down, to_millis, TimestampMs};
use telltale_model::{LabelSet, TextEncoder};
use tracing::{info, warn};

use crate::cgroup::{CgroupSource, Layout};
use crate::cycle_errors::CycleErrors;
use crate::kept_files::{FdBudget, ReadBuf};
use crate::kube_state::ClusterState;
use crate::metrics::Metrics;
use crate::node::NodeSource;
use crate::options::Options;
use crate::pod_names::Kube;
use crate::snapshot::Snapshot;

/// Errors setting the collector up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The procfs root does not look like procfs.
    #[error("--proc-root {0}: no stat file there; is it a procfs mount?")]
    NoProcfs(PathBuf),
    /// Registering own metrics failed (a name collision in the registry).
    #[error("registering collector metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Owns every source and the state kept between cycles.
pub struct Collector {
    node: NodeSource,
    cgroups: Option<CgroupSource>,
    labels: LabelSet,
    interval: Duration,
    buf: ReadBuf,
    errors: CycleErrors,
    failing: Vec<&'static str>,
    metrics: Metrics,
    registry: Registry,
    last_len: usize,
    /// The texts of the last two snapshots. The older one is normally no longer served by
    /// then, and its buffer is written again instead of faulting in fresh pages each cycle.
    recycle: VecDeque<Bytes>,
    kube: Option<Kube>,
    names_generation: u64,
    /// Cluster-wide objects for `--cluster-state`.
    state: Option<ClusterState>,
    /// Record each sample's key and value (for the shipper).
    index_samples: bool,
}

impl Collector {
    /// Sets up the sources; own metrics are registered in `registry`.
    pub fn new(opts: &Options, registry: Registry) -> Result<Self, Error> {
        if !opts.proc_root.join("stat").exists() {
            return Err(Error::NoProcfs(opts.proc_root.clone()));
        }
        FdBudget::init();
        let cgroups = match Layout::detect(&opts.sys_root) {
            Ok(layout) => {
                info!(version = ?layout.version(), "reading cgroups");
                Some(CgroupSource::new(
                    layout,
                    &opts.proc_root,
                    &opts.cluster,
                    &opts.node_name,
                ))
            }
            Err(e) => {
                warn!(error = %e, "no container metrics: only node metrics will be exported");
                None
            }
        };
        Ok(Collector {
            node: NodeSource::new(&opts.proc_root, &opts.rootfs),
            cgroups,
            labels: LabelSet::new([
                ("cluster", opts.cluster.as_str()),
                ("node", opts.node_name.as_str()),
            ]),
            interval: opts.interval,
            buf: ReadBuf::default(),
            errors: CycleErrors::default(),
            failing: Vec::new(),
            metrics: Metrics::new(&registry)?,
            registry,
            last_len: 64 * 1024,
            recycle: VecDeque::new(),
            kube: None,
            names_generation: 0,
            state: None,
            index_samples: opts.ships(),
        })
    }

    /// Exports cluster-wide state (`--cluster-state`).
    pub fn set_cluster_state(&mut self, state: ClusterState) {
        self.state = Some(state);
    }

    /// Names cgroup series after this node's pods as `kube` learns them.
    pub fn set_kube(&mut self, kube: Kube) {
        self.kube = Some(kube);
        self.names_generation = u64::MAX;
    }

    /// Errors recorded by the last `read`.
    pub fn last_errors(&self) -> &CycleErrors {
        &self.errors
    }

    /// Phase one of a cycle: reads every source.
    pub fn read(&mut self) {
        self.errors.clear();
        self.node.read(&mut self.buf, &mut self.errors);
        if let Some(cg) = &mut self.cgroups {
            if let Some(kube) = &self.kube {
                let generation = kube.generation();
                if generation != self.names_generation {
                    cg.set_names(kube.names());
                    self.names_generation = generation;
                }
                kube.age_departed();
            }
            cg.read(&mut self.buf, &mut self.errors, self.node.has_swap());
        }
    }

    /// Makes every snapshot carry its sample index (the shipper's input), so nothing
    /// parses the text back.
    pub fn index_samples(&mut self, on: bool) {
        self.index_samples = on;
    }

    /// Phase two: encodes what the last `read` found, then own metrics (which by then
    /// count this cycle).
    pub fn encode(&mut self, timestamp_ms: TimestampMs) -> Snapshot {
        let mut enc = TextEncoder::with_buffer(self.spare_buffer());
        if self.index_samples {
            enc.index_samples();
        }
        self.node.emit(&self.labels, &mut enc);
        if let Some(cg) = &self.cgroups {
            cg.emit(self.node.devices(), &mut enc);
        }
        if let Some(state) = &self.state {
            state.emit(&mut enc);
        }
        let (series, families) = (enc.samples(), enc.families());
        self.metrics.cycles.inc();
        self.metrics.series.set(series as i64);
        self.metrics
            .exposition_bytes
            .set(enc.as_bytes().len() as i64);
        let own = prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default();
        let indexed_len = enc.as_bytes().len();
        let index = enc.take_index();
        enc.append_raw(own.as_bytes());
        let text = Bytes::from(enc.take());
        self.last_len = text.len();
        self.recycle.push_back(text.clone());
        Snapshot {
            timestamp_ms,
            text,
            series,
            families,
            index,
            indexed_len,
        }
    }

    /// A buffer for the next snapshot: the one before last if nothing holds it any more,
    /// else a new one sized for the last snapshot.
    fn spare_buffer(&mut self) -> Vec<u8> {
        if self.recycle.len() >= 2 {
            if let Some(old) = self.recycle.pop_front() {
                if let Ok(unique) = old.try_into_mut() {
                    return Vec::from(unique);
                }
            }
        }
        Vec::with_capacity(self.last_len + self.last_len / 8)
    }

    /// A whole cycle: read, encode, and account for it in own metrics and the log. The
    /// duration of a cycle's encode phase shows in the next snapshot.
    pub fn collect(&mut self, now: SystemTime) -> Snapshot {
        let started = Instant::now();
        self.read();
        let read_time = started.elapsed();
        self.account();
        let m = &self.metrics;
        m.cycle_duration
            .with_label_values(&["read"])
            .observe(read_time.as_secs_f64());
        let encode_started = Instant::now();
        let snap = self.encode(align_down(to_millis(now), self.interval));
        let m = &self.metrics;
        m.cycle_duration
            .with_label_values(&["encode"])
            .observe(encode_started.elapsed().as_secs_f64());
        snap
    }

    /// Counts this cycle's errors and logs sources that started failing or recovered.
    fn account(&mut self) {
        for (source, n, first) in self.errors.iter() {
            self.metrics.errors.with_label_values(&[source]).inc_by(n);
            if !self.failing.contains(&source) {
                warn!(
                    source,
                    errors = n,
                    first,
                    "collection source failing; its series are skipped"
                );
            }
        }
        let errors = &self.errors;
        self.failing.retain(|s| {
            let still = errors.count(s) > 0;
            if !still {
                info!(source = *s, "collection source recovered");
            }
            still
        });
        for (source, _, _) in errors.iter() {
            if !self.failing.contains(&source) {
                self.failing.push(source);
            }
        }
        self.metrics
            .cgroups
            .set(self.cgroups.as_ref().map_or(0, |c| c.len()) as i64);
        self.metrics.kept_files.set(FdBudget::kept() as i64);
        let reads = crate::kept_files::reads_total();
        self.metrics
            .file_reads
            .inc_by(reads.saturating_sub(self.metrics.file_reads.get()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{Driver, Node, Version};

    #[test]
    fn a_snapshot_nobody_holds_lends_its_buffer_and_one_still_served_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::new(dir.path(), Version::V2, Driver::Systemd).unwrap();
        let opts = node.options("c", "n");
        let mut c = Collector::new(&opts, Registry::new()).unwrap();
        let first = c.collect(SystemTime::now());
        let first_ptr = first.text.as_ptr();
        let first_text = first.text.clone();
        let _second = c.collect(SystemTime::now());
        // Someone still holds the first snapshot: it must not be written over.
        let third = c.collect(SystemTime::now());
        assert_ne!(third.text.as_ptr(), first_ptr);
        assert_eq!(first.text, first_text);
        drop((first, first_text));
        // Nobody holds the second any more: the fourth reuses its buffer.
        let second_ptr = _second.text.as_ptr();
        drop(_second);
        let fourth = c.collect(SystemTime::now());
        assert_eq!(fourth.text.as_ptr(), second_ptr);
        assert!(fourth.text.starts_with(b"# HELP node_cpu_seconds_total"));
    }
}
