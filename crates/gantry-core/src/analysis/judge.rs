//! The `Judge` trait: from both groups' series to a verdict.

use std::fmt;

use super::metric::{Metric, MetricError, Series};
use super::verdict::{MetricOutcome, Verdict};

/// One metric's data for a judge: both groups' series, or why the provider has none (no data in the window, or a
/// failed or refused query: a judge tells them apart).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MetricData {
    /// The metric as configured.
    pub metric: Metric,
    /// The queries as sent, baseline then canary.
    pub queries: (String, String),
    /// The baseline's series, or why there is none.
    pub baseline: Result<Series, MetricError>,
    /// The canary's series, or why there is none.
    pub canary: Result<Series, MetricError>,
    /// For a metric judged per request ([`Metric::per_requests`]): each group's requests, baseline then canary.
    pub requests: Option<(Result<Series, MetricError>, Result<Series, MetricError>)>,
    /// For a metric judged against the routed share ([`Metric::share_as_routed`]): the canary's share of the
    /// traffic from the times it changed ([`TrafficLog::changes`](super::TrafficLog::changes)).
    pub routed: Vec<(std::time::SystemTime, f64)>,
}

impl MetricData {
    /// Data for a metric.
    pub fn new(
        metric: Metric,
        queries: (String, String),
        baseline: Result<Series, MetricError>,
        canary: Result<Series, MetricError>,
    ) -> Self {
        Self { metric, queries, baseline, canary, requests: None, routed: Vec::new() }
    }

    /// With each group's requests, for a metric judged per request.
    #[must_use]
    pub fn with_requests(mut self, baseline: Result<Series, MetricError>, canary: Result<Series, MetricError>) -> Self {
        self.requests = Some((baseline, canary));
        self
    }

    /// With the canary's share of the traffic from the times it changed, for a metric judged against the routed
    /// share.
    #[must_use]
    pub fn with_routed(mut self, changes: Vec<(std::time::SystemTime, f64)>) -> Self {
        self.routed = changes;
        self
    }

    /// Each group's requests, or the outcome when a metric judged per request lacks them.
    pub(crate) fn request_series(&self) -> Result<Option<(&Series, &Series)>, MetricOutcome> {
        let Some((baseline, canary)) = &self.requests else {
            return match self.metric.exposure {
                super::Exposure::Requests(_) => {
                    Err(MetricOutcome::NoData("the requests each group served were not queried".into()))
                }
                _ => Ok(None),
            };
        };
        let missing = |group: &str, error: &MetricError| match error {
            MetricError::NoData => MetricOutcome::NoData(format!("no {group} requests in the window")),
            other => MetricOutcome::QueryFailed(format!("{group} requests: {other}")),
        };
        match (baseline, canary) {
            (Err(e), _) => Err(missing("baseline", e)),
            (_, Err(e)) => Err(missing("canary", e)),
            (Ok(b), Ok(c)) => Ok(Some((b, c))),
        }
    }

    /// Both series, or the outcome for the metric when a group has none: `NoData` when the provider found no data
    /// in the window, `QueryFailed` when it failed or refused the query (the baseline is looked at first).
    pub fn series(&self) -> Result<(&Series, &Series), MetricOutcome> {
        let missing = |group: &str, error: &MetricError| match error {
            MetricError::NoData => MetricOutcome::NoData(format!("no {group} data in the window")),
            other => MetricOutcome::QueryFailed(format!("{group}: {other}")),
        };
        match (&self.baseline, &self.canary) {
            (Err(e), _) => Err(missing("baseline", e)),
            (_, Err(e)) => Err(missing("canary", e)),
            (Ok(b), Ok(c)) => Ok((b, c)),
        }
    }
}

/// Decides from the data of every metric whether the canary passes. A judge is a pure function of the data it is
/// given (all data since the analysis began), so it may be called again as more arrives.
pub trait Judge: Send + Sync + fmt::Debug {
    /// The verdict on the data.
    fn judge(&self, data: &[MetricData]) -> Verdict;

    /// Whether its settings make sense; the reason names the setting, its value and what it must be. Checked when
    /// a pipeline that uses it is built. Default: fine.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}
