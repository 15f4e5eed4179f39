//! How a number is written as text, as Prometheus writes it (Go's
//! `strconv.FormatFloat(v, 'f', -1, 64)`): in the API's answers and in the label
//! `count_values` makes. One spelling, so both agree with Prometheus and each other.

/// A value as Prometheus writes it: Go's shortest form, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_go_writes_them() {
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(-0.0), "-0");
    }
}
