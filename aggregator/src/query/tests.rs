//! The evaluator on series held in memory, and selection from real files and the head.
//! Agreement with Prometheus on a whole corpus is `tests/promql.rs`'s job; these pin the
//! rules that corpus relies on.

use std::sync::Arc;

use promql_parser::label::Matcher;
use proptest::prelude::*;
use telltale_model::prom::STALE_NAN_BITS;

use super::eval::{instant_query, parse, range_query, Value};
use super::{Error, Labels, Limits, Series, Source, NAME};

/// Series in memory.
struct Memory(Vec<Series>);

impl Source for Memory {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error> {
        Ok(self
            .0
            .iter()
            .filter(|s| matchers.iter().all(|m| m.is_match(s.labels.get(&m.name))))
            .map(|s| Series {
                labels: s.labels.clone(),
                points: s
                    .points
                    .iter()
                    .copied()
                    .filter(|p| p.0 >= mint && p.0 <= maxt)
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect())
    }
}

fn series(name: &str, labels: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
    let mut pairs: Vec<(String, String)> = labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    pairs.push((NAME.into(), name.into()));
    Series {
        labels: Arc::new(Labels::new(pairs)),
        points: points.to_vec(),
    }
}

fn instant(src: &Memory, q: &str, t: i64) -> Result<Value, Error> {
    instant_query(src, &parse(q)?, t, &Limits::default())
}

fn values(v: Value) -> Vec<(String, f64)> {
    match v {
        Value::Vector(s) => {
            let mut out: Vec<(String, f64)> =
                s.into_iter().map(|s| (s.labels.to_string(), s.v)).collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        Value::Scalar(v) => vec![(String::new(), v)],
        other => panic!("not a vector: {other:?}"),
    }
}

#[test]
fn the_lookback_window_is_closed_and_stale_markers_end_a_series() {
    let src = Memory(vec![
        series("up", &[("i", "a")], &[(0, 1.0)]),
        series(
            "up",
            &[("i", "b")],
            &[(0, 1.0), (60_000, f64::from_bits(STALE_NAN_BITS))],
        ),
    ]);
    // At exactly five minutes the sample still counts (Prometheus 2.x), a millisecond
    // later it does not.
    assert_eq!(values(instant(&src, "up", 300_000).unwrap()).len(), 1);
    assert!(values(instant(&src, "up", 300_001).unwrap()).is_empty());
    // The stale marker hides `b` from its own timestamp on.
    assert_eq!(
        values(instant(&src, "up", 30_000).unwrap()).len(),
        2,
        "before the marker both"
    );
    assert_eq!(
        values(instant(&src, "up", 60_000).unwrap()),
        vec![("{__name__=\"up\", i=\"a\"}".to_string(), 1.0)]
    );
}

#[test]
fn rate_handles_a_counter_reset_and_drops_the_name() {
    // 0, 10, 20, reset to 5, 15 at 15 s intervals: 20 before the reset, 5 + 10 after.
    let p: Vec<(i64, f64)> = [0.0, 10.0, 20.0, 5.0, 15.0]
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64 * 15_000, *v))
        .collect();
    let src = Memory(vec![series("c", &[("i", "a")], &p)]);
    let v = values(instant(&src, "increase(c[1m])", 60_000).unwrap());
    // Window [0, 60 s] holds all five points: no extrapolation needed.
    assert_eq!(v, vec![("{i=\"a\"}".to_string(), 35.0)]);
    let v = values(instant(&src, "resets(c[1m])", 60_000).unwrap());
    assert_eq!(v[0].1, 1.0);
}

#[test]
fn many_to_many_matching_is_an_execution_error() {
    let src = Memory(vec![
        series("a", &[("x", "1"), ("y", "1")], &[(0, 1.0)]),
        series("a", &[("x", "1"), ("y", "2")], &[(0, 1.0)]),
        series("b", &[("x", "1")], &[(0, 2.0)]),
    ]);
    let err = instant(&src, "b + on(x) a", 0).unwrap_err();
    assert!(matches!(err, Error::Execution(_)), "{err}");
    assert!(err.to_string().contains("many-to-many"), "{err}");
    // group_left makes it legal, and copies nothing it was not asked to.
    let v = values(instant(&src, "a + on(x) group_left b", 0).unwrap());
    assert_eq!(
        v,
        vec![
            ("{x=\"1\", y=\"1\"}".to_string(), 3.0),
            ("{x=\"1\", y=\"2\"}".to_string(), 3.0)
        ]
    );
}

#[test]
fn bad_queries_are_bad_data_with_the_reason() {
    for (q, says) in [
        ("rate(x)", "expected type matrix"),
        ("foo(x)", "unknown function"),
        ("histogram_avg(x)", "unknown function"),
        ("limitk(1, x)", "unknown aggregation"),
        ("x{a=\"b\" or c=\"d\"}", "or"),
        ("", "no expression"),
    ] {
        match parse(q) {
            Err(Error::BadData(m)) => assert!(m.contains(says), "{q}: {m}"),
            other => panic!("{q}: {other:?}"),
        }
    }
}

#[test]
fn syntax_errors_say_where() {
    for (q, says) in [
        ("1 +", "1:4: parse error: unexpected end of input"),
        ("sum(x) by", "1:10: parse error: unexpected end of input"),
        ("x{a=}", "1:5: parse error: unexpected \"}\""),
        ("foo bar", "1:5: parse error: unexpected \"bar\""),
        ("rate(x[5m]", "1:11: parse error: unclosed left parenthesis"),
        ("up +\n  * 2", "2:3: parse error: unexpected \"*\""),
    ] {
        match parse(q) {
            Err(Error::BadData(m)) => assert_eq!(m, says, "{q}"),
            other => panic!("{q}: {other:?}"),
        }
    }
}

#[test]
fn every_2_42_function_parses() {
    for f in super::eval::FUNCTIONS_2_42 {
        if let Err(Error::BadData(m)) = parse(&format!("{f}()")) {
            assert!(!m.contains("unknown function"), "{f}: {m}");
        }
    }
}

#[test]
fn holt_winters_refuses_factors_outside_zero_to_one() {
    let src = Memory(vec![series("g", &[], &[(0, 1.0), (15_000, 2.0)])]);
    let err = instant(&src, "holt_winters(g[1m], 1, 0.5)", 15_000).unwrap_err();
    assert!(matches!(err, Error::Execution(_)), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A range query's point at each step is the instant query's answer at that time.
    #[test]
    fn range_queries_are_instant_queries_at_each_step(
        raw in proptest::collection::vec(0.0f64..100.0, 40),
        gap in 5usize..30,
        step in 7_000i64..90_000,
        q in proptest::sample::select(vec![
            "g", "rate(g[1m])", "sum(g) by (i)", "g > 50", "avg_over_time(g[2m:30s])",
            "max_over_time(g[3m]) - min_over_time(g[3m])", "g offset 1m", "-g",
            "topk(1, g)", "deriv(g[2m])", "changes(g[5m])",
        ]),
    ) {
        // Two series sampled every 15 s, one with a silence longer than the lookback.
        let a: Vec<(i64, f64)> = raw.iter().enumerate().map(|(i, v)| (i as i64 * 15_000, *v)).collect();
        let b: Vec<(i64, f64)> = a.iter().copied().filter(|p| !(gap * 15_000..gap * 15_000 + 400_000).contains(&(p.0 as usize))).collect();
        let src = Memory(vec![series("g", &[("i", "a")], &a), series("g", &[("i", "b")], &b)]);
        let expr = parse(q).unwrap();
        let end = 40 * 15_000;
        let range = range_query(&src, &expr, 0, end, step, &Limits::default()).unwrap();
        let mut t = 0;
        while t <= end {
            let mut want = values(instant_query(&src, &expr, t, &Limits::default()).unwrap());
            let mut got: Vec<(String, f64)> = range
                .iter()
                .filter_map(|s| s.points.iter().find(|p| p.0 == t).map(|p| (s.labels.to_string(), p.1)))
                .collect();
            want.sort_by(|x, y| x.0.cmp(&y.0));
            got.sort_by(|x, y| x.0.cmp(&y.0));
            prop_assert_eq!(got, want, "{} at {}", q, t);
            t += step;
        }
    }
}

#[test]
fn selection_reads_files_and_the_head_and_skips_other_metrics() {
    use crate::head::SeriesKey;
    let dir = tempfile::tempdir().unwrap();
    let key = |m: &str, l: &str| SeriesKey {
        metric: m.into(),
        labels: l.into(),
    };
    let day = 20_000;
    let t0 = day * crate::head::DAY_MS;
    crate::partition::write_day(
        dir.path(),
        day,
        vec![
            (key("a", r#"{"i":"1"}"#), vec![(t0, 1f64.to_bits())]),
            (key("b", r#"{"i":"1"}"#), vec![(t0, 2f64.to_bits())]),
        ],
        "part-1-0.parquet",
    )
    .unwrap();
    let mut head = crate::head::Head::default();
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
    use crate::head::SeriesKey;
    let dir = tempfile::tempdir().unwrap();
    let day = 20_000;
    let t0 = day * crate::head::DAY_MS;
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
    crate::partition::write_day(dir.path(), day, series, "part-1-0.parquet").unwrap();
    let path = crate::partition::day_dir(dir.path(), day).join("part-1-0.parquet");
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
    use crate::head::{SeriesKey, DAY_MS};
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
        crate::partition::write_day(dir.path(), day, series, "part-1-0.parquet").unwrap();
    }
    let tie = (first + 2) * DAY_MS + 3_600_000;
    crate::partition::write_day(
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
    use crate::head::{SeriesKey, DAY_MS};
    let dir = tempfile::tempdir().unwrap();
    let day = 20_000;
    let t0 = day * DAY_MS;
    let key = SeriesKey {
        metric: "m".into(),
        labels: r#"{"s":"a"}"#.into(),
    };
    for (name, t) in [("part-1-0.parquet", t0), ("part-2-0.parquet", t0 + 60_000)] {
        let points = vec![(t, 1f64.to_bits())];
        crate::partition::write_day(dir.path(), day, vec![(key.clone(), points)], name).unwrap();
    }
    let m = vec![Matcher::new(promql_parser::label::MatchOp::Equal, "s", "a")];
    let cache = super::select::FileCache::default();
    let files = crate::partition::files(&crate::partition::day_dir(dir.path(), day));
    let mut found = super::select::Found::default();
    let reads: Vec<_> = files
        .into_iter()
        .filter_map(|p| {
            super::select::from_file(p, &cache, &m, t0, t0 + DAY_MS, &mut found).unwrap()
        })
        .collect();
    assert_eq!(reads.len(), 2);
    // Compaction merges the two and deletes them between planning and reading.
    assert_eq!(crate::partition::compact(dir.path()).merged, 2);
    let err = super::select::read_all(&reads, t0, t0 + DAY_MS, &mut found).unwrap_err();
    assert!(
        matches!(&err, crate::partition::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
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
fn limits_give_clear_errors() {
    let src = Memory(
        (0..10)
            .map(|i| series("g", &[("i", &i.to_string())], &[(0, 1.0), (15_000, 2.0)]))
            .collect(),
    );
    let expr = parse("g").unwrap();
    let few = Limits {
        max_series: 5,
        ..Limits::default()
    };
    let err = instant_query(&src, &expr, 15_000, &few).unwrap_err();
    assert!(
        matches!(err, Error::Execution(ref m) if m.contains("10 series")),
        "{err}"
    );
    let err = range_query(&src, &expr, 0, 15_000, 1_000, &few).unwrap_err();
    assert!(matches!(err, Error::Execution(_)), "{err}");
    let small = Limits {
        max_samples: 15,
        ..Limits::default()
    };
    let err = instant_query(&src, &expr, 15_000, &small).unwrap_err();
    assert!(err.to_string().contains("too many samples"), "{err}");
    let none = Limits {
        timeout: std::time::Duration::ZERO,
        ..Limits::default()
    };
    let err = range_query(&src, &expr, 0, 15_000, 1_000, &none).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
}

#[test]
fn files_without_a_series_table_are_scanned() {
    use crate::head::SeriesKey;
    let dir = tempfile::tempdir().unwrap();
    let day = 20_000;
    let t0 = day * crate::head::DAY_MS;
    let key = |l: &str| SeriesKey {
        metric: "m".into(),
        labels: l.into(),
    };
    crate::partition::write_day(
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
    let path = crate::partition::day_dir(dir.path(), day).join("part-1-0.parquet");
    let batches: Vec<_> = crate::partition::batches(&path)
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
