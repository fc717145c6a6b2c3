//! Manual gates: approval lets the run go on, rejection takes the failure path, no decision times out, and every
//! decision says who, when and how, on multi-thread runtimes with the run spawned as a host runs it.

use std::time::Duration;

use futures::StreamExt;
use gantry_core::{
    Approval, ApprovalError, Approvals, CommandStep, Context, DECISION, Decision, Event, PendingApproval, Phase,
    Pipeline, Run, RunReport, RunStatus, Secret, StepStatus, TriggerRule, step_fn,
};

fn release(approvals: &Approvals, timeout: Option<Duration>) -> Pipeline {
    let gate = Approval::new(approvals, "promote {{service}} {{release}} to production?");
    let gate = match timeout {
        Some(t) => gate.timeout(t),
        None => gate,
    };
    Pipeline::builder("release")
        .step("approve", gate)
        .step("deploy", CommandStep::new("true"))
        .after(["approve"])
        .step(
            "record",
            step_fn(|ctx| async move {
                let decision = ctx.output("approve", DECISION)?;
                ctx.log(format!("decided by {} via {}", decision.by, decision.via));
                Ok(())
            }),
        )
        .after(["approve"])
        .rule(TriggerRule::Always)
        .step("tell-the-team", CommandStep::new("true"))
        .after(["approve"])
        .rule(TriggerRule::OnFailure)
        .build()
        .unwrap()
}

/// Starts the run spawned, and waits until its gate is listed.
async fn started(
    pipeline: &Pipeline,
    approvals: &Approvals,
) -> (tokio::task::JoinHandle<RunReport>, Vec<Event>, PendingApproval) {
    let run = Run::new(pipeline, Context::new().var("service", "web").var("release", "3.1.0"));
    let mut events = run.subscribe();
    let handle = tokio::spawn(async move { run.execute().await.unwrap() });
    let mut seen = Vec::new();
    while let Some(event) = events.next().await {
        let waiting = matches!(event, Event::Phase { phase: Phase::WaitingForApproval, .. });
        seen.push(event);
        if waiting {
            break;
        }
    }
    let gate = approvals.pending().into_iter().next().expect("the gate is listed while it waits");
    (handle, seen, gate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_lets_the_run_go_on_and_records_who_decided() {
    let approvals = Approvals::new();
    let pipeline = release(&approvals, None);
    let (handle, seen, gate) = started(&pipeline, &approvals).await;
    assert_eq!(gate.step, "approve");
    assert_eq!(gate.message, "promote web 3.1.0 to production?");
    assert!(gate.id.ends_with("/approve") && gate.id.starts_with(&gate.run_id), "{}", gate.id);
    assert!(seen.iter().any(|e| matches!(e, Event::Phase { message, .. } if message.contains(&gate.id))));

    approvals.decide(&gate.id, Decision::approve("ana@acme", "web").comment("canary looked fine")).unwrap();
    let report = handle.await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(report.status_of("deploy"), Some(StepStatus::Succeeded));
    assert_eq!(report.status_of("tell-the-team"), Some(StepStatus::Skipped));
    let decision = &report.step("approve").unwrap().outputs;
    assert!(
        decision.iter().any(|(k, v)| k == "decision" && v.contains("ana@acme") && v.contains("\"web\"")),
        "{decision:?}"
    );
    assert!(approvals.pending().is_empty(), "a decided gate is off the list");
    assert_eq!(
        approvals.decide(&gate.id, Decision::approve("bob", "api")),
        Err(ApprovalError::NotWaiting(gate.id.clone())),
        "a gate is decided once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_takes_the_failure_path_and_says_by_whom() {
    let approvals = Approvals::new();
    let pipeline = release(&approvals, None);
    let (handle, _, gate) = started(&pipeline, &approvals).await;
    approvals.decide(&gate.id, Decision::reject("sre-oncall", "slack").comment("error budget spent")).unwrap();
    let report = handle.await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.status_of("deploy"), Some(StepStatus::Skipped), "nothing deployed");
    assert_eq!(report.status_of("tell-the-team"), Some(StepStatus::Succeeded), "the failure path ran");
    assert_eq!(report.status_of("record"), Some(StepStatus::Succeeded), "the decision is there to read");
    let reason = report.step("approve").and_then(|s| s.reason.as_deref()).unwrap_or_default();
    assert_eq!(reason, "`promote web 3.1.0 to production?` rejected by sre-oncall via slack: error budget spent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_decision_in_time_fails_the_gate_and_takes_it_off_the_list() {
    let approvals = Approvals::new();
    let pipeline = release(&approvals, Some(Duration::from_millis(300)));
    let (handle, _, gate) = started(&pipeline, &approvals).await;
    let report = handle.await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let reason = report.step("approve").and_then(|s| s.reason.as_deref()).unwrap_or_default();
    assert_eq!(reason, "no decision within 300ms on `promote web 3.1.0 to production?`");
    assert_eq!(report.status_of("tell-the-team"), Some(StepStatus::Succeeded));
    assert!(approvals.pending().is_empty());
    assert!(approvals.decide(&gate.id, Decision::approve("late", "web")).is_err(), "too late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_takes_its_gate_off_the_list() {
    let approvals = Approvals::new();
    let pipeline = release(&approvals, None);
    let run = Run::new(&pipeline, Context::new().var("service", "web").var("release", "1"));
    let cancel = run.cancellation_token();
    let handle = tokio::spawn(async move { run.execute().await.unwrap() });
    while approvals.pending().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cancel.cancel();
    let report = handle.await.unwrap();
    assert_eq!(report.status, RunStatus::Cancelled);
    assert!(approvals.pending().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_of_a_fan_out_are_told_apart_and_decided_one_by_one() {
    let approvals = Approvals::new();
    let gates = approvals.clone();
    let pipeline = Pipeline::builder("release")
        .fan_out("deploy", "service", ["api", "web"], move |_| {
            Pipeline::builder("service").step("approve", Approval::new(&gates, "ship {{service}}?"))
        })
        .build()
        .unwrap();
    let handle = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.run(Context::new()).await.unwrap() }
    });
    let pending = loop {
        let pending = approvals.pending();
        if pending.len() == 2 {
            break pending;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut steps: Vec<&str> = pending.iter().map(|p| p.step.as_str()).collect();
    steps.sort_unstable();
    assert_eq!(steps, ["deploy[api]/approve", "deploy[web]/approve"]);
    for gate in &pending {
        let decision =
            if gate.message == "ship api?" { Decision::approve("ana", "web") } else { Decision::reject("bob", "web") };
        approvals.decide(&gate.id, decision).unwrap();
    }
    let report = handle.await.unwrap();
    assert_eq!(report.status_of("deploy[api]/approve"), Some(StepStatus::Succeeded));
    assert_eq!(report.status_of("deploy[web]/approve"), Some(StepStatus::Failed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_the_question_is_masked_where_approvers_see_it() {
    let approvals = Approvals::new();
    let pipeline = Pipeline::builder("p")
        .step("approve", Approval::new(&approvals, "use token {{secrets.token}}?").timeout(Duration::from_secs(5)))
        .build()
        .unwrap();
    let run = Run::new(&pipeline, Context::new().secret("token", Secret::new("tok-8c1f2e")));
    let handle = tokio::spawn(async move { run.execute().await.unwrap() });
    while approvals.pending().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let gate = approvals.pending().remove(0);
    assert!(!gate.message.contains("tok-8c1f2e") && !format!("{gate:?}").contains("tok-8c1f2e"), "{gate:?}");
    approvals.decide(&gate.id, Decision::approve("ana", "api")).unwrap();
    assert_eq!(handle.await.unwrap().status, RunStatus::Succeeded);
}
