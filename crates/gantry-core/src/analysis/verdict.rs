//! Verdicts and the evidence they carry.

use std::fmt;

use super::metric::{Metric, OnInconclusive};

/// How an analysis ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The canary is no worse than the baseline.
    Pass,
    /// The canary is worse.
    Fail,
    /// The data does not say (missing or failed queries, a marginal score, not enough evidence yet).
    Inconclusive,
}

/// How one metric compared.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MetricOutcome {
    /// Within what is allowed.
    Pass,
    /// Higher than allowed.
    High,
    /// Lower than allowed.
    Low,
    /// Not enough data to judge (the text says what was missing).
    NoData(String),
    /// A query failed (the text says how).
    QueryFailed(String),
    /// The data so far do not decide yet (a sequential judge keeps looking).
    Undecided,
}

impl MetricOutcome {
    /// Whether the metric has a verdict on data (pass, high or low).
    pub fn is_judged(&self) -> bool {
        matches!(self, Self::Pass | Self::High | Self::Low)
    }
}

/// The numbers a metric's outcome was decided on.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct Evidence {
    /// The queries, baseline then canary.
    pub queries: Vec<String>,
    /// The baseline's values (after cleaning).
    pub baseline: Vec<f64>,
    /// The canary's values (after cleaning).
    pub canary: Vec<f64>,
    /// Points dropped before judging because their value was not a number or infinite (Prometheus answers `NaN`
    /// for 0/0 and `+Inf` for x/0), baseline then canary.
    pub dropped: (usize, usize),
    /// Points left out because they cannot be compared in time, baseline then canary: for counts, intervals the
    /// other group lacks (a gap, or a last interval that has not arrived yet: metric pipelines lag) or, judged per
    /// request, intervals without requests; for levels, points outside the range both groups cover (classic judge)
    /// or without a point of the other group at the same time (sequential judge). Points at a repeated time count
    /// once.
    pub unmatched: (usize, usize),
    /// What a count was measured against (`equal traffic assumed`, `per request served by each group`), with the
    /// exposure ratio used; empty for levels.
    pub traffic: String,
    /// The statistic's name and value (`Mann-Whitney U = 123`).
    pub statistic: String,
    /// The estimated effect, on the scale of `interval`: the Hodges-Lehmann shift in the metric's unit (classic
    /// judge), the mean log-ratio of paired points, or the canary's share of the events (sequential judge).
    pub shift: f64,
    /// Its confidence interval (always-valid for the sequential judge).
    pub interval: (f64, f64),
    /// The scale of `shift` and `interval`.
    pub scale: EffectScale,
    /// Passed because its data reached the judge's horizon without it being found worse, not because it was shown
    /// no worse than the margin ([`SequentialJudge::horizon`](super::SequentialJudge::horizon)).
    pub at_horizon: bool,
    /// The canary's mean over the baseline's.
    pub ratio: f64,
    /// The thresholds applied, in words.
    pub thresholds: String,
    /// The decision, in words.
    pub decision: String,
}

/// The scale an effect and its interval are on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EffectScale {
    /// Not judged: no effect was estimated.
    #[default]
    Unstated,
    /// The metric's own unit (ms for a latency): the classic judge's Hodges-Lehmann shift; for counts, events per
    /// interval at the baseline's exposure.
    Units,
    /// The mean log-ratio of the canary's to the baseline's paired points (0.0953 is +10%).
    LogRatio,
    /// The mean difference of paired points relative to the baseline's mean (0.1 is +10%), for metrics that can be
    /// negative.
    RelativeDifference,
    /// The canary's share of the two groups' events (0.5 is equal rates at equal traffic).
    ShareOfEvents,
}

impl fmt::Display for EffectScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unstated => "unstated scale",
            Self::Units => "the metric's unit",
            Self::LogRatio => "log-ratio",
            Self::RelativeDifference => "relative difference",
            Self::ShareOfEvents => "share of events",
        })
    }
}

/// One metric's verdict.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct MetricVerdict {
    /// The metric as configured.
    pub metric: Metric,
    /// How it compared.
    pub outcome: MetricOutcome,
    /// On what.
    pub evidence: Evidence,
}

impl MetricVerdict {
    /// A verdict on a metric.
    pub fn new(metric: Metric, outcome: MetricOutcome, evidence: Evidence) -> Self {
        Self { metric, outcome, evidence }
    }

    /// Whether it fails its metric (moved the wrong way beyond what is allowed).
    pub fn failed(&self) -> bool {
        matches!(self.outcome, MetricOutcome::High | MetricOutcome::Low)
    }
}

/// What an analysis decided, with each metric's verdict and evidence.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct Verdict {
    /// The decision.
    pub outcome: Outcome,
    /// The score, 0–100: the weighted share of passing metrics among those judged.
    pub score: f64,
    /// Why, in words (`critical metric p99_latency failed`).
    pub reason: String,
    /// Each metric's verdict.
    pub metrics: Vec<MetricVerdict>,
}

impl Verdict {
    /// A copy with every text passed through `mask` (the run's redactor), for events.
    pub(crate) fn masked(&self, mask: impl Fn(&str) -> String) -> Self {
        let mut out = self.clone();
        out.reason = mask(&out.reason);
        for m in &mut out.metrics {
            m.metric.query = mask(&m.metric.query);
            if let super::metric::Exposure::Requests(query) = &mut m.metric.exposure {
                *query = mask(query);
            }
            let e = &mut m.evidence;
            for q in &mut e.queries {
                *q = mask(q);
            }
            for text in [&mut e.traffic, &mut e.statistic, &mut e.thresholds, &mut e.decision] {
                *text = mask(text);
            }
            if let MetricOutcome::NoData(why) | MetricOutcome::QueryFailed(why) = &mut m.outcome {
                *why = mask(why);
            }
        }
        out
    }

    /// What an inconclusive verdict does: the strictest policy among the metrics without a judgement, else `Abort`
    /// (a marginal score).
    pub fn on_inconclusive(&self) -> OnInconclusive {
        self.metrics
            .iter()
            .filter(|m| !m.outcome.is_judged())
            .map(|m| m.metric.on_inconclusive)
            .max()
            .unwrap_or(OnInconclusive::Abort)
    }
}

/// One line of text: the outcome, the score and the reason, then each metric after `; `. The alternate form
/// (`{:#}`) puts each metric on a line of its own, indented, as the verdict events show it.
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} (score {:.0}): {}", self.outcome, self.score, self.reason)?;
        let between = if f.alternate() { "\n  " } else { "; " };
        for m in &self.metrics {
            let e = &m.evidence;
            match &m.outcome {
                MetricOutcome::NoData(why) | MetricOutcome::QueryFailed(why) => {
                    write!(f, "{between}{}: {why}", m.metric.name)?;
                }
                MetricOutcome::Undecided => write!(f, "{between}{}: undecided ({})", m.metric.name, e.decision)?,
                outcome => {
                    let horizon = if e.at_horizon { " at the horizon" } else { "" };
                    write!(
                        f,
                        "{between}{}: {outcome:?}{horizon}, canary/baseline mean {:.3}, effect {:.4} in [{:.4}, {:.4}] as {} ({} vs {} points",
                        m.metric.name,
                        e.ratio,
                        e.shift,
                        e.interval.0,
                        e.interval.1,
                        e.scale,
                        e.canary.len(),
                        e.baseline.len()
                    )?;
                    if e.dropped != (0, 0) {
                        write!(f, "; {} vs {} not numbers, dropped", e.dropped.1, e.dropped.0)?;
                    }
                    if e.unmatched != (0, 0) {
                        write!(f, "; {} vs {} left out, unmatched in time", e.unmatched.1, e.unmatched.0)?;
                    }
                    if !e.traffic.is_empty() {
                        write!(f, "; {}", e.traffic)?;
                    }
                    write!(f, ")")?;
                }
            }
        }
        Ok(())
    }
}
