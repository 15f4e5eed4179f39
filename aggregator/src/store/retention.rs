//! Retention: whole day partitions older than `--retention` are deleted; nothing within it
//! ever is. Samples older than retention are not taken into the head either (they are
//! counted as dropped), so a late backfill cannot resurrect a deleted day.

use std::path::{Path, PathBuf};
use std::time::Duration;

use telltale_model::time::{to_millis, Clock};
use tracing::{info, warn};

use telltale_model::calendar::DAY_MS;

use super::layout;

/// The oldest timestamp (ms) still within retention at `now`.
pub fn cutoff(clock: &dyn Clock, retention: Duration) -> i64 {
    to_millis(clock.now()) - retention.as_millis() as i64
}

/// Deletes the day partitions under `data_dir` whose every millisecond is before the
/// cutoff; returns them.
pub fn enforce(data_dir: &Path, clock: &dyn Clock, retention: Duration) -> Vec<PathBuf> {
    remove_past(layout::day_dirs(data_dir), cutoff(clock, retention))
}

/// Deletes the days of rollups at `resolution` (`5m`, `1h`) wholly before the cutoff of
/// their own retention; returns them.
pub fn enforce_rollups(
    data_dir: &Path,
    resolution: &str,
    clock: &dyn Clock,
    retention: Duration,
) -> Vec<PathBuf> {
    remove_past(
        layout::rollup_days(data_dir, resolution),
        cutoff(clock, retention),
    )
}

/// Deletes the day directories of `days` wholly before `cut`.
fn remove_past(days: Vec<(i64, PathBuf)>, cut: i64) -> Vec<PathBuf> {
    let mut gone = Vec::new();
    for (day, path) in days {
        let name = layout::day_dir_name(day);
        // The partition ends at the start of the next day.
        if (day + 1) * DAY_MS <= cut {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::UNIX_EPOCH;

    use telltale_model::time::MockClock;

    use telltale_model::calendar::parse_day;

    use super::*;

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
