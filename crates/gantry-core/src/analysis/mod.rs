//! Automated canary analysis: metrics from a [`MetricProvider`], compared between the baseline and the canary by a
//! [`Judge`], giving a [`Verdict`] that carries its evidence.
//!
//! [`ClassicJudge`] follows Kayenta's NetflixACAJudge (Mann-Whitney per metric, a weighted score). Missing data and
//! failed queries are never a pass.

mod classic;
mod judge;
mod metric;
mod run;
pub(crate) mod stats;
mod verdict;

pub use classic::ClassicJudge;
pub use judge::{Judge, MetricData};
pub use metric::{Direction, Group, Metric, MetricError, MetricProvider, MetricQuery, OnInconclusive, Series};
pub use run::Analysis;
pub use verdict::{Evidence, MetricOutcome, MetricVerdict, Outcome, Verdict};
