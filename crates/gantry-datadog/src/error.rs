//! The errors of the Datadog integration.

/// What went wrong talking to Datadog. Keys never appear in these errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatadogError {
    /// The site or base URL is not a valid URL.
    #[error("invalid Datadog site or URL `{0}`")]
    Site(String),
    /// A key holds characters an HTTP header cannot carry (the key itself is not shown).
    #[error("a Datadog key holds characters an HTTP header cannot carry")]
    InvalidKey,
    /// The request could not be sent, or no answer came in time.
    #[error("Datadog could not be reached for {action}: {why}")]
    Unreachable {
        /// What was being done (`query metrics`).
        action: &'static str,
        /// Why.
        why: String,
    },
    /// Datadog kept answering 429 Too Many Requests.
    #[error("Datadog rate-limited {action} ({attempts} attempts; the window resets in {reset_after_secs} s)")]
    RateLimited {
        /// What was being done.
        action: &'static str,
        /// How many times it was tried.
        attempts: u32,
        /// What the last `X-RateLimit-Reset` said.
        reset_after_secs: u64,
    },
    /// Datadog answered with an error status.
    #[error("Datadog refused {action}: {status} {message}")]
    Status {
        /// What was being done.
        action: &'static str,
        /// The HTTP status.
        status: u16,
        /// Datadog's `errors`, joined.
        message: String,
    },
    /// A metric query returned several series where one is judged (a `by {...}` grouping, or a wildcard):
    /// picking one would judge an arbitrary host or pod.
    #[error(
        "the query returns {count} series where one is needed; aggregate them to one (drop its `by {{...}}`): {query}"
    )]
    ManySeries {
        /// How many series came back.
        count: usize,
        /// The query as sent.
        query: String,
    },
    /// The answer was not shaped as documented.
    #[error("unexpected answer from Datadog to {action}: {why}")]
    Shape {
        /// What was being done.
        action: &'static str,
        /// What did not fit.
        why: String,
    },
}

impl DatadogError {
    /// Whether trying again later may succeed (outages, timeouts, rate limits), as opposed to a refusal.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::RateLimited { .. } => true,
            Self::Status { status, .. } => *status >= 500,
            Self::Site(_) | Self::InvalidKey | Self::Shape { .. } | Self::ManySeries { .. } => false,
        }
    }
}

impl From<DatadogError> for gantry_core::StepError {
    fn from(e: DatadogError) -> Self {
        let transient = e.is_transient();
        let step = gantry_core::StepError::new(e.to_string());
        if transient { step.retryable() } else { step }
    }
}
