//! One destination's disk queue: append-only segments of checksummed records, and each
//! sender's delivered position.
//!
//! Layout under the destination's directory: `<seq>.seg` files (an 8-byte magic, then
//! frames of `[len u32][crc32 u32][payload]` from `telltale_model::frame`, payloads from
//! [`super::codec`]) and `positions` (one checksummed slot per sender, rewritten in place
//! after every acknowledged batch). Segments are [`segment`]'s, the positions file
//! [`positions`]'.
//!
//! Promises:
//! - `append` returns once the records are written; they survive a crash of the process at
//!   once, and power loss after the next fsync (at most `fsync_every` later).
//! - After a crash, a torn or corrupt tail is truncated with one log line; every record
//!   before it is kept and sent.
//! - A sender resumes after the last batch it had acknowledged, so after a crash only
//!   batches in flight are sent again.
//! - Over `max_bytes` or `max_age`, whole segments go, oldest first, and every sample in
//!   them not yet handed to a sender is counted as dropped, by reason.
//! - When the disk fails (full, read-only, gone) the queue keeps going in memory, says so
//!   once, and returns to disk when it can; only the memory part is lost on a crash.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use telltale_model::frame;
use telltale_model::time::to_millis;
use tracing::{info, warn};

use super::codec::Encoder;
pub use positions::Pos;
use segment::{RecordInfo, Segment, Storage, SEGMENT_MAGIC};

mod positions;
mod segment;

/// How long after a disk failure before the queue tries the disk again.
const DISK_RETRY: Duration = Duration::from_secs(10);

/// Errors opening a queue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory cannot be created or listed.
    #[error("buffer directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How a queue is bounded and flushed.
#[derive(Debug, Clone)]
pub struct Config {
    /// This destination's directory.
    pub dir: PathBuf,
    /// Bytes of segments kept at most.
    pub max_bytes: u64,
    /// Age of the newest sample in a segment past which the segment goes.
    pub max_age: Duration,
    /// A segment is sealed once it reaches this size.
    pub segment_bytes: u64,
    /// Longest time between fsyncs of written records.
    pub fsync_every: Duration,
    /// Senders (each owns the series that hash to it).
    pub shards: usize,
}

impl Config {
    /// Segment size for a byte budget: an eighth of it, between 4 KiB and 64 MiB, so the
    /// budget is kept to within a segment.
    pub fn segment_bytes_for(max_bytes: u64) -> u64 {
        (max_bytes / 8).clamp(4 << 10, 64 << 20)
    }
}

/// Why samples were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Over `--buffer-max-bytes`.
    Full,
    /// Older than `--buffer-max-age`.
    Age,
}

impl DropReason {
    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Full => "buffer_full",
            DropReason::Age => "too_old",
        }
    }
}

/// What an append did besides appending.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// Samples in the appended snapshot (stale markers included).
    pub samples: u64,
    /// Samples dropped to stay within the byte budget.
    pub dropped_full: u64,
    /// Samples dropped for age.
    pub dropped_age: u64,
}

/// What a sender finds at a position.
#[derive(Debug)]
pub enum Read {
    /// The record's payload.
    Record(Vec<u8>),
    /// The segment is complete; go on with this one.
    Next(u64),
    /// Nothing more yet: wait for an append.
    Pending,
    /// The segment was dropped; start again at this one (or wait, if `None`).
    Gone(Option<u64>),
}

/// A destination's queue. Appends come from the collection loop, reads and
/// acknowledgements from the senders; every call takes the lock briefly.
#[derive(Debug)]
pub struct Queue {
    cfg: Config,
    segments: VecDeque<Segment>,
    encoder: Encoder,
    next_seq: u64,
    acked: Vec<Pos>,
    dispatched: Vec<Pos>,
    positions: Option<File>,
    last_sync: Instant,
    /// Set while the queue is in memory because the disk failed.
    disk_failed: Option<Instant>,
    /// Fault injection for tests: every write to disk fails while set.
    #[cfg(test)]
    pub(crate) fail_disk: bool,
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(frame::HEADER + payload.len());
    frame::put(&mut f, payload);
    f
}

impl Queue {
    /// Opens (or creates) the queue in `cfg.dir`, recovering what a previous run left.
    pub fn open(cfg: Config) -> Result<Queue, Error> {
        let dir_err = |source| Error::Dir {
            path: cfg.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&cfg.dir).map_err(dir_err)?;
        let mut seqs = Vec::new();
        for entry in std::fs::read_dir(&cfg.dir).map_err(dir_err)? {
            let name = entry.map_err(dir_err)?.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let shards = cfg.shards.max(1);
        let mut segments = VecDeque::new();
        for &seq in &seqs {
            let path = cfg.dir.join(format!("{seq:016}.seg"));
            match segment::recover(&path, seq, shards) {
                Some(seg) => segments.push_back(seg),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let after_files = seqs.last().map_or(1, |s| s + 1);
        let first = segments.front().map_or(after_files, |s| s.seq);
        let pos_path = cfg.dir.join("positions");
        let acked = positions::load(&pos_path, shards, first);
        // Positions may name segments that were only in memory: never reuse their numbers.
        // (A position at the very start of a segment does not mean it was ever created.)
        let next_seq = acked
            .iter()
            .map(|p| {
                if *p == Pos::start(p.seg) {
                    p.seg
                } else {
                    p.seg + 1
                }
            })
            .fold(after_files, u64::max);
        let positions = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&pos_path)
            .map_err(dir_err)?;
        let mut q = Queue {
            encoder: Encoder::new(shards),
            next_seq,
            dispatched: acked.clone(),
            acked,
            positions: Some(positions),
            segments,
            last_sync: Instant::now(),
            disk_failed: None,
            cfg,
            #[cfg(test)]
            fail_disk: false,
        };
        if let Some(p) = &q.positions {
            let _ = positions::write_header(p, q.acked.len());
        }
        for s in 0..shards {
            q.persist(s);
        }
        q.drop_delivered();
        Ok(q)
    }

    /// The senders' acknowledged positions: where each resumes.
    pub fn positions(&self) -> Vec<Pos> {
        self.acked.clone()
    }

    /// Bytes of all segments (disk and memory).
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Timestamp of the oldest sample some sender has not acknowledged yet.
    pub fn oldest_unacked(&self) -> Option<i64> {
        let mut oldest: Option<i64> = None;
        for (shard, &pos) in self.acked.iter().enumerate() {
            // Start at the sender's position, not at the start of its segment.
            let first = self
                .segments
                .iter()
                .filter(|s| s.seq >= pos.seg)
                .find_map(|seg| {
                    let skip = if seg.seq == pos.seg {
                        pos.rec as usize
                    } else {
                        0
                    };
                    seg.records
                        .iter()
                        .enumerate()
                        .skip(skip)
                        .find_map(|(i, r)| {
                            let done = if seg.seq == pos.seg && i == pos.rec as usize {
                                pos.k
                            } else {
                                0
                            };
                            let n = r.per_shard.get(shard).copied().unwrap_or(0);
                            (n > done).then_some(r.timestamp_ms).flatten()
                        })
                });
            if let Some(t) = first {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
        }
        oldest
    }

    /// True while records are kept in memory because the disk failed.
    pub fn degraded(&self) -> bool {
        self.segments
            .back()
            .is_some_and(|s| matches!(s.storage, Storage::Memory(_)))
    }

    /// Samples appended but not handed to a sender yet (the backlog).
    pub fn undispatched(&self) -> u64 {
        let mut n = 0;
        for seg in &self.segments {
            for (s, &p) in self.dispatched.iter().enumerate() {
                n += seg.remaining(s, p);
            }
        }
        n
    }

    /// Appends one snapshot taken at `timestamp_ms`; `now` decides what is too old.
    pub fn append(
        &mut self,
        timestamp_ms: i64,
        samples: &[(&[u8], f64)],
        now: SystemTime,
    ) -> Appended {
        let mut out = Appended::default();
        if self.head_open().is_none() {
            self.open_head();
        }
        let enc = self.encoder.encode(timestamp_ms, samples.iter().copied());
        out.samples = u64::from(enc.samples);
        if let Err(e) = self.write_records(&enc.records, timestamp_ms, &enc.per_shard) {
            self.degrade(&e);
            // The new head is in memory: encode the snapshot again for its fresh series
            // table. Memory writes cannot fail.
            let enc = self.encoder.encode(timestamp_ms, samples.iter().copied());
            out.samples = u64::from(enc.samples);
            let _ = self.write_records(&enc.records, timestamp_ms, &enc.per_shard);
        }
        self.maybe_rotate(now);
        self.enforce_limits(now, &mut out);
        if self.last_sync.elapsed() >= self.cfg.fsync_every {
            self.sync();
        }
        out
    }

    fn head_open(&self) -> Option<&Segment> {
        self.segments.back().filter(|s| !s.sealed)
    }

    /// Starts a new head segment: on disk unless the disk failed less than
    /// [`DISK_RETRY`] ago.
    fn open_head(&mut self) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.encoder.reset();
        let try_disk = self.disk_failed.is_none_or(|t| t.elapsed() >= DISK_RETRY);
        let storage = if try_disk {
            match self.create_file(seq) {
                Ok(s) => {
                    if self.disk_failed.take().is_some() {
                        info!(dir = %self.cfg.dir.display(), "buffer disk works again; queue back on disk");
                    }
                    s
                }
                Err(e) => {
                    if self.disk_failed.is_none() {
                        warn!(dir = %self.cfg.dir.display(), error = %e, "buffer disk failed; queueing in memory until it works");
                    }
                    self.disk_failed = Some(Instant::now());
                    segment::memory_storage()
                }
            }
        } else {
            segment::memory_storage()
        };
        self.segments.push_back(Segment {
            seq,
            storage,
            bytes: SEGMENT_MAGIC.len() as u64,
            records: Vec::new(),
            sealed: false,
        });
    }

    fn create_file(&self, seq: u64) -> std::io::Result<Storage> {
        #[cfg(test)]
        if self.fail_disk {
            return Err(std::io::Error::other("injected disk failure"));
        }
        let path = self.cfg.dir.join(format!("{seq:016}.seg"));
        std::fs::create_dir_all(&self.cfg.dir)?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        f.write_all_at(SEGMENT_MAGIC, 0)?;
        Ok(Storage::File(f, path))
    }

    fn write_records(
        &mut self,
        payloads: &[Vec<u8>],
        timestamp_ms: i64,
        per_shard: &[u32],
    ) -> std::io::Result<()> {
        #[cfg(test)]
        let fail = self.fail_disk;
        let Some(head) = self.segments.back_mut() else {
            return Err(std::io::Error::other("no head segment"));
        };
        let start = head.bytes;
        let mut at = start;
        let mut infos = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let f = framed(p);
            #[cfg(test)]
            if fail && matches!(head.storage, Storage::File(..)) {
                return Err(std::io::Error::other("injected disk failure"));
            }
            head.storage.write_at(&f, at)?;
            let is_samples = i + 1 == payloads.len();
            infos.push(RecordInfo {
                offset: at,
                len: f.len() as u32,
                timestamp_ms: is_samples.then_some(timestamp_ms),
                per_shard: if is_samples {
                    per_shard.into()
                } else {
                    vec![0; per_shard.len()].into()
                },
            });
            at += f.len() as u64;
        }
        head.bytes = at;
        head.records.extend(infos);
        Ok(())
    }

    /// Seals the failed disk head (cutting what was half written) and opens one in memory.
    fn degrade(&mut self, e: &std::io::Error) {
        if let Some(head) = self.segments.back_mut() {
            if let Storage::File(f, _) = &head.storage {
                let _ = f.set_len(head.bytes);
            }
            head.sealed = true;
        }
        if self.disk_failed.is_none() {
            warn!(dir = %self.cfg.dir.display(), error = %e, "buffer disk failed; queueing in memory until it works");
        }
        self.disk_failed = Some(Instant::now());
        if self.segments.back().is_some_and(|s| s.records.is_empty()) {
            if let Some(s) = self.segments.pop_back() {
                s.storage.remove();
            }
        }
        self.open_head();
    }

    fn maybe_rotate(&mut self, now: SystemTime) {
        let span_limit = self.cfg.max_age.as_millis() as i64 / 8;
        let retry_disk = self.disk_failed.is_some_and(|t| t.elapsed() >= DISK_RETRY);
        let Some(head) = self.segments.back_mut().filter(|s| !s.sealed) else {
            return;
        };
        let too_old = head
            .oldest()
            .is_some_and(|t| to_millis(now) - t >= span_limit.max(1));
        if head.bytes >= self.cfg.segment_bytes || too_old || retry_disk {
            head.sealed = true;
            if let Storage::File(f, path) = &head.storage {
                if let Err(e) = f.sync_data() {
                    warn!(path = %path.display(), error = %e, "fsync of a buffer segment failed");
                }
            }
        }
    }

    fn enforce_limits(&mut self, now: SystemTime, out: &mut Appended) {
        let cutoff = to_millis(now) - self.cfg.max_age.as_millis() as i64;
        while self.segments.len() > 1 {
            let front = &self.segments[0];
            let reason = if front.newest().is_some_and(|t| t < cutoff) {
                DropReason::Age
            } else if self.bytes() > self.cfg.max_bytes {
                DropReason::Full
            } else {
                break;
            };
            let n = self.drop_front();
            match reason {
                DropReason::Age => out.dropped_age += n,
                DropReason::Full => out.dropped_full += n,
            }
        }
    }

    /// Removes the oldest segment; returns its samples no sender had taken.
    fn drop_front(&mut self) -> u64 {
        let Some(seg) = self.segments.pop_front() else {
            return 0;
        };
        let lost: u64 = (0..self.dispatched.len())
            .map(|s| seg.remaining(s, self.dispatched[s]))
            .sum();
        let next = self.segments.front().map_or(self.next_seq, |s| s.seq);
        for s in 0..self.dispatched.len() {
            if self.dispatched[s].seg <= seg.seq {
                self.dispatched[s] = Pos::start(next);
            }
            if self.acked[s].seg <= seg.seq {
                self.acked[s] = Pos::start(next);
                self.persist(s);
            }
        }
        seg.storage.remove();
        lost
    }

    /// Deletes sealed segments every sender is past.
    fn drop_delivered(&mut self) {
        let Some(min) = self.acked.iter().min().copied() else {
            return;
        };
        while self
            .segments
            .front()
            .is_some_and(|f| f.sealed && f.seq < min.seg)
        {
            if let Some(seg) = self.segments.pop_front() {
                seg.storage.remove();
            }
        }
    }

    /// Fsyncs the head segment and the positions.
    pub fn sync(&mut self) {
        self.last_sync = Instant::now();
        if let Some(Segment {
            storage: Storage::File(f, path),
            ..
        }) = self.segments.back()
        {
            if let Err(e) = f.sync_data() {
                warn!(path = %path.display(), error = %e, "fsync of a buffer segment failed");
            }
        }
        if let Some(p) = &self.positions {
            let _ = p.sync_data();
        }
    }

    /// What is at record `rec` of segment `seg`.
    pub fn read(&self, seg: u64, rec: u32) -> Read {
        let Some(s) = self.segments.iter().find(|s| s.seq == seg) else {
            if self.segments.front().is_some_and(|f| f.seq > seg) {
                return Read::Gone(self.segments.front().map(|f| f.seq));
            }
            return match self.segments.iter().find(|s| s.seq > seg) {
                Some(n) => Read::Next(n.seq),
                None => Read::Pending,
            };
        };
        match s.records.get(rec as usize) {
            Some(r) => {
                let skip = frame::HEADER as u64;
                match s
                    .storage
                    .read_at(r.offset + skip, r.len as usize - frame::HEADER)
                {
                    Ok(p) => Read::Record(p),
                    Err(e) => {
                        warn!(seq = seg, error = %e, "cannot read a buffer segment; skipping it");
                        match self.segments.iter().find(|x| x.seq > seg) {
                            Some(n) => Read::Next(n.seq),
                            None => Read::Pending,
                        }
                    }
                }
            }
            None if s.sealed => match self.segments.iter().find(|x| x.seq > seg) {
                Some(n) => Read::Next(n.seq),
                None => Read::Next(self.next_seq),
            },
            None => Read::Pending,
        }
    }

    /// A sender took its samples of segment `from_seg` up to `pos` into a batch. False if
    /// that segment was dropped meanwhile: its samples were counted as dropped, and the
    /// batch must not be sent.
    pub fn dispatch(&mut self, shard: usize, from_seg: u64, pos: Pos) -> bool {
        let first = self.segments.front().map_or(self.next_seq, |s| s.seq);
        if from_seg < first {
            return false;
        }
        if let Some(d) = self.dispatched.get_mut(shard) {
            *d = (*d).max(pos);
        }
        true
    }

    /// Where each sender should go on from after a drop: past what it already took.
    pub fn dispatched(&self) -> Vec<Pos> {
        self.dispatched.clone()
    }

    /// A sender's batch up to `pos` was delivered (or rejected for good): persisted at once,
    /// and segments every sender is past are deleted.
    pub fn ack(&mut self, shard: usize, pos: Pos) {
        let Some(a) = self.acked.get_mut(shard) else {
            return;
        };
        if pos <= *a {
            return;
        }
        *a = pos;
        self.persist(shard);
        self.drop_delivered();
    }

    fn persist(&mut self, shard: usize) {
        if let Some(p) = &self.positions {
            if let Err(e) = positions::write_slot(p, shard, self.acked[shard]) {
                warn!(dir = %self.cfg.dir.display(), error = %e, "cannot record the delivered position; a restart may send some samples twice");
            }
        }
    }

    /// Senders the queue keeps positions for.
    pub fn shards(&self) -> usize {
        self.acked.len()
    }
}

#[cfg(test)]
mod tests;
