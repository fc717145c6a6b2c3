//! Metric queries: the v1 `/api/v1/query` and v2 `/api/v2/query/timeseries` APIs, their parsers, and the
//! [`MetricProvider`] for canary analysis.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use gantry_core::analysis::{MetricError, MetricProvider, MetricQuery, Series};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::Datadog;
use crate::error::DatadogError;

/// Which metrics API to query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsApi {
    /// `GET /api/v1/query` (seconds in, milliseconds out; `pointlist`).
    #[default]
    V1,
    /// `POST /api/v2/query/timeseries` (milliseconds; `times` and `values`).
    V2,
}

/// Datadog as the [`MetricProvider`] of a canary analysis: each query is a Datadog metric query for one group
/// (`avg:trace.http.request.duration{service:web,version:{{version}}}`), over the analysis window.
///
/// Missing data is [`MetricError::NoData`]; outages, timeouts and rate limits that outlast the retries are
/// [`MetricError::Unavailable`]; refusals (bad query, bad keys) are [`MetricError::Refused`]. None of them passes.
#[derive(Clone, Debug)]
pub struct DatadogMetrics {
    client: Datadog,
    api: MetricsApi,
}

impl DatadogMetrics {
    /// Queries through `client` with the v1 API.
    pub fn new(client: Datadog) -> Self {
        Self { client, api: MetricsApi::V1 }
    }

    /// Uses another API version.
    #[must_use]
    pub fn api(mut self, api: MetricsApi) -> Self {
        self.api = api;
        self
    }

    /// The points of `query` from `from` to `to`, in time order. A query that returns several series is refused
    /// ([`DatadogError::ManySeries`]): aggregate it to one.
    pub async fn points(
        &self,
        query: &str,
        from: SystemTime,
        to: SystemTime,
        step: Duration,
    ) -> Result<Series, DatadogError> {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let body = match self.api {
            MetricsApi::V1 => {
                let params =
                    [("from", secs(from).to_string()), ("to", secs(to).to_string()), ("query", query.to_owned())];
                let body = self.client.send("query metrics", Method::GET, "/api/v1/query", &params, None, true).await?;
                return one(parse_v1(&body)?, query);
            }
            MetricsApi::V2 => json!({"data": {"type": "timeseries_request", "attributes": {
                "from": secs(from) * 1000, "to": secs(to) * 1000,
                "interval": (step.as_millis() as u64).max(1000),
                "queries": [{"data_source": "metrics", "name": "a", "query": query}],
                "formulas": [{"formula": "a"}]
            }}}),
        };
        let answer =
            self.client.send("query metrics", Method::POST, "/api/v2/query/timeseries", &[], Some(&body), true).await?;
        one(parse_v2(&answer)?, query)
    }
}

/// The one series of an answer (none: an empty series).
fn one(mut series: Vec<Series>, query: &str) -> Result<Series, DatadogError> {
    match series.len() {
        0 => Ok(Series::default()),
        1 => Ok(series.swap_remove(0)),
        count => Err(DatadogError::ManySeries { count, query: query.to_owned() }),
    }
}

fn shape(why: impl Into<String>) -> DatadogError {
    DatadogError::Shape { action: "query metrics", why: why.into() }
}

/// The series of a v1 answer: `series[].pointlist` of `[ms, value-or-null]`; null points are left out.
pub fn parse_v1(body: &Value) -> Result<Vec<Series>, DatadogError> {
    if let Some(status) = body.get("status").and_then(Value::as_str)
        && status != "ok"
    {
        let message = body.get("error").and_then(Value::as_str).unwrap_or(status);
        return Err(shape(format!("status {status}: {message}")));
    }
    let series = body.get("series").and_then(Value::as_array).ok_or_else(|| shape("no `series` array"))?;
    series
        .iter()
        .map(|s| {
            let points =
                s.get("pointlist").and_then(Value::as_array).ok_or_else(|| shape("a series without `pointlist`"))?;
            let mut out = Vec::with_capacity(points.len());
            for p in points {
                let (Some(ms), Some(value)) = (p.get(0).and_then(Value::as_f64), p.get(1)) else {
                    return Err(shape(format!("a point that is not [time, value]: {p}")));
                };
                if let Some(v) = value.as_f64() {
                    out.push((UNIX_EPOCH + Duration::from_millis(ms as u64), v));
                }
            }
            Ok(Series::new(out))
        })
        .collect()
}

/// The series of a v2 answer: `data.attributes.times` (ms) and one `values` row per series; nulls left out.
pub fn parse_v2(body: &Value) -> Result<Vec<Series>, DatadogError> {
    let attributes = body.pointer("/data/attributes").ok_or_else(|| shape("no `data.attributes`"))?;
    let times = attributes.get("times").and_then(Value::as_array).ok_or_else(|| shape("no `times`"))?;
    let rows = attributes.get("values").and_then(Value::as_array).ok_or_else(|| shape("no `values`"))?;
    rows.iter()
        .map(|row| {
            let row = row.as_array().ok_or_else(|| shape("a `values` row that is not an array"))?;
            if row.len() != times.len() {
                return Err(shape(format!("{} values for {} times", row.len(), times.len())));
            }
            Ok(Series::new(
                times
                    .iter()
                    .zip(row)
                    .filter_map(|(t, v)| Some((UNIX_EPOCH + Duration::from_millis(t.as_u64()?), v.as_f64()?)))
                    .collect(),
            ))
        })
        .collect()
}

#[async_trait]
impl MetricProvider for DatadogMetrics {
    async fn query(&self, query: &MetricQuery) -> Result<Series, MetricError> {
        match self.points(&query.query, query.start, query.end, query.step).await {
            Ok(series) if series.points.is_empty() => Err(MetricError::NoData),
            Ok(series) => Ok(series),
            Err(e) if e.is_transient() => Err(MetricError::unavailable(e)),
            Err(e) => Err(MetricError::refused(e)),
        }
    }
}
