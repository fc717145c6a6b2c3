//! `helm rollback` to the revision before the current one, as `helm history -o json` tells it.

use async_trait::async_trait;
use gantry_core::{Step, StepContext, StepError, Template, TemplateError};
use serde_json::Value;

use crate::command::{ClusterAccess, Helm, HelmError};

/// The revision to roll back to, from `helm history -o json`: the newest `deployed` or `superseded` revision before
/// the newest revision; `None` if there is none.
pub fn previous_revision(history_json: &str) -> Result<Option<u64>, HelmError> {
    let history: Value = serde_json::from_str(history_json)
        .map_err(|e| HelmError::Output { command: "history".into(), why: e.to_string() })?;
    let entries = history
        .as_array()
        .ok_or_else(|| HelmError::Output { command: "history".into(), why: "not a JSON array".into() })?;
    let mut revisions: Vec<(u64, String)> = entries
        .iter()
        .filter_map(|e| Some((e.get("revision")?.as_u64()?, e.get("status")?.as_str()?.to_owned())))
        .collect();
    revisions.sort_by_key(|(r, _)| *r);
    let Some((latest, _)) = revisions.last().cloned() else { return Ok(None) };
    Ok(revisions
        .iter()
        .rev()
        .find(|(r, status)| *r < latest && matches!(status.as_str(), "deployed" | "superseded"))
        .map(|(r, _)| *r))
}

/// Rolls a release back to its previous good revision (`helm rollback <release> <revision> --wait`).
#[derive(Clone, Debug)]
pub struct HelmRollback {
    helm: Helm,
    release: String,
    namespace: Option<String>,
    cluster: ClusterAccess,
}

impl HelmRollback {
    /// Rolls back `release` (a template).
    pub fn new(helm: Helm, release: impl Into<String>) -> Self {
        Self { helm, release: release.into(), namespace: None, cluster: ClusterAccess::default() }
    }

    /// The kubeconfig Helm uses (`--kubeconfig`, a template); see [`HelmRelease::kubeconfig`](crate::HelmRelease::kubeconfig).
    #[must_use]
    pub fn kubeconfig(mut self, path: impl Into<String>) -> Self {
        self.cluster.kubeconfig = Some(path.into());
        self
    }

    /// The kubeconfig context (`--kube-context`, a template).
    #[must_use]
    pub fn kube_context(mut self, context: impl Into<String>) -> Self {
        self.cluster.context = Some(context.into());
        self
    }

    /// The cluster, as a kubeconfig `source` makes for each run; see [`HelmRelease::cluster`](crate::HelmRelease::cluster).
    #[must_use]
    pub fn cluster(mut self, source: impl gantry_kube::KubeconfigSource + 'static) -> Self {
        self.cluster.source = Some(std::sync::Arc::new(source));
        self
    }

    /// `--namespace` (a template).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }
}

#[async_trait]
impl Step for HelmRollback {
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let render = |s: &str| Template::parse(s).and_then(|t| ctx.render(&t));
        let release = render(&self.release)?;
        let mut namespace = match &self.namespace {
            Some(ns) => vec!["--namespace".to_owned(), render(ns)?],
            None => Vec::new(),
        };
        namespace.extend(self.cluster.args(&render)?);
        let mut history = vec!["history".to_owned(), release.clone(), "--output".to_owned(), "json".to_owned()];
        history.extend(namespace.iter().cloned());
        let _kubeconfig = self.cluster.made_for_the_run(&mut history).await?;
        let json = self.helm.run(&history, None).await?;
        let revision = previous_revision(&json)?
            .ok_or_else(|| StepError::new(format!("release `{release}` has no earlier revision to roll back to")))?;
        let mut rollback = vec!["rollback".to_owned(), release.clone(), revision.to_string(), "--wait".to_owned()];
        rollback.extend(namespace);
        ctx.log(format!("helm {}", rollback.join(" ")));
        let _kubeconfig = self.cluster.made_for_the_run(&mut rollback).await?;
        self.helm.run(&rollback, None).await?;
        ctx.log(format!("release {release} is back on revision {revision}"));
        Ok(())
    }

    fn describe(&self, ctx: &StepContext) -> String {
        let show = |s: &str| Template::parse(s).map(|t| ctx.render_masked(&t)).unwrap_or_else(|_| s.to_owned());
        format!("rolls Helm release {} back to its previous revision", show(&self.release))
    }

    fn variables(&self) -> Result<Vec<String>, TemplateError> {
        let mut names: Vec<String> = Template::parse(&self.release)?.variables().map(str::to_owned).collect();
        for t in self.namespace.iter().chain(self.cluster.templates()) {
            names.extend(Template::parse(t)?.variables().map(str::to_owned));
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_good_revision_is_found() {
        let history = r#"[{"revision":1,"status":"superseded"},{"revision":2,"status":"deployed"},{"revision":3,"status":"failed"}]"#;
        assert_eq!(previous_revision(history).unwrap(), Some(2));
        let two = r#"[{"revision":4,"status":"superseded"},{"revision":5,"status":"deployed"}]"#;
        assert_eq!(previous_revision(two).unwrap(), Some(4));
        assert_eq!(previous_revision(r#"[{"revision":1,"status":"deployed"}]"#).unwrap(), None);
        assert!(previous_revision("not json").is_err());
    }
}
