//! Kubeconfigs for command-line tools (Helm, kubectl) that a step runs against a cluster.

use async_trait::async_trait;

/// Where a command-line tool that a step runs (Helm, kubectl) gets its cluster: a kubeconfig made when the tool
/// runs, so that a short-lived credential (an EKS token lasts 15 minutes) is fresh each time. gantry-aws'
/// `EksCluster` is one.
#[async_trait]
pub trait KubeconfigSource: Send + Sync + std::fmt::Debug {
    /// A kubeconfig (YAML or JSON) whose current context is the cluster. It may hold a token: it is a secret, to be
    /// written only to a private file for the tool's run.
    async fn kubeconfig(&self) -> Result<gantry_core::Secret, gantry_core::StepError>;
}

#[async_trait]
impl<T: KubeconfigSource + ?Sized> KubeconfigSource for std::sync::Arc<T> {
    async fn kubeconfig(&self) -> Result<gantry_core::Secret, gantry_core::StepError> {
        (**self).kubeconfig().await
    }
}
