//! The part of Go's `text/template` that alert labels and annotations use, with
//! Prometheus's functions: `{{ $labels.name }}`, `{{ $value }}`, `{{ .Labels.name }}`,
//! `{{ .Value }}`, pipes into `humanize`, `humanizePercentage`, `humanizeDuration`, and
//! `printf "<format>" $value`.
//!
//! A template is checked when the rules load ([`Template::parse`]), so anything outside
//! this subset is refused with the construct named instead of rendering wrong text later.
//! Values print as Go prints a float64 (`1.234567e+06`, `0.5`, `+Inf`).

use std::collections::BTreeMap;

/// A template that could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("template {text:?}: {message}")]
pub struct Error {
    /// The template.
    pub text: String,
    /// What is wrong with it.
    pub message: String,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action { arg: Arg, pipes: Vec<Func> },
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Value,
    Label(String),
    Labels,
}

#[derive(Debug, Clone, PartialEq)]
enum Func {
    Humanize,
    Percentage,
    Duration,
    Printf(String),
}

impl Template {
    /// Parses `text`; text without `{{` is a literal.
    pub fn parse(text: &str) -> Result<Template, Error> {
        let err = |message: String| Error {
            text: text.to_owned(),
            message,
        };
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| err("unclosed action: `{{` without `}}`".into()))?;
            let action = after[..close]
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            parts.push(parse_action(action).map_err(err)?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template(parts))
    }

    /// Renders with the alert's labels and value. A label that is not set renders as Go's
    /// missing map key does in Prometheus: `<no value>`.
    pub fn render(&self, labels: &BTreeMap<String, String>, value: f64) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Action { arg, pipes } => {
                    let mut text = match arg {
                        Arg::Value => go_float(value, None),
                        Arg::Label(name) => labels
                            .get(name)
                            .cloned()
                            .unwrap_or_else(|| "<no value>".into()),
                        Arg::Labels => {
                            let pairs: Vec<String> =
                                labels.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                            format!("map[{}]", pairs.join(" "))
                        }
                    };
                    for f in pipes {
                        // Functions take the number the argument holds.
                        let v = match arg {
                            Arg::Value => value,
                            _ => text.parse().unwrap_or(f64::NAN),
                        };
                        text = match f {
                            Func::Humanize => humanize(v),
                            Func::Percentage => format!("{}%", go_float(v * 100.0, Some(4))),
                            Func::Duration => humanize_duration(v),
                            Func::Printf(fmt) => printf(fmt, v),
                        };
                    }
                    out.push_str(&text);
                }
            }
        }
        out
    }
}

fn parse_action(action: &str) -> Result<Part, String> {
    let mut stages = action.split('|').map(str::trim);
    let first = stages.next().unwrap_or_default();
    let (arg, mut pipes) = if let Some(fmt) = first.strip_prefix("printf ") {
        let (fmt, arg) = split_printf(fmt.trim())?;
        (arg, vec![Func::Printf(fmt)])
    } else {
        (parse_arg(first)?, Vec::new())
    };
    for stage in stages {
        pipes.push(match stage {
            "humanize" => Func::Humanize,
            "humanizePercentage" => Func::Percentage,
            "humanizeDuration" => Func::Duration,
            s if s.starts_with("printf ") => {
                let fmt = s["printf ".len()..].trim();
                let (fmt, rest) = quoted(fmt)?;
                if !rest.trim().is_empty() {
                    return Err(format!("printf in a pipe takes only a format, got {s:?}"));
                }
                check_format(&fmt)?;
                Func::Printf(fmt)
            }
            other => return Err(format!("function {other:?} is not supported (supported: humanize, humanizePercentage, humanizeDuration, printf)")),
        });
    }
    Ok(Part::Action { arg, pipes })
}

fn parse_arg(s: &str) -> Result<Arg, String> {
    match s {
        "$value" | ".Value" => Ok(Arg::Value),
        "$labels" | ".Labels" => Ok(Arg::Labels),
        _ => {
            let name = s
                .strip_prefix("$labels.")
                .or_else(|| s.strip_prefix(".Labels."))
                .ok_or_else(|| {
                    format!("{s:?} is not supported (use $labels.<name>, $value or .Value)")
                })?;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("{s:?} does not name a label"));
            }
            Ok(Arg::Label(name.to_owned()))
        }
    }
}

fn split_printf(s: &str) -> Result<(String, Arg), String> {
    let (fmt, rest) = quoted(s)?;
    check_format(&fmt)?;
    Ok((fmt, parse_arg(rest.trim())?))
}

/// The leading Go string literal of `s` and what follows it.
fn quoted(s: &str) -> Result<(String, &str), String> {
    let body = s
        .strip_prefix('"')
        .ok_or_else(|| format!("printf needs a quoted format, got {s:?}"))?;
    let end = body
        .find('"')
        .ok_or_else(|| format!("unterminated string in {s:?}"))?;
    Ok((body[..end].to_owned(), &body[end + 1..]))
}

/// Accepts formats with exactly one float verb: `%f`, `%.Nf`, `%g`, `%.Ng`, `%e`, `%v`, `%d`
/// (`%d` of a float prints as Go does: `%!d(float64=…)`, so it is refused here).
fn check_format(fmt: &str) -> Result<(), String> {
    let verbs: Vec<_> = fmt_verbs(fmt).collect();
    match verbs.as_slice() {
        [Ok(_)] => Ok(()),
        [] => Err(format!("printf format {fmt:?} has no verb for the value")),
        [Err(e)] => Err(e.clone()),
        _ => Err(format!(
            "printf format {fmt:?} has more than one verb; only one value is passed"
        )),
    }
}

/// The most decimals a printf verb may ask for (Rust's formatter panics past 65,535).
const MAX_PRECISION: usize = 100;

#[derive(Debug, Clone, Copy)]
struct Verb {
    start: usize,
    end: usize,
    precision: Option<usize>,
    kind: char,
}

fn fmt_verbs(fmt: &str) -> impl Iterator<Item = Result<Verb, String>> + '_ {
    let bytes = fmt.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            if bytes[i] != b'%' {
                i += 1;
                continue;
            }
            let start = i;
            i += 1;
            if bytes.get(i) == Some(&b'%') {
                i += 1;
                continue;
            }
            let mut precision = None;
            if bytes.get(i) == Some(&b'.') {
                i += 1;
                let digits = i;
                while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                precision = Some(fmt[digits..i].parse().unwrap_or(usize::MAX));
            }
            let kind = bytes.get(i).map(|&b| b as char).unwrap_or('?');
            i += 1;
            if precision.is_some_and(|p| p > MAX_PRECISION) {
                return Some(Err(format!(
                    "printf precision in {fmt:?} is above {MAX_PRECISION}"
                )));
            }
            return Some(if matches!(kind, 'f' | 'g' | 'e' | 'v') {
                Ok(Verb {
                    start,
                    end: i,
                    precision,
                    kind,
                })
            } else {
                Err(format!(
                    "printf verb %{kind} in {fmt:?} is not supported for a value (use %f, %.2f, %g, %e or %v)"
                ))
            });
        }
        None
    })
}

fn printf(fmt: &str, v: f64) -> String {
    let mut out = String::new();
    let mut last = 0;
    for verb in fmt_verbs(fmt).flatten() {
        out.push_str(&fmt[last..verb.start].replace("%%", "%"));
        out.push_str(&match verb.kind {
            'f' => go_fixed(v, verb.precision.unwrap_or(6)),
            'e' => go_exp(v, verb.precision.unwrap_or(6)),
            'g' => go_float(v, verb.precision),
            _ => go_float(v, None),
        });
        last = verb.end;
    }
    out.push_str(&fmt[last..].replace("%%", "%"));
    out
}

/// Go's `%g` (`prec` significant digits, `None` = shortest, as `%v` prints a float64).
pub fn go_float(v: f64, prec: Option<usize>) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let (neg, digits, exp) = decimal(v, prec);
    let nd = digits.len() as i32;
    let dp = exp + 1;
    let mut p = prec.map(|p| p.max(1) as i32).unwrap_or(nd);
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if prec.is_none() {
        eprec = 6;
    }
    let sign = if neg { "-" } else { "" };
    if exp < -4 || exp >= eprec {
        if p > nd {
            p = nd;
        }
        let mut m = digits[..1].to_string();
        if p > 1 {
            m.push('.');
            m.push_str(&digits[1..p as usize]);
        }
        return format!(
            "{sign}{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
    if p > dp {
        p = nd;
    }
    let decimals = (p - dp).max(0) as usize;
    format!("{sign}{}", fixed_from(&digits, dp, decimals))
}

fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

/// Sign, significant digits without trailing zeros, and decimal exponent of `v` rounded
/// to `prec` significant digits (shortest round-trip digits for `None`).
fn decimal(v: f64, prec: Option<usize>) -> (bool, String, i32) {
    if v == 0.0 {
        return (v.is_sign_negative(), "0".into(), 0);
    }
    let s = match prec {
        Some(p) => format!("{:.*e}", p.max(1) - 1, v.abs()),
        None => format!("{:e}", v.abs()),
    };
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mut digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (v < 0.0, digits, exp.parse().unwrap_or(0))
}

/// `digits` (with the decimal point after `dp` of them) printed with `decimals` places.
fn fixed_from(digits: &str, dp: i32, decimals: usize) -> String {
    let mut int = String::new();
    let mut frac = String::new();
    for i in 0..dp.max(0) {
        int.push(
            digits
                .as_bytes()
                .get(i as usize)
                .map_or('0', |&b| b as char),
        );
    }
    if int.is_empty() {
        int.push('0');
    }
    for i in 0..decimals as i32 {
        let at = dp + i;
        frac.push(if at < 0 {
            '0'
        } else {
            digits
                .as_bytes()
                .get(at as usize)
                .map_or('0', |&b| b as char)
        });
    }
    if decimals == 0 {
        int
    } else {
        format!("{int}.{frac}")
    }
}

fn go_fixed(v: f64, decimals: usize) -> String {
    special(v).unwrap_or_else(|| format!("{v:.decimals$}"))
}

fn go_exp(v: f64, decimals: usize) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let s = format!("{v:.decimals$e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

/// Prometheus's `humanize`: SI prefixes, four significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_float(v, Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_float(v, Some(4)))
}

/// Prometheus's `humanizeDuration` of seconds: `1d 2h 3m 4s`, `1.5s`, `20ms`.
pub fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_float(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", go_float(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, d / 60 % 60, d / 3600 % 24, d / 86400);
        return if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", go_float(v, Some(4)))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_float(v, Some(4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> BTreeMap<String, String> {
        [("pod", "web-1"), ("namespace", "shop")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn floats_print_as_go_prints_them() {
        for (v, want) in [
            (0.5, "0.5"),
            (100.0, "100"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(go_float(v, None), want, "{v}");
        }
        for (v, want) in [
            (100.0, "100"),
            (0.5, "0.5"),
            (12344.0, "1.234e+04"),
            (1.23456, "1.235"),
            (0.000123456, "0.0001235"),
        ] {
            assert_eq!(go_float(v, Some(4)), want, "%.4g of {v}");
        }
    }

    #[test]
    fn prometheus_functions() {
        assert_eq!(humanize(1234.0), "1.234k");
        assert_eq!(humanize(0.0012), "1.2m");
        assert_eq!(humanize(5e9), "5G");
        assert_eq!(humanize(0.0), "0");
        // Values promtool 2.42 printed (tests/alerting/rules), ties to even included.
        for (v, want) in [
            (999_999.0, "1000k"),
            (999.95, "1000"),
            (2_345_678_901.0, "2.346G"),
            (999_999_999_999.0, "1000G"),
            (0.0001234, "123.4u"),
            (-0.25, "-250m"),
            (1234.5, "1.234k"),
        ] {
            assert_eq!(humanize(v), want, "humanize {v}");
        }
        assert_eq!(go_float(12345.0, Some(4)), "1.234e+04");
        assert_eq!(printf("%.2f", 0.125), "0.12");
        assert_eq!(printf("%.2f", 0.375), "0.38");
        assert_eq!(printf("%.2f", 2.675), "2.67");
        assert_eq!(
            Template::parse("{{ $value | humanizePercentage }}")
                .unwrap()
                .render(&labels(), 1234.5),
            "1.234e+05%"
        );
        assert_eq!(humanize_duration(3725.0), "1h 2m 5s");
        assert_eq!(humanize_duration(90061.0), "1d 1h 1m 1s");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(0.02), "20ms");
        let t = Template::parse("{{ $value | humanizePercentage }}").unwrap();
        assert_eq!(t.render(&labels(), 0.8512), "85.12%");
    }

    #[test]
    fn renders_labels_values_and_printf() {
        let t = Template::parse(
            "Pod {{ $labels.namespace }}/{{ .Labels.pod }} at {{ printf \"%.2f\" $value }} ({{ $value }}), {{ $labels.missing }}",
        )
        .unwrap();
        assert_eq!(
            t.render(&labels(), 0.91234),
            "Pod shop/web-1 at 0.91 (0.91234), <no value>"
        );
        let t = Template::parse("{{$value|printf \"%.1f%%\"}}").unwrap();
        assert_eq!(t.render(&labels(), 12.34), "12.3%");
    }

    #[test]
    fn refuses_what_it_cannot_render() {
        for (text, says) in [
            ("{{ $value", "unclosed"),
            ("{{ range $labels }}", "not supported"),
            ("{{ $value | title }}", "\"title\" is not supported"),
            ("{{ printf \"%d\" $value }}", "%d"),
            ("{{ printf \"%.2f %.2f\" $value }}", "more than one verb"),
            ("{{ $labels.a-b }}", "does not name a label"),
            ("{{ printf \"%.70000f\" $value }}", "precision"),
        ] {
            let e = Template::parse(text).unwrap_err();
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
    }
}
