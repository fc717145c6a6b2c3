//! The blue/green strategy: the new version beside the old behind a preview, then a switch.

use std::time::Duration;

use async_trait::async_trait;

use super::rolling::failed;
use super::{
    Capabilities, Match, Promotion, Release, Slot, Stop, Strategy, Target, Traffic, or_cancelled, restore,
    sleep_or_cancelled, stopped, wait_for_promotion, weigh_verdict,
};
use crate::analysis::Analysis;
use crate::{Phase, StepContext, StepError};

/// Argo Rollouts' blue/green: the new release runs in the preview slot beside the stable (active) one. An optional
/// pre-promotion analysis must pass (a failure aborts: the preview goes, the old version stays active). Promotion,
/// after a delay or through the [`Promotion`] handle, switches all traffic to the new version; an optional
/// post-promotion analysis then must pass, or traffic switches back. The old version is kept for a scale-down delay
/// (default 30 s), then the new release becomes the stable one.
///
/// For A/B tests, [`preview_route`](BlueGreen::preview_route) sends requests matching a header or cookie to the new
/// version while it is in preview; the route is removed at promotion or abort.
#[derive(Clone, Debug)]
pub struct BlueGreen {
    pre_promotion: Option<Box<Analysis>>,
    post_promotion: Option<Box<Analysis>>,
    auto_promote: Option<Duration>,
    scale_down_delay: Duration,
    preview_route: Option<Match>,
    promotion: Promotion,
}

impl Default for BlueGreen {
    fn default() -> Self {
        Self {
            pre_promotion: None,
            post_promotion: None,
            auto_promote: Some(Duration::ZERO),
            scale_down_delay: Duration::from_secs(30),
            preview_route: None,
            promotion: Promotion::new(),
        }
    }
}

impl BlueGreen {
    /// Blue/green promoting as soon as the preview is ready (and its analysis passed), old version kept 30 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Analyses the preview before promotion; a failure aborts.
    #[must_use]
    pub fn pre_promotion(mut self, analysis: Analysis) -> Self {
        self.pre_promotion = Some(Box::new(analysis));
        self
    }

    /// Analyses the new version after promotion; a failure switches traffic back.
    #[must_use]
    pub fn post_promotion(mut self, analysis: Analysis) -> Self {
        self.post_promotion = Some(Box::new(analysis));
        self
    }

    /// Promotes `delay` after the preview is ready (and analysed).
    #[must_use]
    pub fn auto_promote_after(mut self, delay: Duration) -> Self {
        self.auto_promote = Some(delay);
        self
    }

    /// Waits for an explicit promotion through `promotion` instead of promoting on its own.
    #[must_use]
    pub fn wait_for(mut self, promotion: Promotion) -> Self {
        self.auto_promote = None;
        self.promotion = promotion;
        self
    }

    /// How long the old version is kept after promotion (default 30 s), for a fast switch back.
    #[must_use]
    pub fn scale_down_delay(mut self, delay: Duration) -> Self {
        self.scale_down_delay = delay;
        self
    }

    /// While in preview, requests matching `rule` go to the new version (A/B tests).
    #[must_use]
    pub fn preview_route(mut self, rule: Match) -> Self {
        self.preview_route = Some(rule);
        self
    }

    async fn analyse(
        &self,
        analysis: &Analysis,
        ctx: &StepContext,
        stable: &Release,
        release: &Release,
    ) -> Result<(), Stop> {
        let verdict = analysis.run(ctx, stable, release).await;
        weigh_verdict(ctx, &self.promotion, release, &verdict).await
    }

    /// Deploys the preview, analyses it and waits for the promotion.
    async fn preview(
        &self,
        target: &dyn Target,
        stable: &Release,
        release: &Release,
        ctx: &StepContext,
    ) -> Result<(), Stop> {
        or_cancelled(ctx, target.deploy(Slot::Preview, release)).await?;
        ctx.phase(Phase::Deployed, format!("preview {release} is ready beside the active {stable}"));
        if let Some(rule) = &self.preview_route {
            let traffic = Traffic::matching(rule.clone());
            or_cancelled(ctx, target.set_traffic(&traffic)).await?;
            super::report_traffic(ctx, stable, release, &traffic);
            ctx.phase(Phase::WeightChanged, format!("requests matching {rule:?} go to {release}"));
        }
        if let Some(analysis) = &self.pre_promotion {
            self.analyse(analysis, ctx, stable, release).await?;
        }
        match self.auto_promote {
            Some(delay) => sleep_or_cancelled(ctx, delay).await?,
            None => wait_for_promotion(ctx, &self.promotion, release).await?,
        }
        Ok(())
    }
}

#[async_trait]
impl Strategy for BlueGreen {
    async fn deploy(&self, target: &dyn Target, release: &Release, ctx: &StepContext) -> Result<(), StepError> {
        let Some(stable) = target.current().await.map_err(failed)? else {
            or_cancelled(ctx, target.deploy(Slot::Stable, release)).await.map_err(failed)?;
            ctx.phase(Phase::Deployed, format!("{release} is live (first release)"));
            return Ok(());
        };
        if let Err(stop) = self.preview(target, &stable, release, ctx).await {
            let why = stop.reason();
            let outcome = match restore(ctx, target, &stable, &format!("blue/green of {release} aborted: {why}")).await
            {
                Ok(()) => {
                    super::report_traffic(ctx, &stable, release, &Traffic::stable());
                    format!("{stable} stays active, preview removed")
                }
                Err(left) => left,
            };
            return stopped(ctx, Phase::Aborted, format!("blue/green of {release} aborted: {why}; {outcome}"));
        }

        // Switch: all traffic to the new version, the old one kept running; then the analysis, the scale-down delay
        // and the promotion. Whatever stops it switches back.
        let after = async {
            or_cancelled(ctx, target.set_traffic(&Traffic::weighted(100))).await?;
            super::report_traffic(ctx, &stable, release, &Traffic::weighted(100));
            ctx.phase(
                Phase::WeightChanged,
                format!("active traffic switched to {release}; {stable} kept for {:?}", self.scale_down_delay),
            );
            if let Some(analysis) = &self.post_promotion {
                self.analyse(analysis, ctx, &stable, release).await?;
            }
            sleep_or_cancelled(ctx, self.scale_down_delay).await?;
            or_cancelled(ctx, target.promote(Slot::Preview)).await?;
            Ok::<(), Stop>(())
        };
        if let Err(stop) = after.await {
            let why = stop.reason();
            let outcome = match restore(ctx, target, &stable, &format!("{release} after promotion: {why}")).await {
                Ok(()) => {
                    super::report_traffic(ctx, &stable, release, &Traffic::stable());
                    format!("switched back to {stable}")
                }
                Err(left) => left,
            };
            return stopped(ctx, Phase::SwitchedBack, format!("{release} after promotion: {why}; {outcome}"));
        }
        ctx.phase(Phase::Promoted, format!("{release} is stable; {stable} scaled down"));
        Ok(())
    }

    fn describe(&self, _ctx: &StepContext) -> String {
        let mut parts = vec!["blue/green: preview".to_owned()];
        if let Some(rule) = &self.preview_route {
            parts.push(format!("route {rule:?} to preview"));
        }
        if self.pre_promotion.is_some() {
            parts.push("pre-promotion analysis".into());
        }
        parts.push(match self.auto_promote {
            Some(d) if d.is_zero() => "promote".into(),
            Some(d) => format!("promote after {d:?}"),
            None => "wait for promotion".into(),
        });
        if self.post_promotion.is_some() {
            parts.push("post-promotion analysis (switch back on failure)".into());
        }
        parts.push(format!("keep the old version {:?}", self.scale_down_delay));
        parts.join(" → ")
    }

    fn check(&self) -> Result<(), String> {
        if let Some(analysis) = &self.pre_promotion {
            analysis.check().map_err(|e| format!("the pre-promotion analysis: {e}"))?;
        }
        match &self.post_promotion {
            Some(analysis) => analysis.check().map_err(|e| format!("the post-promotion analysis: {e}")),
            None => Ok(()),
        }
    }

    fn requires(&self) -> Capabilities {
        match &self.preview_route {
            Some(Match::Header { .. }) => Capabilities::NONE.with_header_routes(),
            Some(Match::Cookie { .. }) => Capabilities::NONE.with_cookie_routes(),
            None => Capabilities::NONE,
        }
    }
}
