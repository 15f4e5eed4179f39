//! Pay-as-you-go billing (`shared/design/billing.md`): what each pod was configured with,
//! per second of running time, settled hourly.
//!
//! - [`prices`]: the price table, decimals read exactly as written;
//! - [`pods`]: each pod's facts from its kube-state series (latest sample of each, in any
//!   arrival order), its billable size and running interval;
//! - [`settle`]: hourly records and grouped reports over any window.
//!
//! Money and quantities are [`rust_decimal::Decimal`]: a record's cost is its rate times
//! its seconds (milliseconds kept), and a pod's records sum exactly to its charge.

pub mod pods;
pub mod prices;
pub mod settle;

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;

use crate::head::{Head, SeriesKey, DAY_MS};
use crate::partition;
use pods::Gather;
use prices::Prices;
use settle::{By, Usage};

/// Whether billing reads this metric.
pub fn wanted(metric: &str) -> bool {
    metric.starts_with("kube_pod_")
        || metric == "kube_replicaset_owner"
        || metric == "kube_job_owner"
}

/// Adds one stored series' points to `g` (its labels are the files' JSON object).
pub fn add_series(g: &mut Gather, key: &SeriesKey, points: &[(i64, u64)]) {
    if !wanted(&key.metric) {
        return;
    }
    let Ok(labels) = serde_json::from_str::<BTreeMap<String, String>>(&key.labels) else {
        tracing::warn!(metric = %key.metric, labels = %key.labels, "billing skips a series whose labels are not a JSON object of strings");
        return;
    };
    for &(at, bits) in points {
        g.add(&key.metric, &labels, at, f64::from_bits(bits));
    }
}

/// Gathers the pods that may have run in `[start, end)` (ms) from the day partitions
/// under `data_dir`: a running pod's series are written every cycle, so the days of the
/// window, and one either side for pods that ended or began at its edges, hold them.
/// Unreadable files are skipped with a warning (the store moves them aside).
pub fn gather_files(data_dir: &Path, start: i64, end: i64, g: &mut Gather) {
    let first = start.div_euclid(DAY_MS) - 1;
    let last = end.saturating_sub(1).div_euclid(DAY_MS) + 1;
    for day in first..=last {
        for file in partition::files(&partition::day_dir(data_dir, day)) {
            let mut series = crate::head::Day::default();
            if let Err(e) = partition::read_file(&file, &mut series) {
                tracing::warn!(error = %e, "billing skips an unreadable file");
                continue;
            }
            for (key, points) in &series {
                add_series(g, key, points);
            }
        }
    }
}

/// Adds the head's (not yet flushed) billing series to `g`.
pub fn gather_head(head: &Head, g: &mut Gather) {
    head.visit(|key, points| add_series(g, key, points));
}

/// A time as the Prometheus API takes it: unix seconds (fractions allowed) or RFC 3339.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(secs) = s.trim().parse::<f64>() {
        return (secs.is_finite() && secs.abs() < 1e13).then(|| (secs * 1000.0).round() as i64);
    }
    let t = humantime::parse_rfc3339_weak(s.trim()).ok()?;
    Some(telltale_model::time::to_millis(t))
}

/// What the billing endpoint needs.
#[derive(Clone)]
pub struct Api {
    /// The store (its files and head).
    pub store: std::sync::Arc<crate::Store>,
    /// The price table.
    pub prices: std::sync::Arc<Prices>,
}

/// `GET /api/v1/billing?start=&end=&by=`: the report as JSON; 400 with Prometheus's error
/// shape for a bad parameter.
pub async fn handler(
    axum::extract::State(api): axum::extract::State<Api>,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let bad = |message: String| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(
                serde_json::json!({"status": "error", "errorType": "bad_data", "error": message}),
            ),
        )
            .into_response()
    };
    let time = |name: &str| match q.get(name) {
        None => Err(format!("{name} is required (unix seconds or RFC 3339)")),
        Some(v) => parse_time(v)
            .ok_or_else(|| format!("{name}={v:?} is not a time (unix seconds or RFC 3339)")),
    };
    let (start, end) = match (time("start"), time("end")) {
        (Ok(s), Ok(e)) if s < e => (s, e),
        (Ok(_), Ok(_)) => return bad("end must be after start".into()),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let by_text = q.get("by").map_or("namespace", String::as_str);
    let by: By = match by_text.parse() {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let data_dir = api.store.data_dir.clone();
    let gathered = tokio::task::spawn_blocking(move || {
        let mut g = Gather::default();
        gather_files(&data_dir, start, end, &mut g);
        g
    })
    .await;
    let Ok(mut g) = gathered else {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "billing task failed\n",
        )
            .into_response();
    };
    gather_head(&api.store.head(), &mut g);
    let now = telltale_model::time::to_millis(api.store.clock.now());
    let r = report(&g, &api.prices, start, end, now, &by);
    axum::Json(r.json(start, end, by_text)).into_response()
}

/// A report: usage per group over a window, and the total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The price table's currency.
    pub currency: String,
    /// Groups in name order.
    pub groups: BTreeMap<String, Usage>,
    /// Sum over the groups.
    pub total: Usage,
    /// Decimal places money is shown with.
    pub decimals: u32,
}

/// Settles every gathered pod as of `now` and sums `[start, end)` by `by`.
pub fn report(g: &Gather, prices: &Prices, start: i64, end: i64, now: i64, by: &By) -> Report {
    let records: Vec<_> = g
        .pods()
        .iter()
        .flat_map(|p| settle::settle(p, prices, now))
        .collect();
    let groups = settle::report(&records, start, end, by);
    let mut total = Usage::default();
    for u in groups.values() {
        total += u.clone();
    }
    Report {
        currency: prices.currency.clone(),
        groups,
        total,
        decimals: prices.report_decimals,
    }
}

impl Report {
    /// Money as shown: rounded half away from zero to the table's decimals.
    pub fn money(&self, d: Decimal) -> Decimal {
        d.round_dp_with_strategy(
            self.decimals,
            rust_decimal::RoundingStrategy::MidpointAwayFromZero,
        )
    }

    /// CSV: `group,cpu_core_seconds,memory_gib_seconds,gpu_seconds,cost` (interfaces.md).
    pub fn csv(&self) -> String {
        let mut out = String::from("group,cpu_core_seconds,memory_gib_seconds,gpu_seconds,cost\n");
        for (g, u) in &self.groups {
            let quoted = if g.contains([',', '"', '\n']) {
                format!("\"{}\"", g.replace('"', "\"\""))
            } else {
                g.clone()
            };
            out.push_str(&format!(
                "{quoted},{},{},{},{}\n",
                u.cpu_core_seconds.normalize(),
                u.memory_gib_seconds.normalize(),
                u.gpu_seconds.normalize(),
                self.money(u.cost)
            ));
        }
        out
    }

    /// An aligned table with a totals row.
    pub fn table(&self) -> String {
        let row = |g: &str, u: &Usage| {
            [
                g.to_string(),
                u.cpu_core_seconds.round_dp(3).normalize().to_string(),
                u.memory_gib_seconds.round_dp(3).normalize().to_string(),
                u.gpu_seconds.round_dp(3).normalize().to_string(),
                format!("{} {}", self.money(u.cost), self.currency),
            ]
        };
        let mut rows = vec![[
            "GROUP".to_string(),
            "CPU CORE-S".into(),
            "MEMORY GIB-S".into(),
            "GPU-S".into(),
            "COST".into(),
        ]];
        rows.extend(self.groups.iter().map(|(g, u)| row(g, u)));
        rows.push(row("TOTAL", &self.total));
        let widths: Vec<usize> = (0..5)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for r in &rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (s, w))| {
                    if c == 0 {
                        format!("{s:<w$}")
                    } else {
                        format!("{s:>w$}")
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }

    /// A report from the JSON [`Report::json`] writes (what `--url` reads back).
    pub fn from_json(v: &serde_json::Value) -> Option<Report> {
        let data = v.get("data")?;
        let dec = |u: &serde_json::Value, k: &str| -> Option<Decimal> {
            std::str::FromStr::from_str(u.get(k)?.as_str()?).ok()
        };
        let usage = |u: &serde_json::Value| -> Option<Usage> {
            Some(Usage {
                seconds: dec(u, "seconds")?,
                cpu_core_seconds: dec(u, "cpu_core_seconds")?,
                memory_gib_seconds: dec(u, "memory_gib_seconds")?,
                gpu_seconds: dec(u, "gpu_seconds")?,
                cost: dec(u, "cost_exact")?,
            })
        };
        let mut groups = BTreeMap::new();
        for g in data.get("groups")?.as_array()? {
            groups.insert(g.get("group")?.as_str()?.to_string(), usage(g)?);
        }
        Some(Report {
            currency: data.get("currency")?.as_str()?.to_string(),
            groups,
            total: usage(data.get("total")?)?,
            decimals: u32::try_from(data.get("decimals")?.as_u64()?).ok()?,
        })
    }

    /// The JSON the API answers (decimals as strings, exact).
    pub fn json(&self, start: i64, end: i64, by: &str) -> serde_json::Value {
        let usage = |u: &Usage| {
            serde_json::json!({
                "seconds": u.seconds.normalize().to_string(),
                "cpu_core_seconds": u.cpu_core_seconds.normalize().to_string(),
                "memory_gib_seconds": u.memory_gib_seconds.normalize().to_string(),
                "gpu_seconds": u.gpu_seconds.normalize().to_string(),
                "cost": self.money(u.cost).to_string(),
                "cost_exact": u.cost.normalize().to_string(),
            })
        };
        let groups: Vec<_> = self
            .groups
            .iter()
            .map(|(g, u)| {
                let mut v = usage(u);
                v["group"] = serde_json::Value::String(g.clone());
                v
            })
            .collect();
        serde_json::json!({
            "status": "success",
            "data": {
                "currency": self.currency,
                "start": start as f64 / 1000.0,
                "end": end as f64 / 1000.0,
                "by": by,
                "decimals": self.decimals,
                "groups": groups,
                "total": usage(&self.total),
            }
        })
    }
}

#[cfg(test)]
mod tests;
