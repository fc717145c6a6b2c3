//! Executor overhead on large DAGs, next to a hand-written floor and the peer crates `async_dag` and `dagx`.
//!
//! Shapes: a chain of 10,000; a fan 1 -> 10,000 -> 1; a layered DAG of 100 x 100 with 3 parents per node. Work per
//! node: none, or one `yield_now`. Contenders, all in this one process:
//! - `floor`: inline `dyn` calls in topological order (no scheduling, no rules, no events: the cost of calling);
//! - `gantry/run`: a built pipeline run with full semantics: trigger rules evaluated, a subscriber attached and
//!   draining every event, a report built (pipelines are reusable, so this is the cost of a run);
//! - `gantry/build+run`: the same plus building and validating the pipeline (names, petgraph, cycle check);
//! - `async_dag` and `dagx`: their graphs are single-use, so each iteration builds and runs one.
//!
//! After the timings, the bench prints (`GANTRY_BENCH=criterion|tables` runs one part) peak heap bytes per node for each contender (build + run) and the ns/node
//! table that docs/PERFORMANCE.md records. Run: `cargo bench --bench executor`.

#![allow(clippy::print_stdout)] // The bench prints the tables docs/PERFORMANCE.md records.

mod common;
mod peers;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{DAGS, Dag, Placement, WORKS, names, pipeline, run_floor, run_gantry, runtime};
use criterion::{BenchmarkId, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    peers::self_check();
    let rt = runtime();
    for shape in DAGS {
        let dag = Dag::new(shape);
        for (work, work_label) in WORKS {
            let mut group = c.benchmark_group(format!("{}/{work_label}", dag.label()));
            group.throughput(Throughput::Elements(dag.nodes as u64));
            group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
            let n = dag.nodes;
            let names = names(n);
            let built = pipeline(&dag, work, &names);
            let id = BenchmarkId::from_parameter;
            group.bench_function(id("floor"), |b| {
                b.iter(|| rt.block_on(async { tokio::spawn(run_floor(n, work)).await.unwrap() }))
            });
            group.bench_function(id("gantry task"), |b| b.iter(|| rt.block_on(run_gantry(&built, Placement::Task))));
            group.bench_function(id("gantry here"), |b| b.iter(|| rt.block_on(run_gantry(&built, Placement::Here))));
            group.bench_function(id("gantry b+r"), |b| {
                b.iter(|| {
                    let p = pipeline(&dag, work, &names);
                    rt.block_on(run_gantry(&p, Placement::Task))
                })
            });
            group.bench_function(id("async_dag run"), |b| {
                b.iter_custom(|iters| {
                    (0..iters).map(|_| rt.block_on(peers::time_async_dag_run(n, &dag.edges, work))).sum()
                })
            });
            group.bench_function(id("async_dag b+r"), |b| {
                b.iter(|| rt.block_on(peers::run_async_dag(n, black_box(&dag.edges), work)))
            });
            group.bench_function(id("dagx run"), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(peers::time_dagx_run(n, &dag.edges, work))).sum())
            });
            group.bench_function(id("dagx b+r"), |b| {
                b.iter(|| rt.block_on(peers::run_dagx(n, black_box(&dag.edges), work)))
            });
            group.finish();
        }
    }
}

/// Median ns per node of each contender, the table docs/PERFORMANCE.md records. The contenders take turns, one run
/// each per round, so that a burst of noise on this shared machine falls on all of them alike. "run" columns exclude
/// building the graph (for the peers, the time of their own `run` call); "b+r" columns include it.
fn ns_table() {
    const ROUNDS: usize = 31;
    let rt = runtime();
    println!("\nmedian ns per node over {ROUNDS} rounds (run = graph already built; b+r = build + run):");
    println!("(gantry task: the run is a spawned task; gantry here: driven by block_on, where async_dag runs)");
    let columns =
        ["floor", "gantry task", "gantry here", "gantry b+r", "async_dag run", "async_dag b+r", "dagx run", "dagx b+r"];
    print!("{:<14}", "shape/work");
    for c in columns {
        print!(" {c:>13}");
    }
    println!();
    for shape in DAGS {
        let dag = Dag::new(shape);
        let n = dag.nodes;
        for (work, work_label) in WORKS {
            let names = names(n);
            let built = pipeline(&dag, work, &names);
            let timed = |f: &mut dyn FnMut()| {
                let start = Instant::now();
                f();
                start.elapsed()
            };
            let mut contenders: Vec<Box<dyn FnMut() -> Duration + '_>> = vec![
                Box::new(|| {
                    timed(&mut || {
                        black_box(rt.block_on(async { tokio::spawn(run_floor(n, work)).await.unwrap() }));
                    })
                }),
                Box::new(|| {
                    timed(&mut || {
                        black_box(rt.block_on(run_gantry(&built, Placement::Task)));
                    })
                }),
                Box::new(|| {
                    timed(&mut || {
                        black_box(rt.block_on(run_gantry(&built, Placement::Here)));
                    })
                }),
                Box::new(|| {
                    timed(&mut || {
                        let p = pipeline(&dag, work, &names);
                        rt.block_on(run_gantry(&p, Placement::Task));
                    })
                }),
                Box::new(|| rt.block_on(peers::time_async_dag_run(n, &dag.edges, work))),
                Box::new(|| {
                    timed(&mut || {
                        black_box(rt.block_on(peers::run_async_dag(n, &dag.edges, work)));
                    })
                }),
                Box::new(|| rt.block_on(peers::time_dagx_run(n, &dag.edges, work))),
                Box::new(|| {
                    timed(&mut || {
                        black_box(rt.block_on(peers::run_dagx(n, &dag.edges, work)));
                    })
                }),
            ];
            let mut samples = vec![Vec::with_capacity(ROUNDS); contenders.len()];
            for _ in 0..ROUNDS {
                for (c, run) in contenders.iter_mut().enumerate() {
                    samples[c].push(run().as_nanos() as f64 / n as f64);
                }
            }
            print!("{:<14}", format!("{}/{work_label}", dag.label()));
            for mut s in samples {
                s.sort_by(f64::total_cmp);
                print!(" {:>13.0}", s[s.len() / 2]);
            }
            println!();
        }
    }
}

/// `GANTRY_BENCH=criterion|tables` runs one part; unset runs both.
fn main() {
    let part = std::env::var("GANTRY_BENCH").unwrap_or_default();
    if part.is_empty() || part == "criterion" {
        let mut c = Criterion::default().configure_from_args();
        bench(&mut c);
        c.final_summary();
    }
    if part.is_empty() || part == "tables" {
        ns_table();
    }
}
