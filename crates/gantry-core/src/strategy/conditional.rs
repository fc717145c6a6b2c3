//! Choosing a strategy from the run's context.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Capabilities, Release, Strategy, Target};
use crate::{Condition, StepContext, StepError};

/// Picks the first strategy whose condition holds for the run (production → canary, a `hotfix` label → rolling),
/// else the fallback. The choice is logged with its reason.
///
/// ```
/// use gantry_core::strategy::{Canary, Conditional, Rolling};
/// use gantry_core::Condition;
/// let strategy = Conditional::new(Rolling::new())
///     .when(Condition::var_equals("labels.hotfix", "true"), Rolling::new())
///     .when(Condition::var_equals("env", "production"), Canary::new().set_weight(10));
/// # let _ = strategy;
/// ```
#[derive(Clone, Debug)]
pub struct Conditional {
    branches: Vec<(Condition, Arc<dyn Strategy>)>,
    otherwise: Arc<dyn Strategy>,
}

impl Conditional {
    /// Falls back to `otherwise` when no condition holds.
    pub fn new(otherwise: impl Strategy + 'static) -> Self {
        Self { branches: Vec::new(), otherwise: Arc::new(otherwise) }
    }

    /// Uses `strategy` when `condition` holds (checked in the order added).
    #[must_use]
    pub fn when(mut self, condition: Condition, strategy: impl Strategy + 'static) -> Self {
        self.branches.push((condition, Arc::new(strategy)));
        self
    }

    fn choose(&self, ctx: &StepContext) -> (&dyn Strategy, String) {
        for (condition, strategy) in &self.branches {
            if condition.evaluate(ctx) {
                return (strategy.as_ref(), format!("{} (because {})", strategy.describe(ctx), condition.label()));
            }
        }
        (self.otherwise.as_ref(), format!("{} (no condition held)", self.otherwise.describe(ctx)))
    }
}

#[async_trait]
impl Strategy for Conditional {
    async fn deploy(&self, target: &dyn Target, release: &Release, ctx: &StepContext) -> Result<(), StepError> {
        let (strategy, why) = self.choose(ctx);
        ctx.log(format!("strategy for {release}: {why}"));
        strategy.deploy(target, release, ctx).await
    }

    fn describe(&self, ctx: &StepContext) -> String {
        self.choose(ctx).1
    }

    /// Every branch's settings: the choice is made at run time, so each must be able to run.
    fn check(&self) -> Result<(), String> {
        for (i, (_, strategy)) in self.branches.iter().enumerate() {
            strategy.check().map_err(|e| format!("branch {} of the conditional strategy: {e}", i + 1))?;
        }
        self.otherwise.check().map_err(|e| format!("the conditional strategy's fallback: {e}"))
    }

    /// What any of its strategies needs: the choice is made at run time, so each must be able to run.
    fn requires(&self) -> Capabilities {
        self.branches.iter().map(|(_, s)| s.requires()).fold(self.otherwise.requires(), Capabilities::union)
    }
}
