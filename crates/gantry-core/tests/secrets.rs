//! A secret never appears in events, reports, errors, plans or tracing output, however it leaks into text.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use gantry_core::{
    CommandStep, Context, Event, MASK, OutputKey, Pipeline, RetryPolicy, Run, RunStatus, Secret, StepError, step_fn,
};

const TOKEN: &str = "tok-4f9a8e7d-SECRET";
const DB_PASSWORD: &str = "db-pass-77xx";

/// Collects everything tracing writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const DSN: OutputKey<String> = OutputKey::new("dsn");

fn pipeline() -> Pipeline {
    Pipeline::builder("leaky")
        .step(
            "echo-token",
            CommandStep::new("sh")
                .args(["-c", "echo using $TOKEN; echo \"auth failed for $TOKEN\" >&2; exit 1"])
                .env("TOKEN", "{{secrets.token}}"),
        )
        .step(
            "runtime-secret",
            step_fn(|ctx| async move {
                // A secret learnt at run time (e.g. decrypted from SOPS) is masked from then on.
                let password = "db-pass-77xx".to_owned();
                ctx.add_secret("db", Secret::new(password.clone()));
                ctx.log(format!("connecting with {password}"));
                ctx.publish(DSN, format!("postgres://app:{password}@db"));
                Err(StepError::new(format!("connect with {password} failed")).retryable())
            }),
        )
        .retry(RetryPolicy::fixed(1, Duration::from_millis(1)))
        .step("argv-token", CommandStep::new("sh").args(["-c", "echo \"$0\"; exit 3", "{{secrets.token}}"]))
        .build()
        .unwrap()
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(TOKEN), "{what} shows the token:\n{text}");
    assert!(!text.contains(DB_PASSWORD), "{what} shows the password:\n{text}");
}

#[test]
fn secrets_are_masked_in_events_reports_errors_plans_and_tracing() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let p = pipeline();
    let ctx = Context::new().secret("token", Secret::new(TOKEN));
    let plan = p.plan(&ctx);
    let run = Run::new(&p, ctx.clone());
    let events = run.subscribe();
    let (report, events) =
        runtime.block_on(async { (run.execute().await.unwrap(), events.collect::<Vec<Event>>().await) });

    assert_eq!(report.status, RunStatus::Failed);
    // The secrets were really in play: every step saw and printed them, masked.
    let logs: Vec<String> = events
        .iter()
        .filter_map(|e| if let Event::Log { line, .. } = e { Some(line.to_string()) } else { None })
        .collect();
    assert!(logs.contains(&format!("using {MASK}")), "{logs:?}");
    assert!(logs.contains(&format!("auth failed for {MASK}")), "{logs:?}");
    assert!(logs.contains(&format!("connecting with {MASK}")), "{logs:?}");
    assert!(logs.contains(&MASK.to_owned()), "{logs:?}");
    let echo = report.step("echo-token").unwrap().reason.clone().unwrap();
    assert!(echo.ends_with(&format!("auth failed for {MASK}")), "{echo}");
    let runtime_secret = report.step("runtime-secret").unwrap();
    assert_eq!(runtime_secret.reason.as_deref(), Some(format!("connect with {MASK} failed").as_str()));
    assert_eq!(runtime_secret.outputs[0].1, format!("\"postgres://app:{MASK}@db\""));
    assert!(events.iter().any(|e| matches!(e, Event::StepRetrying { .. })));

    assert_clean("events (Debug)", &format!("{events:?}"));
    for event in &events {
        assert_clean("events (JSON)", &serde_json::to_string(event).unwrap());
    }
    assert_clean("report (Display)", &report.to_string());
    assert_clean("report (Debug)", &format!("{report:?}"));
    assert_clean("report (JSON)", &serde_json::to_string(&report).unwrap());
    assert_clean("plan", &format!("{plan}{plan:?}"));
    assert!(plan.to_string().contains(MASK), "the plan shows where the secret goes, masked:\n{plan}");
    assert_clean("context (Debug)", &format!("{ctx:?}"));
    let traced = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(traced.contains("step finished") && traced.contains("retrying"), "tracing captured the run:\n{traced}");
    assert_clean("tracing output", &traced);
}

/// Runs `pipeline` in a child process (this test binary, test `name`), and returns what it printed on stderr.
fn stderr_of_child(name: &str) -> String {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture"])
        .env("GANTRY_PANIC_CHILD", "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    stderr
}

/// In the child: runs `pipeline`, whose step `boom` panics with `late-secret-5z5z`, a secret a step registered.
fn run_in_child(pipeline: Pipeline) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let report = runtime.block_on(pipeline.run(Context::new())).unwrap();
    let reason = report.step("boom").unwrap().reason.as_deref().unwrap().to_owned();
    assert_eq!(reason, format!("step panicked: lost {MASK}"));
}

fn learn() -> impl gantry_core::Step {
    step_fn(|ctx| async move {
        ctx.add_secret("late", Secret::new("late-secret-5z5z"));
        Ok(())
    })
}

fn boom() -> impl gantry_core::Step {
    step_fn(|_| async move { panic!("lost late-secret-5z5z") })
}

#[test]
fn a_panic_with_a_secret_registered_in_the_same_poll_prints_masked() {
    if std::env::var_os("GANTRY_PANIC_CHILD").is_some() {
        // Learnt and panicked with in one step, in one poll of a run that had no secret.
        let p = Pipeline::builder("p")
            .step(
                "boom",
                step_fn(|ctx| async move {
                    ctx.add_secret("late", Secret::new("late-secret-5z5z"));
                    panic!("lost late-secret-5z5z");
                }),
            )
            .build()
            .unwrap();
        return run_in_child(p);
    }
    let stderr = stderr_of_child("a_panic_with_a_secret_registered_in_the_same_poll_prints_masked");
    assert!(stderr.contains(&format!("lost {MASK}")), "the hook printed the panic, masked:\n{stderr}");
    assert!(!stderr.contains("late-secret-5z5z"), "{stderr}");
}

#[test]
fn a_panic_after_a_sub_pipeline_learnt_a_secret_in_the_same_poll_prints_masked() {
    if std::env::var_os("GANTRY_PANIC_CHILD").is_some() {
        // Every step finishes in its first poll, so the sub-run and the panic share one poll of the run.
        let sub = Pipeline::builder("sub").step("learn", learn()).build().unwrap();
        let p = Pipeline::builder("p").pipeline("sub", sub).step("boom", boom()).after(["sub"]).build().unwrap();
        return run_in_child(p);
    }
    let stderr = stderr_of_child("a_panic_after_a_sub_pipeline_learnt_a_secret_in_the_same_poll_prints_masked");
    assert!(stderr.contains(&format!("lost {MASK}")), "the hook printed the panic, masked:\n{stderr}");
    assert!(!stderr.contains("late-secret-5z5z"), "{stderr}");
}
