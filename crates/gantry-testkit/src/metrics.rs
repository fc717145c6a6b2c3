//! A conformance suite for metric providers: what every [`MetricProvider`] must do, checked against its backend
//! loaded with known data. Each provider's tests call [`conformance`].

use std::time::{Duration, SystemTime};

use gantry_core::analysis::{Group, MetricError, MetricProvider, MetricQuery};

/// Known data in a provider's backend, and queries for the suite.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// A query that returns exactly `expected` over `start..=end` at `step`.
    pub query: String,
    /// Its points, in time order.
    pub expected: Vec<(SystemTime, f64)>,
    /// The window's start.
    pub start: SystemTime,
    /// The window's end.
    pub end: SystemTime,
    /// The resolution.
    pub step: Duration,
    /// A valid query that matches nothing.
    pub empty_query: String,
    /// A query the backend refuses (bad syntax).
    pub bad_query: String,
}

/// Checks `provider` against `fixture`: known data come back exactly, in order, inside the window; a query without
/// data is [`MetricError::NoData`] (not an empty success); a window before the data is `NoData` too; a bad query is
/// [`MetricError::Refused`]. Returns what failed, for the test to show.
pub async fn conformance(provider: &dyn MetricProvider, fixture: &Fixture) -> Result<(), String> {
    let query = |q: &str, start: SystemTime, end: SystemTime| {
        MetricQuery::new("conformance", q, Group::Canary, start, end, fixture.step)
    };
    let got = provider
        .query(&query(&fixture.query, fixture.start, fixture.end))
        .await
        .map_err(|e| format!("the known query failed: {e}"))?;
    if got.points.len() != fixture.expected.len() {
        return Err(format!("{} points, expected {}: {:?}", got.points.len(), fixture.expected.len(), got.points));
    }
    for ((t, v), (et, ev)) in got.points.iter().zip(&fixture.expected) {
        if t != et || (v - ev).abs() > 1e-9 * ev.abs().max(1.0) {
            return Err(format!("point ({t:?}, {v}) where ({et:?}, {ev}) was expected"));
        }
    }
    if got.points.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err("points are not in time order".into());
    }
    if got.points.iter().any(|(t, _)| *t < fixture.start || *t > fixture.end) {
        return Err("points outside the window".into());
    }
    match provider.query(&query(&fixture.empty_query, fixture.start, fixture.end)).await {
        Err(MetricError::NoData) => {}
        other => return Err(format!("a query without data gave {other:?}, not NoData")),
    }
    let before = fixture.start - Duration::from_secs(7 * 24 * 3600);
    match provider.query(&query(&fixture.query, before, before + Duration::from_secs(3600))).await {
        Err(MetricError::NoData) => {}
        other => return Err(format!("a window before the data gave {other:?}, not NoData")),
    }
    match provider.query(&query(&fixture.bad_query, fixture.start, fixture.end)).await {
        Err(MetricError::Refused { .. }) => {}
        other => return Err(format!("a bad query gave {other:?}, not Refused")),
    }
    Ok(())
}
