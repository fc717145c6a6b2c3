//! The `Judge` trait: from both groups' series to a verdict.

use std::fmt;

use super::metric::{Metric, Series};
use super::verdict::Verdict;

/// One metric's data for a judge: both groups' series, or why a query failed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MetricData {
    /// The metric as configured.
    pub metric: Metric,
    /// The queries as sent, baseline then canary.
    pub queries: (String, String),
    /// The baseline's series, or why there is none.
    pub baseline: Result<Series, String>,
    /// The canary's series, or why there is none.
    pub canary: Result<Series, String>,
}

impl MetricData {
    /// Data for a metric.
    pub fn new(
        metric: Metric,
        queries: (String, String),
        baseline: Result<Series, String>,
        canary: Result<Series, String>,
    ) -> Self {
        Self { metric, queries, baseline, canary }
    }
}

/// Decides from the data of every metric whether the canary passes. A judge is a pure function of the data it is
/// given (all data since the analysis began), so it may be called again as more arrives.
pub trait Judge: Send + Sync + fmt::Debug {
    /// The verdict on the data.
    fn judge(&self, data: &[MetricData]) -> Verdict;
}
