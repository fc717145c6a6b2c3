//! Server-side apply of manifests: multi-document YAML or typed objects, with field manager `gantry`.

use std::collections::HashMap;

use async_trait::async_trait;
use gantry_core::{OutputKey, Step, StepContext, StepError, Template};
use kube::Api;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde::Serialize;
use serde_json::Value;

use crate::cluster::Cluster;
use crate::diff::changed_fields;
use crate::error::KubeError;
use crate::retry::retrying;

/// The field manager Gantry applies as.
pub const FIELD_MANAGER: &str = "gantry";

/// What an [`Apply`] step did (or, in a dry run, would do), one entry per object, in the order applied.
pub const APPLIED: OutputKey<Vec<Applied>> = OutputKey::new("applied");

/// Applies Kubernetes objects with server-side apply as field manager [`gantry`](FIELD_MANAGER), in the order given,
/// as `kubectl apply --server-side` does. The objects come from multi-document YAML (a template: `{{image}}` is
/// filled from the run's variables) or from typed objects. Namespaced objects without a namespace go to the step's
/// namespace (default: the cluster's). Fields another manager owns are taken over (`force`), unless
/// [`force(false)`](Apply::force) asks to fail on such conflicts instead.
///
/// In a [dry run](Apply::dry_run) every request carries `dryRun=All`: the server validates and computes each object
/// and persists nothing, and the step logs (and publishes as [`APPLIED`]) what would change, field by field. Values of
/// Secrets are never shown, only which keys change.
///
/// ```no_run
/// # fn demo(cluster: gantry_kube::Cluster) {
/// use gantry_kube::Apply;
/// let manifests = r#"
/// apiVersion: v1
/// kind: ConfigMap
/// metadata: {name: web-config}
/// data: {release: "{{release}}"}
/// ---
/// apiVersion: v1
/// kind: Service
/// metadata: {name: web}
/// spec: {selector: {app: web}, ports: [{port: 80}]}
/// "#;
/// let apply = Apply::yaml(cluster, manifests).dry_run(true);
/// # let _ = apply; }
/// ```
#[derive(Clone)]
pub struct Apply {
    cluster: Cluster,
    manifests: Manifests,
    namespace: Option<String>,
    force: bool,
    dry_run: bool,
    track_rollouts: bool,
}

#[derive(Clone)]
enum Manifests {
    /// Multi-document YAML, a template.
    Yaml(String),
    /// Multi-document YAML rendered elsewhere (Helm, Kustomize), used as it is.
    Rendered(String),
    /// Objects as JSON, used as they are.
    Objects(Vec<Value>),
}

/// One object an [`Apply`] step applied.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applied {
    /// Its kind (`Deployment`).
    pub kind: String,
    /// Its namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// What changed.
    pub change: ObjectChange,
}

/// What applying did to one object.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectChange {
    /// It did not exist and was created.
    Created,
    /// These fields changed, as `path: old → new` lines (`data.password: changed` for a Secret).
    Configured(Vec<String>),
    /// Nothing changed.
    Unchanged,
}

impl Apply {
    /// Applies the objects in `manifests`, YAML documents separated by `---`. The text is a template: `{{name}}`
    /// takes a run variable, `{{{{` is a literal `{{`.
    pub fn yaml(cluster: Cluster, manifests: impl Into<String>) -> Self {
        Self::with(cluster, Manifests::Yaml(manifests.into()))
    }

    /// Applies typed objects (`k8s_openapi` types, or anything that serializes with `apiVersion` and `kind`), as they
    /// are: no templates.
    pub fn objects<K: Serialize>(cluster: Cluster, objects: impl IntoIterator<Item = K>) -> Result<Self, KubeError> {
        let objects = objects
            .into_iter()
            .enumerate()
            .map(|(i, o)| serde_json::to_value(o).map_err(|e| KubeError::Invalid(format!("object {}: {e}", i + 1))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::with(cluster, Manifests::Objects(objects)))
    }

    /// Applies manifests rendered elsewhere (`helm template`, `kustomize build`) as they are: `{{` in them is left
    /// alone.
    pub fn rendered(cluster: Cluster, manifests: impl Into<String>) -> Self {
        Self::with(cluster, Manifests::Rendered(manifests.into()))
    }

    fn with(cluster: Cluster, manifests: Manifests) -> Self {
        Self { cluster, manifests, namespace: None, force: true, dry_run: false, track_rollouts: false }
    }

    /// After applying, follows the rollout of every Deployment applied, as [`RollingDeploy`](crate::RollingDeploy)
    /// does (watching, failing fast on crash loops and pull errors); if one fails, every Deployment that existed
    /// before gets its previous pod template back, and the step fails saying so.
    #[must_use]
    pub fn track_rollouts(mut self) -> Self {
        self.track_rollouts = true;
        self
    }

    /// The namespace for namespaced objects that name none (a template; default: the cluster's).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Whether to take over fields another field manager owns (default `true`); with `false` such a conflict fails
    /// the step.
    #[must_use]
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Applies with `dryRun=All`: nothing is persisted, and the step reports what would change.
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// The objects, rendered; `masked` renders secrets as `****` (for descriptions).
    fn documents(&self, ctx: &StepContext, masked: bool) -> Result<Vec<Value>, StepError> {
        match &self.manifests {
            Manifests::Objects(objects) => Ok(objects.clone()),
            Manifests::Rendered(text) => Ok(parse_yaml(text)?),
            Manifests::Yaml(text) => {
                let template = Template::parse(text)?;
                let text = if masked { ctx.render_masked(&template) } else { ctx.render(&template)? };
                Ok(parse_yaml(&text)?)
            }
        }
    }
}

/// The documents of a multi-document YAML text, empty ones left out; an error names the document that is wrong.
fn parse_yaml(text: &str) -> Result<Vec<Value>, KubeError> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| KubeError::Invalid(format!("the manifests are not YAML: {e}")))?;
    let documents: Vec<Value> = documents.into_iter().filter(|d| !d.is_null()).collect();
    for (i, d) in documents.iter().enumerate() {
        identity(d).map_err(|what| KubeError::Invalid(format!("manifest document {}: {what}", i + 1)))?;
    }
    Ok(documents)
}

/// apiVersion, kind and name of an object, or what is missing.
fn identity(object: &Value) -> Result<(GroupVersionKind, &str), String> {
    if !object.is_object() {
        return Err("not a mapping".into());
    }
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty());
    let api_version = text("/apiVersion").ok_or("no apiVersion")?;
    let kind = text("/kind").ok_or("no kind")?;
    let name = text("/metadata/name").ok_or_else(|| format!("{kind} without metadata.name"))?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    Ok((GroupVersionKind::gvk(group, version, kind), name))
}

/// `deployment.apps/web`, as kubectl names objects.
fn kubectl_name(ar: &ApiResource, name: &str) -> String {
    let kind = ar.kind.to_lowercase();
    if ar.group.is_empty() { format!("{kind}/{name}") } else { format!("{kind}.{}/{name}", ar.group) }
}

#[async_trait]
impl Step for Apply {
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let documents = self.documents(ctx, false)?;
        let default_namespace = match &self.namespace {
            Some(ns) => ctx.render(&Template::parse(ns)?)?,
            None => self.cluster.namespace().to_owned(),
        };
        let client = self.cluster.client();
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = self.force;
        params.dry_run = self.dry_run;
        let mut kinds: HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)> = HashMap::new();
        let mut applied = Vec::with_capacity(documents.len());
        let mut deployments: Vec<(String, String, Option<Value>)> = Vec::new();
        let suffix = if self.dry_run { " (dry run)" } else { "" };
        for (i, mut object) in documents.into_iter().enumerate() {
            let (gvk, name) =
                identity(&object).map_err(|what| KubeError::Invalid(format!("object {}: {what}", i + 1)))?;
            let name = name.to_owned();
            let where_ = format!("{} `{name}` (object {} of the manifests)", gvk.kind, i + 1);
            if !kinds.contains_key(&gvk) {
                let found = kube::discovery::pinned_kind(client, &gvk).await.map_err(|e| {
                    KubeError::Invalid(format!(
                        "{where_}: the cluster does not serve {}/{}: {e}",
                        gvk.api_version(),
                        gvk.kind
                    ))
                })?;
                kinds.insert(gvk.clone(), found);
            }
            let (ar, caps) = &kinds[&gvk];
            let namespace = match caps.scope {
                Scope::Cluster => None,
                Scope::Namespaced => {
                    let ns = object.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_owned);
                    let ns = ns.unwrap_or_else(|| default_namespace.clone());
                    object["metadata"]["namespace"] = Value::String(ns.clone());
                    Some(ns)
                }
            };
            let api: Api<DynamicObject> = match &namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
                None => Api::all_with(client.clone(), ar),
            };
            let live = retrying(&format!("read {where_}"), || api.get_opt(&name)).await?;
            if self.track_rollouts && !self.dry_run && gvk.group == "apps" && gvk.kind == "Deployment" {
                let previous = live.as_ref().and_then(|d| d.data.pointer("/spec/template").cloned());
                deployments.push((namespace.clone().unwrap_or_default(), name.clone(), previous));
            }
            let patch = Patch::Apply(&object);
            let after = retrying(&format!("apply {where_}"), || api.patch(&name, &params, &patch)).await?;
            let change = match live {
                None => ObjectChange::Created,
                Some(live) => {
                    let json = |o: &DynamicObject| serde_json::to_value(o).unwrap_or_default();
                    let fields = changed_fields(&json(&live), &json(&after), gvk.kind == "Secret");
                    if fields.is_empty() { ObjectChange::Unchanged } else { ObjectChange::Configured(fields) }
                }
            };
            let shown = kubectl_name(ar, &name);
            match &change {
                ObjectChange::Created => ctx.log(format!("{shown} created{suffix}")),
                ObjectChange::Unchanged => ctx.log(format!("{shown} unchanged{suffix}")),
                ObjectChange::Configured(fields) => {
                    ctx.log(format!("{shown} configured{suffix}"));
                    for field in fields {
                        ctx.log(format!("  {field}"));
                    }
                }
            }
            applied.push(Applied { kind: gvk.kind.clone(), namespace, name, change });
        }
        ctx.publish(APPLIED, applied);
        if !deployments.is_empty() {
            crate::rollout::track(&self.cluster, ctx, &deployments).await?;
        }
        Ok(())
    }

    fn interrupt_grace(&self) -> std::time::Duration {
        // Time to put the Deployments it tracks back, once its timeout has passed.
        if self.track_rollouts { crate::rollout::ROLLBACK_GRACE } else { std::time::Duration::ZERO }
    }

    fn describe(&self, ctx: &StepContext) -> String {
        let how = if self.dry_run {
            "server-side apply with dryRun=All (nothing is persisted; the step reports what would change)"
        } else {
            "server-side apply"
        };
        let objects = match self.documents(ctx, true) {
            Ok(documents) => documents
                .iter()
                .filter_map(|d| identity(d).ok().map(|(gvk, name)| format!("{} {name}", gvk.kind)))
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("manifests that do not parse yet ({e})"),
        };
        let namespace = self.namespace.as_deref().unwrap_or(self.cluster.namespace());
        format!("applies {objects} in {namespace} by {how} as field manager {FIELD_MANAGER}")
    }

    fn variables(&self) -> Result<Vec<String>, gantry_core::TemplateError> {
        let mut names = Vec::new();
        if let Manifests::Yaml(text) = &self.manifests {
            names.extend(Template::parse(text)?.variables().map(str::to_owned));
        }
        if let Some(ns) = &self.namespace {
            names.extend(Template::parse(ns)?.variables().map(str::to_owned));
        }
        Ok(names)
    }
}

impl std::fmt::Debug for Apply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Manifests may hold Secrets: their sizes only.
        let manifests = match &self.manifests {
            Manifests::Yaml(text) | Manifests::Rendered(text) => format!("YAML, {} bytes", text.len()),
            Manifests::Objects(objects) => format!("{} objects", objects.len()),
        };
        f.debug_struct("Apply")
            .field("cluster", &self.cluster)
            .field("manifests", &manifests)
            .field("namespace", &self.namespace)
            .field("force", &self.force)
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_checked_and_named_by_position() {
        let ok = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\n";
        let docs = parse_yaml(ok).unwrap();
        assert_eq!(docs.len(), 2, "the empty document is left out");
        let (gvk, name) = identity(&docs[1]).unwrap();
        assert_eq!(
            (gvk.group.as_str(), gvk.version.as_str(), gvk.kind.as_str(), name),
            ("apps", "v1", "Deployment", "b")
        );

        let no_name =
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {}\n";
        assert_eq!(parse_yaml(no_name).unwrap_err().to_string(), "manifest document 2: Service without metadata.name");
        let no_kind = "apiVersion: v1\nmetadata: {name: a}\n";
        assert_eq!(parse_yaml(no_kind).unwrap_err().to_string(), "manifest document 1: no kind");
        let bad = "apiVersion: v1\nkind: [unclosed\n";
        assert!(parse_yaml(bad).unwrap_err().to_string().starts_with("the manifests are not YAML"));
    }
}
