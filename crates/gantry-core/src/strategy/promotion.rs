//! Promoting a paused deployment by hand: the handle a host wires to ChatOps or an API.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// A handle that promotes a deployment waiting for it ([`CanaryStep::PauseUntilPromoted`](super::CanaryStep),
/// blue/green without auto-promotion). Clones share one queue: a promotion given before the deployment waits is kept
/// for the next wait, as `kubectl argo rollouts promote` on a rollout that is about to pause.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let promotion = gantry_core::strategy::Promotion::new();
/// let chatops = promotion.clone();
/// chatops.promote(); // "/deploy promote web" in Slack
/// promotion.wait().await;
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Promotion {
    given: Arc<Semaphore>,
    gates: Option<crate::Approvals>,
}

impl Promotion {
    /// A handle with no promotion given yet.
    pub fn new() -> Self {
        Self { given: Arc::new(Semaphore::new(0)), gates: None }
    }

    /// Also lists each wait as a gate of `approvals` (`<run id>/<step>`, asking `promote web 3.1.0?`), so that
    /// the run view's buttons, Slack's, or the host's [`Approvals::decide`](crate::Approvals::decide) decide it as
    /// they decide an [`Approval`](crate::Approval): approving promotes; rejecting aborts the deployment (the stable
    /// version keeps or gets back all traffic). [`promote`](Self::promote) still works.
    #[must_use]
    pub fn with_approvals(mut self, approvals: &crate::Approvals) -> Self {
        self.gates = Some(approvals.clone());
        self
    }

    pub(crate) fn gates(&self) -> Option<&crate::Approvals> {
        self.gates.as_ref()
    }

    /// Promotes the deployment that waits (or the next one to wait).
    pub fn promote(&self) {
        self.given.add_permits(1);
    }

    /// Takes a promotion given before the wait, if there is one.
    pub(crate) fn take_given(&self) -> bool {
        match self.given.try_acquire() {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// Waits for a promotion and takes it.
    pub async fn wait(&self) {
        if let Ok(permit) = self.given.acquire().await {
            permit.forget();
        }
    }
}

impl Default for Promotion {
    fn default() -> Self {
        Self::new()
    }
}
