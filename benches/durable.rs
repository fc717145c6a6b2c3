//! What journaling costs a run: time per step of a chain of 200 steps (each after the one before, doing nothing), with
//! no store (the baseline, measured in the same run), in memory, in SQLite (a file on this machine's disk, WAL,
//! `synchronous=FULL`: every step's start and end is an fsync'd commit), and in PostgreSQL 15 on loopback (started by
//! the bench from `/usr/lib/postgresql/15/bin`; skipped when it is not there). A durable step writes two records
//! (its start before it runs, its end before the next starts), each awaited.
//!
//! Also: the time from opening a SQLite store to a resumed run's first step (a new process's path, minus starting
//! the process).
//!
//! Run: `cargo bench --bench durable`. Recorded in docs/PERFORMANCE.md.
#![allow(clippy::print_stdout)] // The bench prints the figures docs/PERFORMANCE.md records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use gantry::prelude::*;
use gantry::store::{PostgresStore, SqliteStore};
use gantry_core::{MemoryStore, RunStore};

const STEPS: usize = 200;

fn chain() -> Pipeline {
    let mut builder = Pipeline::builder("chain").step("s0", step_fn(|_| async { Ok(()) }));
    for i in 1..STEPS {
        builder = builder.step(format!("s{i}"), step_fn(|_| async { Ok(()) })).after([format!("s{}", i - 1)]);
    }
    builder.build().unwrap()
}

async fn run(pipeline: &Pipeline, store: Option<Arc<dyn RunStore>>) -> Duration {
    let started = Instant::now();
    let mut run = Run::new(pipeline, Context::new());
    if let Some(store) = store {
        run = run.store(store);
    }
    let report = run.execute().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    started.elapsed()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pipeline = chain();
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn RunStore> = Arc::new(SqliteStore::open(dir.path().join("runs.db")).unwrap());
    let server = gantry::testkit::postgres::PostgresServer::installed()
        .then(|| rt.block_on(gantry::testkit::postgres::PostgresServer::start()).unwrap());
    let postgres: Option<Arc<dyn RunStore>> = server.as_ref().map(|s| {
        Arc::new(rt.block_on(PostgresStore::connect(&s.connection_string("postgres"))).unwrap()) as Arc<dyn RunStore>
    });
    let mut stores: Vec<(&str, Option<Arc<dyn RunStore>>)> =
        vec![("no store", None), ("memory", Some(Arc::new(MemoryStore::new()))), ("sqlite", Some(sqlite.clone()))];
    if let Some(pg) = postgres {
        stores.push(("postgres", Some(pg)));
    }

    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let mut per_step = Vec::new();
    for (name, store) in &stores {
        let (mut total, mut runs) = (Duration::ZERO, 0_u32);
        c.bench_function(&format!("chain of {STEPS}: {name}"), |b| {
            b.iter_custom(|iters| {
                let mut sum = Duration::ZERO;
                for _ in 0..iters {
                    let took = rt.block_on(run(&pipeline, store.clone()));
                    sum += took;
                    total += took;
                    runs += 1;
                }
                sum
            })
        });
        per_step.push((*name, total.as_secs_f64() / f64::from(runs) / STEPS as f64));
    }

    // A resume's first step: a run whose journal says its first step ended, taken over from a store opened anew.
    let resume_ms = {
        let path = dir.path().join("resume.db");
        let store: Arc<dyn RunStore> = Arc::new(SqliteStore::open(&path).unwrap());
        let first = Pipeline::builder("resume")
            .step("done", step_fn(|_| async { Ok(()) }))
            .step("next", step_fn(|_| async { Ok(()) }))
            .after(["done"])
            .build()
            .unwrap();
        let run = Run::new(&first, Context::new()).store(store);
        let id = run.id().to_owned();
        rt.block_on(run.execute()).unwrap();
        // Make it look interrupted: a run that ended cannot resume, so journal a fresh copy without its end.
        let records = rt.block_on(SqliteStore::open(&path).unwrap().records(&id)).unwrap().unwrap();
        let kept: Vec<_> = records
            .into_iter()
            .filter(|r| !matches!(r, gantry_core::JournalRecord::RunEnded { .. }))
            .filter(|r| !matches!(r, gantry_core::JournalRecord::StepEnded { step, .. } if step == "next"))
            .collect();
        let mut samples = Vec::new();
        for n in 0..20 {
            // A file as the host that died left it.
            let file = dir.path().join(format!("interrupted-{n}.db"));
            let store = SqliteStore::open(&file).unwrap();
            rt.block_on(store.create("interrupted", &kept[0])).unwrap();
            rt.block_on(store.append("interrupted", &kept[1..])).unwrap();
            drop(store);
            let (tx, rx) = std::sync::mpsc::channel();
            let resumed = Pipeline::builder("resume")
                .step("done", step_fn(|_| async { Ok(()) }))
                .step(
                    "next",
                    step_fn(move |_| {
                        let _ = tx.send(Instant::now());
                        async { Ok(()) }
                    })
                    .idempotent(),
                )
                .after(["done"])
                .build()
                .unwrap();
            let started = Instant::now();
            let store: Arc<dyn RunStore> = Arc::new(SqliteStore::open(&file).unwrap());
            let run = rt.block_on(Run::resume(&resumed, store, "interrupted", Context::new())).unwrap();
            let handle = rt.spawn(run.execute());
            let first_step = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            samples.push((first_step - started).as_secs_f64() * 1000.0);
            rt.block_on(handle).unwrap().unwrap();
        }
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };

    let base = per_step[0].1;
    for (name, seconds) in &per_step {
        println!("{name}: {:.1} µs per step ({:.1}x no store)", seconds * 1e6, seconds / base);
    }
    println!("resume, from opening the SQLite store to the first step: {resume_ms:.2} ms (median of 20)");
    drop(server);
}
