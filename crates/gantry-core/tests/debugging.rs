//! Dry-run plans, graph export, hooks, breakpoints and stepping.

use std::sync::Arc;

use gantry_core::{
    Breakpoint, CommandStep, Condition, Context, Debugger, PauseReason, Pipeline, PlannedStatus, Recorder, Resume, Run,
    RunStatus, StepError, TriggerRule, step_fn,
};

fn ok() -> impl gantry_core::Step {
    step_fn(|_| async { Ok(()) })
}

fn release() -> Pipeline {
    Pipeline::builder("release")
        .step("preflight", CommandStep::new("kubectl").args(["auth", "can-i", "update", "deploy/{{service}}"]))
        .step("canary", ok())
        .after(["preflight"])
        .when(Condition::var_equals("env", "production"))
        .step("rolling", ok())
        .after(["preflight"])
        .when(Condition::var_not_equals("env", "production"))
        .step("verify", ok())
        .after(["canary", "rolling"])
        .rule(TriggerRule::NoneFailed)
        .step("rollback", ok())
        .after(["verify"])
        .rule(TriggerRule::OnFailure)
        .step("after-rollback", ok())
        .after(["rollback"])
        .step("notify", ok())
        .after(["verify", "rollback"])
        .rule(TriggerRule::Always)
        .build()
        .unwrap()
}

#[test]
fn plan_tells_what_runs_what_is_skipped_and_what_depends_on_outcomes() {
    let plan = release().plan(&Context::new().var("service", "api").var("env", "staging"));
    let status = |name: &str| plan.step(name).unwrap().status.clone();
    assert_eq!(status("preflight"), PlannedStatus::Runs);
    assert_eq!(plan.step("preflight").unwrap().description, "runs `kubectl auth can-i update deploy/api`");
    assert_eq!(status("canary"), PlannedStatus::SkippedByCondition("env == production".into()));
    assert_eq!(status("rolling"), PlannedStatus::Runs);
    assert_eq!(status("verify"), PlannedStatus::Runs);
    assert!(matches!(status("rollback"), PlannedStatus::DependsOnOutcome(_)));
    assert!(matches!(status("after-rollback"), PlannedStatus::DependsOnOutcome(_)));
    assert_eq!(status("notify"), PlannedStatus::Runs);
    assert_eq!(plan.step("verify").unwrap().after, ["canary", "rolling"]);
    let text = plan.to_string();
    assert!(text.contains("skipped: condition false: env == production"), "{text}");

    let prod = release().plan(&Context::new().var("service", "api").var("env", "production"));
    assert_eq!(prod.step("rolling").unwrap().status, PlannedStatus::SkippedByCondition("env != production".into()));
}

#[test]
fn plans_reach_into_fan_outs() {
    let p = Pipeline::builder("multi")
        .fan_out("deploy", "service", ["api", "web"], |_| {
            Pipeline::builder("one")
                .step("apply", CommandStep::new("kubectl").args(["apply", "-f", "{{service}}.yaml"]))
        })
        .build()
        .unwrap();
    let plan = p.plan(&Context::new());
    assert_eq!(plan.step("deploy[web]/apply").unwrap().description, "runs `kubectl apply -f web.yaml`");
    assert_eq!(plan.step("deploy").unwrap().description, "fans out over service = [api, web]");
}

#[test]
fn dot_and_mermaid_show_rules_and_conditions_on_edges() {
    let p = release();
    let dot = p.to_dot();
    assert!(dot.starts_with("digraph \"release\" {"), "{dot}");
    assert!(dot.contains("\"preflight\" -> \"canary\" [label=\"when env == production\"];"), "{dot}");
    assert!(dot.contains("\"verify\" -> \"rollback\" [label=\"on_failure\"];"), "{dot}");
    assert!(dot.contains("\"rollback\" -> \"notify\" [label=\"always\"];"), "{dot}");
    assert!(dot.contains("\"rollback\" -> \"after-rollback\";"), "{dot}");
    let mermaid = p.to_mermaid();
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    assert!(mermaid.contains("-.->|\"on_failure\"|"), "{mermaid}");
    assert!(mermaid.contains("-->|\"when env != production\"|"), "{mermaid}");
    assert!(mermaid.contains("[\"notify\"]"), "{mermaid}");
}

#[tokio::test]
async fn hooks_run_around_every_step_in_order() {
    let recorder = Arc::new(Recorder::default());
    let p = Pipeline::builder("p").step("a", ok()).step("b", ok()).after(["a"]).build().unwrap();
    Run::new(&p, Context::new()).hook(Arc::clone(&recorder)).execute().await.unwrap();
    assert_eq!(recorder.entries(), ["start:a", "end:a", "start:b", "end:b"]);
}

#[tokio::test]
async fn a_breakpoint_pauses_before_the_step_with_the_context_open() {
    let p = Pipeline::builder("p")
        .step(
            "build",
            step_fn(|ctx| async move {
                ctx.set_var("tag", "v7");
                Ok(())
            }),
        )
        .step("deploy", ok())
        .after(["build"])
        .build()
        .unwrap();
    let (hook, mut debugger) = Debugger::new([Breakpoint::Step("deploy".into())]);
    let recorder = Arc::new(Recorder::default());
    let run = Run::new(&p, Context::new().var("env", "dev")).hook(hook).hook(Arc::clone(&recorder));
    let handle = tokio::spawn(run.execute());
    let pause = debugger.next_pause().await.unwrap();
    assert_eq!(pause.step(), "deploy");
    assert_eq!(pause.reason(), &PauseReason::Breakpoint);
    assert!(pause.is_before());
    let vars = pause.context().vars();
    assert_eq!(vars.get("build.tag").map(String::as_str), Some("v7"));
    assert_eq!(vars.get("env").map(String::as_str), Some("dev"));
    // While paused, deploy has not started.
    assert_eq!(recorder.entries(), ["start:build", "end:build"]);
    pause.resume(Resume::Continue);
    let report = handle.await.unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert!(debugger.next_pause().await.is_none(), "no more pauses once the run is over");
}

#[tokio::test]
async fn stepping_pauses_at_every_step_and_on_failure() {
    let p = Pipeline::builder("p")
        .step("a", ok())
        .step("b", step_fn(|_| async { Err(StepError::new("broken")) }))
        .after(["a"])
        .step("c", ok())
        .after(["b"])
        .rule(TriggerRule::OnFailure)
        .build()
        .unwrap();
    let (hook, mut debugger) = Debugger::stepping();
    let handle = tokio::spawn(Run::new(&p, Context::new()).hook(hook).execute());
    let mut seen = Vec::new();
    while let Some(pause) = debugger.next_pause().await {
        seen.push((pause.step().to_owned(), pause.reason().clone()));
        pause.resume(Resume::Next);
    }
    assert_eq!(
        seen,
        [
            ("a".to_owned(), PauseReason::Stepping),
            ("b".to_owned(), PauseReason::Stepping),
            ("b".to_owned(), PauseReason::Failed("broken".into())),
            ("c".to_owned(), PauseReason::Stepping)
        ]
    );
    handle.await.unwrap().unwrap();

    let (hook, mut debugger) = Debugger::new([Breakpoint::OnFailure]);
    let handle = tokio::spawn(Run::new(&p, Context::new()).hook(hook).execute());
    let pause = debugger.next_pause().await.unwrap();
    assert_eq!((pause.step(), pause.reason()), ("b", &PauseReason::Failed("broken".into())));
    assert!(!pause.is_before());
    pause.resume(Resume::Continue);
    assert_eq!(handle.await.unwrap().unwrap().status, RunStatus::Failed);
}

struct PanicsInDescribe;

#[gantry_core::async_trait]
impl gantry_core::Step for PanicsInDescribe {
    async fn run(&self, _ctx: &gantry_core::StepContext) -> Result<(), StepError> {
        Ok(())
    }

    fn describe(&self, _ctx: &gantry_core::StepContext) -> String {
        panic!("no description today")
    }
}

#[test]
fn a_panic_in_describe_is_shown_in_the_plan_not_passed_on() {
    let p = Pipeline::builder("p").step("odd", PanicsInDescribe).step("next", ok()).after(["odd"]).build().unwrap();
    let plan = p.plan(&Context::new());
    assert_eq!(plan.step("odd").unwrap().description, "(`describe` panicked: no description today)");
    assert_eq!(plan.step("next").unwrap().status, PlannedStatus::Runs);
}

#[tokio::test]
async fn a_panicking_step_reaches_the_after_step_hook_and_the_on_failure_breakpoint() {
    let p = Pipeline::builder("p")
        .step("boom", step_fn(|_| async { panic!("kaboom") }))
        .step("recover", ok())
        .after(["boom"])
        .rule(TriggerRule::OnFailure)
        .build()
        .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let hook = gantry_core::hook_fn(
        |_| {},
        move |ctx, result| {
            record.lock().unwrap().push((ctx.name().to_owned(), result.as_ref().err().map(|e| e.to_string())));
        },
    );
    let report = Run::new(&p, Context::new()).hook(hook).execute().await.unwrap();
    assert_eq!(report.step("boom").unwrap().reason.as_deref(), Some("step panicked: kaboom"));
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [("boom".to_owned(), Some("step panicked: kaboom".to_owned())), ("recover".to_owned(), None)]
    );

    let (hook, mut debugger) = Debugger::new([Breakpoint::OnFailure]);
    let handle = tokio::spawn(Run::new(&p, Context::new()).hook(hook).execute());
    let pause = tokio::time::timeout(std::time::Duration::from_secs(10), debugger.next_pause()).await.unwrap().unwrap();
    assert_eq!((pause.step(), pause.reason()), ("boom", &PauseReason::Failed("step panicked: kaboom".into())));
    pause.resume(Resume::Continue);
    assert_eq!(handle.await.unwrap().unwrap().status, RunStatus::Failed);
}
