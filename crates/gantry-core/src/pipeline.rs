//! Pipelines: a DAG of named steps with trigger rules, conditions, timeouts and retries, built and validated by a
//! consuming builder.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::compose::{FanOut, SubPipeline};
use crate::context::Context;
use crate::error::{BuildError, Problem, TemplateError};
use crate::retry::RetryPolicy;
use crate::rule::{Condition, TriggerRule};
use crate::step::Step;

/// What a node holds besides its step, for plans and graph export.
#[derive(Clone, Debug)]
pub(crate) enum Children {
    None,
    /// A sub-pipeline.
    Pipeline(Pipeline),
    /// One sub-run per item, the item in the variable `var`.
    FanOut { var: String, runs: Vec<(String, Pipeline)> },
}

/// A step in a built pipeline.
pub(crate) struct Node {
    pub(crate) name: Arc<str>,
    pub(crate) step: Arc<dyn Step>,
    pub(crate) rule: TriggerRule,
    pub(crate) condition: Option<Condition>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: Option<Box<RetryPolicy>>,
    pub(crate) allow_failure: bool,
    pub(crate) upstream_count: u32,
    pub(crate) children: Children,
}

impl Node {
    /// Whether running it needs more than one call of `Step::run`.
    pub(crate) fn needs_wrapper(&self) -> bool {
        self.timeout.is_some() || self.retry.is_some()
    }
}

struct Inner {
    name: String,
    graph: DiGraph<Node, ()>,
    by_name: HashMap<Arc<str>, u32>,
    roots: Vec<u32>,
}

/// A validated DAG of steps. Cheap to clone and reusable: each run gets its own state.
///
/// ```
/// use gantry_core::{step_fn, Pipeline, TriggerRule};
/// let ok = || step_fn(|_| async { Ok(()) });
/// let pipeline = Pipeline::builder("deploy")
///     .step("preflight", ok())
///     .step("deploy", ok()).after(["preflight"])
///     .step("rollback", ok()).after(["deploy"]).rule(TriggerRule::OnFailure)
///     .step("notify", ok()).after(["deploy", "rollback"]).rule(TriggerRule::Always)
///     .build()?;
/// assert_eq!(pipeline.len(), 4);
/// # Ok::<(), gantry_core::BuildError>(())
/// ```
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

impl Pipeline {
    /// Starts building a pipeline called `name`.
    pub fn builder(name: impl Into<String>) -> PipelineBuilder {
        PipelineBuilder { name: name.into(), specs: Vec::new() }
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The number of steps (a sub-pipeline or fan-out counts as one).
    pub fn len(&self) -> usize {
        self.inner.graph.node_count()
    }

    /// Whether the pipeline has no steps.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The step names in the order they were added.
    pub fn step_names(&self) -> impl Iterator<Item = &str> {
        self.inner.graph.node_weights().map(|n| &*n.name)
    }

    /// The names of the steps `step` depends on.
    pub fn upstream_of(&self, step: &str) -> Option<Vec<&str>> {
        let i = self.index_of(step)?;
        let mut up: Vec<u32> = self.upstream(i).collect();
        up.sort_unstable();
        Some(up.into_iter().map(|u| &*self.node(u as usize).name).collect())
    }

    #[inline]
    pub(crate) fn node(&self, i: usize) -> &Node {
        &self.inner.graph[NodeIndex::new(i)]
    }

    pub(crate) fn index_of(&self, name: &str) -> Option<u32> {
        self.inner.by_name.get(name).copied()
    }

    pub(crate) fn roots(&self) -> &[u32] {
        &self.inner.roots
    }

    #[inline]
    pub(crate) fn downstream(&self, i: u32) -> impl Iterator<Item = u32> + '_ {
        self.inner.graph.neighbors_directed(NodeIndex::new(i as usize), Direction::Outgoing).map(|n| n.index() as u32)
    }

    pub(crate) fn upstream(&self, i: u32) -> impl Iterator<Item = u32> + '_ {
        self.inner.graph.neighbors_directed(NodeIndex::new(i as usize), Direction::Incoming).map(|n| n.index() as u32)
    }

    /// The nodes in an order where every step comes after its upstream steps.
    pub(crate) fn topological(&self) -> Vec<u32> {
        petgraph::algo::toposort(&self.inner.graph, None)
            .map(|order| order.into_iter().map(|n| n.index() as u32).collect())
            .unwrap_or_default()
    }

    fn ancestors(&self, i: u32) -> HashSet<u32> {
        let mut seen = HashSet::new();
        let mut stack: Vec<u32> = self.upstream(i).collect();
        while let Some(n) = stack.pop() {
            if seen.insert(n) {
                stack.extend(self.upstream(n));
            }
        }
        seen
    }

    /// Finds every template variable no run with `context` would have, before anything runs.
    ///
    /// A variable resolves if the context has it, if it is a fan-out's item variable, or if it is `step.key` for an
    /// upstream step of the one that reads it (steps set such variables with [`StepContext::set_var`](crate::StepContext::set_var)).
    pub fn check_variables(&self, context: &Context) -> Vec<Problem> {
        let mut problems = Vec::new();
        self.check_in(&|name| context.knows(name), "", &mut problems);
        problems
    }

    fn check_in(&self, known: &dyn Fn(&str) -> bool, prefix: &str, problems: &mut Vec<Problem>) {
        for i in 0..self.len() as u32 {
            let node = self.node(i as usize);
            let path = || format!("{prefix}{}", node.name);
            let ancestors = std::cell::OnceCell::new();
            let upstream_var = |name: &str| {
                name.split_once('.').is_some_and(|(step, _)| {
                    self.index_of(step).is_some_and(|s| ancestors.get_or_init(|| self.ancestors(i)).contains(&s))
                })
            };
            let here = |name: &str| known(name) || upstream_var(name);
            match &node.children {
                Children::None => match node.step.variables() {
                    Ok(vars) => {
                        for name in vars.into_iter().filter(|v| !here(v)) {
                            let template = format!("{{{{{name}}}}}");
                            let error = TemplateError::UnknownVariable { template, name };
                            problems.push(Problem { step: path(), error });
                        }
                    }
                    Err(error) => problems.push(Problem { step: path(), error }),
                },
                Children::Pipeline(sub) => sub.check_in(&here, &format!("{}/", path()), problems),
                Children::FanOut { var, runs } => {
                    for (item, sub) in runs {
                        let with_item = |name: &str| name == var || here(name);
                        sub.check_in(&with_item, &format!("{}[{item}]/", path()), problems);
                    }
                }
            }
        }
    }
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline").field("name", &self.name()).field("steps", &self.len()).finish()
    }
}

struct Spec {
    name: String,
    step: Arc<dyn Step>,
    after: Vec<String>,
    rule: TriggerRule,
    condition: Option<Condition>,
    timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    allow_failure: bool,
    children: Result<Children, BuildError>,
}

/// Builds a [`Pipeline`]. Adding a step returns a [`StepBuilder`] to configure it.
#[must_use = "a builder does nothing until `build` is called"]
pub struct PipelineBuilder {
    name: String,
    specs: Vec<Spec>,
}

/// Configures the step just added; also continues the pipeline (`step`, `pipeline`, `fan_out`, `build`).
#[must_use = "a builder does nothing until `build` is called"]
pub struct StepBuilder {
    pipeline: PipelineBuilder,
}

impl PipelineBuilder {
    fn push(mut self, name: String, step: Arc<dyn Step>, children: Result<Children, BuildError>) -> StepBuilder {
        self.specs.push(Spec {
            name,
            step,
            after: Vec::new(),
            rule: TriggerRule::AllSuccess,
            condition: None,
            timeout: None,
            retry: None,
            allow_failure: false,
            children,
        });
        StepBuilder { pipeline: self }
    }

    /// Adds a step.
    pub fn step(self, name: impl Into<String>, step: impl Step) -> StepBuilder {
        self.push(name.into(), Arc::new(step), Ok(Children::None))
    }

    /// Adds a step shared with other pipelines.
    pub fn shared_step(self, name: impl Into<String>, step: Arc<dyn Step>) -> StepBuilder {
        self.push(name.into(), step, Ok(Children::None))
    }

    /// Adds a built pipeline as one step. Its steps are named `name/step` in events and reports; it sees this run's
    /// variables, secrets and the outputs of this pipeline's steps.
    pub fn pipeline(self, name: impl Into<String>, pipeline: Pipeline) -> StepBuilder {
        let step = Arc::new(SubPipeline::new(pipeline.clone()));
        self.push(name.into(), step, Ok(Children::Pipeline(pipeline)))
    }

    /// Adds one step that runs a sub-pipeline per item, concurrently, each with the item in the variable `var`:
    /// the way to write multi-service and multi-repo pipelines. Sub-run steps are named `name[item]/step`. The step
    /// fails if any sub-run fails.
    pub fn fan_out<I, S, B>(
        self,
        name: impl Into<String>,
        var: impl Into<String>,
        items: I,
        pipeline_for: impl Fn(&str) -> B,
    ) -> StepBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
        B: Into<PipelineBuilder>,
    {
        let (name, var) = (name.into(), var.into());
        let runs: Result<Vec<(String, Pipeline)>, BuildError> = items
            .into_iter()
            .map(|item| {
                let item: String = item.into();
                let built = pipeline_for(&item).into().build().map_err(|e| BuildError::Nested {
                    pipeline: self.name.clone(),
                    step: format!("{name}[{item}]"),
                    source: Box::new(e),
                })?;
                Ok((item, built))
            })
            .collect();
        let children = runs.and_then(|runs| {
            if runs.is_empty() {
                Err(BuildError::EmptyFanOut { pipeline: self.name.clone(), step: name.clone() })
            } else {
                Ok(Children::FanOut { var: var.clone(), runs })
            }
        });
        let step: Arc<dyn Step> = match &children {
            Ok(Children::FanOut { var, runs }) => Arc::new(FanOut::new(var.clone(), runs.clone())),
            _ => Arc::new(FanOut::new(var, Vec::new())),
        };
        self.push(name, step, children)
    }

    /// Validates and builds the pipeline.
    pub fn build(self) -> Result<Pipeline, BuildError> {
        let pipeline = self.name;
        let mut graph: DiGraph<Node, ()> = DiGraph::with_capacity(self.specs.len(), self.specs.len());
        let mut by_name: HashMap<Arc<str>, u32> = HashMap::with_capacity(self.specs.len());
        let mut afters = Vec::with_capacity(self.specs.len());
        for spec in self.specs {
            if spec.name.is_empty() || spec.name.contains('/') {
                return Err(BuildError::InvalidName { pipeline, step: spec.name });
            }
            let name: Arc<str> = Arc::from(spec.name.as_str());
            let children = spec.children?;
            if by_name.contains_key(&name) {
                return Err(BuildError::DuplicateStep { pipeline, step: spec.name });
            }
            let index = graph.add_node(Node {
                name: Arc::clone(&name),
                step: spec.step,
                rule: spec.rule,
                condition: spec.condition,
                timeout: spec.timeout,
                retry: spec.retry.map(Box::new),
                allow_failure: spec.allow_failure,
                upstream_count: 0,
                children,
            });
            by_name.insert(name, index.index() as u32);
            afters.push(spec.after);
        }
        for (i, after) in afters.iter().enumerate() {
            let mut seen = HashSet::new();
            for dependency in after {
                let Some(&up) = by_name.get(dependency.as_str()) else {
                    let step = graph[NodeIndex::new(i)].name.to_string();
                    return Err(BuildError::UnknownDependency { pipeline, step, dependency: dependency.clone() });
                };
                if seen.insert(up) {
                    graph.add_edge(NodeIndex::new(up as usize), NodeIndex::new(i), ());
                }
            }
        }
        if let Some(cycle) = find_cycle(&graph) {
            return Err(BuildError::Cycle { pipeline, cycle });
        }
        let mut roots = Vec::new();
        for index in graph.node_indices() {
            let count = graph.neighbors_directed(index, Direction::Incoming).count() as u32;
            let node = &mut graph[index];
            node.upstream_count = count;
            if count == 0 {
                if node.rule == TriggerRule::OnFailure {
                    return Err(BuildError::FailureHandlerWithoutUpstream { pipeline, step: node.name.to_string() });
                }
                roots.push(index.index() as u32);
            }
        }
        Ok(Pipeline { inner: Arc::new(Inner { name: pipeline, graph, by_name, roots }) })
    }
}

/// The steps of one cycle, the first repeated at the end, if the graph has one.
fn find_cycle(graph: &DiGraph<Node, ()>) -> Option<Vec<String>> {
    for scc in petgraph::algo::tarjan_scc(graph) {
        let start = scc[0];
        let self_loop = graph.contains_edge(start, start);
        if scc.len() == 1 && !self_loop {
            continue;
        }
        let members: HashSet<NodeIndex> = scc.iter().copied().collect();
        // Walk inside the strongly connected component until a node repeats: that closes a cycle.
        let mut path = vec![start];
        let mut position = HashMap::from([(start, 0usize)]);
        let mut current = start;
        loop {
            let next = graph
                .neighbors_directed(current, Direction::Outgoing)
                .filter(|n| members.contains(n))
                .min()
                .unwrap_or(start);
            if let Some(&at) = position.get(&next) {
                let mut cycle: Vec<String> = path[at..].iter().map(|&n| graph[n].name.to_string()).collect();
                cycle.push(graph[next].name.to_string());
                return Some(cycle);
            }
            position.insert(next, path.len());
            path.push(next);
            current = next;
        }
    }
    None
}

macro_rules! forward_pipeline_methods {
    () => {
        /// Adds another step (see [`PipelineBuilder::step`]).
        pub fn step(self, name: impl Into<String>, step: impl Step) -> StepBuilder {
            self.pipeline.step(name, step)
        }

        /// Adds a shared step (see [`PipelineBuilder::shared_step`]).
        pub fn shared_step(self, name: impl Into<String>, step: Arc<dyn Step>) -> StepBuilder {
            self.pipeline.shared_step(name, step)
        }

        /// Adds a sub-pipeline (see [`PipelineBuilder::pipeline`]).
        pub fn pipeline(self, name: impl Into<String>, pipeline: Pipeline) -> StepBuilder {
            self.pipeline.pipeline(name, pipeline)
        }

        /// Adds a fan-out (see [`PipelineBuilder::fan_out`]).
        pub fn fan_out<I, S, B>(
            self,
            name: impl Into<String>,
            var: impl Into<String>,
            items: I,
            pipeline_for: impl Fn(&str) -> B,
        ) -> StepBuilder
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
            B: Into<PipelineBuilder>,
        {
            self.pipeline.fan_out(name, var, items, pipeline_for)
        }

        /// Validates and builds the pipeline (see [`PipelineBuilder::build`]).
        pub fn build(self) -> Result<Pipeline, BuildError> {
            self.pipeline.build()
        }
    };
}

impl From<StepBuilder> for PipelineBuilder {
    fn from(step: StepBuilder) -> Self {
        step.pipeline
    }
}

impl StepBuilder {
    fn spec(&mut self) -> &mut Spec {
        self.pipeline.specs.last_mut().unwrap_or_else(|| unreachable!("a StepBuilder always has a step"))
    }

    /// Runs the step after these steps (adds to earlier `after` calls).
    pub fn after<I, S>(mut self, steps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spec().after.extend(steps.into_iter().map(Into::into));
        self
    }

    /// Sets the trigger rule (default [`TriggerRule::AllSuccess`]).
    pub fn rule(mut self, rule: TriggerRule) -> Self {
        self.spec().rule = rule;
        self
    }

    /// Runs the step only if the condition holds when its rule allows it to run.
    pub fn when(mut self, condition: Condition) -> Self {
        self.spec().condition = Some(condition);
        self
    }

    /// Fails an attempt that runs longer than `timeout` (the attempt is dropped: what it started must clean up on
    /// drop, as the command step does by killing its process group).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.spec().timeout = Some(timeout);
        self
    }

    /// Retries the step after errors it marks retryable.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.spec().retry = Some(policy);
        self
    }

    /// A failure of this step does not fail the run, and counts as success for the steps after it.
    pub fn allow_failure(mut self) -> Self {
        self.spec().allow_failure = true;
        self
    }

    forward_pipeline_methods!();
}
