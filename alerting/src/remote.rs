//! Writing back what Prometheus's rule manager writes to its TSDB, over remote write 1.0
//! (`--remote-write-url`): recording rules' results, and `ALERTS` and `ALERTS_FOR_STATE`
//! for every pending and firing alarm of each evaluated rule-file group, at the
//! evaluation's timestamp.
//!
//! A failed write is logged and counted, never retried: the next evaluation writes
//! fresh values, as Prometheus's rule manager does.

use std::collections::BTreeMap;
use std::time::Duration;

use telltale_model::prom::METRIC_NAME;
use telltale_model::remote::{TimeSeries, WriteRequest};

use crate::alarm::{Alarm, AlarmState};
use crate::http;
use crate::query::Sample;

/// A remote-write destination.
#[derive(Debug, Clone)]
pub struct Writer {
    client: http::Client,
    url: String,
    timeout: Duration,
}

impl Writer {
    /// Writes to `url` (`http://host:9201/api/v1/write`).
    pub fn new(client: http::Client, url: &str, timeout: Duration) -> Writer {
        Writer {
            client,
            url: url.to_owned(),
            timeout,
        }
    }

    /// Sends `series` in one request; nothing to send is not a request.
    pub async fn write(&self, series: Vec<TimeSeries>) -> Result<(), http::Error> {
        if series.is_empty() {
            return Ok(());
        }
        let body = WriteRequest { timeseries: series }.encode_body();
        self.client
            .send_with(
                "POST",
                &self.url,
                &[
                    ("content-type", "application/x-protobuf"),
                    ("content-encoding", "snappy"),
                    ("x-prometheus-remote-write-version", "0.1.0"),
                ],
                body,
                self.timeout,
            )
            .await
            .map(|_| ())
    }
}

/// One series from labels (sorted by name, as remote write asks) and one sample.
fn series(labels: &BTreeMap<String, String>, t: i64, v: f64) -> TimeSeries {
    let pairs: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    TimeSeries::new(&pairs, &[(t, v)])
}

/// A recording rule's result renamed to `record`, with the rule's `labels` applied.
pub fn recorded(
    record: &str,
    labels: &[(String, String)],
    result: &[Sample],
    t: i64,
) -> Vec<TimeSeries> {
    result
        .iter()
        .map(|s| {
            let mut l = s.labels.clone();
            for (k, v) in labels {
                if v.is_empty() {
                    l.remove(k);
                } else {
                    l.insert(k.clone(), v.clone());
                }
            }
            l.insert(METRIC_NAME.into(), record.to_owned());
            series(&l, t, s.value)
        })
        .collect()
}

/// `ALERTS{alertstate}` = 1 and `ALERTS_FOR_STATE` = the time it became active (unix
/// seconds) for each pending or firing alarm.
pub fn alerts_series<'a>(alarms: impl Iterator<Item = &'a Alarm>, t: i64) -> Vec<TimeSeries> {
    let mut out = Vec::new();
    for a in alarms {
        let state = match a.state {
            AlarmState::Pending => "pending",
            AlarmState::Firing => "firing",
            _ => continue,
        };
        let mut l = a.labels.clone();
        l.insert(METRIC_NAME.into(), "ALERTS_FOR_STATE".into());
        out.push(series(&l, t, a.active_at as f64 / 1000.0));
        l.insert(METRIC_NAME.into(), "ALERTS".into());
        l.insert("alertstate".into(), state.into());
        out.push(series(&l, t, 1.0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_and_alert_series_are_named_and_labelled_as_prometheus_writes_them() {
        let s = Sample {
            labels: [("__name__", "x"), ("job", "a"), ("drop", "me")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            value: 2.5,
        };
        let r = recorded(
            "job:x:sum",
            &[("drop".into(), String::new()), ("team".into(), "t".into())],
            &[s],
            1000,
        );
        let names: Vec<(&str, &str)> = r[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            names,
            [("__name__", "job:x:sum"), ("job", "a"), ("team", "t")]
        );
        assert_eq!(
            (r[0].samples[0].timestamp, r[0].samples[0].value),
            (1000, 2.5)
        );
    }
}
