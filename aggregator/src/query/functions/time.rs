//! Time functions: `time()`, `timestamp(v)`, and the calendar parts of a time (`minute`,
//! `hour`, `day_of_week`, `day_of_month`, `day_of_year`, `days_in_month`, `month`,
//! `year`) in UTC, on the one calendar `telltale_model::calendar` keeps.
//!
//! Promise: times are unix seconds as floats, as Prometheus answers them; a calendar part
//! of a non-finite time is NaN.

use std::sync::Arc;

use telltale_model::calendar::{civil, days_from_civil};

use super::super::error::Result;
use super::super::value::{Labels, Sample, Value};
use super::args::{Args, Ctx};

/// Whether `name` is a calendar part function.
pub fn is_date_part(name: &str) -> bool {
    matches!(
        name,
        "minute"
            | "hour"
            | "day_of_week"
            | "day_of_month"
            | "day_of_year"
            | "days_in_month"
            | "month"
            | "year"
    )
}

/// `time()`: the evaluation time.
pub fn time(cx: &Ctx) -> Value {
    Value::Scalar(cx.t as f64 / 1000.0)
}

/// `timestamp(v)`: each sample's time (a selector's own sample times).
pub fn timestamp(mut args: Args, cx: &Ctx) -> Result<Value> {
    Ok(Value::Vector(
        args.timed(0)?
            .into_iter()
            .map(|(s, ts)| Sample {
                labels: cx.names.unnamed(&s.labels),
                v: ts as f64 / 1000.0,
            })
            .collect(),
    ))
}

/// A calendar part of each sample's value, or of the evaluation time without an argument.
pub fn date_function(name: &str, mut args: Args, cx: &Ctx) -> Result<Value> {
    let input = if args.has(0) {
        args.vector(0)?
    } else {
        vec![Sample {
            labels: Arc::new(Labels::default()),
            v: cx.t as f64 / 1000.0,
        }]
    };
    Ok(Value::Vector(
        input
            .into_iter()
            .map(|s| Sample {
                labels: cx.names.unnamed(&s.labels),
                v: date_part(name, s.v),
            })
            .collect(),
    ))
}

/// A calendar part of `v` (unix seconds), in UTC.
fn date_part(part: &str, v: f64) -> f64 {
    if !v.is_finite() {
        return f64::NAN;
    }
    let secs = v as i64;
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    match part {
        "minute" => ((of_day / 60) % 60) as f64,
        "hour" => (of_day / 3600) as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_month" => d as f64,
        "day_of_year" => (days - days_from_civil(y, 1, 1) + 1) as f64,
        "days_in_month" => {
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as f64
        }
        "month" => m as f64,
        _ => y as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_parts_agree_with_known_dates() {
        // 2024-02-29T13:45:00Z, a Thursday in a leap year.
        let t = 1_709_214_300.0;
        assert_eq!(date_part("year", t), 2024.0);
        assert_eq!(date_part("month", t), 2.0);
        assert_eq!(date_part("day_of_month", t), 29.0);
        assert_eq!(date_part("days_in_month", t), 29.0);
        assert_eq!(date_part("day_of_year", t), 60.0);
        assert_eq!(date_part("day_of_week", t), 4.0);
        assert_eq!(date_part("hour", t), 13.0);
        assert_eq!(date_part("minute", t), 45.0);
        assert_eq!(date_part("day_of_week", 0.0), 4.0);
    }
}
