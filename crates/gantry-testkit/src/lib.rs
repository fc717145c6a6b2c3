//! Gantry's test kit: stand-ins for the outside world, for tests and examples that run in `cargo test`.
//!
//! Today: [`kube::ClusterSim`], a simulated Kubernetes API server on 127.0.0.1 that the real `kube::Client` and
//! `kubectl` talk to through a generated kubeconfig. Its module docs say what it models and what it does not.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = gantry_testkit::kube::ClusterSim::start().await?;
//! std::fs::write("/tmp/kubeconfig", cluster.kubeconfig_yaml())?; // KUBECONFIG=/tmp/kubeconfig kubectl get ns
//! let client = cluster.client().await?;
//! # drop(client); Ok(()) }
//! ```

pub mod kube;
pub mod test_cluster;
