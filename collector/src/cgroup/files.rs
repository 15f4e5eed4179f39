//! Reading a cgroup's interface files, shared by v1 and v2: a reader that turns a failed or
//! malformed file into one `cgroup` error and no value, and the value parsers both versions
//! use (limits, `cgroup.procs`, block device numbers).

use std::path::Path;

use super::stats::Io;
use crate::cycle_errors::CycleErrors;
use crate::kept_files::{KeptFile, ReadBuf, Shape};
use crate::kernel_text::{lines, parse_u64};

/// Reads cgroup files into the cycle's shared buffer and records failures.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a mut ReadBuf,
    pub(super) errors: &'a mut CycleErrors,
}

impl Reader<'_> {
    /// Reads `<root>/<rel>/<name>` and parses it; a read or parse failure records one
    /// error and yields `None`.
    pub(super) fn file<T>(
        &mut self,
        file: &mut KeptFile,
        (root, rel, name): (&Path, &str, &str),
        shape: Shape,
        parse: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Option<T> {
        let rel = rel.trim_start_matches('/');
        match file.read(|| root.join(rel).join(name), shape, self.buf) {
            Ok(b) => {
                let v = parse(b);
                if v.is_none() {
                    self.errors.record(
                        "cgroup",
                        format_args!("{}/{rel}/{name}: malformed", root.display()),
                    );
                }
                v
            }
            Err(e) => {
                self.errors.record(
                    "cgroup",
                    format_args!("{}/{rel}/{name}: {e}", root.display()),
                );
                None
            }
        }
    }
}

/// A limit of 2^62 bytes or more is the kernel's "unlimited" (v1 writes a page-aligned
/// i64::MAX).
pub(super) fn limit_bytes(v: u64) -> f64 {
    if v >= 1 << 62 {
        0.0
    } else {
        v as f64
    }
}

pub(super) fn count_procs(b: &[u8], first_pid: &mut Option<u32>) -> Option<f64> {
    let mut n = 0u32;
    for l in lines(b) {
        let pid = parse_u64(l)?;
        if n == 0 {
            *first_pid = u32::try_from(pid).ok();
        }
        n += 1;
    }
    Some(n as f64)
}

pub(super) fn io_entry(io: &mut Vec<Io>, major: u32, minor: u32) -> &mut Io {
    let i = match io.iter().position(|e| e.major == major && e.minor == minor) {
        Some(i) => i,
        None => {
            io.push(Io {
                major,
                minor,
                ..Default::default()
            });
            io.len() - 1
        }
    };
    &mut io[i]
}

pub(super) fn parse_dev(s: &[u8]) -> Option<(u32, u32)> {
    let colon = s.iter().position(|&b| b == b':')?;
    Some((
        parse_u64(&s[..colon])? as u32,
        parse_u64(&s[colon + 1..])? as u32,
    ))
}
