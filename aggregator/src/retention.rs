//! Retention: whole day partitions older than `--retention` are deleted; nothing within it
//! ever is. Samples older than retention are not taken into the head either (they are
//! counted as dropped), so a late backfill cannot resurrect a deleted day.

use std::path::{Path, PathBuf};
use std::time::Duration;

use telltale_model::time::{to_millis, Clock};
use tracing::{info, warn};

use crate::head::DAY_MS;

/// The oldest timestamp (ms) still within retention at `now`.
pub fn cutoff(clock: &dyn Clock, retention: Duration) -> i64 {
    to_millis(clock.now()) - retention.as_millis() as i64
}

/// Deletes the day partitions under `data_dir` whose every millisecond is before the
/// cutoff; returns them.
pub fn enforce(data_dir: &Path, clock: &dyn Clock, retention: Duration) -> Vec<PathBuf> {
    let cut = cutoff(clock, retention);
    let root = data_dir.join("data");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut gone = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(day) = name.strip_prefix("day=").and_then(parse_day) else {
            continue;
        };
        // The partition ends at the start of the next day.
        if (day + 1) * DAY_MS <= cut {
            let path = e.path();
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    info!(partition = %name, "deleted a partition past retention");
                    gone.push(path);
                }
                Err(err) => {
                    warn!(partition = %name, error = %err, "cannot delete a partition past retention")
                }
            }
        }
    }
    gone.sort();
    gone
}

/// Days since 1970-01-01 of `YYYY-MM-DD`.
pub fn parse_day(s: &str) -> Option<i64> {
    let mut it = s.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if it.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::UNIX_EPOCH;

    use telltale_model::time::MockClock;

    use super::*;
    use crate::head::day_name;

    #[test]
    fn day_names_parse_back() {
        for day in [-1, 0, 19_782, 20_512, 20_513, 30_000] {
            assert_eq!(parse_day(&day_name(day)), Some(day));
        }
        assert_eq!(parse_day("2026-13-01"), None);
        assert_eq!(parse_day("nonsense"), None);
    }

    #[test]
    fn only_days_wholly_past_retention_go() {
        let dir = tempfile::tempdir().unwrap();
        for day in ["2026-08-26", "2026-08-27", "2026-08-28", "2026-11-25"] {
            std::fs::create_dir_all(dir.path().join("data").join(format!("day={day}"))).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("data").join("not-a-partition")).unwrap();
        // 2026-11-25T12:00Z with 90 days: the cutoff is 2026-08-27T12:00Z.
        let noon = parse_day("2026-11-25").unwrap() * DAY_MS + DAY_MS / 2;
        let clock = MockClock::at(UNIX_EPOCH + Duration::from_millis(noon as u64));
        let ninety = Duration::from_secs(90 * 86_400);
        let gone = enforce(dir.path(), &clock, ninety);
        let names: Vec<String> = gone
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        // 2026-08-27 still holds samples within retention (its afternoon).
        assert_eq!(names, vec!["day=2026-08-26"]);
        // Twelve hours later it is wholly past.
        clock.set(UNIX_EPOCH + Duration::from_millis((noon + DAY_MS / 2) as u64));
        let gone = enforce(dir.path(), &clock, ninety);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].ends_with("day=2026-08-27"));
        let left: Vec<String> = std::fs::read_dir(dir.path().join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 3, "{left:?}");
    }
}
