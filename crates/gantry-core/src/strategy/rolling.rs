//! The rolling strategy: update in place, roll back on failure.

use async_trait::async_trait;

use super::{Release, Slot, Strategy, Target, TargetError, or_cancelled, restore, shown};
use crate::{Phase, StepContext, StepError};

/// Updates the stable slot in place (the target follows the rollout and fails fast); on failure or cancellation
/// [restores](Target::restore) the previous release and fails, saying so.
#[derive(Clone, Debug, Default)]
pub struct Rolling {
    _private: (),
}

impl Rolling {
    /// The rolling strategy.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Strategy for Rolling {
    async fn deploy(&self, target: &dyn Target, release: &Release, ctx: &StepContext) -> Result<(), StepError> {
        let previous = target.current().await.map_err(failed)?;
        let error = match or_cancelled(ctx, target.deploy(Slot::Stable, release)).await {
            Ok(()) => {
                ctx.phase(Phase::Deployed, format!("{release} is live"));
                return Ok(());
            }
            Err(e) => e,
        };
        let interrupted = matches!(error, TargetError::Cancelled) || ctx.is_cancelled();
        let error_retryable = error.is_retryable();
        let failure = if interrupted { super::Stop::Cancelled.reason() } else { error.to_string() };
        let new = shown(release);
        let Some(previous) = previous else {
            return Err(StepError::new(format!(
                "deploying {new} failed: {failure}; there was no earlier release to go back to"
            )));
        };
        ctx.log(format!("rolling back to {}: {failure}", shown(&previous)));
        let (restored, outcome) =
            match restore(ctx, target, &previous, &format!("deploying {new} failed: {failure}")).await {
                Ok(()) => (true, format!("rolled back to {}, which is healthy again", shown(&previous))),
                Err(left) => (false, left),
            };
        ctx.phase(Phase::RolledBack, format!("{release} failed ({failure}); {outcome}"));
        if interrupted {
            return Err(StepError::interrupted(format!("deploying {new} was interrupted; {outcome}")));
        }
        let error = StepError::new(format!("deploying {new} failed: {failure}; {outcome}"));
        // A passing platform fault, and the previous release is back: trying the whole deploy again is safe.
        Err(if restored && error_retryable { error.retryable() } else { error })
    }

    fn describe(&self, _ctx: &StepContext) -> String {
        "rolling update, rolling back on failure".into()
    }
}

/// A target's failure as the step's: retryable when the target's was (a step's `.retry()` then tries again).
pub(crate) fn failed(e: TargetError) -> StepError {
    let retryable = e.is_retryable();
    let error = StepError::new(e.to_string());
    if retryable { error.retryable() } else { error }
}
