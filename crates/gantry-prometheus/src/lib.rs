//! Gantry's Prometheus integration: [`Prometheus`], a [`MetricProvider`] over PromQL range queries
//! (`/api/v1/query_range`), for canary analysis. A query names one group's series, e.g.
//! `avg(rate(http_request_duration_seconds_sum{service="web",version="{{version}}"}[1m]))`; it must return one
//! series (aggregate it), and an empty result is "no data", never a pass.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use gantry_core::analysis::{Analysis, ClassicJudge, Direction, Metric};
//! use gantry_prometheus::Prometheus;
//!
//! let prometheus = Prometheus::new("http://prometheus.monitoring:9090")?;
//! let analysis = Analysis::new(Arc::new(prometheus), Arc::new(ClassicJudge::new()))
//!     .metric(Metric::new("latency", r#"avg(http_request_duration_seconds{service="web",version="{{version}}"})"#, Direction::Increase));
//! # let _ = analysis; Ok(()) }
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use gantry_core::Secret;
use gantry_core::analysis::{MetricError, MetricProvider, MetricQuery, Series};
use gantry_core::http::{Attempt, Policy, retry_after};
use reqwest::Url;
use serde_json::Value;

/// What went wrong talking to Prometheus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrometheusError {
    /// The URL is not valid.
    #[error("invalid Prometheus URL `{0}`")]
    Url(String),
    /// Prometheus could not be reached, or answered too late.
    #[error("Prometheus could not be reached: {0}")]
    Unreachable(String),
    /// Prometheus answered with an error (`errorType` and `error`).
    #[error("Prometheus refused the query ({status} {kind}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Prometheus' `errorType` (`bad_data`, `execution`, `timeout`, ...).
        kind: String,
        /// Prometheus' `error`.
        message: String,
    },
    /// The answer was not shaped as documented, or held more than one series.
    #[error("unexpected answer from Prometheus: {0}")]
    Shape(String),
}

impl PrometheusError {
    /// Whether trying again may help (unreachable, 503, a query timeout).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Refused { status, kind, .. } => {
                *status >= 500 || *status == 429 || kind == "timeout" || kind == "unavailable"
            }
            Self::Url(_) | Self::Shape(_) => false,
        }
    }
}

/// A Prometheus server's HTTP API.
#[derive(Clone)]
pub struct Prometheus {
    http: reqwest::Client,
    base: Url,
    token: Option<Secret>,
    policy: Policy,
}

static RUSTLS: std::sync::Once = std::sync::Once::new();

impl Prometheus {
    /// The server at `url` (`http://prometheus:9090`).
    pub fn new(url: &str) -> Result<Self, PrometheusError> {
        RUSTLS.call_once(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let base = Url::parse(url).map_err(|_| PrometheusError::Url(url.to_owned()))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("gantry-prometheus/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PrometheusError::Unreachable(e.to_string()))?;
        let policy = Policy::new().attempts(3).timeout(Duration::from_secs(30));
        Ok(Self { http, base, token: None, policy })
    }

    /// Sends `Authorization: Bearer <token>` (a managed Prometheus, a proxy).
    #[must_use]
    pub fn bearer(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    /// The timeout of each request (default 30 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.policy = self.policy.timeout(timeout);
        self
    }

    /// How many times a request is made at most (default 3).
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.policy = self.policy.attempts(attempts);
        self
    }

    /// The whole HTTP policy at once (defaults: 3 attempts of at most 30 s, pauses from 200 ms doubling to 5 s
    /// with jitter, a `Retry-After` honoured up to 30 s).
    #[must_use]
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The series of a range query from `start` to `end` at `step`, as Prometheus returns them.
    pub async fn query_range(
        &self,
        query: &str,
        start: SystemTime,
        end: SystemTime,
        step: Duration,
    ) -> Result<Vec<Series>, PrometheusError> {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let url = self.base.join("api/v1/query_range").map_err(|e| PrometheusError::Url(e.to_string()))?;
        let form = [
            ("query", query.to_owned()),
            ("start", format!("{:.3}", secs(start))),
            ("end", format!("{:.3}", secs(end))),
            ("step", format!("{}s", step.as_secs().max(1))),
        ];
        let authorization = match &self.token {
            Some(token) => {
                let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| PrometheusError::Url("a token a header cannot carry".into()))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        self.policy
            .run("query Prometheus", |_| {
                let mut request = self.http.post(url.clone()).timeout(self.policy.attempt_timeout()).form(&form);
                if let Some(value) = &authorization {
                    request = request.header(reqwest::header::AUTHORIZATION, value.clone());
                }
                async move {
                    let response = match request.send().await {
                        Ok(response) => response,
                        Err(e) => {
                            let why = if e.is_timeout() { "timed out".into() } else { e.without_url().to_string() };
                            return Attempt::Retry(PrometheusError::Unreachable(why));
                        }
                    };
                    let status = response.status().as_u16();
                    let wait = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after(v, SystemTime::now()));
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    if body.get("status").and_then(Value::as_str) == Some("success") {
                        return match parse_matrix(&body) {
                            Ok(series) => Attempt::Done(series),
                            Err(e) => Attempt::Failed(e),
                        };
                    }
                    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                    let error = PrometheusError::Refused { status, kind: text("errorType"), message: text("error") };
                    match wait {
                        Some(wait) if status == 429 || status == 503 => Attempt::RetryAfter(error, wait),
                        _ if error.is_transient() => Attempt::Retry(error),
                        _ => Attempt::Failed(error),
                    }
                }
            })
            .await
    }
}

/// The series of a `matrix` result: `data.result[].values` of `[seconds, "value"]` (values are strings, `NaN` and
/// `+Inf` included).
pub fn parse_matrix(body: &Value) -> Result<Vec<Series>, PrometheusError> {
    let data = body.get("data").ok_or_else(|| PrometheusError::Shape("no `data`".into()))?;
    if data.get("resultType").and_then(Value::as_str) != Some("matrix") {
        return Err(PrometheusError::Shape(format!("a `{}` result, not a matrix", data["resultType"])));
    }
    let result =
        data.get("result").and_then(Value::as_array).ok_or_else(|| PrometheusError::Shape("no `result`".into()))?;
    result
        .iter()
        .map(|series| {
            let values = series
                .get("values")
                .and_then(Value::as_array)
                .ok_or_else(|| PrometheusError::Shape("a series without `values`".into()))?;
            values
                .iter()
                .map(|p| {
                    let t = p
                        .get(0)
                        .and_then(Value::as_f64)
                        .ok_or_else(|| PrometheusError::Shape(format!("a point without a time: {p}")))?;
                    let v = p
                        .get(1)
                        .and_then(Value::as_str)
                        .ok_or_else(|| PrometheusError::Shape(format!("a point without a value: {p}")))?;
                    let v: f64 = v.parse().map_err(|_| PrometheusError::Shape(format!("not a number: {v}")))?;
                    Ok((UNIX_EPOCH + Duration::from_secs_f64(t), v))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Series::new)
        })
        .collect()
}

#[async_trait]
impl MetricProvider for Prometheus {
    async fn query(&self, query: &MetricQuery) -> Result<Series, MetricError> {
        match self.query_range(&query.query, query.start, query.end, query.step).await {
            Ok(mut series) => match series.len() {
                0 => Err(MetricError::NoData),
                1 if series[0].points.is_empty() => Err(MetricError::NoData),
                1 => Ok(series.swap_remove(0)),
                n => Err(MetricError::refused(format!(
                    "the query returns {n} series; aggregate it to one (e.g. `avg(...)`): {}",
                    query.query
                ))),
            },
            Err(e) if e.is_transient() => Err(MetricError::unavailable(e)),
            Err(e) => Err(MetricError::refused(e)),
        }
    }
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("url", &self.base.as_str())
            .field("token", &self.token)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrices_parse_with_string_values() {
        let body = serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"service": "web"}, "values": [[1700000000, "0.1"], [1700000060.5, "NaN"], [1700000120, "+Inf"]]}
        ]}});
        let series = parse_matrix(&body).unwrap();
        let values = series[0].values();
        assert_eq!(values[0], 0.1);
        assert!(values[1].is_nan() && values[2].is_infinite());
        assert_eq!(series[0].points[1].0, UNIX_EPOCH + Duration::from_secs_f64(1_700_000_060.5));
        let vector = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": []}});
        assert!(parse_matrix(&vector).is_err());
    }
}
