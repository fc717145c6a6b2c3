//! What can go wrong setting up GitHub access.

/// An error of gantry-github's setup (delivery failures are reported, never raised: see [`Finished`](crate::Finished)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitHubError {
    /// The GitHub App's private key cannot be used (the key itself is never shown).
    #[error("the GitHub App's private key cannot be used: {why}")]
    AppKey {
        /// Why.
        why: &'static str,
    },
}

/// A deployment status's state, as GitHub's REST API names them
/// (<https://docs.github.com/en/rest/deployments/statuses#create-a-deployment-status>).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeploymentState {
    /// Waiting to start.
    Pending,
    /// Queued behind other work.
    Queued,
    /// Deploying.
    InProgress,
    /// Deployed.
    Success,
    /// The deployment failed.
    Failure,
    /// The deployment could not run or was cancelled.
    Error,
    /// Superseded by a later deployment to the same environment.
    Inactive,
}

impl DeploymentState {
    /// The state as GitHub writes it (`in_progress`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Error => "error",
            Self::Inactive => "inactive",
        }
    }
}

impl std::fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deployment status GitHub did not take. Never contains a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// GitHub refused the status (a 4xx): sending it again would be refused again.
    #[error("GitHub refused the `{state}` status: {status}{}", if message.is_empty() { String::new() } else { format!(" ({message})") })]
    Refused {
        /// The state sent.
        state: DeploymentState,
        /// GitHub's HTTP status code.
        status: u16,
        /// GitHub's `message`, if it gave one.
        message: String,
    },
    /// No token to send it with: a GitHub App's installation token was refused or could not be had.
    #[error("the `{state}` status was not delivered: {why}")]
    Credentials {
        /// The state to be sent.
        state: DeploymentState,
        /// Why there is no token.
        why: String,
        /// Whether trying later may help (GitHub failed) or not (a wrong key, App or installation).
        retryable: bool,
    },
    /// GitHub failed, or could not be reached, for every attempt.
    #[error("the `{state}` status was not delivered: {last} ({attempts} attempt(s))")]
    Unavailable {
        /// The state to be sent.
        state: DeploymentState,
        /// How many attempts were made.
        attempts: u32,
        /// What the last one met.
        last: String,
    },
}

impl StatusError {
    /// The state that was not delivered.
    pub fn state(&self) -> DeploymentState {
        match self {
            Self::Refused { state, .. } | Self::Credentials { state, .. } | Self::Unavailable { state, .. } => *state,
        }
    }

    /// Whether sending the status again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Refused { .. } => false,
            Self::Credentials { retryable, .. } => *retryable,
            Self::Unavailable { .. } => true,
        }
    }
}
