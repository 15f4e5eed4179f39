//! Rollup files as the store keeps them: built from several raw files of a day, read
//! back as the raw samples summarise, rebuilt after late samples, replaced by raw
//! samples when deleted, and kept for their own retention.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matcher};
use telltale_model::calendar::DAY_MS;
use telltale_model::time::MockClock;

use super::head::SeriesKey;
use super::{layout, partition, retention, rollup, Store};
use crate::query::rollup::{bucketize, Fields, Resolution, RollupSeries};
use crate::query::{Source, NAME};

/// 2026-11-02, a Monday.
const DAY: i64 = 20_394;

struct Quiet;

impl super::Watch for Quiet {
    fn wants(&self, _: &str) -> bool {
        false
    }
    fn sample(&self, _: i64) -> bool {
        false
    }
    fn changed(&self) {}
    fn before_checkpoint(&self) -> Result<(), partition::Error> {
        Ok(())
    }
}

pub(super) async fn open(dir: &Path, now: i64) -> Store {
    let year = Duration::from_secs(400 * 86_400);
    Store::open(super::Config {
        data_dir: dir.to_owned(),
        flush_samples: 1_000_000,
        clock: Arc::new(MockClock::at(
            UNIX_EPOCH + Duration::from_millis(now as u64),
        )),
        retention: year,
        retention_5m: year,
        retention_1h: year,
        watch: Arc::new(Quiet),
        metrics: crate::metrics::Metrics::new(&prometheus::Registry::new()).unwrap(),
        query_cache_max_bytes: 64 << 20,
        bucket: None,
        wal_max_bytes: 0,
    })
    .await
    .unwrap()
}

fn key(pod: &str) -> SeriesKey {
    SeriesKey {
        metric: "c".into(),
        labels: format!(r#"{{"pod":"{pod}"}}"#).into(),
    }
}

/// A counter every 15 s from `from` to `to` (ms, `to` excluded), resetting every 4000 s.
fn counter(from: i64, to: i64) -> Vec<(i64, u64)> {
    (from..to)
        .step_by(15_000)
        .map(|t| (t, (((t / 1000) % 4000) as f64).to_bits()))
        .collect()
}

fn write(dir: &Path, day: i64, name: &str, series: Vec<(SeriesKey, Vec<(i64, u64)>)>) {
    partition::write_day(dir, day, series, name).unwrap();
}

/// What rolling up the raw samples the store serves gives.
fn from_raw(
    store: &Store,
    m: &[Matcher],
    mint: i64,
    maxt: i64,
    r: Resolution,
) -> Vec<RollupSeries> {
    let w = r.ms();
    store
        .select(m, mint - w + 1, maxt)
        .unwrap()
        .into_iter()
        .map(|s| {
            let mut buckets = bucketize(&s.points, w);
            buckets.retain(|b| b.end >= mint && b.end <= maxt);
            RollupSeries {
                labels: s.labels,
                buckets,
            }
        })
        .filter(|s| !s.buckets.is_empty())
        .collect()
}

#[tokio::test]
async fn rollup_files_answer_as_the_raw_samples_do_and_follow_late_samples() {
    let dir = tempfile::tempdir().unwrap();
    let d0 = DAY * DAY_MS;
    // Day one in two overlapping files (a flush and a late one), day two with its
    // midnight sample, which closes day one's last bucket.
    write(
        dir.path(),
        DAY,
        "part-1-0.parquet",
        vec![
            (key("a"), counter(d0, d0 + DAY_MS / 2 + 60_000)),
            (key("b"), counter(d0 + 3_600_000, d0 + DAY_MS)),
        ],
    );
    write(
        dir.path(),
        DAY,
        "part-2-0.parquet",
        vec![(key("a"), counter(d0 + DAY_MS / 2, d0 + DAY_MS))],
    );
    write(
        dir.path(),
        DAY + 1,
        "part-3-0.parquet",
        vec![
            (key("a"), counter(d0 + DAY_MS, d0 + 2 * DAY_MS)),
            (key("b"), counter(d0 + DAY_MS, d0 + DAY_MS + 15_000)),
        ],
    );
    let now = d0 + 3 * DAY_MS;
    // Today's raw data is not rolled up: the day is not over.
    write(
        dir.path(),
        DAY + 3,
        "part-4-0.parquet",
        vec![(key("a"), counter(now, now + 60_000))],
    );
    let built = rollup::maintain(dir.path(), now + 120_000);
    assert_eq!(
        built.iter().map(|b| b.0).collect::<Vec<_>>(),
        vec![DAY, DAY + 1]
    );
    assert_eq!(built[0].1.samples, 5760 + 5760 - 240);
    // Nothing changed: nothing to build.
    assert!(rollup::maintain(dir.path(), now + 120_000).is_empty());

    let store = open(dir.path(), now + 120_000).await;
    let m = vec![Matcher::new(MatchOp::Equal, NAME, "c")];
    for r in Resolution::ROLLUPS {
        for (mint, maxt) in [
            (d0, d0 + 2 * DAY_MS),
            (d0 + 7_200_000, d0 + DAY_MS + 3_600_000),
            (d0 - DAY_MS, now + DAY_MS),
        ] {
            let want = from_raw(&store, &m, mint, maxt, r);
            assert!(!want.is_empty());
            assert_eq!(
                store.select_rollup(&m, mint, maxt, r, Fields::ALL).unwrap(),
                want,
                "{r:?} {mint} {maxt}"
            );
        }
    }
    // Only the fields asked for are read; they are those of the whole bucket.
    let last = store
        .select_rollup(&m, d0, now, Resolution::FiveMinutes, Fields::LAST)
        .unwrap();
    let all = store
        .select_rollup(&m, d0, now, Resolution::FiveMinutes, Fields::ALL)
        .unwrap();
    assert_eq!(last.len(), all.len());
    for (l, a) in last.iter().zip(&all) {
        let pick = |s: &RollupSeries| -> Vec<(i64, i64, u64)> {
            s.buckets
                .iter()
                .map(|b| (b.end, b.last_t, b.last.to_bits()))
                .collect()
        };
        assert_eq!(pick(l), pick(a));
        // Day one's buckets come from its file, which read no other column.
        let day_one = l.buckets.iter().filter(|b| b.end < d0 + DAY_MS);
        assert!(day_one.clone().count() > 0);
        assert!(day_one.clone().all(|b| b.count == 0 && b.sum == 0.0));
    }
    let whole = store
        .select_rollup(&m, d0, now, Resolution::Hour, Fields::ALL)
        .unwrap();
    let midnight = whole[0]
        .buckets
        .iter()
        .find(|b| b.end == d0 + DAY_MS)
        .unwrap();
    assert_eq!((midnight.count, midnight.last_t), (240, d0 + DAY_MS));

    // A rollup file deleted by hand: that day is rolled up from raw samples instead.
    let five = rollup::current(dir.path(), Resolution::FiveMinutes, DAY).unwrap();
    std::fs::remove_file(&five).unwrap();
    let want = from_raw(&store, &m, d0, now, Resolution::FiveMinutes);
    assert_eq!(
        store
            .select_rollup(&m, d0, now, Resolution::FiveMinutes, Fields::ALL)
            .unwrap(),
        want
    );

    // Late samples for day one: its rollups are rebuilt and replace the old ones.
    write(
        dir.path(),
        DAY,
        "part-5-0.parquet",
        vec![(key("late"), counter(d0 + 600_000, d0 + 900_000))],
    );
    let built = rollup::maintain(dir.path(), now + 120_000);
    assert_eq!(built.iter().map(|b| b.0).collect::<Vec<_>>(), vec![DAY]);
    for r in Resolution::ROLLUPS {
        let files = layout::parquet_files(&layout::rollup_day_dir(dir.path(), r.name(), DAY));
        assert_eq!(files.len(), 1, "{files:?}");
        let got = store.select_rollup(&m, d0, now, r, Fields::ALL).unwrap();
        assert_eq!(got, from_raw(&store, &m, d0, now, r));
        assert!(got.iter().any(|s| s.labels.get("pod") == "late"));
    }
}

#[test]
fn each_resolution_is_kept_for_its_own_retention() {
    let dir = tempfile::tempdir().unwrap();
    let d0 = DAY * DAY_MS;
    for day in [DAY, DAY + 1, DAY + 2] {
        write(
            dir.path(),
            day,
            "part-1-0.parquet",
            vec![(key("a"), counter(day * DAY_MS, day * DAY_MS + 60_000))],
        );
    }
    rollup::maintain(dir.path(), d0 + 3 * DAY_MS + 3_600_000);
    let clock = MockClock::at(UNIX_EPOCH + Duration::from_millis((d0 + 3 * DAY_MS) as u64));
    let days = |r: &str| -> Vec<i64> {
        layout::rollup_days(dir.path(), r)
            .iter()
            .map(|d| d.0)
            .collect()
    };
    assert_eq!(days("5m"), vec![DAY, DAY + 1, DAY + 2]);
    // Raw kept a day, 5-minute rollups two, hourly ones a year.
    retention::enforce(dir.path(), &clock, Duration::from_secs(86_400));
    let gone =
        retention::enforce_rollups(dir.path(), "5m", &clock, Duration::from_secs(2 * 86_400));
    assert_eq!(gone.len(), 1);
    retention::enforce_rollups(dir.path(), "1h", &clock, Duration::from_secs(365 * 86_400));
    assert_eq!(
        layout::day_dirs(dir.path())
            .iter()
            .map(|d| d.0)
            .collect::<Vec<_>>(),
        vec![DAY + 2]
    );
    assert_eq!(days("5m"), vec![DAY + 1, DAY + 2]);
    assert_eq!(days("1h"), vec![DAY, DAY + 1, DAY + 2]);
    // A day whose raw files are gone keeps its rollups: nothing rebuilds or removes them.
    assert!(rollup::maintain(dir.path(), d0 + 4 * DAY_MS).is_empty());
    assert_eq!(days("1h"), vec![DAY, DAY + 1, DAY + 2]);
}
