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
//! After the timings, the bench prints (`GANTRY_BENCH=criterion|tables|memory` runs one part) peak heap bytes per node for each contender (build + run) and the ns/node
//! table that docs/PERFORMANCE.md records. Run: `cargo bench --bench executor`.

#![allow(clippy::print_stdout)] // The bench prints the tables docs/PERFORMANCE.md records.

mod peers;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use gantry::core::{Context, Pipeline, Run, RunStatus, Step, StepContext, StepError, async_trait};
use peak_alloc::PeakAlloc;
use peers::{Shape, Work};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

struct Noop;

#[async_trait]
impl Step for Noop {
    async fn run(&self, _ctx: &StepContext) -> Result<(), StepError> {
        Ok(())
    }
}

struct YieldOnce;

#[async_trait]
impl Step for YieldOnce {
    async fn run(&self, _ctx: &StepContext) -> Result<(), StepError> {
        tokio::task::yield_now().await;
        Ok(())
    }
}

/// One DAG of the benchmark: node count and edges, nodes in topological order.
struct Dag {
    shape: Shape,
    nodes: usize,
    edges: Vec<(usize, usize)>,
    /// Parents of each node.
    parents: Vec<Vec<usize>>,
}

impl Dag {
    fn new(shape: Shape) -> Self {
        let (nodes, edges) = match shape {
            Shape::Chain => peers::edges(shape, 10_000, 0),
            Shape::Fan => peers::edges(shape, 10_002, 0),
            Shape::Layered => peers::edges(shape, 100, 100),
        };
        let mut parents = vec![Vec::new(); nodes];
        for &(from, to) in &edges {
            parents[to].push(from);
        }
        Self {
            shape,
            nodes,
            edges,
            parents,
        }
    }

    fn label(&self) -> &'static str {
        match self.shape {
            Shape::Chain => "chain",
            Shape::Fan => "fan",
            Shape::Layered => "layered",
        }
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i}")).collect()
}

fn pipeline(dag: &Dag, work: Work, names: &[String]) -> Pipeline {
    let step = || -> Arc<dyn Step> {
        match work {
            Work::Noop => Arc::new(Noop),
            Work::YieldOnce => Arc::new(YieldOnce),
        }
    };
    let mut b = Pipeline::builder("bench").shared_step(names[0].as_str(), step());
    for (i, parents) in dag.parents.iter().enumerate().skip(1) {
        b = b
            .shared_step(names[i].as_str(), step())
            .after(parents.iter().map(|&p| &names[p]));
    }
    b.build().expect("valid DAG")
}

/// Runs with full semantics: trigger rules, one subscriber reading every event (a task of its own, as a notifier in
/// a host application is), the report built. Call from outside the runtime's workers (`block_on`), as a host does.
async fn run_gantry(p: &Pipeline) -> usize {
    let run = Run::new(p, Context::new());
    let mut events = run.subscribe();
    let reader = tokio::spawn(async move {
        let mut n = 0usize;
        while events.next().await.is_some() {
            n += 1;
        }
        n
    });
    let report = tokio::spawn(run.execute()).await.unwrap().expect("runs");
    assert_eq!(report.status, RunStatus::Succeeded);
    let events = reader.await.unwrap();
    assert_eq!(events, 2 * p.len() + 2);
    report.steps.len()
}

/// The floor: every node called in topological order through a `dyn` trait object, nothing else.
#[async_trait]
trait FloorStep: Send + Sync {
    async fn call(&self) -> u64;
}

struct FloorNoop;
#[async_trait]
impl FloorStep for FloorNoop {
    async fn call(&self) -> u64 {
        1
    }
}

struct FloorYield;
#[async_trait]
impl FloorStep for FloorYield {
    async fn call(&self) -> u64 {
        tokio::task::yield_now().await;
        1
    }
}

async fn run_floor(nodes: usize, work: Work) -> u64 {
    let steps: Vec<Box<dyn FloorStep>> = (0..nodes)
        .map(|_| -> Box<dyn FloorStep> {
            match work {
                Work::Noop => Box::new(FloorNoop),
                Work::YieldOnce => Box::new(FloorYield),
            }
        })
        .collect();
    let mut sum = 0;
    for s in &steps {
        sum += s.call().await;
    }
    sum
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

const DAGS: [Shape; 3] = [Shape::Chain, Shape::Fan, Shape::Layered];
const WORKS: [(Work, &str); 2] = [(Work::Noop, "noop"), (Work::YieldOnce, "yield")];

fn bench(c: &mut Criterion) {
    peers::self_check();
    let rt = runtime();
    for shape in DAGS {
        let dag = Dag::new(shape);
        for (work, work_label) in WORKS {
            let mut group = c.benchmark_group(format!("{}/{work_label}", dag.label()));
            group.throughput(Throughput::Elements(dag.nodes as u64));
            group
                .sample_size(20)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(3));
            let n = dag.nodes;
            group.bench_function(BenchmarkId::from_parameter("floor"), |b| {
                b.iter(|| rt.block_on(async { tokio::spawn(run_floor(n, work)).await.unwrap() }))
            });
            let names = names(n);
            let built = pipeline(&dag, work, &names);
            group.bench_function(BenchmarkId::from_parameter("gantry/run"), |b| {
                b.iter(|| {
                    let p = built.clone();
                    rt.block_on(run_gantry(&p))
                })
            });
            group.bench_function(BenchmarkId::from_parameter("gantry/build+run"), |b| {
                b.iter(|| {
                    let p = pipeline(&dag, work, &names);
                    rt.block_on(run_gantry(&p))
                })
            });
            group.bench_function(BenchmarkId::from_parameter("async_dag"), |b| {
                b.iter(|| rt.block_on(peers::run_async_dag(n, black_box(&dag.edges), work)))
            });
            group.bench_function(BenchmarkId::from_parameter("dagx"), |b| {
                b.iter(|| rt.block_on(peers::run_dagx(n, black_box(&dag.edges), work)))
            });
            group.finish();
        }
    }
}

/// Peak heap bytes per node while building and running once, above what was live before.
fn memory_per_node(nodes: usize, f: impl FnOnce()) -> f64 {
    let before = HEAP.current_usage();
    HEAP.reset_peak_usage();
    f();
    (HEAP.peak_usage().saturating_sub(before)) as f64 / nodes as f64
}

fn memory_table() {
    let rt = runtime();
    println!("\npeak heap bytes per node (build + one run, no-op steps):");
    println!(
        "{:<8} {:>8} {:>8} {:>10} {:>8}",
        "shape", "floor", "gantry", "async_dag", "dagx"
    );
    for shape in DAGS {
        let dag = Dag::new(shape);
        let n = dag.nodes;
        let floor = memory_per_node(n, || {
            rt.block_on(run_floor(n, Work::Noop));
        });
        let gantry = memory_per_node(n, || {
            let names = names(n);
            let p = pipeline(&dag, Work::Noop, &names);
            drop(names);
            rt.block_on(run_gantry(&p));
        });
        let async_dag = memory_per_node(n, || {
            rt.block_on(peers::run_async_dag(n, &dag.edges, Work::Noop));
        });
        let dagx = memory_per_node(n, || {
            rt.block_on(peers::run_dagx(n, &dag.edges, Work::Noop));
        });
        println!(
            "{:<8} {floor:>8.0} {gantry:>8.0} {async_dag:>10.0} {dagx:>8.0}",
            dag.label()
        );
    }
    println!(
        "\ngantry's part by phase, bytes per node: building (peak, names included), the built pipeline (retained), one run (peak above the pipeline)"
    );
    for shape in DAGS {
        let dag = Dag::new(shape);
        let n = dag.nodes;
        let names = names(n);
        let base = HEAP.current_usage();
        HEAP.reset_peak_usage();
        let p = pipeline(&dag, Work::Noop, &names);
        let build_peak = (HEAP.peak_usage() - base) as f64 / n as f64;
        let retained = (HEAP.current_usage() - base) as f64 / n as f64;
        let run = memory_per_node(n, || {
            let p = p.clone();
            rt.block_on(run_gantry(&p));
        });
        println!(
            "{:<8} build {build_peak:>6.0}  pipeline {retained:>6.0}  run {run:>6.0}",
            dag.label()
        );
    }
}

/// Median ns per node over 15 runs of each contender, the table docs/PERFORMANCE.md records. "run" columns exclude
/// building the graph (for the peers, the time of their own `run` call); "b+r" columns include it.
fn ns_table() {
    let rt = runtime();
    println!("\nmedian ns per node over 15 runs (run = graph already built; b+r = build + run):");
    println!(
        "{:<14} {:>6} {:>11} {:>11} {:>14} {:>14} {:>9} {:>9}",
        "shape/work",
        "floor",
        "gantry run",
        "gantry b+r",
        "async_dag run",
        "async_dag b+r",
        "dagx run",
        "dagx b+r"
    );
    for shape in DAGS {
        let dag = Dag::new(shape);
        let n = dag.nodes;
        for (work, work_label) in WORKS {
            let names = names(n);
            let built = pipeline(&dag, work, &names);
            let per_node = |d: Duration| d.as_nanos() as f64 / n as f64;
            let median = |f: &mut dyn FnMut() -> Duration| {
                let mut t: Vec<f64> = (0..15).map(|_| per_node(f())).collect();
                t.sort_by(f64::total_cmp);
                t[t.len() / 2]
            };
            let timed = |f: &mut dyn FnMut()| {
                let start = Instant::now();
                f();
                start.elapsed()
            };
            let floor = median(&mut || {
                timed(&mut || {
                    rt.block_on(async { tokio::spawn(run_floor(n, work)).await.unwrap() });
                })
            });
            let run = median(&mut || {
                timed(&mut || {
                    let p = built.clone();
                    rt.block_on(run_gantry(&p));
                })
            });
            let build_run = median(&mut || {
                timed(&mut || {
                    let p = pipeline(&dag, work, &names);
                    rt.block_on(run_gantry(&p));
                })
            });
            let async_dag_run =
                median(&mut || rt.block_on(peers::time_async_dag_run(n, &dag.edges, work)));
            let async_dag = median(&mut || {
                timed(&mut || {
                    rt.block_on(peers::run_async_dag(n, &dag.edges, work));
                })
            });
            let dagx_run = median(&mut || rt.block_on(peers::time_dagx_run(n, &dag.edges, work)));
            let dagx = median(&mut || {
                timed(&mut || {
                    rt.block_on(peers::run_dagx(n, &dag.edges, work));
                })
            });
            let label = format!("{}/{work_label}", dag.label());
            println!(
                "{label:<14} {floor:>6.0} {run:>11.0} {build_run:>11.0} {async_dag_run:>14.0} {async_dag:>14.0} {dagx_run:>9.0} {dagx:>9.0}"
            );
        }
    }
}

/// `GANTRY_BENCH=criterion|tables|memory` runs one part; unset runs all three.
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
    if part.is_empty() || part == "tables" || part == "memory" {
        memory_table();
    }
}
