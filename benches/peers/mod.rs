//! Adapters that run the benchmark workloads on two peer DAG crates,
//! `async_dag` 0.1.2 and `dagx` 0.3.1.
//!
//! Every node of the benchmark graph becomes one task of the peer. A node receives
//! its parents' `u64` outputs as typed task inputs (the idiomatic way each crate
//! wires dependencies), returns `max(inputs) + 1` (its depth, so nothing overflows),
//! increments a shared counter and, for `Work::YieldOnce`, yields once to tokio.
//! The graph is built inside the measured functions, as for our executor.
//!
//! Fairness notes (read these before publishing numbers):
//! - Neither peer accepts a variable number of inputs. `async_dag` takes at most 12
//!   inputs per task (its tuple impls stop at 12, edge slots are `u8`), `dagx` at most
//!   8 (`depends_on` tuples stop at 8). A node with more parents than that (only the
//!   fan's join node, 10,000 parents) is fed through a balanced tree of reduction
//!   helper tasks of maximal arity, each returning the max of its inputs: for
//!   10,000 parents that is 834 + 70 + 6 = 910 helpers and a 6-input join for
//!   `async_dag`, and 1,250 + 157 + 20 + 3 = 1,430 helpers and a 3-input join for
//!   `dagx`. Helpers do no `Work` and are not counted, but their scheduling cost is
//!   in the figures: it is the price of expressing a 10,000-way join in these crates.
//! - `async_dag` never spawns: the whole graph is polled inside the caller's future
//!   (one `select_all` over the running nodes), so it uses one thread even on a
//!   multi-thread runtime, and that future is `!Send` (it cannot be `tokio::spawn`ed).
//! - `dagx` runs layer by layer (all nodes of a topological layer must finish
//!   before the next layer starts), spawns each node of a multi-node layer with
//!   `tokio::spawn`, and runs single-node layers inline without spawning, so a
//!   chain never touches the runtime's workers.
//! - Both adapters spend the same small extra work turning the edge list into
//!   per-node parent lists.

// dagx passes each input as an argument of the generated task function: arity 8 is dagx's own limit.
#![allow(clippy::too_many_arguments)]
// Each bench binary uses a part of the adapters.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dagx::{DagRunner, Task, TaskHandle, task};

/// The DAG shapes of the benchmark.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Shape {
    /// `i -> i + 1`.
    Chain,
    /// One source, `n - 2` middle nodes, one join node.
    Fan,
    /// Layers of equal width, three parents per node.
    Layered,
}

/// Work done by each node.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Work {
    /// Return immediately.
    Noop,
    /// `tokio::task::yield_now().await` once.
    YieldOnce,
}

/// Edges of a shape (nodes numbered 0..n in topological order) as (node count, (from, to) pairs).
///
/// Chain: `n_or_layers` nodes. Fan: `n_or_layers` nodes, node 0 -> each of 1..=n-2 -> node n-1.
/// Layered: `n_or_layers` layers of `width` nodes; node j of layer k > 0 has parents
/// (j, j+1, j+2) mod width of layer k-1. `width` is ignored for Chain and Fan.
pub(crate) fn edges(shape: Shape, n_or_layers: usize, width: usize) -> (usize, Vec<(usize, usize)>) {
    match shape {
        Shape::Chain => {
            let n = n_or_layers;
            (n, (1..n).map(|i| (i - 1, i)).collect())
        }
        Shape::Fan => {
            let n = n_or_layers;
            assert!(n >= 3, "a fan needs at least 3 nodes");
            let out = (1..n - 1).map(|i| (0, i));
            let join = (1..n - 1).map(|i| (i, n - 1));
            (n, out.chain(join).collect())
        }
        Shape::Layered => {
            assert!(width >= 3, "three distinct parents need width >= 3");
            let mut edges = Vec::with_capacity(3 * width * n_or_layers.saturating_sub(1));
            for k in 1..n_or_layers {
                for j in 0..width {
                    for d in 0..3 {
                        edges.push(((k - 1) * width + (j + d) % width, k * width + j));
                    }
                }
            }
            (n_or_layers * width, edges)
        }
    }
}

/// What a task needs: the counter (`None` for uncounted reduction helpers) and the work.
#[derive(Clone)]
struct Ctx {
    counter: Option<Arc<AtomicUsize>>,
    work: Work,
}

impl Ctx {
    /// Body of every task: a counted node does its work and returns its depth;
    /// a helper just forwards the max of its inputs.
    async fn run<const N: usize>(&self, inputs: [u64; N]) -> u64 {
        let depth = inputs.into_iter().max().unwrap_or(0);
        let Some(counter) = &self.counter else {
            return depth;
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Work::YieldOnce = self.work {
            tokio::task::yield_now().await;
        }
        depth + 1
    }
}

/// Adds the nodes in order through `add(inputs, is_real_node)`. A node with more than
/// `max_inputs` parents receives them through a balanced tree of helper nodes.
fn build<H: Copy>(
    n_nodes: usize,
    edges: &[(usize, usize)],
    max_inputs: usize,
    mut add: impl FnMut(&[H], bool) -> H,
) -> Vec<H> {
    let mut parents = vec![Vec::new(); n_nodes];
    for &(from, to) in edges {
        assert!(from < to && to < n_nodes, "edges must go forward within 0..n");
        parents[to].push(from);
    }
    let mut handles: Vec<H> = Vec::with_capacity(n_nodes);
    let mut inputs = Vec::new();
    for ps in &parents {
        inputs.clear();
        inputs.extend(ps.iter().map(|&p| handles[p]));
        while inputs.len() > max_inputs {
            inputs = inputs.chunks(max_inputs).map(|c| add(c, false)).collect();
        }
        handles.push(add(&inputs, true));
    }
    handles
}

// ----------------------------------------------------------------------------
// async_dag: closures `|a: u64, b: u64, ...| async { .. }` are tasks; parent p
// becomes input slot i of child c via `update_dependency(p, c, i)`.
// ----------------------------------------------------------------------------

/// Largest task arity `async_dag` supports.
const ASYNC_DAG_MAX_INPUTS: usize = 12;

macro_rules! async_dag_task {
    ($graph:expr, $ctx:expr; $($a:ident)*) => {{
        let ctx = $ctx;
        $graph.add_task(move |$($a: u64),*| async move { ctx.run([$($a),*]).await })
    }};
}

/// Adds a task with one `u64` input per parent and wires the parents to it.
fn async_dag_add(g: &mut async_dag::Graph<'static>, ctx: Ctx, ps: &[async_dag::NodeIndex]) -> async_dag::NodeIndex {
    let node = match ps.len() {
        0 => async_dag_task!(g, ctx;),
        1 => async_dag_task!(g, ctx; a),
        2 => async_dag_task!(g, ctx; a b),
        3 => async_dag_task!(g, ctx; a b c),
        4 => async_dag_task!(g, ctx; a b c d),
        5 => async_dag_task!(g, ctx; a b c d e),
        6 => async_dag_task!(g, ctx; a b c d e f),
        7 => async_dag_task!(g, ctx; a b c d e f h),
        8 => async_dag_task!(g, ctx; a b c d e f h i),
        9 => async_dag_task!(g, ctx; a b c d e f h i j),
        10 => async_dag_task!(g, ctx; a b c d e f h i j k),
        11 => async_dag_task!(g, ctx; a b c d e f h i j k l),
        12 => async_dag_task!(g, ctx; a b c d e f h i j k l m),
        n => unreachable!("build() caps arity at {ASYNC_DAG_MAX_INPUTS}, got {n}"),
    };
    for (slot, &p) in ps.iter().enumerate() {
        // The child is new (no children yet), so daggy skips its cycle check.
        g.update_dependency(p, node, slot as u8).expect("well-typed acyclic edge");
    }
    node
}

/// Runs with async_dag; returns (executed node count, output of the last node).
async fn async_dag_impl(
    n_nodes: usize,
    edges: &[(usize, usize)],
    work: Work,
) -> (usize, Option<u64>, std::time::Duration) {
    let counter = Arc::new(AtomicUsize::new(0));
    let mut g = async_dag::Graph::new();
    let handles = build(n_nodes, edges, ASYNC_DAG_MAX_INPUTS, |ps, real| {
        let ctx = Ctx { counter: real.then(|| Arc::clone(&counter)), work };
        async_dag_add(&mut g, ctx, ps)
    });
    let started = std::time::Instant::now();
    g.run().await;
    let ran_in = started.elapsed();
    let last = handles.last().map(|&h| g.get_value::<u64>(h).expect("last node ran"));
    (counter.load(Ordering::Relaxed), last, ran_in)
}

/// Like [`run_async_dag`], but returns how long `Graph::run` alone took (construction excluded).
pub(crate) async fn time_async_dag_run(n_nodes: usize, edges: &[(usize, usize)], work: Work) -> std::time::Duration {
    async_dag_impl(n_nodes, edges, work).await.2
}

/// Runs the DAG with async_dag (every node an async task fed its parents' outputs); returns the executed node count.
pub(crate) async fn run_async_dag(n_nodes: usize, edges: &[(usize, usize)], work: Work) -> usize {
    async_dag_impl(n_nodes, edges, work).await.0
}

// ----------------------------------------------------------------------------
// dagx: a task is a struct with a `#[task]` `run(&mut self, a: &u64, ...)`;
// `add_task(..).depends_on((&pa, &pb, ..))` wires parents by position.
// ----------------------------------------------------------------------------

/// Largest task arity `dagx` supports (`depends_on` tuples stop at 8).
const DAGX_MAX_INPUTS: usize = 8;

macro_rules! dagx_task {
    ($name:ident $(, $a:ident)*) => {
        /// A dagx task with a fixed number of `u64` inputs.
        struct $name(Ctx);

        #[task]
        impl $name {
            async fn run(&mut self $(, $a: &u64)*) -> u64 {
                self.0.run([$(*$a),*]).await
            }
        }
    };
}

dagx_task!(Dagx0);
dagx_task!(Dagx1, a);
dagx_task!(Dagx2, a, b);
dagx_task!(Dagx3, a, b, c);
dagx_task!(Dagx4, a, b, c, d);
dagx_task!(Dagx5, a, b, c, d, e);
dagx_task!(Dagx6, a, b, c, d, e, f);
dagx_task!(Dagx7, a, b, c, d, e, f, h);
dagx_task!(Dagx8, a, b, c, d, e, f, h, i);

/// Adds a task with one `u64` input per parent, depending on the parents in order.
fn dagx_add(dag: &DagRunner, ctx: Ctx, ps: &[TaskHandle<u64>]) -> TaskHandle<u64> {
    match ps {
        [] => dag.add_task(Dagx0(ctx)).into(),
        [a] => dag.add_task(Dagx1(ctx)).depends_on(a),
        [a, b] => dag.add_task(Dagx2(ctx)).depends_on((a, b)),
        [a, b, c] => dag.add_task(Dagx3(ctx)).depends_on((a, b, c)),
        [a, b, c, d] => dag.add_task(Dagx4(ctx)).depends_on((a, b, c, d)),
        [a, b, c, d, e] => dag.add_task(Dagx5(ctx)).depends_on((a, b, c, d, e)),
        [a, b, c, d, e, f] => dag.add_task(Dagx6(ctx)).depends_on((a, b, c, d, e, f)),
        [a, b, c, d, e, f, h] => dag.add_task(Dagx7(ctx)).depends_on((a, b, c, d, e, f, h)),
        [a, b, c, d, e, f, h, i] => dag.add_task(Dagx8(ctx)).depends_on((a, b, c, d, e, f, h, i)),
        _ => unreachable!("build() caps arity at {DAGX_MAX_INPUTS}, got {}", ps.len()),
    }
}

/// Runs with dagx; returns (executed node count, output of the last node).
async fn dagx_impl(n_nodes: usize, edges: &[(usize, usize)], work: Work) -> (usize, Option<u64>, std::time::Duration) {
    let counter = Arc::new(AtomicUsize::new(0));
    let dag = DagRunner::new();
    let handles = build(n_nodes, edges, DAGX_MAX_INPUTS, |ps, real| {
        let ctx = Ctx { counter: real.then(|| Arc::clone(&counter)), work };
        dagx_add(&dag, ctx, ps)
    });
    let started = std::time::Instant::now();
    dag.run(|fut| {
        tokio::spawn(fut);
    })
    .await
    .expect("dagx run");
    let ran_in = started.elapsed();
    let last = handles.last().map(|&h| dag.get(h).expect("last node ran"));
    (counter.load(Ordering::Relaxed), last, ran_in)
}

/// Like [`run_dagx`], but returns how long `DagRunner::run` alone took (construction excluded).
pub(crate) async fn time_dagx_run(n_nodes: usize, edges: &[(usize, usize)], work: Work) -> std::time::Duration {
    dagx_impl(n_nodes, edges, work).await.2
}

/// Runs the DAG with dagx (every node an async task fed its parents' outputs); returns the executed node count.
pub(crate) async fn run_dagx(n_nodes: usize, edges: &[(usize, usize)], work: Work) -> usize {
    dagx_impl(n_nodes, edges, work).await.0
}

/// Runs each peer on tiny graphs of each shape and asserts every node ran and values flowed.
pub(crate) fn self_check() {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("tokio runtime");
    // Fan with 100 nodes exercises the reduction helpers of both peers (98 parents).
    let cases =
        [edges(Shape::Chain, 10, 0), edges(Shape::Fan, 10, 0), edges(Shape::Fan, 100, 0), edges(Shape::Layered, 10, 4)];
    for (n, es) in &cases {
        // Expected output of the last node: number of nodes on the longest path to it.
        let mut depth = vec![1u64; *n];
        let mut sorted = es.clone();
        sorted.sort_unstable();
        for &(from, to) in &sorted {
            depth[to] = depth[to].max(depth[from] + 1);
        }
        for work in [Work::Noop, Work::YieldOnce] {
            let (count, last, _) = rt.block_on(async_dag_impl(*n, es, work));
            assert_eq!((count, last), (*n, depth.last().copied()), "async_dag {work:?}");
            let (count, last, _) = rt.block_on(dagx_impl(*n, es, work));
            assert_eq!((count, last), (*n, depth.last().copied()), "dagx {work:?}");
            assert_eq!(rt.block_on(run_async_dag(*n, es, work)), *n);
            assert_eq!(rt.block_on(run_dagx(*n, es, work)), *n);
        }
    }
}
