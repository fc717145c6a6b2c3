//! How a rolling deploy uses the Kubernetes API, and how fast it reacts to a crash loop, on the simulated cluster.
//!
//! 1. The requests the simulator receives during one `RollingDeploy` of 10, 100 and 1,000 replicas
//!    (`GANTRY_REPLICAS=10,300` sets others), by verb and resource (the simulated controllers write to the store
//!    directly, so only the step's requests are counted). New pods become ready 100 ms after they start, so the rollout
//!    is still going when the step's watches open. Every rollout is bounded by a 60 s timeout.
//! 2. The time from the first crash-looping pod (as a separate watcher sees it) to the start of the rollback (the
//!    Deployment's template back on the previous image), over several runs.
//!
//! Run: `cargo bench --bench kube_rollout`. Figures are recorded in docs/PERFORMANCE.md.
#![allow(clippy::print_stdout)] // The bench prints the tables docs/PERFORMANCE.md records.

use std::time::{Duration, Instant};

use futures::StreamExt;
use gantry::core::{Context, Pipeline, RunStatus};
use gantry_kube::{Cluster, RollingDeploy};
use gantry_testkit::kube::{ClusterSim, PodScript};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::wait::await_condition;
use kube::runtime::{WatchStreamExt, watcher};

async fn deployment(sim: &ClusterSim, replicas: i32) -> Api<Deployment> {
    let deploys: Api<Deployment> = Api::default_namespaced(sim.client().await.unwrap());
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "web:1"}]}}
        }
    }))
    .unwrap();
    deploys.create(&Default::default(), &d).await.unwrap();
    let ready = move |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref()).is_some_and(|s| s.available_replicas == Some(replicas))
    };
    tokio::time::timeout(Duration::from_secs(600), await_condition(deploys.clone(), "web", ready))
        .await
        .unwrap()
        .unwrap();
    deploys
}

fn pipeline(sim_client: kube::Client) -> Pipeline {
    let cluster = Cluster::new(sim_client, "default");
    Pipeline::builder("deploy").step("rollout", RollingDeploy::new(cluster, "web", "{{image}}")).build().unwrap()
}

async fn requests_per_rollout() {
    println!("requests received during one rolling update (RollingDeploy of web:1 -> web:2), by verb and resource:");
    let sizes: Vec<i32> = std::env::var("GANTRY_REPLICAS")
        .map(|s| s.split(",").map(|n| n.parse().unwrap()).collect())
        .unwrap_or(vec![10, 100, 1000]);
    for replicas in sizes {
        let sim = ClusterSim::start().await.unwrap();
        sim.script("web:1", PodScript::ReadyAfter(Duration::from_millis(20)));
        sim.script("web:2", PodScript::ReadyAfter(Duration::from_millis(100)));
        let setup = Instant::now();
        deployment(&sim, replicas).await;
        let setup = setup.elapsed();
        sim.reset_requests();
        let started = Instant::now();
        let p = pipeline(sim.client().await.unwrap());
        let run = p.run(Context::new().var("image", "web:2"));
        let Ok(report) = tokio::time::timeout(Duration::from_secs(60), run).await else {
            panic!("{replicas} replicas did not complete within 60 s; requests so far: {:?}", sim.requests());
        };
        let took = started.elapsed();
        assert_eq!(report.unwrap().status, RunStatus::Succeeded);
        let counts = sim.requests();
        let total: u64 = counts.values().sum();
        let line: Vec<String> = counts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!(
            "  {replicas:>5} replicas  {total:>2} requests  [{}]  (rollout took {took:.2?}, setup {setup:.2?})",
            line.join(", ")
        );
    }
}

async fn crash_to_rollback() {
    println!(
        "\ntime from the first crash-looping pod to the start of the rollback (10 replicas, a crash every 100 ms):"
    );
    let mut samples = Vec::new();
    for _ in 0..5 {
        let sim = ClusterSim::start().await.unwrap();
        sim.script("web:1", PodScript::ReadyAfter(Duration::from_millis(20)));
        sim.script("web:bad", PodScript::CrashLoop { runs_for: Duration::from_millis(100), exit_code: 1 });
        let deploys = deployment(&sim, 10).await;
        let client = sim.client().await.unwrap();
        // An observer of its own: when the first pod shows CrashLoopBackOff, and when the template goes back.
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        let first_crash = tokio::spawn(async move {
            let mut stream = watcher(pods, watcher::Config::default()).default_backoff().applied_objects().boxed();
            while let Some(Ok(pod)) = stream.next().await {
                let crashing = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref())
                            == Some("CrashLoopBackOff")
                    })
                });
                if crashing {
                    return Instant::now();
                }
            }
            unreachable!("the watch ended")
        });
        let rolled_back = tokio::spawn(async move {
            let mut stream = watcher(deploys, watcher::Config::default()).default_backoff().applied_objects().boxed();
            let mut saw_bad = false;
            while let Some(Ok(d)) = stream.next().await {
                let image = d
                    .spec
                    .and_then(|s| s.template.spec)
                    .and_then(|s| s.containers.first().and_then(|c| c.image.clone()))
                    .unwrap_or_default();
                saw_bad |= image == "web:bad";
                if saw_bad && image == "web:1" {
                    return Instant::now();
                }
            }
            unreachable!("the watch ended")
        });
        let p = pipeline(client);
        let run = p.run(Context::new().var("image", "web:bad"));
        let report = tokio::time::timeout(Duration::from_secs(60), run).await.expect("bounded").unwrap();
        assert_eq!(report.status, RunStatus::Failed);
        let observed = async { (first_crash.await.unwrap(), rolled_back.await.unwrap()) };
        let (crash, back) = tokio::time::timeout(Duration::from_secs(10), observed).await.expect("bounded");
        samples.push(back.saturating_duration_since(crash));
    }
    samples.sort();
    let ms: Vec<String> = samples.iter().map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0)).collect();
    println!("  samples (ms): {}; median {:.1} ms", ms.join(", "), samples[samples.len() / 2].as_secs_f64() * 1000.0);
    println!("  (kubectl rollout status and Argo Rollouts wait for progressDeadlineSeconds: 600 s by default)");
}

#[tokio::main]
async fn main() {
    requests_per_rollout().await;
    crash_to_rollback().await;
}
