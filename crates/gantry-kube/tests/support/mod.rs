//! The Kubernetes platform of the deploy-target conformance suite and the chaos suite: `KubeTarget`s, each in a
//! namespace of its own on one simulated cluster, observed as a user's request would meet them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_core::async_trait;
use gantry_core::strategy::{Release, Target};
use gantry_kube::{Cluster, HttpRoute, KubeTarget, VERSION_LABEL};
use gantry_testkit::kube::{PodScript, ResourceType};
use gantry_testkit::targets::{Observed, Platform};
use gantry_testkit::test_cluster::TestCluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::{Value, json};

/// Replicas of every fresh stable Deployment.
const REPLICAS: i32 = 2;

fn route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// `KubeTarget`s, each in a namespace of its own on one simulated cluster.
pub(crate) struct KubePlatform {
    pub(crate) cluster: TestCluster,
    pub(crate) routed: bool,
    targets: Mutex<Vec<(usize, String)>>,
    made: std::sync::atomic::AtomicU32,
}

impl KubePlatform {
    /// `None` on a real cluster (the suite scripts images on the simulator).
    pub(crate) async fn new(routed: bool) -> Option<Self> {
        let cluster = TestCluster::new(if routed { "conform-route" } else { "conform" }).await.unwrap();
        let sim = cluster.sim()?;
        sim.register(ResourceType::custom("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"));
        Some(Self { cluster, routed, targets: Mutex::new(Vec::new()), made: Default::default() })
    }

    /// The namespace of a target this platform made.
    pub(crate) fn namespace_of(&self, target: &dyn Target) -> String {
        let address = std::ptr::from_ref(target).cast::<()>() as usize;
        let targets = self.targets.lock().unwrap();
        targets.iter().rev().find(|(a, _)| *a == address).map(|(_, ns)| ns.clone()).expect("a target of this platform")
    }
}

fn version_of(labels: Option<&BTreeMap<String, String>>, image: Option<&str>) -> String {
    labels
        .and_then(|l| l.get(VERSION_LABEL).cloned())
        .unwrap_or_else(|| image.and_then(|i| i.rsplit(':').next()).unwrap_or("?").to_owned())
}

fn selects(selector: &BTreeMap<String, String>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(labels) = labels else { return false };
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[async_trait]
impl Platform for KubePlatform {
    async fn target(&self, stable: &Release) -> Arc<dyn Target> {
        let client = self.cluster.client.clone();
        // The simulator's controllers reconcile every object on each pass: namespaces of targets the suite is done
        // with go (it uses at most two at a time), so the hundredth target is as fast as the first.
        let old: Vec<String> = {
            let targets = self.targets.lock().unwrap();
            targets.iter().rev().skip(2).map(|(_, ns)| ns.clone()).collect()
        };
        for ns in old {
            let _ = Api::<Namespace>::all(client.clone()).delete(&ns, &Default::default()).await;
        }
        let n = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let namespace = format!("{}-{n}", self.cluster.namespace);
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
        let image = stable.image.clone().unwrap();
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": REPLICAS, "progressDeadlineSeconds": 600,
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", VERSION_LABEL: stable.version}},
                    "spec": {"containers": [{"name": "app", "image": image}]}
                }
            }
        }))
        .unwrap();
        deploys.create(&PostParams::default(), &d).await.unwrap();
        let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
        let s: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
        }))
        .unwrap();
        services.create(&PostParams::default(), &s).await.unwrap();
        let mut target = KubeTarget::new(Cluster::new(client.clone(), namespace.clone()), "web");
        if self.routed {
            let routes: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &route_resource());
            let route = serde_json::from_value(json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
                "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}
            }))
            .unwrap();
            routes.create(&PostParams::default(), &route).await.unwrap();
            target = target.router(HttpRoute::new("web", "web", "web-canary"));
        }
        let target: Arc<dyn Target> = Arc::new(target);
        let address = std::ptr::from_ref(target.as_ref()).cast::<()>() as usize;
        self.targets.lock().unwrap().push((address, namespace.clone()));
        // Ready before the suite starts.
        for _ in 0..400 {
            if self.observe(target.as_ref()).await.is_whole_on(&stable.version) {
                return target;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the fresh target in `{namespace}` never became ready");
    }

    async fn restore_notes(&self, target: &dyn Target) -> Vec<String> {
        let events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.cluster.client.clone(), &self.namespace_of(target));
        let mut said: Vec<_> = events
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("GantryRolledBack"))
            .map(|e| (e.metadata.creation_timestamp.clone(), e.message.unwrap_or_default()))
            .collect();
        said.sort_by(|a, b| a.0.cmp(&b.0));
        said.into_iter().map(|(_, message)| message).collect()
    }

    async fn observe(&self, target: &dyn Target) -> Observed {
        let namespace = self.namespace_of(target);
        let client = self.cluster.client.clone();
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
        let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let mut seen = Observed::default();

        let stable = deploys.get("web").await.unwrap();
        let (spec, status) = (stable.spec.clone().unwrap_or_default(), stable.status.clone().unwrap_or_default());
        let full = spec.replicas == Some(REPLICAS)
            && status.observed_generation >= stable.metadata.generation
            && status.updated_replicas == Some(REPLICAS)
            && status.available_replicas == Some(REPLICAS)
            && status.replicas == Some(REPLICAS);
        let template = &spec.template;
        let image = template.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.as_deref());
        if full {
            seen.stable = Some(version_of(template.metadata.as_ref().and_then(|m| m.labels.as_ref()), image));
        }
        if spec.replicas != Some(REPLICAS) {
            seen.leftovers.push(format!("the stable Deployment at {:?} replicas", spec.replicas));
        }
        for key in stable.metadata.annotations.unwrap_or_default().keys().filter(|k| k.starts_with("gantry.dev/")) {
            seen.leftovers.push(format!("annotation {key} on the stable Deployment"));
        }
        for name in ["web-canary", "web-preview"] {
            if deploys.get_opt(name).await.unwrap().is_some() {
                seen.leftovers.push(format!("Deployment {name}"));
            }
        }

        // Who gets a request: the route's backends by weight (or the one Service), then the ready pods each selects.
        let mut backends: Vec<(String, u32)> = vec![("web".into(), 100)];
        if self.routed {
            let routes: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &route_resource());
            let route = routes.get("web").await.unwrap();
            let rules = route.data.pointer("/spec/rules").and_then(Value::as_array).cloned().unwrap_or_default();
            for rule in &rules {
                if rule.get("matches").is_some() {
                    seen.leftovers.push(format!("an HTTPRoute rule with matches: {rule}"));
                }
            }
            if let Some(rule) = rules.iter().find(|r| r.get("matches").is_none()) {
                let refs = rule.get("backendRefs").and_then(Value::as_array).cloned().unwrap_or_default();
                let single = refs.len() == 1;
                backends = refs
                    .iter()
                    .map(|b| {
                        let name = b["name"].as_str().unwrap_or_default().to_owned();
                        let weight =
                            b.get("weight").and_then(Value::as_u64).map_or(if single { 100 } else { 1 }, |w| w as u32);
                        (name, weight)
                    })
                    .collect();
            }
        }
        let all_pods = pods.list(&ListParams::default()).await.unwrap().items;
        let total: u32 = backends.iter().map(|(_, w)| w).sum();
        let mut shares: BTreeMap<String, f64> = BTreeMap::new();
        for (service, weight) in backends.iter().filter(|(_, w)| *w > 0) {
            let Some(svc) = services.get_opt(service).await.unwrap() else {
                seen.leftovers.push(format!("traffic to Service {service}, which does not exist"));
                continue;
            };
            let selector = svc.spec.and_then(|s| s.selector).unwrap_or_default();
            let serving: Vec<String> = all_pods
                .iter()
                .filter(|p| selects(&selector, p.metadata.labels.as_ref()) && ready(p))
                .map(|p| {
                    let image = p.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.as_deref());
                    version_of(p.metadata.labels.as_ref(), image)
                })
                .collect();
            if serving.is_empty() {
                seen.leftovers.push(format!("Service {service} takes traffic and selects no ready pod"));
                continue;
            }
            for version in &serving {
                *shares.entry(version.clone()).or_default() +=
                    f64::from(*weight) / f64::from(total) * 100.0 / serving.len() as f64;
            }
        }
        seen.serving = shares.into_iter().map(|(v, share)| (v, share.round() as u8)).filter(|(_, s)| *s > 0).collect();
        for svc in services.list(&ListParams::default()).await.unwrap().items {
            let name = svc.metadata.name.clone().unwrap_or_default();
            if svc.metadata.annotations.unwrap_or_default().keys().any(|k| k.starts_with("gantry.dev/")) {
                seen.leftovers.push(format!("Service {name} pinned by Gantry"));
            }
        }
        seen
    }

    fn break_version(&self, version: &str) {
        if let Some(sim) = self.cluster.sim() {
            sim.script(
                format!("web:{version}"),
                PodScript::CrashLoop { runs_for: Duration::from_millis(50), exit_code: 1 },
            );
        }
    }

    fn operation_time(&self) -> Duration {
        Duration::from_millis(400)
    }
}
