//! Walking a queue oldest first, one sample at a time, skipping what each sender already
//! delivered. The dispatcher builds its batches from this walk; the tests drive the same
//! walk synchronously.

use super::codec::{shard_of, Decoder, Record};
use super::queue::{Pos, Queue, Read};

/// What the walk found next.
#[derive(Debug, PartialEq)]
pub enum Item {
    /// A sample for `shard`; once sent, that shard's position is `end`.
    Sample {
        /// The sender that owns the series.
        shard: usize,
        /// Series id in the current segment ([`Reader::key`] names it).
        id: u32,
        /// Milliseconds since the epoch.
        timestamp_ms: i64,
        /// Value bits (stale markers kept).
        bits: u64,
        /// The sender's position after this sample.
        end: Pos,
    },
    /// Segment `seg` is finished; the walk goes on in segment `next`.
    SegmentEnd {
        /// The finished segment.
        seg: u64,
        /// The next one.
        next: u64,
    },
    /// Nothing more yet; a sender that has taken everything stands at `at`.
    Pending {
        /// The position after the last record.
        at: Pos,
    },
    /// The segment being read was dropped: samples not yet dispatched are gone (and
    /// counted). The walk restarts from the queue's dispatched positions.
    Gone,
    /// A record does not decode: the rest of the segment is skipped.
    Corrupt(String),
}

/// A walk over one queue.
#[derive(Debug)]
pub struct Reader {
    shards: usize,
    seg: u64,
    rec: u32,
    resume: Vec<Pos>,
    decoder: Decoder,
    shard_of_id: Vec<u16>,
    current: Option<Current>,
    taken: Vec<u32>,
}

#[derive(Debug)]
struct Current {
    timestamp_ms: i64,
    ids: Vec<u32>,
    values: Vec<u64>,
    next: usize,
}

impl Reader {
    /// A walk that resumes after `resume` (one position per sender).
    pub fn new(resume: Vec<Pos>) -> Self {
        let seg = resume.iter().map(|p| p.seg).min().unwrap_or(1);
        Reader {
            shards: resume.len().max(1),
            taken: vec![0; resume.len().max(1)],
            seg,
            rec: 0,
            resume,
            decoder: Decoder::default(),
            shard_of_id: Vec::new(),
            current: None,
        }
    }

    /// The segment being read.
    pub fn segment(&self) -> u64 {
        self.seg
    }

    /// The exposition key of series `id` of the current segment.
    pub fn key(&self, id: u32) -> &[u8] {
        self.decoder.key(id)
    }

    fn enter(&mut self, seg: u64) {
        self.seg = seg;
        self.rec = 0;
        self.decoder = Decoder::default();
        self.shard_of_id.clear();
        self.current = None;
    }

    /// The next item.
    pub fn next(&mut self, q: &Queue) -> Item {
        loop {
            if let Some(cur) = &mut self.current {
                while cur.next < cur.ids.len() {
                    let i = cur.next;
                    cur.next += 1;
                    let id = cur.ids[i];
                    let shard = self.shard_of_id[id as usize] as usize;
                    let k = self.taken[shard];
                    self.taken[shard] += 1;
                    let here = Pos {
                        seg: self.seg,
                        rec: self.rec,
                        k,
                    };
                    if here < self.resume[shard] {
                        continue;
                    }
                    return Item::Sample {
                        shard,
                        id,
                        timestamp_ms: cur.timestamp_ms,
                        bits: cur.values[i],
                        end: Pos { k: k + 1, ..here },
                    };
                }
                self.current = None;
                self.rec += 1;
            }
            match q.read(self.seg, self.rec) {
                Read::Record(payload) => match self.decoder.decode(&payload) {
                    Ok(Record::Defs) => self.rec += 1,
                    Ok(Record::Samples {
                        timestamp_ms,
                        ids,
                        values,
                    }) => {
                        let (ids, values) = (ids.to_vec(), values.to_vec());
                        for &id in &ids {
                            while self.shard_of_id.len() <= id as usize {
                                let key = self.decoder.key(self.shard_of_id.len() as u32);
                                self.shard_of_id.push(shard_of(key, self.shards) as u16);
                            }
                        }
                        self.taken.iter_mut().for_each(|t| *t = 0);
                        self.current = Some(Current {
                            timestamp_ms,
                            ids,
                            values,
                            next: 0,
                        });
                    }
                    Err(e) => {
                        let seg = self.seg;
                        let next = match q.read(seg, u32::MAX) {
                            Read::Next(n) => n,
                            _ => return Item::Corrupt(e.to_string()),
                        };
                        self.enter(next);
                        return Item::SegmentEnd { seg, next };
                    }
                },
                Read::Next(next) => {
                    let seg = self.seg;
                    self.enter(next);
                    return Item::SegmentEnd { seg, next };
                }
                Read::Pending => {
                    return Item::Pending {
                        at: Pos {
                            seg: self.seg,
                            rec: self.rec,
                            k: 0,
                        },
                    }
                }
                Read::Gone(first) => {
                    self.resume = q.dispatched();
                    let start = self.resume.iter().map(|p| p.seg).min().unwrap_or(1);
                    self.enter(first.map_or(start, |f| f.max(start)));
                    return Item::Gone;
                }
            }
        }
    }
}
