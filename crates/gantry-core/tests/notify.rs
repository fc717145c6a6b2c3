//! Notifiers follow a run beside it: they see every event, never slow or fail it, and what they could not deliver
//! is in the report.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use gantry_core::{Context, Event, EventStream, Notifier, Pipeline, Run, RunInfo, RunStatus, step_fn};

struct Recording {
    seen: Arc<Mutex<Vec<String>>>,
    info: Arc<Mutex<Option<RunInfo>>>,
    per_event: Duration,
    fail_with: Vec<&'static str>,
}

#[async_trait::async_trait]
impl Notifier for Recording {
    fn name(&self) -> &str {
        "recording"
    }

    async fn follow(&self, run: RunInfo, mut events: EventStream) -> Vec<gantry_core::NotifyError> {
        *self.info.lock().unwrap() = Some(run);
        while let Some(event) = events.next().await {
            tokio::time::sleep(self.per_event).await;
            let kind = match event {
                Event::RunStarted { .. } => "run_started".to_owned(),
                Event::StepFinished { step, .. } => format!("finished {step}"),
                Event::RunFinished { status, .. } => format!("run_finished {status}"),
                _ => continue,
            };
            self.seen.lock().unwrap().push(kind);
        }
        self.fail_with.iter().map(|why| gantry_core::NotifyError::unavailable("final", *why)).collect()
    }
}

fn pipeline() -> Pipeline {
    Pipeline::builder("release")
        .step("build", step_fn(|_| async { Ok(()) }))
        .step("deploy", step_fn(|_| async { Err(gantry_core::StepError::new("no capacity")) }))
        .after(["build"])
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_notifier_sees_the_whole_run_and_its_failures_are_reported_not_fatal() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let info = Arc::new(Mutex::new(None));
    let notifier = Recording {
        seen: Arc::clone(&seen),
        info: Arc::clone(&info),
        per_event: Duration::ZERO,
        fail_with: vec!["Slack answered 500"],
    };
    let report = Run::new(&pipeline(), Context::new().var("repo", "acme/shop").var("sha", "abc123"))
        .with_id("run-7")
        .notify(notifier)
        .execute()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(
        *seen.lock().unwrap(),
        ["run_started", "finished build", "finished deploy", "run_finished failed"],
        "the notifier read every event to the end before the report was made"
    );
    assert_eq!(report.undelivered, ["recording: the final message: Slack answered 500"]);
    assert!(report.to_string().contains("notification not delivered: recording: the final message"));
    let info = info.lock().unwrap().clone().unwrap();
    assert_eq!(&*info.run_id, "run-7");
    assert_eq!(
        info.fill("https://github.com/{repo}/commit/{sha}?run={run_id}").unwrap(),
        "https://github.com/acme/shop/commit/abc123?run=run-7"
    );
    assert_eq!(info.fill("https://ci/{nope}"), None, "a link naming an unknown variable is left out");
}

#[tokio::test]
async fn a_slow_notifier_does_not_slow_the_steps_and_is_stopped_after_the_grace() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let notifier = Recording {
        seen: Arc::clone(&seen),
        info: Arc::new(Mutex::new(None)),
        per_event: Duration::from_secs(3600),
        fail_with: Vec::new(),
    };
    let started = std::time::Instant::now();
    let report = Run::new(&pipeline(), Context::new())
        .notify(notifier)
        .notify_grace(Duration::from_millis(50))
        .execute()
        .await
        .unwrap();
    assert!(report.duration < Duration::from_secs(5), "the steps ran at their own pace: {:?}", report.duration);
    assert!(started.elapsed() < Duration::from_secs(30), "execute waited only the grace, not the notifier");
    assert_eq!(report.undelivered.len(), 1);
    assert!(report.undelivered[0].starts_with("recording: still sending"), "{:?}", report.undelivered);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_notifier_sees_variables_with_the_runs_secrets_masked() {
    let info = Arc::new(Mutex::new(None));
    let notifier = Recording {
        seen: Arc::new(Mutex::new(Vec::new())),
        info: Arc::clone(&info),
        per_event: Duration::ZERO,
        fail_with: Vec::new(),
    };
    let context = Context::new()
        .var("callback", "https://hooks.example/deploy?token=tok-9f8e7d6c")
        .secret("hook_token", gantry_core::Secret::new("tok-9f8e7d6c"));
    Run::new(&pipeline(), context).notify(notifier).execute().await.unwrap();
    let info = info.lock().unwrap().clone().unwrap();
    assert_eq!(info.vars["callback"], format!("https://hooks.example/deploy?token={}", gantry_core::MASK));
    let url = info.fill_url("https://x/{callback}").unwrap();
    assert!(url.starts_with("https://x/https%3A//hooks.example/deploy%3Ftoken%3D%2A"), "{url}");
}

#[test]
fn run_info_fills_only_what_it_knows() {
    let info = RunInfo::new("r1", "p", BTreeMap::from([("environment".to_owned(), "prod".to_owned())]));
    assert_eq!(info.fill("{pipeline}/{environment}/{run_id}").unwrap(), "p/prod/r1");
    assert_eq!(info.fill("no braces"), Some("no braces".into()));
    assert_eq!(info.fill("unclosed {run_id"), None);
}
