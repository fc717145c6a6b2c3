//! The canary's share of the traffic over time, as the deployment routed it: a strategy records each change, and
//! analyses judge error counts against the share in effect at each interval ([`Exposure::Routed`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

#[cfg(doc)]
use super::metric::Exposure;

/// The canary's share of the traffic (0.0–1.0) from the times it changed: what the target reported after each
/// change of weights ([`Target::traffic_share`](crate::strategy::Target::traffic_share)), or the weight set when it
/// reports none. Clones share one log, so a background analysis sees the changes the strategy's steps make.
///
/// ```
/// use gantry_core::analysis::TrafficLog;
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let log = TrafficLog::new();
/// log.record_at(UNIX_EPOCH + Duration::from_secs(60), 1.0 / 3.0);
/// log.record_at(UNIX_EPOCH + Duration::from_secs(600), 0.5);
/// assert_eq!(log.share_at(UNIX_EPOCH), None); // before the canary had any traffic
/// assert_eq!(log.share_at(UNIX_EPOCH + Duration::from_secs(120)), Some(1.0 / 3.0));
/// assert_eq!(log.share_at(UNIX_EPOCH + Duration::from_secs(600)), Some(0.5));
/// ```
#[derive(Clone, Debug, Default)]
pub struct TrafficLog {
    changes: Arc<Mutex<Vec<(SystemTime, f64)>>>,
}

impl TrafficLog {
    /// An empty log: no share known.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the canary receives `share` of the traffic from now on.
    pub fn record(&self, share: f64) {
        self.record_at(SystemTime::now(), share);
    }

    /// Records that the share is changing from now on, until the next [`record`](Self::record): intervals in
    /// between are left out (a strategy calls it before it moves traffic, whose new share it records once the
    /// platform shows it).
    pub fn changing(&self) {
        self.record(f64::NAN);
    }

    /// Records that the canary receives `share` of the traffic from `at` on (kept in time order; a share that is
    /// not a number marks a change under way).
    pub fn record_at(&self, at: SystemTime, share: f64) {
        let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let index = changes.partition_point(|(t, _)| *t <= at);
        changes.insert(index, (at, share));
    }

    /// The changes so far, in time order.
    pub fn changes(&self) -> Vec<(SystemTime, f64)> {
        self.changes.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The share in effect at `at`: the last change at or before it; `None` before the first.
    pub fn share_at(&self, at: SystemTime) -> Option<f64> {
        share_at(&self.changes.lock().unwrap_or_else(PoisonError::into_inner), at)
    }
}

/// The share in effect at `at` in `changes` (in time order).
pub(crate) fn share_at(changes: &[(SystemTime, f64)], at: SystemTime) -> Option<f64> {
    let index = changes.partition_point(|(t, _)| *t <= at);
    index.checked_sub(1).map(|i| changes[i].1)
}
