//! The workloads of the executor benchmarks, shared by `executor` (time) and `executor_memory` (heap).
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use futures::StreamExt;
use gantry::core::{Context, Pipeline, Run, RunStatus, Step, StepContext, StepError, async_trait};

use crate::peers::{self, Shape, Work};

/// The shapes every contender runs.
pub const DAGS: [Shape; 3] = [Shape::Chain, Shape::Fan, Shape::Layered];
/// The work per node, with its label.
pub const WORKS: [(Work, &str); 2] = [(Work::Noop, "noop"), (Work::YieldOnce, "yield")];

/// A step that does nothing.
pub struct Noop;

#[async_trait]
impl Step for Noop {
    async fn run(&self, _ctx: &StepContext) -> Result<(), StepError> {
        Ok(())
    }
}

/// A step that yields once.
pub struct YieldOnce;

#[async_trait]
impl Step for YieldOnce {
    async fn run(&self, _ctx: &StepContext) -> Result<(), StepError> {
        tokio::task::yield_now().await;
        Ok(())
    }
}

/// One DAG of the benchmark: node count and edges, nodes in topological order.
pub struct Dag {
    pub shape: Shape,
    pub nodes: usize,
    pub edges: Vec<(usize, usize)>,
    /// Parents of each node.
    pub parents: Vec<Vec<usize>>,
}

impl Dag {
    pub fn new(shape: Shape) -> Self {
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

    pub fn label(&self) -> &'static str {
        match self.shape {
            Shape::Chain => "chain",
            Shape::Fan => "fan",
            Shape::Layered => "layered",
        }
    }
}

pub fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i}")).collect()
}

pub fn pipeline(dag: &Dag, work: Work, names: &[String]) -> Pipeline {
    let step = || -> Arc<dyn Step> {
        match work {
            Work::Noop => Arc::new(Noop),
            Work::YieldOnce => Arc::new(YieldOnce),
        }
    };
    let mut b = Pipeline::builder("bench").shared_step(names[0].as_str(), step());
    for (i, parents) in dag.parents.iter().enumerate().skip(1) {
        b = b.shared_step(names[i].as_str(), step()).after(parents.iter().map(|&p| &names[p]));
    }
    b.build().expect("valid DAG")
}

/// Where the run of a pipeline is driven from.
#[derive(Clone, Copy, Debug)]
pub enum Placement {
    /// `tokio::spawn(run.execute())`, as a host application usually does.
    Task,
    /// Driven by the calling thread (`block_on`), where `async_dag` must run (its graph future is not `Send`).
    Here,
}

/// Runs with full semantics: trigger rules, one subscriber reading every event (a task of its own, as a notifier in
/// a host application is), the report built. Call from outside the runtime's workers (`block_on`), as a host does.
pub async fn run_gantry(p: &Pipeline, placement: Placement) -> usize {
    let run = Run::new(p, Context::new());
    let mut events = run.subscribe();
    let reader = tokio::spawn(async move {
        let mut n = 0usize;
        while events.next().await.is_some() {
            n += 1;
        }
        n
    });
    let report = match placement {
        Placement::Task => tokio::spawn(run.execute()).await.unwrap(),
        Placement::Here => run.execute().await,
    };
    let report = report.expect("runs");
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(reader.await.unwrap(), 2 * p.len() + 2);
    report.steps.len()
}

/// The floor: every node called in topological order through a `dyn` trait object, nothing else.
#[async_trait]
pub trait FloorStep: Send + Sync {
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

pub async fn run_floor(nodes: usize, work: Work) -> u64 {
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

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}
