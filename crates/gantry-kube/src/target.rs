//! Kubernetes as a strategy [`Target`]: a Deployment per slot, Services, and optionally a Gateway API HTTPRoute.

use std::collections::BTreeMap;

use async_trait::async_trait;
use gantry_core::strategy::{Capabilities, Match, Release, Slot, Target, TargetError, Traffic};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::error::KubeError;
use crate::retry::retrying;
use crate::rollout::{Followed, Watched, follow, selector_of};

/// The label that tells the slots' pods apart (`canary`, `preview`; stable pods do not carry it).
pub const SLOT_LABEL: &str = "gantry.dev/slot";
/// The label that carries a release's version on its pods, for metric queries.
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";
/// Where the stable Deployment's replica count is kept while a canary without a router takes some of it.
const REPLICAS_ANNOTATION: &str = "gantry.dev/replicas";
/// Where a Service's own selector is kept while Gantry pins it to one ReplicaSet.
const SELECTOR_ANNOTATION: &str = "gantry.dev/selector";
/// Where the stable Deployment's last good pod template is kept while a new one replaces it (a rolling update, a
/// promotion), until it is live: [`Target::restore`] puts it back whole, even from another process after a crash.
const STABLE_TEMPLATE_ANNOTATION: &str = "gantry.dev/stable-template";

/// A JSON pointer to an annotation (`/` escaped as `~1`).
fn annotation_path(key: &str) -> String {
    format!("/metadata/annotations/{}", key.replace('/', "~1"))
}

/// A Gateway API HTTPRoute that splits traffic between two Services, as Argo Rollouts' `trafficRouting`: the
/// route's rules that send traffic to `stable_service` get weighted backends for `stable_service` and
/// `canary_service`, and A/B matches become rules of their own in front.
#[derive(Clone, Debug)]
pub struct HttpRoute {
    name: String,
    stable_service: String,
    canary_service: String,
}

impl HttpRoute {
    /// The route `name`, which already sends traffic to `stable_service`; `canary_service` is created if missing.
    pub fn new(name: impl Into<String>, stable_service: impl Into<String>, canary_service: impl Into<String>) -> Self {
        Self { name: name.into(), stable_service: stable_service.into(), canary_service: canary_service.into() }
    }
}

/// One service on Kubernetes as a [`Target`] for strategies.
///
/// - **Stable** is the Deployment the target is named after. A deploy into it is a rolling update followed by
///   watching, failing fast, and restoring the previous pod template on failure, as [`RollingDeploy`] does.
/// - **Canary** and **preview** are Deployments beside it (`<name>-canary`, `<name>-preview`), copies of the stable
///   one with the new image and a [`SLOT_LABEL`]. Pods carry the release's version in [`VERSION_LABEL`].
/// - **Traffic without a router** is a canary's share of the replicas behind the Service that selects both: 25% of 8
///   replicas is 2 canary pods and 6 stable ones (rounded up; below 100% the stable version keeps at least one pod). A blue/green switch points the active Service at the preview's pods.
/// - **With an [`HttpRoute`]**, the route's backend weights split traffic, and the stable Service is pinned to the
///   stable ReplicaSet's `pod-template-hash`, as Argo Rollouts does. A/B matches (header or cookie) need a route.
///
/// [`RollingDeploy`]: crate::RollingDeploy
#[derive(Clone, Debug)]
pub struct KubeTarget {
    cluster: Cluster,
    namespace: String,
    deployment: String,
    container: Option<String>,
    active_service: String,
    preview_service: String,
    router: Option<HttpRoute>,
    max_restarts: i32,
}

impl KubeTarget {
    /// The Deployment `deployment` in the cluster's namespace, behind the Service of the same name.
    pub fn new(cluster: Cluster, deployment: impl Into<String>) -> Self {
        let deployment = deployment.into();
        Self {
            namespace: cluster.namespace().to_owned(),
            cluster,
            active_service: deployment.clone(),
            preview_service: format!("{deployment}-preview"),
            deployment,
            container: None,
            router: None,
            max_restarts: 2,
        }
    }

    /// Another namespace.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The container whose image changes (default: the first).
    #[must_use]
    pub fn container(mut self, name: impl Into<String>) -> Self {
        self.container = Some(name.into());
        self
    }

    /// The Service users reach (default: named after the Deployment); blue/green switches it.
    #[must_use]
    pub fn active_service(mut self, name: impl Into<String>) -> Self {
        self.active_service = name.into();
        self
    }

    /// The Service of the preview (default `<deployment>-preview`; created from the active one if missing).
    #[must_use]
    pub fn preview_service(mut self, name: impl Into<String>) -> Self {
        self.preview_service = name.into();
        self
    }

    /// Splits traffic with a Gateway API HTTPRoute instead of replica counts.
    #[must_use]
    pub fn router(mut self, route: HttpRoute) -> Self {
        self.router = Some(route);
        self
    }

    /// Fails a slot's rollout once a new pod restarted more than this (default 2).
    #[must_use]
    pub fn max_restarts(mut self, restarts: i32) -> Self {
        self.max_restarts = restarts;
        self
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.cluster.client().clone(), &self.namespace)
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.cluster.client().clone(), &self.namespace)
    }

    fn name_of(&self, slot: Slot) -> String {
        match slot {
            Slot::Stable => self.deployment.clone(),
            other => format!("{}-{other}", self.deployment),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<Deployment>, TargetError> {
        let deploys = self.deployments();
        retrying(&format!("get Deployment `{name}`"), || deploys.get_opt(name)).await.map_err(platform)
    }

    async fn stable(&self) -> Result<Deployment, TargetError> {
        self.get(&self.deployment).await?.ok_or_else(|| {
            TargetError::platform(
                "find the stable Deployment",
                format!("Deployment `{}` not found in `{}`", self.deployment, self.namespace),
            )
        })
    }

    fn container_of(&self, d: &Deployment) -> Result<String, TargetError> {
        let spec = d.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        let first = spec.and_then(|s| s.containers.first()).map(|c| c.name.clone());
        self.container.clone().or(first).ok_or_else(|| {
            TargetError::platform("find the container", format!("Deployment `{}` has no containers", self.deployment))
        })
    }

    /// The stable Deployment's replica count as the user set it (kept aside while a canary takes some).
    fn replicas_of(stable: &Deployment) -> i32 {
        let kept = stable.metadata.annotations.as_ref().and_then(|a| a.get(REPLICAS_ANNOTATION));
        kept.and_then(|r| r.parse().ok()).unwrap_or_else(|| stable.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
    }

    fn base_labels(stable: &Deployment) -> BTreeMap<String, String> {
        stable.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default()
    }

    /// Records an Event on the stable Deployment (best effort).
    async fn event(&self, stable: &Deployment, warning: bool, reason: &str, message: &str) {
        let on = crate::events::Involved {
            kind: "Deployment",
            api_version: "apps/v1",
            namespace: &self.namespace,
            name: &self.deployment,
            uid: stable.metadata.uid.as_deref(),
        };
        crate::events::record(self.cluster.client(), &on, warning, reason, message).await;
    }

    /// JSON patch operations that keep the stable Deployment's current pod template aside as the last good one,
    /// unless one is kept already (an earlier attempt was interrupted: the one kept then is the good one).
    fn keep_stable_template(stable: &Deployment) -> Result<Vec<Value>, TargetError> {
        let annotations = stable.metadata.annotations.as_ref();
        if annotations.is_some_and(|a| a.contains_key(STABLE_TEMPLATE_ANNOTATION)) {
            return Ok(Vec::new());
        }
        let template = stable.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let kept = serde_json::to_string(&template).map_err(|e| TargetError::platform("build a patch", e))?;
        let mut ops = Vec::new();
        if annotations.is_none() {
            ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
        }
        ops.push(json!({"op": "add", "path": annotation_path(STABLE_TEMPLATE_ANNOTATION), "value": kept}));
        Ok(ops)
    }

    /// Forgets the kept template once the new one is live.
    async fn forget_stable_template(&self) -> Result<(), TargetError> {
        let forget = Patch::Merge(json!({"metadata": {"annotations": {STABLE_TEMPLATE_ANNOTATION: null}}}));
        let deploys = self.deployments();
        patched(&deploys, &self.deployment, &PatchParams::default(), &forget, "forget the last good pod template")
            .await?;
        Ok(())
    }

    /// Applies `patch` to Deployment `name` and follows the rollout it starts until it completes or fails.
    /// Patches Deployment `name` and follows its rollout. A refused or failed patch is the platform's error (the
    /// outer one); a rollout that does not complete is said in the inner one, for the caller to name.
    async fn roll(&self, name: &str, patch: &Patch<Value>, image: &str) -> Result<Result<(), String>, TargetError> {
        let deploys = self.deployments();
        let params = PatchParams::default();
        let patched = retrying(&format!("patch Deployment `{name}`"), || deploys.patch(name, &params, patch))
            .await
            .map_err(platform)?;
        self.follow(&patched, image).await
    }

    /// Follows the rollout of `d` to `image`. A watch the server kept refusing or failing is the platform's error
    /// (the outer one: the rollout's fate is unknown, not failed); a rollout that does not complete is the inner one.
    async fn follow(&self, d: &Deployment, image: &str) -> Result<Result<(), String>, TargetError> {
        let deploys = self.deployments();
        let pods: Api<Pod> = Api::namespaced(self.cluster.client().clone(), &self.namespace);
        let name = d.metadata.name.clone().unwrap_or_default();
        let selector = selector_of(d).map_err(|e| TargetError::platform(format!("follow Deployment `{name}`"), e))?;
        let watched = Watched { deploys: &deploys, pods: &pods, name: &name, selector: &selector };
        // Boxed: two watchers make a large future, and every operation here awaits one.
        match Box::pin(follow(&watched, d.metadata.generation.unwrap_or(0), image, self.max_restarts, None)).await {
            Followed::Complete => Ok(Ok(())),
            Followed::Failed(why) => Ok(Err(why)),
            Followed::Unwatchable(e) => Err(platform(e)),
            Followed::Cancelled => Ok(Err("cancelled".into())),
        }
    }

    /// The `pod-template-hash` of the stable Deployment's current ReplicaSet.
    async fn stable_hash(&self, stable: &Deployment) -> Result<String, TargetError> {
        let revision = stable.metadata.annotations.as_ref().and_then(|a| a.get("deployment.kubernetes.io/revision"));
        let uid = stable.metadata.uid.clone();
        let sets: Api<ReplicaSet> = Api::namespaced(self.cluster.client().clone(), &self.namespace);
        let labels: Vec<String> = Self::base_labels(stable).iter().map(|(k, v)| format!("{k}={v}")).collect();
        let params = ListParams::default().labels(&labels.join(","));
        let list = retrying("list ReplicaSets", || sets.list(&params)).await.map_err(platform)?;
        list.items
            .into_iter()
            .filter(|rs| rs.metadata.owner_references.iter().flatten().any(|o| Some(&o.uid) == uid.as_ref()))
            .find(|rs| {
                rs.metadata.annotations.as_ref().and_then(|a| a.get("deployment.kubernetes.io/revision")) == revision
            })
            .and_then(|rs| rs.metadata.labels.and_then(|l| l.get("pod-template-hash").cloned()))
            .ok_or_else(|| {
                TargetError::platform(
                    "find the stable ReplicaSet",
                    format!("no ReplicaSet of `{}` at its current revision", self.deployment),
                )
            })
    }

    /// Sets Service `name`'s selector to `selector`, keeping the selector it had the first time aside.
    async fn select(&self, name: &str, selector: &BTreeMap<String, String>) -> Result<(), TargetError> {
        let services = self.services();
        let service = retrying(&format!("get Service `{name}`"), || services.get(name)).await.map_err(platform)?;
        let mut annotations = service.metadata.annotations.clone().unwrap_or_default();
        if !annotations.contains_key(SELECTOR_ANNOTATION) {
            let own = service.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
            annotations.insert(SELECTOR_ANNOTATION.into(), serde_json::to_string(&own).unwrap_or_default());
        }
        let patch = Patch::Json::<()>(
            serde_json::from_value(json!([
                {"op": "add", "path": "/metadata/annotations", "value": annotations},
                {"op": "add", "path": "/spec/selector", "value": selector},
            ]))
            .map_err(|e| TargetError::platform("build a patch", e))?,
        );
        patched(&services, name, &PatchParams::default(), &patch, &format!("select pods for Service `{name}`")).await?;
        Ok(())
    }

    /// Gives Service `name` back the selector it had before Gantry pinned it.
    async fn unselect(&self, name: &str) -> Result<(), TargetError> {
        let services = self.services();
        let Some(service) =
            retrying(&format!("get Service `{name}`"), || services.get_opt(name)).await.map_err(platform)?
        else {
            return Ok(());
        };
        let Some(own) = service.metadata.annotations.as_ref().and_then(|a| a.get(SELECTOR_ANNOTATION)) else {
            return Ok(());
        };
        let own: Value = serde_json::from_str(own).unwrap_or(json!({}));
        let patch = Patch::Json::<()>(
            serde_json::from_value(json!([
                {"op": "remove", "path": format!("/metadata/annotations/{}", SELECTOR_ANNOTATION.replace('/', "~1"))},
                {"op": "add", "path": "/spec/selector", "value": own},
            ]))
            .map_err(|e| TargetError::platform("build a patch", e))?,
        );
        patched(&services, name, &PatchParams::default(), &patch, &format!("restore Service `{name}`")).await?;
        Ok(())
    }

    /// Creates Service `name` from the active one, selecting `selector`, unless it exists.
    async fn ensure_service(&self, name: &str, selector: &BTreeMap<String, String>) -> Result<(), TargetError> {
        let services = self.services();
        if let Some(existing) =
            retrying(&format!("get Service `{name}`"), || services.get_opt(name)).await.map_err(platform)?
        {
            let ours = existing.metadata.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/managed-by"))
                == Some(&"gantry".to_owned());
            if !ours {
                // A Service of the user's: its own selector is kept aside, to be given back.
                return self.select(name, selector).await;
            }
            let patch = Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "add", "path": "/spec/selector", "value": selector}]))
                    .map_err(|e| TargetError::platform("build a patch", e))?,
            );
            patched(&services, name, &PatchParams::default(), &patch, &format!("select pods for Service `{name}`"))
                .await?;
            return Ok(());
        }
        let active = &self.active_service;
        let template = retrying(&format!("get Service `{active}`"), || services.get(active)).await.map_err(platform)?;
        let ports = template.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
        let service: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": self.namespace, "labels": {"app.kubernetes.io/managed-by": "gantry"}},
            "spec": {"selector": selector, "ports": ports}
        }))
        .map_err(|e| TargetError::platform("build a Service", e))?;
        let params = PatchParams::apply(crate::FIELD_MANAGER).force();
        patched(&services, name, &params, &Patch::Apply(&service), &format!("create Service `{name}`")).await?;
        Ok(())
    }

    /// Sets a slot Deployment's replicas and waits until they are ready.
    async fn scale(&self, name: &str, replicas: i32) -> Result<(), TargetError> {
        let Some(d) = self.get(name).await? else { return Ok(()) };
        let image = self.image_in(&d)?;
        let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
        self.roll(name, &patch, &image)
            .await?
            .map_err(|why| TargetError::platform(format!("scale `{name}` to {replicas}"), why))
    }

    fn image_in(&self, d: &Deployment) -> Result<String, TargetError> {
        let container = self.container_of(d)?;
        d.spec
            .as_ref()
            .and_then(|s| crate::rollout::image_of(&s.template, &container))
            .ok_or_else(|| TargetError::platform("read the image", format!("no container `{container}`")))
    }

    async fn delete(&self, name: &str) -> Result<(), TargetError> {
        let deploys = self.deployments();
        match deploys.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(platform(crate::error::KubeError::api(format!("delete Deployment `{name}`"), e))),
        }
    }

    /// Which slot the new version is in now (canary or preview), if any.
    async fn new_slot(&self) -> Result<Option<Slot>, TargetError> {
        for slot in [Slot::Preview, Slot::Canary] {
            if self.get(&self.name_of(slot)).await?.is_some() {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    fn http_routes(&self) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
            "httproutes",
        );
        Api::namespaced_with(self.cluster.client().clone(), &self.namespace, &resource)
    }

    async fn http_route(&self, router: &HttpRoute) -> Result<DynamicObject, TargetError> {
        let routes = self.http_routes();
        retrying(&format!("get HTTPRoute `{}`", router.name), || routes.get(&router.name)).await.map_err(platform)
    }

    async fn route(&self, router: &HttpRoute, weight: u8, matching: Option<&Match>) -> Result<(), TargetError> {
        let routes = self.http_routes();
        let route = self.http_route(router).await?;
        let rules = route.data.pointer("/spec/rules").and_then(Value::as_array).cloned().unwrap_or_default();
        let backend = |b: &Value, name: &str| b.get("name").and_then(Value::as_str) == Some(name);
        let mut port = Value::Null;
        let mut kept = Vec::new();
        for mut rule in rules {
            let backends = rule.get("backendRefs").and_then(Value::as_array).cloned().unwrap_or_default();
            // Rules of our own A/B matches go; they are rebuilt below.
            if backends.iter().all(|b| backend(b, &router.canary_service)) && rule.get("matches").is_some() {
                continue;
            }
            if let Some(stable) = backends.iter().find(|b| backend(b, &router.stable_service)) {
                port = stable.get("port").cloned().unwrap_or(Value::Null);
                let mut refs =
                    vec![json!({"name": router.stable_service, "port": port, "weight": 100 - u32::from(weight)})];
                refs.push(json!({"name": router.canary_service, "port": port, "weight": u32::from(weight)}));
                rule["backendRefs"] = Value::Array(refs);
            }
            kept.push(rule);
        }
        if let Some(rule) = matching {
            let (name, value, kind) = match rule {
                Match::Header { name, value } => (name.clone(), value.clone(), "Exact"),
                Match::Cookie { name, value } => {
                    ("Cookie".to_owned(), format!("(^|;\\s*){name}={value}(;|$)"), "RegularExpression")
                }
                other => {
                    return Err(TargetError::platform("route", format!("unsupported match {other:?}")));
                }
            };
            let ab = json!({
                "matches": [{"headers": [{"type": kind, "name": name, "value": value}]}],
                "backendRefs": [{"name": router.canary_service, "port": port}]
            });
            kept.insert(0, ab);
        }
        let patch = Patch::Merge(json!({"spec": {"rules": kept}}));
        patched(&routes, &router.name, &PatchParams::default(), &patch, &format!("route HTTPRoute `{}`", router.name))
            .await?;
        Ok(())
    }
}

/// Patches `name` through `api`, retrying passing errors.
async fn patched<K, P>(
    api: &Api<K>,
    name: &str,
    params: &PatchParams,
    patch: &Patch<P>,
    action: &str,
) -> Result<K, TargetError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    P: serde::Serialize + std::fmt::Debug,
{
    retrying(action, || api.patch(name, params, patch)).await.map_err(platform)
}

/// An API call's failure as the target's: retryable when the call's was.
fn platform(e: KubeError) -> TargetError {
    if e.is_retryable() {
        TargetError::transient("talk to the cluster", e)
    } else {
        TargetError::platform("talk to the cluster", e)
    }
}

#[async_trait]
impl Target for KubeTarget {
    async fn current(&self) -> Result<Option<Release>, TargetError> {
        let Some(d) = self.get(&self.deployment).await? else { return Ok(None) };
        let image = self.image_in(&d)?;
        let labels = d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.labels.as_ref());
        let version = labels
            .and_then(|l| l.get(VERSION_LABEL).cloned())
            .unwrap_or_else(|| gantry_core::ImageRef::parse(&image).map_or_else(|_| image.clone(), |r| r.version()));
        Ok(Some(Release::new(self.deployment.clone(), version).image(image)))
    }

    async fn deploy(&self, slot: Slot, release: &Release) -> Result<(), TargetError> {
        let image = release
            .image
            .clone()
            .ok_or_else(|| TargetError::platform(format!("deploy {release}"), "the release has no image"))?;
        let stable = self.stable().await?;
        let container = self.container_of(&stable)?;
        let not_ready = |why: String| TargetError::NotReady { release: release.to_string(), slot, why };
        if slot == Slot::Stable {
            // The last good template is kept aside in the same patch, so an interruption at any point can be undone.
            let mut ops = Self::keep_stable_template(&stable)?;
            let labelled = stable
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.as_ref())
                .is_some();
            if !labelled {
                ops.push(json!({"op": "add", "path": "/spec/template/metadata/labels", "value": {}}));
            }
            ops.push(json!({"op": "add", "path": format!("/spec/template/metadata/labels/{}", VERSION_LABEL.replace('/', "~1")), "value": release.version}));
            let index = stable
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers.iter().position(|c| c.name == container))
                .ok_or_else(|| not_ready(format!("Deployment `{}` has no container `{container}`", self.deployment)))?;
            ops.push(json!({"op": "replace", "path": format!("/spec/template/spec/containers/{index}/image"), "value": image}));
            let patch = Patch::Json::<Value>(
                serde_json::from_value(Value::Array(ops)).map_err(|e| TargetError::platform("build a patch", e))?,
            );
            let previous_image = self.image_in(&stable)?;
            self.event(&stable, false, "GantryRolloutStarted", &format!("{previous_image} -> {image}")).await;
            self.roll(&self.deployment, &patch, &image).await?.map_err(not_ready)?;
            self.forget_stable_template().await?;
            self.event(&stable, false, "GantryRolloutComplete", &format!("{image} is available")).await;
            return Ok(());
        }

        // A Deployment beside the stable one: its spec with the new image, the slot's label, and the version.
        let name = self.name_of(slot);
        let mut base = Self::base_labels(&stable);
        let replicas = if slot == Slot::Canary { 1 } else { Self::replicas_of(&stable) };
        if slot == Slot::Preview || self.router.is_some() {
            // The stable Service must not reach the new pods: pin it to the stable ReplicaSet.
            let hash = self.stable_hash(&stable).await?;
            let mut pinned = base.clone();
            pinned.insert("pod-template-hash".into(), hash);
            let service = self.router.as_ref().map_or(&self.active_service, |r| &r.stable_service);
            self.select(service, &pinned).await?;
        }
        base.insert(SLOT_LABEL.into(), slot.to_string());
        let mut spec = serde_json::to_value(stable.spec.clone().unwrap_or_default()).map_err(json)?;
        spec["replicas"] = json!(replicas);
        spec["selector"] = json!({"matchLabels": base});
        let mut labels = base.clone();
        labels.insert(VERSION_LABEL.into(), release.version.clone());
        for (k, v) in labels {
            spec["template"]["metadata"]["labels"][k] = json!(v);
        }
        let containers = spec.pointer_mut("/template/spec/containers").and_then(Value::as_array_mut);
        if let Some(c) =
            containers.into_iter().flatten().find(|c| c.get("name").and_then(Value::as_str) == Some(&container))
        {
            c["image"] = json!(image);
        }
        let object: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.namespace, "labels": {SLOT_LABEL: slot.to_string(), "app.kubernetes.io/managed-by": "gantry"}},
            "spec": spec
        }))
        .map_err(json)?;
        let deploys = self.deployments();
        let params = PatchParams::apply(crate::FIELD_MANAGER).force();
        let applied =
            patched(&deploys, &name, &params, &Patch::Apply(&object), &format!("apply Deployment `{name}`")).await?;
        let mut selector = Self::base_labels(&stable);
        selector.insert(SLOT_LABEL.into(), slot.to_string());
        match (slot, &self.router) {
            (Slot::Preview, _) => self.ensure_service(&self.preview_service, &selector).await?,
            (Slot::Canary, Some(router)) => self.ensure_service(&router.canary_service, &selector).await?,
            _ => {}
        }
        self.follow(&applied, &image).await?.map_err(not_ready)
    }

    async fn set_traffic(&self, traffic: &Traffic) -> Result<(), TargetError> {
        let stable = self.stable().await?;
        let total = Self::replicas_of(&stable);
        let new_slot = self.new_slot().await?;
        if let Some(router) = &self.router {
            if new_slot == Some(Slot::Canary) && traffic.weight > 0 {
                let replicas = ((f64::from(total) * f64::from(traffic.weight) / 100.0).ceil() as i32).max(1);
                self.scale(&self.name_of(Slot::Canary), replicas).await?;
            }
            if let Some(slot) = new_slot {
                let mut selector = Self::base_labels(&stable);
                selector.insert(SLOT_LABEL.into(), slot.to_string());
                self.ensure_service(&router.canary_service, &selector).await?;
            }
            return self.route(router, traffic.weight, traffic.matching.as_ref()).await;
        }
        if traffic.matching.is_some() {
            return Err(TargetError::platform(
                "route requests by header or cookie",
                "that needs an HTTPRoute router (KubeTarget::router)",
            ));
        }
        match new_slot {
            Some(Slot::Preview) => {
                // Blue/green: the active Service selects the preview's pods, or the stable ReplicaSet's.
                let mut selector = Self::base_labels(&stable);
                if traffic.weight >= 100 {
                    selector.insert(SLOT_LABEL.into(), Slot::Preview.to_string());
                } else {
                    selector.insert("pod-template-hash".into(), self.stable_hash(&stable).await?);
                }
                self.select(&self.active_service, &selector).await
            }
            Some(Slot::Canary) => {
                // By replicas: the canary takes its share of the stable Deployment's, behind one Service.
                let canary = (f64::from(total) * f64::from(traffic.weight) / 100.0).ceil() as i32;
                let canary = if traffic.weight > 0 { canary.max(1) } else { 0 };
                if stable.metadata.annotations.as_ref().and_then(|a| a.get(REPLICAS_ANNOTATION)).is_none() {
                    let keep =
                        Patch::Merge(json!({"metadata": {"annotations": {REPLICAS_ANNOTATION: total.to_string()}}}));
                    let deploys = self.deployments();
                    patched(
                        &deploys,
                        &self.deployment,
                        &PatchParams::default(),
                        &keep,
                        "keep the stable replica count",
                    )
                    .await?;
                }
                // Up first, then down, so capacity never dips.
                if canary > 0 {
                    self.scale(&self.name_of(Slot::Canary), canary).await?;
                }
                // Below 100%, the stable version keeps at least one pod: the baseline for analysis, and the fallback.
                let floor = if traffic.weight < 100 { 1 } else { 0 };
                self.scale(&self.deployment, (total - canary).max(floor)).await?;
                if canary == 0 {
                    self.scale(&self.name_of(Slot::Canary), 0).await?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// While a canary runs: with a router, the canary's share of the HTTPRoute's weights; without one, its ready
    /// pods over both Deployments' ready pods (one Service spreads requests over all of them), so 10% of three pods
    /// reads as the third it is. `None` without a canary (blue/green has a preview instead), or when no pod is ready.
    async fn traffic_share(&self) -> Result<Option<f64>, TargetError> {
        // One read of the canary says whether there is one and how many of its pods are ready.
        let Some(canary) = self.get(&self.name_of(Slot::Canary)).await? else {
            return Ok(None);
        };
        if let Some(router) = &self.router {
            let route = self.http_route(router).await?;
            let rules = route.data.pointer("/spec/rules").and_then(Value::as_array).cloned().unwrap_or_default();
            let weight = |refs: &[Value], name: &str| {
                refs.iter()
                    .find(|b| b.get("name").and_then(Value::as_str) == Some(name))
                    .map(|b| b.get("weight").and_then(Value::as_f64).unwrap_or(1.0))
            };
            for rule in &rules {
                let refs = rule.get("backendRefs").and_then(Value::as_array).cloned().unwrap_or_default();
                // The weighted rule is the one with the stable Service (it may match a path); A/B rules, which send
                // matching requests to the canary alone, have no stable backend and are passed over.
                if let Some(stable) = weight(&refs, &router.stable_service) {
                    let canary = weight(&refs, &router.canary_service).unwrap_or(0.0);
                    let total = stable + canary;
                    return Ok((total > 0.0).then(|| canary / total));
                }
            }
            return Ok(None);
        }
        let ready =
            |d: Option<Deployment>| d.and_then(|d| d.status).and_then(|s| s.ready_replicas).map_or(0.0, f64::from);
        let canary = ready(Some(canary));
        let stable = ready(self.get(&self.deployment).await?);
        Ok((canary + stable > 0.0).then(|| canary / (canary + stable)))
    }

    async fn promote(&self, slot: Slot) -> Result<(), TargetError> {
        let stable = self.stable().await?;
        let total = Self::replicas_of(&stable);
        let name = self.name_of(slot);
        let new = self.get(&name).await?.ok_or_else(|| {
            TargetError::platform(format!("promote the {slot} slot"), format!("Deployment `{name}` not found"))
        })?;
        let image = self.image_in(&new)?;
        let mut template = serde_json::to_value(new.spec.map(|s| s.template).unwrap_or_default()).map_err(json)?;
        if let Some(labels) = template.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
            labels.remove(SLOT_LABEL);
            labels.remove("pod-template-hash");
        }
        let mut ops = Self::keep_stable_template(&stable)?;
        ops.push(json!({"op": "replace", "path": "/spec/template", "value": template}));
        ops.push(json!({"op": "replace", "path": "/spec/replicas", "value": total}));
        if stable.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(REPLICAS_ANNOTATION)) {
            ops.push(json!({"op": "remove", "path": annotation_path(REPLICAS_ANNOTATION)}));
        }
        let patch = Patch::Json::<Value>(
            serde_json::from_value(Value::Array(ops)).map_err(|e| TargetError::platform("build a patch", e))?,
        );
        self.roll(&self.deployment, &patch, &image)
            .await?
            .map_err(|why| TargetError::platform(format!("promote the {slot} slot"), why))?;
        if slot == Slot::Preview {
            // Traffic stays on the new version: from the preview's pods to the stable ones, then the preview goes.
            let stable = self.stable().await?;
            let mut pinned = Self::base_labels(&stable);
            pinned.insert("pod-template-hash".into(), self.stable_hash(&stable).await?);
            self.select(&self.active_service, &pinned).await?;
        }
        self.delete(&name).await?;
        if let Some(router) = &self.router {
            self.route(router, 0, None).await?;
            self.unselect(&router.stable_service).await?;
        }
        self.unselect(&self.active_service).await?;
        self.forget_stable_template().await
    }

    async fn scale_down(&self, slot: Slot) -> Result<(), TargetError> {
        if slot == Slot::Stable {
            return self.scale(&self.deployment, 0).await;
        }
        let stable = self.stable().await?;
        let total = Self::replicas_of(&stable);
        if stable.spec.as_ref().and_then(|s| s.replicas) != Some(total) {
            self.scale(&self.deployment, total).await?;
        }
        if stable.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(REPLICAS_ANNOTATION)) {
            let forget = Patch::Merge(json!({"metadata": {"annotations": {REPLICAS_ANNOTATION: null}}}));
            let deploys = self.deployments();
            patched(&deploys, &self.deployment, &PatchParams::default(), &forget, "forget the stable replica count")
                .await?;
        }
        self.delete(&self.name_of(slot)).await?;
        if let Some(router) = &self.router {
            self.unselect(&router.stable_service).await?;
        }
        self.unselect(&self.active_service).await
    }

    /// Restores in an order that never leaves users without pods: the stable Deployment back on its last good
    /// template (kept aside by the deploy or promotion that replaced it; else `stable`'s image) at its full replica
    /// count, and ready; then the stable Service (and a router's) pinned to the stable pods and the route's weights
    /// back to 100/0 with no A/B rule; then the canary and preview Deployments deleted; then the Services' own
    /// selectors back. Events `GantryRollback` (before) and `GantryRolledBack` (after, with what was done or what is
    /// left behind) on the stable Deployment say why.
    async fn restore(&self, stable: &Release, why: &str) -> Result<(), TargetError> {
        let current = self.stable().await?;
        let good = shown(stable);
        self.event(&current, true, "GantryRollback", &format!("{why}; restoring {good}")).await;
        let result = self.restore_to(&current, stable).await;
        let outcome = match &result {
            Ok(()) => format!("{good} is back, with all traffic"),
            Err(e) => format!("restoring {good} failed: {e}"),
        };
        self.event(&current, true, "GantryRolledBack", &format!("{why}; {outcome}")).await;
        result
    }

    fn capabilities(&self) -> Capabilities {
        // Weights by replica shares without a router; request routes need one.
        let weights = Capabilities::NONE.with_weights();
        if self.router.is_some() { weights.with_header_routes().with_cookie_routes() } else { weights }
    }
}

impl KubeTarget {
    async fn restore_to(&self, current: &Deployment, stable: &Release) -> Result<(), TargetError> {
        let total = Self::replicas_of(current);
        let annotations = current.metadata.annotations.clone().unwrap_or_default();
        let mut ops = Vec::new();
        let (template, image) = match annotations.get(STABLE_TEMPLATE_ANNOTATION) {
            Some(kept) => {
                let template: Value = serde_json::from_str(kept).map_err(|e| {
                    TargetError::platform(format!("read the last good pod template of `{}`", self.deployment), e)
                })?;
                ops.push(json!({"op": "remove", "path": annotation_path(STABLE_TEMPLATE_ANNOTATION)}));
                let image = image_in_template(&template, &self.container_of(current)?)
                    .unwrap_or_else(|| self.image_in(current).unwrap_or_default());
                (template, image)
            }
            None => {
                let mut template =
                    serde_json::to_value(current.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default())
                        .map_err(json)?;
                let container = self.container_of(current)?;
                let image = stable.image.clone().unwrap_or_else(|| self.image_in(current).unwrap_or_default());
                if let Some(c) = template
                    .pointer_mut("/spec/containers")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                    .find(|c| c.get("name").and_then(Value::as_str) == Some(&container))
                {
                    c["image"] = json!(image);
                }
                if let Some(labels) = template.pointer_mut("/metadata/labels").and_then(Value::as_object_mut)
                    && labels.contains_key(VERSION_LABEL)
                {
                    labels.insert(VERSION_LABEL.into(), json!(stable.version));
                }
                (template, image)
            }
        };
        ops.push(json!({"op": "replace", "path": "/spec/template", "value": template}));
        ops.push(json!({"op": "replace", "path": "/spec/replicas", "value": total}));
        if annotations.contains_key(REPLICAS_ANNOTATION) {
            ops.push(json!({"op": "remove", "path": annotation_path(REPLICAS_ANNOTATION)}));
        }
        let patch = Patch::Json::<Value>(
            serde_json::from_value(Value::Array(ops)).map_err(|e| TargetError::platform("build a patch", e))?,
        );
        self.roll(&self.deployment, &patch, &image).await?.map_err(|why| TargetError::NotReady {
            release: stable.to_string(),
            slot: Slot::Stable,
            why: format!("{why} (Deployment `{}` is left on what the rollback made of it)", self.deployment),
        })?;

        // Traffic: pinned to the stable pods, then the new version's objects go, then the Services' own selectors.
        let mut left = Vec::new();
        let restored = self.stable().await?;
        let mut pinned = Self::base_labels(&restored);
        match self.stable_hash(&restored).await {
            Ok(hash) => {
                pinned.insert("pod-template-hash".into(), hash);
            }
            Err(e) => left.push(format!("the Services are not pinned to the stable pods ({e})")),
        }
        let mut services = vec![self.active_service.clone()];
        if let Some(router) = &self.router {
            services.push(router.stable_service.clone());
            if let Err(e) = self.route(router, 0, None).await {
                left.push(format!("HTTPRoute `{}` keeps its weights and A/B rules ({e})", router.name));
            }
        }
        services.dedup();
        if pinned.contains_key("pod-template-hash") {
            for service in &services {
                if self.services().get_opt(service).await.ok().flatten().is_some()
                    && let Err(e) = self.select(service, &pinned).await
                {
                    left.push(format!("Service `{service}` still selects the new pods ({e})"));
                }
            }
        }
        for slot in [Slot::Canary, Slot::Preview] {
            let name = self.name_of(slot);
            if let Err(e) = self.delete(&name).await {
                left.push(format!("Deployment `{name}` is left ({e})"));
            }
        }
        // The new version's Services too, where they are the user's and were pinned to its pods.
        services.push(self.preview_service.clone());
        if let Some(router) = &self.router {
            services.push(router.canary_service.clone());
        }
        for service in &services {
            if let Err(e) = self.unselect(service).await {
                left.push(format!("Service `{service}` is left pinned to the stable pods ({e})"));
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        Err(TargetError::platform(format!("restore {stable}"), format!("left behind: {}", left.join("; "))))
    }
}

/// The image of `container` in a pod template given as JSON.
fn image_in_template(template: &Value, container: &str) -> Option<String> {
    template
        .pointer("/spec/containers")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(container))?
        .get("image")?
        .as_str()
        .map(str::to_owned)
}

/// How a release is named in events: its image, else `service version`.
fn shown(release: &Release) -> String {
    release.image.clone().unwrap_or_else(|| release.to_string())
}

/// A JSON value Gantry builds that could not be built or read: a bug or a misshapen object, not worth a retry.
fn json(e: serde_json::Error) -> TargetError {
    TargetError::platform("build or read JSON", e)
}
