//! Gantry's Datadog integration: canary analysis on Datadog metrics ([`DatadogMetrics`], a
//! [`MetricProvider`](gantry_core::analysis::MetricProvider) over the v1 and v2 query APIs), deployment markers on
//! the event stream ([`DeploymentMarker`]), and gates on monitors ([`MonitorGate`]). Keys travel only in the
//! `DD-API-KEY` and `DD-APPLICATION-KEY` headers and are kept as [`Secret`](gantry_core::Secret)s; rate limits
//! (`429` with `X-RateLimit-Reset`), outages and timeouts are retried within bounds.
//!
//! Against the test kit's simulated Datadog:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::{Duration, SystemTime};
//! use gantry_core::Secret;
//! use gantry_datadog::{Datadog, DatadogMetrics};
//! use gantry_testkit::datadog::DatadogSim;
//!
//! let sim = DatadogSim::start("api-key", "app-key").await?;
//! sim.model(|metric, tags, _at| (metric == "latency" && tags.get("version").map(String::as_str) == Some("2")).then_some(120.0));
//! // In production: Datadog::new(&Site::Eu1, api_key, app_key).
//! let datadog = Datadog::with_url(&sim.url(), Secret::new("api-key"), Secret::new("app-key"))?;
//! let now = SystemTime::now();
//! let series = DatadogMetrics::new(datadog).points("avg:latency{version:2}", now - Duration::from_secs(600), now, Duration::from_secs(60)).await?;
//! assert!(series.values().iter().all(|v| *v == 120.0));
//! # Ok(()) }
//! ```

mod client;
mod error;
mod events;
mod metrics;
mod monitors;

pub use client::{Datadog, Site};
pub use error::DatadogError;
pub use events::{DeploymentMarker, EVENT_ID, event_id};
pub use metrics::{DatadogMetrics, MetricsApi, parse_v1, parse_v2};
pub use monitors::{MonitorGate, MonitorState};
