//! Runs of steps that do many ready tokio operations in a row, on a multi-thread runtime, awaited inline (as in
//! `#[tokio::main]`) and spawned. A run awaited inline used to spin forever at 100 % CPU: tokio's cooperative
//! budget turned every resource away (`Pending`, woken at once), and the coordinator polled the same futures again
//! without ever returning to the runtime.
//!
//! A livelocked runtime fires no timer, so each test is bounded from outside: the runtime runs on a thread of its
//! own and the test waits for its answer on a standard channel.

use std::sync::Arc;
use std::time::Duration;

use gantry_core::{CommandStep, Context, Pipeline, Run, RunReport, RunStatus, StepStatus, step_fn};
use proptest::prelude::*;

/// How the run is driven.
#[derive(Clone, Copy, Debug)]
enum Drive {
    /// `runtime.block_on(run)`: what `#[tokio::main]` does with `pipeline.run(ctx).await`.
    Inline,
    /// `runtime.block_on(tokio::spawn(run))`.
    Spawned,
}

/// Builds a 2-worker multi-thread runtime on a thread of its own, runs the pipeline there as `drive` says, and
/// returns its report; fails the test if no report comes within `limit`.
fn run_bounded(pipeline: Pipeline, drive: Drive, limit: Duration) -> RunReport {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let report = match drive {
            Drive::Inline => runtime.block_on(pipeline.run(Context::new())),
            Drive::Spawned => runtime.block_on(async move {
                let pipeline = pipeline.clone();
                tokio::spawn(async move { Run::new(&pipeline, Context::new()).execute().await }).await.unwrap()
            }),
        };
        let _ = tx.send(report.unwrap());
    });
    match rx.recv_timeout(limit) {
        Ok(report) => report,
        Err(_) => panic!("the run ({drive:?}) did not finish within {limit:?}: the executor livelocks"),
    }
}

const LIMIT: Duration = Duration::from_secs(60);

fn both(pipeline: &Pipeline, check: impl Fn(&RunReport)) {
    for drive in [Drive::Inline, Drive::Spawned] {
        let report = run_bounded(pipeline.clone(), drive, LIMIT);
        check(&report);
    }
}

fn assert_succeeded(report: &RunReport) {
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
}

#[test]
fn a_step_draining_a_prefilled_channel() {
    let p = Pipeline::builder("drain")
        .step(
            "drain",
            step_fn(|_| async {
                let (tx, mut rx) = tokio::sync::mpsc::channel(1000);
                for i in 0..1000 {
                    tx.send(i).await.unwrap();
                }
                drop(tx);
                let mut n = 0;
                while rx.recv().await.is_some() {
                    n += 1;
                }
                assert_eq!(n, 1000);
                Ok(())
            }),
        )
        .build()
        .unwrap();
    both(&p, assert_succeeded);
}

#[test]
fn a_step_taking_an_uncontended_mutex_many_times() {
    let p = Pipeline::builder("mutex")
        .step(
            "lock",
            step_fn(|_| async {
                let mutex = tokio::sync::Mutex::new(0u32);
                for _ in 0..1000 {
                    *mutex.lock().await += 1;
                }
                assert_eq!(*mutex.lock().await, 1000);
                Ok(())
            }),
        )
        .build()
        .unwrap();
    both(&p, assert_succeeded);
}

#[test]
fn hundreds_of_parallel_steps_that_sleep() {
    let mut builder = Pipeline::builder("sleepers").step("start", step_fn(|_| async { Ok(()) }));
    for i in 0..300 {
        builder = builder
            .step(
                format!("sleep-{i}"),
                step_fn(|_| async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok(())
                }),
            )
            .after(["start"]);
    }
    let p = builder.build().unwrap();
    both(&p, |report| {
        assert_succeeded(report);
        assert_eq!(report.steps.len(), 301);
    });
}

#[test]
fn a_fan_out_of_a_thousand_commands_finishes_and_reaps_every_process() {
    let items: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
    let p = Pipeline::builder("fan")
        .fan_out("each", "item", items, |_| Pipeline::builder("one").step("true", CommandStep::new("true")))
        .build()
        .unwrap();
    both(&p, |report| {
        assert_succeeded(report);
        let ran = report.all_steps().iter().filter(|s| s.name.ends_with("/true")).count();
        assert_eq!(ran, 1000);
    });
    // Every child was waited for: none is left a zombie of this process.
    let zombies = zombie_children();
    assert!(zombies.is_empty(), "zombie children left: {zombies:?}");
}

/// Pids of this process's children that have exited and not been reaped.
fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // `pid (comm) state ppid ...`: the fields after the parenthesised command name.
        let mut rest = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace()).into_iter().flatten();
        let (state, ppid) = (rest.next(), rest.next().and_then(|p| p.parse::<u32>().ok()));
        if state == Some("Z") && ppid == Some(me) {
            zombies.push(pid);
        }
    }
    zombies
}

/// A step that never stops taking an uncontended lock: every operation is ready at once.
fn spinner() -> impl gantry_core::Step {
    step_fn(|_| async {
        let mutex = tokio::sync::Mutex::new(());
        loop {
            drop(mutex.lock().await);
        }
    })
}

#[test]
fn a_step_timeout_fires_on_a_step_that_never_stops_doing_ready_work() {
    let p = Pipeline::builder("busy").step("spin", spinner()).timeout(Duration::from_millis(200)).build().unwrap();
    both(&p, |report| {
        assert_eq!(report.status, RunStatus::Failed, "{report}");
        let spin = report.step("spin").unwrap();
        assert_eq!(spin.status, StepStatus::Failed);
        assert!(spin.reason.as_deref().unwrap().starts_with("timed out after 200ms"), "{report}");
    });
}

#[test]
fn a_timeout_around_an_inline_run_fires() {
    let p = Pipeline::builder("busy").step("spin", spinner()).build().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let outcome =
            runtime.block_on(async { tokio::time::timeout(Duration::from_millis(200), p.run(Context::new())).await });
        let _ = tx.send(outcome.is_err());
    });
    let timed_out = rx.recv_timeout(LIMIT).expect("the timeout around the run never fired");
    assert!(timed_out);
}

/// A ready operation a step may do.
#[derive(Clone, Copy, Debug)]
enum Op {
    Recv,
    Lock,
    Oneshot,
    Semaphore,
    Notified,
    SleepZero,
    Yield,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Recv),
        Just(Op::Lock),
        Just(Op::Oneshot),
        Just(Op::Semaphore),
        Just(Op::Notified),
        Just(Op::SleepZero),
        Just(Op::Yield),
    ]
}

/// Does `op` `times` times; each is ready at once.
async fn ready_ops(op: Op, times: usize) {
    match op {
        Op::Recv => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            for i in 0..times {
                tx.send(i).unwrap();
            }
            for _ in 0..times {
                rx.recv().await.unwrap();
            }
        }
        Op::Lock => {
            let mutex = tokio::sync::Mutex::new(());
            for _ in 0..times {
                drop(mutex.lock().await);
            }
        }
        Op::Oneshot => {
            for i in 0..times {
                let (tx, rx) = tokio::sync::oneshot::channel();
                tx.send(i).unwrap();
                rx.await.unwrap();
            }
        }
        Op::Semaphore => {
            let semaphore = tokio::sync::Semaphore::new(1);
            for _ in 0..times {
                drop(semaphore.acquire().await.unwrap());
            }
        }
        Op::Notified => {
            let notify = tokio::sync::Notify::new();
            for _ in 0..times {
                notify.notify_one();
                notify.notified().await;
            }
        }
        Op::SleepZero => {
            for _ in 0..times {
                tokio::time::sleep(Duration::ZERO).await;
            }
        }
        Op::Yield => {
            for _ in 0..times {
                tokio::task::yield_now().await;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any mix of steps, each doing a run of ready operations, finishes, awaited inline or spawned.
    #[test]
    fn random_mixes_of_ready_operations_finish(
        steps in prop::collection::vec(prop::collection::vec((op(), 1usize..400), 1..4), 1..40),
        parallel in any::<bool>(),
        inline in any::<bool>(),
    ) {
        let count = steps.len();
        let mut builder: Option<gantry_core::StepBuilder> = None;
        for (i, ops) in steps.into_iter().enumerate() {
            let ops = Arc::new(ops);
            let step = step_fn(move |_| {
                let ops = Arc::clone(&ops);
                async move {
                    for &(op, times) in ops.iter() {
                        ready_ops(op, times).await;
                    }
                    Ok(())
                }
            });
            let name = format!("s{i}");
            builder = Some(match builder {
                None => Pipeline::builder("mix").step(name, step),
                Some(b) if parallel => b.step(name, step),
                Some(b) => b.step(name, step).after([format!("s{}", i - 1)]),
            });
        }
        let p = builder.unwrap().build().unwrap();
        let drive = if inline { Drive::Inline } else { Drive::Spawned };
        let report = run_bounded(p, drive, LIMIT);
        prop_assert_eq!(report.status, RunStatus::Succeeded);
        prop_assert_eq!(report.steps.len(), count);
    }
}
