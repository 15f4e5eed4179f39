//! Prometheus remote read: the wire types of `remote.proto`'s `ReadRequest` and
//! `ReadResponse` (the `SAMPLES` response type, which Prometheus's own `remote_read`
//! client asks for), framed as remote write is: protobuf in a snappy block.

use crate::remote::{DecodeError, TimeSeries};

/// `X-Prometheus-Remote-Read-Version` of a request.
pub const VERSION: &str = "0.1.0";

/// What a reader asks: one or more queries, and the response types it accepts (none:
/// `SAMPLES`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    /// The queries, answered in order.
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// [`ResponseType`]s the reader accepts.
    #[prost(enumeration = "ResponseType", repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// The shape of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ResponseType {
    /// One [`ReadResponse`] with every sample.
    Samples = 0,
    /// A stream of XOR chunks (not served here).
    StreamedXorChunks = 1,
}

/// The series matching every matcher, with their samples in `[start, end]` (ms).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Query {
    /// Start, ms since the epoch (inclusive).
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    /// End, ms since the epoch (inclusive).
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    /// Label matchers, all of which a series must pass.
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
    /// What the reader will compute (ignored here: every sample is sent).
    #[prost(message, optional, tag = "4")]
    pub hints: Option<ReadHints>,
}

/// One label matcher.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelMatcher {
    /// A [`MatchType`].
    #[prost(enumeration = "MatchType", tag = "1")]
    pub r#type: i32,
    /// The label name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// The value or regular expression.
    #[prost(string, tag = "3")]
    pub value: String,
}

/// How a [`LabelMatcher`] compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MatchType {
    /// `=`.
    Eq = 0,
    /// `!=`.
    Neq = 1,
    /// `=~`.
    Re = 2,
    /// `!~`.
    Nre = 3,
}

/// What the reader's query will do with the samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadHints {
    /// Query step (ms).
    #[prost(int64, tag = "1")]
    pub step_ms: i64,
    /// The function over the selector, if any.
    #[prost(string, tag = "2")]
    pub func: String,
    /// Start of the selection (ms).
    #[prost(int64, tag = "3")]
    pub start_ms: i64,
    /// End of the selection (ms).
    #[prost(int64, tag = "4")]
    pub end_ms: i64,
    /// Labels of the aggregation, if any.
    #[prost(string, repeated, tag = "5")]
    pub grouping: Vec<String>,
    /// Whether `grouping` is `by` (else `without`).
    #[prost(bool, tag = "6")]
    pub by: bool,
    /// The range of a range selector (ms).
    #[prost(int64, tag = "7")]
    pub range_ms: i64,
}

/// The answer: one result per query, in order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadResponse {
    /// Results, one per query.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// The series of one query, labels sorted by name, samples oldest first.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryResult {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    // Compressing a buffer in memory fails only past snappy's 4 GiB block limit.
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .unwrap_or_default()
}

impl ReadRequest {
    /// The protobuf encoding, snappy-compressed: a request body.
    pub fn encode_body(&self) -> Vec<u8> {
        snappy(&prost::Message::encode_to_vec(self))
    }

    /// Decodes a request body (snappy block format, then protobuf).
    pub fn decode_body(body: &[u8]) -> Result<Self, DecodeError> {
        let raw = snap::raw::Decoder::new().decompress_vec(body)?;
        Ok(prost::Message::decode(raw.as_slice())?)
    }

    /// Whether the reader takes the `SAMPLES` response (it does when it names none).
    pub fn accepts_samples(&self) -> bool {
        self.accepted_response_types.is_empty()
            || self
                .accepted_response_types
                .contains(&(ResponseType::Samples as i32))
    }
}

impl ReadResponse {
    /// The protobuf encoding, snappy-compressed: a response body.
    pub fn encode_body(&self) -> Vec<u8> {
        snappy(&prost::Message::encode_to_vec(self))
    }

    /// Decodes a response body.
    pub fn decode_body(body: &[u8]) -> Result<Self, DecodeError> {
        let raw = snap::raw::Decoder::new().decompress_vec(body)?;
        Ok(prost::Message::decode(raw.as_slice())?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Bytes Prometheus's Go client sends for one query `{__name__="up", job=~"a.*"}`
    /// over [1000, 2000] with no response types, built by hand from the field numbers.
    #[test]
    fn a_request_decodes_from_its_wire_bytes() {
        let matcher = |t: u8, name: &str, value: &str| {
            let mut m = vec![0x08, t, 0x12, name.len() as u8];
            m.extend_from_slice(name.as_bytes());
            m.push(0x1a);
            m.push(value.len() as u8);
            m.extend_from_slice(value.as_bytes());
            m
        };
        let mut query = vec![0x08, 0xe8, 0x07, 0x10, 0xd0, 0x0f];
        for m in [matcher(0, "__name__", "up"), matcher(2, "job", "a.*")] {
            query.push(0x1a);
            query.push(m.len() as u8);
            query.extend(m);
        }
        let mut raw = vec![0x0a, query.len() as u8];
        raw.extend(query);
        let body = snappy(&raw);
        let req = ReadRequest::decode_body(&body).unwrap();
        assert!(req.accepts_samples());
        let q = &req.queries[0];
        assert_eq!((q.start_timestamp_ms, q.end_timestamp_ms), (1000, 2000));
        assert_eq!(q.matchers[1].r#type, MatchType::Re as i32);
        assert_eq!(q.matchers[1].value, "a.*");
        assert_eq!(ReadRequest::decode_body(&req.encode_body()).unwrap(), req);
        let streamed_only = ReadRequest {
            queries: vec![],
            accepted_response_types: vec![ResponseType::StreamedXorChunks as i32],
        };
        assert!(!streamed_only.accepts_samples());
    }
}
