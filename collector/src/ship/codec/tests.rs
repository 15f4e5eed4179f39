//! Codec tests: values come back bit-exact, vanished series get stale markers (across
//! segments too), corrupt payloads are errors rather than panics, and a steady node costs
//! a few bytes per sample.

#![allow(clippy::unwrap_used)]

use super::*;

/// A decoded snapshot: its timestamp and (key, value bits) pairs.
type Snap = (i64, Vec<(Vec<u8>, u64)>);

/// Decodes every record into snapshots.
fn decode_all(records: &[Vec<u8>]) -> Vec<Snap> {
    let mut d = Decoder::default();
    let mut out = Vec::new();
    for r in records {
        if let Record::Samples {
            timestamp_ms,
            ids,
            values,
        } = d.decode(r).unwrap()
        {
            let (ids, values) = (ids.to_vec(), values.to_vec());
            let s = ids
                .iter()
                .zip(&values)
                .map(|(&id, &v)| (d.key(id).to_vec(), v))
                .collect();
            out.push((timestamp_ms, s));
        }
    }
    out
}

#[test]
fn values_come_back_bit_exact_and_vanished_series_go_stale() {
    let mut e = Encoder::new(1);
    let snaps: Vec<Vec<(&[u8], f64)>> = vec![
        vec![(b"a", 1.0), (b"b{x=\"1\"}", 0.25), (b"c", -0.0)],
        vec![(b"a", 5.0), (b"b{x=\"1\"}", 0.25), (b"c", f64::NAN)],
        // c vanished, d is new, a decreases (a counter reset).
        vec![(b"a", 2.0), (b"b{x=\"1\"}", 1e300), (b"d", f64::INFINITY)],
        vec![(b"a", 2.5), (b"b{x=\"1\"}", 1e300), (b"d", f64::INFINITY)],
    ];
    let mut records = Vec::new();
    for (i, s) in snaps.iter().enumerate() {
        records.extend(e.encode(i as i64 * 15_000, s.iter().copied()).records);
    }
    let got = decode_all(&records);
    assert_eq!(got.len(), 4);
    for (i, s) in snaps.iter().enumerate() {
        assert_eq!(got[i].0, i as i64 * 15_000);
        for (k, v) in s {
            let found = got[i].1.iter().find(|(gk, _)| gk == k).unwrap();
            assert_eq!(found.1, v.to_bits(), "snapshot {i} {:?}", k);
        }
    }
    let stale: Vec<_> = got[2]
        .1
        .iter()
        .filter(|(_, v)| *v == STALE_NAN_BITS)
        .collect();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].0, b"c");
    // One marker only.
    assert_eq!(got[3].1.len(), 3);
}

#[test]
fn a_new_segment_still_marks_what_vanished_across_it() {
    let mut e = Encoder::new(1);
    let r1 = e.encode(0, [(&b"a"[..], 1.0), (&b"b"[..], 2.0)]).records;
    e.reset();
    let r2 = e.encode(15_000, [(&b"a"[..], 1.0)]).records;
    assert_eq!(decode_all(&r1).len(), 1);
    let got = decode_all(&r2);
    assert_eq!(
        got[0].1,
        vec![
            (b"a".to_vec(), 1f64.to_bits()),
            (b"b".to_vec(), STALE_NAN_BITS)
        ]
    );
}

#[test]
fn corrupt_payloads_are_errors_not_panics() {
    let mut e = Encoder::new(1);
    let recs = e.encode(0, [(&b"a"[..], 1.0)]).records;
    for r in &recs {
        for cut in 0..r.len() {
            let _ = Decoder::default().decode(&r[..cut]);
        }
    }
    let mut d = Decoder::default();
    // Samples before their definitions.
    assert!(d.decode(&recs[1]).is_err());
}

#[test]
fn a_steady_node_costs_a_few_bytes_per_sample() {
    // 2,000 series: a third constant, a third integer counters, a third float counters.
    let keys: Vec<String> = (0..2000)
        .map(|i| format!("m{}{{container=\"c{i}\",namespace=\"ns\"}}", i % 3))
        .collect();
    let mut e = Encoder::new(1);
    let mut bytes = 0;
    let cycles = 100;
    for c in 0..cycles {
        let s: Vec<(&[u8], f64)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let v = match i % 3 {
                    0 => 1_073_741_824.0,
                    1 => (c * (i as i64 % 97) * 4096) as f64,
                    _ => c as f64 * 0.013_7 * i as f64,
                };
                (k.as_bytes(), v)
            })
            .collect();
        bytes += e
            .encode(c * 15_000, s)
            .records
            .iter()
            .map(Vec::len)
            .sum::<usize>();
    }
    let per_sample = bytes as f64 / (2000.0 * cycles as f64);
    assert!(per_sample < 4.0, "{per_sample} bytes per sample");
}
