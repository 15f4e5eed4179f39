//! Queue tests: appends, crash recovery, budgets by size and age, each sender's
//! position, disk failures, and a property test against a model of the queue.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;
use crate::ship::codec::shard_of;
use crate::ship::reader::{Item, Reader};

fn cfg(dir: &Path, max_bytes: u64) -> Config {
    Config {
        dir: dir.to_owned(),
        max_bytes,
        max_age: Duration::from_secs(3600),
        segment_bytes: 512,
        fsync_every: Duration::from_secs(1),
        shards: 1,
    }
}

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

/// `n` series named s0..s{n}, valued `cycle * 10 + i`.
fn snapshot(n: usize, cycle: i64) -> Vec<(Vec<u8>, f64)> {
    (0..n)
        .map(|i| (format!("s{i}").into_bytes(), (cycle * 10 + i as i64) as f64))
        .collect()
}

fn append(q: &mut Queue, ts: i64, snap: &[(Vec<u8>, f64)]) -> Appended {
    let s: Vec<(&[u8], f64)> = snap.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
    q.append(ts, &s, at(ts))
}

/// Delivers up to `max` samples the way a sender does (dispatch, then ack); returns them
/// as (key, timestamp, value).
fn deliver(q: &mut Queue, r: &mut Reader, max: usize) -> Vec<(String, i64, f64)> {
    let mut out = Vec::new();
    let mut last = None;
    while out.len() < max {
        match r.next(q) {
            Item::Sample {
                id,
                timestamp_ms,
                bits,
                end,
                ..
            } => {
                out.push((
                    String::from_utf8(r.key(id).to_vec()).unwrap(),
                    timestamp_ms,
                    f64::from_bits(bits),
                ));
                last = Some((r.segment(), end));
            }
            Item::SegmentEnd { seg, next } => {
                assert!(q.dispatch(0, seg, Pos::start(next)));
                q.ack(0, Pos::start(next));
            }
            Item::Pending { .. } => break,
            Item::Gone => {}
            Item::Corrupt(e) => panic!("{e}"),
        }
    }
    if let Some((seg, end)) = last {
        if q.dispatch(0, seg, end) {
            q.ack(0, end);
        }
    }
    out
}

#[test]
fn appended_snapshots_come_back_in_order_and_delivered_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(cfg(dir.path(), 1 << 20)).unwrap();
    for c in 0..50 {
        append(&mut q, c * 1000, &snapshot(20, c));
    }
    let files = || std::fs::read_dir(dir.path()).unwrap().count();
    assert!(files() > 3, "segments rotate at 512 bytes");
    let mut r = Reader::new(q.positions());
    let got = deliver(&mut q, &mut r, usize::MAX);
    assert_eq!(got.len(), 50 * 20);
    for (i, (k, ts, v)) in got.iter().enumerate() {
        let (c, s) = (i as i64 / 20, i % 20);
        assert_eq!(
            (k.as_str(), *ts, *v),
            (
                format!("s{s}").as_str(),
                c * 1000,
                (c * 10 + s as i64) as f64
            )
        );
    }
    // Only the head segment and the positions file remain.
    assert_eq!(files(), 2);
    assert_eq!(q.oldest_unacked(), None);
}

#[test]
fn a_torn_tail_is_cut_and_everything_before_it_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(cfg(dir.path(), 1 << 20)).unwrap();
    for c in 0..3 {
        append(&mut q, c * 1000, &snapshot(5, c));
    }
    drop(q); // a crash: nothing more is written
    let seg = dir.path().join(format!("{:016}.seg", 1));
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    let mut q = Queue::open(cfg(dir.path(), 1 << 20)).unwrap();
    let mut r = Reader::new(q.positions());
    let got = deliver(&mut q, &mut r, usize::MAX);
    assert_eq!(
        got.len(),
        2 * 5,
        "the torn third snapshot is gone, the first two stay"
    );
    assert!(std::fs::metadata(&seg).map_or(true, |m| m.len() < len - 3));
}

#[test]
fn a_restart_resumes_after_the_last_acknowledged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(cfg(dir.path(), 1 << 20)).unwrap();
    for c in 0..4 {
        append(&mut q, c * 1000, &snapshot(10, c));
    }
    let mut r = Reader::new(q.positions());
    let first = deliver(&mut q, &mut r, 15);
    assert_eq!(first.len(), 15);
    drop(q);
    let mut q = Queue::open(cfg(dir.path(), 1 << 20)).unwrap();
    let mut r = Reader::new(q.positions());
    let rest = deliver(&mut q, &mut r, usize::MAX);
    assert_eq!(rest.len(), 25);
    assert_eq!(rest[0].0, "s5");
    assert_eq!(rest[0].1, 1000);
}

#[test]
fn over_budget_the_oldest_segments_go_and_are_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), 64 << 10);
    c.segment_bytes = 8 << 10;
    let mut q = Queue::open(c).unwrap();
    let mut dropped = 0;
    let mut appended = 0;
    for cyc in 0..400 {
        let snap: Vec<(Vec<u8>, f64)> = snapshot(50, cyc)
            .into_iter()
            .map(|(k, v)| (k, v * 1.000_001))
            .collect();
        let a = append(&mut q, cyc * 1000, &snap);
        appended += a.samples;
        dropped += a.dropped_full;
        assert!(q.bytes() <= (64 << 10) + (8 << 10) + 4096);
    }
    assert!(dropped > 0);
    let mut r = Reader::new(q.positions());
    let got = deliver(&mut q, &mut r, usize::MAX);
    assert_eq!(got.len() as u64 + dropped, appended);
    // What arrived is the newest part, without a gap.
    let first_ts = got[0].1;
    assert_eq!(got.len() as i64, (399_000 - first_ts) / 1000 * 50 + 50);
}

#[test]
fn old_segments_are_dropped_for_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(cfg(dir.path(), 1 << 20)).unwrap();
    let mut dropped = 0;
    for cyc in 0..200 {
        // One snapshot a minute for 200 minutes against a one-hour budget.
        dropped += append(&mut q, cyc * 60_000, &snapshot(10, cyc)).dropped_age;
    }
    assert!(dropped > 0);
    let mut r = Reader::new(q.positions());
    let got = deliver(&mut q, &mut r, usize::MAX);
    assert_eq!(got.len() as u64 + dropped, 2000);
    assert!(got[0].1 >= (199 - 60 - 60 / 8 - 1) * 60_000, "{}", got[0].1);
}

#[test]
fn a_failing_disk_degrades_to_memory_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(cfg(dir.path(), 1 << 20)).unwrap();
    append(&mut q, 0, &snapshot(5, 0));
    q.fail_disk = true;
    append(&mut q, 1000, &snapshot(5, 1));
    assert!(q.degraded());
    append(&mut q, 2000, &snapshot(5, 2));
    q.fail_disk = false;
    // The retry comes after DISK_RETRY; pretend it passed.
    q.disk_failed = Some(Instant::now() - DISK_RETRY);
    append(&mut q, 3000, &snapshot(5, 3));
    append(&mut q, 4000, &snapshot(5, 4));
    assert!(!q.degraded());
    let mut r = Reader::new(q.positions());
    let got = deliver(&mut q, &mut r, usize::MAX);
    let ts: Vec<i64> = got.iter().step_by(5).map(|g| g.1).collect();
    assert_eq!(ts, vec![0, 1000, 2000, 3000, 4000]);
}

#[test]
fn several_senders_each_keep_their_series_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), 1 << 20);
    c.shards = 3;
    let mut q = Queue::open(c.clone()).unwrap();
    for cyc in 0..20 {
        append(&mut q, cyc * 1000, &snapshot(30, cyc));
    }
    let mut r = Reader::new(q.positions());
    let mut per_series: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut shards_seen = std::collections::BTreeSet::new();
    loop {
        match r.next(&q) {
            Item::Sample {
                shard,
                id,
                timestamp_ms,
                end,
                ..
            } => {
                shards_seen.insert(shard);
                let key = String::from_utf8(r.key(id).to_vec()).unwrap();
                assert_eq!(shard, shard_of(key.as_bytes(), 3));
                per_series.entry(key).or_default().push(timestamp_ms);
                assert!(q.dispatch(shard, r.segment(), end));
                q.ack(shard, end);
            }
            Item::SegmentEnd { seg, next } => {
                for s in 0..3 {
                    assert!(q.dispatch(s, seg, Pos::start(next)));
                    q.ack(s, Pos::start(next));
                }
            }
            Item::Pending { .. } => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(shards_seen.len(), 3);
    assert_eq!(per_series.len(), 30);
    for ts in per_series.values() {
        assert_eq!(ts, &(0..20).map(|c| c * 1000).collect::<Vec<_>>());
    }
    // Reopen with the same senders: nothing left to send.
    drop(q);
    let q = Queue::open(c).unwrap();
    let mut r = Reader::new(q.positions());
    loop {
        match r.next(&q) {
            Item::Pending { .. } => break,
            Item::SegmentEnd { .. } => {}
            other => panic!("nothing should be left to send: {other:?}"),
        }
    }
}

/// Operations of the model-based test.
#[derive(Debug, Clone)]
enum Op {
    /// Append a snapshot of this many series.
    Append(usize),
    /// Deliver up to this many samples.
    Deliver(usize),
    /// Crash and reopen.
    Crash,
    /// Crash with the last segment's last record torn at this fraction, then reopen.
    Tear(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..12).prop_map(Op::Append),
        3 => (1usize..40).prop_map(Op::Deliver),
        1 => Just(Op::Crash),
        1 => (0u8..100).prop_map(Op::Tear),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Against a model (a list of snapshots still to deliver): every sample appended is
    /// delivered exactly once, in order, except a torn last record, whatever the crashes.
    #[test]
    fn queue_matches_its_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path(), 1 << 30);
        c.segment_bytes = 300;
        let mut q = Queue::open(c.clone()).unwrap();
        let mut r = Reader::new(q.positions());
        // The model: samples appended and not yet delivered, oldest first.
        let mut model: Vec<(String, i64, f64)> = Vec::new();
        // Series of the previous snapshot (for stale markers; forgotten by a crash).
        let mut prev: Vec<String> = Vec::new();
        // The newest snapshot's samples, while it is the newest record on disk.
        let mut newest: Option<Vec<(String, i64, f64)>> = None;
        let mut ts = 0;
        for op in ops {
            match op {
                Op::Append(n) => {
                    ts += 1000;
                    let snap = snapshot(n, ts / 1000);
                    append(&mut q, ts, &snap);
                    let mut rec: Vec<(String, i64, f64)> = snap
                        .iter()
                        .map(|(k, v)| (String::from_utf8(k.clone()).unwrap(), ts, *v))
                        .collect();
                    // Series the previous snapshot had and this one lacks: a stale marker.
                    for k in prev.iter().skip(n) {
                        rec.push((k.clone(), ts, f64::from_bits(STALE)));
                    }
                    prev = rec[..n].iter().map(|s| s.0.clone()).collect();
                    model.extend(rec.iter().cloned());
                    newest = Some(rec);
                }
                Op::Deliver(n) => {
                    let got = deliver(&mut q, &mut r, n);
                    prop_assert!(got.len() <= model.len());
                    let want: Vec<_> = model.drain(..got.len()).collect();
                    for (g, w) in got.iter().zip(&want) {
                        prop_assert_eq!(&g.0, &w.0);
                        prop_assert_eq!(g.1, w.1);
                        prop_assert_eq!(g.2.to_bits(), w.2.to_bits());
                    }
                }
                Op::Crash => {
                    drop(q);
                    q = Queue::open(c.clone()).unwrap();
                    r = Reader::new(q.positions());
                    prev.clear();
                }
                Op::Tear(frac) => {
                    drop(q);
                    if let Some(rec) = newest.take() {
                        if tear_last_record(dir.path(), frac) {
                            // The newest snapshot's undelivered samples are lost.
                            let lost = rec.len().min(model.len());
                            let bits = |v: &[(String, i64, f64)]| {
                                v.iter().map(|(k, t, x)| (k.clone(), *t, x.to_bits())).collect::<Vec<_>>()
                            };
                            if bits(&model[model.len() - lost..]) == bits(&rec[rec.len() - lost..]) {
                                model.truncate(model.len() - lost);
                            }
                        }
                    }
                    q = Queue::open(c.clone()).unwrap();
                    r = Reader::new(q.positions());
                    prev.clear();
                }
            }
        }
        let rest = deliver(&mut q, &mut r, usize::MAX);
        prop_assert_eq!(rest.len(), model.len());
        for (g, w) in rest.iter().zip(&model) {
            prop_assert_eq!(&g.0, &w.0);
            prop_assert_eq!(g.1, w.1);
        }
    }
}

const STALE: u64 = telltale_model::prom::STALE_NAN_BITS;

/// Cuts the newest segment's last record somewhere inside it; false if there is none.
fn tear_last_record(dir: &Path, frac: u8) -> bool {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let Some(last) = segs.last() else {
        return false;
    };
    let data = std::fs::read(last).unwrap();
    let mut at = SEGMENT_MAGIC.len();
    let mut last_start = None;
    while at + frame::HEADER <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        last_start = Some((at, frame::HEADER + len));
        at += frame::HEADER + len;
    }
    let Some((start, len)) = last_start else {
        return false;
    };
    let cut = start + len * usize::from(frac) / 100;
    let f = OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(cut as u64).unwrap();
    true
}
