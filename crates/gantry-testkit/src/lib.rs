//! Gantry's test kit: stand-ins for the outside world, for tests and examples that run in `cargo test`.
//!
//! - [`kube::ClusterSim`]: a simulated Kubernetes API server on 127.0.0.1 that the real `kube::Client` and `kubectl`
//!   talk to through a generated kubeconfig.
//! - [`datadog::DatadogSim`]: a simulated Datadog API (metric queries, events, monitors) whose metrics can follow the
//!   simulated cluster: an image scripted as unhealthy makes its version slower and more error-prone.
//! - [`prometheus::PrometheusServer`]: a real Prometheus on loopback, loaded with given samples.
//! - [`metrics::conformance`]: the checks every metric provider must pass.
//! - [`targets::conformance`]: the checks every deploy `Target` must pass (the deploy contract).
//! - [`moto::MotoServer`]: the moto AWS emulator on loopback, for STS.
//! - [`receiver::Receiver`]: a recording HTTP receiver standing in for GitHub's API.
//! - [`slack::SlackSim`]: a simulated Slack (Web API messages, threads and updates; incoming webhooks).
//! - [`registry::RegistryServer`]: a real image registry (Debian's `docker-registry`) on loopback, optionally behind
//!   htpasswd, and a busybox base image built locally, for image builds.
//! - [`docker::DockerDaemon`]: a Docker Engine of the test's own (Debian's `dockerd`), for builds through its API.
//!
//! Each module's docs say what it models and what it does not.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use k8s_openapi::api::core::v1::Namespace;
//!
//! let cluster = gantry_testkit::kube::ClusterSim::start().await?;
//! // For kubectl: write this to a file and point KUBECONFIG at it.
//! assert!(cluster.kubeconfig_yaml().contains(&cluster.url()));
//! let namespaces: kube::Api<Namespace> = kube::Api::all(cluster.client().await?);
//! let names: Vec<String> = namespaces.list(&Default::default()).await?.items.into_iter().filter_map(|n| n.metadata.name).collect();
//! assert_eq!(names, ["default", "kube-public", "kube-system"]);
//! # Ok(()) }
//! ```

pub mod browser;
pub mod datadog;
pub mod docker;
pub mod kube;
pub mod metrics;
pub mod moto;
pub mod postgres;
pub mod prometheus;
pub mod receiver;
pub mod registry;
mod serve;
pub mod slack;
pub mod targets;
pub mod test_cluster;

/// A time as RFC 3339 in whole seconds, UTC (`2026-11-26T12:00:00Z`), as Kubernetes and GitHub write timestamps.
pub use gantry_core::time::rfc3339;
