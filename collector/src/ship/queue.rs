//! One destination's disk queue: append-only segments of checksummed records, and each
//! sender's delivered position.
//!
//! Layout under the destination's directory: `<seq>.seg` files (an 8-byte magic, then
//! frames of `[len u32][crc32 u32][payload]` from `telltale_model::frame`, payloads from
//! [`super::codec`]) and `positions` (one checksummed slot per sender, rewritten in place
//! after every acknowledged batch).
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
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use telltale_model::frame::{self, Frames};
use telltale_model::time::to_millis;
use tracing::{info, warn};

use super::codec::{shard_of, Decoder, Encoder, Record};

const SEGMENT_MAGIC: &[u8; 8] = b"TTQSEG01";
const POSITIONS_MAGIC: &[u8; 4] = b"TTQP";
const SLOT: usize = 24;
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

/// A sender's position: it has delivered its samples of every record before `rec` in
/// segment `seg`, and the first `k` of its samples in record `rec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// Segment sequence number.
    pub seg: u64,
    /// Record index in the segment.
    pub rec: u32,
    /// The sender's samples of that record already delivered.
    pub k: u32,
}

impl Pos {
    /// The start of segment `seg`.
    pub fn start(seg: u64) -> Self {
        Pos { seg, rec: 0, k: 0 }
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

#[derive(Debug)]
enum Storage {
    File(File, PathBuf),
    Memory(Vec<u8>),
}

impl Storage {
    fn write_at(&mut self, buf: &[u8], at: u64) -> std::io::Result<()> {
        match self {
            Storage::File(f, _) => f.write_all_at(buf, at),
            Storage::Memory(m) => {
                m.truncate(at as usize);
                m.extend_from_slice(buf);
                Ok(())
            }
        }
    }

    fn read_at(&self, at: u64, len: usize) -> std::io::Result<Vec<u8>> {
        match self {
            Storage::File(f, _) => {
                let mut buf = vec![0; len];
                f.read_exact_at(&mut buf, at)?;
                Ok(buf)
            }
            Storage::Memory(m) => m
                .get(at as usize..at as usize + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| ErrorKind::UnexpectedEof.into()),
        }
    }

    fn remove(self) {
        if let Storage::File(f, path) = self {
            drop(f);
            if let Err(e) = std::fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "cannot remove a buffer segment");
            }
        }
    }
}

#[derive(Debug)]
struct RecordInfo {
    offset: u64,
    len: u32,
    /// Samples records only; `None` for series definitions.
    timestamp_ms: Option<i64>,
    per_shard: Box<[u32]>,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    storage: Storage,
    bytes: u64,
    records: Vec<RecordInfo>,
    sealed: bool,
}

impl Segment {
    fn newest(&self) -> Option<i64> {
        self.records.iter().rev().find_map(|r| r.timestamp_ms)
    }

    fn oldest(&self) -> Option<i64> {
        self.records.iter().find_map(|r| r.timestamp_ms)
    }

    /// Samples of `shard` at or after `from`.
    fn remaining(&self, shard: usize, from: Pos) -> u64 {
        if from.seg > self.seq {
            return 0;
        }
        let first = if from.seg == self.seq {
            from.rec as usize
        } else {
            0
        };
        let mut n = 0u64;
        for (i, r) in self.records.iter().enumerate().skip(first) {
            let c = u64::from(r.per_shard.get(shard).copied().unwrap_or(0));
            n += if from.seg == self.seq && i == first {
                c.saturating_sub(u64::from(from.k))
            } else {
                c
            };
        }
        n
    }
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
            match recover_segment(&path, seq, shards) {
                Some(seg) => segments.push_back(seg),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let after_files = seqs.last().map_or(1, |s| s + 1);
        let first = segments.front().map_or(after_files, |s| s.seq);
        let pos_path = cfg.dir.join("positions");
        let acked = load_positions(&pos_path, shards, first);
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
        q.write_positions_header();
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
                    memory_storage()
                }
            }
        } else {
            memory_storage()
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

    fn write_positions_header(&mut self) {
        let mut h = [0u8; 8];
        h[..4].copy_from_slice(POSITIONS_MAGIC);
        h[4..].copy_from_slice(&(self.acked.len() as u32).to_le_bytes());
        if let Some(p) = &self.positions {
            let _ = p.write_all_at(&h, 0);
        }
    }

    fn persist(&mut self, shard: usize) {
        let pos = self.acked[shard];
        let mut slot = [0u8; SLOT];
        slot[..8].copy_from_slice(&pos.seg.to_le_bytes());
        slot[8..12].copy_from_slice(&pos.rec.to_le_bytes());
        slot[12..16].copy_from_slice(&pos.k.to_le_bytes());
        let crc = crc32fast::hash(&slot[..16]);
        slot[16..20].copy_from_slice(&crc.to_le_bytes());
        if let Some(p) = &self.positions {
            if let Err(e) = p.write_all_at(&slot, (8 + shard * SLOT) as u64) {
                warn!(dir = %self.cfg.dir.display(), error = %e, "cannot record the delivered position; a restart may send some samples twice");
            }
        }
    }

    /// Senders the queue keeps positions for.
    pub fn shards(&self) -> usize {
        self.acked.len()
    }
}

fn memory_storage() -> Storage {
    Storage::Memory(SEGMENT_MAGIC.to_vec())
}

/// Reads a segment left by an earlier run, truncating a torn or corrupt tail. `None` if
/// nothing in it is usable.
fn recover_segment(path: &Path, seq: u64, shards: usize) -> Option<Segment> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read a buffer segment; skipping it");
            return None;
        }
    };
    if data.len() < SEGMENT_MAGIC.len() || &data[..8] != SEGMENT_MAGIC {
        warn!(path = %path.display(), "not a buffer segment (bad magic); removing it");
        return None;
    }
    let mut records = Vec::new();
    let mut decoder = Decoder::default();
    let mut shard_of_id: Vec<u16> = Vec::new();
    let mut frames = Frames::new(&data, SEGMENT_MAGIC.len());
    while let Some((at, payload)) = frames.next() {
        let mut per_shard = vec![0u32; shards];
        let ts = match decoder.decode(payload) {
            Ok(Record::Defs) => None,
            Ok(Record::Samples {
                timestamp_ms, ids, ..
            }) => {
                let ids = ids.to_vec();
                for id in ids {
                    while shard_of_id.len() <= id as usize {
                        let key = decoder.key(shard_of_id.len() as u32);
                        shard_of_id.push(shard_of(key, shards) as u16);
                    }
                    per_shard[shard_of_id[id as usize] as usize] += 1;
                }
                Some(timestamp_ms)
            }
            Err(_) => {
                frames.reject_last(at, "record does not decode");
                break;
            }
        };
        records.push(RecordInfo {
            offset: at as u64,
            len: (frame::HEADER + payload.len()) as u32,
            timestamp_ms: ts,
            per_shard: per_shard.into(),
        });
    }
    let at = frames.end();
    if let Some(why) = frames.torn() {
        warn!(path = %path.display(), offset = at, dropped_bytes = data.len() - at, why, "truncating the torn tail of a buffer segment");
        if let Ok(f) = OpenOptions::new().write(true).open(path) {
            let _ = f.set_len(at as u64);
            let _ = f.sync_data();
        }
    }
    if records.is_empty() {
        return None;
    }
    let file = OpenOptions::new().read(true).write(true).open(path).ok()?;
    Some(Segment {
        seq,
        storage: Storage::File(file, path.to_owned()),
        bytes: at as u64,
        records,
        sealed: true,
    })
}

/// Reads each sender's position; a missing or damaged file (or a changed sender count)
/// starts the senders at `first` or at the earliest valid position.
fn load_positions(path: &Path, shards: usize, first: u64) -> Vec<Pos> {
    let start = vec![Pos::start(first); shards];
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return start,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read delivered positions; resending the whole queue");
            return start;
        }
    };
    if data.len() < 8 || &data[..4] != POSITIONS_MAGIC {
        if !data.is_empty() {
            warn!(path = %path.display(), "delivered positions unreadable; resending the whole queue");
        }
        return start;
    }
    let stored = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
    let mut pos = Vec::new();
    for s in 0..stored {
        let Some(slot) = data.get(8 + s * SLOT..8 + (s + 1) * SLOT) else {
            break;
        };
        let crc = u32::from_le_bytes([slot[16], slot[17], slot[18], slot[19]]);
        if crc32fast::hash(&slot[..16]) != crc {
            pos.push(None);
            continue;
        }
        let seg = u64::from_le_bytes(slot[..8].try_into().unwrap_or_default());
        let rec = u32::from_le_bytes(slot[8..12].try_into().unwrap_or_default());
        let k = u32::from_le_bytes(slot[12..16].try_into().unwrap_or_default());
        pos.push(Some(Pos { seg, rec, k }));
    }
    let clamp = |p: Pos| if p.seg < first { Pos::start(first) } else { p };
    if stored == shards && pos.iter().all(Option::is_some) {
        return pos.into_iter().flatten().map(clamp).collect();
    }
    warn!(path = %path.display(), stored, shards, "sender count changed or a position is damaged; resending from the earliest position");
    let min = pos
        .into_iter()
        .flatten()
        .min()
        .map_or(Pos::start(first), clamp);
    // Only whole records can be shared between different shardings.
    vec![Pos { k: 0, ..min }; shards]
}

#[cfg(test)]
mod tests;
