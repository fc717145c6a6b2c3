//! Retries with exponential backoff.

use std::time::Duration;

/// How often and how patiently a step is retried after a [retryable](crate::StepError::retryable) error.
/// Errors that are not marked retryable, timeouts and cancellations are never retried.
///
/// ```
/// use std::time::Duration;
/// use gantry_core::RetryPolicy;
/// let policy = RetryPolicy::exponential(3, Duration::from_millis(100));
/// assert_eq!(policy.delay(1), Duration::from_millis(100));
/// assert_eq!(policy.delay(3), Duration::from_millis(400));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    retries: u32,
    initial: Duration,
    factor: u32,
    max_delay: Duration,
}

impl RetryPolicy {
    /// Up to `retries` more attempts, waiting `initial`, then twice as long each time, at most 5 minutes.
    pub fn exponential(retries: u32, initial: Duration) -> Self {
        Self { retries, initial, factor: 2, max_delay: Duration::from_secs(300) }
    }

    /// Up to `retries` more attempts, waiting `delay` before each.
    pub fn fixed(retries: u32, delay: Duration) -> Self {
        Self { retries, initial: delay, factor: 1, max_delay: delay }
    }

    /// Caps the delay.
    #[must_use]
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// The number of retries (attempts after the first).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The delay after the `failed_attempt`-th attempt failed (1-based).
    pub fn delay(&self, failed_attempt: u32) -> Duration {
        let exp = failed_attempt.saturating_sub(1).min(31);
        let factor = self.factor.saturating_pow(exp);
        self.initial.saturating_mul(factor).min(self.max_delay)
    }
}
