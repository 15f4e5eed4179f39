//! A query node's source (`--read-only --ingesters URL,...`): the files it pulled from the
//! bucket, plus the newest samples of the ingesting aggregators, asked for over remote
//! read (`POST /api/v1/read`), so answers reach "now" before those samples are flushed
//! and uploaded.
//!
//! Only the last `window` of a selection is asked of the ingesters: older samples are in
//! the bucket once uploaded. Series are merged by labels and samples at the same time
//! kept once (an ingester holds what the bucket holds too, until its WAL lets go). An
//! ingester that does not answer is logged and left out: the answer is then what the
//! bucket and the other ingesters hold.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher};
use telltale_model::remote_read::{LabelMatcher, MatchType, Query, ReadRequest, ReadResponse};

use super::error::Error;
use super::rollup::{Fields, Resolution, RollupSeries};
use super::source::Source;
use super::value::{Labels, Series};

/// The bucket's files and the ingesters' newest samples.
pub struct WithIngesters {
    /// The local store (files pulled from the bucket).
    pub local: Arc<dyn Source + Send + Sync>,
    /// Base URLs of the ingesting aggregators (`http://host:9201`).
    pub ingesters: Vec<String>,
    /// How far back from now the ingesters are asked (ms).
    pub window: i64,
    /// Now, in ms.
    pub now: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// The runtime the HTTP client runs on (queries run on blocking threads).
    pub runtime: tokio::runtime::Handle,
    /// The HTTP client.
    pub client: reqwest::Client,
}

impl WithIngesters {
    /// Asks every ingester for the series of `matchers` in `[mint, maxt]`.
    fn ask(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let query = Query {
            start_timestamp_ms: mint,
            end_timestamp_ms: maxt,
            matchers: matchers.iter().map(wire).collect(),
            hints: None,
        };
        let body = ReadRequest {
            queries: vec![query],
            accepted_response_types: vec![],
        }
        .encode_body();
        let mut out = Vec::new();
        for base in &self.ingesters {
            let url = format!("{}/api/v1/read", base.trim_end_matches('/'));
            let asked = self.runtime.block_on(async {
                let resp = self
                    .client
                    .post(&url)
                    .header("Content-Type", telltale_model::remote::CONTENT_TYPE)
                    .header("Content-Encoding", telltale_model::remote::CONTENT_ENCODING)
                    .header(
                        "X-Prometheus-Remote-Read-Version",
                        telltale_model::remote_read::VERSION,
                    )
                    .timeout(Duration::from_secs(30))
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = resp.status();
                let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&bytes).trim()
                    ));
                }
                ReadResponse::decode_body(&bytes).map_err(|e| e.to_string())
            });
            match asked {
                Ok(resp) => {
                    for ts in resp.results.into_iter().flat_map(|r| r.timeseries) {
                        let labels =
                            Labels::new(ts.labels.into_iter().map(|l| (l.name, l.value)).collect());
                        out.push(Series {
                            labels: Arc::new(labels),
                            points: ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(ingester = %base, error = %e, "an ingester did not answer; its newest samples are left out")
                }
            }
        }
        out
    }
}

/// A matcher as remote read sends it.
fn wire(m: &Matcher) -> LabelMatcher {
    let t = match &m.op {
        MatchOp::Equal => MatchType::Eq,
        MatchOp::NotEqual => MatchType::Neq,
        MatchOp::Re(_) => MatchType::Re,
        MatchOp::NotRe(_) => MatchType::Nre,
    };
    LabelMatcher {
        r#type: t as i32,
        name: m.name.clone(),
        value: m.value.clone(),
    }
}

/// `more` merged into `into` by labels: points sorted by time, one per time (`into`'s
/// first), series sorted by labels.
fn merge(into: Vec<Series>, more: Vec<Series>) -> Vec<Series> {
    if more.is_empty() {
        return into;
    }
    let mut by: HashMap<Arc<Labels>, Vec<(i64, f64)>> = HashMap::new();
    for s in into.into_iter().chain(more) {
        by.entry(s.labels).or_default().extend(s.points);
    }
    let mut out: Vec<Series> = by
        .into_iter()
        .map(|(labels, mut points)| {
            // Stable: of two points at one time, the local one stays.
            points.sort_by_key(|p| p.0);
            points.dedup_by_key(|p| p.0);
            Series { labels, points }
        })
        .collect();
    out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
    out
}

impl Source for WithIngesters {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error> {
        let local = self.local.select(matchers, mint, maxt)?;
        let from = mint.max((self.now)() - self.window);
        if from > maxt || self.ingesters.is_empty() {
            return Ok(local);
        }
        Ok(merge(local, self.ask(matchers, from, maxt)))
    }

    fn select_rollup(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        resolution: Resolution,
        fields: Fields,
    ) -> Result<Vec<RollupSeries>, Error> {
        // Rollups cover complete days, which are in the bucket.
        self.local
            .select_rollup(matchers, mint, maxt, resolution, fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pod: &str, points: &[(i64, f64)]) -> Series {
        Series {
            labels: Arc::new(Labels::new(vec![
                ("__name__".into(), "x".into()),
                ("pod".into(), pod.into()),
            ])),
            points: points.to_vec(),
        }
    }

    #[test]
    fn samples_at_one_time_are_kept_once_and_the_local_one_wins() {
        let local = vec![series("b", &[(1, 1.0), (2, 2.0)])];
        let remote = vec![
            series("b", &[(2, 20.0), (3, 3.0)]),
            series("a", &[(5, 5.0)]),
        ];
        let got: Vec<(String, Vec<(i64, f64)>)> = merge(local, remote)
            .into_iter()
            .map(|s| (s.labels.get("pod").to_string(), s.points))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), vec![(5, 5.0)]),
                ("b".to_string(), vec![(1, 1.0), (2, 2.0), (3, 3.0)]),
            ]
        );
    }
}
