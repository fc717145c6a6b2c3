//! Strategies on Kubernetes: `KubeTarget` against the simulated cluster (and a real one with `GANTRY_E2E_KUBECONFIG`
//! for the tests that need no scripted image or custom resource).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gantry_core::analysis::{
    Analysis, ClassicJudge, Direction, Group, Judge, Metric, MetricData, MetricError, MetricProvider, MetricQuery,
    OnInconclusive, SequentialJudge, Series, Verdict,
};
use gantry_core::strategy::{BlueGreen, Canary, Deploy, Match, Promotion, Strategy, Target};
use gantry_core::{Context, Pipeline, Run, RunReport, RunStatus, async_trait};
use gantry_kube::{Cluster, HttpRoute, KubeTarget, SLOT_LABEL, VERSION_LABEL};
use gantry_testkit::kube::{PodScript, ResourceType};
use gantry_testkit::test_cluster::{TestCluster, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::runtime::wait::await_condition;
use serde_json::json;

/// Latency by version: 100 ms, or 150 ms for the versions listed as bad.
#[derive(Debug)]
struct Latency {
    bad: Vec<String>,
}

#[async_trait]
impl MetricProvider for Latency {
    async fn query(&self, query: &MetricQuery) -> Result<Series, MetricError> {
        let version = query.query.rsplit("version:").next().unwrap_or_default().trim_end_matches('}');
        let level = if self.bad.iter().any(|b| b == version) { 150.0 } else { 100.0 };
        let at = SystemTime::UNIX_EPOCH;
        Ok(Series::new(
            (0..30).map(|i| (at + Duration::from_secs(60 * i), level + f64::from((i * 7 % 11) as u32))).collect(),
        ))
    }
}

fn analysis(bad: &[&str]) -> Analysis {
    Analysis::new(Arc::new(Latency { bad: bad.iter().map(|s| s.to_string()).collect() }), Arc::new(ClassicJudge::new()))
        .metric(Metric::new("latency", "avg:latency{service:web,version:{{version}}}", Direction::Increase).critical())
        .duration(Duration::ZERO)
}

async fn web(c: &TestCluster) -> (Api<Deployment>, Api<Service>) {
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    let services: Api<Service> = Api::namespaced(c.client.clone(), &c.namespace);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 4, "progressDeadlineSeconds": 600,
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "web:1"}]}}
        }
    }))
    .unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let s: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &s).await.unwrap();
    settled(&deploys, "web", 4).await;
    (deploys, services)
}

/// Waits until Deployment `name` has `replicas` ready replicas, all updated.
async fn settled(deploys: &Api<Deployment>, name: &str, replicas: i32) -> Deployment {
    let done = move |d: Option<&Deployment>| {
        d.is_some_and(|d| {
            let (spec, status) = (d.spec.as_ref().unwrap(), d.status.clone().unwrap_or_default());
            spec.replicas == Some(replicas)
                && status.observed_generation >= d.metadata.generation
                && status.available_replicas.unwrap_or(0) == replicas
                && status.updated_replicas.unwrap_or(0) == replicas
                && status.replicas.unwrap_or(0) == replicas
        })
    };
    tokio::time::timeout(Duration::from_secs(30), await_condition(deploys.clone(), name, done))
        .await
        .unwrap_or_else(|_| panic!("`{name}` settles at {replicas}"))
        .unwrap()
        .unwrap()
}

fn image(d: &Deployment) -> String {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.clone().unwrap()
}

fn selector(s: &Service) -> BTreeMap<String, String> {
    s.spec.as_ref().unwrap().selector.clone().unwrap_or_default()
}

fn pipeline(target: KubeTarget, strategy: impl Strategy + 'static) -> Pipeline {
    Pipeline::builder("release")
        .step("deploy", Deploy::new(Arc::new(target), strategy, "web", "{{version}}").image("web:{{version}}"))
        .build()
        .unwrap()
}

fn target(c: &TestCluster) -> KubeTarget {
    KubeTarget::new(Cluster::new(c.client.clone(), c.namespace.clone()), "web")
}

async fn run(target: KubeTarget, strategy: impl Strategy + 'static, version: &str) -> RunReport {
    pipeline(target, strategy).run(Context::new().var("version", version)).await.unwrap()
}

async fn healthy_on(deploys: &Api<Deployment>, services: &Api<Service>, want: &str) {
    let d = settled(deploys, "web", 4).await;
    assert_eq!(image(&d), want);
    assert!(deploys.get_opt("web-canary").await.unwrap().is_none(), "no canary left");
    assert!(deploys.get_opt("web-preview").await.unwrap().is_none(), "no preview left");
    assert_eq!(selector(&services.get("web").await.unwrap()), BTreeMap::from([("app".into(), "web".into())]));
    assert!(d.metadata.annotations.unwrap_or_default().keys().all(|k| !k.starts_with("gantry.dev/")), "no leftovers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_by_replicas_takes_its_share_then_is_promoted() {
    let c = TestCluster::new("kcanary").await.unwrap();
    let (deploys, services) = web(&c).await;
    let promotion = Promotion::new();
    let strategy =
        Canary::new().set_weight(25).analyze(analysis(&[])).pause_until_promoted().promotion(promotion.clone());
    let handle = tokio::spawn(Run::new(&pipeline(target(&c), strategy), Context::new().var("version", "2")).execute());
    // At 25% of 4 replicas: one canary pod, three stable ones, all behind the one Service.
    eventually("the canary holds 1 of 4 replicas", || async {
        let canary = deploys.get_opt("web-canary").await.unwrap();
        let stable = deploys.get("web").await.unwrap();
        canary.is_some_and(|d| d.status.and_then(|s| s.available_replicas) == Some(1))
            && stable.spec.unwrap().replicas == Some(3)
    })
    .await;
    let canary = deploys.get("web-canary").await.unwrap();
    assert_eq!(image(&canary), "web:2");
    let labels = canary.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert_eq!(
        (labels[SLOT_LABEL].as_str(), labels[VERSION_LABEL].as_str(), labels["app"].as_str()),
        ("canary", "2", "web")
    );
    assert_eq!(selector(&services.get("web").await.unwrap())["app"], "web", "the Service reaches both");
    promotion.promote();
    let report = tokio::time::timeout(Duration::from_secs(60), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    healthy_on(&deploys, &services, "web:2").await;
    c.cleanup().await;
}

/// Errors per point: 30 for the baseline, 10 for the canary (the same rate per request at a 25/75 split), stamped
/// inside the query's window.
#[derive(Debug)]
struct SplitErrors;

#[async_trait]
impl MetricProvider for SplitErrors {
    async fn query(&self, query: &MetricQuery) -> Result<Series, MetricError> {
        let count = if query.group == Group::Canary { 10.0 } else { 30.0 };
        Ok(Series::new((0..30).map(|i| (query.start + Duration::from_millis(10 * i), count)).collect()))
    }
}

/// What the judge was given and said of the routed shares.
#[derive(Debug, Default)]
struct Seen {
    shares: Vec<f64>,
    traffic: String,
    ratios: Vec<f64>,
}

/// The sequential judge, noting what it was given.
#[derive(Debug)]
struct Recording(Arc<Mutex<Seen>>);

impl Judge for Recording {
    fn judge(&self, data: &[MetricData]) -> Verdict {
        let verdict = SequentialJudge::new().judge(data);
        let mut seen = self.0.lock().unwrap();
        seen.shares = data[0].routed.iter().map(|(_, share)| *share).collect();
        seen.traffic = verdict.metrics[0].evidence.traffic.clone();
        seen.ratios = verdict.metrics.iter().map(|m| m.evidence.ratio).collect();
        verdict
    }
}

/// Issue #13: "the Kubernetes targets can supply the share they set". Ten percent of four pods is one pod of four:
/// the Service sends the canary a quarter of the requests, and its errors are judged against that quarter, not the
/// 10% asked for nor equal traffic (which read a healthy canary's errors as a third of the baseline's rate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_by_replicas_has_its_errors_judged_against_the_share_its_pods_get() {
    let c = TestCluster::new("kshare").await.unwrap();
    let (deploys, _) = web(&c).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    // Thirty points are short of the judge's horizon: undecided, and the test goes on to the promotion.
    let errors = |name: &str| {
        Metric::new(name, "sum:errors{version:{{version}}}", Direction::Increase)
            .on_inconclusive(OnInconclusive::Notify)
    };
    let analysis = Analysis::new(Arc::new(SplitErrors), Arc::new(Recording(Arc::clone(&seen))))
        .metric(errors("errors").share_as_routed())
        .metric(errors("errors (as if equal)").counts())
        .duration(Duration::ZERO);
    let promotion = Promotion::new();
    let strategy = Canary::new().set_weight(10).analyze(analysis).pause_until_promoted().promotion(promotion.clone());
    let run = Run::new(&pipeline(target(&c), strategy), Context::new().var("version", "2"));
    let events = run.subscribe();
    let handle = tokio::spawn(run.execute());
    eventually("the canary holds 1 of 4 pods", || async {
        deploys.get_opt("web-canary").await.unwrap().and_then(|d| d.status?.ready_replicas) == Some(1)
    })
    .await;
    eventually("the analysis has judged", || async { !seen.lock().unwrap().traffic.is_empty() }).await;
    assert_eq!(target(&c).traffic_share().await.unwrap(), Some(0.25), "one ready pod of four");
    {
        let seen = seen.lock().unwrap();
        let shares: Vec<f64> = seen.shares.iter().copied().filter(|s| s.is_finite()).collect();
        assert_eq!(shares, [0.2, 0.25], "1 pod of 5 once deployed, 1 of 4 once the weight is set");
        assert_eq!(seen.shares.len(), 4, "each change marked as under way first: {:?}", seen.shares);
        assert!(seen.traffic.starts_with("the share routed to the canary: 25.0%"), "{}", seen.traffic);
        assert!((seen.ratios[0] - 1.0).abs() < 1e-9, "the same rate per request: {:?}", seen.ratios);
        assert!((seen.ratios[1] - 1.0 / 3.0).abs() < 1e-9, "equal traffic assumed: {:?}", seen.ratios);
    }
    promotion.promote();
    let report = tokio::time::timeout(Duration::from_secs(60), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let events: Vec<String> = futures::StreamExt::collect::<Vec<_>>(events)
        .await
        .into_iter()
        .filter_map(|e| match e {
            gantry_core::Event::Phase { message, .. } => Some(message.to_string()),
            _ => None,
        })
        .collect();
    assert!(
        events.iter().any(|e| e.contains("10% of traffic to web 2 (the target routes 25.0% to it)")),
        "{events:#?}"
    );
    assert!(events.iter().any(|e| e.contains("is ready beside web 1 (the target routes 20.0% to it)")), "{events:#?}");
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_failing_analysis_is_aborted_and_the_cluster_ends_fully_on_stable() {
    let c = TestCluster::new("kabort").await.unwrap();
    let (deploys, services) = web(&c).await;
    let report = run(target(&c), Canary::new().set_weight(50).analyze(analysis(&["2"])).set_weight(100), "2").await;
    assert_eq!(report.status, RunStatus::Failed);
    let reason = report.step("deploy").unwrap().reason.clone().unwrap();
    assert!(reason.contains("analysis failed") && reason.contains("latency: High"), "{reason}");
    healthy_on(&deploys, &services, "web:1").await;
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_canary_is_removed_at_once() {
    let c = TestCluster::new("kcrash").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("web:3", PodScript::CrashLoop { runs_for: Duration::from_millis(100), exit_code: 1 });
    let (deploys, services) = web(&c).await;
    let started = std::time::Instant::now();
    let report = run(target(&c), Canary::new().set_weight(50), "3").await;
    let reason = report.step("deploy").unwrap().reason.clone().unwrap();
    assert!(
        reason.contains("did not become ready in the canary slot") && reason.contains("CrashLoopBackOff"),
        "{reason}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "fails fast");
    healthy_on(&deploys, &services, "web:1").await;
    c.cleanup().await;
}

fn http_routes(c: &TestCluster) -> Option<Api<DynamicObject>> {
    let sim = c.sim()?;
    sim.register(ResourceType::custom("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"));
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    );
    Some(Api::namespaced_with(c.client.clone(), &c.namespace, &resource))
}

async fn route(routes: &Api<DynamicObject>) -> serde_json::Value {
    let object = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}
    }))
    .unwrap();
    routes.create(&PostParams::default(), &object).await.unwrap();
    routes.get("web").await.unwrap().data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_behind_an_http_route_moves_backend_weights() {
    let c = TestCluster::new("kroute").await.unwrap();
    let Some(routes) = http_routes(&c) else { return c.cleanup().await };
    let (deploys, services) = web(&c).await;
    route(&routes).await;
    let promotion = Promotion::new();
    let strategy = Canary::new().set_weight(30).pause_until_promoted().promotion(promotion.clone());
    let target = target(&c).router(HttpRoute::new("web", "web", "web-canary"));
    let handle = tokio::spawn(Run::new(&pipeline(target, strategy), Context::new().var("version", "2")).execute());
    let weights = || async {
        let data = routes.get("web").await.unwrap().data;
        data["spec"]["rules"][0]["backendRefs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["name"].as_str().unwrap().to_owned(), b["weight"].as_u64()))
            .collect::<Vec<_>>()
    };
    eventually("the route sends 30% to the canary", || async {
        weights().await == [("web".to_owned(), Some(70)), ("web-canary".to_owned(), Some(30))]
    })
    .await;
    let routed = self::target(&c).router(HttpRoute::new("web", "web", "web-canary")).traffic_share().await.unwrap();
    assert_eq!(routed, Some(0.3), "the route's weights, whatever the pods");
    let stable = selector(&services.get("web").await.unwrap());
    assert!(stable.contains_key("pod-template-hash"), "the stable Service is pinned to the stable pods: {stable:?}");
    let canary = selector(&services.get("web-canary").await.unwrap());
    assert_eq!(canary.get(SLOT_LABEL).map(String::as_str), Some("canary"));
    assert_eq!(deploys.get("web").await.unwrap().spec.unwrap().replicas, Some(4), "with a router, stable keeps all");
    promotion.promote();
    let report = tokio::time::timeout(Duration::from_secs(60), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(weights().await, [("web".to_owned(), Some(100)), ("web-canary".to_owned(), Some(0))]);
    healthy_on(&deploys, &services, "web:2").await;
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_previews_then_switches_the_active_service() {
    let c = TestCluster::new("kbluegreen").await.unwrap();
    let (deploys, services) = web(&c).await;
    let promotion = Promotion::new();
    let strategy = BlueGreen::new().wait_for(promotion.clone()).scale_down_delay(Duration::ZERO);
    let handle = tokio::spawn(Run::new(&pipeline(target(&c), strategy), Context::new().var("version", "2")).execute());
    eventually("the preview is up with its own Service", || async {
        services.get_opt("web-preview").await.unwrap().is_some()
            && deploys.get_opt("web-preview").await.unwrap().and_then(|d| d.status?.available_replicas) == Some(4)
    })
    .await;
    let active = selector(&services.get("web").await.unwrap());
    assert!(active.contains_key("pod-template-hash"), "users still reach only the old pods: {active:?}");
    assert_eq!(selector(&services.get("web-preview").await.unwrap())[SLOT_LABEL], "preview");
    promotion.promote();
    let report = tokio::time::timeout(Duration::from_secs(60), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    healthy_on(&deploys, &services, "web:2").await;
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_post_promotion_failure_switches_back() {
    let c = TestCluster::new("kswitchback").await.unwrap();
    let (deploys, services) = web(&c).await;
    let strategy = BlueGreen::new().post_promotion(analysis(&["2"])).scale_down_delay(Duration::ZERO);
    let report = run(target(&c), strategy, "2").await;
    assert_eq!(report.status, RunStatus::Failed);
    let reason = report.step("deploy").unwrap().reason.clone().unwrap();
    assert!(reason.contains("switched back to web 1"), "{reason}");
    healthy_on(&deploys, &services, "web:1").await;
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a_b_header_route_exists_only_while_in_preview() {
    let c = TestCluster::new("kab").await.unwrap();
    let Some(routes) = http_routes(&c) else { return c.cleanup().await };
    let (deploys, services) = web(&c).await;
    route(&routes).await;
    let promotion = Promotion::new();
    let strategy = BlueGreen::new()
        .preview_route(Match::Header { name: "x-variant".into(), value: "b".into() })
        .wait_for(promotion.clone())
        .scale_down_delay(Duration::ZERO);
    let target = target(&c).router(HttpRoute::new("web", "web", "web-canary"));
    let handle = tokio::spawn(Run::new(&pipeline(target, strategy), Context::new().var("version", "2")).execute());
    let header_rule = || async {
        let data = routes.get("web").await.unwrap().data;
        data["spec"]["rules"].as_array().unwrap().iter().find(|r| r.get("matches").is_some()).cloned()
    };
    eventually("the A/B rule is in place", || async { header_rule().await.is_some() }).await;
    let rule = header_rule().await.unwrap();
    assert_eq!(rule["matches"][0]["headers"][0]["name"], "x-variant");
    assert_eq!(rule["backendRefs"][0]["name"], "web-canary");
    assert_eq!(selector(&services.get("web-canary").await.unwrap())[SLOT_LABEL], "preview");
    promotion.promote();
    let report = tokio::time::timeout(Duration::from_secs(60), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(header_rule().await.is_none(), "the A/B rule is gone after promotion");
    healthy_on(&deploys, &services, "web:2").await;
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rolling_strategy_rolls_a_crash_looping_release_back() {
    let c = TestCluster::new("krolling").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("web:4", PodScript::CrashLoop { runs_for: Duration::from_millis(100), exit_code: 1 });
    let (deploys, services) = web(&c).await;
    let report = run(target(&c), gantry_core::strategy::Rolling::new(), "4").await;
    let reason = report.step("deploy").unwrap().reason.clone().unwrap();
    assert!(reason.contains("CrashLoopBackOff") && reason.contains("rolled back to web:1"), "{reason}");
    healthy_on(&deploys, &services, "web:1").await;
    let good = run(target(&c), gantry_core::strategy::Rolling::new(), "2").await;
    assert_eq!(good.status, RunStatus::Succeeded, "{good}");
    let d = settled(&deploys, "web", 4).await;
    assert_eq!(image(&d), "web:2");
    let labels = d.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels[VERSION_LABEL], "2", "the version label follows the release");
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_pre_promotion_failure_keeps_the_old_version_active() {
    let c = TestCluster::new("kprepromo").await.unwrap();
    let (deploys, services) = web(&c).await;
    let strategy = BlueGreen::new().pre_promotion(analysis(&["2"])).scale_down_delay(Duration::ZERO);
    let report = run(target(&c), strategy, "2").await;
    let reason = report.step("deploy").unwrap().reason.clone().unwrap();
    assert!(reason.contains("blue/green of web 2 aborted: analysis failed"), "{reason}");
    healthy_on(&deploys, &services, "web:1").await;
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_version_is_the_images_tag_not_what_follows_a_registrys_port() {
    use gantry_core::strategy::Target;
    let c = TestCluster::new("versions").await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    for (name, image, version) in [("a", "registry:5000/web", "latest"), ("b", "registry:5000/web:7", "7")] {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": image}]}}
            }
        }))
        .unwrap();
        deploys.create(&Default::default(), &d).await.unwrap();
        let target = KubeTarget::new(Cluster::new(c.client.clone(), c.namespace.clone()), name);
        let current = target.current().await.unwrap().unwrap();
        assert_eq!(current.version, version, "{image}");
    }
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a_b_route_without_a_router_is_refused_when_the_pipeline_is_built() {
    let c = TestCluster::new("kcapable").await.unwrap();
    let strategy = BlueGreen::new().preview_route(Match::Header { name: "x-variant".into(), value: "b".into() });
    let built = Pipeline::builder("release")
        .step(
            "deploy",
            Deploy::new(Arc::new(target(&c)), strategy.clone(), "web", "{{version}}").image("web:{{version}}"),
        )
        .build();
    let error = built.unwrap_err().to_string();
    assert!(
        error.contains("step `deploy` of pipeline `release` cannot run: its strategy needs header routes"),
        "{error}"
    );
    let routed = target(&c).router(HttpRoute::new("web", "web", "web-canary"));
    assert!(
        Pipeline::builder("release")
            .step("deploy", Deploy::new(Arc::new(routed), strategy, "web", "2"))
            .build()
            .is_ok()
    );
    // Replica shares give weights without a router.
    let canary = Canary::new().set_weight(25);
    assert!(
        Pipeline::builder("release")
            .step("deploy", Deploy::new(Arc::new(target(&c)), canary, "web", "2"))
            .build()
            .is_ok()
    );
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_restores_the_whole_last_good_template_after_a_crash_mid_rollout() {
    use gantry_core::strategy::{Release, Slot, Target};
    let c = TestCluster::new("kcrash-restore").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("web:9", PodScript::NeverReady);
    let (deploys, services) = web(&c).await;
    // Someone's own change to the template (an env var) is part of the last good version.
    let env = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "MODE", "value": "blue"}]}]}}}});
    deploys.patch("web", &kube::api::PatchParams::default(), &kube::api::Patch::Strategic(env)).await.unwrap();
    settled(&deploys, "web", 4).await;
    let host = target(&c);
    let stable = host.current().await.unwrap().unwrap();
    // The host dies mid-rollout of a release that never becomes ready.
    let release = Release::new("web", "9").image("web:9");
    let _ = tokio::time::timeout(Duration::from_secs(1), host.deploy(Slot::Stable, &release)).await;
    drop(host);
    assert_eq!(image(&deploys.get("web").await.unwrap()), "web:9", "left mid-rollout");
    // A new process, with nothing but the cluster, restores what was good.
    target(&c).restore(&stable, "the host restarted mid-rollout").await.unwrap();
    healthy_on(&deploys, &services, "web:1").await;
    let d = deploys.get("web").await.unwrap();
    let container = &d.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(container.env.as_ref().unwrap()[0].value.as_deref(), Some("blue"), "the whole template is back");
    // Restoring a restored target changes nothing.
    let generation = deploys.get("web").await.unwrap().metadata.generation;
    target(&c).restore(&stable, "again").await.unwrap();
    assert_eq!(deploys.get("web").await.unwrap().metadata.generation, generation);
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_targets_errors_say_what_the_server_answered_and_whether_a_retry_may_help() {
    use gantry_core::strategy::{Release, Slot, Target};
    use gantry_testkit::kube::Fault;
    use gantry_testkit::kube::{Method, StatusCode};
    let c = TestCluster::new("target-errors").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    web(&c).await;
    let target = KubeTarget::new(Cluster::new(c.client.clone(), c.namespace.clone()), "web");
    let release = Release::new("web", "2").image("web:2");

    // A token without `patch deployments`: refused, and refused again on a retry.
    sim.inject(Fault::status(StatusCode::FORBIDDEN).method(Method::PATCH).path("/deployments/web").times(1));
    let refused = target.deploy(Slot::Stable, &release).await.unwrap_err();
    assert!(!refused.is_retryable(), "{refused}");
    let text = refused.to_string();
    assert!(text.contains("patch Deployment `web`") && text.contains("(403 Forbidden)"), "{text}");
    let source = std::error::Error::source(&refused).expect("the cluster's error is kept");
    assert!(source.downcast_ref::<gantry_kube::KubeError>().is_some(), "{source:?}");

    // A server that keeps failing past the client's own retries: the deploy may succeed later.
    sim.inject(Fault::status(StatusCode::INTERNAL_SERVER_ERROR).method(Method::GET).path("/deployments/web").times(5));
    let failed = target.deploy(Slot::Stable, &release).await.unwrap_err();
    assert!(failed.is_retryable(), "{failed}");
    assert!(failed.to_string().contains("(500 InternalError)"), "{failed}");
    sim.clear_faults();
    c.cleanup().await;
}
