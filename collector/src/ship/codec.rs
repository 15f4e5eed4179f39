//! The disk queue's record payloads: one snapshot becomes a few bytes per sample.
//!
//! A segment is self-contained. Its series are numbered from 0 in the order they first
//! appear; a `Defs` record names them once (the exposition key, `name{labels}`, snappy
//! compressed). Each snapshot is a `Samples` record: the timestamp, the ids (or "the same
//! ids as the previous record", the normal case), and each value against the series'
//! previous value in the segment, in one of three ways: unchanged (no bytes), an integer
//! delta (varint) when both are integers, or the XOR of the bits without their zero bytes.
//! The whole record is then snappy compressed. Series that vanished since the previous
//! record get a stale marker, as Prometheus writes one when a target's series disappears.
//!
//! The decoder replays the same state, so a segment must be read from its first record.

use std::collections::HashMap;

use telltale_model::prom::STALE_NAN_BITS;

/// Record kinds (the first payload byte).
const DEFS: u8 = 1;
const SAMPLES: u8 = 2;

/// Ids as listed in the record, or the same as the previous `Samples` record.
const IDS_SAME: u8 = 0;
const IDS_LISTED: u8 = 1;

/// Value classes, two bits each.
const SAME: u8 = 0;
const INT_DELTA: u8 = 1;
const XOR: u8 = 2;

/// Largest integer an f64 holds exactly; integer deltas are used only below it.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// A payload that does not decode: the segment is corrupt past its checksums (a bug or
/// tampering), and is dropped.
#[derive(Debug, thiserror::Error)]
#[error("bad queue record: {0}")]
pub struct CorruptRecord(pub String);

fn corrupt(what: &str) -> CorruptRecord {
    CorruptRecord(what.to_string())
}

/// The shard a series is sent by: a fixed hash of its key, so it is the same after a
/// restart and every sample of a series goes through one sender, in order.
pub fn shard_of(key: &[u8], shards: usize) -> usize {
    // FNV-1a, 64 bit.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// Turns snapshots into records; one per segment (call [`Encoder::reset`] on rotation).
#[derive(Debug)]
pub struct Encoder {
    shards: usize,
    ids: HashMap<Box<[u8]>, u32>,
    keys: Vec<Box<[u8]>>,
    shard: Vec<u16>,
    prev: Vec<u64>,
    prev_ids: Vec<u32>,
    /// Keys of the last snapshot of the previous segment, to mark the vanished ones stale.
    carried: Vec<Box<[u8]>>,
    seen: Vec<u32>,
    cycle: u32,
    cur_ids: Vec<u32>,
    cur_vals: Vec<u64>,
    /// The ids of the previous snapshot's input, in input order: a series is usually at
    /// the same position as last time, and comparing its key there is cheaper than hashing.
    order: Vec<u32>,
    next_order: Vec<u32>,
    raw: Vec<u8>,
    snappy: snap::raw::Encoder,
}

/// What one snapshot became.
#[derive(Debug, Default)]
pub struct Encoded {
    /// Payloads to append, in order (a `Defs` record first when there are new series).
    pub records: Vec<Vec<u8>>,
    /// Samples in the snapshot's `Samples` record, stale markers included.
    pub samples: u32,
    /// The same, per shard.
    pub per_shard: Vec<u32>,
}

impl Encoder {
    /// An encoder for `shards` senders.
    pub fn new(shards: usize) -> Self {
        Encoder {
            shards: shards.max(1),
            ids: HashMap::new(),
            keys: Vec::new(),
            shard: Vec::new(),
            prev: Vec::new(),
            prev_ids: Vec::new(),
            carried: Vec::new(),
            seen: Vec::new(),
            cycle: 0,
            cur_ids: Vec::new(),
            cur_vals: Vec::new(),
            order: Vec::new(),
            next_order: Vec::new(),
            raw: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }

    /// Starts a new segment: forgets every series, remembering which were in the last
    /// snapshot so the ones that vanish still get their stale marker.
    pub fn reset(&mut self) {
        self.carried = self
            .prev_ids
            .iter()
            .map(|&id| self.keys[id as usize].clone())
            .collect();
        self.ids.clear();
        self.keys.clear();
        self.shard.clear();
        self.prev.clear();
        self.prev_ids.clear();
        self.seen.clear();
        self.order.clear();
    }

    fn id(&mut self, key: &[u8], new: &mut Vec<u32>) -> u32 {
        if let Some(&id) = self.ids.get(key) {
            return id;
        }
        let id = self.keys.len() as u32;
        self.ids.insert(key.into(), id);
        self.keys.push(key.into());
        self.shard.push(shard_of(key, self.shards) as u16);
        self.prev.push(0);
        self.seen.push(0);
        new.push(id);
        id
    }

    /// Encodes one snapshot taken at `timestamp_ms` from `samples` (key, value), in the
    /// order the exposition lists them.
    pub fn encode<'a>(
        &mut self,
        timestamp_ms: i64,
        samples: impl IntoIterator<Item = (&'a [u8], f64)>,
    ) -> Encoded {
        self.cycle = self.cycle.wrapping_add(1).max(1);
        let mut new = Vec::new();
        self.cur_ids.clear();
        self.cur_vals.clear();
        self.next_order.clear();
        for (pos, (key, value)) in samples.into_iter().enumerate() {
            let id = match self.order.get(pos) {
                Some(&id) if *self.keys[id as usize] == *key => id,
                _ => self.id(key, &mut new),
            };
            self.next_order.push(id);
            if self.seen[id as usize] == self.cycle {
                continue; // a repeated line: the first one wins
            }
            self.seen[id as usize] = self.cycle;
            self.cur_ids.push(id);
            self.cur_vals.push(value.to_bits());
        }
        std::mem::swap(&mut self.order, &mut self.next_order);
        // Vanished since the previous snapshot: a stale marker each.
        let carried = std::mem::take(&mut self.carried);
        for key in &carried {
            let id = self.id(key, &mut new);
            if self.seen[id as usize] != self.cycle {
                self.seen[id as usize] = self.cycle;
                self.cur_ids.push(id);
                self.cur_vals.push(STALE_NAN_BITS);
            }
        }
        for i in 0..self.prev_ids.len() {
            let id = self.prev_ids[i];
            if self.seen[id as usize] != self.cycle && self.prev[id as usize] != STALE_NAN_BITS {
                self.seen[id as usize] = self.cycle;
                self.cur_ids.push(id);
                self.cur_vals.push(STALE_NAN_BITS);
            }
        }
        let mut out = Encoded {
            per_shard: vec![0; self.shards],
            ..Default::default()
        };
        if !new.is_empty() {
            out.records.push(self.defs(&new));
        }
        out.records.push(self.samples(timestamp_ms));
        out.samples = self.cur_ids.len() as u32;
        for &id in &self.cur_ids {
            out.per_shard[self.shard[id as usize] as usize] += 1;
        }
        // Series that went stale leave the "previous" list: no second marker.
        self.prev_ids.clear();
        for (&id, &v) in self.cur_ids.iter().zip(&self.cur_vals) {
            self.prev[id as usize] = v;
            if v != STALE_NAN_BITS {
                self.prev_ids.push(id);
            }
        }
        out
    }

    fn defs(&mut self, new: &[u32]) -> Vec<u8> {
        self.raw.clear();
        put_varint(&mut self.raw, u64::from(new[0]));
        put_varint(&mut self.raw, new.len() as u64);
        for &id in new {
            let key = &self.keys[id as usize];
            put_varint(&mut self.raw, key.len() as u64);
            self.raw.extend_from_slice(key);
        }
        self.compress(DEFS)
    }

    fn samples(&mut self, timestamp_ms: i64) -> Vec<u8> {
        let raw = &mut self.raw;
        raw.clear();
        raw.extend_from_slice(&timestamp_ms.to_le_bytes());
        put_varint(raw, self.cur_ids.len() as u64);
        // The ids the previous record would have, in order: its live ids.
        if self.cur_ids == self.prev_ids {
            raw.push(IDS_SAME);
        } else {
            raw.push(IDS_LISTED);
            let mut last = -1i64;
            for &id in &self.cur_ids {
                put_varint(raw, zigzag(i64::from(id) - last - 1));
                last = i64::from(id);
            }
        }
        let classes_at = raw.len();
        raw.resize(classes_at + self.cur_ids.len().div_ceil(4), 0);
        for (i, (&id, &bits)) in self.cur_ids.iter().zip(&self.cur_vals).enumerate() {
            let prev = self.prev[id as usize];
            let class = if bits == prev {
                SAME
            } else if let Some(d) = int_delta(prev, bits) {
                put_varint(raw, zigzag(d));
                INT_DELTA
            } else {
                put_xor(raw, prev ^ bits);
                XOR
            };
            raw[classes_at + i / 4] |= class << ((i % 4) * 2);
        }
        self.compress(SAMPLES)
    }

    fn compress(&mut self, kind: u8) -> Vec<u8> {
        let mut out = vec![0u8; 1 + snap::raw::max_compress_len(self.raw.len())];
        out[0] = kind;
        // Compression into a buffer of max_compress_len cannot fail.
        let n = self.snappy.compress(&self.raw, &mut out[1..]).unwrap_or(0);
        out.truncate(1 + n);
        out
    }
}

/// Both integral and exact: their difference, which a varint keeps short.
fn int_delta(prev: u64, cur: u64) -> Option<i64> {
    let (p, c) = (f64::from_bits(prev), f64::from_bits(cur));
    let exact =
        |v: f64| v.fract() == 0.0 && v.abs() < EXACT_INT && v.to_bits() != 0x8000_0000_0000_0000;
    (exact(p) && exact(c)).then(|| c as i64 - p as i64)
}

/// The XOR without its leading and trailing zero bytes: one byte says how many of each.
fn put_xor(out: &mut Vec<u8>, x: u64) {
    let bytes = x.to_be_bytes();
    let lead = (x.leading_zeros() / 8) as usize;
    let trail = (x.trailing_zeros() / 8) as usize;
    out.push(((lead << 4) | trail) as u8);
    out.extend_from_slice(&bytes[lead..8 - trail]);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn varint(&mut self) -> Result<u64, CorruptRecord> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.at)
                .ok_or_else(|| corrupt("varint past the end"))?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(corrupt("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], CorruptRecord> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| corrupt("field past the end"))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
}

/// One decoded record.
#[derive(Debug)]
pub enum Record<'a> {
    /// New series were named (nothing to send).
    Defs,
    /// A snapshot: ids into the decoder's series and their values.
    Samples {
        /// Sample timestamp, ms since the epoch.
        timestamp_ms: i64,
        /// Series ids.
        ids: &'a [u32],
        /// Values, bit patterns as written (stale markers kept).
        values: &'a [u64],
    },
}

/// Reads a segment's records back, from its first.
#[derive(Debug, Default)]
pub struct Decoder {
    keys: Vec<Box<[u8]>>,
    timestamp: i64,
    prev: Vec<u64>,
    ids: Vec<u32>,
    values: Vec<u64>,
    raw: Vec<u8>,
}

impl Decoder {
    /// The exposition key of series `id`.
    pub fn key(&self, id: u32) -> &[u8] {
        self.keys.get(id as usize).map_or(&[], |k| k)
    }

    /// Decodes the next record of the segment.
    pub fn decode(&mut self, payload: &[u8]) -> Result<Record<'_>, CorruptRecord> {
        let (&kind, body) = payload.split_first().ok_or_else(|| corrupt("empty"))?;
        let len = snap::raw::decompress_len(body).map_err(|e| CorruptRecord(e.to_string()))?;
        self.raw.resize(len, 0);
        snap::raw::Decoder::new()
            .decompress(body, &mut self.raw)
            .map_err(|e| CorruptRecord(e.to_string()))?;
        let raw = std::mem::take(&mut self.raw);
        let result = match kind {
            DEFS => self.defs(&raw).map(|()| false),
            SAMPLES => self.samples(&raw).map(|()| true),
            other => Err(CorruptRecord(format!("unknown record kind {other}"))),
        };
        self.raw = raw;
        Ok(if result? {
            Record::Samples {
                timestamp_ms: self.timestamp,
                ids: &self.ids,
                values: &self.values,
            }
        } else {
            Record::Defs
        })
    }

    fn defs(&mut self, raw: &[u8]) -> Result<(), CorruptRecord> {
        let mut c = Cursor { buf: raw, at: 0 };
        let first = c.varint()?;
        if first != self.keys.len() as u64 {
            return Err(corrupt("series numbered out of order"));
        }
        let n = c.varint()?;
        for _ in 0..n {
            let len = c.varint()? as usize;
            let key = c.take(len)?;
            self.keys.push(key.into());
            self.prev.push(0);
        }
        Ok(())
    }

    fn samples(&mut self, raw: &[u8]) -> Result<(), CorruptRecord> {
        let mut c = Cursor { buf: raw, at: 0 };
        let ts = c.take(8)?;
        let mut ts8 = [0u8; 8];
        ts8.copy_from_slice(ts);
        let n = c.varint()? as usize;
        if n > raw.len() * 4 {
            return Err(corrupt("sample count larger than the record"));
        }
        match c.take(1)?[0] {
            IDS_SAME => {
                // The previous record's live ids.
                let live: Vec<u32> = self
                    .ids
                    .iter()
                    .zip(&self.values)
                    .filter(|(_, &v)| v != STALE_NAN_BITS)
                    .map(|(&id, _)| id)
                    .collect();
                if live.len() != n {
                    return Err(corrupt("id list differs from the previous record"));
                }
                self.ids = live;
            }
            IDS_LISTED => {
                self.ids.clear();
                let mut last = -1i64;
                for _ in 0..n {
                    let id = last + 1 + unzigzag(c.varint()?);
                    if id < 0 || id as usize >= self.keys.len() {
                        return Err(corrupt("sample of an undefined series"));
                    }
                    self.ids.push(id as u32);
                    last = id;
                }
            }
            _ => return Err(corrupt("unknown id mode")),
        }
        let classes = c.take(n.div_ceil(4))?.to_vec();
        self.values.clear();
        for i in 0..n {
            let id = self.ids[i] as usize;
            let prev = self.prev[id];
            let bits = match (classes[i / 4] >> ((i % 4) * 2)) & 3 {
                SAME => prev,
                INT_DELTA => {
                    let d = unzigzag(c.varint()?);
                    let v = (f64::from_bits(prev) as i64).wrapping_add(d) as f64;
                    v.to_bits()
                }
                XOR => {
                    let h = c.take(1)?[0];
                    let (lead, trail) = ((h >> 4) as usize, (h & 15) as usize);
                    if lead + trail > 8 {
                        return Err(corrupt("bad XOR header"));
                    }
                    let mut b = [0u8; 8];
                    b[lead..8 - trail].copy_from_slice(c.take(8 - lead - trail)?);
                    prev ^ u64::from_be_bytes(b)
                }
                _ => return Err(corrupt("unknown value class")),
            };
            self.prev[id] = bits;
            self.values.push(bits);
        }
        self.timestamp = i64::from_le_bytes(ts8);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
