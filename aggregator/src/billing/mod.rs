//! Pay-as-you-go billing (the rules users read are in `docs/billing.md`): what each pod was
//! configured with, per second of running time, settled hourly.
//!
//! - [`prices`]: the price table, decimals read exactly as written;
//! - [`pods`]: each pod's facts from its kube-state series (latest sample of each, in any
//!   arrival order), its billable size and running interval;
//! - [`settle`]: hourly records and grouped reports over any window;
//! - [`records`]: the record files, one per settled hour;
//! - [`frontier`]: where settlement stands, and the store's watcher that marks hours late
//!   samples change;
//! - [`api`]: the `GET /api/v1/billing` handler;
//! - here: gathering from the files and the head, and the [`Ledger`] that settles closed
//!   hours (and again those late samples touch).
//!
//! Money and quantities are [`rust_decimal::Decimal`]: a record's cost is its rate times
//! its seconds (milliseconds kept), and a pod's records sum exactly to its charge.

pub mod api;
pub mod frontier;
pub mod pods;
pub mod prices;
pub mod records;
pub mod settle;

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;

use telltale_model::calendar::{month_start, DAY_MS, HOUR_MS};

use crate::store::head::SeriesKey;
use crate::store::{layout, partition, Store};
use frontier::{read_ms, write_ms};
pub use frontier::{saved_frontier, Frontier, LateSamples, GRACE_MS, LATE_MS};
use pods::{wanted, Gather};
pub use prices::Prices;
pub use settle::By;
use settle::Usage;

/// Adds one stored series' points to `g` (its labels are the files' JSON object).
pub fn add_series(g: &mut Gather, key: &SeriesKey, points: &[(i64, u64)]) {
    if !wanted(&key.metric) {
        return;
    }
    let Ok(labels) = serde_json::from_str::<BTreeMap<String, String>>(&key.labels) else {
        tracing::warn!(metric = %key.metric, labels = %key.labels, "billing skips a series whose labels are not a JSON object of strings");
        return;
    };
    // Billing keeps each series' newest sample (and when it was seen): the others
    // change nothing.
    if let Some(&(at, bits)) = points.iter().max_by_key(|p| p.0) {
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
        for file in layout::parquet_files(&layout::day_dir(data_dir, day)) {
            let read = partition::newest(&file, wanted, |key, at, bits| {
                add_series(g, key, &[(at, bits)]);
            });
            if let Err(e) = read {
                tracing::warn!(error = %e, "billing skips an unreadable file");
            }
        }
    }
}

/// Adds the billing series the store's head holds (not yet flushed) to `g`.
pub fn gather_head(store: &Store, g: &mut Gather) {
    store.visit_head(|key, points| add_series(g, key, points));
}

/// Settles closed hours into record files, and settles again what late samples mark.
pub struct Ledger {
    data_dir: std::path::PathBuf,
    prices: std::sync::Arc<Prices>,
}

impl Ledger {
    /// A ledger over `data_dir`.
    pub fn new(data_dir: &Path, prices: std::sync::Arc<Prices>) -> Ledger {
        Ledger {
            data_dir: data_dir.to_owned(),
            prices,
        }
    }

    /// Where settlement starts: the saved frontier, else the first day with data, else
    /// the hour closing now.
    pub fn start(&self, frontier: &Frontier, now: i64) {
        let closed = (now - GRACE_MS).div_euclid(HOUR_MS) * HOUR_MS;
        let next = read_ms(&layout::billing_settled(&self.data_dir))
            .or_else(|| partition::first_day(&self.data_dir).map(|d| d * DAY_MS))
            .unwrap_or(closed)
            .min(closed);
        frontier
            .next
            .store(next, std::sync::atomic::Ordering::Relaxed);
        if let Some(m) = read_ms(&layout::billing_marks(&self.data_dir)) {
            frontier
                .resettle
                .fetch_min(m, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Settles every closed hour from the frontier (or the earliest marked hour) as of
    /// `now`, reading the files and `head`; returns the hours written.
    pub fn settle(
        &self,
        frontier: &Frontier,
        head: &dyn Fn(&mut Gather),
        now: i64,
    ) -> Result<usize, partition::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let upto = (now - GRACE_MS).div_euclid(HOUR_MS) * HOUR_MS;
        let saved_mark = read_ms(&layout::billing_marks(&self.data_dir));
        let marked = frontier.resettle.swap(i64::MAX, Relaxed);
        let from = frontier
            .next()
            .min(marked)
            .min(saved_mark.unwrap_or(i64::MAX));
        let written = self.settle_range(from, upto, head, now).inspect_err(|_| {
            // Nothing is lost: the marks wait for the next pass.
            frontier.resettle.fetch_min(marked, Relaxed);
        })?;
        let io = |source| partition::Error::Io {
            path: layout::billing_settled(&self.data_dir),
            source,
        };
        if upto > frontier.next() || from < frontier.next() {
            write_ms(
                &layout::billing_settled(&self.data_dir),
                upto.max(frontier.next()),
            )
            .map_err(io)?;
            frontier.next.fetch_max(upto, Relaxed);
        }
        if saved_mark.is_some() && read_ms(&layout::billing_marks(&self.data_dir)) == saved_mark {
            std::fs::remove_file(layout::billing_marks(&self.data_dir)).map_err(io)?;
        }
        Ok(written)
    }

    /// Writes the record files of the hours in `[from, upto)`, a day of files at a time.
    fn settle_range(
        &self,
        from: i64,
        upto: i64,
        head: &dyn Fn(&mut Gather),
        now: i64,
    ) -> Result<usize, partition::Error> {
        let mut written = 0;
        let mut day = from.div_euclid(DAY_MS);
        while day * DAY_MS < upto {
            let (lo, hi) = ((day * DAY_MS).max(from), ((day + 1) * DAY_MS).min(upto));
            if lo < hi {
                let mut g = Gather::default();
                // The head before the files: a sample flushed in between is then in
                // one or the other (see `Store::visit_head`).
                head(&mut g);
                gather_files(&self.data_dir, lo, hi, &mut g);
                let mut hours: BTreeMap<i64, Vec<settle::Record>> = BTreeMap::new();
                let mut h = lo.div_euclid(HOUR_MS) * HOUR_MS;
                while h < hi {
                    hours.insert(h, Vec::new());
                    h += HOUR_MS;
                }
                for pod in g.pods() {
                    for r in settle::settle(&pod, &self.prices, now) {
                        if let Some(v) = hours.get_mut(&r.hour) {
                            v.push(r);
                        }
                    }
                }
                for (hour, records) in &hours {
                    records::write_hour(&self.data_dir, *hour, records)?;
                    written += 1;
                }
            }
            day += 1;
        }
        Ok(written)
    }

    /// This hour's and this month's cost by namespace, as of `now`.
    pub fn costs(
        &self,
        settled_below: i64,
        head: &dyn Fn(&mut Gather),
        now: i64,
    ) -> Result<(Report, Report), partition::Error> {
        let month = month_start(now);
        let hour = now.div_euclid(HOUR_MS) * HOUR_MS;
        let of = |window| {
            report_of(
                &self.data_dir,
                &self.prices,
                settled_below,
                Some(head),
                window,
                now,
                &By::Namespace,
            )
        };
        Ok((of((hour, now))?, of((month, now))?))
    }
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

/// The cost gauges of this hour's and this month's reports by namespace, as
/// (namespace, period, currency, cost): the `most` costliest namespaces of the month by
/// name, the rest summed as `_other`.
pub fn cost_gauges(
    hour: &Report,
    month: &Report,
    most: usize,
) -> Vec<(String, &'static str, String, f64)> {
    use rust_decimal::prelude::ToPrimitive;
    let mut by_cost: Vec<(&String, Decimal)> =
        month.groups.iter().map(|(n, u)| (n, u.cost)).collect();
    by_cost.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let named: std::collections::BTreeSet<&String> =
        by_cost.iter().take(most).map(|(n, _)| *n).collect();
    let mut out = Vec::new();
    for (period, report) in [("hour", hour), ("month", month)] {
        let mut sums: BTreeMap<&str, Decimal> = BTreeMap::new();
        for (ns, u) in &report.groups {
            let key = if named.contains(ns) {
                ns.as_str()
            } else {
                "_other"
            };
            *sums.entry(key).or_default() += u.cost;
        }
        for (ns, cost) in sums {
            out.push((
                ns.to_owned(),
                period,
                report.currency.clone(),
                cost.to_f64().unwrap_or(f64::NAN),
            ));
        }
    }
    out
}

/// The records of the gathered pods as of `now`, in hours from `from` (ms) on.
pub fn live_records(g: &Gather, prices: &Prices, now: i64, from: i64) -> Vec<settle::Record> {
    g.pods()
        .iter()
        .flat_map(|p| settle::settle(p, prices, now))
        .filter(|r| r.hour >= from)
        .collect()
}

/// A report of usage per group.
fn report(groups: BTreeMap<String, Usage>, prices: &Prices) -> Report {
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

/// The report of `[start, end)` by `by` from a data directory: settled hours (below
/// `frontier`) summed from their record files, later ones settled on the spot from the
/// sample files (and `head`, when given).
pub fn report_of(
    data_dir: &Path,
    prices: &Prices,
    frontier: i64,
    head: Option<&dyn Fn(&mut Gather)>,
    (start, end): (i64, i64),
    now: i64,
    by: &By,
) -> Result<Report, partition::Error> {
    let mut groups = BTreeMap::new();
    if start < frontier {
        records::sum_hours(data_dir, (start, end.min(frontier)), by, &mut groups)?;
    }
    if end > frontier {
        let from = start.max(frontier);
        let mut g = Gather::default();
        // The head before the files, as when settling.
        if let Some(head) = head {
            head(&mut g);
        }
        gather_files(data_dir, from, end, &mut g);
        let hour = from.div_euclid(HOUR_MS) * HOUR_MS;
        let live = live_records(&g, prices, now, hour);
        for (group, u) in settle::report(&live, from, end, by) {
            *groups.entry(group).or_default() += u;
        }
    }
    Ok(report(groups, prices))
}

impl Report {
    /// Money as shown: rounded half away from zero to the table's decimals.
    pub fn money(&self, d: Decimal) -> Decimal {
        d.round_dp_with_strategy(
            self.decimals,
            rust_decimal::RoundingStrategy::MidpointAwayFromZero,
        )
    }

    /// CSV: `group,cpu_core_seconds,memory_gib_seconds,gpu_seconds,cost` (docs/interfaces.md).
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

    /// A Parquet file of the report: one row per group (the CSV's columns, then
    /// `seconds` and `currency`), quantities and exact cost as decimal(38, 18).
    pub fn parquet(&self) -> Result<Vec<u8>, String> {
        use arrow_array::builder::{Decimal128Builder, StringBuilder};
        use arrow_array::{ArrayRef, RecordBatch};
        use arrow_schema::{DataType, Field, Schema};
        let dec = DataType::Decimal128(38, records::SCALE as i8);
        let names = [
            "cpu_core_seconds",
            "memory_gib_seconds",
            "gpu_seconds",
            "cost",
            "seconds",
        ];
        let mut fields = vec![Field::new("group", DataType::Utf8, false)];
        fields.extend(names.iter().map(|n| Field::new(*n, dec.clone(), false)));
        fields.push(Field::new("currency", DataType::Utf8, false));
        let schema = std::sync::Arc::new(Schema::new(fields));
        let (mut group, mut currency) = (StringBuilder::new(), StringBuilder::new());
        let mut cols: Vec<Decimal128Builder> =
            names.iter().map(|_| Decimal128Builder::new()).collect();
        for (g, u) in &self.groups {
            group.append_value(g);
            currency.append_value(&self.currency);
            let values = [
                u.cpu_core_seconds,
                u.memory_gib_seconds,
                u.gpu_seconds,
                u.cost,
                u.seconds,
            ];
            for (b, v) in cols.iter_mut().zip(values) {
                b.append_value(records::to_i128(v));
            }
        }
        let mut columns: Vec<ArrayRef> = vec![std::sync::Arc::new(group.finish())];
        for b in &mut cols {
            let a = b
                .finish()
                .with_precision_and_scale(38, records::SCALE as i8)
                .map_err(|e| e.to_string())?;
            columns.push(std::sync::Arc::new(a));
        }
        columns.push(std::sync::Arc::new(currency.finish()));
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(partition::properties()))
                .map_err(|e| e.to_string())?;
        w.write(&batch).map_err(|e| e.to_string())?;
        w.close().map_err(|e| e.to_string())?;
        Ok(out)
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
