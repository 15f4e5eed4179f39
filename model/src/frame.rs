//! The record framing of Telltale's append-only logs (the collector's disk queue and the
//! aggregator's WAL): `[len u32 LE][crc32 u32 LE][payload]`, one after another.
//!
//! A reader walks frames from a start offset and stops at the first that is short or
//! whose checksum does not match: everything before it is whole, everything from it on is
//! a torn or corrupt tail to be cut.

/// Bytes before each payload.
pub const HEADER: usize = 8;

/// Appends the frame of `payload` to `out`.
pub fn put(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Walks the frames of `data` from offset `at`: yields (offset of the frame, payload).
/// When it stops, [`Frames::end`] is where the whole frames end and [`Frames::torn`] says
/// why it stopped early, if it did.
#[derive(Debug)]
pub struct Frames<'a> {
    data: &'a [u8],
    at: usize,
    torn: Option<&'static str>,
}

impl<'a> Frames<'a> {
    /// Frames of `data` starting at `at` (after a file's magic, say).
    pub fn new(data: &'a [u8], at: usize) -> Self {
        Frames {
            data,
            at,
            torn: None,
        }
    }

    /// The offset just past the last whole frame read so far.
    pub fn end(&self) -> usize {
        self.at
    }

    /// Why the walk stopped before the end of the data, if it did.
    pub fn torn(&self) -> Option<&'static str> {
        self.torn
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.torn.is_some() || self.at >= self.data.len() {
            return None;
        }
        let at = self.at;
        let Some(h) = self.data.get(at..at + HEADER) else {
            self.torn = Some("short frame header");
            return None;
        };
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let Some(payload) = self.data.get(at + HEADER..at + HEADER + len) else {
            self.torn = Some("short record");
            return None;
        };
        if crc32fast::hash(payload) != crc {
            self.torn = Some("checksum mismatch");
            return None;
        }
        self.at = at + HEADER + len;
        Some((at, payload))
    }
}

impl Frames<'_> {
    /// Marks the frame just returned as unusable (its payload does not decode): the walk
    /// ends before it.
    pub fn reject_last(&mut self, at: usize, why: &'static str) {
        self.at = at;
        self.torn = Some(why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_frames_come_back_and_a_torn_tail_is_found() {
        let mut buf = b"MAGIC".to_vec();
        for p in [&b"one"[..], b"", b"three"] {
            put(&mut buf, p);
        }
        let whole = buf.len();
        let mut f = Frames::new(&buf, 5);
        let got: Vec<&[u8]> = f.by_ref().map(|(_, p)| p).collect();
        assert_eq!(got, vec![&b"one"[..], b"", b"three"]);
        assert_eq!((f.end(), f.torn()), (whole, None));
        for cut in 6..whole {
            let mut f = Frames::new(&buf[..cut], 5);
            let n = f.by_ref().count();
            assert!(n < 3);
            assert!(f.torn().is_some() || f.end() == cut);
        }
        let mut bad = buf.clone();
        bad[5 + HEADER] ^= 1;
        let mut f = Frames::new(&bad, 5);
        assert_eq!(f.by_ref().count(), 0);
        assert_eq!((f.end(), f.torn()), (5, Some("checksum mismatch")));
    }
}
