//! Stepping through a pipeline from a terminal.
//!
//! `cargo run --example debug`
//!
//! Prints the plan (a dry run) and the graph as Mermaid, then runs the pipeline paused before every step:
//! `n` runs to the next step, `c` continues to the end (pausing again on a failure), `p` prints the context the
//! step will see (variables, upstream outputs), `q` cancels the run. At the end of input it continues.
#![allow(clippy::print_stdout)] // An example prints.

use std::time::Duration;

use gantry::core::{OutputKey, PauseReason, Resume};
use gantry::prelude::*;
use gantry::term::TerminalView;
use tokio::io::{AsyncBufReadExt, BufReader};

const IMAGE: OutputKey<String> = OutputKey::new("image");

fn pipeline() -> Result<Pipeline, gantry::core::BuildError> {
    Pipeline::builder("debug-me")
        .step(
            "build",
            step_fn(|ctx| async move {
                let image = format!("registry.example/{}:{}", ctx.require_var("service")?, ctx.require_var("sha")?);
                ctx.publish(IMAGE, image.clone());
                ctx.set_var("tag", ctx.require_var("sha")?);
                ctx.log(format!("built {image}"));
                Ok(())
            })
            .describe("builds the image"),
        )
        .step("migrate", CommandStep::new("sh").args(["-c", "echo migrating $0 schema; exit 3", "{{service}}"]))
        .after(["build"])
        .step(
            "deploy",
            step_fn(|ctx| async move {
                let image = ctx.output("build", IMAGE)?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                ctx.log(format!("deployed {image}"));
                Ok(())
            })
            .describe("deploys the image"),
        )
        .after(["migrate"])
        .step("rollback", CommandStep::new("echo").args(["rolling back", "{{service}}"]))
        .after(["migrate", "deploy"])
        .rule(TriggerRule::OnFailure)
        .step("notify", CommandStep::new("echo").args(["{{service}} release of {{build.tag}} finished"]))
        .after(["deploy", "rollback"])
        .rule(TriggerRule::Always)
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pipeline = pipeline()?;
    let context = Context::new().var("service", "api").var("sha", "3f9c2e1");
    println!("{}", pipeline.plan(&context));
    println!("```mermaid\n{}```\n", pipeline.to_mermaid());

    let (hook, mut debugger) = Debugger::stepping();
    let run = Run::new(&pipeline, context).hook(hook);
    // The run as it goes, between the debugger's prompts: plain lines (spinners would fight the prompts), with the
    // steps' output.
    let view = tokio::spawn(TerminalView::new().plain().details(true).follow(run.subscribe()));
    let cancel = run.cancellation_token();
    let handle = tokio::spawn(run.execute());
    let mut input = BufReader::new(tokio::io::stdin()).lines();
    let mut interactive = true;
    while let Some(pause) = debugger.next_pause().await {
        let when = match pause.reason() {
            PauseReason::Failed(why) => format!("failed: {why}"),
            _ if pause.is_before() => "about to run".to_owned(),
            _ => "finished".to_owned(),
        };
        println!("\n⏸  {} ({when})", pause.step());
        let resume = loop {
            if !interactive {
                break Resume::Continue;
            }
            println!("   [n]ext  [c]ontinue  [p]rint context  [q]uit > ");
            match input.next_line().await?.as_deref().map(str::trim) {
                Some("n" | "") => break Resume::Next,
                Some("c") => break Resume::Continue,
                Some("p") => {
                    for (name, value) in pause.context().vars() {
                        println!("   {name} = {value}");
                    }
                    if let Ok(image) = pause.context().output("build", IMAGE) {
                        println!("   output build.image = {image}");
                    }
                }
                Some("q") => {
                    cancel.cancel();
                    break Resume::Continue;
                }
                Some(other) => println!("   unknown command `{other}`"),
                None => {
                    println!("   (end of input: continuing)");
                    interactive = false;
                    break Resume::Continue;
                }
            }
        };
        pause.resume(resume);
    }
    let report = handle.await??;
    view.await?;
    println!("\nrun {}: {}", report.run_id, report.summary());
    Ok(())
}
