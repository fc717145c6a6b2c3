//! A target in memory, for tests of strategies and of pipelines that use them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{Capabilities, Release, Slot, Target, TargetError, Traffic};

/// A [`Target`] in memory: slots hold releases, traffic is a number, and versions can be scripted to fail to become
/// ready. It records every operation, so tests can check what a strategy did and in which order.
///
/// It keeps the [`Target`] contract as `KubeTarget` does: a release that fails to become ready stays where it was
/// deployed (in the stable slot too: the rollout was started) until the strategy restores; each operation applies
/// its change at once and, with a [`latency`](MemoryTarget::latency), then takes that long to report, so a step
/// interrupted mid-operation leaves the change half-way as a real platform would.
///
/// ```
/// use gantry_core::strategy::{MemoryTarget, Release, Slot};
/// let target = MemoryTarget::with_stable(Release::new("web", "1.0"));
/// target.fail_version("2.0", "CrashLoopBackOff");
/// assert_eq!(target.stable().unwrap().version, "1.0");
/// assert!(target.slot(Slot::Canary).is_none());
/// ```
#[derive(Debug)]
pub struct MemoryTarget {
    state: Mutex<State>,
    capabilities: Capabilities,
    latency: std::time::Duration,
}

impl Default for MemoryTarget {
    fn default() -> Self {
        Self { state: Mutex::default(), capabilities: Capabilities::ALL, latency: std::time::Duration::ZERO }
    }
}

#[derive(Debug, Default)]
struct State {
    slots: BTreeMap<Slot, Release>,
    traffic: Traffic,
    failing: BTreeMap<String, String>,
    unavailable: BTreeSet<&'static str>,
    log: Vec<String>,
    events: Vec<String>,
}

impl MemoryTarget {
    /// An empty target.
    pub fn new() -> Self {
        Self::default()
    }

    /// A target whose stable slot runs `release`.
    pub fn with_stable(release: Release) -> Self {
        let target = Self::new();
        target.lock().slots.insert(Slot::Stable, release);
        target
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Declares only `capabilities` (default: all), as a platform without a router would.
    #[must_use]
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Each operation applies its change, then takes `latency` to report (default none).
    #[must_use]
    pub fn latency(mut self, latency: std::time::Duration) -> Self {
        self.latency = latency;
        self
    }

    async fn settle(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }

    /// Makes deploys of `version` fail to become ready, with `why`.
    pub fn fail_version(&self, version: impl Into<String>, why: impl Into<String>) {
        self.lock().failing.insert(version.into(), why.into());
    }

    /// Makes an operation (`deploy`, `set_traffic`, `promote`, `scale_down`, `restore`) fail from now on, as a
    /// platform outage.
    pub fn fail_operation(&self, operation: &'static str) {
        self.lock().unavailable.insert(operation);
    }

    /// Ends an outage of `operation` begun with [`fail_operation`](Self::fail_operation).
    pub fn heal_operation(&self, operation: &'static str) {
        self.lock().unavailable.remove(operation);
    }

    /// The release in the stable slot.
    pub fn stable(&self) -> Option<Release> {
        self.slot(Slot::Stable)
    }

    /// The release in a slot.
    pub fn slot(&self, slot: Slot) -> Option<Release> {
        self.lock().slots.get(&slot).cloned()
    }

    /// The current traffic split.
    pub fn traffic(&self) -> Traffic {
        self.lock().traffic.clone()
    }

    /// What the target recorded of its restores, and why each happened (a platform's events).
    pub fn events(&self) -> Vec<String> {
        self.lock().events.clone()
    }

    /// Every operation so far, in order (`deploy canary web 2.0`, `traffic 20%`, `promote canary`, ...).
    pub fn operations(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    fn check(state: &State, operation: &'static str) -> Result<(), TargetError> {
        if state.unavailable.contains(operation) {
            return Err(TargetError::transient(operation, "the platform is unavailable"));
        }
        Ok(())
    }
}

#[async_trait]
impl Target for MemoryTarget {
    async fn current(&self) -> Result<Option<Release>, TargetError> {
        Ok(self.stable())
    }

    async fn deploy(&self, slot: Slot, release: &Release) -> Result<(), TargetError> {
        let failing = {
            let mut state = self.lock();
            Self::check(&state, "deploy")?;
            state.log.push(format!("deploy {slot} {release}"));
            // The rollout starts at once; the failed pods stay until the strategy restores.
            state.slots.insert(slot, release.clone());
            state.failing.get(&release.version).cloned()
        };
        self.settle().await;
        match failing {
            Some(why) => Err(TargetError::NotReady { release: release.to_string(), slot, why }),
            None => Ok(()),
        }
    }

    async fn set_traffic(&self, traffic: &Traffic) -> Result<(), TargetError> {
        {
            let mut state = self.lock();
            Self::check(&state, "set_traffic")?;
            let entry = match &traffic.matching {
                Some(rule) => format!("traffic {}% + {rule:?}", traffic.weight),
                None => format!("traffic {}%", traffic.weight),
            };
            state.log.push(entry);
            state.traffic = traffic.clone();
        }
        self.settle().await;
        Ok(())
    }

    /// The weight set, while a canary runs and no request rule routes it.
    async fn traffic_share(&self) -> Result<Option<f64>, TargetError> {
        let state = self.lock();
        let canary = state.slots.contains_key(&Slot::Canary) && state.traffic.matching.is_none();
        Ok(canary.then(|| f64::from(state.traffic.weight) / 100.0))
    }

    async fn promote(&self, slot: Slot) -> Result<(), TargetError> {
        {
            let mut state = self.lock();
            Self::check(&state, "promote")?;
            state.log.push(format!("promote {slot}"));
            let release = state
                .slots
                .remove(&slot)
                .ok_or_else(|| TargetError::platform(format!("promote the {slot} slot"), "it is empty"))?;
            state.slots.insert(Slot::Stable, release);
            state.traffic = Traffic::stable();
        }
        self.settle().await;
        Ok(())
    }

    async fn scale_down(&self, slot: Slot) -> Result<(), TargetError> {
        {
            let mut state = self.lock();
            Self::check(&state, "scale_down")?;
            state.log.push(format!("scale_down {slot}"));
            state.slots.remove(&slot);
        }
        self.settle().await;
        Ok(())
    }

    async fn restore(&self, stable: &Release, why: &str) -> Result<(), TargetError> {
        {
            let mut state = self.lock();
            Self::check(&state, "restore")?;
            state.log.push(format!("restore {stable}"));
            state.events.push(format!("restored {stable}: {why}"));
            state.slots.clear();
            state.slots.insert(Slot::Stable, stable.clone());
            state.traffic = Traffic::stable();
        }
        self.settle().await;
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }
}
