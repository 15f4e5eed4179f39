//! Silences: weekly windows in UTC during which a policy's notifications wait, as written
//! (`silence:` with `weekdays`, `from`, `to`) and as checked at each evaluation.
//!
//! It promises that a window spanning midnight belongs to the day it starts on, and that
//! a held notification goes out at the first evaluation after the window ends.

use serde::Deserialize;
use telltale_model::calendar::{self, DAY_MS, MINUTE_MS};

/// One `silence:` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SilenceSpec {
    #[serde(default)]
    pub(super) weekdays: Vec<String>,
    pub(super) from: Option<String>,
    pub(super) to: Option<String>,
}

/// A weekly window in UTC during which notifications wait (they go out when it ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    /// Days (0 = Monday); empty = every day.
    pub weekdays: Vec<u8>,
    /// Minutes after midnight, from (inclusive)...
    pub from: u32,
    /// ...to (exclusive); `to <= from` spans midnight.
    pub to: u32,
}

impl Silence {
    /// Whether `t_ms` falls in the window.
    pub fn covers(&self, t_ms: i64) -> bool {
        let day = calendar::day_of(t_ms);
        let minute = (t_ms.rem_euclid(DAY_MS) / MINUTE_MS) as u32;
        // Day 0, 1970-01-01, was a Thursday (3 counting from Monday = 0).
        let weekday = ((day + 3).rem_euclid(7)) as u8;
        let day_ok = |d: u8| self.weekdays.is_empty() || self.weekdays.contains(&d);
        if self.from < self.to {
            day_ok(weekday) && (self.from..self.to).contains(&minute)
        } else {
            // Spans midnight: the part after midnight belongs to the day before.
            (day_ok(weekday) && minute >= self.from)
                || (day_ok((weekday + 6) % 7) && minute < self.to)
        }
    }
}

/// Checks a `silence:` entry; the error names the field at fault.
pub(super) fn parse_silence(s: &SilenceSpec) -> std::result::Result<Silence, String> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let weekdays = s
        .weekdays
        .iter()
        .map(|d| {
            let d3: String = d.to_lowercase().chars().take(3).collect();
            DAYS.iter()
                .position(|x| *x == d3)
                .map(|i| i as u8)
                .ok_or_else(|| format!("weekdays: {d:?} is not a day (mon..sun)"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let minute =
        |v: &Option<String>, default: u32, key: &str| -> std::result::Result<u32, String> {
            let Some(v) = v else { return Ok(default) };
            let (h, m) = v
                .split_once(':')
                .ok_or_else(|| format!("{key}: {v:?} is not HH:MM"))?;
            match (h.parse::<u32>(), m.parse::<u32>()) {
                (Ok(h), Ok(m)) if h <= 24 && m < 60 && h * 60 + m <= 1440 => Ok(h * 60 + m),
                _ => Err(format!("{key}: {v:?} is not HH:MM")),
            }
        };
    Ok(Silence {
        weekdays,
        from: minute(&s.from, 0, "from")?,
        to: minute(&s.to, 1440, "to")?,
    })
}
