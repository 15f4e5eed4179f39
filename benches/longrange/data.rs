//! The data sets: which series a set holds over which days, the value of each sample,
//! and the text files one day of it is written to (OpenMetrics for promtool and
//! `telltale import`, the Prometheus text format for a set made one day at a time).

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use telltale_model::calendar::{DAY_MS, HOUR_MS};

/// Counters reset this often, each at its own offset (not on a day's edge).
const RESET_MS: i64 = 7 * DAY_MS + 5 * HOUR_MS;

/// One data set: its series and the days they cover.
pub struct Set {
    pub name: &'static str,
    pub metric: &'static str,
    pub series: usize,
    pub namespaces: usize,
    pub pod_prefix: &'static str,
    pub every_ms: i64,
    pub days: i64,
    pub last_day: i64,
}

impl Set {
    pub fn first_day(&self) -> i64 {
        self.last_day - self.days + 1
    }

    /// Midnight after the last day: the queries end there.
    pub fn end(&self) -> i64 {
        (self.last_day + 1) * DAY_MS
    }

    pub fn samples_per_day(&self) -> u64 {
        self.series as u64 * (DAY_MS / self.every_ms) as u64
    }

    pub fn samples(&self) -> u64 {
        self.samples_per_day() * self.days as u64
    }

    /// `metric{namespace="ns-N",pod="..."}`.
    fn head(&self, i: usize) -> String {
        format!(
            "{}{{namespace=\"ns-{}\",pod=\"{}-{i:05}\"}}",
            self.metric,
            i % self.namespaces,
            self.pod_prefix
        )
    }

    /// Series `i` at time `t`: a counter growing by a pseudo-random amount per sample
    /// (between 0.25 and twice its own mean, in quarters, so it always grows), reset every
    /// [`RESET_MS`] at its own offset. Every value is a multiple of 0.25 well under 2^53,
    /// so sums are exact.
    fn value(&self, i: usize, t: i64) -> f64 {
        let offset = (i as i64 * 7_919 * 60_000) % RESET_MS;
        let since_reset = ((t + offset).rem_euclid(RESET_MS) / self.every_ms) as u64;
        let quarters = 4 + 2 * (i % 7) as u64;
        let jitter = mix(((i as u64) << 40) ^ (t / self.every_ms) as u64) % quarters;
        (since_reset * quarters + jitter) as f64 * 0.25
    }

    /// Writes day `day` as OpenMetrics (seconds with three decimals, `# EOF`) or as the
    /// Prometheus text format (ms).
    pub fn write_day(&self, day: i64, path: &Path, openmetrics: bool) {
        let file = std::fs::File::create(path).unwrap();
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let family = self.metric.strip_suffix("_total").unwrap();
        if openmetrics {
            writeln!(w, "# TYPE {family} counter").unwrap();
        } else {
            writeln!(w, "# TYPE {} counter", self.metric).unwrap();
        }
        let start = day * DAY_MS;
        for i in 0..self.series {
            let head = self.head(i);
            for k in 0..DAY_MS / self.every_ms {
                let t = start + k * self.every_ms;
                let v = self.value(i, t);
                if openmetrics {
                    writeln!(w, "{head} {v} {}.{:03}", t / 1000, t % 1000).unwrap();
                } else {
                    writeln!(w, "{head} {v} {t}").unwrap();
                }
            }
        }
        if openmetrics {
            writeln!(w, "# EOF").unwrap();
        }
        w.flush().unwrap();
    }
}

/// splitmix64's finaliser: a well-spread hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn today() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now.div_euclid(DAY_MS)
}

/// The last day of a kept set, or yesterday for a new one.
pub fn last_day(dir: &Path) -> (i64, bool) {
    match std::fs::read_to_string(dir.join("last-day"))
        .ok()
        .and_then(|d| d.trim().parse().ok())
    {
        Some(d) => (d, true),
        None => (today() - 1, false),
    }
}
