// tests/promote.rs
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gantry::core::{RunError, TemplateError};
use gantry::prelude::*;
use my_deploy::promote::{IMAGE_DIGEST, PROMOTED_TAG, Promote, Registry, RegistryError};

/// A registry whose answers the test scripts; it records the calls it gets.
#[derive(Default)]
struct FakeRegistry {
    answers: Mutex<VecDeque<Result<(), RegistryError>>>,
    calls: Mutex<Vec<(String, String)>>,
    hang: bool,
}

#[async_trait]
impl Registry for FakeRegistry {
    async fn tag(&self, digest: &str, tag: &str, _token: &str) -> Result<(), RegistryError> {
        self.calls.lock().unwrap().push((digest.to_owned(), tag.to_owned()));
        if self.hang {
            std::future::pending::<()>().await;
        }
        self.answers.lock().unwrap().pop_front().unwrap_or(Ok(()))
    }
}

/// The step under test, after a stub that publishes the output it reads.
fn pipeline(registry: Arc<FakeRegistry>) -> Pipeline {
    Pipeline::builder("test")
        .step(
            "build",
            step_fn(|ctx| async move {
                ctx.publish(IMAGE_DIGEST, "sha256:abc".to_owned());
                Ok(())
            }),
        )
        .step("promote", Promote::new("build", "{{service}}-{{env}}", registry).unwrap())
        .after(["build"])
        .retry(RetryPolicy::fixed(2, Duration::from_millis(10)))
        .build()
        .unwrap()
}

fn context() -> Context {
    Context::new().var("service", "api").var("env", "staging").secret("registry_token", Secret::new("t0k3n"))
}

#[tokio::test]
async fn retries_a_busy_registry_then_publishes_the_tag() {
    let registry = Arc::new(FakeRegistry::default());
    registry.answers.lock().unwrap().push_back(Err(RegistryError { status: 503 }));
    let run = Run::new(&pipeline(Arc::clone(&registry)), context());
    let events = run.subscribe();
    let report = run.execute().await.unwrap();
    let events: Vec<Event> = events.collect().await;

    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let promote = report.step("promote").unwrap();
    assert_eq!((promote.status, promote.attempts), (StepStatus::Succeeded, 2));
    assert_eq!(promote.outputs, [(PROMOTED_TAG.name().to_owned(), "\"api-staging\"".to_owned())]);
    assert_eq!(registry.calls.lock().unwrap().len(), 2);

    let retried = events.iter().any(|e| {
        matches!(e, Event::StepRetrying { step, error, .. }
            if &**step == "promote" && &**error == "could not tag api-staging: registry answered 503")
    });
    assert!(retried, "{events:?}");
    let logs: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Log { step, line, .. } if &**step == "promote" => Some(line.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        logs,
        ["tagging sha256:abc as api-staging (attempt 1)", "tagging sha256:abc as api-staging (attempt 2)"]
    );
    assert!(!format!("{events:?}{report}").contains("t0k3n"));
}

#[tokio::test]
async fn a_client_error_fails_without_a_retry() {
    let registry = Arc::new(FakeRegistry::default());
    registry.answers.lock().unwrap().push_back(Err(RegistryError { status: 404 }));
    let report = pipeline(registry).run(context()).await.unwrap();
    let promote = report.step("promote").unwrap();
    assert_eq!((promote.status, promote.attempts), (StepStatus::Failed, 1));
    assert_eq!(promote.reason.as_deref(), Some("could not tag api-staging: registry answered 404"));
    assert_eq!(report.status, RunStatus::Failed);
}

#[tokio::test]
async fn stops_at_once_when_the_run_is_cancelled() {
    let registry = Arc::new(FakeRegistry { hang: true, ..FakeRegistry::default() });
    let run = Run::new(&pipeline(registry), context()).grace_period(Duration::from_secs(30));
    let token = run.cancellation_token();
    let mut events = run.subscribe();
    let started = Instant::now();
    let handle = tokio::spawn(run.execute());
    while let Some(event) = events.next().await {
        if matches!(&event, Event::StepStarted { step, .. } if &**step == "promote") {
            token.cancel();
            break;
        }
    }
    drop(events);
    let report = handle.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "it did not wait for the grace period");
    assert_eq!(report.status, RunStatus::Cancelled);
    assert_eq!(report.status_of("promote"), Some(StepStatus::Cancelled));
}

#[tokio::test]
async fn missing_variables_and_secrets_stop_the_run_before_it_starts() {
    let err = pipeline(Arc::new(FakeRegistry::default())).run(Context::new().var("service", "api")).await.unwrap_err();
    let RunError::Templates { problems, .. } = &err else { panic!("{err}") };
    let missing: Vec<&str> = problems
        .iter()
        .filter_map(|p| match &p.error {
            TemplateError::UnknownVariable { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(missing, ["env", "secrets.registry_token"]);
}

#[test]
fn the_plan_shows_what_the_step_would_do() {
    let plan = pipeline(Arc::new(FakeRegistry::default())).plan(&context());
    assert_eq!(plan.step("promote").unwrap().description, "tags the output of `build` as api-staging");
}
