//! The calendar every role shares: millisecond spans of a minute, hour and day, and UTC
//! day numbers (days since 1970-01-01) to and from dates.
//!
//! Day numbers name the data directory's day partitions (`YYYY-MM-DD`), bound retention,
//! window billing by hour and month, and answer PromQL's date functions; all of them use
//! this one proleptic Gregorian calendar (Howard Hinnant's `civil_from_days` and
//! `days_from_civil`), so a day named in one place is the same day everywhere.

/// Milliseconds in a minute.
pub const MINUTE_MS: i64 = 60_000;
/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;
/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The day number of a timestamp (ms since the epoch), flooring times before 1970.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// (year, month 1–12, day of month 1–31) of a day number.
pub fn civil(day: i64) -> (i64, i64, i64) {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The day number of a date (month 1–12, day 1–31; not checked against the month).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` of a day number.
pub fn day_name(day: i64) -> String {
    let (y, m, d) = civil(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number of `YYYY-MM-DD`; `None` for anything else.
pub fn parse_day(s: &str) -> Option<i64> {
    let mut it = s.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if it.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// The first millisecond of the UTC month holding `ms`.
pub fn month_start(ms: i64) -> i64 {
    let (y, m, _) = civil(day_of(ms));
    days_from_civil(y, m, 1) * DAY_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names_and_numbers_agree() {
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(day_name(-1), "1969-12-31");
        assert_eq!(day_name(19_723), "2024-01-01");
        assert_eq!(day_name(20_513), "2026-03-01");
        assert_eq!(day_name(19_782), "2024-02-29");
        for day in (-700_000..2_000_000).step_by(97) {
            assert_eq!(parse_day(&day_name(day)), Some(day), "day {day}");
            let (y, m, d) = civil(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(parse_day("2024-13-01"), None);
        assert_eq!(parse_day("2024-1"), None);
        assert_eq!(parse_day("day=2024-01-01"), None);
    }

    #[test]
    fn months_start_on_their_first_day() {
        let leap_day = parse_day("2024-02-29").unwrap_or_default() * DAY_MS + 5 * HOUR_MS;
        assert_eq!(
            month_start(leap_day),
            parse_day("2024-02-01").unwrap_or_default() * DAY_MS
        );
        assert_eq!(day_of(-1), -1);
    }
}
