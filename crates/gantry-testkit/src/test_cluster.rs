//! A cluster for a test: the simulator, or a real cluster when `GANTRY_E2E_KUBECONFIG` names a kubeconfig.

use kube::Api;
use kube::api::{DeleteParams, PostParams};

use crate::kube::{ClusterSim, SimError};

/// The environment variable that points tests at a real cluster.
pub const E2E_KUBECONFIG: &str = "GANTRY_E2E_KUBECONFIG";

/// A namespace of its own on the simulator or, when [`E2E_KUBECONFIG`] is set, on that real cluster; the namespace
/// is removed by [`TestCluster::cleanup`].
pub struct TestCluster {
    /// A client for the cluster.
    pub client: kube::Client,
    /// The test's namespace.
    pub namespace: String,
    /// The kubeconfig, for kubectl.
    pub kubeconfig: String,
    sim: Option<ClusterSim>,
}

impl TestCluster {
    /// Connects and creates a fresh namespace `gantry-<tag>-<n>`.
    pub async fn new(tag: &str) -> Result<Self, SimError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let (client, kubeconfig, sim) = match std::env::var(E2E_KUBECONFIG) {
            Ok(path) => {
                let kubeconfig = std::fs::read_to_string(&path).map_err(SimError::Bind)?;
                let parsed = kube::config::Kubeconfig::from_yaml(&kubeconfig).map_err(SimError::Kubeconfig)?;
                let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default())
                    .await
                    .map_err(SimError::Kubeconfig)?;
                (kube::Client::try_from(config).map_err(SimError::Client)?, kubeconfig, None)
            }
            Err(_) => {
                let sim = ClusterSim::start().await?;
                (sim.client().await?, sim.kubeconfig_yaml(), Some(sim))
            }
        };
        let namespace = format!("gantry-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let ns: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).expect("a namespace");
        Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(SimError::Client)?;
        Ok(Self { client, namespace, kubeconfig, sim })
    }

    /// The simulator, or `None` on a real cluster (for tests of the simulator's own faults and knobs).
    pub fn sim(&self) -> Option<&ClusterSim> {
        self.sim.as_ref()
    }

    /// Deletes the test's namespace.
    pub async fn cleanup(self) {
        let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone())
            .delete(&self.namespace, &DeleteParams::default())
            .await;
    }
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("namespace", &self.namespace)
            .field("simulated", &self.sim.is_some())
            .finish()
    }
}

/// Polls `check` every 50 ms until it holds, for at most 10 seconds; panics naming `what` otherwise. For tests that
/// wait on what the simulated controllers do in the background (a cascade, a namespace's termination).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}
