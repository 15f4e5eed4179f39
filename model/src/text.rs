//! The Prometheus text exposition format 0.0.4, written without per-sample allocation.

use crate::labels::LabelSet;
use crate::sink::{MetricKind, Sink};

/// Content type of the text format, for `Content-Type` headers.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where one sample line's series key (`name{labels}`) is in the output, and its value:
/// what a reader of the text would parse back, without parsing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleAt {
    /// First byte of the key.
    pub start: u32,
    /// One past its last byte.
    pub end: u32,
    /// The value written on the line.
    pub value: f64,
}

/// Writes families and samples into one growing buffer.
///
/// A family header is kept only if at least one sample follows it, so sources may announce
/// every family they know without checking first whether they have data for it.
#[derive(Debug, Default)]
pub struct TextEncoder {
    out: Vec<u8>,
    /// Where the current family's header starts, while it has no samples yet.
    pending_header: Option<usize>,
    /// Offset and length of the current family's name inside `out` (in its HELP line).
    name: (usize, usize),
    samples: usize,
    families: usize,
    /// With [`TextEncoder::index_samples`]: every sample line's key and value.
    index: Option<Vec<SampleAt>>,
}

impl TextEncoder {
    /// An encoder whose buffer starts with `capacity` bytes reserved.
    pub fn with_capacity(capacity: usize) -> Self {
        TextEncoder {
            out: Vec::with_capacity(capacity),
            ..Default::default()
        }
    }

    /// An encoder writing into `buffer` (emptied first), so a caller can hand back the
    /// allocation of an earlier output whose pages are already mapped.
    pub fn with_buffer(mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        TextEncoder {
            out: buffer,
            ..Default::default()
        }
    }

    /// Also records where each sample's key is and its value ([`TextEncoder::take_index`]),
    /// for a consumer that would otherwise parse the text back.
    pub fn index_samples(&mut self) {
        self.index.get_or_insert_with(Vec::new);
    }

    /// The samples recorded since `index_samples` (empty without it).
    pub fn take_index(&mut self) -> Vec<SampleAt> {
        self.index.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Empties the buffer, keeping its allocation.
    pub fn clear(&mut self) {
        if let Some(i) = &mut self.index {
            i.clear();
        }
        self.out.clear();
        self.pending_header = None;
        self.name = (0, 0);
        self.samples = 0;
        self.families = 0;
    }

    /// Appends already-encoded text (e.g. another registry's output) after the last family.
    pub fn append_raw(&mut self, text: &[u8]) {
        self.drop_empty_header();
        self.out.extend_from_slice(text);
    }

    /// Samples written since the last `clear`.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Families with at least one sample written since the last `clear`.
    pub fn families(&self) -> usize {
        self.families
    }

    /// The encoded text so far.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.pending_header.unwrap_or(self.out.len());
        &self.out[..end]
    }

    /// Takes the encoded text, leaving the encoder empty.
    pub fn take(&mut self) -> Vec<u8> {
        self.drop_empty_header();
        let out = std::mem::take(&mut self.out);
        self.clear();
        out
    }

    fn drop_empty_header(&mut self) {
        if let Some(start) = self.pending_header.take() {
            self.out.truncate(start);
        }
    }
}

impl Sink for TextEncoder {
    fn family(&mut self, name: &str, help: &str, kind: MetricKind) {
        self.drop_empty_header();
        self.pending_header = Some(self.out.len());
        self.out.extend_from_slice(b"# HELP ");
        self.name = (self.out.len(), name.len());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b' ');
        escape_help(&mut self.out, help);
        self.out.extend_from_slice(b"\n# TYPE ");
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(kind.as_str().as_bytes());
        self.out.push(b'\n');
    }

    fn sample(&mut self, labels: &LabelSet, extra: &[(&str, &str)], value: f64) {
        if self.pending_header.take().is_some() {
            self.families += 1;
        }
        let key_start = self.out.len();
        let (start, len) = self.name;
        self.out.extend_from_within(start..start + len);
        let has_labels = !labels.is_empty() || !extra.is_empty();
        if has_labels {
            self.out.push(b'{');
            self.out.extend_from_slice(labels.text().as_bytes());
            let mut first = labels.is_empty();
            for (k, v) in extra {
                if !first {
                    self.out.push(b',');
                }
                first = false;
                self.out.extend_from_slice(k.as_bytes());
                self.out.extend_from_slice(b"=\"");
                escape_value(&mut self.out, v);
                self.out.push(b'"');
            }
            self.out.push(b'}');
        }
        if let Some(index) = &mut self.index {
            index.push(SampleAt {
                start: key_start as u32,
                end: self.out.len() as u32,
                value,
            });
        }
        self.out.push(b' ');
        write_value(&mut self.out, value);
        self.out.push(b'\n');
        self.samples += 1;
    }
}

fn escape_help(out: &mut Vec<u8>, help: &str) {
    for &b in help.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
}

fn escape_value(out: &mut Vec<u8>, v: &str) {
    for &b in v.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
}

/// Writes a sample value as Prometheus parses it: integers without a fraction, other
/// floats in shortest round-trip form, `NaN`, `+Inf`, `-Inf`.
pub fn write_value(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let mut b = itoa::Buffer::new();
        out.extend_from_slice(b.format(v as i64).as_bytes());
    } else {
        let mut b = ryu::Buffer::new();
        out.extend_from_slice(b.format_finite(v).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_names_what_parsing_the_text_would_give() {
        let mut e = TextEncoder::default();
        e.index_samples();
        e.family("empty", "h", MetricKind::Gauge);
        e.family("x", "h", MetricKind::Counter);
        let l = LabelSet::new([("a", "b\"c")]);
        e.sample(&l, &[("cpu", "1")], 0.1);
        e.sample(&LabelSet::default(), &[], f64::INFINITY);
        let index = e.take_index();
        let text = e.take();
        let mut parsed = Vec::new();
        crate::parse::for_each_sample(&text, |k, v, _| parsed.push((k.to_vec(), v))).unwrap();
        let from_index: Vec<(Vec<u8>, f64)> = index
            .iter()
            .map(|s| (text[s.start as usize..s.end as usize].to_vec(), s.value))
            .collect();
        assert_eq!(from_index, parsed);
    }

    #[test]
    fn families_without_samples_leave_no_trace() {
        let l = LabelSet::new([("node", "n1")]);
        let mut e = TextEncoder::default();
        e.family("empty_one", "never sampled", MetricKind::Gauge);
        e.family("up_total", "a \\ help\nline", MetricKind::Counter);
        e.sample(&l, &[("cpu", "0")], 1.0);
        e.sample(&LabelSet::default(), &[], 0.25);
        e.family("trailing_empty", "x", MetricKind::Gauge);
        let text = String::from_utf8(e.take()).unwrap();
        assert_eq!(
            text,
            "# HELP up_total a \\\\ help\\nline\n# TYPE up_total counter\n\
             up_total{node=\"n1\",cpu=\"0\"} 1\nup_total 0.25\n"
        );
    }

    #[test]
    fn values_parse_back_exactly() {
        let cases = [
            0.0,
            -3.0,
            1e15,
            22.691103,
            f64::MAX,
            1e-300,
            123456789012345.0,
        ];
        for v in cases {
            let mut out = Vec::new();
            write_value(&mut out, v);
            let s = std::str::from_utf8(&out).unwrap();
            assert_eq!(s.parse::<f64>().unwrap(), v, "{s}");
        }
        for (v, want) in [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            let mut out = Vec::new();
            write_value(&mut out, v);
            assert_eq!(out, want.as_bytes());
        }
    }

    #[test]
    fn extra_labels_are_escaped() {
        let mut e = TextEncoder::default();
        e.family("m", "h", MetricKind::Gauge);
        e.sample(&LabelSet::default(), &[("mountpoint", "/a\"b")], 1.0);
        assert_eq!(
            e.as_bytes(),
            b"# HELP m h\n# TYPE m gauge\nm{mountpoint=\"/a\\\"b\"} 1\n"
        );
        assert_eq!((e.samples(), e.families()), (1, 1));
    }
}
