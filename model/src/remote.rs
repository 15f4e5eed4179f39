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

/// The value Prometheus writes when a series disappears (a NaN that is not the NaN
/// arithmetic produces); compare bits, never values.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// True if `v` is a staleness marker.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

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
    /// The encoded `labels` fields of a `TimeSeries` (pairs in the order given, which must
    /// be sorted by name).
    pub fn labels<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in pairs {
            let (n, v) = (n.as_ref().as_bytes(), v.as_ref().as_bytes());
            let len =
                1 + varint_len(n.len() as u64) + n.len() + 1 + varint_len(v.len() as u64) + v.len();
            out.push(0x0a);
            put_varint(&mut out, len as u64);
            out.push(0x0a);
            put_varint(&mut out, n.len() as u64);
            out.extend_from_slice(n);
            out.push(0x12);
            put_varint(&mut out, v.len() as u64);
            out.extend_from_slice(v);
        }
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
}
