//! Connections to clusters, and a registry of them by name.

use std::collections::BTreeMap;

use crate::error::KubeError;

/// A connection to one cluster: a `kube::Client` and a default namespace.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    namespace: String,
}

impl Cluster {
    /// A cluster from a ready client.
    pub fn new(client: kube::Client, namespace: impl Into<String>) -> Self {
        Self { client, namespace: namespace.into() }
    }

    /// A cluster from a kube configuration (its default namespace).
    pub fn from_config(config: kube::Config) -> Result<Self, KubeError> {
        let namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).map_err(|e| KubeError::api("make a client", e))?;
        Ok(Self { client, namespace })
    }

    /// A context of the kubeconfig `KUBECONFIG` (or `~/.kube/config`) names.
    pub async fn from_context(context: &str) -> Result<Self, KubeError> {
        let options = kube::config::KubeConfigOptions { context: Some(context.to_owned()), ..Default::default() };
        let config = kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| KubeError::Invalid(format!("kubeconfig context `{context}`: {e}")))?;
        Self::from_config(config)
    }

    /// The cluster a pod runs in (its service account).
    pub fn in_cluster() -> Result<Self, KubeError> {
        let config =
            kube::Config::incluster().map_err(|e| KubeError::Invalid(format!("in-cluster configuration: {e}")))?;
        Self::from_config(config)
    }

    /// The client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The default namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

/// Clusters by name, for pipelines that deploy to several (`staging`, `production`, one per AWS account).
#[derive(Clone, Debug, Default)]
pub struct Clusters {
    by_name: BTreeMap<String, Cluster>,
}

impl Clusters {
    /// No clusters yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a cluster under a name.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, cluster: Cluster) -> Self {
        self.by_name.insert(name.into(), cluster);
        self
    }

    /// The cluster with that name.
    pub fn get(&self, name: &str) -> Result<&Cluster, KubeError> {
        self.by_name.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
            KubeError::Invalid(format!("no cluster named `{name}` (known: {})", known.join(", ")))
        })
    }
}
