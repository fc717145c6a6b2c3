//! The classic judge, after Kayenta's NetflixACAJudge: a Mann-Whitney test per metric, a weighted score.

use std::collections::BTreeMap;

use super::align;
use super::judge::{Judge, MetricData};
use super::metric::{Direction, MetricKind, Series};
use super::stats::{self, mann_whitney};
use super::verdict::{EffectScale, Evidence, MetricOutcome, MetricVerdict, Outcome, Verdict};

/// Kayenta's classic judge, for an analysis judged once at the end of its window.
///
/// Per metric: NaNs removed (or replaced by zero), optionally IQR outliers removed, then a two-sided Mann-Whitney
/// test of canary against baseline with a 98% confidence interval on the Hodges-Lehmann shift. The metric is *high*
/// when the whole interval lies above `tolerance` × |shift| (the shift is clearly more than noise) **and** the
/// canary's mean is at least `allowed_increase` × the baseline's; *low* likewise downwards; only the metric's
/// direction counts. Identical data passes (once each group has [`min_points`](Self::min_points) points).
///
/// The score is the share of passing metrics among those judged, per group, weighted across groups (Kayenta's
/// `WeightedSumScorer`). A failed critical metric fails the analysis; a score below `marginal` fails it; a metric
/// without data (a failed or empty query) or a score between `marginal` and `pass` makes it inconclusive. Unlike
/// Kayenta, missing data never passes.
///
/// ```
/// use gantry_core::analysis::{ClassicJudge, Direction, Judge, Metric, MetricData, Outcome, Series};
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let series = |base: f64| Series::new((0..60).map(|i| (UNIX_EPOCH + Duration::from_secs(60 * i), base + (i % 7) as f64)).collect());
/// let latency = Metric::new("latency", "avg:latency{version:{{version}}}", Direction::Increase).critical();
/// let data = MetricData::new(latency, ("b".into(), "c".into()), Ok(series(100.0)), Ok(series(130.0)));
/// let verdict = ClassicJudge::new().judge(&[data]);
/// assert_eq!(verdict.outcome, Outcome::Fail);
/// ```
#[derive(Clone, Debug)]
pub struct ClassicJudge {
    confidence: f64,
    tolerance: f64,
    pass: f64,
    marginal: f64,
    remove_nans: bool,
    outlier_factor: Option<f64>,
    weights: BTreeMap<String, f64>,
    min_points: usize,
}

impl ClassicJudge {
    /// Kayenta's settings: 98% confidence, tolerance 0.25, pass at 95, marginal at 75, NaNs removed, outliers kept;
    /// and at least 10 points per group before a metric is judged.
    pub fn new() -> Self {
        Self {
            confidence: 0.98,
            tolerance: 0.25,
            pass: 95.0,
            marginal: 75.0,
            remove_nans: true,
            outlier_factor: None,
            weights: BTreeMap::new(),
            min_points: 10,
        }
    }

    /// The confidence level of the interval on the shift (default 0.98).
    #[must_use]
    pub fn confidence(mut self, level: f64) -> Self {
        self.confidence = level;
        self
    }

    /// The share of the estimated shift the interval must clear (default 0.25).
    #[must_use]
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The scores (0–100) at or above which the analysis passes, and below which it fails (defaults 95 and 75).
    #[must_use]
    pub fn thresholds(mut self, pass: f64, marginal: f64) -> Self {
        self.pass = pass;
        self.marginal = marginal;
        self
    }

    /// Replaces NaNs with zero instead of removing them.
    #[must_use]
    pub fn nans_as_zero(mut self) -> Self {
        self.remove_nans = false;
        self
    }

    /// Removes outliers beyond `factor` × IQR (Kayenta used 3.0), in each group's series separately.
    #[must_use]
    pub fn remove_outliers(mut self, factor: f64) -> Self {
        self.outlier_factor = Some(factor);
        self
    }

    /// The points each group needs before a metric is judged (default 10, at least 2). With fewer, the metric is
    /// undecided (the analysis inconclusive), never high or low: one point per group, as the first look of an
    /// [`every`](super::Analysis::every) analysis sees, would fail half of all healthy canaries.
    #[must_use]
    pub fn min_points(mut self, points: usize) -> Self {
        self.min_points = points.max(2);
        self
    }

    /// Weighs a group of metrics (percent of the score; groups without a weight share the rest equally).
    #[must_use]
    pub fn weight(mut self, group: impl Into<String>, percent: f64) -> Self {
        self.weights.insert(group.into(), percent);
        self
    }

    /// A series with its NaNs read as zero when [`nans_as_zero`](Self::nans_as_zero) says so (else as it is: the
    /// alignment drops NaNs and infinities).
    fn prepared(&self, series: &Series) -> Series {
        if self.remove_nans {
            return series.clone();
        }
        Series::new(series.points.iter().map(|(t, v)| (*t, if v.is_nan() { 0.0 } else { *v })).collect())
    }

    /// The values to judge, lined up in time ([`align`]): levels within the time range both groups cover; counts at
    /// the intervals both have, the canary's scaled to the baseline's exposure (its requests, or its traffic share).
    fn values(&self, data: &MetricData, evidence: &mut Evidence) -> Result<(Vec<f64>, Vec<f64>), MetricOutcome> {
        let (baseline, canary) = data.series()?;
        let (baseline, canary) = (self.prepared(baseline), self.prepared(canary));
        evidence.dropped = (align::not_finite(&baseline), align::not_finite(&canary));
        let (b, c) = match data.metric.kind {
            MetricKind::Level => {
                let (b, c, unmatched) = align::levels(&baseline, &canary);
                evidence.unmatched = unmatched;
                (b, c)
            }
            MetricKind::Count => {
                let aligned =
                    align::counts(&baseline, &canary, &data.metric.exposure, data.request_series()?, &data.routed);
                evidence.unmatched = aligned.unmatched;
                evidence.traffic = aligned.describe(&data.metric.exposure);
                aligned
                    .intervals
                    .iter()
                    .map(|i| (i.baseline, i.canary * i.baseline_exposure / i.canary_exposure))
                    .unzip()
            }
        };
        Ok(match self.outlier_factor {
            Some(factor) => (stats::without_outliers(&b, factor), stats::without_outliers(&c, factor)),
            None => (b, c),
        })
    }

    fn classify(&self, data: &MetricData) -> MetricVerdict {
        let metric = data.metric.clone();
        let mut evidence = Evidence {
            queries: vec![data.queries.0.clone(), data.queries.1.clone()],
            thresholds: format!(
                "{:.0}% interval on the shift must clear ±{} × |shift|; mean ratio must reach {} (increase) or {} (decrease)",
                self.confidence * 100.0,
                self.tolerance,
                metric.allowed_increase,
                metric.allowed_decrease
            ),
            ..Evidence::default()
        };
        let (baseline, canary) = match self.values(data, &mut evidence) {
            Ok(values) => values,
            Err(missing) => return verdict(metric, missing, evidence),
        };
        evidence.baseline = baseline.clone();
        evidence.canary = canary.clone();
        if baseline.is_empty() || canary.is_empty() {
            let (which, dropped) =
                if baseline.is_empty() { ("baseline", evidence.dropped.0) } else { ("canary", evidence.dropped.1) };
            let why = if dropped > 0 {
                format!("no {which} data in the window: its {dropped} point(s) are not numbers or infinite")
            } else {
                format!("no {which} data in the window")
            };
            return verdict(metric, MetricOutcome::NoData(why), evidence);
        }
        let (mb, mc) = (stats::mean(&baseline), stats::mean(&canary));
        if baseline.len() < self.min_points || canary.len() < self.min_points {
            evidence.ratio = if mb == 0.0 { 1.0 } else { mc / mb };
            evidence.decision = format!(
                "{} baseline and {} canary points so far; judged from {} each",
                baseline.len(),
                canary.len(),
                self.min_points
            );
            return verdict(metric, MetricOutcome::Undecided, evidence);
        }
        evidence.ratio = if mb == 0.0 { 1.0 } else { mc / mb };
        let mut sorted = (baseline.clone(), canary.clone());
        sorted.0.sort_by(f64::total_cmp);
        sorted.1.sort_by(f64::total_cmp);
        if sorted.0 == sorted.1 {
            evidence.scale = EffectScale::Units;
            evidence.decision = "the data are identical".into();
            return verdict(metric, MetricOutcome::Pass, evidence);
        }
        let single = |v: &[f64]| v.iter().all(|x| *x == v[0]);
        if single(&baseline) && single(&canary) {
            // Kayenta adds a little noise here; the shift is simply the difference of the two values.
            evidence.scale = EffectScale::Units;
            evidence.shift = canary[0] - baseline[0];
            evidence.interval = (evidence.shift, evidence.shift);
            evidence.statistic = "none (each group has a single value)".into();
        } else {
            // Noise that lingers in one group (a slow pod, a warming cache) makes its points count for fewer: the
            // interval is widened by the variance inflation (1 + ρ) / (1 - ρ) (at most 10×), with ρ the lag-1
            // autocorrelation of the groups' differences at the times both have. Load shared by both groups cancels
            // in those differences, so it is not taken for lingering noise.
            let rho = lingering(data, &baseline, &canary);
            let inflation = (1.0 + rho) / (1.0 - rho);
            let z = stats::normal_quantile(1.0 - (1.0 - self.confidence) / 2.0) * inflation.sqrt();
            let confidence = (2.0 * stats::normal_cdf(z) - 1.0).min(1.0 - 1e-12);
            match mann_whitney(&canary, &baseline, confidence) {
                Ok(t) => {
                    evidence.scale = EffectScale::Units;
                    evidence.shift = t.shift;
                    evidence.interval = t.interval;
                    evidence.statistic = if rho > 0.0 {
                        format!(
                            "Mann-Whitney U = {} (p = {:.3e}); lag-1 autocorrelation {rho:.2}, interval widened {:.2}×",
                            t.u,
                            t.p,
                            inflation.sqrt()
                        )
                    } else {
                        format!("Mann-Whitney U = {} (p = {:.3e})", t.u, t.p)
                    };
                }
                Err(e) => {
                    return verdict(
                        metric,
                        MetricOutcome::NoData(format!("the test cannot be computed: {e:?}")),
                        evidence,
                    );
                }
            }
        }
        let bound = self.tolerance * evidence.shift.abs();
        let up = matches!(metric.direction, Direction::Increase | Direction::Either);
        let down = matches!(metric.direction, Direction::Decrease | Direction::Either);
        let outcome = if up && evidence.interval.0 > bound && evidence.ratio >= metric.allowed_increase {
            evidence.decision = format!(
                "higher: the interval's lower end {:.4} > {bound:.4}, and the mean ratio {:.3} ≥ {}",
                evidence.interval.0, evidence.ratio, metric.allowed_increase
            );
            MetricOutcome::High
        } else if down && evidence.interval.1 < -bound && evidence.ratio <= metric.allowed_decrease {
            evidence.decision = format!(
                "lower: the interval's upper end {:.4} < {:.4}, and the mean ratio {:.3} ≤ {}",
                evidence.interval.1, -bound, evidence.ratio, metric.allowed_decrease
            );
            MetricOutcome::Low
        } else {
            evidence.decision = format!(
                "within bounds: interval [{:.4}, {:.4}] against ±{bound:.4}, mean ratio {:.3}",
                evidence.interval.0, evidence.interval.1, evidence.ratio
            );
            MetricOutcome::Pass
        };
        verdict(metric, outcome, evidence)
    }

    /// Kayenta's weighted sum: per group the share of passing metrics among those judged (100 if none is judged);
    /// weighted groups take their weight, the others share the rest.
    fn score(&self, metrics: &[MetricVerdict]) -> f64 {
        let mut groups: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
        for m in metrics {
            let entry = groups.entry(m.metric.group.as_str()).or_default();
            if m.outcome.is_judged() {
                entry.1 += 1;
                if m.outcome == MetricOutcome::Pass {
                    entry.0 += 1;
                }
            }
        }
        let weighted: f64 = groups.keys().filter_map(|g| self.weights.get(*g)).sum();
        let unweighted = groups.keys().filter(|g| !self.weights.contains_key(**g)).count();
        let share = if unweighted == 0 { 0.0 } else { (100.0 - weighted).max(0.0) / unweighted as f64 };
        groups
            .iter()
            .map(|(g, (pass, judged))| {
                let score = if *judged == 0 { 100.0 } else { f64::from(*pass) / f64::from(*judged) * 100.0 };
                score * self.weights.get(*g).copied().unwrap_or(share) / 100.0
            })
            .sum()
    }
}

/// How much the groups' differences linger: the lag-1 autocorrelation of the canary's minus the baseline's value at
/// the times both have (for counts, the judged pairs, the canary's scaled to the baseline's exposure), less one
/// standard error (1/√n) so that independent noise is not widened for its estimate's noise; 0 to 0.818, and 0 with
/// fewer than ten pairs or a value that is not a number.
fn lingering(data: &MetricData, baseline: &[f64], canary: &[f64]) -> f64 {
    let differences: Vec<f64> = match data.metric.kind {
        MetricKind::Count => canary.iter().zip(baseline).map(|(c, b)| c - b).collect(),
        MetricKind::Level => {
            let Ok((baseline, canary)) = data.series() else { return 0.0 };
            let (b, c) = (align::finite(baseline), align::finite(canary));
            c.iter().filter_map(|(t, cv)| b.get(t).map(|bv| cv - bv)).collect()
        }
    };
    if differences.len() < 10 {
        return 0.0;
    }
    let rho = stats::lag1_autocorrelation(&differences) - 1.0 / (differences.len() as f64).sqrt();
    if rho.is_finite() { rho.clamp(0.0, 0.818) } else { 0.0 }
}

fn verdict(metric: super::Metric, outcome: MetricOutcome, evidence: Evidence) -> MetricVerdict {
    MetricVerdict::new(metric, outcome, evidence)
}

impl Default for ClassicJudge {
    fn default() -> Self {
        Self::new()
    }
}

impl Judge for ClassicJudge {
    fn check(&self) -> Result<(), String> {
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(format!("`confidence` is {}; it must be above 0 and below 1 (0.98)", self.confidence));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(format!("`tolerance` is {}; it must be 0 or more (0.25)", self.tolerance));
        }
        if !(0.0..=100.0).contains(&self.marginal) || !(self.marginal..=100.0).contains(&self.pass) {
            return Err(format!(
                "`thresholds` are pass {} and marginal {}; they must satisfy 0 ≤ marginal ≤ pass ≤ 100",
                self.pass, self.marginal
            ));
        }
        if let Some(factor) = self.outlier_factor.filter(|f| !(f.is_finite() && *f > 0.0)) {
            return Err(format!("`remove_outliers` factor is {factor}; it must be positive (3.0)"));
        }
        let total: f64 = self.weights.values().sum();
        if self.weights.values().any(|w| !(0.0..=100.0).contains(w)) || total > 100.0 {
            return Err(format!("group weights {:?} must each be 0–100 and sum to at most 100", self.weights));
        }
        Ok(())
    }

    fn judge(&self, data: &[MetricData]) -> Verdict {
        let metrics: Vec<MetricVerdict> = data.iter().map(|d| self.classify(d)).collect();
        let score = (self.score(&metrics) * 100.0).round() / 100.0;
        let names = |pick: &dyn Fn(&MetricVerdict) -> bool| {
            metrics.iter().filter(|m| pick(m)).map(|m| m.metric.name.as_str()).collect::<Vec<_>>().join(", ")
        };
        let critical_failed = names(&|m| m.metric.critical && m.failed());
        let unjudged = names(&|m| !m.outcome.is_judged());
        let failed = names(&|m| m.failed());
        let (outcome, score, reason) = if metrics.is_empty() {
            (Outcome::Inconclusive, 0.0, "no metrics to judge".to_owned())
        } else if !critical_failed.is_empty() {
            (Outcome::Fail, 0.0, format!("critical metric failed: {critical_failed}"))
        } else if score < self.marginal {
            (
                Outcome::Fail,
                score,
                format!("score {score:.0} below the marginal threshold {} (failed: {failed})", self.marginal),
            )
        } else if !unjudged.is_empty() {
            (Outcome::Inconclusive, score, format!("no verdict without data: {unjudged}"))
        } else if score < self.pass {
            (
                Outcome::Inconclusive,
                score,
                format!("marginal score {score:.0} (pass at {}; failed: {failed})", self.pass),
            )
        } else {
            (Outcome::Pass, score, format!("score {score:.0} of 100"))
        };
        Verdict { outcome, score, reason, metrics }
    }
}
