//! Why a message did not reach Slack. Never contains the webhook URL or the token.

/// A message Slack did not take.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum DeliveryError {
    /// Slack answered the Web API call with `ok: false`, or the webhook with a 4xx (not retried: sending again
    /// would be refused again).
    #[error("Slack refused `{method}`: {error}")]
    Refused {
        /// `chat.postMessage`, `chat.update` or `webhook`.
        method: &'static str,
        /// Slack's error code (`channel_not_found`, `invalid_auth`, `no_text`, ...).
        error: String,
    },
    /// Slack kept failing (5xx, 429 past the retries, timeouts, no connection) for every attempt.
    #[error("Slack did not take `{method}` after {attempts} attempt(s): {last}")]
    Unavailable {
        /// `chat.postMessage`, `chat.update` or `webhook`.
        method: &'static str,
        /// How many attempts were made.
        attempts: u32,
        /// What the last attempt got.
        last: String,
    },
}
