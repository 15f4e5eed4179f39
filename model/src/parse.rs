//! Reading the text exposition format back: sample lines split into their series key (the
//! bytes of `name{labels}` exactly as written) and value, and a key split into labels.
//!
//! The shipper keys series by those bytes: a collector writes the same series the same way
//! every cycle, so the key is a cheap, exact identity without building labels per sample.

/// A malformed line, with where it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Calls `f(key, value, timestamp)` for each sample line of `text`, skipping comments and
/// blank lines. `key` is `name` or `name{...}` as written; timestamps are milliseconds
/// (the Prometheus text format). Stops at the first malformed line.
pub fn for_each_sample<'a>(
    text: &'a [u8],
    mut f: impl FnMut(&'a [u8], f64, Option<i64>),
) -> Result<(), ParseError> {
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let err = |message: String| ParseError {
            line: i + 1,
            message,
        };
        if let Some((key, value, ts)) = parse_line(line).map_err(err)? {
            let ts = match ts {
                None => None,
                Some(t) => Some(
                    std::str::from_utf8(t)
                        .ok()
                        .and_then(|t| t.parse::<i64>().ok())
                        .ok_or_else(|| {
                            err(format!(
                                "timestamp {:?} is not an integer",
                                String::from_utf8_lossy(t)
                            ))
                        })?,
                ),
            };
            f(key, value, ts);
        }
    }
    Ok(())
}

/// One line: `None` for a comment or blank line, else the series key, the value and the
/// timestamp token as written (milliseconds in the Prometheus text format, seconds in
/// OpenMetrics).
#[allow(clippy::type_complexity)]
pub fn parse_line(line: &[u8]) -> Result<Option<(&[u8], f64, Option<&[u8]>)>, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() || line[0] == b'#' {
        return Ok(None);
    }
    let end = key_end(line)?;
    let (key, rest) = line.split_at(end);
    let mut fields = rest
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|s| !s.is_empty());
    let value = fields
        .next()
        .ok_or_else(|| "no value after the series".to_string())?;
    let value = parse_value(value)
        .ok_or_else(|| format!("value {:?} is not a number", String::from_utf8_lossy(value)))?;
    let ts = fields.next();
    if fields.next().is_some() {
        return Err("unexpected text after the timestamp".into());
    }
    Ok(Some((key, value, ts)))
}

/// A value as the text format writes it (`NaN`, `+Inf`, `-Inf` included).
pub fn parse_value(v: &[u8]) -> Option<f64> {
    match v {
        b"NaN" => Some(f64::NAN),
        b"+Inf" | b"Inf" => Some(f64::INFINITY),
        b"-Inf" => Some(f64::NEG_INFINITY),
        _ => std::str::from_utf8(v).ok()?.parse().ok(),
    }
}

/// Where the series key of `line` ends: after the name, or after the closing `}`.
fn key_end(line: &[u8]) -> Result<usize, String> {
    let name_end = line
        .iter()
        .position(|&b| b == b'{' || b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    if name_end == 0 {
        return Err("no metric name".into());
    }
    if line.get(name_end) != Some(&b'{') {
        return Ok(name_end);
    }
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, &b) in line.iter().enumerate().skip(name_end + 1) {
        match (in_quotes, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_quotes = false,
            (false, _, b'"') => in_quotes = true,
            (false, _, b'}') => return Ok(i + 1),
            _ => {}
        }
    }
    Err("unterminated label set (no closing '}')".into())
}

/// The labels of a series key, `__name__` first then as written, values unescaped.
pub fn key_labels(key: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(key).map_err(|_| "series is not UTF-8".to_string())?;
    let (name, rest) = match text.find('{') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    let mut labels = vec![("__name__".to_string(), name.to_string())];
    let mut rest = rest.strip_suffix('}').unwrap_or(rest);
    while !rest.is_empty() {
        let eq = rest
            .find("=\"")
            .ok_or_else(|| format!("label without =\"value\" in {text:?}"))?;
        let lname = rest[..eq].trim_start_matches(',').trim();
        if lname.is_empty() {
            return Err(format!("empty label name in {text:?}"));
        }
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => break,
                },
                '"' => {
                    end = Some(eq + 2 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| format!("unterminated label value in {text:?}"))?;
        labels.push((lname.to_string(), value));
        rest = rest[end..].trim_start_matches(',');
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_keys() {
        let text = b"# HELP x y\n# TYPE x gauge\nx 1\nx{a=\"b c}\",d=\"e\\\"\\n\\\\\"} -Inf 17\n\nup NaN\n";
        let mut got = Vec::new();
        for_each_sample(text, |k, v, t| got.push((k.to_vec(), v, t))).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, b"x");
        assert_eq!(got[1].0, b"x{a=\"b c}\",d=\"e\\\"\\n\\\\\"}");
        assert_eq!(got[1].1, f64::NEG_INFINITY);
        assert_eq!(got[1].2, Some(17));
        assert!(got[2].1.is_nan());
        let labels = key_labels(&got[1].0).unwrap();
        assert_eq!(
            labels,
            vec![
                ("__name__".into(), "x".into()),
                ("a".into(), "b c}".into()),
                ("d".into(), "e\"\n\\".into())
            ]
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let e = for_each_sample(b"ok 1\nx{a=\"b\" 1\n", |_, _, _| {}).unwrap_err();
        assert_eq!(e.line, 2);
        let e = for_each_sample(b"x one\n", |_, _, _| {}).unwrap_err();
        assert!(e.message.contains("\"one\""), "{e}");
        assert!(for_each_sample(b"x\n", |_, _, _| {}).is_err());
    }
}
