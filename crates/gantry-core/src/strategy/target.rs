//! Where strategies deploy: releases, slots, traffic, and the `Target` trait platforms implement.

use std::fmt;

use async_trait::async_trait;

/// A version of a service to deploy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Release {
    /// The service (`web`).
    pub service: String,
    /// Its version (`3.0.0`); analysis queries tell the versions apart by it.
    pub version: String,
    /// The container image, where the target runs images.
    pub image: Option<String>,
}

impl Release {
    /// A release of `service` at `version`.
    pub fn new(service: impl Into<String>, version: impl Into<String>) -> Self {
        Self { service: service.into(), version: version.into(), image: None }
    }

    /// With a container image.
    #[must_use]
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.service, self.version)
    }
}

/// Where a release runs on a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    /// The version that serves users (blue/green: the active one).
    Stable,
    /// A new version taking a share of traffic.
    Canary,
    /// A new version beside the stable one, behind a preview endpoint, until promoted.
    Preview,
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stable => "stable",
            Self::Canary => "canary",
            Self::Preview => "preview",
        })
    }
}

/// Requests that match this go to the new version (A/B tests): a header with a value, or a cookie with a value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Match {
    /// A request header equal to a value.
    Header {
        /// The header's name.
        name: String,
        /// Its value.
        value: String,
    },
    /// A cookie equal to a value.
    Cookie {
        /// The cookie's name.
        name: String,
        /// Its value.
        value: String,
    },
}

/// How traffic is split between the stable version and a new one (in the canary or preview slot).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Traffic {
    /// Percent of traffic to the new version, 0–100.
    pub weight: u8,
    /// Requests that go to the new version whatever the weight.
    pub matching: Option<Match>,
}

impl Traffic {
    /// All traffic to the stable version.
    pub fn stable() -> Self {
        Self::default()
    }

    /// `weight` percent to the new version (capped at 100).
    pub fn weighted(weight: u8) -> Self {
        Self { weight: weight.min(100), matching: None }
    }

    /// Only requests matching `rule` to the new version.
    pub fn matching(rule: Match) -> Self {
        Self { weight: 0, matching: Some(rule) }
    }
}

/// What went wrong on a target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// A release did not become ready: crash loops, pull errors, a deadline. The text says which and why.
    #[error("{release} did not become ready in the {slot} slot: {why}")]
    NotReady {
        /// The release.
        release: String,
        /// The slot.
        slot: Slot,
        /// Why.
        why: String,
    },
    /// The platform failed an operation.
    #[error("the target failed to {action}: {why}")]
    Platform {
        /// What was being done.
        action: String,
        /// Why it failed.
        why: String,
    },
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// The platform side of a deployment: Kubernetes Deployments and Services in `gantry-kube`, [`MemoryTarget`](super::MemoryTarget)
/// (super::MemoryTarget) in tests. Strategies drive it through these operations only.
#[async_trait]
pub trait Target: Send + Sync + fmt::Debug {
    /// The release in the stable slot, if any.
    async fn current(&self) -> Result<Option<Release>, TargetError>;

    /// Runs `release` in `slot` (in place for [`Slot::Stable`], beside it for the others) and waits until it is
    /// ready, failing fast when it cannot become so. Sizes new slots like the stable one.
    async fn deploy(&self, slot: Slot, release: &Release) -> Result<(), TargetError>;

    /// Splits traffic between the stable slot and the new version (canary or preview).
    async fn set_traffic(&self, traffic: &Traffic) -> Result<(), TargetError>;

    /// Makes the release in `slot` the stable one: the stable slot runs it, all traffic goes to it, and `slot` is
    /// emptied.
    async fn promote(&self, slot: Slot) -> Result<(), TargetError>;

    /// Empties `slot` (scales it to zero).
    async fn scale_down(&self, slot: Slot) -> Result<(), TargetError>;
}
