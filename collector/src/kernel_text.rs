//! Parsers for the kernel's text files (procfs and cgroup interface files): numbers, lines,
//! fields and `key value` files, straight from the read buffer. They never allocate, and
//! a malformed value is `None` (or `false`), never a guess.

/// Parses an unsigned decimal, ignoring surrounding ASCII whitespace.
pub fn parse_u64(b: &[u8]) -> Option<u64> {
    let b = b.trim_ascii();
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

/// Parses a signed decimal, ignoring surrounding ASCII whitespace.
pub fn parse_i64(b: &[u8]) -> Option<i64> {
    let b = b.trim_ascii();
    match b.first() {
        Some(b'-') => parse_u64(&b[1..])
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        _ => parse_u64(b).and_then(|v| i64::try_from(v).ok()),
    }
}

/// Parses a float (e.g. a load average), ignoring surrounding whitespace.
pub fn parse_f64(b: &[u8]) -> Option<f64> {
    std::str::from_utf8(b.trim_ascii()).ok()?.parse().ok()
}

/// Lines of a buffer, without their newline; a final line without newline counts.
pub fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    buf.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

/// Splits `key value` at the first run of spaces.
pub fn key_value(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = line.iter().position(|&b| b == b' ')?;
    Some((&line[..i], line[i + 1..].trim_ascii()))
}

/// Whitespace-separated fields of a line.
pub fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
}

/// Finds each wanted key of a flat `key value` file (cpu.stat, memory.stat, memory.events)
/// and stores its value; keys not present stay `None`. Returns false if a wanted key's value
/// is not a number. Callers treat a missing required key as an error, so a truncated file
/// yields nothing rather than a partial answer.
pub fn scan_keys(buf: &[u8], want: &mut [(&[u8], Option<u64>)]) -> bool {
    for (_, v) in want.iter_mut() {
        *v = None;
    }
    let mut missing = want.len();
    for line in lines(buf) {
        let Some((k, v)) = key_value(line) else {
            continue;
        };
        if let Some(slot) = want.iter_mut().find(|(w, slot)| *w == k && slot.is_none()) {
            match parse_u64(v) {
                Some(n) => slot.1 = Some(n),
                None => return false,
            }
            missing -= 1;
            if missing == 0 {
                break; // the rest of the file holds nothing we read
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b" 123\n"), Some(123));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_i64(b"-1\n"), Some(-1));
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_f64(b"0.26"), Some(0.26));
    }

    #[test]
    fn scan_keys_reports_missing_and_malformed() {
        let mut want: [(&[u8], Option<u64>); 2] = [(b"usage_usec", None), (b"user_usec", None)];
        assert!(scan_keys(
            b"usage_usec 10\nuser_usec 4\nsystem_usec 6\n",
            &mut want
        ));
        assert_eq!((want[0].1, want[1].1), (Some(10), Some(4)));
        assert!(scan_keys(b"usage_usec 10\nuser_u", &mut want));
        assert_eq!((want[0].1, want[1].1), (Some(10), None));
        assert!(!scan_keys(b"usage_usec 1x0\nuser_usec 4\n", &mut want));
    }
}
