//! Gantry's Kubernetes steps: connections to clusters ([`Cluster`], [`Clusters`]), server-side apply of manifests
//! with dry runs that report what would change ([`Apply`]), rolling deploys with automated rollback
//! ([`RollingDeploy`]), and Jobs as preflight checks and smoke tests ([`JobStep`]).
//!
//! A release against the test kit's simulated cluster (the same code runs against a real one: make the
//! [`Cluster`] with [`Cluster::from_context`] or [`Cluster::in_cluster`] instead):
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use gantry_core::{Context, Pipeline, RunStatus};
//! use gantry_kube::{Apply, Cluster, JobStep, RollingDeploy};
//! use gantry_testkit::kube::{ClusterSim, PodScript};
//!
//! let sim = ClusterSim::start().await?;
//! sim.script("checks:1", PodScript::Exit { after: Duration::from_millis(20), code: 0, logs: vec!["config ok".into()] });
//! let cluster = Cluster::new(sim.client().await?, "default");
//! let web = r#"
//! apiVersion: apps/v1
//! kind: Deployment
//! metadata: {name: web}
//! spec:
//!   replicas: 2
//!   selector: {matchLabels: {app: web}}
//!   template:
//!     metadata: {labels: {app: web}}
//!     spec: {containers: [{name: app, image: "web:1"}]}
//! "#;
//! let pipeline = Pipeline::builder("release")
//!     .step("apply", Apply::yaml(cluster.clone(), web))
//!     .step("preflight", JobStep::image(cluster.clone(), "preflight", "checks:1", ["check", "{{release}}"]))
//!     .after(["apply"])
//!     .step("deploy", RollingDeploy::new(cluster, "web", "web:{{release}}"))
//!     .after(["preflight"])
//!     .build()?;
//! let report = pipeline.run(Context::new().var("release", "2")).await?;
//! assert_eq!(report.status, RunStatus::Succeeded, "{report}");
//! # Ok(()) }
//! ```

mod apply;
mod cluster;
mod diff;
mod error;
mod events;
mod job;
mod kubeconfig;
mod retry;
mod rollout;
mod sops_secret;
mod target;
mod watch;

/// The kube-rs client these steps are built on, for a host's own calls to the cluster (`kube::Api`, `kube::runtime`),
/// at the version [`Cluster`] uses: no second copy in the host's dependency tree to keep in step.
pub use kube;

/// The Kubernetes API types (`k8s_openapi::api::apps::v1::Deployment`), at the version and API level these steps use.
pub use k8s_openapi;

pub use apply::{APPLIED, Applied, Apply, FIELD_MANAGER, ObjectChange};
pub use cluster::{Cluster, Clusters};
pub use error::KubeError;
pub use job::JobStep;
pub use kubeconfig::KubeconfigSource;
pub use rollout::RollingDeploy;
pub use sops_secret::SecretFromSops;
pub use target::{HttpRoute, KubeTarget, SLOT_LABEL, VERSION_LABEL};
