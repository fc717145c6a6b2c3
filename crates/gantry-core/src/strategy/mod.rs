//! Deployment strategies: how a new release replaces the running one on a [`Target`].
//!
//! A [`Strategy`] drives a [`Target`] (Kubernetes in `gantry-kube`, [`MemoryTarget`] in tests) through a few
//! operations: deploy into a [`Slot`], split [`Traffic`], promote, scale down. [`Deploy`] runs a strategy as a
//! pipeline step. [`Rolling`] updates in place and rolls back on failure; [`Canary`] shifts traffic step by step with
//! analysis, aborting on a failed verdict; [`BlueGreen`] runs the new version beside the old and switches over;
//! [`Conditional`] picks one of them from the run's context. Every phase is an [`Event::Phase`](crate::Event).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use gantry_core::strategy::{Canary, Conditional, Deploy, MemoryTarget, Release, Rolling};
//! use gantry_core::{Condition, Context, Pipeline, RunStatus};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let target = Arc::new(MemoryTarget::with_stable(Release::new("web", "1.0")));
//! let strategy = Conditional::new(Rolling::new())
//!     .when(Condition::var_equals("env", "production"), Canary::new().set_weight(20).pause(Duration::from_millis(1)).set_weight(50));
//! let pipeline = Pipeline::builder("release")
//!     .step("deploy", Deploy::new(target.clone(), strategy, "web", "{{version}}"))
//!     .build()
//!     .unwrap();
//! let report = pipeline.run(Context::new().var("env", "production").var("version", "1.1")).await.unwrap();
//! assert_eq!(report.status, RunStatus::Succeeded);
//! assert_eq!(target.stable().unwrap().version, "1.1");
//! # });
//! ```

mod blue_green;
mod canary;
mod conditional;
mod deploy;
mod memory;
mod promotion;
mod restore;
mod rolling;
mod target;

use async_trait::async_trait;

pub use blue_green::BlueGreen;
pub use canary::{Canary, CanaryStep};
pub use conditional::Conditional;
pub use deploy::{Deploy, VERDICT};
pub use memory::MemoryTarget;
pub use promotion::Promotion;
pub use restore::{DEFAULT_RESTORE_BUDGET, run_strategy};
pub(crate) use restore::{restore, shown};
pub use rolling::Rolling;
pub use target::{Capabilities, Match, Release, Slot, Target, TargetError, Traffic};

use crate::{StepContext, StepError};

/// A way of replacing the running release with a new one. Strategies compose with pipelines by running inside a
/// [`Deploy`] step, and with each other through [`Conditional`].
#[async_trait]
pub trait Strategy: Send + Sync + std::fmt::Debug {
    /// Deploys `release` to `target`. On failure the target is left on the release that was stable before, and the
    /// error says what failed and what was done about it.
    async fn deploy(&self, target: &dyn Target, release: &Release, ctx: &StepContext) -> Result<(), StepError>;

    /// What it would do, for plans (`canary: 20% → pause 5m → analysis → 50%`).
    fn describe(&self, ctx: &StepContext) -> String;

    /// What it needs of its target's traffic handling (default: nothing beyond switching all traffic). A
    /// [`Deploy`] step checks it against [`Target::capabilities`] when the pipeline is built.
    fn requires(&self) -> Capabilities {
        Capabilities::NONE
    }

    /// Whether its settings make sense (its analyses' judges, thresholds and windows): the reason names what is
    /// wrong. A [`Deploy`] step checks it when the pipeline is built. Default: fine.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A shared strategy is a strategy: one `Arc<dyn Strategy>` can drive several [`Deploy`] steps.
#[async_trait]
impl<S: Strategy + ?Sized> Strategy for std::sync::Arc<S> {
    async fn deploy(&self, target: &dyn Target, release: &Release, ctx: &StepContext) -> Result<(), StepError> {
        (**self).deploy(target, release, ctx).await
    }

    fn describe(&self, ctx: &StepContext) -> String {
        (**self).describe(ctx)
    }

    fn requires(&self) -> Capabilities {
        (**self).requires()
    }

    fn check(&self) -> Result<(), String> {
        (**self).check()
    }
}

/// How a strategy ended before its end: aborted for a reason, or cancelled with the run.
pub(crate) enum Stop {
    Abort(String),
    Cancelled,
}

impl From<TargetError> for Stop {
    fn from(e: TargetError) -> Self {
        match e {
            TargetError::Cancelled => Self::Cancelled,
            other => Self::Abort(other.to_string()),
        }
    }
}

impl Stop {
    /// Why, in words.
    pub(crate) fn reason(self) -> String {
        match self {
            Stop::Abort(why) => why,
            Stop::Cancelled => "interrupted (the run was cancelled, or the step's timeout passed)".to_owned(),
        }
    }
}

/// Reports that `release` waits for a promotion, and waits for it through `promotion` (or a cancellation).
pub(crate) async fn wait_for_promotion(
    ctx: &StepContext,
    promotion: &Promotion,
    release: &Release,
) -> Result<(), Stop> {
    let Some(approvals) = promotion.gates() else {
        ctx.phase(crate::Phase::WaitingForPromotion, format!("{release} waits for a promotion"));
        or_cancelled(ctx, async {
            promotion.wait().await;
            Ok(())
        })
        .await?;
        return Ok(());
    };
    if promotion.take_given() {
        // Promoted before it waited: no gate to list.
        ctx.phase(crate::Phase::WaitingForPromotion, format!("{release} was promoted before it waited"));
        return Ok(());
    }
    // A gate too: approve promotes, reject aborts.
    let id = format!("{}/{}", ctx.run_id(), ctx.name());
    let message = ctx.redact(&format!("promote {release}? (reject aborts it)")).into_owned();
    let pending = crate::PendingApproval {
        id: id.clone(),
        run_id: ctx.run_id().to_owned(),
        step: ctx.name().to_owned(),
        message: message.clone(),
        since: std::time::SystemTime::now(),
    };
    let (_registration, decided) = approvals.open(pending);
    // One phase: the wait is a gate (Slack puts its buttons under it).
    ctx.phase(crate::Phase::WaitingForApproval, format!("{release} waits for a promotion on gate {id}: {message}"));
    tokio::select! {
        // A decision taken together with a promotion wins: a rejection is never overridden.
        biased;
        decision = decided => match decision {
            Ok(decision) if decision.approved => {
                ctx.phase(crate::Phase::Approved, decision.describe());
                Ok(())
            }
            Ok(decision) => {
                ctx.phase(crate::Phase::Rejected, decision.describe());
                Err(Stop::Abort(format!("the promotion was {}", decision.describe())))
            }
            Err(_) => Err(Stop::Abort(format!("gate {id} was dropped"))),
        },
        () = ctx.cancellation().cancelled() => Err(Stop::Cancelled),
        () = promotion.wait() => Ok(()),
    }
}

/// Reports an analysis verdict (a phase event and the [`VERDICT`] output) and decides what it means: a pass goes
/// on, a failure aborts, an inconclusive one follows its metrics' policy (carry on, wait for `promotion`, abort).
pub(crate) async fn weigh_verdict(
    ctx: &StepContext,
    promotion: &Promotion,
    release: &Release,
    verdict: &crate::analysis::Verdict,
) -> Result<(), Stop> {
    use crate::analysis::{OnInconclusive, Outcome};
    if ctx.is_cancelled() {
        return Err(Stop::Cancelled);
    }
    // One line per metric: the verdict event is what a person follows in the terminal or the run view.
    ctx.phase(crate::Phase::Verdict, format!("{verdict:#}"));
    ctx.emit(crate::Event::Analysis {
        step: ctx.name_arc(),
        verdict: std::sync::Arc::new(verdict.masked(|t| ctx.redact(t).into_owned())),
    });
    ctx.publish(VERDICT, verdict.clone());
    match verdict.outcome {
        Outcome::Pass => Ok(()),
        Outcome::Fail => Err(Stop::Abort(format!("analysis failed: {verdict}"))),
        Outcome::Inconclusive => match verdict.on_inconclusive() {
            OnInconclusive::Notify => Ok(()),
            OnInconclusive::Pause => wait_for_promotion(ctx, promotion, release).await,
            OnInconclusive::Abort => Err(Stop::Abort(format!("analysis inconclusive: {verdict}"))),
        },
    }
}

/// Reports where traffic goes after a move: `traffic` between `stable` and `candidate` (an [`Event::Traffic`]
/// (crate::Event::Traffic)).
pub(crate) fn report_traffic(ctx: &StepContext, stable: &Release, candidate: &Release, traffic: &Traffic) {
    let matching = traffic.matching.as_ref().map(|rule| match rule {
        Match::Header { name, value } => format!("header {name}: {value}"),
        Match::Cookie { name, value } => format!("cookie {name}={value}"),
    });
    let route = crate::TrafficRoute {
        stable: ctx.redact(&stable.to_string()).into_owned(),
        candidate: ctx.redact(&candidate.to_string()).into_owned(),
        weight: traffic.weight,
        matching: matching.map(|m| ctx.redact(&m).into_owned()),
    };
    ctx.emit(crate::Event::Traffic { step: ctx.name_arc(), route: std::sync::Arc::new(route) });
}

/// Ends a strategy that stopped early: reports `message` as `phase` and fails the step (as interrupted if it was told
/// to stop), saying what was done.
pub(crate) fn stopped(ctx: &StepContext, phase: crate::Phase, message: String) -> Result<(), StepError> {
    ctx.phase(phase, &message);
    Err(if ctx.is_cancelled() { StepError::interrupted(message) } else { StepError::new(message) })
}

/// Runs `op` unless the run is cancelled first.
pub(crate) async fn or_cancelled<T>(
    ctx: &StepContext,
    op: impl std::future::Future<Output = Result<T, TargetError>>,
) -> Result<T, TargetError> {
    tokio::select! {
        biased;
        () = ctx.cancellation().cancelled() => Err(TargetError::Cancelled),
        r = op => r,
    }
}

/// Waits `duration` unless the run is cancelled first.
pub(crate) async fn sleep_or_cancelled(ctx: &StepContext, duration: std::time::Duration) -> Result<(), TargetError> {
    or_cancelled(ctx, async {
        tokio::time::sleep(duration).await;
        Ok(())
    })
    .await
}
