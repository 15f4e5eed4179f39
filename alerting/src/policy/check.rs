//! Validation helpers every kind of policy file uses: URLs, regular expressions, PromQL,
//! duration bounds, and PromQL's duration syntax for the subqueries policies compile to.
//!
//! It promises that each check's message says what was given and what was expected.

use std::path::Path;
use std::time::Duration;

use regex::Regex;
use telltale_model::calendar::{DAY_MS, HOUR_MS, MINUTE_MS};

use crate::policy::error::{invalid, Result};

/// `url` without its trailing `/` if it is an http(s) URL.
pub(super) fn check_url(file: &Path, what: &str, key: &'static str, url: &str) -> Result<String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.trim_end_matches('/').to_owned())
    } else {
        Err(invalid(
            file,
            what.to_owned(),
            key,
            format!("{url:?} is not an http(s) URL"),
        ))
    }
}

/// `re` matching whole values only.
pub(super) fn anchored(re: &str) -> std::result::Result<Regex, String> {
    Regex::new(&format!("^(?:{re})$"))
        .map_err(|e| format!("{re:?} is not a regular expression: {e}"))
}

/// Whether `expr` parses as PromQL.
pub(super) fn check_promql(expr: &str) -> std::result::Result<(), String> {
    promql_parser::parser::parse(expr)
        .map(|_| ())
        .map_err(|e| format!("{expr:?} is not valid PromQL: {e}"))
}

/// The longest duration a policy or rule may give (a year): beyond it, time arithmetic in
/// milliseconds would be meaningless.
pub(super) fn bounded(d: Duration) -> std::result::Result<Duration, String> {
    if d > Duration::from_millis(366 * DAY_MS as u64) {
        Err(format!(
            "{} is longer than a year",
            humantime::format_duration(d)
        ))
    } else {
        Ok(d)
    }
}

/// The step of a policy's subquery: about four points per period, 15 s to 5 m.
pub(super) fn resolution(period: Duration) -> Duration {
    (period / 4).clamp(Duration::from_secs(15), Duration::from_secs(300))
}

/// `d` in PromQL's duration syntax (`1h30m`, `15s`, `1500ms`).
pub fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut rest = ms;
    let mut out = String::new();
    for (unit, size) in [("d", DAY_MS), ("h", HOUR_MS), ("m", MINUTE_MS), ("s", 1000)] {
        let size = size as u128;
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}
