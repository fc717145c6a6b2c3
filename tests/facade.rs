//! The facade: what `gantry::prelude` gives a host application is enough to write and run a pipeline with a custom
//! step, a failure path and secrets, as the README shows.

use std::time::Duration;

use futures::StreamExt;
use gantry::prelude::*;

struct Migrate;

#[async_trait]
impl Step for Migrate {
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let db = ctx.secret("db_url")?;
        ctx.log(format!("migrating {} with {}", ctx.require_var("service")?, db.expose()));
        Err(StepError::new("schema lock held"))
    }
}

#[tokio::test]
async fn the_readme_pipeline_runs_its_failure_path_and_keeps_the_secret() {
    let pipeline = Pipeline::builder("release")
        .step("migrate", Migrate)
        .step("deploy", CommandStep::new("echo").args(["deploying", "{{service}}"]))
        .after(["migrate"])
        .timeout(Duration::from_secs(600))
        .step("rollback", CommandStep::new("echo").args(["rolling back", "{{service}}"]))
        .after(["migrate", "deploy"])
        .rule(TriggerRule::OnFailure)
        .build()
        .unwrap();
    let context = Context::new().var("service", "api").secret("db_url", Secret::new("postgres://u:hunter2@db"));
    let run = Run::new(&pipeline, context);
    let events = run.subscribe();
    let report = run.execute().await.unwrap();
    let events: Vec<Event> = events.collect().await;

    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.status_of("deploy"), Some(StepStatus::Skipped));
    assert_eq!(report.status_of("rollback"), Some(StepStatus::Succeeded));
    let shown = format!("{events:?}{report}");
    assert!(shown.contains("migrating api with ********"), "{shown}");
    assert!(!shown.contains("hunter2"));
}
