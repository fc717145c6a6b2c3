//! Cancellation, grace periods, timeouts and retries.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use gantry_core::{
    CommandStep, Context, Event, LogStream, Pipeline, RetryPolicy, Run, RunStatus, StepError, StepStatus, TriggerRule,
    step_fn,
};
use support::{TempDir, cancel_after, process_gone, read_pid};

/// A script that starts a grandchild, records both pids, says "started" and waits.
fn sleeper(dir: &str) -> CommandStep {
    CommandStep::new("sh")
        .args(["-c", "sleep 300 & echo $! > {{dir}}/child.pid; echo $$ > {{dir}}/parent.pid; echo started; wait"])
        .kill_grace(Duration::from_secs(2))
        .env("UNUSED", dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_mid_run_kills_the_process_group_skips_the_rest_and_runs_always_steps() {
    let tmp = TempDir::new("cancel");
    let cleanup_saw_cancel = Arc::new(AtomicBool::new(true));
    let saw = Arc::clone(&cleanup_saw_cancel);
    let p = Pipeline::builder("deploy")
        .step("rollout", sleeper(&tmp.display()))
        .step("smoke", step_fn(|_| async { Ok(()) }))
        .after(["rollout"])
        .step(
            "cleanup",
            step_fn(move |ctx| {
                let saw = Arc::clone(&saw);
                async move {
                    saw.store(ctx.is_cancelled(), Ordering::SeqCst);
                    ctx.log("cleaning up");
                    Ok(())
                }
            }),
        )
        .after(["smoke"])
        .rule(TriggerRule::Always)
        .build()
        .unwrap();
    let run = Run::new(&p, Context::new().var("dir", tmp.display())).grace_period(Duration::from_secs(5));
    let token = run.cancellation_token();
    let mut events = run.subscribe();
    let handle = tokio::spawn(run.execute());
    // Cancel once the command has really started.
    while let Some(event) = events.next().await {
        if let Event::Log { line, stream: LogStream::Stdout, .. } = &event
            && &**line == "started"
        {
            token.cancel();
            break;
        }
    }
    let report = tokio::time::timeout(Duration::from_secs(20), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Cancelled, "{report}");
    assert_eq!(report.status_of("rollout"), Some(StepStatus::Cancelled));
    assert_eq!(report.step("smoke").unwrap().reason.as_deref(), Some("run cancelled"));
    assert_eq!(report.status_of("cleanup"), Some(StepStatus::Succeeded));
    assert!(!cleanup_saw_cancel.load(Ordering::SeqCst), "always steps after a cancellation get a live token");
    let parent = read_pid(&tmp.path().join("parent.pid")).await;
    let child = read_pid(&tmp.path().join("child.pid")).await;
    assert!(process_gone(parent).await, "the command itself was killed");
    assert!(process_gone(child).await, "its background child, in the same process group, was killed too");
}

#[tokio::test(start_paused = true)]
async fn a_step_that_ignores_cancellation_is_dropped_after_the_grace_period() {
    let p = Pipeline::builder("p")
        .step(
            "stubborn",
            step_fn(|_| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }),
        )
        .step("finally", step_fn(|_| async { Ok(()) }))
        .after(["stubborn"])
        .rule(TriggerRule::Always)
        .build()
        .unwrap();
    let run = Run::new(&p, Context::new()).grace_period(Duration::from_secs(10));
    let (report, waited) = cancel_after(run, Duration::from_secs(1)).await;
    assert!(waited >= Duration::from_secs(11) && waited < Duration::from_secs(12), "waited {waited:?}");
    let stubborn = report.step("stubborn").unwrap();
    assert_eq!(stubborn.status, StepStatus::Cancelled);
    assert!(stubborn.reason.as_deref().unwrap().contains("grace period"));
    assert_eq!(report.status_of("finally"), Some(StepStatus::Succeeded));
}

#[tokio::test(start_paused = true)]
async fn a_cooperative_step_stops_at_once_without_waiting_for_the_grace_period() {
    let p = Pipeline::builder("p")
        .step(
            "polite",
            step_fn(|ctx| async move {
                ctx.cancellation().cancelled().await;
                Err(StepError::cancelled())
            }),
        )
        .build()
        .unwrap();
    let run = Run::new(&p, Context::new()).grace_period(Duration::from_secs(600));
    let (report, waited) = cancel_after(run, Duration::from_secs(1)).await;
    assert!(waited < Duration::from_secs(2));
    assert_eq!(report.status_of("polite"), Some(StepStatus::Cancelled));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_fails_the_step_and_is_not_retried() {
    let p = Pipeline::builder("p")
        .step(
            "slow",
            step_fn(|_| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            }),
        )
        .timeout(Duration::from_millis(1500))
        .retry(RetryPolicy::fixed(3, Duration::from_secs(1)))
        .build()
        .unwrap();
    let report = p.run(Context::new()).await.unwrap();
    let slow = report.step("slow").unwrap();
    assert_eq!(slow.status, StepStatus::Failed);
    assert_eq!(slow.reason.as_deref(), Some("timed out after 1.5s"));
    assert_eq!(slow.attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_its_timeout_has_its_process_group_killed() {
    let tmp = TempDir::new("timeout");
    let p = Pipeline::builder("p")
        .step("hang", sleeper(&tmp.display()))
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let report = p.run(Context::new().var("dir", tmp.display())).await.unwrap();
    assert_eq!(report.step("hang").unwrap().reason.as_deref(), Some("timed out after 1.5s"));
    let parent = read_pid(&tmp.path().join("parent.pid")).await;
    let child = read_pid(&tmp.path().join("child.pid")).await;
    assert!(process_gone(parent).await);
    assert!(process_gone(child).await);
}

#[tokio::test(start_paused = true)]
async fn retryable_errors_are_retried_with_exponential_backoff() {
    let p = Pipeline::builder("p")
        .step(
            "push",
            step_fn(|ctx| async move {
                if ctx.attempt() < 3 {
                    Err(StepError::new(format!("registry busy ({})", ctx.attempt())).retryable())
                } else {
                    Ok(())
                }
            }),
        )
        .retry(RetryPolicy::exponential(5, Duration::from_millis(100)))
        .build()
        .unwrap();
    let (report, events) = support::run_collecting(&p, Context::new()).await;
    let retries: Vec<(u32, Duration, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::StepRetrying { attempt, delay, error, .. } => Some((*attempt, *delay, error.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries,
        [
            (1, Duration::from_millis(100), "registry busy (1)".to_owned()),
            (2, Duration::from_millis(200), "registry busy (2)".to_owned())
        ]
    );
    let starts = events.iter().filter(|e| matches!(e, Event::StepStarted { .. })).count();
    assert_eq!(starts, 3);
    let push = report.step("push").unwrap();
    assert_eq!((push.status, push.attempts), (StepStatus::Succeeded, 3));
}

#[tokio::test(start_paused = true)]
async fn errors_not_marked_retryable_are_not_retried_and_retries_run_out() {
    let p = Pipeline::builder("p")
        .step("fatal", step_fn(|_| async { Err(StepError::new("bad manifest")) }))
        .retry(RetryPolicy::fixed(3, Duration::from_millis(10)))
        .step("flaky", step_fn(|_| async { Err(StepError::new("still down").retryable()) }))
        .retry(RetryPolicy::fixed(2, Duration::from_millis(10)))
        .build()
        .unwrap();
    let report = p.run(Context::new()).await.unwrap();
    assert_eq!(report.step("fatal").unwrap().attempts, 1);
    let flaky = report.step("flaky").unwrap();
    assert_eq!((flaky.status, flaky.attempts), (StepStatus::Failed, 3));
}

#[tokio::test(start_paused = true)]
async fn cancelling_during_a_backoff_ends_the_step_as_cancelled() {
    let p = Pipeline::builder("p")
        .step("flaky", step_fn(|_| async { Err(StepError::new("down").retryable()) }))
        .retry(RetryPolicy::fixed(5, Duration::from_secs(60)))
        .build()
        .unwrap();
    let (report, _) = cancel_after(Run::new(&p, Context::new()), Duration::from_secs(1)).await;
    assert_eq!(report.status_of("flaky"), Some(StepStatus::Cancelled));
    assert_eq!(report.status, RunStatus::Cancelled);
}

#[tokio::test]
async fn a_panicking_step_fails_alone_and_the_failure_path_still_runs() {
    let p = Pipeline::builder("p")
        .step("buggy", step_fn(|_| async { panic!("index out of bounds in custom step") }))
        .step("rollback", step_fn(|_| async { Ok(()) }))
        .after(["buggy"])
        .rule(TriggerRule::OnFailure)
        .build()
        .unwrap();
    let report = p.run(Context::new()).await.unwrap();
    let buggy = report.step("buggy").unwrap();
    assert_eq!(buggy.status, StepStatus::Failed);
    assert_eq!(buggy.reason.as_deref(), Some("step panicked: index out of bounds in custom step"));
    assert_eq!(report.status_of("rollback"), Some(StepStatus::Succeeded));
    assert_eq!(report.status, RunStatus::Failed);
}

#[tokio::test]
async fn event_streams_end_when_a_run_cannot_start_or_is_dropped() {
    let p = Pipeline::builder("p").step("cmd", CommandStep::new("echo").arg("{{missing}}")).build().unwrap();
    let run = Run::new(&p, Context::new());
    let events = run.subscribe();
    assert!(run.execute().await.is_err());
    let events: Vec<Event> = tokio::time::timeout(Duration::from_secs(5), events.collect()).await.unwrap();
    assert!(events.is_empty(), "{events:?}");

    let slow = Pipeline::builder("p")
        .step(
            "wait",
            step_fn(|_| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }),
        )
        .build()
        .unwrap();
    let run = Run::new(&slow, Context::new());
    let events = run.subscribe();
    assert!(tokio::time::timeout(Duration::from_millis(50), run.execute()).await.is_err(), "the run is dropped");
    let events: Vec<Event> = tokio::time::timeout(Duration::from_secs(5), events.collect()).await.unwrap();
    assert!(matches!(events.first(), Some(Event::RunStarted { .. })), "{events:?}");
}

#[tokio::test]
async fn a_step_that_says_cancelled_without_a_cancellation_has_failed() {
    let p =
        Pipeline::builder("p").step("confused", step_fn(|_| async { Err(StepError::cancelled()) })).build().unwrap();
    let report = p.run(Context::new()).await.unwrap();
    assert_eq!(report.status_of("confused"), Some(StepStatus::Failed));
    assert_eq!(report.status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_blocks_its_thread_past_its_timeout_is_reported_as_timed_out() {
    let p = Pipeline::builder("p")
        // Waits on a timer; its poll comes late because the blocker holds the thread, which is not its doing.
        .step(
            "waits",
            step_fn(|_| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(())
            }),
        )
        .timeout(Duration::from_millis(200))
        .step(
            "blocks",
            step_fn(|_| async {
                std::thread::sleep(Duration::from_millis(600));
                Ok(())
            }),
        )
        .timeout(Duration::from_millis(200))
        .step("after", step_fn(|_| async { Ok(()) }))
        .after(["blocks"])
        .build()
        .unwrap();
    let report = p.run(Context::new()).await.unwrap();
    assert_eq!(report.status, RunStatus::Failed, "{report}");
    let blocks = report.step("blocks").unwrap();
    assert_eq!(blocks.status, StepStatus::Failed);
    let reason = blocks.reason.as_deref().unwrap();
    assert!(reason.starts_with("timed out after 200ms: the attempt held its thread without yielding"), "{reason}");
    assert!(reason.contains("finished late; its result was discarded"), "{reason}");
    assert!(reason.contains("spawn_blocking"), "{reason}");
    assert_eq!(report.status_of("after"), Some(StepStatus::Skipped));
    assert_eq!(report.status_of("waits"), Some(StepStatus::Succeeded), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_blocks_then_awaits_is_stopped_at_its_first_yield_past_the_deadline() {
    let reached = Arc::new(AtomicBool::new(false));
    let after_block = Arc::clone(&reached);
    let p = Pipeline::builder("p")
        .step(
            "blocks",
            step_fn(move |_| {
                let after_block = Arc::clone(&after_block);
                async move {
                    std::thread::sleep(Duration::from_millis(400));
                    tokio::task::yield_now().await;
                    after_block.store(true, Ordering::SeqCst);
                    Ok(())
                }
            }),
        )
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let report = p.run(Context::new()).await.unwrap();
    let reason = report.step("blocks").unwrap().reason.as_deref().unwrap().to_owned();
    assert!(reason.contains("was stopped when it yielded"), "{reason}");
    assert!(!reached.load(Ordering::SeqCst), "the attempt was dropped at its first yield");
}

#[tokio::test(start_paused = true)]
async fn time_moved_inside_a_poll_is_an_ordinary_timeout_not_a_blocked_thread() {
    let p = Pipeline::builder("p")
        .step(
            "jumps",
            step_fn(|_| async {
                // Moves the paused clock past the deadline within one poll, in no wall-clock time at all.
                tokio::time::advance(Duration::from_secs(5)).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            }),
        )
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let report = p.run(Context::new()).await.unwrap();
    assert_eq!(report.step("jumps").unwrap().reason.as_deref(), Some("timed out after 1s"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_pipelines_long_poll_is_its_steps_work_not_the_sub_pipeline_blocking() {
    let sub = Pipeline::builder("sub")
        .step(
            "slow-but-done",
            step_fn(|_| async {
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            }),
        )
        .build()
        .unwrap();
    let p = Pipeline::builder("p").pipeline("sub", sub).timeout(Duration::from_millis(100)).build().unwrap();
    let report = p.run(Context::new()).await.unwrap();
    // The step inside has no timeout of its own; the sub-pipeline's poll that ran it is not blamed for blocking.
    assert_eq!(report.status_of("sub"), Some(StepStatus::Succeeded), "{report}");
}
