//! The run history: runs record themselves as they go (followed like a notifier), and the list filters, pages and
//! gives each run's events from any number on.

use std::time::Duration;

use gantry_core::{
    Approval, Approvals, CommandStep, Context, Decision, Event, MemoryHistory, Pipeline, Run, RunHistory, RunQuery,
    RunStatus,
};

fn pipeline(name: &str, fail: bool) -> Pipeline {
    Pipeline::builder(name)
        .step("build", CommandStep::new(if fail { "false" } else { "true" }))
        .step("deploy", CommandStep::new("true"))
        .after(["build"])
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_listed_newest_first_filtered_and_paged() {
    let history = MemoryHistory::new();
    for (name, env, fail) in [
        ("api", "staging", false),
        ("web", "staging", true),
        ("api", "production", false),
        ("web", "production", false),
    ] {
        let context = Context::new().var("environment", env).var("sha", "3f9c2e1");
        Run::new(&pipeline(name, fail), context).notify(history.clone()).execute().await.unwrap();
    }
    let all = history.list(&RunQuery::new()).await;
    assert_eq!(all.total, 4);
    let order: Vec<(&str, &str)> = all.runs.iter().map(|r| (&*r.pipeline, r.vars["environment"].as_str())).collect();
    assert_eq!(order, [("web", "production"), ("api", "production"), ("web", "staging"), ("api", "staging")]);

    let failed = history.list(&RunQuery::new().status(RunStatus::Failed)).await;
    assert_eq!((failed.total, &*failed.runs[0].pipeline), (1, "web"));
    assert_eq!(failed.runs[0].steps, [0, 1, 1, 0], "build failed, deploy skipped");
    let production_api = history.list(&RunQuery::new().pipeline("api").var("environment", "production")).await;
    assert_eq!(production_api.total, 1);
    let second_page = history.list(&RunQuery::new().page(1, 2)).await;
    assert_eq!((second_page.total, second_page.runs.len()), (4, 2));
    assert_eq!(&*second_page.runs[0].pipeline, "api");
    let ok = &all.runs[0];
    assert_eq!((ok.status, ok.steps), (Some(RunStatus::Succeeded), [2, 0, 0, 0]));
    assert!(ok.duration.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_is_listed_as_running_and_its_events_resume_from_a_number() {
    let history = MemoryHistory::new();
    let approvals = Approvals::new();
    let pipeline = Pipeline::builder("release")
        .step("approve", Approval::new(&approvals, "ship?"))
        .step("deploy", CommandStep::new("true"))
        .after(["approve"])
        .build()
        .unwrap();
    let run = Run::new(&pipeline, Context::new()).notify(history.clone());
    let handle = tokio::spawn(async move { run.execute().await.unwrap() });
    let gate = loop {
        if let Some(gate) = approvals.pending().pop() {
            break gate;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // The notifier reads the events in its own task: wait until it has recorded the run.
    let running = loop {
        if let Some(run) = history.get(&gate.run_id).await {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!((running.status, running.duration), (None, None), "still running");
    approvals.decide(&gate.id, Decision::approve("ana", "api")).unwrap();
    handle.await.unwrap();

    let events = history.events(&gate.run_id, 0).await.unwrap();
    assert!(matches!(events.first().map(|e| &e.event), Some(Event::RunStarted { .. })), "{events:?}");
    assert!(matches!(events.last().map(|e| &e.event), Some(Event::RunFinished { status: RunStatus::Succeeded, .. })));
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at), "recorded in order, each with its time");
    let plan = history.plan(&gate.run_id).await.expect("the history keeps the run's plan");
    assert_eq!(plan.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["approve", "deploy"]);
    assert_eq!(plan.step("deploy").unwrap().after, ["approve"]);
    let resumed = history.events(&gate.run_id, 3).await.unwrap();
    assert_eq!(resumed, events[3..], "a viewer that saw three events gets the rest");
    assert_eq!(history.events(&gate.run_id, events.len() + 5).await, Some(Vec::new()));
    assert_eq!(history.events("no-such-run", 0).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_runs_go_when_the_history_is_full() {
    let history = MemoryHistory::with_capacity(2, 3);
    for n in 0..3 {
        Run::new(&pipeline("p", false), Context::new().var("n", n.to_string()))
            .notify(history.clone())
            .execute()
            .await
            .unwrap();
    }
    let page = history.list(&RunQuery::new()).await;
    let kept: Vec<&str> = page.runs.iter().map(|r| r.vars["n"].as_str()).collect();
    assert_eq!(kept, ["2", "1"]);
    let events = history.events(&page.runs[0].run_id, 0).await.unwrap();
    assert_eq!(events.len(), 6, "a run's structure is kept whatever the cap: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_log_lines_are_dropped_and_the_run_keeps_its_steps_and_its_end() {
    let history = MemoryHistory::with_capacity(10, 8);
    let chatty = Pipeline::builder("chatty")
        .step("talk", CommandStep::new("sh").args(["-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; done"]))
        .step("deploy", CommandStep::new("true"))
        .after(["talk"])
        .build()
        .unwrap();
    Run::new(&chatty, Context::new()).notify(history.clone()).execute().await.unwrap();
    let run = history.list(&RunQuery::new()).await.runs.remove(0);
    let events: Vec<Event> = history.events(&run.run_id, 0).await.unwrap().into_iter().map(|e| e.event).collect();
    let logs = events.iter().filter(|e| matches!(e, Event::Log { .. })).count();
    assert!(logs < 10, "the lines past the cap are dropped: {logs}");
    let finished = events.iter().filter(|e| matches!(e, Event::StepFinished { .. })).count();
    assert_eq!(finished, 2, "{events:?}");
    assert!(matches!(events.last(), Some(Event::RunFinished { status: RunStatus::Succeeded, .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_future_is_dropped_is_recorded_as_cancelled() {
    let history = MemoryHistory::new();
    let approvals = Approvals::new();
    let pipeline = Pipeline::builder("release").step("approve", Approval::new(&approvals, "ship?")).build().unwrap();
    let run = Run::new(&pipeline, Context::new()).notify(history.clone());
    let id = run.id().to_owned();
    let handle = tokio::spawn(run.execute());
    while approvals.pending().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.abort();
    let _ = handle.await;
    let mut status = None;
    for _ in 0..200 {
        status = history.get(&id).await.and_then(|r| r.status);
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, Some(RunStatus::Cancelled), "viewers are not left waiting for an end that never comes");
    let last = history.events(&id, 0).await.unwrap().pop().map(|e| e.event);
    assert!(matches!(last, Some(Event::RunFinished { status: RunStatus::Cancelled, .. })), "{last:?}");
}
