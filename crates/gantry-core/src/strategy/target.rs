//! Where strategies deploy: releases, slots, traffic, and the `Target` trait platforms implement.

use std::fmt;

use async_trait::async_trait;

use crate::BoxError;

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
    /// The text includes the source's, which is also there for code that looks for a particular error.
    #[error("the target failed to {action}: {source}")]
    Platform {
        /// What was being done (`patch Deployment \`web\``).
        action: String,
        /// Whether the same operation may succeed if tried again (a server error, a conflict, a lost connection),
        /// as opposed to a refusal that would be met again (forbidden, invalid, not found).
        retryable: bool,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl TargetError {
    /// The platform failed `action` for a reason that would be met again: a refusal, a missing or misshapen object.
    pub fn platform(action: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Platform { action: action.into(), retryable: false, source: source.into() }
    }

    /// The platform failed `action` for a passing reason: a server error, a conflict, a lost connection.
    pub fn transient(action: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Platform { action: action.into(), retryable: true, source: source.into() }
    }

    /// Whether trying the operation again may help. A release that did not become ready, and a cancellation,
    /// are never retryable: the same release would fail the same way, and a cancelled run stops.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Platform { retryable: true, .. })
    }
}

/// What a target can do with traffic. A [`Strategy`](super::Strategy) declares what it needs
/// ([`Strategy::requires`](super::Strategy::requires)), a target what it has ([`Target::capabilities`]); a
/// [`Deploy`](super::Deploy) step whose strategy needs more than its target has is refused when the pipeline is
/// built, not in the middle of a deploy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Sends a percentage of traffic to the new version (a router's weights, or shares of the replicas).
    pub weights: bool,
    /// Sends requests with a given header to the new version.
    pub header_routes: bool,
    /// Sends requests with a given cookie to the new version.
    pub cookie_routes: bool,
}

impl Capabilities {
    /// Nothing beyond running releases and switching all traffic between them.
    pub const NONE: Self = Self { weights: false, header_routes: false, cookie_routes: false };
    /// Everything.
    pub const ALL: Self = Self { weights: true, header_routes: true, cookie_routes: true };

    /// With traffic weights.
    #[must_use]
    pub const fn with_weights(mut self) -> Self {
        self.weights = true;
        self
    }

    /// With header routes.
    #[must_use]
    pub const fn with_header_routes(mut self) -> Self {
        self.header_routes = true;
        self
    }

    /// With cookie routes.
    #[must_use]
    pub const fn with_cookie_routes(mut self) -> Self {
        self.cookie_routes = true;
        self
    }

    /// What either has.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self {
            weights: self.weights || other.weights,
            header_routes: self.header_routes || other.header_routes,
            cookie_routes: self.cookie_routes || other.cookie_routes,
        }
    }

    /// What a traffic split needs.
    pub fn needed_by(traffic: &Traffic) -> Self {
        let mut needs = Self::NONE;
        needs.weights = traffic.weight > 0 && traffic.weight < 100;
        match &traffic.matching {
            Some(Match::Header { .. }) => needs.header_routes = true,
            Some(Match::Cookie { .. }) => needs.cookie_routes = true,
            None => {}
        }
        needs
    }

    /// The names of what `self` needs and `have` lacks (`traffic weights`, `header routes`, `cookie routes`).
    pub fn missing_from(self, have: Self) -> Vec<&'static str> {
        [
            (self.weights && !have.weights, "traffic weights"),
            (self.header_routes && !have.header_routes, "header routes"),
            (self.cookie_routes && !have.cookie_routes, "cookie routes"),
        ]
        .into_iter()
        .filter_map(|(missing, name)| missing.then_some(name))
        .collect()
    }
}

/// The platform side of a deployment: Kubernetes Deployments and Services in `gantry-kube`,
/// [`MemoryTarget`](super::MemoryTarget) in tests. Strategies drive it through these operations only.
///
/// # The contract
///
/// - **Every operation is convergent.** It sets a desired state (a release in a slot, a traffic split, a slot
///   promoted, a slot emptied) and returns once the platform shows it. Applying it again, after any interruption,
///   gives the same result; an operation dropped half-way leaves a state that the same operation, or
///   [`restore`](Target::restore), completes.
/// - **A failed operation does not undo itself.** A [`deploy`](Target::deploy) whose release never becomes ready
///   leaves it where it is and says why; it does not roll back.
/// - **Rollback has one owner: the strategy**, through [`restore`](Target::restore). Every strategy of this crate
///   calls it on every exit path that does not end with the new release stable (failure, failed analysis,
///   timeout, cancellation), and [`Deploy`](super::Deploy) calls it from a task of its own when its future is dropped
///   mid-deploy. A target never decides on its own to go back.
/// - **Capabilities are declared** ([`capabilities`](Target::capabilities)), so a strategy that needs traffic
///   weights or request routes the target lacks is refused when the pipeline is built.
#[async_trait]
pub trait Target: Send + Sync + fmt::Debug {
    /// The release in the stable slot, if any.
    async fn current(&self) -> Result<Option<Release>, TargetError>;

    /// Runs `release` in `slot` (in place for [`Slot::Stable`], beside it for the others) and waits until it is
    /// ready, failing fast when it cannot become so (and leaving it there: see the contract). Sizes new slots like
    /// the stable one.
    async fn deploy(&self, slot: Slot, release: &Release) -> Result<(), TargetError>;

    /// Splits traffic between the stable slot and the new version (canary or preview).
    async fn set_traffic(&self, traffic: &Traffic) -> Result<(), TargetError>;

    /// The share of requests (0.0–1.0) the platform sends to the canary now, when the target can tell: it may
    /// differ from the weight set (a Kubernetes target without a router splits by pods, so 10% of three pods is one
    /// pod of three: a third). The canary strategy records it after each change of weights, and analyses judge
    /// error counts against it ([`Metric::share_as_routed`](crate::analysis::Metric::share_as_routed)). The
    /// default, `None`, makes the strategy record the weight it set.
    async fn traffic_share(&self) -> Result<Option<f64>, TargetError> {
        Ok(None)
    }

    /// Makes the release in `slot` the stable one: the stable slot runs it, all traffic goes to it, and `slot` is
    /// emptied.
    async fn promote(&self, slot: Slot) -> Result<(), TargetError>;

    /// Empties `slot` (scales it to zero).
    async fn scale_down(&self, slot: Slot) -> Result<(), TargetError>;

    /// Brings the platform back to `stable`, from whatever state it shows: the stable slot runs `stable` and is
    /// ready, all traffic goes to it, and nothing of a new version is left (canary and preview emptied, routes and
    /// selectors back as they were). `why` is recorded where the platform keeps events. Convergent: restoring a
    /// restored target changes nothing.
    ///
    /// The default does it with the other operations: all traffic to stable, canary and preview emptied, and
    /// `stable` deployed again if the stable slot runs something else. Every step is attempted whatever fails; the
    /// error names each that failed.
    async fn restore(&self, stable: &Release, why: &str) -> Result<(), TargetError> {
        let _ = why;
        let mut failed = Vec::new();
        if let Err(e) = self.set_traffic(&Traffic::stable()).await {
            failed.push(format!("moving all traffic to stable: {e}"));
        }
        for slot in [Slot::Canary, Slot::Preview] {
            if let Err(e) = self.scale_down(slot).await {
                failed.push(format!("emptying the {slot} slot: {e}"));
            }
        }
        match self.current().await {
            Ok(Some(current)) if current.version == stable.version && current.image == stable.image => {}
            Ok(_) => {
                if let Err(e) = self.deploy(Slot::Stable, stable).await {
                    failed.push(format!("deploying {stable} again: {e}"));
                }
            }
            Err(e) => failed.push(format!("reading the stable slot: {e}")),
        }
        if failed.is_empty() {
            return Ok(());
        }
        Err(TargetError::platform(format!("restore {stable}"), failed.join("; ")))
    }

    /// What this target can do with traffic (default: everything, for targets written before capabilities were
    /// declared; override it to declare less).
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }
}
