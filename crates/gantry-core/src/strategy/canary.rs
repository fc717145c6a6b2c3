//! The canary strategy: traffic shifted step by step, with analysis; a failed verdict aborts.

use std::time::Duration;

use async_trait::async_trait;

use super::TargetError;
use super::rolling::failed;
use super::{
    Capabilities, Promotion, Release, Slot, Stop, Strategy, Target, Traffic, or_cancelled, restore, sleep_or_cancelled,
    stopped, wait_for_promotion, weigh_verdict,
};
use crate::analysis::{Analysis, TrafficLog};
use crate::{Phase, StepContext, StepError};

/// One step of a canary.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CanaryStep {
    /// Sends this percent of traffic to the canary.
    SetWeight(u8),
    /// Waits.
    Pause(Duration),
    /// Waits until the deployment is promoted through its [`Promotion`] handle.
    PauseUntilPromoted,
    /// Runs an analysis of the canary against the stable release; a failure aborts.
    Analyze(Box<Analysis>),
}

/// Argo Rollouts' canary: the new release starts in the canary slot beside the stable one, then a list of steps
/// shifts traffic to it, pauses, and analyses it (optionally also in the background, all along). A failed analysis
/// **aborts**: all traffic back to stable, the canary scaled to zero, and an event saying why with the numbers. An
/// inconclusive one follows its metrics' policy (abort, pause for a promotion, or carry on). After the last step the
/// canary is promoted: the stable slot runs the new release and takes all traffic.
///
/// Traffic follows the target: replica ratios without a router, route weights with one.
#[derive(Clone, Debug, Default)]
pub struct Canary {
    steps: Vec<CanaryStep>,
    background: Option<Box<Analysis>>,
    promotion: Promotion,
}

impl Canary {
    /// A canary with no steps yet (it would promote at once).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a step.
    #[must_use]
    pub fn step(mut self, step: CanaryStep) -> Self {
        self.steps.push(step);
        self
    }

    /// Adds a step that sends `percent` of traffic to the canary.
    #[must_use]
    pub fn set_weight(self, percent: u8) -> Self {
        self.step(CanaryStep::SetWeight(percent))
    }

    /// Adds a pause.
    #[must_use]
    pub fn pause(self, duration: Duration) -> Self {
        self.step(CanaryStep::Pause(duration))
    }

    /// Adds a pause that lasts until the deployment is promoted (see [`Canary::promotion`]).
    #[must_use]
    pub fn pause_until_promoted(self) -> Self {
        self.step(CanaryStep::PauseUntilPromoted)
    }

    /// Adds an analysis step.
    #[must_use]
    pub fn analyze(self, analysis: Analysis) -> Self {
        self.step(CanaryStep::Analyze(Box::new(analysis)))
    }

    /// Runs `analysis` in the background from the first step to the promotion; a failure aborts at once.
    #[must_use]
    pub fn background(mut self, analysis: Analysis) -> Self {
        self.background = Some(Box::new(analysis));
        self
    }

    /// The handle that promotes this canary when it pauses for a promotion.
    #[must_use]
    pub fn promotion(mut self, promotion: Promotion) -> Self {
        self.promotion = promotion;
        self
    }

    async fn steps(
        &self,
        target: &dyn Target,
        (stable, release): (&Release, &Release),
        routed: &TrafficLog,
        ctx: &StepContext,
    ) -> Result<(), Stop> {
        for step in &self.steps {
            match step {
                CanaryStep::SetWeight(weight) => {
                    // While traffic moves, no share holds: analyses leave those intervals out.
                    routed.changing();
                    let traffic = Traffic::weighted(*weight);
                    or_cancelled(ctx, target.set_traffic(&traffic)).await?;
                    super::report_traffic(ctx, stable, release, &traffic);
                    let note = record_share(target, routed, Some(f64::from(*weight) / 100.0), ctx).await?;
                    ctx.phase(Phase::WeightChanged, format!("{weight}% of traffic to {release}{note}"));
                }
                CanaryStep::Pause(duration) => {
                    ctx.phase(Phase::Paused, format!("pausing {duration:?}"));
                    sleep_or_cancelled(ctx, *duration).await?;
                }
                CanaryStep::PauseUntilPromoted => wait_for_promotion(ctx, &self.promotion, release).await?,
                CanaryStep::Analyze(analysis) => {
                    let verdict = analysis.run_routed(ctx, stable, release, routed).await;
                    weigh_verdict(ctx, &self.promotion, release, &verdict).await?;
                }
            }
        }
        Ok(())
    }
}

/// Records in `routed` the share the target routes to the canary now, for analyses that judge errors against it;
/// `set` (the weight just set) if the target cannot tell, or cannot answer now (the note then says so). Returns a
/// note for the event when the routed share is not the weight set (or, with none set, when it is not zero).
async fn record_share(
    target: &dyn Target,
    routed: &TrafficLog,
    set: Option<f64>,
    ctx: &StepContext,
) -> Result<String, Stop> {
    let (share, note) = match or_cancelled(ctx, target.traffic_share()).await {
        Ok(Some(share)) if set.map_or(share > 0.0, |set| (share - set).abs() > 0.005) => {
            (Some(share), format!(" (the target routes {:.1}% to it)", share * 100.0))
        }
        Ok(Some(share)) => (Some(share), String::new()),
        Ok(None) => (set, String::new()),
        Err(TargetError::Cancelled) => return Err(Stop::Cancelled),
        Err(e) if set.is_some() => (set, format!(" (the routed share could not be read; the weight is assumed: {e})")),
        Err(e) => (None, format!(" (the routed share could not be read: {e})")),
    };
    // Unknown: the change stays "under way", so analyses leave the time out rather than guess.
    if let Some(share) = share {
        routed.record(share);
    }
    Ok(note)
}

#[async_trait]
impl Strategy for Canary {
    async fn deploy(&self, target: &dyn Target, release: &Release, ctx: &StepContext) -> Result<(), StepError> {
        let Some(stable) = target.current().await.map_err(failed)? else {
            // Nothing to compare with: the first release goes straight to stable.
            or_cancelled(ctx, target.deploy(Slot::Stable, release)).await.map_err(failed)?;
            ctx.phase(Phase::Deployed, format!("{release} is live (first release: no canary)"));
            return Ok(());
        };
        let routed = TrafficLog::new();
        let run = async {
            routed.changing();
            or_cancelled(ctx, target.deploy(Slot::Canary, release)).await?;
            // A canary may take traffic as soon as it runs (one pod behind the stable Service).
            let note = record_share(target, &routed, None, ctx).await?;
            ctx.phase(Phase::Deployed, format!("canary {release} is ready beside {stable}{note}"));
            match &self.background {
                None => self.steps(target, (&stable, release), &routed, ctx).await,
                Some(analysis) => {
                    let steps = self.steps(target, (&stable, release), &routed, ctx);
                    let background = async {
                        let verdict = analysis.run_routed(ctx, &stable, release, &routed).await;
                        weigh_verdict(ctx, &self.promotion, release, &verdict).await?;
                        // A background analysis that passed lets the steps finish.
                        std::future::pending::<Result<(), Stop>>().await
                    };
                    tokio::pin!(steps, background);
                    tokio::select! {
                        r = &mut steps => r,
                        r = &mut background => r,
                    }
                }
            }?;
            or_cancelled(ctx, target.promote(Slot::Canary)).await?;
            Ok::<(), Stop>(())
        };
        let why = match run.await {
            Ok(()) => {
                super::report_traffic(ctx, &stable, release, &Traffic::weighted(100));
                ctx.phase(Phase::Promoted, format!("{release} is stable, with all traffic"));
                return Ok(());
            }
            Err(stop) => stop.reason(),
        };
        // Abort: the stable release restored, with all traffic; the canary removed.
        let outcome = match restore(ctx, target, &stable, &format!("canary {release} aborted: {why}")).await {
            Ok(()) => {
                super::report_traffic(ctx, &stable, release, &Traffic::stable());
                format!("all traffic back on {stable}, canary removed")
            }
            Err(left) => left,
        };
        stopped(ctx, Phase::Aborted, format!("canary {release} aborted: {why}; {outcome}"))
    }

    fn describe(&self, _ctx: &StepContext) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|s| match s {
                CanaryStep::SetWeight(w) => format!("{w}%"),
                CanaryStep::Pause(d) => format!("pause {d:?}"),
                CanaryStep::PauseUntilPromoted => "wait for promotion".into(),
                CanaryStep::Analyze(a) => format!("analysis of {} metrics", a.metrics().len()),
            })
            .collect();
        let background = if self.background.is_some() { ", with background analysis" } else { "" };
        format!("canary: {} → promote{background}; abort on failed analysis", steps.join(" → "))
    }

    fn check(&self) -> Result<(), String> {
        for (i, step) in self.steps.iter().enumerate() {
            if let CanaryStep::Analyze(analysis) = step {
                analysis.check().map_err(|e| format!("the analysis of canary step {}: {e}", i + 1))?;
            }
        }
        match &self.background {
            Some(analysis) => analysis.check().map_err(|e| format!("the background analysis: {e}")),
            None => Ok(()),
        }
    }

    fn requires(&self) -> Capabilities {
        let partial = self.steps.iter().any(|s| matches!(s, CanaryStep::SetWeight(w) if *w > 0 && *w < 100));
        if partial { Capabilities::NONE.with_weights() } else { Capabilities::NONE }
    }
}
