//! Gantry's quickstart: a release of two services, run on this machine.
//!
//! `cargo run --example quickstart`
//!
//! The pipeline checks out the code, then fans out over two services (`api` and `web`). Each service builds with a
//! real command, pushes to a registry that fails once and recovers on retry, and goes through either the canary or
//! the rolling branch depending on the environment (staging here, so the canary branch is skipped); a join verifies
//! it. A notification step runs at the end whatever happened. A live view follows the run's events; the final
//! report closes the run.
#![allow(clippy::print_stdout)] // An example prints.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use gantry::prelude::*;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

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
    .describe("pushes the image to the registry")
}

fn pause(ms: u64, what: &'static str) -> impl Step {
    step_fn(move |ctx| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ctx.log(format!("{what} {}", ctx.var("service").unwrap_or_default()));
        Ok(())
    })
    .describe(what)
}

fn release(failures: Arc<AtomicU32>) -> Result<Pipeline, gantry::core::BuildError> {
    Pipeline::builder("release")
        .step("checkout", CommandStep::new("echo").args(["checked out", "{{repo}}", "at", "{{sha}}"]))
        .fan_out("deploy", "service", ["api", "web"], |_| {
            Pipeline::builder("deploy-service")
                .step(
                    "build",
                    CommandStep::new("sh").args(["-c", "echo building $0; sleep 0.3; echo built $0", "{{service}}"]),
                )
                .step("push", push_step(Arc::clone(&failures)))
                .after(["build"])
                .retry(RetryPolicy::fixed(2, Duration::from_millis(200)))
                .step("canary", pause(200, "canary of"))
                .after(["push"])
                .when(Condition::var_equals("env", "production"))
                .step("rolling", pause(300, "rolled out"))
                .after(["push"])
                .when(Condition::var_not_equals("env", "production"))
                .step("verify", pause(100, "verified"))
                .after(["canary", "rolling"])
                .rule(TriggerRule::NoneFailed)
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

/// Shows the run's events: one line per step with a spinner on a terminal, plain lines elsewhere.
async fn show(mut events: gantry::core::EventStream) {
    let live = std::io::stdout().is_terminal();
    let view = MultiProgress::new();
    let running = ProgressStyle::with_template("{spinner:.cyan} {prefix:<28} {wide_msg}").expect("valid template");
    let done = ProgressStyle::with_template("{prefix:<30} {wide_msg}").expect("valid template");
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    while let Some(event) = events.next().await {
        let line = match &event {
            Event::StepStarted { step, attempt } => {
                let bar = bars.entry(step.to_string()).or_insert_with(|| {
                    let bar =
                        view.add(ProgressBar::new_spinner().with_style(running.clone()).with_prefix(step.to_string()));
                    bar.enable_steady_tick(Duration::from_millis(80));
                    bar
                });
                bar.set_message(if *attempt > 1 { format!("attempt {attempt}") } else { "running".into() });
                format!("{step}: started (attempt {attempt})")
            }
            Event::Log { step, line, .. } => {
                if let Some(bar) = bars.get(&**step) {
                    bar.set_message(line.to_string());
                }
                format!("{step}: {line}")
            }
            Event::StepRetrying { step, error, delay, .. } => {
                if let Some(bar) = bars.get(&**step) {
                    bar.set_message(format!("{error}; retrying in {delay:?}"));
                }
                format!("{step}: {error}; retrying in {delay:?}")
            }
            Event::StepFinished { step, status, reason, duration, .. } => {
                let mark = match status {
                    StepStatus::Succeeded => "✔",
                    StepStatus::Failed => "✘",
                    StepStatus::Skipped => "⏭",
                    StepStatus::Cancelled => "■",
                };
                let took = if *status == StepStatus::Skipped { String::new() } else { format!(" in {duration:.2?}") };
                let why = reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                let text = format!("{mark} {status}{took}{why}");
                let bar = bars
                    .remove(&**step)
                    .unwrap_or_else(|| view.add(ProgressBar::new_spinner().with_prefix(step.to_string())));
                bar.set_style(done.clone());
                bar.finish_with_message(text.clone());
                format!("{step}: {text}")
            }
            Event::RunStarted { run_id, pipeline, .. } => format!("run {run_id} of {pipeline} started"),
            Event::RunFinished { status, duration, .. } => format!("run {status} in {duration:.2?}"),
            other => format!("{other:?}"),
        };
        if !live {
            println!("{line}");
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let failures = Arc::new(AtomicU32::new(0));
    let pipeline = release(Arc::clone(&failures))?;
    let context = Context::new().var("repo", "acme/shop").var("sha", "3f9c2e1").var("env", "staging");

    println!("{}", pipeline.plan(&context));
    let run = Run::new(&pipeline, context);
    let view = tokio::spawn(show(run.subscribe()));
    let report = run.execute().await?;
    view.await?;

    println!("\n{report}");
    assert_eq!(report.status, RunStatus::Succeeded, "the release succeeds");
    assert_eq!(failures.load(Ordering::Relaxed), 2, "each push failed once and recovered");
    assert_eq!(report.status_of("deploy[api]/canary"), Some(StepStatus::Skipped), "staging skips the canary branch");
    Ok(())
}
