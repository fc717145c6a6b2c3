//! Putting the stable release back: the one place strategies roll back, retried within a budget, and done from a
//! task of its own when a deploy is dropped mid-way.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Capabilities, Release, Slot, Strategy, Target, TargetError, Traffic};
use crate::{StepContext, StepError};

/// How long a restore is retried before the step gives up and says what is left behind, unless told otherwise
/// ([`Deploy::restore_budget`](super::Deploy::restore_budget)).
pub const DEFAULT_RESTORE_BUDGET: Duration = Duration::from_secs(60);

/// The first pause between restore attempts; each later one doubles, up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between restore attempts.
const LONGEST_PAUSE: Duration = Duration::from_secs(4);

/// How long after a restore that followed an interrupted operation it is made once more. The interrupted
/// operation's last request may already have been sent: the platform can apply it after the restore (an API server
/// serves concurrent requests in no set order). Restores are convergent, so the second one only undoes such a write.
const LATE_WRITES: Duration = Duration::from_secs(1);

/// Runs `strategy` for `release` on `target`, as a [`Deploy`](super::Deploy) step does, and for steps of other
/// crates that drive a strategy themselves:
///
/// - the strategy's [restores](Target::restore) are retried until they succeed or `restore_budget` has passed
///   (pauses from 0.25 s doubling to 4 s): a platform that refuses a few requests in a row (an expired token, a
///   restarting API server) does not leave a half-deployed release behind;
/// - if this future is dropped before the strategy ends (the step's grace after its timeout ran out, the run's grace
///   after a cancellation ran out, or the run itself was dropped), a task of its own restores the release that was
///   stable when it started, with the same retries, and the target records why.
pub async fn run_strategy(
    target: Arc<dyn Target>,
    strategy: &dyn Strategy,
    release: &Release,
    ctx: &StepContext,
    restore_budget: Duration,
) -> Result<(), StepError> {
    let target: Arc<dyn Target> = Arc::new(Retrying { inner: target, budget: restore_budget });
    let stable = target.current().await.ok().flatten();
    let why = format!(
        "run {}: the step was dropped in the middle of the rollout of {release} (its time to stop ran out)",
        ctx.run_id()
    );
    let mut guard = RestoreOnDrop { target: Arc::clone(&target), stable, why };
    let result = strategy.deploy(target.as_ref(), release, ctx).await;
    guard.stable = None;
    result
}

/// A target whose restores are retried within a budget; every other operation goes straight through.
#[derive(Debug)]
struct Retrying {
    inner: Arc<dyn Target>,
    budget: Duration,
}

#[async_trait]
impl Target for Retrying {
    async fn current(&self) -> Result<Option<Release>, TargetError> {
        self.inner.current().await
    }

    async fn deploy(&self, slot: Slot, release: &Release) -> Result<(), TargetError> {
        self.inner.deploy(slot, release).await
    }

    async fn set_traffic(&self, traffic: &Traffic) -> Result<(), TargetError> {
        self.inner.set_traffic(traffic).await
    }

    async fn traffic_share(&self) -> Result<Option<f64>, TargetError> {
        self.inner.traffic_share().await
    }

    async fn promote(&self, slot: Slot) -> Result<(), TargetError> {
        self.inner.promote(slot).await
    }

    async fn scale_down(&self, slot: Slot) -> Result<(), TargetError> {
        self.inner.scale_down(slot).await
    }

    async fn restore(&self, stable: &Release, why: &str) -> Result<(), TargetError> {
        let started = tokio::time::Instant::now();
        let mut pause = FIRST_PAUSE;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match self.inner.restore(stable, why).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if started.elapsed() + pause > self.budget {
                let elapsed = started.elapsed();
                return Err(TargetError::Platform {
                    action: format!("restore {stable}"),
                    retryable: error.is_retryable(),
                    source: format!("gave up after {attempts} attempts in {elapsed:.1?}; the last: {error}").into(),
                });
            }
            tracing::warn!(target: "gantry::strategy", release = %stable, attempts, %error, "restoring failed; trying again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

/// Restores the stable release when dropped while it holds one.
struct RestoreOnDrop {
    target: Arc<dyn Target>,
    stable: Option<Release>,
    why: String,
}

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        let Some(stable) = self.stable.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(target: "gantry::strategy", release = %stable, "dropped mid-deploy outside a runtime: not restored");
            return;
        };
        let (target, why) = (Arc::clone(&self.target), std::mem::take(&mut self.why));
        runtime.spawn(async move {
            let mut outcome = target.restore(&stable, &why).await;
            if outcome.is_ok() {
                // A write the dropped future had in flight may reach the platform after the restore: once more.
                tokio::time::sleep(LATE_WRITES).await;
                outcome = target.restore(&stable, &why).await;
            }
            match outcome {
                Ok(()) => tracing::warn!(target: "gantry::strategy", release = %stable, "{why}; restored"),
                Err(e) => {
                    tracing::error!(target: "gantry::strategy", release = %stable, "{why}; restoring failed: {e}")
                }
            }
        });
    }
}

/// How a release is shown in messages: its image where it has one (`web:1`), else `service version`.
pub(crate) fn shown(release: &Release) -> String {
    release.image.clone().unwrap_or_else(|| release.to_string())
}

/// Puts `stable` back on `target`: the one place where strategies roll back (retried within the budget when the
/// strategy runs through [`run_strategy`]). When the step was interrupted, a successful restore is made once more a
/// second later (`LATE_WRITES`). The error names the last failure, which says what is left behind.
pub(crate) async fn restore(ctx: &StepContext, target: &dyn Target, stable: &Release, why: &str) -> Result<(), String> {
    let why = format!("run {}: {why}", ctx.run_id());
    let mut outcome = target.restore(stable, &why).await;
    if outcome.is_ok() && ctx.is_cancelled() {
        tokio::time::sleep(LATE_WRITES).await;
        outcome = target.restore(stable, &why).await;
    }
    outcome.map_err(|e| format!("restoring {} failed: {e}", shown(stable)))
}
