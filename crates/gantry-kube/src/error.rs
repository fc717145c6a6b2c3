//! The errors of Gantry's Kubernetes steps.

/// What went wrong talking to a cluster or in a rollout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    /// The API server refused or failed a request, or could not be reached. The text says what the server
    /// answered (`forbidden: ... (403 Forbidden)`).
    #[error("the Kubernetes API failed to {action}: {}", answer(source))]
    Api {
        /// What was being done.
        action: String,
        /// The error kube returned.
        #[source]
        source: Box<kube::Error>,
    },
    /// An object Gantry needs is not there.
    #[error("{kind} `{name}` not found in namespace `{namespace}`")]
    NotFound {
        /// Its kind.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// An object is not shaped as Gantry needs (no such container, no selector).
    #[error("{0}")]
    Invalid(String),
    /// A watch was given up: the API server kept refusing it (401, 403, 404) or kept failing.
    #[error("the watch of {what} failed: {why}")]
    WatchFailed {
        /// What was watched (`pods app=web in namespace default`).
        what: String,
        /// The server's last answer, and how often it came.
        why: String,
    },
    /// A watch ended and could not be resumed.
    #[error("the watch of {what} ended")]
    WatchEnded {
        /// What was watched.
        what: String,
    },
}

impl KubeError {
    pub(crate) fn api(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Api { action: action.into(), source: Box::new(source) }
    }

    /// Whether the same request may succeed if made again: a server error (5xx), `429`, a conflict that is not a
    /// server-side apply's field conflict, a `401` (an expiring token, such as EKS's or an exec plugin's, is renewed
    /// before the next request; a revoked static token stays refused), or a lost connection. A refusal (403, 404,
    /// 422), a missing or misshapen object, and a watch given up are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { source, .. } => {
                crate::retry::passing(source)
                    || matches!(&**source, kube::Error::Api(s) if matches!(s.code, 401 | 429) || s.code >= 500)
            }
            _ => false,
        }
    }
}

/// What the server answered, plainly: its message and status for an API error, else kube's text.
fn answer(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({} {})", status.message, status.code, status.reason),
        other => other.to_string(),
    }
}

impl From<KubeError> for gantry_core::StepError {
    fn from(e: KubeError) -> Self {
        let retryable = e.is_retryable();
        let step = match e {
            // What the server said, plainly, as the message; kube's error is the source, not repeated.
            KubeError::Api { action, source } => match *source {
                kube::Error::Api(status) => gantry_core::StepError::new(format!(
                    "the Kubernetes API refused to {action}: {} ({} {})",
                    status.message, status.code, status.reason
                )),
                other => gantry_core::StepError::with_source(format!("the Kubernetes API failed to {action}"), other),
            },
            other => gantry_core::StepError::new(other.to_string()),
        };
        if retryable { step.retryable() } else { step }
    }
}
