//! Automated canary analysis: metrics from a [`MetricProvider`], compared between the baseline and the canary by a
//! [`Judge`], giving a [`Verdict`] that carries its evidence.
//!
//! [`ClassicJudge`] follows Kayenta's NetflixACAJudge (Mann-Whitney per metric, a weighted score), for an analysis
//! judged once. [`SequentialJudge`] uses always-valid inference (mixture sequential probability ratio tests), for an
//! analysis judged at every interval that stops as soon as the evidence is clear. Missing data and failed queries
//! are never a pass.

mod align;
mod classic;
mod judge;
mod metric;
mod routing;
mod run;
mod sequential;
pub(crate) mod stats;
mod verdict;

pub use classic::ClassicJudge;
pub use judge::{Judge, MetricData};
pub use metric::{
    Direction, Exposure, Group, Metric, MetricError, MetricKind, MetricProvider, MetricQuery, OnInconclusive, Series,
    SharedError,
};
pub use routing::TrafficLog;
pub use run::Analysis;
pub use sequential::SequentialJudge;
pub use verdict::{EffectScale, Evidence, MetricOutcome, MetricVerdict, Outcome, Verdict};
