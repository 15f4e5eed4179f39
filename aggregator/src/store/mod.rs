//! The store: every sample the aggregator accepted, from the write-ahead log to the day
//! partitions, and the only way anything else reads them.
//!
//! - [`layout`]: every path under `--data-dir`;
//! - [`bucket`]: the object store that keeps a copy of every file (`--object-store`);
//! - [`wal`]: the write-ahead log that makes an acknowledged request durable;
//! - [`head`]: samples since the last flush, in memory, by day and series;
//! - [`partition`]: immutable day-partitioned Parquet files, their compaction and the
//!   quarantine of unreadable ones;
//! - [`retention`]: whole days past `--retention` (and rollups past theirs) deleted;
//! - [`rollup`]: each complete day summarised in 5-minute and 1-hour buckets, rebuilt
//!   when its raw files change; [`select_rollup`] reads them;
//! - [`select`]: a selector's series from the head, a flush in progress and the files,
//!   with the cache of file footers and series tables;
//! - here: [`Store`], which keeps the WAL and the head consistent, flushes, and answers
//!   the query engine through [`crate::query::Source`].
//!
//! Promises: [`Store::append`] returns only once the request is in the WAL (fsynced); a
//! flush makes its files durable before the WAL segments they cover are removed (with an
//! object store: once the bucket acknowledged them, see [`Store::bucket_loop`]); a sample
//! is readable from the moment `append` returns until retention deletes its day, whether
//! it is in the head, in a flush under way or in a file.

pub mod bucket;
pub mod head;
pub mod layout;
pub mod partition;
mod prefetch;
pub mod retention;
pub mod rollup;
pub mod select;
pub mod select_rollup;
pub mod wal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use telltale_model::prom::METRIC_NAME;
use telltale_model::remote::RequestRef;
use telltale_model::time::{to_millis, Clock};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::metrics::Metrics;
use crate::query;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The WAL cannot be opened, replayed, written or checkpointed.
    #[error(transparent)]
    Wal(#[from] wal::Error),
    /// A flush could not write its files (the WAL still holds the samples).
    #[error("flush: {0}")]
    Flush(#[from] partition::Error),
    /// A background task died.
    #[error("{0}")]
    Task(String),
    /// The object store failed (the files stay on local disk, the WAL keeps them).
    #[error(transparent)]
    Bucket(#[from] bucket::Error),
}

/// Told about the samples of the metrics it wants as they are accepted (billing marks the
/// settled hours a late sample changes), and asked to make that durable before the WAL
/// segments that would replay those samples are removed.
pub trait Watch: Send + Sync {
    /// Whether samples of `metric` are of interest.
    fn wants(&self, metric: &str) -> bool;
    /// A sample of a wanted metric at `ts` (ms), within retention; true if it changed
    /// something, then [`Watch::changed`] follows once for its request.
    fn sample(&self, ts: i64) -> bool;
    /// Samples of the last request changed something.
    fn changed(&self);
    /// Before a flush removes WAL segments: keep what the samples told (a failure fails
    /// the flush, and the WAL keeps the samples).
    fn before_checkpoint(&self) -> Result<(), partition::Error>;
}

/// How the store is set up.
pub struct Config {
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// Flush when the head holds this many samples.
    pub flush_samples: usize,
    /// Where "now" comes from (retention).
    pub clock: Arc<dyn Clock>,
    /// How long raw samples are kept.
    pub retention: Duration,
    /// How long 5-minute rollups are kept.
    pub retention_5m: Duration,
    /// How long 1-hour rollups are kept.
    pub retention_1h: Duration,
    /// Told about accepted samples.
    pub watch: Arc<dyn Watch>,
    /// The aggregator's own metrics.
    pub metrics: Metrics,
    /// Bytes the query cache of file footers, series tables and label sets may hold.
    pub query_cache_max_bytes: usize,
    /// The object store holding a copy of every file, if any.
    pub bucket: Option<Arc<bucket::Bucket>>,
    /// Bytes the WAL may hold before appends are refused (0: no bound). Only an object
    /// store that does not answer lets it grow past a few flushes' worth.
    pub wal_max_bytes: u64,
}

/// The WAL and the head, kept consistent: every request is appended to the WAL and
/// inserted in the head under the same gate a flush closes, so a flush takes exactly the
/// samples of the WAL segments it then retires.
pub struct Store {
    data_dir: PathBuf,
    wal: wal::Wal,
    head: Mutex<head::Head>,
    gate: tokio::sync::RwLock<()>,
    flushes: AtomicU64,
    /// Woken when the head is over its size.
    full: tokio::sync::Notify,
    flush_samples: usize,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
    retention: Duration,
    retention_5m: Duration,
    retention_1h: Duration,
    watch: Arc<dyn Watch>,
    /// Heads taken by a flush and not yet in files: queries read them meanwhile.
    flushing: Mutex<Vec<Arc<BTreeMap<i64, head::Sorted>>>>,
    /// Files' footers and series tables, for queries.
    files: select::FileCache,
    /// The object store, if any.
    bucket: Option<Arc<bucket::Bucket>>,
    /// With an object store: the WAL segments before this one are in files on local
    /// disk, and may go once the bucket holds those files.
    covered: AtomicU64,
    /// The segment the WAL was last checkpointed at by [`Store::upload`].
    checkpointed: AtomicU64,
    /// Woken when a flush wrote files to upload.
    flushed: tokio::sync::Notify,
    /// `--wal-max-bytes` (0: no bound).
    wal_max_bytes: u64,
    /// Bytes of the WAL's segments: counted up by appends, read from disk after each
    /// checkpoint.
    wal_size: AtomicU64,
}

impl Store {
    /// Replays the WAL into the head, opens the WAL for appending, and moves unreadable
    /// files aside.
    pub async fn open(cfg: Config) -> Result<Store, Error> {
        let dir = layout::wal_dir(&cfg.data_dir);
        let mut head = head::Head::default();
        let oldest = retention::cutoff(&*cfg.clock, cfg.retention);
        let records = wal::replay(&dir, |body| {
            // Every record was validated before it was logged.
            let raw = snap::raw::Decoder::new().decompress_vec(body);
            match raw.as_deref().map(RequestRef::parse) {
                Ok(Ok(req)) => {
                    insert(&mut head, &req, oldest, &*cfg.watch);
                }
                _ => tracing::warn!("a logged request no longer decodes; it is skipped"),
            }
        })?;
        let (bytes, syncs) = (cfg.metrics.wal_bytes.clone(), cfg.metrics.wal_syncs.clone());
        let wal = wal::Wal::open(&dir, 64 << 20, move |b, _| {
            bytes.inc_by(b);
            syncs.inc();
        })?;
        info!(records, samples = head.samples(), dir = %dir.display(), "WAL replayed");
        let wal_size = wal::size(&dir);
        cfg.metrics.wal_size.set(wal_size as i64);
        cfg.metrics.head_samples.set(head.samples() as i64);
        cfg.metrics.head_series.set(head.series() as i64);
        let data = cfg.data_dir.clone();
        let moved = tokio::task::spawn_blocking(move || partition::scan(&data))
            .await
            .unwrap_or_default();
        cfg.metrics.corrupt_files.inc_by(moved.len() as u64);
        report_usage(&cfg.metrics, &cfg.data_dir);
        Ok(Store {
            data_dir: cfg.data_dir,
            wal,
            head: Mutex::new(head),
            gate: tokio::sync::RwLock::new(()),
            flushes: AtomicU64::new(0),
            full: tokio::sync::Notify::new(),
            flush_samples: cfg.flush_samples.max(1),
            metrics: cfg.metrics,
            clock: cfg.clock,
            retention: cfg.retention,
            retention_5m: cfg.retention_5m,
            retention_1h: cfg.retention_1h,
            watch: cfg.watch,
            flushing: Mutex::new(Vec::new()),
            files: select::FileCache::new(cfg.query_cache_max_bytes),
            bucket: cfg.bucket,
            covered: AtomicU64::new(0),
            checkpointed: AtomicU64::new(0),
            flushed: tokio::sync::Notify::new(),
            wal_max_bytes: cfg.wal_max_bytes,
            wal_size: AtomicU64::new(wal_size),
        })
    }

    /// `--data-dir`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Calls `f` with every series the head holds and its points (ms, value bits), then
    /// with those of heads a flush has taken and not yet written. Read before the files
    /// (as samples move head -> flush -> files), every sample is seen at least once.
    pub fn visit_head(&self, mut f: impl FnMut(&head::SeriesKey, &[(i64, u64)])) {
        self.head().visit(&mut f);
        let taken: Vec<_> = self.flushing().clone();
        for days in taken {
            for series in days.values() {
                for (key, points) in series {
                    f(key, points);
                }
            }
        }
    }

    fn head(&self) -> MutexGuard<'_, head::Head> {
        self.head.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flushing(&self) -> MutexGuard<'_, Vec<Arc<BTreeMap<i64, head::Sorted>>>> {
        self.flushing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `body` durable, then adds `req` (it decompressed, validated) to the head.
    /// Refused with [`wal::Error::Full`] while the WAL holds `--wal-max-bytes`.
    pub async fn append(&self, body: Vec<u8>, req: &RequestRef<'_>) -> Result<(), wal::Error> {
        let bytes = self.wal_size.load(Ordering::Relaxed);
        if self.wal_max_bytes > 0 && bytes >= self.wal_max_bytes {
            return Err(wal::Error::Full {
                bytes,
                max: self.wal_max_bytes,
            });
        }
        let _open = self.gate.read().await;
        let len = body.len() as u64;
        self.wal.append(body).await?;
        let size = self.wal_size.fetch_add(len, Ordering::Relaxed) + len;
        self.metrics.wal_size.set(size as i64);
        let oldest = retention::cutoff(&*self.clock, self.retention);
        let mut head = self.head();
        let skipped = insert(&mut head, req, oldest, &*self.watch);
        self.metrics.too_old.inc_by(skipped);
        self.metrics.head_samples.set(head.samples() as i64);
        self.metrics.head_series.set(head.series() as i64);
        if head.samples() >= self.flush_samples {
            self.full.notify_one();
        }
        Ok(())
    }

    /// Writes the head to Parquet and retires the WAL segments it came from. Returns the
    /// files written.
    pub async fn flush(&self) -> Result<Vec<PathBuf>, Error> {
        let start = std::time::Instant::now();
        let (days, seq) = {
            let _closed = self.gate.write().await;
            let seq = self.wal.rotate().await?;
            let mut head = self.head();
            let days = Arc::new(head.take());
            // Visible to queries before the head lets go of them.
            self.flushing().push(days.clone());
            drop(head);
            (days, seq)
        };
        self.metrics.head_samples.set(0);
        self.metrics.head_series.set(0);
        // The WAL segments that would replay what the watcher was told are about to go.
        self.watch.before_checkpoint()?;
        if days.is_empty() {
            self.retire(seq)?;
            return Ok(Vec::new());
        }
        let n = self.flushes.fetch_add(1, Ordering::Relaxed);
        let replica = self.bucket.as_ref().and_then(|b| b.replica());
        let name = layout::flush_file(to_millis(std::time::SystemTime::now()), n, replica);
        let data_dir = self.data_dir.clone();
        let taken = days.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            for (day, series) in taken.iter() {
                let refs = series.iter().map(|(k, p)| (k, p));
                files.push(partition::write_day(&data_dir, *day, refs, &name)?);
            }
            Ok::<_, partition::Error>(files)
        })
        .await
        .map_err(|e| Error::Task(format!("flush task failed: {e}")))??;
        // In files now (on failure it stays readable until the WAL replays it).
        self.flushing().retain(|d| !Arc::ptr_eq(d, &days));
        self.retire(seq)?;
        self.metrics
            .flush_duration
            .observe(start.elapsed().as_secs_f64());
        self.metrics.files_written.inc_by(written.len() as u64);
        let rows: usize = written.iter().map(|(_, r)| r).sum();
        info!(files = written.len(), rows, "flushed the head to Parquet");
        Ok(written.into_iter().map(|(p, _)| p).collect())
    }

    /// The WAL segments before `seq` are in files: removed now without an object store,
    /// once the bucket holds the files with one.
    fn retire(&self, seq: u64) -> Result<(), Error> {
        if self.bucket.is_some() {
            self.covered.fetch_max(seq, Ordering::SeqCst);
            self.flushed.notify_one();
            return Ok(());
        }
        self.checkpoint(seq)
    }

    /// Removes the WAL segments before `seq`, and counts what is left.
    fn checkpoint(&self, seq: u64) -> Result<(), Error> {
        let dir = layout::wal_dir(&self.data_dir);
        wal::checkpoint(&dir, seq)?;
        let size = wal::size(&dir);
        self.wal_size.store(size, Ordering::Relaxed);
        self.metrics.wal_size.set(size as i64);
        Ok(())
    }

    /// With an object store: uploads what the bucket lacks (and deletes what the store
    /// deleted), then removes the WAL segments whose files are now in the bucket.
    pub async fn upload(&self) -> Result<bucket::Synced, Error> {
        let Some(bucket) = &self.bucket else {
            return Ok(bucket::Synced::default());
        };
        // Read before listing the files: every flush that covered these segments wrote
        // its files before it said so.
        let covered = self.covered.load(Ordering::SeqCst);
        let start = std::time::Instant::now();
        let synced = bucket.sync().await?;
        if synced.uploaded > 0 {
            info!(
                files = synced.uploaded,
                bytes = synced.uploaded_bytes,
                seconds = start.elapsed().as_secs_f64(),
                "uploaded to the object store"
            );
        }
        if covered > self.checkpointed.load(Ordering::SeqCst) {
            self.checkpoint(covered)?;
            self.checkpointed.fetch_max(covered, Ordering::SeqCst);
        }
        Ok(synced)
    }

    /// With an object store: uploads after each flush and at least every 10 s, retrying
    /// with backoff (1 s doubling to a minute) while the bucket fails, until `cancel`.
    pub async fn bucket_loop(self: Arc<Self>, cancel: CancellationToken) {
        if self.bucket.is_none() {
            return;
        }
        let mut wait = Duration::from_secs(1);
        loop {
            let pause = match self.upload().await {
                Ok(_) => {
                    wait = Duration::from_secs(1);
                    Duration::from_secs(10)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "upload to the object store failed; retrying");
                    wait = (wait * 2).min(Duration::from_secs(60));
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.flushed.notified() => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// Flushes every `interval`, and whenever the head is full, then compacts, until
    /// `cancel`.
    pub async fn flush_loop(self: Arc<Self>, interval: Duration, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.full.notified() => {}
                _ = cancel.cancelled() => return,
            }
            if let Err(e) = self.flush().await {
                tracing::error!(error = %e, "flush failed; the samples stay in the WAL and the next flush retries");
                continue;
            }
            let start = std::time::Instant::now();
            let c = match self.bucket.clone() {
                Some(b) if b.replica().is_some() => self.compact_shared(&b).await,
                _ => {
                    let dir = self.data_dir.clone();
                    tokio::task::spawn_blocking(move || partition::compact(&dir, None))
                        .await
                        .unwrap_or_default()
                }
            };
            self.metrics
                .compaction_duration
                .observe(start.elapsed().as_secs_f64());
            self.metrics
                .corrupt_files
                .inc_by(c.quarantined.len() as u64);
            let (dir, m) = (self.data_dir.clone(), self.metrics.clone());
            let now = to_millis(self.clock.now());
            let _ = tokio::task::spawn_blocking(move || {
                // Complete days whose raw files changed are rolled up again.
                let start = std::time::Instant::now();
                let built = rollup::maintain(&dir, now);
                if !built.is_empty() {
                    m.rollup_duration.observe(start.elapsed().as_secs_f64());
                    m.rollup_days.inc_by(built.len() as u64);
                }
                report_usage(&m, &dir);
            })
            .await;
            self.report_cache();
        }
    }

    /// Compaction among replicas sharing a bucket: a day is compacted only under its
    /// lease, and its merged file is uploaded (and the parts it replaces, any replica's,
    /// deleted from the bucket) before the lease is given back. Without the bucket no day
    /// is compacted: the files wait.
    async fn compact_shared(&self, bucket: &bucket::Bucket) -> partition::Compacted {
        let mut out = partition::Compacted::default();
        let dir = self.data_dir.clone();
        let days = tokio::task::spawn_blocking(move || partition::compactable_days(&dir))
            .await
            .unwrap_or_default();
        for day in days {
            match bucket.lease(day).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "no compaction lease; the day waits");
                    break;
                }
            }
            let (dir, replica) = (self.data_dir.clone(), bucket.replica().map(str::to_owned));
            let c = tokio::task::spawn_blocking(move || {
                partition::compact_day(&dir, day, replica.as_deref())
            })
            .await
            .unwrap_or_default();
            if c.written > 0 {
                if let Err(e) = bucket.sync().await {
                    tracing::debug!(error = %e, "a compacted day is uploaded later");
                }
            }
            bucket.release(day).await;
            out.merged += c.merged;
            out.written += c.written;
            out.quarantined.extend(c.quarantined);
        }
        out
    }

    /// Sets the query cache gauge to what the cache holds now (after each read, and
    /// after compaction told it of files gone).
    fn report_cache(&self) {
        self.metrics
            .query_cache_bytes
            .set(self.files.bytes() as i64);
    }

    /// Applies retention at start and then every hour, until `cancel`.
    pub async fn retention_loop(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let s = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                retention::enforce(&s.data_dir, &*s.clock, s.retention);
                for (r, keep) in [
                    (query::rollup::Resolution::FiveMinutes, s.retention_5m),
                    (query::rollup::Resolution::Hour, s.retention_1h),
                ] {
                    retention::enforce_rollups(&s.data_dir, r.name(), &*s.clock, keep);
                }
                report_usage(&s.metrics, &s.data_dir);
            })
            .await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }
}

impl query::Source for Store {
    fn select(
        &self,
        matchers: &[promql_parser::label::Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<query::Series>, query::Error> {
        let mut found = select::Found::default();
        // Samples move head -> taken by a flush -> files; reading in that order sees each
        // in one place or another (twice at worst, and duplicates are dropped).
        select::from_head(&self.head(), matchers, mint, maxt, &mut found);
        let flushing = self.flushing().clone();
        for days in flushing {
            select::from_taken(&days, matchers, mint, maxt, &mut found);
        }
        select::from_files(
            &self.data_dir,
            &self.files,
            matchers,
            mint,
            maxt,
            &mut found,
        )
        .map_err(|e| query::Error::Storage(Box::new(e)))?;
        self.report_cache();
        Ok(found.finish())
    }

    /// Days with a current rollup file are read from it; the days between (today, days
    /// not rolled up yet or whose rollup was removed) are rolled up here from their raw
    /// samples. Parts are merged in time order, so the bucket ending at midnight, split
    /// between two days, comes out whole.
    fn select_rollup(
        &self,
        matchers: &[promql_parser::label::Matcher],
        mint: i64,
        maxt: i64,
        resolution: query::rollup::Resolution,
        fields: query::rollup::Fields,
    ) -> Result<Vec<query::rollup::RollupSeries>, query::Error> {
        use query::rollup::bucketize;
        use telltale_model::calendar::DAY_MS;
        let storage = |e: partition::Error| query::Error::Storage(Box::new(e));
        let width = resolution.ms();
        // The samples of buckets ending in [mint, maxt].
        let lo = mint - width + 1;
        let (first, last) = (lo.div_euclid(DAY_MS), maxt.div_euclid(DAY_MS));
        let mut files = Vec::new();
        let mut rolled = std::collections::BTreeMap::new();
        for (day, dir) in layout::rollup_days(&self.data_dir, resolution.name()) {
            if day < first || day > last {
                continue;
            }
            let present = layout::parquet_files(&dir);
            self.files.forget_gone(&dir, &present);
            if let Some(current) = present.last() {
                rolled.insert(day, files.len());
                files.push(current.clone());
            }
        }
        // In time order: each rolled-up day, and the spans of days between as raw samples.
        let mut segments: Vec<Segment> = Vec::new();
        for day in first..=last {
            match (rolled.get(&day), segments.last_mut()) {
                (Some(&i), _) => segments.push(Segment::File(i)),
                (None, Some(Segment::Raw(_, to))) if *to + 1 == day => *to = day,
                (None, _) => segments.push(Segment::Raw(day, day)),
            }
        }
        let mut from_files =
            select_rollup::from_files(&self.files, &files, matchers, mint, maxt, fields)
                .map_err(storage)?;
        self.report_cache();
        // A series' buckets of the whole read, allocated once.
        let expected = ((maxt - mint) / width + 2).clamp(0, 1 << 16) as usize;
        let mut merged = select_rollup::Merged::new(expected);
        for s in segments {
            let parts: Vec<select_rollup::Part> = match s {
                Segment::File(i) => std::mem::take(&mut from_files[i]),
                Segment::Raw(a, b) => query::Source::select(
                    self,
                    matchers,
                    lo.max(a * DAY_MS),
                    maxt.min((b + 1) * DAY_MS - 1),
                )?
                .into_iter()
                .map(|s| (s.labels, bucketize(&s.points, width)))
                .collect(),
            };
            for part in parts {
                merged.add(part);
            }
        }
        Ok(merged.finish(mint, maxt))
    }
}

/// A part of a rollup read: a day's rollup file (its index among the files read), or
/// days `from..=to` rolled up from raw samples.
enum Segment {
    File(usize),
    Raw(i64, i64),
}

/// Sets the per-day file and byte gauges from what is on disk.
fn report_usage(metrics: &Metrics, data_dir: &Path) {
    metrics.set_partitions(
        partition::usage(data_dir)
            .into_iter()
            .map(|u| (u.day, u.files, u.bytes)),
    );
}

/// Adds a validated request to the head; returns samples left out as older than `oldest`.
/// Samples of metrics the watcher wants are shown to it.
fn insert(head: &mut head::Head, req: &RequestRef<'_>, oldest: i64, watch: &dyn Watch) -> u64 {
    let mut changed = false;
    let skipped = req
        .series()
        .map(|series| {
            let name = series.labels.iter().find(|l| l.0 == METRIC_NAME);
            if name.is_some_and(|l| watch.wants(l.1)) {
                for &(ts, _) in series.samples {
                    changed |= ts >= oldest && watch.sample(ts);
                }
            }
            head.insert_ref(series, oldest)
        })
        .sum();
    if changed {
        watch.changed();
    }
    skipped
}

#[cfg(test)]
mod rollup_tests;
#[cfg(test)]
mod tests;
