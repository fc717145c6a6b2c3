//! Gantry's Kubernetes steps: connections to clusters ([`Cluster`], [`Clusters`]), server-side apply of manifests
//! with dry runs that report what would change ([`Apply`]), rolling deploys with automated rollback
//! ([`RollingDeploy`]), and Jobs as preflight checks and smoke tests ([`JobStep`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use gantry_core::{Context, Pipeline, TriggerRule};
//! use gantry_kube::{Cluster, JobStep, RollingDeploy};
//!
//! let cluster = Cluster::from_context("staging").await?;
//! let pipeline = Pipeline::builder("release")
//!     .step("preflight", JobStep::image(cluster.clone(), "preflight", "{{image}}", ["./bin/check-config"]))
//!     .step("deploy", RollingDeploy::new(cluster.clone(), "{{service}}", "{{image}}")).after(["preflight"])
//!     .step("smoke", JobStep::image(cluster, "smoke", "curlimages/curl:8.10.1", ["curl", "-fsS", "http://{{service}}/health"]))
//!     .after(["deploy"])
//!     .build()?;
//! let report = pipeline.run(Context::new().var("service", "web").var("image", "registry.example/web:2")).await?;
//! # drop(report); Ok(()) }
//! ```

mod apply;
mod cluster;
mod diff;
mod error;
mod events;
mod job;
mod retry;
mod rollout;
mod watch;

pub use apply::{APPLIED, Applied, Apply, FIELD_MANAGER, ObjectChange};
pub use cluster::{Cluster, Clusters};
pub use error::KubeError;
pub use job::JobStep;
pub use rollout::RollingDeploy;
