//! The store's reads: selection from files and the head, the series table, planning
//! across files and compaction racing a read.

#![allow(clippy::unwrap_used)]

use promql_parser::label::Matcher;

use crate::query::NAME;

#[test]
fn selection_reads_files_and_the_head_and_skips_other_metrics() {
    use super::head::SeriesKey;
    let dir = tempfile::tempdir().unwrap();
    let key = |m: &str, l: &str| SeriesKey {
        metric: m.into(),
        labels: l.into(),
    };
    let day = 20_000;
    let t0 = day * telltale_model::calendar::DAY_MS;
    super::partition::write_day(
        dir.path(),
        day,
        vec![
            (key("a", r#"{"i":"1"}"#), vec![(t0, 1f64.to_bits())]),
            (key("b", r#"{"i":"1"}"#), vec![(t0, 2f64.to_bits())]),
        ],
        "part-1-0.parquet",
    )
    .unwrap();
    let mut head = super::head::Head::default();
    let req = telltale_model::remote::WriteRequest {
        timeseries: vec![telltale_model::remote::TimeSeries::new(
            &[("__name__", "a"), ("i", "1")],
            &[(t0 + 15_000, 3.0)],
        )],
    };
    head.insert(&req, 0);
    let m = vec![Matcher::new(
        promql_parser::label::MatchOp::Equal,
        NAME,
        "a",
    )];
    let mut found = super::select::Found::default();
    super::select::from_head(&head, &m, t0, t0 + 60_000, &mut found);
    super::select::from_files(
        dir.path(),
        &Default::default(),
        &m,
        t0,
        t0 + 60_000,
        &mut found,
    )
    .unwrap();
    let got = found.finish();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels.get("i"), "1");
    assert_eq!(got[0].points, vec![(t0, 1.0), (t0 + 15_000, 3.0)]);
}

#[test]
fn the_series_table_finds_rows_across_row_groups() {
    use super::head::SeriesKey;
    let dir = tempfile::tempdir().unwrap();
    let day = 20_000;
    let t0 = day * telltale_model::calendar::DAY_MS;
    // Three series of 400,000 points: 1.2 M rows, more than one row group (1 Mi rows),
    // the middle series split across the boundary.
    let series: Vec<(SeriesKey, Vec<(i64, u64)>)> = (0..3)
        .map(|s| {
            let key = SeriesKey {
                metric: "m".into(),
                labels: format!(r#"{{"s":"{s}"}}"#).into(),
            };
            let points = (0..400_000i64)
                .map(|i| (t0 + i * 100, ((s * 1_000_000 + i) as f64).to_bits()))
                .collect();
            (key, points)
        })
        .collect();
    super::partition::write_day(dir.path(), day, series, "part-1-0.parquet").unwrap();
    let path = super::layout::day_dir(dir.path(), day).join("part-1-0.parquet");
    let file = std::fs::File::open(&path).unwrap();
    let meta = parquet::file::serialized_reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader;
    assert!(meta.metadata().num_row_groups() > 1);
    for s in 0..3i64 {
        let m = vec![Matcher::new(
            promql_parser::label::MatchOp::Equal,
            "s",
            &s.to_string(),
        )];
        let mut found = super::select::Found::default();
        let (mint, maxt) = (t0 + 1_000_000, t0 + 39_000_000);
        super::select::from_files(dir.path(), &Default::default(), &m, mint, maxt, &mut found)
            .unwrap();
        let got = found.finish();
        assert_eq!(got.len(), 1, "series {s}");
        let p = &got[0].points;
        assert_eq!(p.len(), 380_001, "series {s}");
        assert_eq!(p[0], (mint, (s * 1_000_000 + 10_000) as f64));
        assert_eq!(*p.last().unwrap(), (maxt, (s * 1_000_000 + 390_000) as f64));
    }
}

#[test]
fn a_series_over_many_files_is_read_whole_in_order_and_the_first_file_wins_a_tie() {
    use super::head::SeriesKey;
    use telltale_model::calendar::DAY_MS;
    let dir = tempfile::tempdir().unwrap();
    let key = |s: &str| SeriesKey {
        metric: "m".into(),
        labels: format!(r#"{{"s":"{s}"}}"#).into(),
    };
    let first = 20_000;
    // Five days, each with series "a" (a point an hour) and "b"; day 2 has a second file
    // repeating one of "a"'s timestamps with another value.
    for day in first..first + 5 {
        let t0 = day * DAY_MS;
        let points = |base: f64| -> Vec<(i64, u64)> {
            (0..24)
                .map(|h| (t0 + h * 3_600_000, (base + h as f64).to_bits()))
                .collect()
        };
        let series = vec![
            (key("a"), points(day as f64 * 100.0)),
            (key("b"), points(-1.0)),
        ];
        super::partition::write_day(dir.path(), day, series, "part-1-0.parquet").unwrap();
    }
    let tie = (first + 2) * DAY_MS + 3_600_000;
    super::partition::write_day(
        dir.path(),
        first + 2,
        vec![(key("a"), vec![(tie, (-7.0f64).to_bits())])],
        "part-2-0.parquet",
    )
    .unwrap();
    let m = vec![Matcher::new(promql_parser::label::MatchOp::Equal, "s", "a")];
    let mut found = super::select::Found::default();
    let (mint, maxt) = (first * DAY_MS, (first + 5) * DAY_MS);
    super::select::from_files(dir.path(), &Default::default(), &m, mint, maxt, &mut found).unwrap();
    let got = found.finish();
    assert_eq!(got.len(), 1);
    let want: Vec<(i64, f64)> = (first..first + 5)
        .flat_map(|day| {
            (0..24).map(move |h| (day * DAY_MS + h * 3_600_000, day as f64 * 100.0 + h as f64))
        })
        .collect();
    assert_eq!(got[0].points, want);
    assert!(got[0]
        .points
        .contains(&(tie, (first + 2) as f64 * 100.0 + 1.0)));
}

#[test]
fn a_file_compacted_away_after_planning_fails_the_read_whole_and_is_planned_again() {
    use super::head::SeriesKey;
    use telltale_model::calendar::DAY_MS;
    let dir = tempfile::tempdir().unwrap();
    let day = 20_000;
    let t0 = day * DAY_MS;
    let key = SeriesKey {
        metric: "m".into(),
        labels: r#"{"s":"a"}"#.into(),
    };
    for (name, t) in [("part-1-0.parquet", t0), ("part-2-0.parquet", t0 + 60_000)] {
        let points = vec![(t, 1f64.to_bits())];
        super::partition::write_day(dir.path(), day, vec![(key.clone(), points)], name).unwrap();
    }
    let m = vec![Matcher::new(promql_parser::label::MatchOp::Equal, "s", "a")];
    let cache = super::select::FileCache::default();
    let files = super::layout::parquet_files(&super::layout::day_dir(dir.path(), day));
    let mut found = super::select::Found::default();
    let reads: Vec<_> = files
        .into_iter()
        .filter_map(|p| {
            super::select::from_file(p, &cache, &m, t0, t0 + DAY_MS, &mut found).unwrap()
        })
        .collect();
    assert_eq!(reads.len(), 2);
    // Compaction merges the two and deletes them between planning and reading.
    assert_eq!(super::partition::compact(dir.path(), None).merged, 2);
    let err = super::select::read_all(&reads, t0, t0 + DAY_MS, &mut found).unwrap_err();
    assert!(
        matches!(&err, super::partition::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
    assert!(found.finish().is_empty(), "nothing added by a failed read");
    let mut found = super::select::Found::default();
    super::select::from_files(dir.path(), &cache, &m, t0, t0 + DAY_MS, &mut found).unwrap();
    assert_eq!(
        found.finish()[0].points,
        vec![(t0, 1.0), (t0 + 60_000, 1.0)]
    );
}

#[test]
fn files_without_a_series_table_are_scanned() {
    use super::head::SeriesKey;
    let dir = tempfile::tempdir().unwrap();
    let day = 20_000;
    let t0 = day * telltale_model::calendar::DAY_MS;
    let key = |l: &str| SeriesKey {
        metric: "m".into(),
        labels: l.into(),
    };
    super::partition::write_day(
        dir.path(),
        day,
        vec![
            (key(r#"{"i":"1"}"#), vec![(t0, 1f64.to_bits())]),
            (key(r#"{"i":"2"}"#), vec![(t0, 2f64.to_bits())]),
        ],
        "part-1-0.parquet",
    )
    .unwrap();
    // Rewrite it as files were written before the table existed: same rows, no footer key.
    let path = super::layout::day_dir(dir.path(), day).join("part-1-0.parquet");
    let batches: Vec<_> = super::partition::batches(&path)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batches[0].schema(),
        None,
    )
    .unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    let m = vec![Matcher::new(promql_parser::label::MatchOp::Equal, "i", "2")];
    let mut found = super::select::Found::default();
    super::select::from_files(dir.path(), &Default::default(), &m, t0, t0, &mut found).unwrap();
    let got = found.finish();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].points, vec![(t0, 2.0)]);
}

#[test]
fn the_file_cache_stays_within_its_bound_and_answers_the_same() {
    use super::head::SeriesKey;
    use super::select::{from_files, FileCache, Found};
    use telltale_model::calendar::DAY_MS;
    let dir = tempfile::tempdir().unwrap();
    let first = 20_000;
    let days = 6;
    let series = 300;
    for day in first..first + days {
        let rows = (0..series).map(|i| {
            let key = SeriesKey {
                metric: "m".into(),
                labels: format!(r#"{{"pod":"pod-{i:04}","day":"d{day}"}}"#).into(),
            };
            (key, vec![(day * DAY_MS, (i as f64).to_bits())])
        });
        super::partition::write_day(dir.path(), day, rows, "part-1-0.parquet").unwrap();
    }
    let (mint, maxt) = (first * DAY_MS, (first + days) * DAY_MS);
    let everything = vec![Matcher::new(
        promql_parser::label::MatchOp::Equal,
        NAME,
        "m",
    )];
    let read = |cache: &FileCache| {
        let mut found = Found::default();
        from_files(dir.path(), cache, &everything, mint, maxt, &mut found).unwrap();
        let mut got: Vec<(String, Vec<(i64, f64)>)> = found
            .finish()
            .into_iter()
            .map(|s| (s.labels.to_string(), s.points))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        got
    };
    let unbounded = FileCache::new(usize::MAX);
    let want = read(&unbounded);
    assert_eq!(want.len(), (series * days) as usize);
    let all = unbounded.bytes();
    assert!(all > 0);
    // Room for about two of the six files: every read answers the same and the cache
    // never holds more than its bound, though it holds something.
    let bound = all / 3;
    let small = FileCache::new(bound);
    for _ in 0..3 {
        assert_eq!(read(&small), want);
        assert!(small.bytes() <= bound, "{} > {bound}", small.bytes());
        assert!(small.bytes() > 0);
    }
    // A bound below one file's size keeps nothing and still answers.
    let tiny = FileCache::new(1_000);
    assert_eq!(read(&tiny), want);
    assert_eq!(tiny.bytes(), 0);
}

/// A head that a flush has taken and not yet written is still visited: billing reads
/// the head and then the files, so a sample flushed in between must be seen in one of
/// them.
#[tokio::test]
async fn visiting_the_head_sees_a_flush_under_way() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 20_394 * telltale_model::calendar::DAY_MS;
    let store = super::rollup_tests::open(dir.path(), t0).await;
    store
        .head()
        .insert_series(&[("__name__", "a"), ("i", "1")], &[(t0, 1.0)], 0);
    store
        .head()
        .insert_series(&[("__name__", "a"), ("i", "2")], &[(t0, 2.0)], 0);
    let count = |store: &super::Store| {
        let mut n = 0;
        store.visit_head(|_, points| n += points.len());
        n
    };
    assert_eq!(count(&store), 2);
    // What `Store::flush` does first: the head's samples move to the flush under way.
    let taken = std::sync::Arc::new(store.head().take());
    store.flushing().push(taken);
    store
        .head()
        .insert_series(&[("__name__", "a"), ("i", "1")], &[(t0 + 15_000, 3.0)], 0);
    assert_eq!(count(&store), 3);
}
