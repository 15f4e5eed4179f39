//! Every path under `--data-dir`, named and parsed here and nowhere else:
//!
//! ```text
//! <data-dir>/
//!   wal/                               write-ahead log segments and their checkpoint
//!   data/day=YYYY-MM-DD/               one day partition of samples (UTC)
//!     part-<ms>-<n>[-r<replica>].parquet        a flush of the head
//!     part-<ms>-c<count>[-r<replica>].parquet   a compaction of <count> files
//!                                      (-r<replica>: the writer's name, with a bucket)
//!     part-<ms>-import<n>.parquet      written by `telltale import`
//!   data/resolution=5m/day=YYYY-MM-DD/rollup-<sources>.parquet
//!   data/resolution=1h/day=YYYY-MM-DD/rollup-<sources>.parquet
//!                                      a day's 5-minute and 1-hour rollups; <sources>
//!                                      names the raw files they were built from
//!   corrupt/day=YYYY-MM-DD/            unreadable files moved aside
//!   billing/day=YYYY-MM-DD/hour=HH.parquet   settled billing records of one hour
//!   billing/settled, billing/resettle-from   billing's frontier and late-sample marks
//! ```
//!
//! With `--object-store`, the bucket holds the same files under the same names (keys
//! relative to `<data-dir>`, e.g. `data/day=2026-01-02/part-....parquet`): everything
//! under `data/` and `billing/`, never `wal/`, `corrupt/` or a temporary file; and
//! `leases/compaction/day=YYYY-MM-DD` while a replica compacts that day.
//!
//! Files are written under a hidden temporary name (`.<name>.tmp`) in their final
//! directory and renamed into place, so a reader never sees a partial file.

use std::path::{Path, PathBuf};

use telltale_model::calendar::{day_name, parse_day, DAY_MS, HOUR_MS};

/// The write-ahead log's directory.
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

/// The directory holding the day partitions of samples.
pub fn days_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("data")
}

/// The name of a day's directory (`day=YYYY-MM-DD`), in samples and billing alike.
pub fn day_dir_name(day: i64) -> String {
    format!("day={}", day_name(day))
}

/// The day a directory name (`day=YYYY-MM-DD`) stands for; `None` for anything else.
pub fn parse_day_dir(name: &str) -> Option<i64> {
    parse_day(name.strip_prefix("day=")?)
}

/// The directory of one day partition of samples.
pub fn day_dir(data_dir: &Path, day: i64) -> PathBuf {
    days_dir(data_dir).join(day_dir_name(day))
}

/// The day partitions of samples present, as (day, directory), oldest first.
pub fn day_dirs(data_dir: &Path) -> Vec<(i64, PathBuf)> {
    dated_dirs(&days_dir(data_dir))
}

/// The `day=` directories directly under `dir`, as (day, directory), oldest first; other
/// entries are left out.
fn dated_dirs(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut out: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| Some((parse_day_dir(e.file_name().to_str()?)?, e.path())))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The Parquet files of one directory (temporary files left out), by name.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "parquet")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The directory of the rollups at `resolution` (`5m` or `1h`).
pub fn rollup_dir(data_dir: &Path, resolution: &str) -> PathBuf {
    days_dir(data_dir).join(format!("resolution={resolution}"))
}

/// The directory of one day's rollups at `resolution`.
pub fn rollup_day_dir(data_dir: &Path, resolution: &str, day: i64) -> PathBuf {
    rollup_dir(data_dir, resolution).join(day_dir_name(day))
}

/// The days with a rollup directory at `resolution`, as (day, directory), oldest first.
pub fn rollup_days(data_dir: &Path, resolution: &str) -> Vec<(i64, PathBuf)> {
    dated_dirs(&rollup_dir(data_dir, resolution))
}

/// The rollup file built from raw files whose names hash to `sources`.
pub fn rollup_file(sources: u64) -> String {
    format!("rollup-{sources:016x}.parquet")
}

/// The file a flush writes: `stamp` is the flush's wall-clock ms, `n` its sequence number
/// in this process, `replica` the writer's name when several share a bucket.
pub fn flush_file(stamp: i64, n: u64, replica: Option<&str>) -> String {
    format!("part-{stamp}-{n}{}.parquet", tag(replica))
}

/// The file a compaction of `count` files writes.
pub fn compacted_file(stamp: i64, count: usize, replica: Option<&str>) -> String {
    format!("part-{stamp}-c{count}{}.parquet", tag(replica))
}

/// `-r<replica>`, so that replicas sharing a bucket never write the same name.
fn tag(replica: Option<&str>) -> String {
    replica.map(|r| format!("-r{r}")).unwrap_or_default()
}

/// Whether `name` can name a replica in a file name and a bucket key: letters, digits,
/// `.`, `_` and `-`, at most 63 of them.
pub fn valid_replica(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The bucket key of the lease a replica holds while it compacts `day` (outside `data/`
/// and `billing/`, so never mirrored).
pub fn compaction_lease(day: i64) -> String {
    format!("leases/compaction/{}", day_dir_name(day))
}

/// The file `telltale import` writes for its `n`th day.
pub fn import_file(stamp: i64, n: usize) -> String {
    format!("part-{stamp}-import{n}.parquet")
}

/// The hidden name a file is written under before it is renamed to `name` in the same
/// directory.
pub fn temporary(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.tmp"))
}

/// Where an unreadable file is moved: `corrupt/` and the name of the partition it was in.
pub fn quarantine_dir(data_dir: &Path, partition: &std::ffi::OsStr) -> PathBuf {
    data_dir.join("corrupt").join(partition)
}

/// Where a query node keeps blocks of object store files it read (`--cache-max-bytes`).
pub fn page_cache_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cache")
}

/// The billing directory.
pub fn billing_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("billing")
}

/// The record file of one billing hour (ms since the epoch, on the hour).
pub fn billing_hour_file(data_dir: &Path, hour: i64) -> PathBuf {
    billing_dir(data_dir)
        .join(day_dir_name(hour.div_euclid(DAY_MS)))
        .join(format!(
            "hour={:02}.parquet",
            hour.rem_euclid(DAY_MS) / HOUR_MS
        ))
}

/// Billing's settled frontier (ms): every hour before it is settled.
pub fn billing_settled(data_dir: &Path) -> PathBuf {
    billing_dir(data_dir).join("settled")
}

/// The earliest hour (ms) late samples marked for settling again.
pub fn billing_marks(data_dir: &Path) -> PathBuf {
    billing_dir(data_dir).join("resettle-from")
}

/// The top directories an object store mirrors.
const MIRRORED: [&str; 2] = ["data", "billing"];

/// The files an object store mirrors, as (key, path), by key: the Parquet files under
/// `data/` and every file under `billing/`, hidden (temporary) ones left out.
pub fn mirrored_files(data_dir: &Path) -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, key: &str, out: &mut Vec<(String, PathBuf)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let key = format!("{key}/{name}");
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path(), &key, out),
                Ok(t) if t.is_file() => out.push((key, e.path())),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    for top in MIRRORED {
        walk(&data_dir.join(top), top, &mut out);
    }
    out.retain(|(key, _)| mirrored_path(data_dir, key).is_some());
    out.sort();
    out
}

/// Where the file of a mirrored `key` lives; `None` for a key that names nothing this
/// layout mirrors (another top directory, a hidden or `..` component, a file under
/// `data/` that is not Parquet).
pub fn mirrored_path(data_dir: &Path, key: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = key.split('/').collect();
    let top = *parts.first()?;
    if parts.len() < 2
        || !MIRRORED.contains(&top)
        || parts
            .iter()
            .any(|p| p.is_empty() || p.starts_with('.') || p.contains('\\'))
        || (top == "data" && !key.ends_with(".parquet"))
    {
        return None;
    }
    Some(parts.iter().fold(data_dir.to_path_buf(), |p, c| p.join(c)))
}

/// Whether the mirrored file of `key` is written once and never changed (every Parquet
/// file; billing's frontier files are rewritten in place).
pub fn immutable(key: &str) -> bool {
    key.ends_with(".parquet")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_parse_back() {
        let dir = Path::new("/d");
        assert_eq!(day_dir(dir, 0), Path::new("/d/data/day=1970-01-01"));
        assert_eq!(parse_day_dir("day=1970-01-02"), Some(1));
        assert_eq!(parse_day_dir("day=x"), None);
        assert_eq!(parse_day_dir("1970-01-02"), None);
        assert_eq!(
            billing_hour_file(dir, DAY_MS + 5 * HOUR_MS),
            Path::new("/d/billing/day=1970-01-02/hour=05.parquet")
        );
        assert_eq!(
            rollup_day_dir(dir, "5m", 1).join(rollup_file(255)),
            Path::new("/d/data/resolution=5m/day=1970-01-02/rollup-00000000000000ff.parquet")
        );
        assert_eq!(
            temporary(Path::new("/x"), "a.parquet"),
            Path::new("/x/.a.parquet.tmp")
        );
    }

    #[test]
    fn mirrored_keys_are_the_files_under_data_and_billing() {
        let d = tempfile::tempdir().unwrap();
        let files = [
            "data/day=2026-01-01/part-1-0.parquet",
            "data/day=2026-01-01/.part-2-0.parquet.tmp",
            "data/resolution=1h/day=2026-01-01/rollup-00000000000000ff.parquet",
            "data/day=2026-01-01/notes.txt",
            "billing/day=2026-01-01/hour=05.parquet",
            "billing/settled",
            "wal/00000001.wal",
            "corrupt/day=2026-01-01/part-3-0.parquet",
        ];
        for f in files {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let keys: Vec<String> = mirrored_files(d.path())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            [
                "billing/day=2026-01-01/hour=05.parquet",
                "billing/settled",
                "data/day=2026-01-01/part-1-0.parquet",
                "data/resolution=1h/day=2026-01-01/rollup-00000000000000ff.parquet",
            ]
        );
        assert_eq!(
            mirrored_path(d.path(), "billing/settled"),
            Some(d.path().join("billing").join("settled"))
        );
        for bad in [
            "wal/00000001.wal",
            "data/../wal/x.parquet",
            "data/day=2026-01-01/.x.parquet.tmp",
            "data//x.parquet",
            "data/day=2026-01-01/notes.txt",
            "billing",
            "",
        ] {
            assert_eq!(mirrored_path(d.path(), bad), None, "{bad}");
        }
        assert!(immutable("data/day=2026-01-01/part-1-0.parquet"));
        assert!(!immutable("billing/settled"));
    }

    #[test]
    fn only_day_directories_are_listed() {
        let d = tempfile::tempdir().unwrap();
        for name in ["day=2026-01-02", "day=2026-01-01", "not-a-day"] {
            std::fs::create_dir_all(days_dir(d.path()).join(name)).unwrap();
        }
        std::fs::write(days_dir(d.path()).join("day=2026-01-03"), b"a file").unwrap();
        let days: Vec<i64> = day_dirs(d.path()).into_iter().map(|(d, _)| d).collect();
        assert_eq!(
            days,
            vec![
                parse_day("2026-01-01").unwrap(),
                parse_day("2026-01-02").unwrap()
            ]
        );
    }
}
