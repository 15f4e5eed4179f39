//! Kubernetes resource quantities (`100m`, `128Mi`, `1.5G`, `2e3`) as numbers.

/// The value of a quantity in base units (cores, bytes, items), or `None` if malformed.
///
/// Grammar (apimachinery): a signed decimal number followed by a binary suffix (`Ki` … `Ei`),
/// a decimal suffix (`n`, `u`, `m`, ``, `k`, `M`, `G`, `T`, `P`, `E`), or a decimal
/// exponent (`e3`, `E-2`).
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || ((c == '+' || c == '-') && i == 0)))
        .map_or(q.len(), |(i, _)| i);
    let (num, suffix) = q.split_at(split);
    if num.is_empty() || num == "+" || num == "-" {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    // Fractional scales divide (3800m is exactly 3.8: 3800 * 0.001 is not).
    let (mul, div) = match suffix {
        "" => (1.0, 1.0),
        "n" => (1.0, 1e9),
        "u" => (1.0, 1e6),
        "m" => (1.0, 1e3),
        "k" => (1e3, 1.0),
        "M" => (1e6, 1.0),
        "G" => (1e9, 1.0),
        "T" => (1e12, 1.0),
        "P" => (1e15, 1.0),
        "E" => (1e18, 1.0),
        "Ki" => (1024.0, 1.0),
        "Mi" => (1024f64.powi(2), 1.0),
        "Gi" => (1024f64.powi(3), 1.0),
        "Ti" => (1024f64.powi(4), 1.0),
        "Pi" => (1024f64.powi(5), 1.0),
        "Ei" => (1024f64.powi(6), 1.0),
        s => {
            let exp: i32 = s.strip_prefix(['e', 'E'])?.parse().ok()?;
            if exp >= 0 {
                (10f64.powi(exp), 1.0)
            } else {
                (1.0, 10f64.powi(-exp))
            }
        }
    };
    Some(n * mul / div)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn quantities() {
        let cases = [
            ("100m", 0.1),
            ("1", 1.0),
            ("2.5", 2.5),
            ("250m", 0.25),
            ("128Mi", 134_217_728.0),
            ("4Gi", 4_294_967_296.0),
            ("1Ki", 1024.0),
            ("1.5G", 1.5e9),
            ("1k", 1000.0),
            ("2e3", 2000.0),
            ("1E", 1e18),
            ("5E-1", 0.5),
            ("500u", 0.0005),
            ("3800m", 3.8),
            ("1500m", 1.5),
            ("-1", -1.0),
            ("+2", 2.0),
        ];
        for (q, want) in cases {
            let got = parse(q).unwrap_or_else(|| panic!("{q} did not parse"));
            assert!(
                (got - want).abs() <= want.abs() * 1e-12,
                "{q}: {got} != {want}"
            );
        }
        for bad in ["", "m", "1Mb", "1.2.3", "abc", "1e", "1 Gi", "-"] {
            assert_eq!(parse(bad), None, "{bad:?} must not parse");
        }
    }
}
