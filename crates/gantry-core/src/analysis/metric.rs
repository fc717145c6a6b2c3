//! Metrics and where they come from: the `MetricProvider` trait, queries, series, and what to judge them by.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::BoxError;

/// Which group a query is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// The version serving now (the stable one).
    Baseline,
    /// The new version.
    Canary,
}

/// One query over a time window, for one group.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricQuery {
    /// The metric's name in the analysis (`p99_latency`).
    pub metric: String,
    /// The provider's query, with `{{version}}` (and the run's variables) already filled in for this group.
    pub query: String,
    /// Which group it is for.
    pub group: Group,
    /// The window's start.
    pub start: SystemTime,
    /// The window's end.
    pub end: SystemTime,
    /// The resolution asked for (one point per step).
    pub step: Duration,
}

impl MetricQuery {
    /// A query for `group` over `[start, end]` at one point per `step`.
    pub fn new(
        metric: impl Into<String>,
        query: impl Into<String>,
        group: Group,
        start: SystemTime,
        end: SystemTime,
        step: Duration,
    ) -> Self {
        Self { metric: metric.into(), query: query.into(), group, start, end, step }
    }
}

/// A time series: points in time order. Missing points are absent, not zero.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Series {
    /// `(time, value)` points; a value may be NaN where the provider says so.
    pub points: Vec<(SystemTime, f64)>,
}

impl Series {
    /// A series from points.
    pub fn new(points: Vec<(SystemTime, f64)>) -> Self {
        Self { points }
    }

    /// The values, in time order.
    pub fn values(&self) -> Vec<f64> {
        self.points.iter().map(|(_, v)| *v).collect()
    }
}

/// Why a provider has no series: explicit, and never taken for a pass.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricError {
    /// The provider could not be reached or failed (5xx, timeouts, rate limits after retries): asking again later
    /// may help.
    #[error("the metrics provider failed: {source}")]
    Unavailable {
        /// Why.
        #[source]
        source: SharedError,
    },
    /// The provider refused the query (bad syntax, bad key): asking again will be refused again.
    #[error("the metrics provider refused the query: {source}")]
    Refused {
        /// Why.
        #[source]
        source: SharedError,
    },
    /// The query matched no data in the window. Asking again later may help: metric pipelines lag.
    #[error("no data for the query in the window")]
    NoData,
}

/// A source error shared by the copies of a [`MetricError`] (the judge's data is cloned).
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

impl MetricError {
    /// The provider failed for a passing reason.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable { source: Arc::from(source.into()) }
    }

    /// The provider refused the query.
    pub fn refused(source: impl Into<BoxError>) -> Self {
        Self::Refused { source: Arc::from(source.into()) }
    }

    /// Whether asking again may help: yes for an unavailable provider and for no data (it may not have arrived
    /// yet), no for a refused query.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Refused { .. })
    }
}

/// A source of metrics: Datadog, Prometheus, the test kit. Implementations return what the provider returned, and
/// say plainly when it returned nothing or failed.
#[async_trait]
pub trait MetricProvider: Send + Sync + fmt::Debug {
    /// The series the query selects over its window.
    async fn query(&self, query: &MetricQuery) -> Result<Series, MetricError>;
}

/// Which way a metric must not move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Higher is worse (latency, errors).
    Increase,
    /// Lower is worse (throughput, success rate).
    Decrease,
    /// Any change is worse.
    Either,
}

/// What an inconclusive verdict on a metric does to the deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInconclusive {
    /// Carry on, and say so in the events.
    Notify,
    /// Wait for someone to promote or abort.
    Pause,
    /// Abort the deployment.
    Abort,
}

/// A metric to judge: its query, which way it must not move, by how much, and how much it counts.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct Metric {
    /// Its name (`p99_latency`).
    pub name: String,
    /// The provider's query, a template: `{{version}}` is the group's version, other variables come from the run.
    pub query: String,
    /// Which way it must not move.
    pub direction: Direction,
    /// A failure of a critical metric fails the analysis whatever the score.
    pub critical: bool,
    /// The largest increase allowed, as a ratio of the canary's to the baseline's mean (1.1 = +10%).
    pub allowed_increase: f64,
    /// The largest decrease allowed, as that ratio (0.9 = -10%).
    pub allowed_decrease: f64,
    /// Its group, for weighted scores.
    pub group: String,
    /// What an inconclusive verdict on it does.
    pub on_inconclusive: OnInconclusive,
    /// What its values are: levels (latency) or counts per interval (errors).
    pub kind: MetricKind,
    /// What a count metric's events are measured against: equal traffic, a stated share, or each group's requests.
    pub exposure: Exposure,
}

/// What a count metric's events are measured against. Errors must be judged as rates: a canary serving 10 % of the
/// traffic has a tenth of the errors of a healthy baseline, and one serving 60 % has more.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Exposure {
    /// Both groups receive the same traffic (a baseline and a canary of the same size behind equal weights).
    Equal,
    /// The canary receives this fraction of the two groups' traffic (0.1 = 10 %); the baseline the rest.
    CanaryShare(f64),
    /// Each group's requests per interval, from this query (a template like the metric's: `{{version}}` is the
    /// group's version). Events are judged per request, minute by minute.
    Requests(String),
    /// The share the deployment routes to the canary, interval by interval, as the strategy recorded it in its
    /// [`TrafficLog`](super::TrafficLog) (a Kubernetes target reports the share its pods or route weights give).
    /// Intervals before the canary had any traffic are left out; with no share recorded at all (an analysis run
    /// outside a strategy) equal traffic is assumed, and the verdict says so.
    Routed,
}

impl Exposure {
    /// The assumption in words, for verdicts.
    pub fn describe(&self) -> String {
        match self {
            Self::Equal => "equal traffic assumed".into(),
            Self::CanaryShare(share) => format!("the canary takes {:.0}% of the traffic (stated)", share * 100.0),
            Self::Requests(_) => "per request served by each group".into(),
            Self::Routed => "the share routed to the canary".into(),
        }
    }
}

/// What a metric's values are, for judges that treat them differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A level per interval: latency, CPU, a ratio.
    Level,
    /// A count of events per interval (errors), judged as a rate against the metric's [`Exposure`] (equal traffic
    /// unless told otherwise).
    Count,
}

impl Metric {
    /// A metric that must not move in `direction`, with no allowed effect, in group `default`, aborting when
    /// inconclusive.
    pub fn new(name: impl Into<String>, query: impl Into<String>, direction: Direction) -> Self {
        Self {
            name: name.into(),
            query: query.into(),
            direction,
            critical: false,
            allowed_increase: 1.0,
            allowed_decrease: 1.0,
            group: "default".into(),
            on_inconclusive: OnInconclusive::Abort,
            kind: MetricKind::Level,
            exposure: Exposure::Equal,
        }
    }

    /// Its values are counts of events per interval, from groups that receive equal traffic (see
    /// [`per_requests`](Self::per_requests) and [`traffic_share`](Self::traffic_share) when they do not).
    #[must_use]
    pub fn counts(mut self) -> Self {
        self.kind = MetricKind::Count;
        self
    }

    /// Its values are counts of events per interval, judged per request: `requests` is a query (a template, like
    /// the metric's) for each group's requests per interval. Use it when the groups' traffic differs, or is not
    /// known.
    #[must_use]
    pub fn per_requests(mut self, requests: impl Into<String>) -> Self {
        self.kind = MetricKind::Count;
        self.exposure = Exposure::Requests(requests.into());
        self
    }

    /// Its values are counts of events per interval, and the canary receives `share` of the two groups' traffic
    /// (0.1 = 10 %), as the weights of the deployment set it.
    #[must_use]
    pub fn traffic_share(mut self, share: f64) -> Self {
        self.kind = MetricKind::Count;
        self.exposure = Exposure::CanaryShare(share);
        self
    }

    /// Its values are counts of events per interval, and the canary receives the share of the traffic the
    /// deployment routes to it, interval by interval ([`Exposure::Routed`]): the share a canary strategy's target
    /// reports after each change of weights.
    #[must_use]
    pub fn share_as_routed(mut self) -> Self {
        self.kind = MetricKind::Count;
        self.exposure = Exposure::Routed;
        self
    }

    /// Critical: its failure fails the analysis.
    #[must_use]
    pub fn critical(mut self) -> Self {
        self.critical = true;
        self
    }

    /// Allows the canary's mean up to `ratio` times the baseline's before an increase counts (1.1 = +10%).
    #[must_use]
    pub fn allowed_increase(mut self, ratio: f64) -> Self {
        self.allowed_increase = ratio;
        self
    }

    /// Allows the canary's mean down to `ratio` times the baseline's before a decrease counts (0.9 = -10%).
    #[must_use]
    pub fn allowed_decrease(mut self, ratio: f64) -> Self {
        self.allowed_decrease = ratio;
        self
    }

    /// Puts it in a group (groups are weighted in the score).
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// What an inconclusive verdict on it does.
    #[must_use]
    pub fn on_inconclusive(mut self, policy: OnInconclusive) -> Self {
        self.on_inconclusive = policy;
        self
    }
}
