//! The sequential judge: always-valid tests that may look at every new interval.

use super::align;
use super::judge::{Judge, MetricData};
use super::metric::{Direction, Metric, MetricKind, Series};
use super::stats::{ln_beta, long_run_variance, mean, normal_quantile};
use super::verdict::{EffectScale, Evidence, MetricOutcome, MetricVerdict, Outcome, Verdict};

/// A judge for analyses that look at the data at every interval ([`Analysis::every`](super::Analysis::every)) and
/// stop as soon as the evidence is clear, either way, without the false positives that repeated looks give a
/// fixed-sample test.
///
/// - **Levels** (latency): the canary's and the baseline's points are paired by time and compared as log-ratios
///   (differences relative to the baseline's mean when a value is not positive), so load that moves both groups
///   cancels out. A mixture sequential probability ratio test (mSPRT; Johari, Pekelis & Walsh, *Always valid
///   inference*, 2017) with a normal mixture of scale `tau` (default 0.1, a 10% effect) gives an always-valid
///   confidence sequence for the mean log-ratio; the variance is estimated from the data, after `min_pairs` pairs
///   (a long-run variance, scaled up at few pairs), and never taken below a standard deviation of 1%.
/// - **Counts** (errors, [`Metric::counts`]): over the intervals both groups have, the canary's share of all events
///   is binomial given their total, with a share under equal rates set by the groups' exposure: equal traffic, a
///   stated share ([`Metric::traffic_share`]) or the requests each served ([`Metric::per_requests`]). A
///   beta-binomial mixture SPRT tests it against the share the allowed increase gives.
///
/// A metric **fails** when its confidence sequence lies wholly beyond the allowed effect in its bad direction;
/// **passes** when it lies wholly on the good side of the larger of the allowed effect and `pass_margin` (default
/// 1.05: "no worse than 5%"), or when its data span the `horizon` (default 55 intervals) without failing; else it is
/// **undecided** and the analysis looks again. With level `alpha` per metric (default 0.01), the chance that an A/A
/// comparison ever fails a metric, over any number of looks, is at most `alpha` (up to the variance estimate).
///
/// **Why a horizon.** Showing that a canary is no worse than 5% takes far longer than showing that it is worse: at
/// 10% noise per point a healthy canary's latency needs about two hours of one-minute points, and an error rate of
/// 10 per minute many hours. Without a horizon most healthy canaries stay undecided until the analysis ends, and
/// are aborted. With it, a metric that has not failed over `horizon` intervals passes, as Kayenta's, Flagger's and
/// Argo Rollouts' analyses pass what they did not find worse; its verdict says what the data still allow (the
/// interval, as ratios). The price is regressions too small to be found in that time, which are promoted:
/// `docs/PERFORMANCE.md` has the table. [`without_horizon`](Self::without_horizon) asks for proof instead.
///
/// The horizon counts the intervals the data span, first to last, gaps included (a missing or non-finite point
/// does not delay it). 55 one-minute intervals lets a healthy canary be promoted within the hour when the newest
/// points arrive a minute or two late; give the [`Analysis`](super::Analysis) a duration a few intervals longer than
/// the horizon, or it may end undecided. With a [`lookback`](super::Analysis::lookback) as long as the horizon,
/// the first look already spans it: data from before the canary served would count.
#[derive(Clone, Debug)]
pub struct SequentialJudge {
    alpha: f64,
    tau: f64,
    pass_margin: f64,
    min_pairs: usize,
    horizon: Option<usize>,
}

impl SequentialJudge {
    /// alpha 0.01 per metric, tau 0.1, pass margin 1.05, at least 10 pairs for levels, a horizon of 55 intervals.
    pub fn new() -> Self {
        Self { alpha: 0.01, tau: 0.1, pass_margin: 1.05, min_pairs: 10, horizon: Some(55) }
    }

    /// A metric that has not failed once its data span this many intervals (of the metric's resolution, first to
    /// last, gaps included) passes. See the type's documentation.
    #[must_use]
    pub fn horizon(mut self, intervals: usize) -> Self {
        self.horizon = Some(intervals);
        self
    }

    /// No horizon: a metric passes only once it is shown no worse than the pass margin.
    #[must_use]
    pub fn without_horizon(mut self) -> Self {
        self.horizon = None;
        self
    }

    /// The false-positive rate allowed per metric, over all looks.
    #[must_use]
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// The scale of the mixture over effects: the size of effect the test is most sensitive to (0.1 = 10% on the
    /// log-ratio of levels). For counts it sets the spread of the mixture over the canary's share of events, which
    /// is wider on the rate-ratio scale (about 0.4 at equal traffic, more at a small canary share).
    #[must_use]
    pub fn tau(mut self, tau: f64) -> Self {
        self.tau = tau;
        self
    }

    /// The canary passes a metric once it is shown to be no worse than this ratio (1.05 = 5%).
    #[must_use]
    pub fn pass_margin(mut self, ratio: f64) -> Self {
        self.pass_margin = ratio;
        self
    }

    /// Pairs needed before a level metric is judged (its variance is estimated from them).
    #[must_use]
    pub fn min_pairs(mut self, pairs: usize) -> Self {
        self.min_pairs = pairs.max(3);
        self
    }

    fn classify(&self, data: &MetricData) -> MetricVerdict {
        let metric = data.metric.clone();
        let evidence =
            Evidence { queries: vec![data.queries.0.clone(), data.queries.1.clone()], ..Evidence::default() };
        let (baseline, canary) = match data.series() {
            Ok(both) => both,
            Err(missing) => return MetricVerdict::new(metric, missing, evidence),
        };
        match metric.kind {
            MetricKind::Level => self.levels(metric, baseline, canary, evidence),
            MetricKind::Count => match data.request_series() {
                Ok(requests) => self.counts(metric, (baseline, canary), requests, &data.routed, evidence),
                Err(missing) => MetricVerdict::new(metric, missing, evidence),
            },
        }
    }

    fn levels(&self, metric: Metric, baseline: &Series, canary: &Series, mut evidence: Evidence) -> MetricVerdict {
        // One point per time in each group (a repeated time keeps its last point), paired where both have one.
        let (base, cand) = (align::finite(baseline), align::finite(canary));
        let times: Vec<u128> = cand.keys().filter(|t| base.contains_key(t)).copied().collect();
        let pairs: Vec<(f64, f64)> = cand.iter().filter_map(|(t, c)| base.get(t).map(|b| (*b, *c))).collect();
        evidence.baseline = pairs.iter().map(|p| p.0).collect();
        evidence.canary = pairs.iter().map(|p| p.1).collect();
        evidence.dropped = (align::not_finite(baseline), align::not_finite(canary));
        evidence.unmatched = (base.len() - pairs.len(), cand.len() - pairs.len());
        if pairs.is_empty() {
            return MetricVerdict::new(
                metric,
                MetricOutcome::NoData("no points of both groups at the same times".into()),
                evidence,
            );
        }
        let mb = mean(&evidence.baseline);
        evidence.ratio = if mb == 0.0 { 1.0 } else { mean(&evidence.canary) / mb };
        let n = pairs.len();
        if n < self.min_pairs {
            evidence.decision = format!("{n} pairs so far; judged from {}", self.min_pairs);
            return MetricVerdict::new(metric, MetricOutcome::Undecided, evidence);
        }
        // Log-ratios for a metric that is never negative (a zero here and there is offset by 1% of the baseline's
        // mean, so one zero does not switch the whole metric to another scale); differences relative to the
        // baseline's mean for a metric that can be negative.
        let logs = mb > 0.0 && pairs.iter().all(|(b, c)| *b >= 0.0 && *c >= 0.0);
        let offset = if logs && pairs.iter().any(|(b, c)| *b == 0.0 || *c == 0.0) { 0.01 * mb } else { 0.0 };
        let scale = if mb == 0.0 { 1.0 } else { mb.abs() };
        let d: Vec<f64> = pairs
            .iter()
            .map(|(b, c)| if logs { (c + offset).ln() - (b + offset).ln() } else { (c - b) / scale })
            .collect();
        let to_effect = |ratio: f64| if logs { ratio.ln() } else { ratio - 1.0 };
        let dm = mean(&d);
        // The long-run variance (Newey-West), so noise that lingers in one group does not read as a shift; and a
        // series constant to the last digit is not certainty: the noise is never taken below MIN_SD (1%).
        // The variance is estimated, not known: with few points it is scaled up as Student's t scales up the normal
        // quantile (by (t_ν / z)² at 1 - alpha/2, ν = n - 1: 1.6× at 10 points, 1.07× at 60).
        let variance = long_run_variance(&d).max(MIN_SD * MIN_SD) * small_sample_factor(n, self.alpha);
        let radius = self.radius(n, variance);
        let (lo, hi) = (dm - radius, dm + radius);
        evidence.shift = dm;
        evidence.interval = (lo, hi);
        evidence.scale = if logs { EffectScale::LogRatio } else { EffectScale::RelativeDifference };
        evidence.statistic = format!(
            "mSPRT on {n} paired {}: mean {dm:.4}, long-run sd {:.4}, always-valid {:.0}% interval [{lo:.4}, {hi:.4}]",
            if logs { "log-ratios" } else { "relative differences" },
            variance.sqrt(),
            (1.0 - self.alpha) * 100.0
        );
        let mut decision = Decision::from_interval(&metric, self.pass_margin, lo, hi, to_effect);
        decision.at_horizon(self.horizon, align::covered(&times), (lo, hi), |effect| {
            if logs { effect.exp() } else { 1.0 + effect }
        });
        evidence.thresholds = decision.thresholds.clone();
        evidence.at_horizon = decision.at_horizon;
        evidence.decision = decision.text;
        MetricVerdict::new(metric, decision.outcome, evidence)
    }

    /// The radius of the always-valid confidence sequence for a normal mean after `n` observations of `variance`.
    fn radius(&self, n: usize, variance: f64) -> f64 {
        let (n, t2) = (n as f64, self.tau * self.tau);
        let spread = variance + n * t2;
        (2.0 * variance * spread / (n * n * t2) * ((1.0 / self.alpha).ln() + 0.5 * (spread / variance).ln())).sqrt()
    }

    fn counts(
        &self,
        metric: Metric,
        (baseline, canary): (&Series, &Series),
        requests: Option<(&Series, &Series)>,
        routed: &[(std::time::SystemTime, f64)],
        mut evidence: Evidence,
    ) -> MetricVerdict {
        evidence.dropped = (align::not_finite(baseline), align::not_finite(canary));
        // A group without a single number is missing data, never a share of zero: it must not pass.
        let unusable = |s: &Series| s.points.iter().all(|p| !(p.1.is_finite() && p.1 >= 0.0));
        let empty =
            [("baseline", unusable(baseline), evidence.dropped.0), ("canary", unusable(canary), evidence.dropped.1)];
        for (group, empty, dropped) in empty {
            if empty {
                let why = if dropped > 0 {
                    format!("no {group} data in the window: its {dropped} point(s) are not numbers or infinite")
                } else {
                    format!("no {group} counts in the window (none that is a number of zero or more)")
                };
                return MetricVerdict::new(metric, MetricOutcome::NoData(why), evidence);
            }
        }
        // Only the intervals both groups have: gaps and a lagging last interval do not count as a change.
        let aligned = align::counts(baseline, canary, &metric.exposure, requests, routed);
        evidence.unmatched = aligned.unmatched;
        evidence.baseline = aligned.intervals.iter().map(|i| i.baseline).collect();
        evidence.canary = aligned.intervals.iter().map(|i| i.canary).collect();
        // q: the canary's exposure over the baseline's (1 for equal traffic, 1/9 for a 10% canary).
        let q = aligned.exposure_ratio();
        evidence.traffic = aligned.describe(&metric.exposure);
        if aligned.intervals.is_empty() || !q.is_finite() || q <= 0.0 {
            let why = "no interval with data (and requests) from both groups".to_owned();
            return MetricVerdict::new(metric, MetricOutcome::NoData(why), evidence);
        }
        let (b, c): (f64, f64) = (evidence.baseline.iter().sum(), evidence.canary.iter().sum());
        // The ratio of the canary's rate to the baseline's.
        evidence.ratio = if b == 0.0 { if c == 0.0 { 1.0 } else { f64::INFINITY } } else { c / (b * q) };
        let times: Vec<u128> = aligned.intervals.iter().map(|i| i.at).collect();
        let covered = align::covered(&times);
        if b + c < 1.0 {
            // No events at all: the healthiest canary there is, once the data span the horizon.
            if let Some(horizon) = self.horizon.filter(|h| covered >= *h) {
                evidence.at_horizon = true;
                evidence.decision = format!("{}: no events in either group", not_found_worse(covered, horizon));
                return MetricVerdict::new(metric, MetricOutcome::Pass, evidence);
            }
            evidence.decision = "no events in either group yet".into();
            return MetricVerdict::new(metric, MetricOutcome::Undecided, evidence);
        }
        // Under equal rates the canary's share of the events is p0 = q / (1 + q). The mixture over that share is a
        // beta with mean p0 whose concentration the spread `tau` gives (Beta(a, a) around 1/2 for equal traffic).
        let a = ((0.25 / (self.tau * self.tau) - 1.0) / 2.0).max(1.0);
        let p0 = q / (1.0 + q);
        let (alpha, beta) = (2.0 * a * p0, 2.0 * a * (1.0 - p0));
        // Over-dispersion (bursts of errors from one pod, lingering from one interval to the next) widens the
        // interval: a quasi-likelihood, in which the counts weigh as if there were `dispersion` times fewer events
        // (the intervals' Pearson residuals' long-run variance, with a prior; at least 1).
        let dispersion = dispersion(&aligned, evidence.ratio);
        let (cq, bq) = (c / dispersion, b / dispersion);
        let log_lr = |p: f64| ln_beta(alpha + cq, beta + bq) - ln_beta(alpha, beta) - cq * p.ln() - bq * (1.0 - p).ln();
        let threshold = (1.0 / self.alpha).ln();
        let share = c / (b + c);
        // The confidence sequence: shares whose likelihood ratio stays below 1/alpha; it is an interval around `share`.
        let edge = |mut inside: f64, mut outside: f64| {
            for _ in 0..60 {
                let mid = (inside + outside) / 2.0;
                if log_lr(mid) < threshold { inside = mid } else { outside = mid }
            }
            inside
        };
        let at = share.clamp(1e-9, 1.0 - 1e-9);
        if !log_lr(at).is_finite() || !share.is_finite() {
            // Sums too large to weigh: no verdict rather than one on a number that is not one.
            evidence.decision = format!("the test cannot be computed on {b} and {c} events");
            return MetricVerdict::new(metric, MetricOutcome::Undecided, evidence);
        }
        let (lo, hi) = if log_lr(at) >= threshold {
            (at, at) // Even the observed share is excluded: cannot happen for a proper mixture; kept safe.
        } else {
            (edge(at, 1e-12), edge(at, 1.0 - 1e-12))
        };
        evidence.shift = share;
        evidence.interval = (lo, hi);
        evidence.scale = EffectScale::ShareOfEvents;
        evidence.statistic = format!(
            "beta-binomial mSPRT: canary {c} of {} events (share {share:.3}), dispersion {dispersion:.2}, always-valid {:.0}% interval [{lo:.3}, {hi:.3}]",
            b + c,
            (1.0 - self.alpha) * 100.0
        );
        // A ratio r of the canary's rate to the baseline's is a share r·q / (1 + r·q) of the events.
        let to_share = |ratio: f64| ratio * q / (1.0 + ratio * q);
        let mut decision = Decision::from_interval(&metric, self.pass_margin, lo, hi, to_share);
        // A share s of the events is a ratio s / ((1 - s) q) of the rates.
        decision.at_horizon(self.horizon, covered, (lo, hi), |s| s / ((1.0 - s) * q));
        evidence.thresholds = decision.thresholds.clone();
        evidence.at_horizon = decision.at_horizon;
        evidence.decision = decision.text;
        MetricVerdict::new(metric, decision.outcome, evidence)
    }
}

/// (t_ν / z)² at the two-sided level `alpha` with ν = n - 1 (Cornish-Fisher's expansion of Student's t quantile).
fn small_sample_factor(n: usize, alpha: f64) -> f64 {
    let nu = (n as f64 - 1.0).max(1.0);
    let z = normal_quantile(1.0 - alpha / 2.0);
    let t = z + (z.powi(3) + z) / (4.0 * nu) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * nu * nu);
    (t / z).powi(2)
}

/// The over-dispersion of the canary's share across intervals: the long-run variance (as for levels) of the Pearson
/// residuals of each interval's canary count given its total, against the share that interval's exposure and the
/// estimated rate ratio `ratio` give (about 1 for independent Poisson counts), weighed against a prior dispersion of
/// `PRIOR_DISPERSION` worth `PRIOR_INTERVALS` intervals; at least 1.
///
/// The prior is what keeps the first looks honest: a burst of 30 errors from one pod in the third minute, or counts
/// whose rate wanders by 30% from minute to minute, failed 3 to 4% of healthy canaries when the dispersion was taken
/// as 1 until ten intervals had been seen. It costs a minute or two of detection (errors ×2 at 10 per minute: 5 to 6
/// minutes instead of 4 to 5).
fn dispersion(aligned: &align::Aligned, ratio: f64) -> f64 {
    if !(ratio.is_finite() && ratio > 0.0) {
        return PRIOR_DISPERSION;
    }
    let residuals: Vec<f64> = aligned
        .intervals
        .iter()
        .filter(|i| i.baseline + i.canary > 0.0)
        .map(|i| {
            let total = i.baseline + i.canary;
            let q = ratio * i.canary_exposure / i.baseline_exposure;
            let share = q / (1.0 + q);
            (i.canary - total * share) / (total * share * (1.0 - share)).sqrt()
        })
        .filter(|r| r.is_finite())
        .collect();
    let m = residuals.len() as f64;
    let estimate = if residuals.len() >= 2 { long_run_variance(&residuals) } else { PRIOR_DISPERSION };
    ((PRIOR_INTERVALS * PRIOR_DISPERSION + m * estimate) / (PRIOR_INTERVALS + m)).max(1.0)
}

/// A metric's outcome from an always-valid interval `[lo, hi]` on the scale `to_scale` maps ratios to.
struct Decision {
    outcome: MetricOutcome,
    thresholds: String,
    text: String,
    at_horizon: bool,
}

impl Decision {
    fn from_interval(metric: &Metric, pass_margin: f64, lo: f64, hi: f64, to_scale: impl Fn(f64) -> f64) -> Self {
        let up = matches!(metric.direction, Direction::Increase | Direction::Either);
        let down = matches!(metric.direction, Direction::Decrease | Direction::Either);
        let (fail_up, fail_down) = (to_scale(metric.allowed_increase), to_scale(metric.allowed_decrease));
        let (pass_up, pass_down) = (
            to_scale(metric.allowed_increase.max(pass_margin)),
            to_scale(metric.allowed_decrease.min(1.0 / pass_margin)),
        );
        let thresholds = format!(
            "fails beyond {:.4} (up) / {:.4} (down); passes within {:.4} .. {:.4}",
            fail_up, fail_down, pass_down, pass_up
        );
        let (outcome, text) = if up && lo > fail_up {
            (MetricOutcome::High, format!("higher: the interval's lower end {lo:.4} > {fail_up:.4}"))
        } else if down && hi < fail_down {
            (MetricOutcome::Low, format!("lower: the interval's upper end {hi:.4} < {fail_down:.4}"))
        } else if (!up || hi < pass_up) && (!down || lo > pass_down) {
            (MetricOutcome::Pass, format!("no worse than the margin: interval [{lo:.4}, {hi:.4}]"))
        } else {
            (MetricOutcome::Undecided, format!("not yet clear: interval [{lo:.4}, {hi:.4}]"))
        };
        Self { outcome, thresholds, text, at_horizon: false }
    }

    /// An undecided metric whose data span `n` intervals, at or past the `horizon`, passes; its text says what the interval
    /// `(lo, hi)` still allows, as ratios of the canary's to the baseline's (`to_ratio`).
    fn at_horizon(&mut self, horizon: Option<usize>, n: usize, (lo, hi): (f64, f64), to_ratio: impl Fn(f64) -> f64) {
        if let Some(horizon) = horizon {
            self.thresholds.push_str(&format!("; passes undecided at the horizon of {horizon} intervals"));
            if self.outcome == MetricOutcome::Undecided && n >= horizon {
                self.outcome = MetricOutcome::Pass;
                self.at_horizon = true;
                self.text = format!(
                    "{}: the data still allow ×{:.3} to ×{:.3}",
                    not_found_worse(n, horizon),
                    to_ratio(lo),
                    to_ratio(hi)
                );
            }
        }
    }
}

/// How a decision at the horizon begins.
fn not_found_worse(n: usize, horizon: usize) -> String {
    format!("not found worse over {n} intervals (the horizon is {horizon})")
}

/// The dispersion of error counts assumed before the data can tell (weighed as `PRIOR_INTERVALS` intervals): bursts
/// of errors from one pod are common, and at the first looks a handful of intervals cannot show them.
const PRIOR_DISPERSION: f64 = 1.5;
const PRIOR_INTERVALS: f64 = 10.0;

/// The smallest standard deviation a level metric's paired differences are taken to have (1% on the log or relative
/// scale): below it, monitoring's own rounding and sampling would read as certainty.
const MIN_SD: f64 = 0.01;

impl Default for SequentialJudge {
    fn default() -> Self {
        Self::new()
    }
}

impl Judge for SequentialJudge {
    fn check(&self) -> Result<(), String> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(format!("`alpha` is {}; it must be above 0 and below 1 (0.01 = 1%)", self.alpha));
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return Err(format!("`tau` is {}; it must be a positive effect size (0.1 = 10%)", self.tau));
        }
        if self.horizon == Some(0) {
            return Err("`horizon` is 0 intervals; it must be at least 1 (or use `without_horizon`)".into());
        }
        if !(self.pass_margin.is_finite() && self.pass_margin >= 1.0) {
            return Err(format!(
                "`pass_margin` is {}; it must be a ratio of at least 1 (1.05 = no worse than 5%)",
                self.pass_margin
            ));
        }
        Ok(())
    }

    fn judge(&self, data: &[MetricData]) -> Verdict {
        let metrics: Vec<MetricVerdict> = data.iter().map(|d| self.classify(d)).collect();
        let names = |pick: &dyn Fn(&MetricVerdict) -> bool| {
            metrics.iter().filter(|m| pick(m)).map(|m| m.metric.name.as_str()).collect::<Vec<_>>().join(", ")
        };
        let passed = metrics.iter().filter(|m| m.outcome == MetricOutcome::Pass).count();
        let score = if metrics.is_empty() { 0.0 } else { passed as f64 / metrics.len() as f64 * 100.0 };
        let (critical, failed) = (names(&|m| m.metric.critical && m.failed()), names(&|m| m.failed()));
        let (missing, undecided) = (
            names(&|m| matches!(m.outcome, MetricOutcome::NoData(_) | MetricOutcome::QueryFailed(_))),
            names(&|m| m.outcome == MetricOutcome::Undecided),
        );
        let (outcome, reason) = if metrics.is_empty() {
            (Outcome::Inconclusive, "no metrics to judge".to_owned())
        } else if !critical.is_empty() {
            (Outcome::Fail, format!("critical metric failed: {critical}"))
        } else if !failed.is_empty() {
            (Outcome::Fail, format!("failed: {failed}"))
        } else if !missing.is_empty() {
            (Outcome::Inconclusive, format!("no verdict without data: {missing}"))
        } else if !undecided.is_empty() {
            (Outcome::Inconclusive, format!("not decided yet: {undecided}"))
        } else {
            let margin = (self.pass_margin - 1.0) * 100.0;
            let at_horizon = names(&|m| m.evidence.at_horizon);
            if at_horizon.is_empty() {
                (Outcome::Pass, format!("every metric shown no worse than {margin:.0}%"))
            } else {
                (Outcome::Pass, format!("no metric found worse; not found worse by the horizon: {at_horizon}"))
            }
        };
        Verdict { outcome, score, reason, metrics }
    }
}
