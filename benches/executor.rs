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
//! After the timings, the bench prints peak heap bytes per node for each contender (build + run) and the ns/node
//! table that docs/PERFORMANCE.md records. Run: `cargo bench --bench executor`.

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
        Self { shape, nodes, edges, parents }
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
    let mut b = Pipeline::builder("bench").shared_step(names[0].clone(), step());
    for (i, parents) in dag.parents.iter().enumerate().skip(1) {
        b = b.shared_step(names[i].clone(), step()).after(parents.iter().map(|&p| names[p].clone()));
    }
    b.build().expect("valid DAG")
}

/// Runs with full semantics: one subscriber draining every event; the report is built.
async fn run_gantry(p: &Pipeline) -> usize {
    let run = Run::new(p, Context::new());
    let mut events = run.subscribe();
    let drain = tokio::spawn(async move {
        let mut n = 0usize;
        while events.next().await.is_some() {
            n += 1;
        }
        n
    });
    let report = run.execute().await.expect("runs");
    assert_eq!(report.status, RunStatus::Succeeded);
    let events = drain.await.unwrap();
    debug_assert!(events >= 2 * p.len());
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
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
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
            group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
            let n = dag.nodes;
            group.bench_function(BenchmarkId::from_parameter("floor"), |b| {
                b.iter(|| rt.block_on(async { tokio::spawn(run_floor(n, work)).await.unwrap() }))
            });
            let names = names(n);
            let built = pipeline(&dag, work, &names);
            group.bench_function(BenchmarkId::from_parameter("gantry/run"), |b| {
                b.iter(|| {
                    let p = built.clone();
                    rt.block_on(async move { tokio::spawn(async move { run_gantry(&p).await }).await.unwrap() })
                })
            });
            group.bench_function(BenchmarkId::from_parameter("gantry/build+run"), |b| {
                b.iter(|| {
                    let p = pipeline(&dag, work, &names);
                    rt.block_on(async move { tokio::spawn(async move { run_gantry(&p).await }).await.unwrap() })
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
    println!("{:<8} {:>8} {:>8} {:>10} {:>8}", "shape", "floor", "gantry", "async_dag", "dagx");
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
            rt.block_on(async { tokio::spawn(async move { run_gantry(&p).await }).await.unwrap() });
        });
        let async_dag = memory_per_node(n, || {
            rt.block_on(peers::run_async_dag(n, &dag.edges, Work::Noop));
        });
        let dagx = memory_per_node(n, || {
            rt.block_on(peers::run_dagx(n, &dag.edges, Work::Noop));
        });
        println!("{:<8} {floor:>8.0} {gantry:>8.0} {async_dag:>10.0} {dagx:>8.0}", dag.label());
    }
}

/// A quick median-of-runs ns/node table printed for docs/PERFORMANCE.md (criterion's own report has the detail).
fn ns_table() {
    let rt = runtime();
    println!("\nmedian ns per node over 15 runs:");
    println!("{:<14} {:>8} {:>10} {:>16} {:>10} {:>8}", "shape/work", "floor", "gantry/run", "gantry/build+run", "async_dag", "dagx");
    for shape in DAGS {
        let dag = Dag::new(shape);
        let n = dag.nodes;
        for (work, work_label) in WORKS {
            let names = names(n);
            let built = pipeline(&dag, work, &names);
            let median = |f: &mut dyn FnMut()| {
                let mut t: Vec<f64> = (0..15)
                    .map(|_| {
                        let start = Instant::now();
                        f();
                        start.elapsed().as_nanos() as f64 / n as f64
                    })
                    .collect();
                t.sort_by(f64::total_cmp);
                t[t.len() / 2]
            };
            let floor = median(&mut || {
                rt.block_on(async { tokio::spawn(run_floor(n, work)).await.unwrap() });
            });
            let run = median(&mut || {
                let p = built.clone();
                rt.block_on(async move { tokio::spawn(async move { run_gantry(&p).await }).await.unwrap() });
            });
            let build_run = median(&mut || {
                let p = pipeline(&dag, work, &names);
                rt.block_on(async move { tokio::spawn(async move { run_gantry(&p).await }).await.unwrap() });
            });
            let async_dag = median(&mut || {
                rt.block_on(peers::run_async_dag(n, &dag.edges, work));
            });
            let dagx = median(&mut || {
                rt.block_on(peers::run_dagx(n, &dag.edges, work));
            });
            let label = format!("{}/{work_label}", dag.label());
            println!("{label:<14} {floor:>8.0} {run:>10.0} {build_run:>16.0} {async_dag:>10.0} {dagx:>8.0}");
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--tables-only");
    if !quick {
        let mut c = Criterion::default().configure_from_args();
        bench(&mut c);
        c.final_summary();
    }
    ns_table();
    memory_table();
}
