//! Sub-pipelines and fan-out: multi-service and multi-repo pipelines.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gantry_core::{
    CommandStep, Context, Event, OutputKey, Pipeline, RetryPolicy, Run, RunStatus, StepError, StepStatus, TriggerRule,
    step_fn,
};

const VERSION: OutputKey<String> = OutputKey::new("version");

fn deploy_one(service: &str) -> gantry_core::StepBuilder {
    let fails = service == "worker";
    Pipeline::builder(format!("deploy-{service}"))
        .step("preflight", CommandStep::new("echo").args(["preflight", "{{service}}"]))
        .step(
            "rollout",
            step_fn(move |ctx| async move {
                let version = ctx.output("build", VERSION)?;
                ctx.log(format!("rolling out {} {version}", ctx.require_var("service")?));
                if fails { Err(StepError::new("crash loop")) } else { Ok(()) }
            }),
        )
        .after(["preflight"])
}

#[tokio::test]
async fn fan_out_runs_one_sub_run_per_service_with_namespaced_steps() {
    let p = Pipeline::builder("release")
        .step(
            "build",
            step_fn(|ctx| async move {
                ctx.publish(VERSION, "v42".to_owned());
                Ok(())
            }),
        )
        .fan_out("deploy", "service", ["api", "web", "worker"], deploy_one)
        .after(["build"])
        .build()
        .unwrap();
    let (report, events) = support::run_collecting(&p, Context::new()).await;

    assert_eq!(report.status, RunStatus::Failed);
    let deploy = report.step("deploy").unwrap();
    assert_eq!(deploy.status, StepStatus::Failed);
    assert_eq!(deploy.reason.as_deref(), Some("1 of 3 sub-runs failed: `worker` failed at `deploy[worker]/rollout`"));
    assert_eq!(report.status_of("deploy[api]/rollout"), Some(StepStatus::Succeeded));
    assert_eq!(report.status_of("deploy[worker]/rollout"), Some(StepStatus::Failed));
    assert_eq!(deploy.children.len(), 6);

    let logs: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Log { step, line, .. } => Some((step.to_string(), line.to_string())),
            _ => None,
        })
        .collect();
    assert!(logs.contains(&("deploy[web]/preflight".into(), "preflight web".into())), "{logs:?}");
    assert!(logs.contains(&("deploy[api]/rollout".into(), "rolling out api v42".into())), "{logs:?}");
}

#[tokio::test]
async fn a_sub_pipeline_is_one_step_with_namespaced_inner_steps() {
    let checks = Pipeline::builder("checks")
        .step("lint", step_fn(|_| async { Ok(()) }))
        .step(
            "unit",
            step_fn(|ctx| async move {
                ctx.set_var("passed", "12");
                Ok(())
            }),
        )
        .after(["lint"])
        .build()
        .unwrap();
    let p = Pipeline::builder("ci")
        .pipeline("checks", checks)
        .step(
            "report",
            step_fn(|ctx| async move {
                // Variables set inside a sub-pipeline stay in it.
                assert_eq!(ctx.var("unit.passed"), None);
                Ok(())
            }),
        )
        .after(["checks"])
        .build()
        .unwrap();
    let report = p.run(Context::new()).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let names: Vec<&str> = report.all_steps().iter().map(|s| &*s.name).collect();
    assert_eq!(names, ["checks", "checks/lint", "checks/unit", "report"]);
}

#[tokio::test]
async fn multi_repo_pipelines_fan_out_over_repositories() {
    let p = Pipeline::builder("multi-repo")
        .fan_out("repo", "repo", ["org/api", "org/web"], |_| {
            Pipeline::builder("per-repo")
                .step("checkout", CommandStep::new("echo").args(["cloning", "{{repo}}", "at", "{{sha}}"]))
        })
        .build()
        .unwrap();
    let report = p.run(Context::new().var("sha", "abc123")).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.status_of("repo[org/web]/checkout"), Some(StepStatus::Succeeded));
    // The item variable is known to the template check; an unknown one is not.
    let bad = Pipeline::builder("x")
        .fan_out("repo", "repo", ["a"], |_| Pipeline::builder("y").step("s", CommandStep::new("echo").arg("{{rpeo}}")))
        .build()
        .unwrap();
    let problems = bad.check_variables(&Context::new());
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].step, "repo[a]/s");
}

/// A step that counts how many such steps run at once, and remembers the most.
fn counted(running: &Arc<AtomicUsize>, most: &Arc<AtomicUsize>) -> impl gantry_core::Step {
    let (running, most) = (Arc::clone(running), Arc::clone(most));
    step_fn(move |_| {
        let (running, most) = (Arc::clone(&running), Arc::clone(&most));
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_bounds_the_steps_of_every_sub_run_together() {
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let items: Vec<String> = (0..60).map(|i| format!("svc{i}")).collect();
    let p = Pipeline::builder("release")
        .step("top", counted(&running, &most))
        .fan_out("deploy", "service", items, |_| {
            Pipeline::builder("one")
                .step("a", counted(&running, &most))
                .step("b", counted(&running, &most))
                .pipeline("nested", Pipeline::builder("n").step("c", counted(&running, &most)).build().unwrap())
                .after(["a"])
        })
        .build()
        .unwrap();
    let report = Run::new(&p, Context::new()).max_concurrency(4).execute().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.all_steps().len(), 1 + 1 + 60 * 4, "{report}");
    assert_eq!(most.load(Ordering::SeqCst), 4, "at most 4 steps at once, and the bound was reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_bounds_a_fan_out_of_commands() {
    let tmp = support::TempDir::new("bounded");
    // Each command notes its start and end in a shared log (appends of one short line are atomic).
    let script = "echo s >> {{dir}}/log; sleep 0.05; echo e >> {{dir}}/log";
    let items: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
    let p = Pipeline::builder("fan")
        .fan_out("each", "item", items, |_| {
            Pipeline::builder("one").step("cmd", CommandStep::new("sh").args(["-c", script]))
        })
        .build()
        .unwrap();
    let report = Run::new(&p, Context::new().var("dir", tmp.display())).max_concurrency(4).execute().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let log = std::fs::read_to_string(tmp.path().join("log")).unwrap();
    let (mut now, mut most) = (0i32, 0i32);
    for line in log.lines() {
        now += if line == "s" { 1 } else { -1 };
        most = most.max(now);
    }
    assert_eq!(log.lines().count(), 80);
    assert!(most <= 4, "{most} commands ran at once");
}

#[tokio::test]
async fn a_cancelled_run_skips_a_step_waiting_for_a_place_and_runs_its_always_steps() {
    let p = Pipeline::builder("p")
        .step(
            "slow",
            step_fn(|ctx| async move {
                ctx.cancellation().cancelled().await;
                Err(StepError::cancelled())
            }),
        )
        .step("queued", step_fn(|_| async { Ok(()) }))
        .step("cleanup", step_fn(|_| async { Ok(()) }))
        .after(["queued"])
        .rule(TriggerRule::Always)
        .build()
        .unwrap();
    let run = Run::new(&p, Context::new()).max_concurrency(1);
    let (report, _) = support::cancel_after(run, Duration::from_millis(50)).await;
    assert_eq!(report.status, RunStatus::Cancelled, "{report}");
    assert_eq!(report.step("queued").unwrap().reason.as_deref(), Some("run cancelled"));
    assert_eq!(report.status_of("cleanup"), Some(StepStatus::Succeeded));
}

#[tokio::test]
async fn every_step_of_every_sub_run_is_listed_once() {
    let inner = Pipeline::builder("inner")
        .step(
            "a",
            step_fn(
                |ctx| async move { if ctx.attempt() < 2 { Err(StepError::new("busy").retryable()) } else { Ok(()) } },
            ),
        )
        .retry(RetryPolicy::fixed(1, Duration::from_millis(1)))
        .step("b", step_fn(|_| async { Err(StepError::new("bad")) }))
        .allow_failure()
        .step("c", step_fn(|_| async { Ok(()) }))
        .after(["b"])
        .rule(TriggerRule::OnFailure)
        .build()
        .unwrap();
    let p = Pipeline::builder("p")
        .pipeline("sub", inner.clone())
        .timeout(Duration::from_secs(10))
        .fan_out("fan", "item", ["x", "y"], |_| Pipeline::builder("f").pipeline("deep", inner.clone()))
        .after(["sub"])
        .build()
        .unwrap();
    let report = Run::new(&p, Context::new()).hook(Arc::new(gantry_core::Recorder::default())).execute().await.unwrap();
    let mut names: Vec<&str> = report.all_steps().iter().map(|s| &*s.name).collect();
    assert_eq!(names.len(), 2 + 3 + 2 * 4, "{report}");
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 2 + 3 + 2 * 4, "no step twice:\n{report}");
    assert_eq!(report.to_string().lines().count(), 1 + 13, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cancellation_a_sub_runs_always_step_gets_a_place_that_a_waiting_step_had_claimed() {
    let sub = Pipeline::builder("sub")
        .step(
            "deploy",
            step_fn(|ctx| async move {
                ctx.cancellation().cancelled().await;
                Err(StepError::cancelled())
            }),
        )
        .step("cleanup", step_fn(|_| async { Ok(()) }))
        .after(["deploy"])
        .rule(TriggerRule::Always)
        .build()
        .unwrap();
    let p = Pipeline::builder("p")
        .pipeline("sub", sub)
        // Ready at once, waits for the only place, which `deploy` holds.
        .step("audit", step_fn(|_| async { Ok(()) }))
        .rule(TriggerRule::Always)
        .build()
        .unwrap();
    let run = Run::new(&p, Context::new()).max_concurrency(1).grace_period(Duration::from_secs(20));
    let (report, took) = support::cancel_after(run, Duration::from_millis(100)).await;
    assert!(took < Duration::from_secs(10), "the run waited for the grace period: {took:?}\n{report}");
    assert_eq!(report.status_of("sub/cleanup"), Some(StepStatus::Succeeded), "{report}");
    assert_eq!(report.status_of("audit"), Some(StepStatus::Succeeded), "{report}");
    assert_eq!(report.status_of("sub/deploy"), Some(StepStatus::Cancelled), "{report}");
}
