//! How Gantry's crates call HTTP services (Datadog, Prometheus, Slack, GitHub, and Kubernetes' API server): one
//! [`Policy`] for the timeout of each attempt, how many attempts, the pauses between them (doubling, with jitter),
//! and how long a `Retry-After` may ask to wait.
//!
//! The policy knows nothing of HTTP clients: each crate sends its request and says what came of it as an
//! [`Attempt`], and [`Policy::run`] decides whether and when to try again.
//!
//! ```
//! use std::time::Duration;
//! use gantry_core::http::{Attempt, Policy};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let policy = Policy::new().attempts(3).backoff(Duration::from_millis(100), Duration::from_secs(2));
//! let answer: Result<&str, String> = policy
//!     .run("query the provider", |attempt| async move {
//!         match attempt {
//!             1 => Attempt::Retry("503 Service Unavailable".to_owned()),
//!             2 => Attempt::RetryAfter("429 Too Many Requests".to_owned(), Duration::from_secs(1)),
//!             _ => Attempt::Done("ok"),
//!         }
//!     })
//!     .await;
//! assert_eq!(answer, Ok("ok"));
//! # });
//! ```

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt<T, E> {
    /// It succeeded.
    Done(T),
    /// It failed for a reason that another attempt would meet again (a 4xx, an answer not understood, or a request
    /// that may already have taken effect): no retry.
    Failed(E),
    /// It failed for a passing reason (a 5xx, a timeout, a lost connection): retried after the policy's pause.
    Retry(E),
    /// The service asked to be called again after a while (`429` or `503` with `Retry-After`, or a rate limit's
    /// reset): retried after that long, unless it is longer than the policy's
    /// [`max_retry_after`](Policy::max_retry_after), in which case `E` is returned at once.
    RetryAfter(E, Duration),
}

/// How an HTTP service is called: attempts, the timeout of each, and the pauses between them.
///
/// The pause after the `n`-th failed attempt is drawn between half and all of `first × 2ⁿ⁻¹` (capped at `longest`):
/// "equal jitter", so that many hosts failed by the same outage do not all come back at the same instant, while each
/// still waits at least half the nominal pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    attempts: u32,
    timeout: Duration,
    first: Duration,
    longest: Duration,
    max_retry_after: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self::new()
    }
}

impl Policy {
    /// 3 attempts of at most 10 s each; pauses from 200 ms doubling to at most 5 s; a `Retry-After` honoured up to
    /// 30 s.
    pub const fn new() -> Self {
        Self {
            attempts: 3,
            timeout: Duration::from_secs(10),
            first: Duration::from_millis(200),
            longest: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }

    /// At most `attempts` attempts (at least one).
    #[must_use]
    pub const fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = if attempts == 0 { 1 } else { attempts };
        self
    }

    /// The longest one attempt may take, for the client to apply to its request.
    #[must_use]
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The nominal pause after the first failed attempt, and the longest pause.
    #[must_use]
    pub fn backoff(mut self, first: Duration, longest: Duration) -> Self {
        self.first = first;
        self.longest = longest.max(first);
        self
    }

    /// The longest wait a `Retry-After` (or a rate limit's reset) is honoured for; a service that asks for more
    /// gets its error returned at once rather than a caller held for minutes.
    #[must_use]
    pub const fn max_retry_after(mut self, wait: Duration) -> Self {
        self.max_retry_after = wait;
        self
    }

    /// How many attempts are made at most.
    pub const fn max_attempts(&self) -> u32 {
        self.attempts
    }

    /// The timeout of each attempt.
    pub const fn attempt_timeout(&self) -> Duration {
        self.timeout
    }

    /// The nominal pause after the `failed_attempt`-th attempt (1-based), before jitter.
    pub fn nominal_pause(&self, failed_attempt: u32) -> Duration {
        let doublings = failed_attempt.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.longest)
    }

    /// The pause after the `failed_attempt`-th attempt: between half and all of the
    /// [nominal pause](Self::nominal_pause), drawn at random.
    pub fn pause(&self, failed_attempt: u32) -> Duration {
        let nominal = self.nominal_pause(failed_attempt);
        let half = nominal / 2;
        let spread = u64::try_from((nominal - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(if spread == 0 { 0 } else { random() % spread.saturating_add(1) })
    }

    /// Makes `call` (given the attempt's number, from 1) until it is done, fails for good, or has been made
    /// [`max_attempts`](Self::max_attempts) times; then returns the last error. `action` names the call in the debug
    /// line each retry writes.
    pub async fn run<T, E, F, Fut>(&self, action: &str, mut call: F) -> Result<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Attempt<T, E>>,
        E: std::fmt::Display,
    {
        let mut attempt = 1;
        loop {
            let (error, wait) = match call(attempt).await {
                Attempt::Done(value) => return Ok(value),
                Attempt::Failed(error) => return Err(error),
                Attempt::Retry(error) => (error, self.pause(attempt)),
                // A wait of zero (or a date already past) still gets the first half-pause: no tight loop.
                Attempt::RetryAfter(error, after) if after <= self.max_retry_after => {
                    (error, after.max(self.first / 2))
                }
                Attempt::RetryAfter(error, _) => return Err(error),
            };
            if attempt >= self.attempts {
                return Err(error);
            }
            tracing::debug!(target: "gantry::http", %action, attempt, %error, ?wait, "retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// A `Retry-After` header's value as a wait from `now`: delay-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, RFC 9110 §10.2.3); a date in the past is no wait. `None` if it is neither.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use gantry_core::http::retry_after;
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21T07:27:50Z
/// assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(10)));
/// assert_eq!(retry_after("soon", now), None);
/// ```
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP senders must use.
fn http_date(value: &str) -> Option<SystemTime> {
    let rest = value.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let (day, month, year, clock, zone) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if zone != "GMT" || parts.next().is_some() || day.len() != 2 || year.len() != 4 || clock.len() != 8 {
        return None;
    }
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    crate::time::parse_rfc3339(&format!("{year}-{month:02}-{day}T{clock}Z"))
}

/// A random number from the standard library's per-process random keys and a counter: enough to spread retries,
/// not for anything that must be unpredictable.
fn random() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn pauses_double_up_to_the_longest_and_keep_at_least_half_of_it() {
        let policy = Policy::new().backoff(Duration::from_millis(100), Duration::from_millis(350));
        let nominal: Vec<_> = (1..=4).map(|n| policy.nominal_pause(n).as_millis()).collect();
        assert_eq!(nominal, [100, 200, 350, 350]);
        let drawn: Vec<Duration> = (0..200).map(|_| policy.pause(2)).collect();
        assert!(drawn.iter().all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_millis(200)));
        let distinct: std::collections::BTreeSet<_> = drawn.iter().collect();
        assert!(distinct.len() > 100, "jittered, not one value: {} distinct", distinct.len());
        assert_eq!(policy.nominal_pause(u32::MAX), Duration::from_millis(350), "no overflow");
    }

    #[tokio::test(start_paused = true)]
    async fn a_passing_failure_is_retried_up_to_the_attempts_and_the_last_error_returned() {
        let calls = AtomicU32::new(0);
        let policy = Policy::new().attempts(4).backoff(Duration::from_secs(1), Duration::from_secs(8));
        let started = tokio::time::Instant::now();
        let result: Result<(), String> = policy
            .run("test", |n| {
                calls.fetch_add(1, Ordering::Relaxed);
                async move { Attempt::Retry(format!("attempt {n}: 503")) }
            })
            .await;
        assert_eq!(result, Err("attempt 4: 503".to_owned()));
        assert_eq!(calls.load(Ordering::Relaxed), 4);
        // Pauses of 1, 2 and 4 s nominal: between 3.5 and 7 s in all.
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(3500) && waited <= Duration::from_secs(7), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_for_good_is_not_retried_and_retry_after_is_honoured_within_its_bound() {
        let policy = Policy::new().attempts(5).max_retry_after(Duration::from_secs(30));
        let calls = AtomicU32::new(0);
        let result: Result<(), &str> = policy
            .run("test", |_| {
                calls.fetch_add(1, Ordering::Relaxed);
                async { Attempt::Failed("403") }
            })
            .await;
        assert_eq!((result, calls.load(Ordering::Relaxed)), (Err("403"), 1));

        let started = tokio::time::Instant::now();
        let result = policy
            .run("test", |n| async move {
                if n == 1 { Attempt::RetryAfter("429", Duration::from_secs(20)) } else { Attempt::Done(n) }
            })
            .await;
        assert_eq!(result, Ok(2));
        assert_eq!(started.elapsed(), Duration::from_secs(20), "exactly the wait asked for");

        let started = tokio::time::Instant::now();
        let result: Result<(), &str> =
            policy.run("test", |_| async { Attempt::RetryAfter("429", Duration::from_secs(31)) }).await;
        assert_eq!(result, Err("429"), "a wait past the bound is not made");
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO), "past: no wait");
        for bad in [
            "",
            "-1",
            "1.5",
            "Sun, 06 Nov 1994 08:50:07 PST",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:50:07 GMT",
        ] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }
}
