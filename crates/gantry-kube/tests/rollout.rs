//! Rolling deploys and Jobs against the simulated cluster (and a real one with `GANTRY_E2E_KUBECONFIG`, for the
//! tests that need no scripted image).

use std::time::{Duration, Instant};

use gantry_core::{Context, Pipeline, Run, RunStatus, StepStatus, TriggerRule};
use gantry_kube::{Cluster, JobStep, RollingDeploy};
use gantry_testkit::kube::{Fault, Method, PodScript, StatusCode};
use gantry_testkit::test_cluster::TestCluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::wait::await_condition;
use serde_json::json;

async fn web(c: &TestCluster, image: &str, deadline: i32) -> Api<Deployment> {
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2, "progressDeadlineSeconds": deadline,
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": image}]}}
        }
    }))
    .unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let ready = |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .is_some_and(|s| s.available_replicas == Some(2) && s.updated_replicas == Some(2))
    };
    tokio::time::timeout(Duration::from_secs(60), await_condition(deploys.clone(), "web", ready))
        .await
        .unwrap()
        .unwrap();
    deploys
}

fn image(d: &Deployment) -> String {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.clone().unwrap()
}

fn cluster(c: &TestCluster) -> Cluster {
    Cluster::new(c.client.clone(), c.namespace.clone())
}

fn deploy_pipeline(c: &TestCluster) -> Pipeline {
    Pipeline::builder("deploy").step("rollout", RollingDeploy::new(cluster(c), "web", "{{image}}")).build().unwrap()
}

async fn healthy_on(deploys: &Api<Deployment>, want: &str) {
    // A 500 the test injected and the step did not use up may still be waiting for this read.
    let mut d = deploys.get("web").await;
    for _ in 0..5 {
        if d.is_ok() {
            break;
        }
        d = deploys.get("web").await;
    }
    let d = d.unwrap();
    assert_eq!(image(&d), want);
    let s = d.status.unwrap();
    assert_eq!(
        (s.available_replicas, s.updated_replicas, s.replicas),
        (Some(2), Some(2), Some(2)),
        "healthy, all on {want}"
    );
}

/// Waits until the Deployment's template asks for `want`: the step's PATCH landed and the rollout is under way.
async fn rolling_out_to(deploys: &Api<Deployment>, want: &str) {
    let want = want.to_owned();
    let patched = move |d: Option<&Deployment>| d.is_some_and(|d| image(d) == want);
    tokio::time::timeout(Duration::from_secs(30), await_condition(deploys.clone(), "web", patched))
        .await
        .expect("the rollout starts in time")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_rollout_succeeds_and_leaves_events() {
    let c = TestCluster::new("good").await.unwrap();
    let deploys = web(&c, "nginx:1.27", 600).await;
    let report = deploy_pipeline(&c).run(Context::new().var("image", "nginx:1.28")).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    healthy_on(&deploys, "nginx:1.28").await;
    let events: Api<Event> = Api::namespaced(c.client.clone(), &c.namespace);
    let reasons: Vec<String> =
        events.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|e| e.reason).collect();
    assert!(
        reasons.contains(&"GantryRolloutStarted".into()) && reasons.contains(&"GantryRolloutComplete".into()),
        "{reasons:?}"
    );
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_image_is_rolled_back_at_once() {
    let c = TestCluster::new("crash").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("web:bad", PodScript::CrashLoop { runs_for: Duration::from_millis(100), exit_code: 1 });
    let deploys = web(&c, "web:1", 600).await;
    let started = Instant::now();
    let report = deploy_pipeline(&c).run(Context::new().var("image", "web:bad")).await.unwrap();
    let took = started.elapsed();
    assert_eq!(report.status, RunStatus::Failed);
    let reason = report.step("rollout").unwrap().reason.clone().unwrap();
    assert!(reason.contains("CrashLoopBackOff"), "{reason}");
    assert!(reason.contains("rolled back to web:1, which is healthy again"), "{reason}");
    assert!(took < Duration::from_secs(10), "failed fast, not at the 600 s deadline: {took:?}");
    healthy_on(&deploys, "web:1").await;
    let events: Api<Event> = Api::namespaced(c.client.clone(), &c.namespace);
    let rolled_back = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("GantryRolledBack"))
        .unwrap();
    assert!(rolled_back.message.unwrap().contains("CrashLoopBackOff"));
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_ready_image_hits_the_progress_deadline_and_is_rolled_back() {
    let c = TestCluster::new("deadline").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("web:stuck", PodScript::NeverReady);
    let deploys = web(&c, "web:1", 2).await;
    let report = deploy_pipeline(&c).run(Context::new().var("image", "web:stuck")).await.unwrap();
    let reason = report.step("rollout").unwrap().reason.clone().unwrap();
    assert!(reason.contains("no progress within the deadline"), "{reason}");
    assert!(reason.contains("rolled back to web:1"), "{reason}");
    healthy_on(&deploys, "web:1").await;
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_dropped_watches_during_a_rollout_are_survived() {
    let c = TestCluster::new("faults").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("web:2", PodScript::ReadyAfter(Duration::from_millis(300)));
    let deploys = web(&c, "web:1", 600).await;
    let run = Run::new(&deploy_pipeline(&c), Context::new().var("image", "web:2"));
    let handle = tokio::spawn(run.execute());
    rolling_out_to(&deploys, "web:2").await;
    let watches = || sim.requests().get("WATCH deployments").copied().unwrap_or(0);
    let before = watches();
    sim.inject(Fault::status(StatusCode::INTERNAL_SERVER_ERROR).path("/deployments").times(3));
    sim.drop_watches();
    // Again once the step has watched again (through the 500s; the simulator counts its requests), unless its
    // re-list already found the rollout complete.
    tokio::time::timeout(Duration::from_secs(30), async {
        while watches() <= before && !handle.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the step watches again");
    sim.drop_watches();
    let report = tokio::time::timeout(Duration::from_secs(60), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    healthy_on(&deploys, "web:2").await;
    c.cleanup().await;
}

/// Conflicts on the rollout's PATCH and on the rollback's, a 500 on the first read, and slow pod requests: each write
/// is sent again until it lands, and the rollback still brings back the last good version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_server_errors_and_latency_during_a_rollout_and_its_rollback_are_survived() {
    let c = TestCluster::new("conflicts").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("web:bad", PodScript::CrashLoop { runs_for: Duration::from_millis(100), exit_code: 1 });
    let deploys = web(&c, "web:1", 600).await;
    sim.reset_requests();
    let conflict = || Fault::status(StatusCode::CONFLICT).method(Method::PATCH).path("/deployments/web");
    sim.inject(conflict().times(2)); // the rollout's first two PATCHes
    sim.inject(conflict().skip(1).times(2)); // then, after the one that lands, the rollback's first two
    sim.inject(Fault::status(StatusCode::INTERNAL_SERVER_ERROR).method(Method::GET).path("/deployments/web"));
    sim.inject(Fault::latency(Duration::from_millis(200)).path("/pods").times(4));
    let report = deploy_pipeline(&c).run(Context::new().var("image", "web:bad")).await.unwrap();
    let reason = report.step("rollout").unwrap().reason.clone().unwrap();
    assert!(
        reason.contains("CrashLoopBackOff") && reason.contains("rolled back to web:1, which is healthy"),
        "{reason}"
    );
    assert_eq!(sim.requests()["PATCH deployments"], 6, "two conflicts each, then the rollout and the rollback");
    healthy_on(&deploys, "web:1").await;
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_mid_rollout_rolls_back() {
    let c = TestCluster::new("cancel").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("web:slow", PodScript::NeverReady);
    let deploys = web(&c, "web:1", 600).await;
    let run =
        Run::new(&deploy_pipeline(&c), Context::new().var("image", "web:slow")).grace_period(Duration::from_secs(30));
    let token = run.cancellation_token();
    let handle = tokio::spawn(run.execute());
    rolling_out_to(&deploys, "web:slow").await;
    token.cancel();
    let report = tokio::time::timeout(Duration::from_secs(60), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Cancelled);
    assert_eq!(report.status_of("rollout"), Some(StepStatus::Cancelled));
    healthy_on(&deploys, "web:1").await;
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_gate_the_deploy_and_a_failed_smoke_test_rolls_back() {
    let c = TestCluster::new("jobs").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script(
        "checks:fail",
        PodScript::Exit {
            after: Duration::from_millis(50),
            code: 2,
            logs: vec!["config: missing DATABASE_URL".into()],
        },
    );
    sim.script(
        "checks:ok",
        PodScript::Exit { after: Duration::from_millis(50), code: 0, logs: vec!["all good".into()] },
    );
    sim.script(
        "smoke:fail",
        PodScript::Exit { after: Duration::from_millis(50), code: 1, logs: vec!["GET /health -> 503".into()] },
    );
    let deploys = web(&c, "web:1", 600).await;
    let pipeline = |preflight: &str, smoke: &str| {
        Pipeline::builder("release")
            .step("preflight", JobStep::image(cluster(&c), "preflight", preflight, ["check"]))
            .step("deploy", RollingDeploy::new(cluster(&c), "web", "{{image}}"))
            .after(["preflight"])
            .step("smoke", JobStep::image(cluster(&c), "smoke", smoke, ["smoke"]))
            .after(["deploy"])
            .step("rollback", RollingDeploy::new(cluster(&c), "web", "{{previous_image}}"))
            .after(["smoke"])
            .rule(TriggerRule::OnFailure)
            .step("preflight-failed", gantry_core::step_fn(|_| async { Ok(()) }))
            .after(["preflight"])
            .rule(TriggerRule::OnFailure)
            .build()
            .unwrap()
    };
    let ctx = Context::new().var("image", "web:2").var("previous_image", "web:1");

    let blocked = pipeline("checks:fail", "smoke:fail").run(ctx.clone()).await.unwrap();
    assert_eq!(blocked.status_of("preflight"), Some(StepStatus::Failed));
    let reason = blocked.step("preflight").unwrap().reason.clone().unwrap();
    assert!(reason.contains("config: missing DATABASE_URL"), "the last lines are in the reason: {reason}");
    assert_eq!(blocked.status_of("deploy"), Some(StepStatus::Skipped));
    assert_eq!(blocked.status_of("preflight-failed"), Some(StepStatus::Succeeded), "the failure path ran");
    healthy_on(&deploys, "web:1").await;

    let smoke_failed = pipeline("checks:ok", "smoke:fail").run(ctx).await.unwrap();
    assert_eq!(smoke_failed.status_of("deploy"), Some(StepStatus::Succeeded));
    assert_eq!(smoke_failed.status_of("smoke"), Some(StepStatus::Failed));
    assert_eq!(smoke_failed.status_of("rollback"), Some(StepStatus::Succeeded));
    assert_eq!(smoke_failed.status, RunStatus::Failed);
    healthy_on(&deploys, "web:1").await;
    let left: Vec<String> = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(c.client.clone(), &c.namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    assert!(left.is_empty(), "Jobs are deleted after their steps: {left:?}");
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pod_watch_fails_the_rollout_at_once_naming_the_status_and_rolls_back() {
    let c = TestCluster::new("watch-403").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("web:crash", PodScript::CrashLoop { runs_for: Duration::from_millis(100), exit_code: 1 });
    let deploys = web(&c, "web:1", 600).await;
    // The pod list is refused (a token without `list pods`): crash loops could not be seen, so the rollout must not
    // go on blind. Three refusals end the rollout's watch; the rollback's watch then sees the pods again.
    sim.inject(Fault::status(StatusCode::FORBIDDEN).method(Method::GET).path("/pods").times(3));
    let started = Instant::now();
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        deploy_pipeline(&c).run(Context::new().var("image", "web:crash")),
    )
    .await
    .expect("no hang until the 600 s progress deadline")
    .unwrap();
    let took = started.elapsed();
    assert_eq!(report.status, RunStatus::Failed);
    let reason = report.step("rollout").unwrap().reason.clone().unwrap();
    assert!(reason.contains("the watch of the pods `app=web`"), "{reason}");
    assert!(reason.contains("refused it 3 times in a row: 403 Forbidden"), "{reason}");
    assert!(reason.contains("rolled back to web:1"), "{reason}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    healthy_on(&deploys, "web:1").await;
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_watch_is_refused_fails_naming_the_status_instead_of_hanging() {
    let c = TestCluster::new("job-401").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("checks:slow", PodScript::Exit { after: Duration::from_secs(30), code: 0, logs: vec![] });
    // As an expired token would be: every read of Jobs is refused from now on.
    sim.inject(Fault::status(StatusCode::UNAUTHORIZED).method(Method::GET).path("/jobs").times(1000));
    let p =
        Pipeline::builder("p").step("check", JobStep::image(cluster(&c), "check", "checks:slow", ["check"])).build();
    let report =
        tokio::time::timeout(Duration::from_secs(20), p.unwrap().run(Context::new())).await.expect("no hang").unwrap();
    let reason = report.step("check").unwrap().reason.clone().unwrap();
    assert!(reason.starts_with("the watch of Job `check-"), "{reason}");
    assert!(reason.contains("refused it 3 times in a row: 401 Unauthorized"), "{reason}");
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_is_caught_when_the_runtime_reports_the_normalised_image_and_a_digest() {
    use futures::StreamExt;
    let c = TestCluster::new("normalised").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("nginx:1.27", PodScript::CrashLoop { runs_for: Duration::from_millis(100), exit_code: 1 });
    let deploys = web(&c, "nginx:1.26", 600).await;
    let run = Run::new(&deploy_pipeline(&c), Context::new().var("image", "nginx:1.27"));
    let mut events = run.subscribe();
    let started = Instant::now();
    let handle = tokio::spawn(run.execute());
    let mut caught = None;
    while let Some(event) = events.next().await {
        if let gantry_core::Event::Log { line, .. } = &event
            && line.starts_with("rolling back")
        {
            caught = Some((started.elapsed(), line.to_string()));
            break;
        }
    }
    drop(events);
    let (took, line) = caught.expect("the rollout was rolled back");
    assert!(line.contains("CrashLoopBackOff"), "{line}");
    assert!(took < Duration::from_secs(2), "the crash loop was caught after {took:?}");
    // What the pods showed: the runtime's normalised reference and a digest, not the spec's text.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c.client.clone(), &c.namespace);
    let statuses: Vec<(String, String)> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .flat_map(|p| p.status.and_then(|s| s.container_statuses).unwrap_or_default())
        .map(|s| (s.image, s.image_id))
        .collect();
    assert!(statuses.iter().all(|(image, _)| image.starts_with("docker.io/library/nginx:")), "{statuses:?}");
    assert!(
        statuses.iter().all(|(_, id)| id.starts_with("docker.io/library/nginx@sha256:") && id.len() == 95),
        "{statuses:?}"
    );
    let report = handle.await.unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    healthy_on(&deploys, "nginx:1.26").await;
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_image_cannot_be_pulled_fails_at_once() {
    let c = TestCluster::new("job-pull").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("checks:missing", PodScript::ImagePullError);
    let p = Pipeline::builder("p")
        .step("check", JobStep::image(cluster(&c), "check", "checks:missing", ["check"]))
        .build()
        .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(20), p.run(Context::new())).await.expect("no hang").unwrap();
    let reason = report.step("check").unwrap().reason.clone().unwrap();
    assert!(reason.contains("cannot run: pod `check-") && reason.contains("is in ErrImagePull"), "{reason}");
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_have_a_deadline_that_kubernetes_enforces() {
    let c = TestCluster::new("job-deadline").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("checks:quick", PodScript::Exit { after: Duration::from_millis(20), code: 0, logs: vec![] });
    sim.script("checks:stuck", PodScript::Exit { after: Duration::from_secs(3600), code: 0, logs: vec![] });
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(c.client.clone(), &c.namespace);
    // By default: ten minutes.
    let kept = Pipeline::builder("p")
        .step("check", JobStep::image(cluster(&c), "kept", "checks:quick", ["check"]).keep())
        .build()
        .unwrap();
    assert_eq!(kept.run(Context::new()).await.unwrap().status, RunStatus::Succeeded);
    let job = jobs.list(&ListParams::default()).await.unwrap().items.pop().unwrap();
    assert_eq!(job.spec.unwrap().active_deadline_seconds, Some(600));
    // A stuck Job fails when its deadline passes, and its pods are stopped.
    let stuck = Pipeline::builder("p")
        .step("check", JobStep::image(cluster(&c), "stuck", "checks:stuck", ["check"]).deadline(Duration::from_secs(1)))
        .build()
        .unwrap();
    let started = Instant::now();
    let report =
        tokio::time::timeout(Duration::from_secs(20), stuck.run(Context::new())).await.expect("no hang").unwrap();
    let reason = report.step("check").unwrap().reason.clone().unwrap();
    assert!(reason.contains("failed (DeadlineExceeded)"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_rolling_deploy_rolls_back_before_it_ends() {
    let c = TestCluster::new("rollout-timeout").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("web:stuck", PodScript::NeverReady);
    let deploys = web(&c, "web:1", 600).await;
    let p = Pipeline::builder("deploy")
        .step("rollout", RollingDeploy::new(cluster(&c), "web", "{{image}}"))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let report = p.run(Context::new().var("image", "web:stuck")).await.unwrap();
    let rollout = report.step("rollout").unwrap();
    assert_eq!(rollout.status, StepStatus::Failed, "{report}");
    let reason = rollout.reason.clone().unwrap();
    assert!(reason.starts_with("timed out after 2s: deploying web:stuck"), "{reason}");
    assert!(
        reason.contains("interrupted") && reason.contains("rolled back to web:1, which is healthy again"),
        "{reason}"
    );
    // When the step ended, the Deployment was already back: nothing mid-rollout.
    healthy_on(&deploys, "web:1").await;
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_dropped_mid_rollout_still_rolls_back_and_says_so() {
    let c = TestCluster::new("rollout-dropped").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script("web:stuck", PodScript::NeverReady);
    let deploys = web(&c, "web:1", 600).await;
    // No time to roll back after the timeout: the step is dropped at its deadline.
    let p = Pipeline::builder("deploy")
        .step("rollout", RollingDeploy::new(cluster(&c), "web", "{{image}}").interrupt_grace(Duration::ZERO))
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let report = p.run(Context::new().var("image", "web:stuck")).await.unwrap();
    assert_eq!(report.step("rollout").unwrap().reason.as_deref(), Some("timed out after 1s"));
    let back = |d: Option<&Deployment>| {
        d.is_some_and(|d| {
            image(d) == "web:1"
                && d.status.as_ref().is_some_and(|s| s.available_replicas == Some(2) && s.updated_replicas == Some(2))
        })
    };
    tokio::time::timeout(Duration::from_secs(30), await_condition(deploys.clone(), "web", back))
        .await
        .expect("the dropped rollout was rolled back")
        .unwrap();
    let events: Api<Event> = Api::namespaced(c.client.clone(), &c.namespace);
    let mut said = None;
    for _ in 0..100 {
        said = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("GantryRolledBack"))
            .and_then(|e| e.message);
        if said.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let said = said.expect("an Event says why");
    assert!(said.contains("the step was dropped in the middle of the rollout"), "{said}");
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_output_is_logged_while_it_runs_not_only_at_the_end() {
    use futures::StreamExt;
    let c = TestCluster::new("job-follow").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    // Three lines printed at 0 s, 1 s and 2 s of a 3-second run.
    let lines: Vec<String> = ["migrating 1/3", "migrating 2/3", "migrating 3/3"].map(String::from).into();
    sim.script("checks:slow-log", PodScript::Exit { after: Duration::from_secs(3), code: 0, logs: lines.clone() });
    let pipeline = Pipeline::builder("p")
        .step("migrate", JobStep::image(cluster(&c), "migrate", "checks:slow-log", ["migrate"]))
        .build()
        .unwrap();
    let run = Run::new(&pipeline, Context::new());
    let mut events = run.subscribe();
    let handle = tokio::spawn(run.execute());
    let mut seen: Vec<(String, Instant)> = Vec::new();
    let mut finished = None;
    while let Some(event) = events.next().await {
        match &event {
            gantry_core::Event::Log { line, .. } if line.starts_with("migrating") => {
                seen.push((line.to_string(), Instant::now()));
            }
            gantry_core::Event::StepFinished { .. } => finished = Some(Instant::now()),
            _ => {}
        }
    }
    let report = handle.await.unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let logged: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(logged, ["migrating 1/3", "migrating 2/3", "migrating 3/3"], "each line once, in order");
    let finished = finished.expect("the step finished");
    // Followed: the first line arrives about two seconds before the step ends, not with the last.
    assert!(finished - seen[0].1 >= Duration::from_millis(1500), "{:?} before the end", finished - seen[0].1);
    assert!(seen[1].1 - seen[0].1 >= Duration::from_millis(600), "{:?} apart", seen[1].1 - seen[0].1);
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_follows_the_job_it_started_instead_of_starting_another() {
    let c = TestCluster::new("job-resume").await.unwrap();
    if let Some(sim) = c.sim() {
        sim.script(
            "smoke:slow",
            PodScript::Exit { after: Duration::from_millis(1500), code: 0, logs: vec!["GET /health -> 200".into()] },
        );
    }
    let store: std::sync::Arc<dyn gantry_core::RunStore> = std::sync::Arc::new(gantry_core::MemoryStore::new());
    let pipeline = Pipeline::builder("release")
        .step("smoke", JobStep::image(cluster(&c), "smoke", "smoke:slow", ["smoke"]).keep())
        .build()
        .unwrap();
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(c.client.clone(), &c.namespace);
    let run = Run::new(&pipeline, Context::new()).store(std::sync::Arc::clone(&store));
    let id = run.id().to_owned();
    let handle = tokio::spawn(run.execute());
    // The host stops once the Job exists.
    let selector = ListParams::default().labels(&format!("gantry.dev/run={id}"));
    for _ in 0..200 {
        if !jobs.list(&selector).await.unwrap().items.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle.abort();
    let _ = handle.await;
    assert_eq!(jobs.list(&selector).await.unwrap().items.len(), 1);

    let resumed = Run::resume(&pipeline, store, &id, Context::new()).await.unwrap();
    let events = resumed.subscribe();
    let report = tokio::time::timeout(Duration::from_secs(60), resumed.execute()).await.unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(jobs.list(&selector).await.unwrap().items.len(), 1, "no second Job");
    use futures::StreamExt as _;
    let lines: Vec<String> = events
        .filter_map(|e| async move {
            match e {
                gantry_core::Event::Log { line, .. } => Some(line.to_string()),
                _ => None,
            }
        })
        .collect()
        .await;
    assert!(lines.iter().any(|l| l.contains("re-attached to Job")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("GET /health -> 200")), "the Job's own output is followed: {lines:?}");
    c.cleanup().await;
}
