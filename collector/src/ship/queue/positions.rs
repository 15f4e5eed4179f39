//! Each sender's delivered position, and the `positions` file that keeps them: an 8-byte
//! header (magic, sender count), then one 24-byte slot per sender (segment, record,
//! samples of that record, and a CRC32 of the three), rewritten in place after every
//! acknowledged batch.
//!
//! Promise: [`load`] never starts a sender past what it acknowledged; a missing or damaged
//! file, or a changed sender count, resends from the earliest position it can trust.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::Path;

use tracing::warn;

const POSITIONS_MAGIC: &[u8; 4] = b"TTQP";
const SLOT: usize = 24;

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

/// Writes the file's header for `senders` slots.
pub(super) fn write_header(file: &File, senders: usize) -> std::io::Result<()> {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(POSITIONS_MAGIC);
    h[4..].copy_from_slice(&(senders as u32).to_le_bytes());
    file.write_all_at(&h, 0)
}

/// Writes sender `shard`'s slot.
pub(super) fn write_slot(file: &File, shard: usize, pos: Pos) -> std::io::Result<()> {
    let mut slot = [0u8; SLOT];
    slot[..8].copy_from_slice(&pos.seg.to_le_bytes());
    slot[8..12].copy_from_slice(&pos.rec.to_le_bytes());
    slot[12..16].copy_from_slice(&pos.k.to_le_bytes());
    let crc = crc32fast::hash(&slot[..16]);
    slot[16..20].copy_from_slice(&crc.to_le_bytes());
    file.write_all_at(&slot, (8 + shard * SLOT) as u64)
}

/// Reads each sender's position; a missing or damaged file (or a changed sender count)
/// starts the senders at `first` or at the earliest valid position.
pub(super) fn load(path: &Path, shards: usize, first: u64) -> Vec<Pos> {
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
