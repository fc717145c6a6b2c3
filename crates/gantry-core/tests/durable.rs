//! Durable runs: the journal in a store, and resuming a run whose host stopped (its `execute` future dropped
//! mid-step, as a killed process leaves it) without running again what had finished.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gantry_core::{
    Context, JournalRecord, MemoryStore, Pipeline, ResumeError, Run, RunStatus, RunStore, Secret, StepStatus,
    TriggerRule, step_fn,
};

/// Counts runs of a step.
fn counted(count: &Arc<AtomicU32>) -> impl gantry_core::Step {
    let count = Arc::clone(count);
    step_fn(move |_| {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    })
}

/// A step that hangs on its first run (the host "dies" there) and succeeds on later ones.
fn hangs_once(
    runs: &Arc<AtomicU32>,
    started: tokio::sync::mpsc::UnboundedSender<()>,
    idempotent: bool,
) -> Arc<dyn gantry_core::Step> {
    let runs = Arc::clone(runs);
    let step = step_fn(move |_| {
        let runs = Arc::clone(&runs);
        let started = started.clone();
        async move {
            if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = started.send(());
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    });
    if idempotent { Arc::new(step.idempotent()) } else { Arc::new(step) }
}

struct Counts {
    build: Arc<AtomicU32>,
    deploy: Arc<AtomicU32>,
    smoke: Arc<AtomicU32>,
    restore: Arc<AtomicU32>,
}

fn pipeline(counts: &Counts, idempotent: bool, started: tokio::sync::mpsc::UnboundedSender<()>) -> Pipeline {
    Pipeline::builder("release")
        .step("build", counted(&counts.build))
        .shared_step("deploy", hangs_once(&counts.deploy, started, idempotent))
        .after(["build"])
        .step("smoke", counted(&counts.smoke))
        .after(["deploy"])
        .step("restore", counted(&counts.restore))
        .after(["deploy"])
        .rule(TriggerRule::OnFailure)
        .build()
        .unwrap()
}

fn counts() -> Counts {
    Counts { build: Arc::default(), deploy: Arc::default(), smoke: Arc::default(), restore: Arc::default() }
}

/// Runs `pipeline` in `store` until its `deploy` step hangs, then drops the run (the host dies); the run's id.
async fn run_until_the_host_dies(
    pipeline: &Pipeline,
    store: &Arc<dyn RunStore>,
    context: Context,
    started: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
) -> String {
    let run = Run::new(pipeline, context).store(Arc::clone(store));
    let id = run.id().to_owned();
    let handle = tokio::spawn(run.execute());
    tokio::time::timeout(Duration::from_secs(10), started.recv()).await.unwrap().unwrap();
    handle.abort();
    let _ = handle.await;
    id
}

fn ended(records: &[JournalRecord], step: &str) -> Option<StepStatus> {
    records.iter().rev().find_map(|r| match r {
        JournalRecord::StepEnded { step: s, status, .. } if s == step => Some(*status),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_does_not_repeat_finished_steps_and_fails_an_interrupted_step_that_is_not_idempotent() {
    let store: Arc<dyn RunStore> = Arc::new(MemoryStore::new());
    let counts = counts();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let pipeline = pipeline(&counts, false, tx);
    let id = run_until_the_host_dies(&pipeline, &store, Context::new().var("env", "prod"), &mut rx).await;
    let records = store.records(&id).await.unwrap().unwrap();
    assert_eq!(ended(&records, "build"), Some(StepStatus::Succeeded));
    assert!(records.iter().any(|r| matches!(r, JournalRecord::StepStarted { step, .. } if step == "deploy")));
    assert_eq!(ended(&records, "deploy"), None, "in flight when the host died");

    let resumed = Run::resume(&pipeline, Arc::clone(&store), &id, Context::new()).await.unwrap();
    let report = resumed.execute().await.unwrap();
    assert_eq!(counts.build.load(Ordering::SeqCst), 1, "build ended before: not run again");
    assert_eq!(counts.deploy.load(Ordering::SeqCst), 1, "deploy is not idempotent: not run again");
    assert_eq!(report.status_of("build"), Some(StepStatus::Succeeded), "its outcome is replayed");
    assert_eq!(report.status_of("deploy"), Some(StepStatus::Failed));
    let reason = report.step("deploy").and_then(|s| s.reason.clone()).unwrap_or_default();
    assert!(reason.contains("interrupted; not idempotent"), "{reason}");
    assert_eq!(
        (counts.smoke.load(Ordering::SeqCst), counts.restore.load(Ordering::SeqCst)),
        (0, 1),
        "the failure path"
    );
    assert_eq!(report.status, RunStatus::Failed);
    let records = store.records(&id).await.unwrap().unwrap();
    assert!(matches!(records.last(), Some(JournalRecord::RunEnded { status: RunStatus::Failed, .. })));
    assert!(records.iter().any(|r| matches!(r, JournalRecord::RunResumed { .. })));
    // The run's variables came back from the journal.
    assert!(
        matches!(&records[0], JournalRecord::RunStarted { vars, .. } if vars.get("env").map(String::as_str) == Some("prod"))
    );

    // Ended: nothing to resume.
    let again = Run::resume(&pipeline, Arc::clone(&store), &id, Context::new()).await;
    assert!(matches!(again, Err(ResumeError::Ended { status: RunStatus::Failed, .. })), "{:?}", again.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_interrupted_step_runs_again_and_the_run_goes_on() {
    let store: Arc<dyn RunStore> = Arc::new(MemoryStore::new());
    let counts = counts();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let pipeline = pipeline(&counts, true, tx);
    let id = run_until_the_host_dies(&pipeline, &store, Context::new(), &mut rx).await;
    let report =
        Run::resume(&pipeline, Arc::clone(&store), &id, Context::new()).await.unwrap().execute().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(counts.build.load(Ordering::SeqCst), 1);
    assert_eq!(counts.deploy.load(Ordering::SeqCst), 2, "run again: it is idempotent");
    assert_eq!((counts.smoke.load(Ordering::SeqCst), counts.restore.load(Ordering::SeqCst)), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_outs_resume_inside() {
    let store: Arc<dyn RunStore> = Arc::new(MemoryStore::new());
    let (checks, deploys, web) =
        (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let per_service = {
        let (checks, deploys, web) = (Arc::clone(&checks), Arc::clone(&deploys), Arc::clone(&web));
        move |service: &str| {
            let deploy: Arc<dyn gantry_core::Step> =
                if service == "web" { hangs_once(&web, tx.clone(), true) } else { Arc::new(counted(&deploys)) };
            Pipeline::builder("svc").step("check", counted(&checks)).shared_step("deploy", deploy).after(["check"])
        }
    };
    let pipeline =
        Pipeline::builder("release").fan_out("deploy", "service", ["api", "web"], per_service).build().unwrap();
    let run = Run::new(&pipeline, Context::new()).store(Arc::clone(&store));
    let id = run.id().to_owned();
    let handle = tokio::spawn(run.execute());
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    // The host dies once api's branch has ended and web's deploy hangs.
    for _ in 0..500 {
        if ended(&store.records(&id).await.unwrap().unwrap(), "deploy[api]/deploy").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle.abort();
    let _ = handle.await;
    let before = store.records(&id).await.unwrap().unwrap();
    assert_eq!(ended(&before, "deploy[api]/deploy"), Some(StepStatus::Succeeded));
    assert_eq!(ended(&before, "deploy[web]/check"), Some(StepStatus::Succeeded));
    let report =
        Run::resume(&pipeline, Arc::clone(&store), &id, Context::new()).await.unwrap().execute().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(checks.load(Ordering::SeqCst), 2, "each service's check ran once, in the first incarnation");
    assert_eq!(deploys.load(Ordering::SeqCst), 1, "api's deploy ended before: not run again");
    assert_eq!(web.load(Ordering::SeqCst), 2, "web's deploy hung, then ran again: it is idempotent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_that_cannot_be_taken_says_why_and_writes_nothing() {
    let store: Arc<dyn RunStore> = Arc::new(MemoryStore::new());
    let counts = counts();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let pipeline = pipeline(&counts, false, tx.clone());
    let context = Context::new().secret("token", Secret::new("tok-3c1f9a77e0")).var("auth", "Bearer tok-3c1f9a77e0");
    let id = run_until_the_host_dies(&pipeline, &store, context, &mut rx).await;
    let records = store.records(&id).await.unwrap().unwrap();
    let journal = serde_json::to_string(&records).unwrap();
    assert!(!journal.contains("tok-3c1f9a77e0"), "a secret in the journal: {journal}");
    assert!(
        journal.contains("\"secret_names\":[\"token\"]") && journal.contains("\"sealed_vars\":[\"auth\"]"),
        "{journal}"
    );

    let unknown = Run::resume(&pipeline, Arc::clone(&store), "no-such-run", Context::new()).await;
    assert!(matches!(unknown, Err(ResumeError::UnknownRun(_))));
    let no_secret = Run::resume(&pipeline, Arc::clone(&store), &id, Context::new()).await.err().unwrap();
    assert_eq!(no_secret.to_string(), format!("run `{id}` needs the secrets token again (secrets are never stored)"));
    let secret_only = Context::new().secret("token", Secret::new("tok-3c1f9a77e0"));
    let no_var = Run::resume(&pipeline, Arc::clone(&store), &id, secret_only).await.err().unwrap();
    assert!(no_var.to_string().contains("needs the variables auth again"), "{no_var}");

    // Another structure: a step added, one's rule changed.
    let changed = Pipeline::builder("release")
        .step("build", counted(&counts.build))
        .step("deploy", counted(&counts.deploy))
        .after(["build"])
        .step("smoke", counted(&counts.smoke))
        .after(["deploy"])
        .rule(TriggerRule::Always)
        .step("restore", counted(&counts.restore))
        .after(["deploy"])
        .rule(TriggerRule::OnFailure)
        .step("notify", counted(&counts.restore))
        .after(["smoke"])
        .build()
        .unwrap();
    let full = Context::new().secret("token", Secret::new("tok-3c1f9a77e0")).var("auth", "x");
    let refused = Run::resume(&changed, Arc::clone(&store), &id, full).await.err().unwrap();
    assert_eq!(
        refused.to_string(),
        format!("pipeline `release` is not the one run `{id}` started with: `smoke` changed; `notify` added")
    );
    assert_eq!(store.records(&id).await.unwrap().unwrap(), records, "no failed resume wrote to the journal");
    drop(tx);
}

/// A store whose appends of a step's end wait for a gate.
struct SlowEnds {
    inner: MemoryStore,
    gate: Arc<tokio::sync::Semaphore>,
}

#[gantry_core::async_trait]
impl RunStore for SlowEnds {
    async fn create(&self, run_id: &str, first: &JournalRecord) -> Result<(), gantry_core::StoreError> {
        self.inner.create(run_id, first).await
    }

    async fn append(&self, run_id: &str, records: &[JournalRecord]) -> Result<(), gantry_core::StoreError> {
        if records.iter().any(|r| matches!(r, JournalRecord::StepEnded { step, .. } if step == "build")) {
            self.gate.acquire().await.unwrap().forget();
        }
        self.inner.append(run_id, records).await
    }

    async fn records(&self, run_id: &str) -> Result<Option<Vec<JournalRecord>>, gantry_core::StoreError> {
        self.inner.records(run_id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_step_starts_before_the_end_of_what_it_waits_for_is_in_the_store() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let store = Arc::new(SlowEnds { inner: MemoryStore::new(), gate: Arc::clone(&gate) });
    let deployed = Arc::new(AtomicU32::new(0));
    let pipeline = Pipeline::builder("release")
        .step("build", step_fn(|_| async { Ok(()) }))
        .step("deploy", counted(&deployed))
        .after(["build"])
        .build()
        .unwrap();
    let handle = tokio::spawn(Run::new(&pipeline, Context::new()).store(store.clone()).execute());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(deployed.load(Ordering::SeqCst), 0, "build's end is not in the store yet: deploy waits");
    gate.add_permits(1);
    let report = tokio::time::timeout(Duration::from_secs(10), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(deployed.load(Ordering::SeqCst), 1);
}

/// A store that refuses every append.
struct Full(MemoryStore);

#[gantry_core::async_trait]
impl RunStore for Full {
    async fn create(&self, run_id: &str, first: &JournalRecord) -> Result<(), gantry_core::StoreError> {
        self.0.create(run_id, first).await
    }

    async fn append(&self, _: &str, _: &[JournalRecord]) -> Result<(), gantry_core::StoreError> {
        Err(gantry_core::StoreError::Unavailable("disk full".into()))
    }

    async fn records(&self, run_id: &str) -> Result<Option<Vec<JournalRecord>>, gantry_core::StoreError> {
        self.0.records(run_id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_whose_start_cannot_be_stored_does_not_run() {
    let ran = Arc::new(AtomicU32::new(0));
    let pipeline = Pipeline::builder("release").step("deploy", counted(&ran)).build().unwrap();
    let report = Run::new(&pipeline, Context::new()).store(Arc::new(Full(MemoryStore::new()))).execute().await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 0, "nothing happens that the journal would not know");
    assert_eq!(report.status, RunStatus::Failed);
    let reason = report.step("deploy").and_then(|s| s.reason.clone()).unwrap_or_default();
    assert!(reason.contains("disk full"), "{reason}");
}

const IMAGE: gantry_core::OutputKey<String> = gantry_core::OutputKey::durable("image");
const TYPED_ONLY: gantry_core::OutputKey<String> = gantry_core::OutputKey::new("typed_only");
const TOKEN_ECHO: gantry_core::OutputKey<String> = gantry_core::OutputKey::durable("token_echo");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_outputs_and_variables_of_finished_steps_are_read_back_after_a_resume() {
    let store: Arc<dyn RunStore> = Arc::new(MemoryStore::new());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let pipeline = {
        let seen = Arc::clone(&seen);
        let first = Arc::new(AtomicU32::new(0));
        Pipeline::builder("release")
            .step(
                "build",
                step_fn(|ctx| async move {
                    ctx.publish(IMAGE, "registry.example/web@sha256:5e1f".to_owned());
                    ctx.publish(TYPED_ONLY, "kept in memory only".to_owned());
                    let token = ctx.secret("token")?;
                    ctx.publish(TOKEN_ECHO, format!("Bearer {}", token.expose()));
                    ctx.set_var("tag", "v1.2.3");
                    Ok(())
                }),
            )
            .step(
                "deploy",
                step_fn(move |ctx| {
                    let (seen, first, tx) = (Arc::clone(&seen), Arc::clone(&first), tx.clone());
                    async move {
                        if first.fetch_add(1, Ordering::SeqCst) == 0 {
                            let _ = tx.send(());
                            std::future::pending::<()>().await;
                        }
                        let mut seen = seen.lock().unwrap();
                        seen.push(format!("{:?}", ctx.output("build", IMAGE).map(|v| v.to_string())));
                        seen.push(format!("{:?}", ctx.var("build.tag")));
                        seen.push(format!("{}", ctx.output("build", TYPED_ONLY).is_err()));
                        seen.push(format!("{}", ctx.output("build", TOKEN_ECHO).is_err()));
                        Ok(())
                    }
                })
                .idempotent(),
            )
            .after(["build"])
            .build()
            .unwrap()
    };
    let context = || Context::new().secret("token", Secret::new("tok-aa81f2c3"));
    let run = Run::new(&pipeline, context()).store(Arc::clone(&store));
    let id = run.id().to_owned();
    let handle = tokio::spawn(run.execute());
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    handle.abort();
    let _ = handle.await;
    let journal = serde_json::to_string(&store.records(&id).await.unwrap().unwrap()).unwrap();
    assert!(!journal.contains("tok-aa81f2c3"), "an output holding a secret is not journaled: {journal}");

    let report = Run::resume(&pipeline, Arc::clone(&store), &id, context()).await.unwrap().execute().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "Ok(\"registry.example/web@sha256:5e1f\")".to_owned(),
            "Some(\"v1.2.3\")".to_owned(),
            "true".to_owned(), // a key that is not durable: not restored
            "true".to_owned(), // it held a secret: not journaled
        ]
    );
}

/// A step that starts a "Job", checkpoints its name, and on resume re-attaches to it by that name.
struct JobLike {
    created: Arc<AtomicU32>,
    attached: Arc<std::sync::Mutex<Option<String>>>,
    started: tokio::sync::mpsc::UnboundedSender<()>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct JobState {
    job: String,
}

#[gantry_core::async_trait]
impl gantry_core::Step for JobLike {
    async fn run(&self, ctx: &gantry_core::StepContext) -> Result<(), gantry_core::StepError> {
        self.created.fetch_add(1, Ordering::SeqCst);
        ctx.checkpoint(&JobState { job: format!("smoke-{}", ctx.run_id()) }).await?;
        let _ = self.started.send(());
        std::future::pending::<()>().await;
        Ok(())
    }

    async fn resume(
        &self,
        _ctx: &gantry_core::StepContext,
        interrupted: &gantry_core::Interrupted,
    ) -> Result<(), gantry_core::StepError> {
        let state: Option<JobState> = interrupted.checkpoint()?;
        *self.attached.lock().unwrap() = state.map(|s| s.job);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_step_is_taken_over_through_resume_with_its_last_checkpoint() {
    let store: Arc<dyn RunStore> = Arc::new(MemoryStore::new());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (created, attached) = (Arc::new(AtomicU32::new(0)), Arc::new(std::sync::Mutex::new(None)));
    let step = JobLike { created: Arc::clone(&created), attached: Arc::clone(&attached), started: tx };
    let pipeline = Pipeline::builder("release").step("smoke", step).build().unwrap();
    let id = {
        let run = Run::new(&pipeline, Context::new()).store(Arc::clone(&store));
        let id = run.id().to_owned();
        let handle = tokio::spawn(run.execute());
        tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        handle.abort();
        let _ = handle.await;
        id
    };
    let report =
        Run::resume(&pipeline, Arc::clone(&store), &id, Context::new()).await.unwrap().execute().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(created.load(Ordering::SeqCst), 1, "no second Job");
    assert_eq!(attached.lock().unwrap().as_deref(), Some(format!("smoke-{id}").as_str()), "re-attached by name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_outputs_are_journaled_with_its_own_end_never_with_anothers() {
    let store: Arc<dyn RunStore> = Arc::new(MemoryStore::new());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let b_published = Arc::new(tokio::sync::Notify::new());
    let pipeline = {
        let waiting = Arc::clone(&b_published);
        let published = Arc::clone(&b_published);
        Pipeline::builder("release")
            .step(
                "a",
                step_fn(move |ctx| {
                    let waiting = Arc::clone(&waiting);
                    async move {
                        // Ends after `b` published, while `b` still runs.
                        waiting.notified().await;
                        ctx.publish(IMAGE, "a's image".to_owned());
                        Ok(())
                    }
                }),
            )
            .step(
                "b",
                step_fn(move |ctx| {
                    let (published, tx) = (Arc::clone(&published), tx.clone());
                    async move {
                        ctx.publish(IMAGE, "b's unfinished image".to_owned());
                        published.notify_one();
                        let _ = tx.send(());
                        std::future::pending::<()>().await;
                        Ok(())
                    }
                }),
            )
            .build()
            .unwrap()
    };
    let run = Run::new(&pipeline, Context::new()).store(Arc::clone(&store));
    let id = run.id().to_owned();
    let handle = tokio::spawn(run.execute());
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    // Wait for `a`'s end to be journaled, then the host dies.
    for _ in 0..500 {
        if ended(&store.records(&id).await.unwrap().unwrap(), "a").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.abort();
    let _ = handle.await;
    let records = store.records(&id).await.unwrap().unwrap();
    let outputs: Vec<&str> = records
        .iter()
        .filter_map(|r| match r {
            JournalRecord::Output { step, .. } => Some(step.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(outputs, ["a"], "b had not ended: its output is not its result");
}
