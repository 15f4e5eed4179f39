//! Prometheus remote write 1.0: the wire types (`prometheus.WriteRequest` of the
//! `remote.proto`/`types.proto` pair, only the fields 1.0 defines for float samples), the
//! snappy block framing, and the headers a sender must set.
//!
//! Encoding and decoding are exact: a request decoded from bytes we encoded is equal to the
//! one we started from, stale markers (a NaN with a particular bit pattern) included.

/// `Content-Type` of a remote-write request.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// `Content-Encoding` of a remote-write request (snappy block format, not framed).
pub const CONTENT_ENCODING: &str = "snappy";
/// `X-Prometheus-Remote-Write-Version` of a 1.0 request.
pub const VERSION: &str = "0.1.0";

/// One request: many series, each with its samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// A series' labels (`__name__` among them, sorted by name) and samples (oldest first).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// One label pair.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct Label {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// One float sample.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Errors decoding a request body.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is not in the snappy block format.
    #[error("body is not snappy (block format): {0}")]
    Snappy(#[from] snap::Error),
    /// The decompressed body is not a `WriteRequest`.
    #[error("body is not a remote-write protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

impl TimeSeries {
    /// A series of (name, value) labels and (timestamp ms, value) samples.
    pub fn new(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
        }
    }
}

impl WriteRequest {
    /// The protobuf encoding, snappy-compressed: a request body.
    pub fn encode_body(&self) -> Vec<u8> {
        let raw = prost::Message::encode_to_vec(self);
        // Compressing a buffer we just built cannot fail short of the 4 GiB block limit,
        // which a batch of a few thousand samples never approaches.
        snap::raw::Encoder::new()
            .compress_vec(&raw)
            .unwrap_or_default()
    }

    /// Decodes a request body (snappy block format, then protobuf).
    pub fn decode_body(body: &[u8]) -> Result<Self, DecodeError> {
        let raw = snap::raw::Decoder::new().decompress_vec(body)?;
        Ok(prost::Message::decode(raw.as_slice())?)
    }

    /// Samples in the request.
    pub fn samples(&self) -> usize {
        self.timeseries.iter().map(|t| t.samples.len()).sum()
    }
}

/// One series of a [`RequestRef`].
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'r, 'a> {
    /// Its labels as sent.
    pub labels: &'r [(&'a str, &'a str)],
    /// Its (timestamp ms, value) pairs.
    pub samples: &'r [(i64, f64)],
    /// Its labels' bytes in the request when they are exactly [`encode_labels`] of
    /// `labels` (sorted by name, no other fields): what identifies the series without
    /// encoding it again. Empty when the sender encoded them otherwise.
    pub encoded: &'a [u8],
}

/// The `labels` fields of a `TimeSeries` as protobuf encodes them (each label's name, then
/// its value unless empty, as proto3 leaves out empty strings), appended to `out`. With
/// pairs sorted by name, one label set has one encoding.
pub fn encode_labels<N: AsRef<str>, V: AsRef<str>>(out: &mut Vec<u8>, pairs: &[(N, V)]) {
    for (n, v) in pairs {
        let (n, v) = (n.as_ref().as_bytes(), v.as_ref().as_bytes());
        out.push(0x0a);
        put_varint(out, label_len(n.len(), v.len()) as u64);
        out.push(0x0a);
        put_varint(out, n.len() as u64);
        out.extend_from_slice(n);
        if !v.is_empty() {
            out.push(0x12);
            put_varint(out, v.len() as u64);
            out.extend_from_slice(v);
        }
    }
}

/// The length of a `Label` message as [`encode_labels`] writes it.
fn label_len(name: usize, value: usize) -> usize {
    let field = |n: usize| 1 + varint_len(n as u64) + n;
    field(name) + if value == 0 { 0 } else { field(value) }
}

/// A whole decompressed request, borrowed from its bytes: every series' labels and
/// samples in two flat lists, so the protobuf is walked (and its strings checked) once and
/// the series then read as often as needed, with three allocations per request instead of
/// any per label.
#[derive(Debug, Default)]
pub struct RequestRef<'a> {
    labels: Vec<(&'a str, &'a str)>,
    samples: Vec<(i64, f64)>,
    /// Per series: where its labels and its samples end.
    ends: Vec<(u32, u32)>,
    /// Per series: [`SeriesRef::encoded`].
    encoded: Vec<&'a [u8]>,
}

/// A malformed protobuf, found by [`RequestRef::parse`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("body is not a remote-write protobuf: {0}")]
pub struct BorrowError(pub &'static str);

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, BorrowError> {
        // Field keys and label lengths are nearly always one byte.
        if let Some(&b) = self.buf.get(self.at) {
            if b < 0x80 {
                self.at += 1;
                return Ok(u64::from(b));
            }
        }
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.at)
                .ok_or(BorrowError("truncated varint"))?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(BorrowError("varint too long"))
    }

    /// A varint written in as few bytes as it needs, as a length within the buffer.
    fn minimal_varint(&mut self) -> Option<usize> {
        let at = self.at;
        let v = self.varint().ok()?;
        (self.at - at == varint_len(v) && v <= (self.buf.len() - self.at) as u64)
            .then_some(v as usize)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], BorrowError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(BorrowError("field runs past the end"))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn done(&self) -> bool {
        self.at >= self.buf.len()
    }

    /// The next field: (number, wire type, payload for length-delimited or fixed).
    fn field(&mut self) -> Result<(u64, Field<'a>), BorrowError> {
        let key = self.varint()?;
        let f = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                let b = self.bytes(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Field::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let n = self.varint()? as usize;
                Field::Bytes(self.bytes(n)?)
            }
            5 => {
                self.bytes(4)?;
                Field::Other
            }
            _ => return Err(BorrowError("unsupported wire type")),
        };
        Ok((key >> 3, f))
    }
}

enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Other,
}

impl<'a> RequestRef<'a> {
    /// Reads a decompressed `WriteRequest`. Strings must be UTF-8, as protobuf requires;
    /// unknown fields are skipped.
    pub fn parse(raw: &'a [u8]) -> Result<RequestRef<'a>, BorrowError> {
        let mut req = RequestRef::default();
        let mut ranges = Vec::new();
        let mut r = Reader { buf: raw, at: 0 };
        while !r.done() {
            let (num, field) = r.field()?;
            let (1, Field::Bytes(ts)) = (num, field) else {
                continue;
            };
            let (labels, samples) = (req.labels.len(), req.samples.len());
            let encoded = match req.canonical_labels(ts, &mut ranges)? {
                Some(n) => &ts[..n],
                None => {
                    req.labels.truncate(labels);
                    req.samples.truncate(samples);
                    req.any_series(ts)?;
                    &[]
                }
            };
            req.encoded.push(encoded);
            let end = |n: usize| u32::try_from(n).map_err(|_| BorrowError("too many entries"));
            req.ends
                .push((end(req.labels.len())?, end(req.samples.len())?));
        }
        Ok(req)
    }

    /// Reads a `TimeSeries` message whose labels come first, each canonically encoded
    /// ([`encode_labels`]), sorted by name: what Prometheus and the collector send. The
    /// labels' bytes are checked as UTF-8 in one go when their lengths are all one byte
    /// (each string on its own otherwise), then the samples read. Returns the labels'
    /// length, or `None` (with whatever was pushed still to be undone) for any other
    /// shape, which [`Self::any_series`] reads.
    fn canonical_labels(
        &mut self,
        ts: &'a [u8],
        ranges: &mut Vec<[usize; 4]>,
    ) -> Result<Option<usize>, BorrowError> {
        ranges.clear();
        let mut r = Reader { buf: ts, at: 0 };
        while r.buf.get(r.at) == Some(&0x0a) {
            let at = r.at;
            r.at += 1;
            let Some(len) = r.minimal_varint() else {
                return Ok(None);
            };
            let end = at + 1 + varint_len(len as u64) + len;
            if r.buf.get(r.at) != Some(&0x0a) {
                return Ok(None);
            }
            r.at += 1;
            let Some(n) = r.minimal_varint() else {
                return Ok(None);
            };
            let name = [r.at, r.at + n];
            r.at = name[1];
            let value = if end == r.at {
                [end, end]
            } else if r.buf.get(r.at) == Some(&0x12) {
                r.at += 1;
                match r.minimal_varint() {
                    Some(v) if v > 0 && r.at + v == end => [r.at, end],
                    _ => return Ok(None),
                }
            } else {
                return Ok(None);
            };
            if end > ts.len()
                || ranges
                    .last()
                    .is_some_and(|p| ts[p[0]..p[1]] >= ts[name[0]..name[1]])
            {
                return Ok(None);
            }
            ranges.push([name[0], name[1], value[0], value[1]]);
            r.at = end;
        }
        let labels = r.at;
        match std::str::from_utf8(&ts[..labels]) {
            Ok(text) => {
                for p in ranges.iter() {
                    match (text.get(p[0]..p[1]), text.get(p[2]..p[3])) {
                        (Some(n), Some(v)) => self.labels.push((n, v)),
                        _ => return Ok(None),
                    }
                }
            }
            // Two-byte lengths are not UTF-8: each string on its own.
            Err(_) => {
                for p in ranges.iter() {
                    let s = |from, to| std::str::from_utf8(&ts[from..to]).ok();
                    match (s(p[0], p[1]), s(p[2], p[3])) {
                        (Some(n), Some(v)) => self.labels.push((n, v)),
                        _ => return Ok(None),
                    }
                }
            }
        }
        while !r.done() {
            match r.field()? {
                (1, _) => return Ok(None),
                (2, Field::Bytes(sample)) => self.samples.push(sample_of(sample)?),
                _ => {}
            }
        }
        Ok(Some(labels))
    }

    /// Reads a `TimeSeries` message of any valid shape.
    fn any_series(&mut self, ts: &'a [u8]) -> Result<(), BorrowError> {
        let mut t = Reader { buf: ts, at: 0 };
        while !t.done() {
            match t.field()? {
                (1, Field::Bytes(label)) => self.labels.push(label_pair(label)?),
                (2, Field::Bytes(sample)) => self.samples.push(sample_of(sample)?),
                _ => {}
            }
        }
        Ok(())
    }

    /// Each series' (labels as sent, (timestamp ms, value) pairs), in request order.
    pub fn series(&self) -> impl Iterator<Item = SeriesRef<'_, 'a>> + '_ {
        let mut from = (0, 0);
        self.ends
            .iter()
            .zip(&self.encoded)
            .map(move |(&(l, s), &encoded)| {
                let (l, s) = (l as usize, s as usize);
                let out = SeriesRef {
                    labels: &self.labels[from.0..l],
                    samples: &self.samples[from.1..s],
                    encoded,
                };
                from = (l, s);
                out
            })
    }

    /// Samples in the request.
    pub fn samples(&self) -> usize {
        self.samples.len()
    }
}

/// A `Sample` message's (timestamp ms, value).
fn sample_of(sample: &[u8]) -> Result<(i64, f64), BorrowError> {
    let mut r = Reader { buf: sample, at: 0 };
    let (mut v, mut ts) = (0.0, 0i64);
    while !r.done() {
        match r.field()? {
            (1, Field::Fixed64(bits)) => v = f64::from_bits(bits),
            (2, Field::Varint(x)) => ts = x as i64,
            _ => {}
        }
    }
    Ok((ts, v))
}

fn utf8<'a>(b: &'a [u8], error: &'static str) -> Result<&'a str, BorrowError> {
    std::str::from_utf8(b).map_err(|_| BorrowError(error))
}

/// A `Label` message's (name, value). When the whole message is UTF-8 (its tags and
/// one-byte lengths are ASCII, so nearly always) one check covers both strings, and they
/// are cut from it; otherwise each is checked on its own.
fn label_pair(label: &[u8]) -> Result<(&str, &str), BorrowError> {
    let whole = std::str::from_utf8(label).ok();
    let mut l = Reader { buf: label, at: 0 };
    let (mut name, mut value) = ("", "");
    while !l.done() {
        let (num, field) = l.field()?;
        let (1 | 2, Field::Bytes(b)) = (num, field) else {
            continue;
        };
        let end = l.at;
        let text = match whole {
            // The field was just read from there, so the range is in bounds; `get` also
            // checks it falls on character boundaries.
            Some(w) => w
                .get(end - b.len()..end)
                .ok_or(BorrowError("label string is not UTF-8"))?,
            None if num == 1 => utf8(b, "label name is not UTF-8")?,
            None => utf8(b, "label value is not UTF-8")?,
        };
        if num == 1 {
            name = text;
        } else {
            value = text;
        }
    }
    Ok((name, value))
}

/// Builds a request body sample by sample, without building messages: each series'
/// labels are encoded once ([`Body::labels`]) and copied per sample, as senders send one
/// sample per series entry. The bytes decode to the same `WriteRequest` prost would give.
#[derive(Debug, Default)]
pub struct Body {
    raw: Vec<u8>,
    samples: usize,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

impl Body {
    /// The encoded `labels` fields of a `TimeSeries` ([`encode_labels`]; pairs in the
    /// order given, which must be sorted by name).
    pub fn labels<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_labels(&mut out, pairs);
        out
    }

    /// Appends one series entry with one sample; `labels` from [`Body::labels`].
    pub fn push(&mut self, labels: &[u8], timestamp_ms: i64, value: f64) {
        let ts = timestamp_ms as u64;
        let sample_len = 1 + 8 + 1 + varint_len(ts);
        let series_len = labels.len() + 1 + varint_len(sample_len as u64) + sample_len;
        self.raw.push(0x0a);
        put_varint(&mut self.raw, series_len as u64);
        self.raw.extend_from_slice(labels);
        self.raw.push(0x12);
        put_varint(&mut self.raw, sample_len as u64);
        self.raw.push(0x09);
        self.raw.extend_from_slice(&value.to_le_bytes());
        self.raw.push(0x10);
        put_varint(&mut self.raw, ts);
        self.samples += 1;
    }

    /// Samples pushed since the last `finish`.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The snappy-compressed body; the builder is empty afterwards.
    pub fn finish(&mut self) -> Vec<u8> {
        self.samples = 0;
        let body = snap::raw::Encoder::new()
            .compress_vec(&self.raw)
            .unwrap_or_default();
        self.raw.clear();
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom::{is_stale, STALE_NAN_BITS};

    #[test]
    fn the_borrowing_walk_sees_what_prost_sees() {
        let req = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![
                        Label {
                            name: "__name__".into(),
                            value: "up".into(),
                        },
                        Label {
                            name: "job".into(),
                            value: "j\u{e9}".into(),
                        },
                        // Over 127 bytes: a two-byte length, not ASCII.
                        Label {
                            name: "long".into(),
                            value: "\u{e9}x".repeat(100),
                        },
                    ],
                    samples: vec![
                        Sample {
                            value: 0.0,
                            timestamp: 0,
                        },
                        Sample {
                            value: -2.5,
                            timestamp: -7,
                        },
                        Sample {
                            value: f64::from_bits(STALE_NAN_BITS),
                            timestamp: 1_795_000_000_000,
                        },
                    ],
                },
                TimeSeries {
                    labels: vec![],
                    samples: vec![],
                },
            ],
        };
        let raw = prost::Message::encode_to_vec(&req);
        let parsed = RequestRef::parse(&raw).unwrap();
        let seen: Vec<_> = parsed.series().map(flat).collect();
        let want: Vec<_> = req.timeseries.iter().map(owned).collect();
        assert_eq!(seen, want);
        // Truncations are errors, never panics.
        for cut in 0..raw.len() {
            let _ = RequestRef::parse(&raw[..cut]);
        }
        assert!(RequestRef::parse(&[0x0a, 0x05, 0x01]).is_err());
        assert_eq!(
            RequestRef::parse(&[0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff]).unwrap_err(),
            BorrowError("label name is not UTF-8")
        );
        assert_eq!(
            RequestRef::parse(&[0x0a, 0x08, 0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, 0xc3])
                .unwrap_err(),
            BorrowError("label value is not UTF-8")
        );
        // An unknown bytes field in a label is skipped, UTF-8 or not.
        let odd = [
            0x0a, 0x0b, 0x0a, 0x09, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', 0x1a, 0x01, 0xff,
        ];
        let parsed = RequestRef::parse(&odd).unwrap();
        let series = parsed.series().next().unwrap();
        assert_eq!(series.labels, &[("a", "b")]);
        assert_eq!(
            series.encoded, b"",
            "an unknown field: not the canonical encoding"
        );
    }

    #[test]
    fn canonically_encoded_labels_are_handed_over_as_sent() {
        let series = |labels: &[(&str, &str)]| TimeSeries::new(labels, &[(2, 1.0)]);
        let long = "x".repeat(200);
        let sorted: &[(&str, &str)] = &[("__name__", "up"), ("empty", ""), ("job", &long)];
        let unsorted: &[(&str, &str)] = &[("job", "a"), ("__name__", "up")];
        let req = WriteRequest {
            timeseries: vec![series(sorted), series(unsorted), series(&[])],
        };
        let raw = prost::Message::encode_to_vec(&req);
        let parsed = RequestRef::parse(&raw).unwrap();
        let got: Vec<_> = parsed.series().map(|s| s.encoded.to_vec()).collect();
        let mut want = Vec::new();
        encode_labels(&mut want, sorted);
        assert_eq!(got, [want, vec![], vec![]]);
        assert_eq!(Body::labels(sorted), got[0], "as prost encodes them");

        // The same labels encoded otherwise: value before name, an explicit empty value,
        // a two-byte length for a short string, a sample between labels.
        let label = |bytes: &[u8]| [&[0x0a, bytes.len() as u8][..], bytes].concat();
        let name = label(b"\x0a\x08__name__\x12\x02up");
        for odd in [
            [label(b"\x12\x02up\x0a\x08__name__")].concat(),
            [name.clone(), label(b"\x0a\x01a\x12\x00")].concat(),
            [name.clone(), label(b"\x0a\x81\x00a")].concat(),
            [name.clone(), vec![0x12, 0x00], label(b"\x0a\x01a")].concat(),
        ] {
            let body = [&[0x0a, odd.len() as u8][..], &odd].concat();
            let parsed = RequestRef::parse(&body).unwrap();
            let s = parsed.series().next().unwrap();
            assert!(s.labels.iter().any(|l| l.0 == "__name__"), "{odd:?}");
            assert_eq!(s.encoded, b"", "{odd:?}");
        }
    }

    #[test]
    fn a_built_body_decodes_to_what_prost_would_give() {
        let pairs = [("__name__", "up"), ("job", "x\"y"), ("zone", "")];
        let labels = Body::labels(&pairs);
        let mut b = Body::default();
        let values = [
            (0i64, 0.0),
            (1_795_000_000_000, -1.5),
            (-5, f64::from_bits(STALE_NAN_BITS)),
        ];
        for (t, v) in values {
            b.push(&labels, t, v);
        }
        assert_eq!(b.samples(), 3);
        let got = WriteRequest::decode_body(&b.finish()).unwrap();
        assert_eq!(b.samples(), 0);
        assert_eq!(got.timeseries.len(), 3);
        for (ts, (t, v)) in got.timeseries.iter().zip(values) {
            let l: Vec<(&str, &str)> = ts
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            assert_eq!(l, pairs);
            assert_eq!(ts.samples.len(), 1);
            assert_eq!(ts.samples[0].timestamp, t);
            assert_eq!(ts.samples[0].value.to_bits(), v.to_bits());
        }
        // A long label value needs a two-byte length.
        let long = "v".repeat(300);
        let labels = Body::labels(&[("__name__", long.as_str())]);
        b.push(&labels, 1, 2.0);
        let got = WriteRequest::decode_body(&b.finish()).unwrap();
        assert_eq!(got.timeseries[0].labels[0].value, long);
    }

    #[test]
    fn body_round_trips_with_stale_markers() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    Label {
                        name: "job".into(),
                        value: "a\"b".into(),
                    },
                ],
                samples: vec![
                    Sample {
                        value: 1.5,
                        timestamp: 1_000,
                    },
                    Sample {
                        value: f64::from_bits(STALE_NAN_BITS),
                        timestamp: 2_000,
                    },
                ],
            }],
        };
        let body = req.encode_body();
        let back = WriteRequest::decode_body(&body).unwrap();
        assert_eq!(back.timeseries[0].labels, req.timeseries[0].labels);
        assert_eq!(back.samples(), 2);
        assert!(is_stale(back.timeseries[0].samples[1].value));
        assert_eq!(back.timeseries[0].samples[0], req.timeseries[0].samples[0]);
    }

    #[test]
    fn garbage_is_named() {
        let err = WriteRequest::decode_body(b"not snappy at all").unwrap_err();
        assert!(err.to_string().contains("snappy"), "{err}");
        let not_proto = snap::raw::Encoder::new().compress_vec(&[0xff; 9]).unwrap();
        let err = WriteRequest::decode_body(&not_proto).unwrap_err();
        assert!(err.to_string().contains("protobuf"), "{err}");
    }

    /// A series' labels and (timestamp, value bits), owned.
    type Flat = (Vec<(String, String)>, Vec<(i64, u64)>);

    fn flat(s: SeriesRef<'_, '_>) -> Flat {
        (
            s.labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            s.samples.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
        )
    }

    fn owned(t: &TimeSeries) -> Flat {
        (
            t.labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect(),
            t.samples
                .iter()
                .map(|x| (x.timestamp, x.value.to_bits()))
                .collect(),
        )
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        fn series() -> impl Strategy<Value = TimeSeries> {
            // Short and long strings (one- and two-byte lengths), empty ones, non-ASCII;
            // names from a small set so that sorted, unsorted and duplicate all occur.
            let name = prop::sample::select(vec!["", "a", "job", "__name__", "é", "zone"]);
            let value = "(|x|ü|[a-z]{1,20}|[a-z]{120,300})";
            let label = (name, value).prop_map(|(n, v)| Label {
                name: n.to_string(),
                value: v,
            });
            let sample = (any::<i64>(), any::<f64>())
                .prop_map(|(timestamp, value)| Sample { value, timestamp });
            (
                prop::collection::vec(label, 0..6),
                prop::collection::vec(sample, 0..3),
            )
                .prop_map(|(labels, samples)| TimeSeries { labels, samples })
        }

        proptest! {
            #[test]
            fn reads_what_prost_writes_and_hands_over_only_canonical_labels(
                timeseries in prop::collection::vec(series(), 0..4),
            ) {
                let raw = prost::Message::encode_to_vec(&WriteRequest { timeseries });
                // What prost reads back is the reference (proto3 writes -0.0 as nothing).
                let req = <WriteRequest as prost::Message>::decode(&raw[..]).unwrap();
                let parsed = RequestRef::parse(&raw).unwrap();
                let got: Vec<_> = parsed.series().collect();
                prop_assert_eq!(got.len(), req.timeseries.len());
                for (s, want) in got.into_iter().zip(&req.timeseries) {
                    let want = owned(want);
                    let labels = &want.0;
                    let canonical = !labels.is_empty()
                        && labels.iter().all(|l| !l.0.is_empty())
                        && labels.windows(2).all(|w| w[0].0 < w[1].0);
                    let mut encoded = Vec::new();
                    if canonical {
                        encode_labels(&mut encoded, labels);
                    }
                    prop_assert_eq!(s.encoded, &encoded[..]);
                    prop_assert_eq!(flat(s), want);
                }
            }

            #[test]
            fn damaged_bodies_are_errors_or_what_prost_reads(
                timeseries in prop::collection::vec(series(), 1..3),
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            ) {
                let mut raw = prost::Message::encode_to_vec(&WriteRequest { timeseries });
                for (at, byte) in flips {
                    let i = at.index(raw.len());
                    raw[i] = byte;
                }
                let ours = RequestRef::parse(&raw);
                let theirs = <WriteRequest as prost::Message>::decode(&raw[..]);
                if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                    let ours: Vec<_> = ours.series().map(flat).collect();
                    let theirs: Vec<_> = theirs.timeseries.iter().map(owned).collect();
                    prop_assert_eq!(ours, theirs);
                }
            }
        }
    }
}
