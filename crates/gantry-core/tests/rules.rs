//! Trigger rules, conditions, allow_failure, outputs and variables, each on a small pipeline.

use std::sync::Arc;

use futures::StreamExt;
use gantry_core::{
    Condition, Context, ContextError, Event, OutputKey, Pipeline, Run, RunStatus, StepError, StepStatus, TriggerRule,
    step_fn,
};

fn ok() -> impl gantry_core::Step {
    step_fn(|_| async { Ok(()) })
}

fn fail(message: &'static str) -> impl gantry_core::Step {
    step_fn(move |_| async move { Err(StepError::new(message)) })
}

fn reason(report: &gantry_core::RunReport, step: &str) -> String {
    report.step(step).unwrap().reason.as_deref().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn all_success_skips_after_a_failure_and_names_the_upstream() {
    let p = Pipeline::builder("p")
        .step("build", fail("compile error"))
        .step("deploy", ok())
        .after(["build"])
        .step("smoke", ok())
        .after(["deploy"])
        .build()
        .unwrap();
    let r = p.run(Context::new()).await.unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.status_of("build"), Some(StepStatus::Failed));
    assert_eq!(reason(&r, "build"), "compile error");
    assert_eq!(r.status_of("deploy"), Some(StepStatus::Skipped));
    assert_eq!(reason(&r, "deploy"), "upstream `build` failed");
    assert_eq!(reason(&r, "smoke"), "upstream `deploy` was skipped");
}

#[tokio::test]
async fn on_failure_runs_only_on_the_failure_path_and_the_run_still_fails() {
    let p = Pipeline::builder("p")
        .step("deploy", fail("rollout stuck"))
        .step("rollback", ok())
        .after(["deploy"])
        .rule(TriggerRule::OnFailure)
        .step("announce", ok())
        .after(["deploy"])
        .build()
        .unwrap();
    let r = p.run(Context::new()).await.unwrap();
    assert_eq!(r.status_of("rollback"), Some(StepStatus::Succeeded));
    assert_eq!(r.status_of("announce"), Some(StepStatus::Skipped));
    assert_eq!(r.status, RunStatus::Failed, "a failure handled by a failure path is still a failed run");
    assert_eq!(r.summary(), "failed at `deploy`");

    let happy = Pipeline::builder("p")
        .step("deploy", ok())
        .step("rollback", ok())
        .after(["deploy"])
        .rule(TriggerRule::OnFailure)
        .build()
        .unwrap();
    let r = happy.run(Context::new()).await.unwrap();
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(reason(&r, "rollback"), "no upstream step failed");
}

#[tokio::test]
async fn always_runs_whatever_happened_upstream() {
    let p = Pipeline::builder("p")
        .step("a", fail("boom"))
        .step("b", ok())
        .after(["a"])
        .step("notify", ok())
        .after(["a", "b"])
        .rule(TriggerRule::Always)
        .build()
        .unwrap();
    let r = p.run(Context::new()).await.unwrap();
    assert_eq!(r.status_of("b"), Some(StepStatus::Skipped));
    assert_eq!(r.status_of("notify"), Some(StepStatus::Succeeded));
}

#[tokio::test]
async fn conditional_branches_join_with_none_failed() {
    let build = |env: &str| {
        let p = Pipeline::builder("p")
            .step("test", ok())
            .step("canary", ok())
            .after(["test"])
            .when(Condition::var_equals("env", "production"))
            .step("rolling", ok())
            .after(["test"])
            .when(Condition::var_not_equals("env", "production"))
            .step("verify", ok())
            .after(["canary", "rolling"])
            .rule(TriggerRule::NoneFailed)
            .build()
            .unwrap();
        (p, Context::new().var("env", env))
    };
    let (p, ctx) = build("production");
    let r = p.run(ctx).await.unwrap();
    assert_eq!(r.status_of("canary"), Some(StepStatus::Succeeded));
    assert_eq!(r.status_of("rolling"), Some(StepStatus::Skipped));
    assert_eq!(reason(&r, "rolling"), "condition false: env != production");
    assert_eq!(r.status_of("verify"), Some(StepStatus::Succeeded));

    let (p, ctx) = build("staging");
    let r = p.run(ctx).await.unwrap();
    assert_eq!(r.status_of("canary"), Some(StepStatus::Skipped));
    assert_eq!(r.status_of("verify"), Some(StepStatus::Succeeded));
    assert_eq!(r.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn none_failed_skips_after_a_failure() {
    let p = Pipeline::builder("p")
        .step("a", fail("x"))
        .step("join", ok())
        .after(["a"])
        .rule(TriggerRule::NoneFailed)
        .build()
        .unwrap();
    let r = p.run(Context::new()).await.unwrap();
    assert_eq!(reason(&r, "join"), "upstream `a` failed");
}

#[tokio::test]
async fn allow_failure_keeps_the_run_green_and_the_path_open_and_still_runs_its_failure_handler() {
    let p = Pipeline::builder("p")
        .step("lint", fail("style"))
        .allow_failure()
        .step("deploy", ok())
        .after(["lint"])
        .step("on-lint-failure", ok())
        .after(["lint"])
        .rule(TriggerRule::OnFailure)
        .build()
        .unwrap();
    let r = p.run(Context::new()).await.unwrap();
    assert_eq!(r.status, RunStatus::Succeeded);
    let lint = r.step("lint").unwrap();
    assert_eq!(lint.status, StepStatus::Failed);
    assert!(lint.allowed_failure);
    assert_eq!(r.status_of("deploy"), Some(StepStatus::Succeeded));
    // The failure is allowed, but it happened: the step's failure handler runs.
    assert_eq!(r.status_of("on-lint-failure"), Some(StepStatus::Succeeded), "{r}");
}

const DIGEST: OutputKey<String> = OutputKey::new("digest");
const REPLICAS: OutputKey<u32> = OutputKey::new("replicas");

#[tokio::test]
async fn typed_outputs_flow_downstream_and_mistakes_are_typed_errors() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    let p = Pipeline::builder("p")
        .step(
            "build",
            step_fn(|ctx| async move {
                ctx.publish(DIGEST, "sha256:abc".to_owned());
                ctx.set_var("tag", "v1.2.3");
                Ok(())
            }),
        )
        .step(
            "deploy",
            step_fn(move |ctx| {
                let seen = Arc::clone(&seen2);
                async move {
                    let digest = ctx.output("build", DIGEST)?;
                    let tag = ctx.require_var("build.tag")?;
                    let missing = ctx.output("build", REPLICAS).unwrap_err();
                    let wrong_type = ctx.output("build", OutputKey::<u64>::new("digest")).unwrap_err();
                    let unknown = ctx.output("nope", DIGEST).unwrap_err();
                    seen.lock().unwrap().extend([digest.to_string(), tag]);
                    assert_eq!(missing, ContextError::MissingOutput { step: "build".into(), key: "replicas".into() });
                    assert!(matches!(wrong_type, ContextError::OutputType { expected: "u64", .. }), "{wrong_type}");
                    assert_eq!(unknown.to_string(), "no step named `nope`");
                    Ok(())
                }
            }),
        )
        .after(["build"])
        .build()
        .unwrap();
    let r = p.run(Context::new()).await.unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{r}");
    assert_eq!(*seen.lock().unwrap(), ["sha256:abc", "v1.2.3"]);
    assert_eq!(r.step("build").unwrap().outputs, [("digest".to_owned(), "\"sha256:abc\"".to_owned())]);
}

#[tokio::test]
async fn a_missing_output_fails_the_step_with_a_message_not_a_panic() {
    let p = Pipeline::builder("p")
        .step(
            "deploy",
            step_fn(|ctx| async move {
                ctx.output("deploy", DIGEST)?;
                Ok(())
            }),
        )
        .build()
        .unwrap();
    let r = p.run(Context::new()).await.unwrap();
    assert_eq!(reason(&r, "deploy"), "step `deploy` has no output `digest`");
}

#[tokio::test]
async fn independent_steps_run_concurrently() {
    // Both steps wait for each other through a barrier: only a concurrent executor finishes.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let step = |b: Arc<tokio::sync::Barrier>| {
        step_fn(move |_| {
            let b = Arc::clone(&b);
            async move {
                b.wait().await;
                Ok(())
            }
        })
    };
    let p = Pipeline::builder("p")
        .step("api", step(Arc::clone(&barrier)))
        .step("web", step(Arc::clone(&barrier)))
        .build()
        .unwrap();
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), p.run(Context::new())).await.unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn every_subscriber_sees_the_same_events_in_order() {
    let p = Pipeline::builder("p")
        .step(
            "a",
            step_fn(|ctx| async move {
                ctx.log("one");
                ctx.log("two");
                Ok(())
            }),
        )
        .step("b", fail("no"))
        .after(["a"])
        .build()
        .unwrap();
    let run = Run::new(&p, Context::new());
    let (s1, s2) = (run.subscribe(), run.subscribe());
    let report = run.execute().await.unwrap();
    let (e1, e2): (Vec<Event>, Vec<Event>) = (s1.collect().await, s2.collect().await);
    assert_eq!(e1, e2);
    let kinds: Vec<String> = e1
        .iter()
        .map(|e| match e {
            Event::RunStarted { .. } => "run-started".to_owned(),
            Event::StepStarted { step, .. } => format!("start {step}"),
            Event::Log { step, line, .. } => format!("log {step} {line}"),
            Event::StepFinished { step, status, .. } => format!("end {step} {status}"),
            Event::RunFinished { status, .. } => format!("run-finished {status}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "run-started",
            "start a",
            "log a one",
            "log a two",
            "end a succeeded",
            "start b",
            "end b failed",
            "run-finished failed"
        ]
    );
    assert_eq!(report.status, RunStatus::Failed);
}
