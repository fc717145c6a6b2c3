//! Gantry's quickstart: a release of two services to a simulated Kubernetes cluster, run on this machine.
//!
//! `cargo run --example quickstart` (`-- --serve` also serves the web run view on loopback and prints its URL)
//!
//! A simulated cluster (the test kit's API server, which the real kube client and kubectl talk to) runs `api` and
//! `web` on release 2.9.0. The pipeline checks out the code, then fans out over the two services. Each service builds
//! a real image with buildah when it is installed (layers cached in a registry on this machine; without buildah the
//! build is simulated, and the output says so), pushes to a release registry that fails once and recovers on retry, runs a preflight Job, and rolls
//! out release 3.0.0 (the canary branch is skipped: this is staging), then runs a smoke-test Job. Release 3.0.0 of `web`
//! crash-loops: the rollout fails fast and rolls `web` back to 2.9.0 automatically, while `api` goes through. A
//! notification step runs at the end whatever happened. A live view follows the run's events; the report closes it.
//!
//! Then production: release 3.1.0 goes out as a canary per service (a third of the pods, then two thirds), each
//! step analysed on metrics from a simulated Datadog that follows the cluster. `api` 3.1.0 is healthy and is
//! promoted; `web` 3.1.0 answers 35% slower with three times the errors, so the analysis fails and the canary is
//! aborted: all traffic back on the stable version, with the verdict and its numbers in the output. The production
//! run is told in Slack (a simulated Slack on this machine): one thread with the verdicts, the abort and the end.
//!
//! With `--serve`, both runs are recorded in a run history and the web view of `gantry::web` serves it on
//! 127.0.0.1: the run list, each run's live graph and logs, and the canary evidence; it stays up until Ctrl-C.
//!
//! The output is the terminal view of `gantry::term`: one line per thing that happened, each verdict once, every
//! line within 80 columns (spinners for the running steps on a terminal).
#![allow(clippy::print_stdout)] // An example prints.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gantry::build::{BuildImage, Buildah};
use gantry::core::analysis::{Analysis, ClassicJudge, Direction, Metric};
use gantry::core::strategy::{Canary, Deploy};
use gantry::datadog::{Datadog, DatadogMetrics};
use gantry::kube::k8s_openapi::api::apps::v1::Deployment;
use gantry::kube::kube::Api;
use gantry::kube::kube::runtime::wait::await_condition;
use gantry::kube::{Cluster, JobStep, KubeTarget, RollingDeploy};
use gantry::prelude::*;
use gantry::slack::Slack;
use gantry::term::{TerminalView, fit};
use gantry::testkit::datadog::DatadogSim;
use gantry::testkit::kube::{ClusterSim, Health, PodScript};
use gantry::testkit::registry::RegistryServer;
use gantry::testkit::slack::{BOT_TOKEN, CHANNEL, SlackSim};
use gantry::web::RunView;

/// A registry that answers 503 to the first push of each service.
fn push_step(failures: Arc<AtomicU32>) -> impl Step {
    step_fn(move |ctx| {
        let failures = Arc::clone(&failures);
        async move {
            let service = ctx.require_var("service")?;
            tokio::time::sleep(Duration::from_millis(150)).await;
            if ctx.attempt() == 1 {
                failures.fetch_add(1, Ordering::Relaxed);
                return Err(StepError::new(format!("registry answered 503 for {service}")).retryable());
            }
            ctx.log(format!("pushed registry.example/{service}:{}", ctx.require_var("sha")?));
            Ok(())
        }
    })
    .describe("copies the image to the release registry")
}

fn pause(ms: u64, what: &'static str) -> impl Step {
    step_fn(move |ctx| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ctx.log(format!("{what} {}", ctx.var("service").unwrap_or_default()));
        Ok(())
    })
    .describe(what)
}

/// The build: a real image build when buildah and a registry are here, a simulated one otherwise.
struct Build(Arc<dyn Step>);

#[gantry::core::async_trait]
impl Step for Build {
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        self.0.run(ctx).await
    }

    fn describe(&self, ctx: &StepContext) -> String {
        self.0.describe(ctx)
    }

    fn variables(&self) -> Result<Vec<String>, gantry::core::TemplateError> {
        self.0.variables()
    }
}

/// Where the services' images are built: a registry on loopback, a base image made there, and a context per service.
struct Builds {
    registry: RegistryServer,
    dir: std::path::PathBuf,
}

impl Builds {
    /// `None` when buildah, docker-registry or busybox-static is missing.
    async fn start() -> Result<Option<Self>, Box<dyn std::error::Error>> {
        if !RegistryServer::installed() {
            return Ok(None);
        }
        let registry = RegistryServer::start().await?;
        let dir = gantry::testkit::registry::unique_dir("gantry-quickstart");
        let base = registry.push_busybox_base(&dir.join("storage")).await?;
        for (service, file, text) in
            [("api", "index.php", "<?php echo 'api';"), ("web", "server.js", "console.log('web');")]
        {
            let ctx = dir.join(service);
            std::fs::create_dir_all(&ctx)?;
            std::fs::write(ctx.join(file), text)?;
            std::fs::write(
                ctx.join("Containerfile"),
                format!("FROM {base}\nRUN mkdir -p /app && sleep 1\nCOPY {file} /app/{file}\nCMD [\"/bin/sh\"]\n"),
            )?;
        }
        Ok(Some(Self { registry, dir }))
    }

    fn step(builds: Option<&Self>) -> Build {
        let Some(b) = builds else {
            return Build(Arc::new(CommandStep::new("sh").args([
                "-c",
                "echo buildah is not installed: SIMULATING the build of $0; sleep 0.3",
                "{{service}}",
            ])));
        };
        let registry = b.registry.address();
        Build(Arc::new(
            BuildImage::new(
                Buildah::new().root(b.dir.join("storage/root")).runroot(b.dir.join("storage/run")).network("none"),
                format!("{}/{{{{service}}}}", b.dir.display()),
            )
            .tag(format!("{registry}/shop/{{{{service}}}}:{{{{release}}}}"))
            .label("org.opencontainers.image.revision", "{{sha}}")
            .cache(format!("{registry}/cache/shop"))
            .insecure_registry(registry),
        ))
    }
}

impl Drop for Builds {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn release(
    failures: Arc<AtomicU32>,
    cluster: &Cluster,
    builds: Option<&Builds>,
) -> Result<Pipeline, gantry::core::BuildError> {
    Pipeline::builder("release")
        .step("checkout", CommandStep::new("echo").args(["checked out", "{{repo}}", "at", "{{sha}}"]))
        .fan_out("deploy", "service", ["api", "web"], |_| {
            Pipeline::builder("deploy-service")
                .step("build", Builds::step(builds))
                .step("push", push_step(Arc::clone(&failures)))
                .after(["build"])
                .retry(RetryPolicy::fixed(2, Duration::from_millis(200)))
                .step(
                    "preflight",
                    JobStep::image(cluster.clone(), "preflight-{{service}}", "shop/checks:1", ["check", "{{service}}"]),
                )
                .after(["push"])
                .step("canary", pause(200, "canary of"))
                .after(["preflight"])
                .when(Condition::var_equals("env", "production"))
                .step("rollout", RollingDeploy::new(cluster.clone(), "{{service}}", "shop/{{service}}:{{release}}"))
                .after(["preflight"])
                .when(Condition::var_not_equals("env", "production"))
                .step(
                    "smoke",
                    JobStep::image(cluster.clone(), "smoke-{{service}}", "shop/smoke:1", ["smoke", "{{service}}"]),
                )
                .after(["rollout"])
        })
        .after(["checkout"])
        .step(
            "notify",
            step_fn(|ctx| async move {
                ctx.log("posting the result to #deploys");
                Ok(())
            })
            .describe("notifies #deploys"),
        )
        .after(["deploy"])
        .rule(TriggerRule::Always)
        .build()
}

/// Production: a canary per service, analysed at each step on Datadog's latency and errors for the two versions.
fn production(cluster: &Cluster, datadog: &DatadogSim) -> Result<Pipeline, Box<dyn std::error::Error>> {
    let client = Datadog::with_url(&datadog.url(), Secret::new("dd-api-key"), Secret::new("dd-app-key"))?;
    let metrics = Arc::new(DatadogMetrics::new(client));
    let analysis = Analysis::new(metrics, Arc::new(ClassicJudge::new()))
        .metric(
            Metric::new(
                "latency",
                "avg:trace.http.request.duration{service:{{service}},version:{{version}}}",
                Direction::Increase,
            )
            .critical(),
        )
        .metric(Metric::new(
            "errors",
            "avg:trace.http.request.errors{service:{{service}},version:{{version}}}",
            Direction::Increase,
        ))
        .duration(Duration::from_millis(200))
        .lookback(Duration::from_secs(1800));
    Ok(Pipeline::builder("production")
        .fan_out("canary", "service", ["api", "web"], |service| {
            let target = Arc::new(KubeTarget::new(cluster.clone(), service));
            let strategy =
                Canary::new().set_weight(33).analyze(analysis.clone()).set_weight(66).analyze(analysis.clone());
            Pipeline::builder("canary-service").step(
                "deploy",
                Deploy::new(target, strategy, "{{service}}", "{{release}}").image("shop/{{service}}:{{release}}"),
            )
        })
        .build()?)
}

/// The simulated cluster: `api` and `web` running 2.9.0; release 3.0.0 of `web` crash-loops.
async fn cluster() -> Result<(ClusterSim, Cluster), Box<dyn std::error::Error>> {
    let sim = ClusterSim::start().await?;
    let ready = PodScript::ReadyAfter(Duration::from_millis(150));
    for image in ["shop/api:2.9.0", "shop/web:2.9.0", "shop/api:3.0.0", "shop/api:3.1.0", "shop/web:3.1.0"] {
        sim.script(image, ready.clone());
    }
    sim.script("shop/web:3.0.0", PodScript::CrashLoop { runs_for: Duration::from_millis(200), exit_code: 1 });
    sim.script_health("shop/web:3.1.0", Health::new(135.0, 0.03)); // Slower, and three times the errors.
    sim.script(
        "shop/checks:1",
        PodScript::Exit {
            after: Duration::from_millis(200),
            code: 0,
            logs: vec!["config ok".into(), "database reachable".into()],
        },
    );
    sim.script(
        "shop/smoke:1",
        PodScript::Exit { after: Duration::from_millis(200), code: 0, logs: vec!["GET /health -> 200".into()] },
    );
    let client = sim.client().await?;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    for service in ["api", "web"] {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": service},
            "spec": {
                "replicas": 3,
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "selector": {"matchLabels": {"app": service}},
                "template": {"metadata": {"labels": {"app": service}}, "spec": {"containers": [{"name": "app", "image": format!("shop/{service}:2.9.0")}]}}
            }
        }))?;
        deployments.create(&Default::default(), &d).await?;
        let available =
            |d: Option<&Deployment>| d.and_then(|d| d.status.as_ref()).is_some_and(|s| s.available_replicas == Some(3));
        tokio::time::timeout(Duration::from_secs(30), await_condition(deployments.clone(), service, available))
            .await??;
    }
    Ok((sim, Cluster::new(client, "default")))
}

async fn image_of(sim: &ClusterSim, service: &str) -> Result<String, Box<dyn std::error::Error>> {
    let d = Api::<Deployment>::default_namespaced(sim.client().await?).get(service).await?;
    Ok(d.spec.and_then(|s| s.template.spec).and_then(|s| s.containers.first()?.image.clone()).unwrap_or_default())
}

/// Serves the web view of `history` on loopback; its URL.
async fn serve(history: &MemoryHistory) -> Result<String, Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/deploys", listener.local_addr()?);
    let view = RunView::new(Arc::new(history.clone())).title("Gantry quickstart");
    let app = axum::Router::new().nest("/deploys", view.router());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let history = MemoryHistory::new();
    let run_view = match std::env::args().any(|a| a == "--serve") {
        true => Some(serve(&history).await?),
        false => None,
    };
    if let Some(url) = &run_view {
        println!("run view: {url}\n");
    }
    let (sim, cluster) = cluster().await?;
    println!("simulated cluster at {}: api and web run shop/*:2.9.0\n", sim.url());
    let builds = Builds::start().await?;
    match &builds {
        Some(b) => println!("images build with buildah and push to a registry at {}\n", b.registry.address()),
        None => println!(
            "buildah is not installed: the build step SIMULATES the build \
             (apt-get install buildah runc docker-registry busybox-static for real builds)\n"
        ),
    }
    let failures = Arc::new(AtomicU32::new(0));
    let pipeline = release(Arc::clone(&failures), &cluster, builds.as_ref())?;
    let context =
        Context::new().var("repo", "acme/shop").var("sha", "3f9c2e1").var("env", "staging").var("release", "3.0.0");

    for line in pipeline.plan(&context).to_string().lines() {
        println!("{}", fit(line, 80));
    }
    let run = Run::new(&pipeline, context).notify(history.clone());
    let view = tokio::spawn(TerminalView::new().follow(run.subscribe()));
    let report = run.execute().await?;
    let staging_lines = view.await?;
    assert!(staging_lines.iter().all(|l| l.chars().count() <= 80), "the view fits 80 columns");
    println!("{}", fit(&format!("\nrun {}: {}", report.run_id, report.summary()), 80));
    let (api, web) = (image_of(&sim, "api").await?, image_of(&sim, "web").await?);
    println!("after the run: api runs {api}, web runs {web}");
    // What this example shows, checked, so that a regression fails the run command.
    assert_eq!(failures.load(Ordering::Relaxed), 2, "each push failed once and recovered");
    assert_eq!(report.status_of("deploy[web]/build"), Some(StepStatus::Succeeded), "the images built");
    assert_eq!(report.status_of("deploy[api]/canary"), Some(StepStatus::Skipped), "staging skips the canary branch");
    assert_eq!(report.status_of("deploy[api]/smoke"), Some(StepStatus::Succeeded), "api went through");
    assert_eq!(report.status_of("deploy[web]/rollout"), Some(StepStatus::Failed), "web's release crash-loops");
    assert_eq!(report.status_of("notify"), Some(StepStatus::Succeeded), "the notification runs whatever happened");
    assert_eq!(report.status, RunStatus::Failed, "a rolled-back release is a failed run");
    assert_eq!((api.as_str(), web.as_str()), ("shop/api:3.0.0", "shop/web:2.9.0"), "web was rolled back");

    println!("\nproduction: release 3.1.0 as canaries, analysed on simulated Datadog metrics\n");
    let datadog = DatadogSim::start("dd-api-key", "dd-app-key").await?;
    datadog.follow(&sim);
    let pipeline = production(&cluster, &datadog)?;
    let slack_api = SlackSim::start().await?;
    let slack = Slack::bot(Secret::new(BOT_TOKEN), CHANNEL.0)
        .api_url(slack_api.api_url())
        .run_url(format!("{}/runs/{{run_id}}", run_view.as_deref().unwrap_or("https://deploys.example")))
        .dashboard_url("https://app.datadoghq.com/dashboard/shop-canary?tpl_var_release={release}");
    let context = Context::new().var("repo", "acme/shop").var("sha", "3f9c2e1").var("release", "3.1.0");
    let run = Run::new(&pipeline, context).notify(slack).notify(history.clone());
    let view = tokio::spawn(TerminalView::new().follow(run.subscribe()));
    let report = run.execute().await?;
    let lines = view.await?;
    println!("{}", fit(&format!("\nrun {}: {}", report.run_id, report.summary()), 80));
    let (api, web) = (image_of(&sim, "api").await?, image_of(&sim, "web").await?);
    println!("after the canaries: api runs {api}, web runs {web}");
    let messages = slack_api.messages();
    let thread = messages.iter().filter(|m| m.thread_ts.is_some()).count();
    let header = messages.first().map(|m| m.text.clone()).unwrap_or_default();
    println!("{}", fit(&format!("\nSlack #deploys: \"{header}\", {thread} replies in its thread"), 80));
    let told: String = slack_api.messages().iter().map(|m| m.all_text()).collect();
    assert!(told.contains("analysis verdict: Fail (score 0)"), "Slack got web's verdict with its numbers");
    assert!(told.contains(":rewind:"), "and the abort");
    assert_eq!(report.status_of("canary[api]/deploy"), Some(StepStatus::Succeeded), "api's canary passed");
    let reason = report.step("canary[web]/deploy").and_then(|s| s.reason.clone()).unwrap_or_default();
    assert!(reason.contains("analysis failed") && reason.contains("latency: High"), "web's canary failed: {reason}");
    assert_eq!((api.as_str(), web.as_str()), ("shop/api:3.1.0", "shop/web:2.9.0"), "web's canary was aborted");
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "the view fits 80 columns");
    let verdicts = lines.iter().filter(|l| l.starts_with('◆')).count();
    assert_eq!(verdicts, 3, "each verdict told once: two steps of api's canary, the first of web's (then aborted)");
    if let Some(url) = run_view {
        println!("\nthe run view stays at {url} (Ctrl-C to stop)");
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}
