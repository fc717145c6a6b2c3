//! Heap per node of every contender of `benches/executor.rs`: the peak of live heap bytes while building the graph
//! and running it once, above what was live before, divided by the node count. A counting global allocator makes
//! every allocation slower, so this lives apart from the timing bench. Run: `cargo bench --bench executor_memory`.
#![allow(clippy::print_stdout)] // The bench prints the table docs/PERFORMANCE.md records.

mod common;
mod peers;

use common::{DAGS, Dag, Placement, names, pipeline, run_floor, run_gantry, runtime};
use peak_alloc::PeakAlloc;
use peers::Work;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

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
            rt.block_on(run_gantry(&p, Placement::Task));
        });
        let async_dag = memory_per_node(n, || {
            rt.block_on(peers::run_async_dag(n, &dag.edges, Work::Noop));
        });
        let dagx = memory_per_node(n, || {
            rt.block_on(peers::run_dagx(n, &dag.edges, Work::Noop));
        });
        println!("{:<8} {floor:>8.0} {gantry:>8.0} {async_dag:>10.0} {dagx:>8.0}", dag.label());
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
            rt.block_on(run_gantry(&p, Placement::Task));
        });
        println!("{:<8} build {build_peak:>6.0}  pipeline {retained:>6.0}  run {run:>6.0}", dag.label());
    }
}

fn main() {
    memory_table();
}
