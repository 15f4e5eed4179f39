//! The queue's segments: `<seq>.seg` files (an 8-byte magic, then frames of
//! `[len u32][crc32 u32][payload]` from `telltale_model::frame`), or memory while the disk
//! fails, and what the queue knows of each record without decoding it again.
//!
//! Promise: [`recover`] keeps every whole record of a segment left by an earlier run and
//! truncates a torn or corrupt tail, with one log line.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use telltale_model::frame::{self, Frames};
use tracing::warn;

use super::super::codec::{shard_of, Decoder, Record};
use super::positions::Pos;

/// The first bytes of every segment.
pub(super) const SEGMENT_MAGIC: &[u8; 8] = b"TTQSEG01";

#[derive(Debug)]
pub(super) enum Storage {
    File(File, PathBuf),
    Memory(Vec<u8>),
}

impl Storage {
    pub(super) fn write_at(&mut self, buf: &[u8], at: u64) -> std::io::Result<()> {
        match self {
            Storage::File(f, _) => f.write_all_at(buf, at),
            Storage::Memory(m) => {
                m.truncate(at as usize);
                m.extend_from_slice(buf);
                Ok(())
            }
        }
    }

    pub(super) fn read_at(&self, at: u64, len: usize) -> std::io::Result<Vec<u8>> {
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

    pub(super) fn remove(self) {
        if let Storage::File(f, path) = self {
            drop(f);
            if let Err(e) = std::fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "cannot remove a buffer segment");
            }
        }
    }
}

#[derive(Debug)]
pub(super) struct RecordInfo {
    pub(super) offset: u64,
    pub(super) len: u32,
    /// Samples records only; `None` for series definitions.
    pub(super) timestamp_ms: Option<i64>,
    pub(super) per_shard: Box<[u32]>,
}

#[derive(Debug)]
pub(super) struct Segment {
    pub(super) seq: u64,
    pub(super) storage: Storage,
    pub(super) bytes: u64,
    pub(super) records: Vec<RecordInfo>,
    pub(super) sealed: bool,
}

impl Segment {
    pub(super) fn newest(&self) -> Option<i64> {
        self.records.iter().rev().find_map(|r| r.timestamp_ms)
    }

    pub(super) fn oldest(&self) -> Option<i64> {
        self.records.iter().find_map(|r| r.timestamp_ms)
    }

    /// Samples of `shard` at or after `from`.
    pub(super) fn remaining(&self, shard: usize, from: Pos) -> u64 {
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

/// A new segment held in memory (the disk failed).
pub(super) fn memory_storage() -> Storage {
    Storage::Memory(SEGMENT_MAGIC.to_vec())
}

/// Reads a segment left by an earlier run, truncating a torn or corrupt tail. `None` if
/// nothing in it is usable.
pub(super) fn recover(path: &Path, seq: u64, shards: usize) -> Option<Segment> {
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
