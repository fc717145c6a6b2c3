//! A canary on the simulated cluster, analysed on the simulated Datadog's metrics, which follow the cluster: a
//! healthy release promotes, one whose image is scripted slower and more error-prone is aborted by the analysis.

use std::sync::Arc;
use std::time::Duration;

use gantry_core::analysis::{Analysis, ClassicJudge, Direction, Metric};
use gantry_core::strategy::{Canary, Deploy};
use gantry_core::{Context, Event, Phase, Pipeline, RunStatus, Secret};
use gantry_datadog::{Datadog, DatadogMetrics};
use gantry_kube::{Cluster, KubeTarget};
use gantry_testkit::datadog::DatadogSim;
use gantry_testkit::kube::{ClusterSim, Health};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::runtime::wait::await_condition;

async fn cluster() -> (ClusterSim, Api<Deployment>) {
    let sim = ClusterSim::start().await.unwrap();
    let deploys: Api<Deployment> = Api::default_namespaced(sim.client().await.unwrap());
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "web:1.0"}]}}
        }
    }))
    .unwrap();
    deploys.create(&Default::default(), &d).await.unwrap();
    let ready =
        |d: Option<&Deployment>| d.and_then(|d| d.status.as_ref()).is_some_and(|s| s.available_replicas == Some(3));
    tokio::time::timeout(Duration::from_secs(30), await_condition(deploys.clone(), "web", ready))
        .await
        .unwrap()
        .unwrap();
    (sim, deploys)
}

/// The simulated Datadog as a metric provider.
fn provider(datadog: &DatadogSim) -> Arc<DatadogMetrics> {
    let client = Datadog::with_url(&datadog.url(), Secret::new("api"), Secret::new("app")).unwrap();
    Arc::new(DatadogMetrics::new(client))
}

/// Request latency by version, critical.
fn latency() -> Metric {
    Metric::new("latency", "avg:trace.http.request.duration{service:web,version:{{version}}}", Direction::Increase)
        .critical()
}

fn analysis(datadog: &DatadogSim) -> Analysis {
    Analysis::new(provider(datadog), Arc::new(ClassicJudge::new()))
        .metric(latency())
        .metric(Metric::new(
            "errors",
            "sum:trace.http.request.errors{service:web,version:{{version}}}",
            Direction::Increase,
        ))
        .duration(Duration::from_millis(10))
        .lookback(Duration::from_secs(1800))
}

async fn canary(sim: &ClusterSim, datadog: &DatadogSim, version: &str) -> (gantry_core::RunReport, Vec<String>) {
    canary_judged_by(sim, datadog, version, analysis).await
}

/// A canary of `version` in two steps (34 %, 67 %), each with the analysis `analysis` makes; the report and verdicts.
async fn canary_judged_by(
    sim: &ClusterSim,
    datadog: &DatadogSim,
    version: &str,
    analysis: fn(&DatadogSim) -> Analysis,
) -> (gantry_core::RunReport, Vec<String>) {
    let target = KubeTarget::new(Cluster::new(sim.client().await.unwrap(), "default"), "web");
    let strategy = Canary::new().set_weight(34).analyze(analysis(datadog)).set_weight(67).analyze(analysis(datadog));
    let pipeline = Pipeline::builder("release")
        .step("deploy", Deploy::new(Arc::new(target), strategy, "web", "{{version}}").image("web:{{version}}"))
        .build()
        .unwrap();
    let run = gantry_core::Run::new(&pipeline, Context::new().var("version", version));
    let events = run.subscribe();
    let report = run.execute().await.unwrap();
    use futures::StreamExt;
    let verdicts = events
        .filter_map(|e| async move {
            match e {
                Event::Phase { phase: Phase::Verdict, message, .. } => Some(message.to_string()),
                _ => None,
            }
        })
        .collect()
        .await;
    (report, verdicts)
}

fn image(d: &Deployment) -> String {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_promotes_and_a_degraded_one_is_aborted_by_analysis() {
    let (sim, deploys) = cluster().await;
    let datadog = DatadogSim::start("api", "app").await.unwrap();
    datadog.follow(&sim);
    sim.script_health("web:2.0", Health::new(130.0, 0.03)); // +30% latency, errors x3

    let (report, verdicts) = canary(&sim, &datadog, "1.1").await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(verdicts.len(), 2);
    assert!(verdicts.iter().all(|v| v.starts_with("Pass")), "{verdicts:?}");
    assert_eq!(image(&deploys.get("web").await.unwrap()), "web:1.1");

    let (report, verdicts) = canary(&sim, &datadog, "2.0").await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(verdicts[0].starts_with("Fail") && verdicts[0].contains("latency: High"), "{verdicts:?}");
    let reason = report.step("deploy").unwrap().reason.clone().unwrap();
    assert!(reason.contains("critical metric failed: latency"), "{reason}");
    let ratio: f64 = reason
        .split("latency: High, canary/baseline mean ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the numbers are in the reason: {reason}"));
    assert!((1.25..1.35).contains(&ratio), "about +30% latency: {ratio}");
    let d = deploys.get("web").await.unwrap();
    assert_eq!(image(&d), "web:1.1", "the cluster ends fully on stable");
    assert_eq!(d.spec.unwrap().replicas, Some(3));
    assert!(deploys.get_opt("web-canary").await.unwrap().is_none());
    // The queries asked for each version, as the pods are labelled.
    let queries: Vec<String> =
        datadog.received().iter().filter_map(|r| r.params["query"].as_str().map(str::to_owned)).collect();
    assert!(queries.contains(&"avg:trace.http.request.duration{service:web,version:2.0}".to_owned()), "{queries:?}");
    assert!(queries.contains(&"avg:trace.http.request.duration{service:web,version:1.1}".to_owned()), "{queries:?}");
}

/// The sequential judge in a canary, end to end: both groups' latency, and errors per request served (the simulated
/// Datadog's `hits`), judged at every look until the evidence is clear either way.
fn sequential_analysis(datadog: &DatadogSim) -> Analysis {
    Analysis::new(provider(datadog), Arc::new(gantry_core::analysis::SequentialJudge::new()))
        .metric(latency())
        .metric(
            Metric::new(
                "errors",
                "avg:trace.http.request.errors{service:web,version:{{version}}}",
                Direction::Increase,
            )
            .per_requests("avg:trace.http.request.hits{service:web,version:{{version}}}")
            .allowed_increase(1.5),
        )
        // One-minute points over the last two hours (the simulated Datadog serves a version's metrics for any
        // window while its pods are ready), looked at every 200 ms, for at most 20 s.
        .lookback(Duration::from_secs(7200))
        .every(Duration::from_millis(200))
        .duration(Duration::from_secs(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sequential_judge_promotes_a_healthy_canary_and_aborts_a_degraded_one_judging_errors_per_request() {
    let (sim, deploys) = cluster().await;
    let datadog = DatadogSim::start("api", "app").await.unwrap();
    datadog.follow(&sim);
    sim.script_health("web:2.0", Health::new(130.0, 0.03)); // +30% latency, errors x3
    let (report, verdicts) = canary_judged_by(&sim, &datadog, "1.1", sequential_analysis).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report} {verdicts:?}");
    assert_eq!(verdicts.len(), 2, "{verdicts:?}");
    assert!(verdicts.iter().all(|v| v.starts_with("Pass")), "{verdicts:?}");
    assert!(verdicts[0].contains("per request served by each group"), "the assumption is stated: {verdicts:?}");
    assert_eq!(image(&deploys.get("web").await.unwrap()), "web:1.1");

    let (report, verdicts) = canary_judged_by(&sim, &datadog, "2.0", sequential_analysis).await;
    assert_eq!(report.status, RunStatus::Failed, "{report}");
    assert!(verdicts[0].starts_with("Fail") && verdicts[0].contains("latency: High"), "{verdicts:?}");
    assert!(verdicts[0].contains("errors: High"), "errors x3 per request: {verdicts:?}");
    let d = deploys.get("web").await.unwrap();
    assert_eq!(image(&d), "web:1.1", "the cluster ends fully on stable");
    assert!(deploys.get_opt("web-canary").await.unwrap().is_none());
    let queries: Vec<String> =
        datadog.received().iter().filter_map(|r| r.params["query"].as_str().map(str::to_owned)).collect();
    assert!(queries.contains(&"avg:trace.http.request.hits{service:web,version:2.0}".to_owned()), "{queries:?}");
}
