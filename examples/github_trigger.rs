//! A host application that deploys when GitHub says so, and tells Slack how it went.
//!
//! `cargo run --example github_trigger`
//!
//! The host mounts Gantry's webhook receiver on its HTTP server (here on 127.0.0.1). Two repositories, `acme/shop`
//! (the `web` service, PHP) and `acme/api` (the `api` service, Node.js), route to one release pipeline: a rolling
//! deploy of the service at the deployment's commit, then a smoke-test Job. Each run reports its GitHub deployment
//! status (`in_progress`, then `success` or `failure` with its log link) and tells its story in a Slack thread.
//!
//! Everything outside the host is a stand-in from the test kit, on this machine: the simulated Kubernetes cluster,
//! a simulated Slack, and a receiver in place of GitHub's REST API. The example plays GitHub's part too: it sends
//! signed `deployment` deliveries (the octokit example payload), one of them twice, and one with a forged signature.
//! Commit `bad0c0de` of `acme/api` crash-loops: its rollout fails fast and is rolled back, and GitHub and Slack
//! both say so.
#![allow(clippy::print_stdout)] // An example prints.

use std::time::Duration;

use gantry::github::{DeploymentEvent, GitHub, Route, Webhooks, sign_payload};
use gantry::kube::k8s_openapi::api::apps::v1::Deployment;
use gantry::kube::kube::Api;
use gantry::kube::kube::runtime::wait::await_condition;
use gantry::kube::{Cluster, JobStep, RollingDeploy};
use gantry::prelude::*;
use gantry::slack::Slack;
use gantry::testkit::kube::{ClusterSim, PodScript};
use gantry::testkit::receiver::Receiver;
use gantry::testkit::slack::{BOT_TOKEN, CHANNEL, SlackSim};

const WEBHOOK_SECRET: &str = "whsec-example";

/// The pipeline every routed deployment runs: the event's service at the event's commit.
fn release(cluster: &Cluster, event: &DeploymentEvent) -> Pipeline {
    let service = if event.repository == "acme/shop" { "web" } else { "api" };
    Pipeline::builder(format!("release-{service}"))
        .step("rollout", RollingDeploy::new(cluster.clone(), service, format!("acme/{service}:{{{{sha}}}}")))
        .step("smoke", JobStep::image(cluster.clone(), format!("smoke-{service}"), "acme/smoke:1", ["smoke", service]))
        .after(["rollout"])
        .build()
        .expect("a valid pipeline")
}

/// A `deployment` delivery as GitHub sends it: the octokit example payload for `repo` at `sha`.
fn delivery(repo: &str, sha: &str) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_str(include_str!("../crates/gantry-github/tests/data/payload.json")).expect("the payload");
    body["repository"]["full_name"] = repo.into();
    body["deployment"]["sha"] = sha.into();
    body["deployment"]["id"] = (if repo == "acme/shop" { 1001 } else { 1002 }).into();
    serde_json::to_vec(&body).expect("JSON")
}

async fn cluster() -> Result<(ClusterSim, Cluster), Box<dyn std::error::Error>> {
    let sim = ClusterSim::start().await?;
    let ready = PodScript::ReadyAfter(Duration::from_millis(100));
    for image in ["acme/web:1111111", "acme/api:1111111", "acme/web:5eed5eed"] {
        sim.script(image, ready.clone());
    }
    sim.script("acme/api:bad0c0de", PodScript::CrashLoop { runs_for: Duration::from_millis(150), exit_code: 1 });
    sim.script(
        "acme/smoke:1",
        PodScript::Exit { after: Duration::from_millis(100), code: 0, logs: vec!["GET /health -> 200".into()] },
    );
    let deployments: Api<Deployment> = Api::default_namespaced(sim.client().await?);
    for service in ["web", "api"] {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": service},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": service}},
                "template": {"metadata": {"labels": {"app": service}}, "spec": {"containers": [{"name": "app", "image": format!("acme/{service}:1111111")}]}}
            }
        }))?;
        deployments.create(&Default::default(), &d).await?;
        let available =
            |d: Option<&Deployment>| d.and_then(|d| d.status.as_ref()).is_some_and(|s| s.available_replicas == Some(2));
        tokio::time::timeout(Duration::from_secs(30), await_condition(deployments.clone(), service, available))
            .await??;
    }
    let cluster = Cluster::new(sim.client().await?, "default");
    Ok((sim, cluster))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (sim, cluster) = cluster().await?;
    let (github_api, slack_api) = (Receiver::start().await?, SlackSim::start().await?);

    // The host's setup: where statuses and notifications go, and which repositories run which pipeline.
    let statuses = GitHub::with_url(github_api.url(), Secret::new("ghp_example_token"))
        .log_url("https://deploys.acme.example/runs/{run_id}")
        .environment_url("https://{environment}.acme.example");
    let slack = Slack::bot(Secret::new(BOT_TOKEN), CHANNEL.0)
        .api_url(slack_api.api_url())
        .run_url("https://deploys.acme.example/runs/{run_id}");
    let (router, runs) = Webhooks::new(Secret::new(WEBHOOK_SECRET))
        .statuses(statuses)
        .notify(slack)
        .route(Route::repository("acme/shop").environment("production"), {
            let cluster = cluster.clone();
            move |event| release(&cluster, event)
        })
        .route(Route::repository("acme/api").environment("production"), {
            let cluster = cluster.clone();
            move |event| release(&cluster, event)
        })
        .router_with_runs();
    let app = axum::Router::new().nest("/hooks/github", router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks/github", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server =
        tokio::spawn(
            async move { axum::serve(listener, app).with_graceful_shutdown(async { drop(stopped.await) }).await },
        );
    println!("the host listens for GitHub webhooks at {url}\n");

    // GitHub's part: deliveries, one redelivered, one forged.
    let secret = Secret::new(WEBHOOK_SECRET);
    let http = reqwest::Client::new();
    let deliveries = [
        ("acme/shop at 5eed5eed", "d-1", delivery("acme/shop", "5eed5eed"), true),
        ("acme/api at bad0c0de", "d-2", delivery("acme/api", "bad0c0de"), true),
        ("acme/shop at 5eed5eed, redelivered", "d-1", delivery("acme/shop", "5eed5eed"), true),
        ("acme/api, forged signature", "d-3", delivery("acme/api", "1111111"), false),
    ];
    for (what, id, body, signed) in deliveries {
        let signature = if signed { sign_payload(&secret, &body) } else { sign_payload(&Secret::new("guess"), &body) };
        let answer = http
            .post(&url)
            .header("x-github-event", "deployment")
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await?;
        let status = answer.status();
        println!("delivery {id} ({what}): {status} {}", answer.text().await?);
    }

    let mut reports = Vec::new();
    for started in runs.take() {
        let finished = started.run.await?;
        let report = finished.report.ok_or("a run did not start")?;
        println!("\n{}{report}", if finished.undelivered.is_empty() { "" } else { "(some statuses not delivered) " });
        reports.push(report);
    }
    let _ = stop.send(());
    server.await??;

    println!("GitHub got these deployment statuses:");
    for r in github_api.requests() {
        println!(
            "  {} {} {}",
            r.path,
            r.body["state"],
            r.body.get("log_url").map(|u| u.to_string()).unwrap_or_default()
        );
    }
    println!("\nSlack #deploys:");
    for m in slack_api.messages() {
        let indent = if m.thread_ts.is_some() { "    ↳ " } else { "  " };
        println!("{indent}{}", m.all_text().lines().next().unwrap_or_default());
    }

    // What this example shows, checked, so that a regression fails the run command.
    let image = |d: Deployment| d.spec.and_then(|s| s.template.spec).and_then(|s| s.containers[0].image.clone());
    let deployments: Api<Deployment> = Api::default_namespaced(sim.client().await?);
    assert_eq!(image(deployments.get("web").await?).as_deref(), Some("acme/web:5eed5eed"), "web went out");
    assert_eq!(image(deployments.get("api").await?).as_deref(), Some("acme/api:1111111"), "api was rolled back");
    assert_eq!(reports.len(), 2, "the redelivery and the forged delivery started nothing");
    let states: Vec<String> = github_api.requests().iter().map(|r| r.body["state"].to_string()).collect();
    assert_eq!(states.iter().filter(|s| s.contains("success")).count(), 1);
    assert_eq!(states.iter().filter(|s| s.contains("failure")).count(), 1);
    assert_eq!(slack_api.messages().iter().filter(|m| m.thread_ts.is_none()).count(), 2, "one thread per run");
    let told = slack_api.messages().iter().map(|m| m.all_text()).collect::<String>();
    assert!(told.contains(":rewind: `rollout` rolled back: default/api"), "Slack was told of the rollback");
    assert!(told.contains("<https://deploys.acme.example/runs/"), "with links to the runs");
    Ok(())
}
