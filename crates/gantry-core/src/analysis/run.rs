//! Running an analysis: querying both groups over a window and judging, once or at every interval.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::judge::{Judge, MetricData};
use super::metric::{Exposure, Group, Metric, MetricProvider, MetricQuery};
use super::routing::TrafficLog;
use super::verdict::{Outcome, Verdict};
use crate::StepContext;
use crate::strategy::Release;

/// An analysis of a new version against the stable one: metrics, where they come from, and how they are judged.
///
/// Without [`every`](Analysis::every) it collects for [`duration`](Analysis::duration), then judges once (Kayenta's
/// way). With it, it judges the data so far at every interval and stops at the first verdict that is not
/// inconclusive, or at the duration (for sequential judges, whose error rates hold under such repeated looks).
#[derive(Clone)]
pub struct Analysis {
    provider: Arc<dyn MetricProvider>,
    judge: Arc<dyn Judge>,
    metrics: Vec<Metric>,
    duration: Duration,
    step: Duration,
    every: Option<Duration>,
    lookback: Option<Duration>,
}

impl Analysis {
    /// An analysis with no metrics yet, judging once after 5 minutes of 1-minute points.
    pub fn new(provider: Arc<dyn MetricProvider>, judge: Arc<dyn Judge>) -> Self {
        Self {
            provider,
            judge,
            metrics: Vec::new(),
            duration: Duration::from_secs(300),
            step: Duration::from_secs(60),
            every: None,
            lookback: None,
        }
    }

    /// Adds a metric.
    #[must_use]
    pub fn metric(mut self, metric: Metric) -> Self {
        self.metrics.push(metric);
        self
    }

    /// How long to collect data (and, with [`every`](Analysis::every), the longest to wait for a verdict).
    #[must_use]
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// The resolution of the queries (default one minute).
    #[must_use]
    pub fn step(mut self, step: Duration) -> Self {
        self.step = step;
        self
    }

    /// Judges at every `interval`, stopping at the first conclusive verdict.
    #[must_use]
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = Some(interval);
        self
    }

    /// Judges the last `window` of data at each look, instead of the data since the analysis began (for metrics
    /// that exist before the analysis starts, such as a canary that has been serving for a while).
    #[must_use]
    pub fn lookback(mut self, window: Duration) -> Self {
        self.lookback = Some(window);
        self
    }

    /// The metrics.
    pub fn metrics(&self) -> &[Metric] {
        &self.metrics
    }

    /// Whether it can be run as set up: at least one metric, sensible allowed effects, a positive resolution and
    /// interval, and its judge's settings ([`Judge::check`]). The reason names what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.metrics.is_empty() {
            return Err("it has no metrics: add one with `Analysis::metric`".into());
        }
        if self.step.is_zero() {
            return Err("its resolution (`step`) is zero".into());
        }
        if self.every.is_some_and(|every| every.is_zero()) {
            return Err("it judges `every` zero seconds".into());
        }
        if self.lookback.is_some_and(|window| window < self.step) {
            return Err(format!("its `lookback` ({:?}) is shorter than one point ({:?})", self.lookback, self.step));
        }
        for m in &self.metrics {
            if !(m.allowed_increase.is_finite() && m.allowed_increase >= 1.0) {
                return Err(format!(
                    "metric `{}`: `allowed_increase` is {}; it must be a ratio of at least 1 (1.1 = +10%)",
                    m.name, m.allowed_increase
                ));
            }
            match &m.exposure {
                Exposure::CanaryShare(share) if !(*share > 0.0 && *share < 1.0) => {
                    return Err(format!(
                        "metric `{}`: the canary's traffic share is {share}; it must be above 0 and below 1 (0.1 = 10%)",
                        m.name
                    ));
                }
                Exposure::Requests(query) if query.trim().is_empty() => {
                    return Err(format!("metric `{}`: its requests query is empty", m.name));
                }
                _ => {}
            }
            if !(m.allowed_decrease > 0.0 && m.allowed_decrease <= 1.0) {
                return Err(format!(
                    "metric `{}`: `allowed_decrease` is {}; it must be a ratio above 0 and at most 1 (0.9 = -10%)",
                    m.name, m.allowed_decrease
                ));
            }
        }
        self.judge.check().map_err(|e| format!("its judge: {e}"))
    }

    /// Collects and judges `canary` against `baseline`. A cancelled run ends it with an inconclusive verdict.
    /// Metrics judged against the routed share ([`Metric::share_as_routed`]) assume equal traffic here: see
    /// [`run_routed`](Self::run_routed).
    pub async fn run(&self, ctx: &StepContext, baseline: &Release, canary: &Release) -> Verdict {
        self.run_routed(ctx, baseline, canary, &TrafficLog::new()).await
    }

    /// As [`run`](Self::run), judging metrics measured against the routed share by the changes in `routed`, read
    /// afresh at each look (the canary strategy records them as it shifts traffic).
    pub async fn run_routed(
        &self,
        ctx: &StepContext,
        baseline: &Release,
        canary: &Release,
        routed: &TrafficLog,
    ) -> Verdict {
        let start = SystemTime::now();
        let began = tokio::time::Instant::now();
        let mut wait = self.every.unwrap_or(self.duration).min(self.duration);
        loop {
            tokio::select! {
                () = ctx.cancellation().cancelled() => {
                    return Verdict { outcome: Outcome::Inconclusive, score: 0.0, reason: "the run was cancelled".into(), metrics: Vec::new() };
                }
                () = tokio::time::sleep(wait) => {}
            }
            let verdict = self.judge_once(ctx, (baseline, canary), start, routed).await;
            let elapsed = began.elapsed();
            if verdict.outcome != Outcome::Inconclusive || self.every.is_none() || elapsed >= self.duration {
                return verdict;
            }
            wait = self.every.unwrap_or(self.duration).min(self.duration.saturating_sub(elapsed));
        }
    }

    async fn judge_once(
        &self,
        ctx: &StepContext,
        (baseline, canary): (&Release, &Release),
        start: SystemTime,
        routed: &TrafficLog,
    ) -> Verdict {
        let end = SystemTime::now();
        // A lookback longer than the clock's past starts at the epoch rather than panicking.
        let start = self.lookback.map_or(start, |window| end.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH));
        let mut data = Vec::with_capacity(self.metrics.len());
        for metric in &self.metrics {
            let query = |template: &str, release: &Release, group: Group| {
                let text = template.replace("{{version}}", &release.version);
                let text = crate::Template::parse(&text).and_then(|t| ctx.render(&t)).unwrap_or(text);
                MetricQuery::new(&metric.name, text, group, start, end, self.step)
            };
            let (b, c) = (query(&metric.query, baseline, Group::Baseline), query(&metric.query, canary, Group::Canary));
            let (baseline_series, canary_series) = futures::join!(self.provider.query(&b), self.provider.query(&c));
            let mut metric_data = MetricData::new(metric.clone(), (b.query, c.query), baseline_series, canary_series);
            if let Exposure::Requests(requests) = &metric.exposure {
                let (rb, rc) = (query(requests, baseline, Group::Baseline), query(requests, canary, Group::Canary));
                let (rb, rc) = futures::join!(self.provider.query(&rb), self.provider.query(&rc));
                metric_data = metric_data.with_requests(rb, rc);
            }
            if metric.exposure == Exposure::Routed {
                metric_data = metric_data.with_routed(routed.changes());
            }
            data.push(metric_data);
        }
        self.judge.judge(&data)
    }
}

impl fmt::Debug for Analysis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Analysis")
            .field("provider", &self.provider)
            .field("judge", &self.judge)
            .field("metrics", &self.metrics.iter().map(|m| &m.name).collect::<Vec<_>>())
            .field("duration", &self.duration)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}
