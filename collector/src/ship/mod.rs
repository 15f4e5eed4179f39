//! Shipping snapshots over Prometheus remote write 1.0, through a disk queue per
//! destination that rides out outages and restarts.
//!
//! Every snapshot is appended to each destination's [`queue`] as it is collected; nothing is
//! sent from memory. Per destination, one dispatcher reads the queue oldest first, splits it
//! into batches of at most `batch_size` samples per sender (a series always goes through the
//! same sender, so its samples arrive in order), paces them with a token bucket, and hands
//! them to the senders, which retry 5xx, 429 and connection errors with capped exponential
//! backoff and jitter and give up on other 4xx. A sender's position is persisted after every
//! batch it finishes. Destinations share nothing but the snapshot: a dead one never delays
//! another.

pub mod codec;
pub mod queue;
pub mod reader;
pub mod send;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use prometheus::Registry;
use telltale_model::parse::{for_each_sample, key_labels};
use telltale_model::prom::METRIC_NAME;
use telltale_model::remote::Body;
use telltale_model::time::to_millis;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use crate::metrics::ShipMetrics;
use crate::snapshot::Snapshot;
use codec::shard_of;
use queue::{Pos, Queue};
use reader::{Item, Reader};
pub use send::TlsFiles;
use send::{Destination, Outcome};

/// Errors setting shipping up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A destination or TLS file is unusable.
    #[error(transparent)]
    Send(#[from] send::Error),
    /// A queue cannot be opened.
    #[error(transparent)]
    Queue(#[from] queue::Error),
    /// Registering metrics failed.
    #[error("registering shipping metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Shipping settings (`--remote-write` and the `--buffer-*` flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// Receiver URLs.
    pub urls: Vec<String>,
    /// Bearer token file, re-read when it changes.
    pub token_file: Option<PathBuf>,
    /// TLS files.
    pub tls: TlsFiles,
    /// Queue root; each destination gets a directory in it.
    pub buffer_dir: PathBuf,
    /// Byte budget per destination.
    pub max_bytes: u64,
    /// Age budget.
    pub max_age: Duration,
    /// Longest time between fsyncs.
    pub fsync_every: Duration,
    /// Samples per request at most.
    pub batch_size: usize,
    /// Concurrent senders per destination.
    pub senders: usize,
    /// Samples per second per destination at most (replay included).
    pub max_rate: u64,
    /// Request timeout.
    pub timeout: Duration,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            urls: Vec::new(),
            token_file: None,
            tls: TlsFiles::default(),
            buffer_dir: PathBuf::from("./telltale-buffer"),
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(72 * 3600),
            fsync_every: Duration::from_secs(1),
            batch_size: 2000,
            senders: 1,
            max_rate: 20_000,
            timeout: Duration::from_secs(30),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

struct Lane {
    dest: Arc<Destination>,
    queue: Arc<Mutex<Queue>>,
    notify: Arc<Notify>,
}

/// Handle to every destination's queue; `append` each snapshot.
pub struct Shipper {
    lanes: Vec<Lane>,
    metrics: ShipMetrics,
}

fn lock(q: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(|p| p.into_inner())
}

/// A directory name for a destination: readable, and unique by a hash of the URL.
fn dir_name(name: &str) -> String {
    let readable: String = name
        .split("://")
        .last()
        .unwrap_or(name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!(
        "{readable}-{:08x}",
        shard_of(name.as_bytes(), u32::MAX as usize)
    )
}

impl Shipper {
    /// Opens every destination's queue and starts its senders (until `cancel`).
    pub fn start(
        cfg: &Config,
        registry: &Registry,
        cancel: CancellationToken,
    ) -> Result<Self, Error> {
        let metrics = ShipMetrics::new(registry)?;
        let mut lanes = Vec::new();
        for url in &cfg.urls {
            let dest = Arc::new(Destination::new(
                url,
                &cfg.tls,
                cfg.token_file.as_deref(),
                cfg.timeout,
            )?);
            metrics.init(&dest.name);
            let qcfg = queue::Config {
                dir: cfg.buffer_dir.join(dir_name(&dest.name)),
                max_bytes: cfg.max_bytes,
                max_age: cfg.max_age,
                segment_bytes: queue::Config::segment_bytes_for(cfg.max_bytes),
                fsync_every: cfg.fsync_every,
                shards: cfg.senders.max(1),
            };
            let q = Queue::open(qcfg.clone())?;
            let backlog = q.undispatched();
            if backlog > 0 {
                info!(destination = %dest.name, samples = backlog, dir = %qcfg.dir.display(), "resuming a buffered backlog");
            }
            let lane = Lane {
                dest,
                queue: Arc::new(Mutex::new(q)),
                notify: Arc::new(Notify::new()),
            };
            let span = tracing::info_span!("remote_write", destination = %lane.dest.name);
            tokio::spawn(
                dispatch(
                    lane.dest.clone(),
                    lane.queue.clone(),
                    lane.notify.clone(),
                    cfg.clone(),
                    metrics.clone(),
                    cancel.clone(),
                )
                .instrument(span),
            );
            lanes.push(lane);
        }
        Ok(Shipper { lanes, metrics })
    }

    /// Appends one snapshot to every queue. Blocking: call it off the async threads.
    /// `now` decides what is too old to keep.
    pub fn append(&self, snap: &Snapshot, now: SystemTime) {
        if self.lanes.is_empty() {
            return;
        }
        let samples = snapshot_samples(snap);
        let timestamp_ms = snap.timestamp_ms;
        for lane in &self.lanes {
            let mut q = lock(&lane.queue);
            let done = q.append(timestamp_ms, &samples, now);
            let name = lane.dest.name.as_str();
            self.metrics
                .queued
                .with_label_values(&[name])
                .inc_by(done.samples);
            if done.dropped_full > 0 {
                self.metrics
                    .dropped
                    .with_label_values(&[name, "buffer_full"])
                    .inc_by(done.dropped_full);
                warn!(
                    destination = name,
                    samples = done.dropped_full,
                    "buffer full: dropped its oldest segment"
                );
            }
            if done.dropped_age > 0 {
                self.metrics
                    .dropped
                    .with_label_values(&[name, "too_old"])
                    .inc_by(done.dropped_age);
                warn!(
                    destination = name,
                    samples = done.dropped_age,
                    "dropped a buffer segment older than --buffer-max-age"
                );
            }
            update_gauges(&self.metrics, name, &q, now);
            drop(q);
            lane.notify.notify_one();
        }
    }

    /// Fsyncs every queue (on shutdown).
    pub fn sync(&self) {
        for lane in &self.lanes {
            lock(&lane.queue).sync();
        }
    }
}

/// A snapshot's (series key, value) pairs in exposition order: from its index where it has
/// one, parsing only the rest of the text (own metrics).
pub fn snapshot_samples(snap: &Snapshot) -> Vec<(&[u8], f64)> {
    let text = &snap.text[..];
    let mut samples = Vec::with_capacity(snap.index.len() + 512);
    let mut from = 0;
    if snap.indexed_len > 0 || !snap.index.is_empty() {
        samples.extend(
            snap.index
                .iter()
                .map(|s| (&text[s.start as usize..s.end as usize], s.value)),
        );
        from = snap.indexed_len.min(text.len());
    }
    if let Err(e) = for_each_sample(&text[from..], |k, v, _| samples.push((k, v))) {
        // Our own encoders wrote it: a bug, but never a reason to stop collecting.
        warn!(error = %e, "snapshot does not parse; shipping the part before the error");
    }
    samples
}

fn update_gauges(m: &ShipMetrics, name: &str, q: &Queue, now: SystemTime) {
    m.queue_bytes
        .with_label_values(&[name])
        .set(q.bytes() as i64);
    let age = q
        .oldest_unacked()
        .map_or(0.0, |t| (to_millis(now) - t).max(0) as f64 / 1000.0);
    m.queue_age.with_label_values(&[name]).set(age);
    m.in_memory
        .with_label_values(&[name])
        .set(i64::from(q.degraded()));
}

/// A request for one sender.
struct Batch {
    body: Bytes,
    samples: u64,
    end: Pos,
}

/// One sender's batch being filled.
#[derive(Default)]
struct Pending {
    body: Body,
    samples: usize,
}

/// Paces dispatch to `rate` samples per second, with a one-second burst.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: tokio::time::Instant,
}

impl Bucket {
    async fn take(&mut self, n: u64) {
        loop {
            let now = tokio::time::Instant::now();
            self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate)
                .min(self.rate.max(n as f64));
            self.at = now;
            if self.tokens >= n as f64 {
                self.tokens -= n as f64;
                return;
            }
            let wait = (n as f64 - self.tokens) / self.rate;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

/// A wait between half of `backoff` and all of it, so that senders that failed together
/// do not retry together.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// Reads a destination's queue in order and feeds its senders.
async fn dispatch(
    dest: Arc<Destination>,
    queue: Arc<Mutex<Queue>>,
    notify: Arc<Notify>,
    cfg: Config,
    metrics: ShipMetrics,
    cancel: CancellationToken,
) {
    let shards = lock(&queue).shards();
    let mut senders = Vec::new();
    for shard in 0..shards {
        let (tx, rx) = mpsc::channel::<Batch>(1);
        tokio::spawn(
            sender(
                shard,
                rx,
                dest.clone(),
                queue.clone(),
                cfg.clone(),
                metrics.clone(),
                cancel.clone(),
            )
            .in_current_span(),
        );
        senders.push(tx);
    }
    let mut bucket = Bucket {
        rate: cfg.max_rate.max(1) as f64,
        tokens: 0.0,
        at: tokio::time::Instant::now(),
    };
    let batch_size = cfg.batch_size.max(1);
    let mut reader = Reader::new(lock(&queue).positions());
    let mut labels: Vec<Option<Box<[u8]>>> = Vec::new();
    let mut pending: Vec<Pending> = (0..shards).map(|_| Pending::default()).collect();

    // Hands sender `s` its batch of samples from segment `from` (only a position when
    // `always` and it is empty).
    macro_rules! flush {
        ($s:expr, $from:expr, $end:expr, $always:expr) => {{
            let s: usize = $s;
            let p = std::mem::take(&mut pending[s]);
            if p.samples > 0 || $always {
                let n = p.samples as u64;
                if n > 0 {
                    tokio::select! {
                        _ = bucket.take(n) => {}
                        _ = cancel.cancelled() => return,
                    }
                }
                // Wait for the sender first: until it takes the batch, its samples stay
                // in the queue (and are what a full buffer drops).
                let permit = tokio::select! {
                    p = senders[s].reserve() => match p { Ok(p) => p, Err(_) => return },
                    _ = cancel.cancelled() => return,
                };
                if lock(&queue).dispatch(s, $from, $end) {
                    let mut p = p;
                    let body = if n > 0 {
                        Bytes::from(p.body.finish())
                    } else {
                        Bytes::new()
                    };
                    permit.send(Batch {
                        body,
                        samples: n,
                        end: $end,
                    });
                }
            }
        }};
    }

    loop {
        if cancel.is_cancelled() {
            return;
        }
        let item = reader.next(&lock(&queue));
        match item {
            Item::Sample {
                shard,
                id,
                timestamp_ms,
                bits,
                end,
            } => {
                let idx = id as usize;
                if labels.len() <= idx {
                    labels.resize(idx + 1, None);
                }
                let l = labels[idx].get_or_insert_with(|| to_labels(reader.key(id)));
                let p = &mut pending[shard];
                p.body.push(l, timestamp_ms, f64::from_bits(bits));
                p.samples += 1;
                if p.samples >= batch_size {
                    flush!(shard, end.seg, end, false);
                }
            }
            Item::SegmentEnd { seg, next } => {
                // Batches never span segments: each is dispatched against its own.
                for s in 0..shards {
                    flush!(s, seg, Pos::start(next), true);
                }
                labels.clear();
            }
            Item::Pending { at } => {
                for s in 0..shards {
                    flush!(s, at.seg, at, false);
                }
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = cancel.cancelled() => return,
                }
            }
            Item::Gone => {
                // Dropped under us: what we had not handed over was counted as dropped.
                pending.iter_mut().for_each(|p| *p = Pending::default());
                labels.clear();
            }
            Item::Corrupt(e) => {
                warn!(error = %e, "undecodable buffer record; waiting for its segment to be sealed to skip it");
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = cancel.cancelled() => return,
                }
            }
        }
    }
}

/// The labels of an exposition key, sorted by name as remote write requires, encoded once
/// for every request the series goes into.
pub fn to_labels(key: &[u8]) -> Box<[u8]> {
    let mut pairs = key_labels(key).unwrap_or_else(|_| {
        vec![(
            METRIC_NAME.to_string(),
            String::from_utf8_lossy(key).into_owned(),
        )]
    });
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    Body::labels(&pairs).into()
}

/// Sends one sender's batches in order, retrying until each is delivered or rejected.
async fn sender(
    shard: usize,
    mut rx: mpsc::Receiver<Batch>,
    dest: Arc<Destination>,
    queue: Arc<Mutex<Queue>>,
    cfg: Config,
    metrics: ShipMetrics,
    cancel: CancellationToken,
) {
    let name = dest.name.clone();
    let mut failing = false;
    let mut rejected_logged = std::collections::HashSet::new();
    loop {
        let batch = tokio::select! {
            b = rx.recv() => match b { Some(b) => b, None => return },
            _ = cancel.cancelled() => return,
        };
        let mut backoff = cfg.min_backoff;
        // An empty batch only moves the position.
        let mut done = batch.samples == 0;
        while !done {
            let start = Instant::now();
            let outcome = dest.send(batch.body.clone()).await;
            metrics
                .send_duration
                .with_label_values(&[&name])
                .observe(start.elapsed().as_secs_f64());
            match outcome {
                Outcome::Delivered => {
                    metrics
                        .sent
                        .with_label_values(&[&name])
                        .inc_by(batch.samples);
                    if failing {
                        failing = false;
                        info!(shard, "destination accepts writes again");
                    }
                    done = true;
                }
                Outcome::Rejected { status, message } => {
                    metrics
                        .dropped
                        .with_label_values(&[&name, "rejected"])
                        .inc_by(batch.samples);
                    if rejected_logged.insert(status) {
                        warn!(shard, status, message, samples = batch.samples, "destination rejected a batch; dropped, not retried (logged once per status)");
                    }
                    done = true;
                }
                Outcome::Retry { why, after } => {
                    metrics
                        .retried
                        .with_label_values(&[&name])
                        .inc_by(batch.samples);
                    if !failing {
                        failing = true;
                        warn!(
                            shard,
                            why, "destination unavailable; buffering and retrying"
                        );
                    }
                    let wait = after
                        .unwrap_or_else(|| jittered(backoff))
                        .min(cfg.max_backoff);
                    backoff = (backoff * 2).min(cfg.max_backoff);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = cancel.cancelled() => return,
                    }
                }
            }
        }
        let mut q = lock(&queue);
        q.ack(shard, batch.end);
        update_gauges(&metrics, &name, &q, SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_gives_what_parsing_the_whole_snapshot_gives() {
        use crate::fixture::{populate, Driver, Node, Runtime, Version};
        let dir = tempfile::tempdir().unwrap();
        let node = Node::new(dir.path(), Version::V2, Driver::Systemd).unwrap();
        populate(&node, 3, 6, Runtime::Containerd).unwrap();
        let mut c = crate::Collector::new(&node.options("c", "n"), Registry::new()).unwrap();
        c.index_samples(true);
        let snap = c.collect(SystemTime::now());
        assert!(snap.index.len() > 100);
        let mut parsed = Vec::new();
        for_each_sample(&snap.text, |k, v, _| parsed.push((k, v))).unwrap();
        let from_index = snapshot_samples(&snap);
        assert_eq!(from_index.len(), parsed.len());
        for (a, b) in from_index.iter().zip(&parsed) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_paces_to_its_rate() {
        let mut b = Bucket {
            rate: 1000.0,
            tokens: 0.0,
            at: tokio::time::Instant::now(),
        };
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            b.take(500).await;
        }
        // 5,000 samples at 1,000/s: five seconds (of paused, auto-advanced time).
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(4900), "{took:?}");
        assert!(took <= Duration::from_millis(5200), "{took:?}");
    }

    #[test]
    fn jitter_stays_within_half_and_all_of_the_backoff() {
        let b = Duration::from_millis(800);
        for _ in 0..1000 {
            let j = jittered(b);
            assert!(j >= b / 2 && j <= b, "{j:?}");
        }
    }
}
