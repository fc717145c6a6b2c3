// src/release.rs
use std::sync::Arc;
use std::time::Duration;

use gantry::prelude::*;

use crate::commands::{notify, set_image};
use crate::promote::{Promote, Registry};
use crate::steps::build;

/// The release pipeline: build, promote (retried, with a timeout), deploy, and a notification whatever happened.
pub fn release(registry: Arc<dyn Registry>) -> Result<Pipeline, Box<dyn std::error::Error>> {
    let pipeline = Pipeline::builder("release")
        .step("build", build())
        .step("promote", Promote::new("build", "{{service}}-{{env}}", registry)?)
        .after(["build"])
        .timeout(Duration::from_secs(120))
        .retry(RetryPolicy::exponential(3, Duration::from_secs(2)))
        .step("deploy", set_image())
        .after(["promote"])
        .step("notify", notify())
        .after(["deploy"])
        .rule(TriggerRule::Always)
        .timeout(Duration::from_secs(30))
        .build()?;
    Ok(pipeline)
}

/// Runs a release of `service` at `sha`.
pub async fn run_release(
    registry: Arc<dyn Registry>,
    service: &str,
    sha: &str,
) -> Result<RunReport, Box<dyn std::error::Error>> {
    let pipeline = release(registry)?;
    let context = Context::new()
        .var("service", service)
        .var("sha", sha)
        .var("env", "staging")
        .var("kubeconfig", "/etc/deploy/kubeconfig")
        .var("workdir", "/srv/deploy")
        .secret("registry_token", Secret::new(std::env::var("REGISTRY_TOKEN")?))
        .secret("slack_token", Secret::new(std::env::var("SLACK_TOKEN")?));
    let run = Run::new(&pipeline, context).grace_period(Duration::from_secs(60));
    Ok(run.execute().await?)
}
