//! The evaluator on series held in memory (the store's own reads are tested in
//! `store/tests.rs`). Agreement with Prometheus on a whole corpus is `tests/promql.rs`'s job;
//! these pin the rules that corpus relies on.

use std::sync::Arc;

use promql_parser::label::Matcher;
use proptest::prelude::*;
use telltale_model::prom::STALE_NAN_BITS;

use super::eval::{parse, Value};
use super::plan::Requested;
use super::rollup::Resolution;
use super::run::{instant_query, range_query};
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

/// A range answer's samples at step `t`, as [`values`] gives an instant answer's: by
/// labels.
fn at_step(range: &[Series], t: i64) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = range
        .iter()
        .filter_map(|s| {
            s.points
                .iter()
                .find(|p| p.0 == t)
                .map(|p| (s.labels.to_string(), p.1))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
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
        let range = range_query(&src, &expr, 0, end, step, &Limits::default(), Requested::Exactly(Resolution::Raw)).unwrap().series;
        let mut t = 0;
        while t <= end {
            let mut want = values(instant_query(&src, &expr, t, &Limits::default()).unwrap());
            let got = at_step(&range, t);
            want.sort_by(|x, y| x.0.cmp(&y.0));
            prop_assert_eq!(got, want, "{} at {}", q, t);
            t += step;
        }
    }
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
    let err = range_query(&src, &expr, 0, 15_000, 1_000, &few, Requested::Auto).unwrap_err();
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
    let err = range_query(&src, &expr, 0, 15_000, 1_000, &none, Requested::Auto).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
}

/// `n` counters (with a reset each) and gauges sampled every minute for `days` days.
fn month(n: usize, days: i64) -> Memory {
    let minutes = days * 1440;
    let mut out = Vec::new();
    for i in 0..n {
        let c: Vec<(i64, f64)> = (0..=minutes)
            .map(|m| {
                let v = if m < minutes / 2 + i as i64 * 7 {
                    m * (i as i64 + 1)
                } else {
                    m
                };
                (m * 60_000, v as f64)
            })
            .collect();
        let g: Vec<(i64, f64)> = (0..=minutes)
            .map(|m| (m * 60_000, ((m + i as i64 * 13) % 97) as f64 - 40.0))
            .collect();
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        out.push(series("c", &[("i", &i.to_string()), ("kind", kind)], &c));
        out.push(series("g", &[("i", &i.to_string()), ("kind", kind)], &g));
    }
    Memory(out)
}

#[test]
fn a_long_range_holds_one_block_at_a_time() {
    const H: i64 = 3_600_000;
    let src = month(4, 30);
    let raw = Requested::Exactly(Resolution::Raw);
    let expr = parse("sum by (kind) (rate(c[1h]))").unwrap();
    let day = range_query(&src, &expr, H, 24 * H, H, &Limits::default(), raw).unwrap();
    let month = range_query(&src, &expr, H, 30 * 24 * H, H, &Limits::default(), raw).unwrap();
    // Thirty times the samples read, not thirty times held: the answer's points grow,
    // the block's samples do not.
    assert!(month.total_samples > 25 * day.total_samples, "{month:?}");
    let answer_points: usize = month.series.iter().map(|s| s.points.len()).sum();
    assert!(
        month.peak_samples <= day.peak_samples + answer_points + 4 * 61,
        "peak {} vs a day's {}",
        month.peak_samples,
        day.peak_samples
    );
    // A bound below the whole range's samples but above a block's is no refusal.
    let bounded = Limits {
        max_samples: month.total_samples / 4,
        ..Limits::default()
    };
    let again = range_query(&src, &expr, H, 30 * 24 * H, H, &bounded, raw).unwrap();
    assert_eq!(again.series, month.series);
    // Each step still answers what the instant query at its time answers.
    for t in [H, 24 * H, 24 * H + H, 29 * 24 * H] {
        let want = values(instant_query(&src, &expr, t, &Limits::default()).unwrap());
        assert_eq!(at_step(&month.series, t), want, "at {t}");
    }
    // One step's window past the bound is refused in Prometheus's words.
    let tiny = Limits {
        max_samples: 100,
        ..Limits::default()
    };
    let err = range_query(&src, &expr, H, 30 * 24 * H, H, &tiny, raw).unwrap_err();
    assert!(matches!(err, Error::TooManySamples), "{err}");
}

/// Walks large enough to be shared among the cores (a run of steps per thread) answer
/// as one thread does: at every step checked, including both sides of where the runs
/// meet, the range answer is the instant query's, to the bit.
#[test]
fn steps_shared_among_threads_answer_as_the_instant_query() {
    const M: i64 = 60_000;
    // 150 counters and 150 gauges over a day, at each minute: 300 series x 1,441 steps.
    let src = month(150, 1);
    let raw = Requested::Exactly(Resolution::Raw);
    let (start, end) = (0, 1440 * M);
    for q in [
        "sum by (kind) (rate(c[5m]))",
        "rate(c[5m])",
        "g",
        "avg(g)",
        "stddev by (kind) (g)",
        "max by (kind) (max_over_time(g[10m]))",
    ] {
        let expr = parse(q).unwrap();
        let range = range_query(&src, &expr, start, end, M, &Limits::default(), raw)
            .unwrap()
            .series;
        let checked = (0..=1440).filter(|i| i % 45 == 0 || (716..=724).contains(i) || *i == 1440);
        for i in checked {
            let t = i * M;
            let want = values(instant_query(&src, &expr, t, &Limits::default()).unwrap());
            let got = at_step(&range, t);
            let bits = |v: &[(String, f64)]| -> Vec<(String, u64)> {
                v.iter().map(|(l, x)| (l.clone(), x.to_bits())).collect()
            };
            assert_eq!(bits(&got), bits(&want), "{q} at {t}");
        }
    }
}

#[test]
fn rollups_answer_aligned_queries_as_raw_samples_do() {
    const M: i64 = 60_000;
    const H: i64 = 60 * M;
    let src = month(3, 8);
    let queries = [
        "rate(c[1h])",
        "increase(c[2h])",
        "sum by (kind) (rate(c[1h]))",
        "delta(g[1h])",
        "avg_over_time(g[1h])",
        "max_over_time(g[1h]) - min_over_time(g[1h])",
        "sum_over_time(g[10m])",
        "count_over_time(g[1h])",
        "last_over_time(g[1h])",
        "changes(g[1h]) + resets(c[1h])",
        "g",
        "sum(g) / count(c)",
        "max(c offset 1d)",
    ];
    for (start, step, end) in [(H, H, 8 * 24 * H), (H, 10 * M, 2 * 24 * H)] {
        for q in queries {
            let expr = parse(q).unwrap();
            let lim = Limits::default();
            let raw = range_query(
                &src,
                &expr,
                start,
                end,
                step,
                &lim,
                Requested::Exactly(Resolution::Raw),
            )
            .unwrap();
            let auto = range_query(&src, &expr, start, end, step, &lim, Requested::Auto).unwrap();
            assert_ne!(auto.resolution, Resolution::Raw, "{q} at step {step}");
            assert!(
                auto.total_samples * 4 < raw.total_samples,
                "{q}: {} vs {}",
                auto.total_samples,
                raw.total_samples
            );
            assert_eq!(auto.series.len(), raw.series.len(), "{q}");
            for (a, r) in auto.series.iter().zip(&raw.series) {
                assert_eq!(a.labels, r.labels, "{q}");
                assert_eq!(a.points.len(), r.points.len(), "{q} {}", a.labels);
                for (x, y) in a.points.iter().zip(&r.points) {
                    assert_eq!(x.0, y.0, "{q}");
                    assert!(
                        (x.1 - y.1).abs() <= 1e-9 * y.1.abs().max(1.0),
                        "{q} {} at {}: rollup {} raw {}",
                        a.labels,
                        x.0,
                        x.1,
                        y.1
                    );
                }
            }
        }
    }
}

#[test]
fn between_bucket_boundaries_rollups_answer_for_the_last_boundary() {
    const M: i64 = 60_000;
    const H: i64 = 60 * M;
    let src = month(3, 3);
    let lim = Limits::default();
    // Steps 7 minutes past the hour, every 30 minutes: five 5-minute buckets per step and
    // window, not aligned; each answer is the raw one 2 minutes earlier.
    for f in [
        "rate(c[1h]{})",
        "increase(c[2h]{})",
        "delta(g[30m]{})",
        "avg_over_time(g[1h]{})",
        "count_over_time(g[1h]{})",
        "last_over_time(g[1h]{})",
        "g{}",
    ] {
        let rollup = parse(&f.replace("{}", "")).unwrap();
        let shifted = parse(&f.replace("{}", " offset 2m")).unwrap();
        let (start, end, step) = (H + 7 * M, 2 * 24 * H, 30 * M);
        let auto = range_query(&src, &rollup, start, end, step, &lim, Requested::Auto).unwrap();
        assert_eq!(auto.resolution, Resolution::FiveMinutes, "{f}");
        let raw = Requested::Exactly(Resolution::Raw);
        let want = range_query(&src, &shifted, start, end, step, &lim, raw).unwrap();
        assert_eq!(auto.series.len(), want.series.len(), "{f}");
        for (a, w) in auto.series.iter().zip(&want.series) {
            assert_eq!(a.points.len(), w.points.len(), "{f} {}", a.labels);
            for (x, y) in a.points.iter().zip(&w.points) {
                assert!(
                    x.0 == y.0 && (x.1 - y.1).abs() <= 1e-9 * y.1.abs().max(1.0),
                    "{f} {}: {x:?} vs {y:?}",
                    a.labels
                );
            }
        }
    }
}
