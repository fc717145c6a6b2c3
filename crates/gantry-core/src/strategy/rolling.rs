//! The rolling strategy: update in place, roll back on failure.

use async_trait::async_trait;

use super::{Release, Slot, Strategy, Target, TargetError, or_cancelled};
use crate::{Phase, StepContext, StepError};

/// Updates the stable slot in place (the target follows the rollout and fails fast); on failure or cancellation
/// deploys the previous release again and fails, saying so.
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
        let Some(previous) = previous else {
            return Err(StepError::new(format!("deploying {release} failed: {error}; there was no earlier release")));
        };
        let outcome = match target.deploy(Slot::Stable, &previous).await {
            Ok(()) => format!("rolled back to {previous}"),
            Err(e) => format!("rolling back to {previous} failed too: {e}"),
        };
        ctx.phase(Phase::RolledBack, format!("{release} failed ({error}); {outcome}"));
        if matches!(error, TargetError::Cancelled) {
            return Err(StepError::interrupted(format!("deploying {release} was interrupted; {outcome}")));
        }
        Err(StepError::new(format!("deploying {release} failed: {error}; {outcome}")))
    }

    fn describe(&self, _ctx: &StepContext) -> String {
        "rolling update, rolling back on failure".into()
    }
}

pub(crate) fn failed(e: TargetError) -> StepError {
    StepError::new(e.to_string())
}
