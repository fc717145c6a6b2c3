//! Pipelines: a DAG of named steps with trigger rules, conditions, timeouts and retries, built and validated by a
//! consuming builder.

use std::collections::{HashMap, HashSet};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::compose::{FanOut, SubPipeline, shown_items};
use crate::context::Context;
use crate::error::{BuildError, Problem, TemplateError};
use crate::retry::RetryPolicy;
use crate::rule::{Condition, TriggerRule};
use crate::secret::Redactor;
use crate::step::Step;

/// What a node holds besides its step, for plans and graph export.
#[derive(Clone, Debug)]
pub(crate) enum Children {
    None,
    /// A sub-pipeline.
    Pipeline(Pipeline),
    /// One sub-run per item, the item in the variable `var`.
    FanOut {
        var: String,
        runs: Vec<(String, Pipeline)>,
    },
}

/// A step in a built pipeline. What most steps do not use lives behind one box, so that a pipeline of ten
/// thousand plain steps stays small.
pub(crate) struct Node {
    pub(crate) name: Arc<str>,
    pub(crate) step: Arc<dyn Step>,
    pub(crate) rule: TriggerRule,
    pub(crate) allow_failure: bool,
    pub(crate) upstream_count: u32,
    extras: Option<Box<Extras>>,
}

#[derive(Default)]
struct Extras {
    condition: Option<Condition>,
    timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    children: Option<Children>,
}

static NO_CHILDREN: Children = Children::None;

impl Node {
    fn new(name: Arc<str>, step: Arc<dyn Step>, children: Children) -> Self {
        let extras = match children {
            Children::None => None,
            children => Some(Box::new(Extras { children: Some(children), ..Extras::default() })),
        };
        Self { name, step, rule: TriggerRule::AllSuccess, allow_failure: false, upstream_count: 0, extras }
    }

    fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    pub(crate) fn condition(&self) -> Option<&Condition> {
        self.extras.as_ref().and_then(|e| e.condition.as_ref())
    }

    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.extras.as_ref().and_then(|e| e.timeout)
    }

    pub(crate) fn retry(&self) -> Option<&RetryPolicy> {
        self.extras.as_ref().and_then(|e| e.retry.as_ref())
    }

    pub(crate) fn children(&self) -> &Children {
        self.extras.as_ref().and_then(|e| e.children.as_ref()).unwrap_or(&NO_CHILDREN)
    }

    /// Whether running it needs more than one call of `Step::run`.
    pub(crate) fn needs_wrapper(&self) -> bool {
        self.extras.as_ref().is_some_and(|e| e.timeout.is_some() || e.retry.is_some())
    }
}

struct Inner {
    name: String,
    graph: DiGraph<Node, ()>,
    by_name: HashMap<Arc<str>, u32>,
    roots: Vec<u32>,
    /// The template variables each step reads, asked once: (node, what `Step::variables` said), only for steps
    /// that read any or hold a sub-pipeline.
    templates: std::sync::OnceLock<Vec<StepTemplates>>,
    /// Whether some step has a timeout (its runs then keep a token per step, cancelled at the deadline).
    any_timeout: bool,
}

/// A step and the template variables it reads (or why its templates cannot be parsed).
type StepTemplates = (u32, Result<Vec<String>, TemplateError>);

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
        PipelineBuilder {
            name: name.into(),
            graph: DiGraph::default(),
            by_name: HashMap::new(),
            edges: Vec::new(),
            forward: Vec::new(),
            error: None,
        }
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

    /// Whether some step of this pipeline (not of its sub-pipelines) has a timeout.
    pub(crate) fn any_timeout(&self) -> bool {
        self.inner.any_timeout
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
        self.check_in(&|name| context.knows(name), "", &context.redactor(), &mut problems);
        problems
    }

    fn templates(&self) -> &[StepTemplates] {
        self.inner.templates.get_or_init(|| {
            (0..self.len() as u32)
                .filter_map(|i| {
                    let node = self.node(i as usize);
                    let vars = node.step.variables();
                    let relevant =
                        !matches!(node.children(), Children::None) || !matches!(&vars, Ok(v) if v.is_empty());
                    relevant.then_some((i, vars))
                })
                .collect()
        })
    }

    fn check_in(&self, known: &dyn Fn(&str) -> bool, prefix: &str, secrets: &Redactor, problems: &mut Vec<Problem>) {
        for (i, vars) in self.templates() {
            let i = *i;
            let node = self.node(i as usize);
            let path = || format!("{prefix}{}", node.name);
            let ancestors = std::cell::OnceCell::new();
            let upstream_var = |name: &str| {
                name.split_once('.').is_some_and(|(step, _)| {
                    self.index_of(step).is_some_and(|s| ancestors.get_or_init(|| self.ancestors(i)).contains(&s))
                })
            };
            // `secrets.<step>.<key>`: a secret an upstream step set with `StepContext::set_secret`.
            let upstream_secret = |name: &str| name.strip_prefix("secrets.").is_some_and(&upstream_var);
            let here = |name: &str| known(name) || upstream_var(name) || upstream_secret(name);
            match node.children() {
                Children::None => match vars {
                    Ok(vars) => {
                        for name in vars.iter().filter(|v| !here(v)) {
                            let template = format!("{{{{{name}}}}}");
                            let error = TemplateError::UnknownVariable { template, name: name.clone() };
                            problems.push(Problem { step: path(), error });
                        }
                    }
                    Err(error) => problems.push(Problem { step: path(), error: error.clone() }),
                },
                Children::Pipeline(sub) => sub.check_in(&here, &format!("{}/", path()), secrets, problems),
                Children::FanOut { var, runs } => {
                    let shown = shown_items(runs.iter().map(|(item, _)| item.as_str()), secrets);
                    for ((_, sub), shown) in runs.iter().zip(shown) {
                        let with_item = |name: &str| name == var || here(name);
                        sub.check_in(&with_item, &format!("{}[{shown}]/", path()), secrets, problems);
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

/// Builds a [`Pipeline`]. Adding a step returns a [`StepBuilder`] to configure it.
///
/// Steps go straight into the graph as they are added. A dependency on a step added earlier is an edge at once; one
/// on a step added later is resolved by name in [`build`](Self::build), which also rejects what cannot run.
#[must_use = "a builder does nothing until `build` is called"]
pub struct PipelineBuilder {
    name: String,
    graph: DiGraph<Node, ()>,
    by_name: HashMap<Arc<str>, u32>,
    /// (step, upstream step) pairs, grouped by step in the order steps were added.
    edges: Vec<(u32, u32)>,
    /// Dependencies on steps not added yet: (step, name).
    forward: Vec<(u32, String)>,
    /// The first mistake found while adding steps, reported by `build`.
    error: Option<BuildError>,
}

/// Configures the step just added; also continues the pipeline (`step`, `pipeline`, `fan_out`, `build`).
#[must_use = "a builder does nothing until `build` is called"]
pub struct StepBuilder {
    pipeline: PipelineBuilder,
}

impl PipelineBuilder {
    fn push(mut self, name: Arc<str>, step: Arc<dyn Step>, children: Result<Children, BuildError>) -> StepBuilder {
        let fail = |this: &mut Self, e: BuildError| {
            this.error.get_or_insert(e);
        };
        let children = children.unwrap_or_else(|e| {
            fail(&mut self, e);
            Children::None
        });
        if name.is_empty() || name.contains(['/', '.', '[', ']']) || name.chars().any(char::is_control) {
            let e = BuildError::InvalidName { pipeline: self.name.clone(), step: name.to_string() };
            fail(&mut self, e);
        }
        if let Err(why) = step.validate() {
            let e = BuildError::InvalidStep { pipeline: self.name.clone(), step: name.to_string(), why };
            fail(&mut self, e);
        }
        let index = self.graph.add_node(Node::new(Arc::clone(&name), step, children)).index() as u32;
        if self.by_name.insert(Arc::clone(&name), index).is_some() {
            let e = BuildError::DuplicateStep { pipeline: self.name.clone(), step: name.to_string() };
            fail(&mut self, e);
        }
        StepBuilder { pipeline: self }
    }

    /// Adds a step.
    pub fn step(self, name: impl Into<Arc<str>>, step: impl Step) -> StepBuilder {
        self.push(name.into(), Arc::new(step), Ok(Children::None))
    }

    /// Adds a step shared with other pipelines.
    pub fn shared_step(self, name: impl Into<Arc<str>>, step: Arc<dyn Step>) -> StepBuilder {
        self.push(name.into(), step, Ok(Children::None))
    }

    /// Adds a built pipeline as one step. Its steps are named `name/step` in events and reports; it sees this run's
    /// variables, secrets and the outputs of this pipeline's steps.
    pub fn pipeline(self, name: impl Into<Arc<str>>, pipeline: Pipeline) -> StepBuilder {
        let step = Arc::new(SubPipeline::new(pipeline.clone()));
        self.push(name.into(), step, Ok(Children::Pipeline(pipeline)))
    }

    /// Adds one step that runs a sub-pipeline per item, concurrently, each with the item in the variable `var`:
    /// the way to write multi-service and multi-repo pipelines. Sub-run steps are named `name[item]/step` (an item
    /// that is one of the run's secrets shows masked there). The step fails if any sub-run fails; the others run to
    /// their end. [`build`](Self::build) refuses an empty list, an item given twice, and an item that is empty or
    /// holds `[`, `]` or a control character (they would make step names ambiguous); `acme/api` is a fine item.
    pub fn fan_out<I, S, B>(
        self,
        name: impl Into<Arc<str>>,
        var: impl Into<String>,
        items: I,
        pipeline_for: impl Fn(&str) -> B,
    ) -> StepBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
        B: Into<PipelineBuilder>,
    {
        let (name, var): (Arc<str>, String) = (name.into(), var.into());
        let mut seen = HashSet::new();
        let runs: Result<Vec<(String, Pipeline)>, BuildError> = items
            .into_iter()
            .map(|item| {
                let item: String = item.into();
                let problem = if item.is_empty() {
                    Some("is empty")
                } else if item.contains(['[', ']']) {
                    // `[item]` delimits the item in step names; a `/` inside (`acme/api`) is unambiguous.
                    Some("holds `[` or `]`")
                } else if item.chars().any(char::is_control) {
                    Some("holds a control character")
                } else {
                    None
                };
                if let Some(problem) = problem {
                    let (pipeline, step) = (self.name.clone(), name.to_string());
                    return Err(BuildError::InvalidFanOutItem { pipeline, step, item, problem });
                }
                if !seen.insert(item.clone()) {
                    return Err(BuildError::DuplicateFanOutItem {
                        pipeline: self.name.clone(),
                        step: name.to_string(),
                        item,
                    });
                }
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
                Err(BuildError::EmptyFanOut { pipeline: self.name.clone(), step: name.to_string() })
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

    /// Validates and builds the pipeline: every dependency names a step, no cycle, no failure handler without
    /// upstream steps, no duplicate or invalid names.
    pub fn build(self) -> Result<Pipeline, BuildError> {
        let Self { name: pipeline, mut graph, by_name, mut edges, forward, error } = self;
        if let Some(error) = error {
            return Err(error);
        }
        for (step, dependency) in forward {
            let Some(&up) = by_name.get(dependency.as_str()) else {
                let step = graph[NodeIndex::new(step as usize)].name.to_string();
                return Err(BuildError::UnknownDependency { pipeline, step, dependency });
            };
            edges.push((step, up));
        }
        // Each step's dependencies once: sort (step, upstream) pairs, drop repeats.
        edges.sort_unstable();
        edges.dedup();
        graph.reserve_exact_edges(edges.len());
        for &(step, up) in &edges {
            graph.add_edge(NodeIndex::new(up as usize), NodeIndex::new(step as usize), ());
            graph[NodeIndex::new(step as usize)].upstream_count += 1;
        }
        drop(edges);
        if petgraph::algo::toposort(&graph, None).is_err() {
            let cycle = find_cycle(&graph).unwrap_or_default();
            return Err(BuildError::Cycle { pipeline, cycle });
        }
        let mut roots = Vec::new();
        for index in graph.node_indices() {
            let node = &graph[index];
            if node.upstream_count == 0 {
                if node.rule == TriggerRule::OnFailure {
                    return Err(BuildError::FailureHandlerWithoutUpstream { pipeline, step: node.name.to_string() });
                }
                roots.push(index.index() as u32);
            }
        }
        graph.shrink_to_fit();
        let any_timeout = graph.node_weights().any(|n| n.timeout().is_some());
        let mut by_name = by_name;
        by_name.shrink_to_fit();
        Ok(Pipeline {
            inner: Arc::new(Inner {
                name: pipeline,
                graph,
                by_name,
                roots,
                templates: std::sync::OnceLock::new(),
                any_timeout,
            }),
        })
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
        pub fn step(self, name: impl Into<Arc<str>>, step: impl Step) -> StepBuilder {
            self.pipeline.step(name, step)
        }

        /// Adds a shared step (see [`PipelineBuilder::shared_step`]).
        pub fn shared_step(self, name: impl Into<Arc<str>>, step: Arc<dyn Step>) -> StepBuilder {
            self.pipeline.shared_step(name, step)
        }

        /// Adds a sub-pipeline (see [`PipelineBuilder::pipeline`]).
        pub fn pipeline(self, name: impl Into<Arc<str>>, pipeline: Pipeline) -> StepBuilder {
            self.pipeline.pipeline(name, pipeline)
        }

        /// Adds a fan-out (see [`PipelineBuilder::fan_out`]).
        pub fn fan_out<I, S, B>(
            self,
            name: impl Into<Arc<str>>,
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
    fn last(&self) -> u32 {
        self.pipeline.graph.node_count() as u32 - 1
    }

    fn node(&mut self) -> &mut Node {
        let last = self.last();
        &mut self.pipeline.graph[NodeIndex::new(last as usize)]
    }

    /// Runs the step after these steps (adds to earlier `after` calls). A step may be named before it is added.
    pub fn after<I, S>(mut self, steps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let me = self.last();
        let b = &mut self.pipeline;
        for step in steps {
            match b.by_name.get(step.as_ref()) {
                Some(&up) => b.edges.push((me, up)),
                None => b.forward.push((me, step.as_ref().to_owned())),
            }
        }
        self
    }

    /// Sets the trigger rule (default [`TriggerRule::AllSuccess`]).
    pub fn rule(mut self, rule: TriggerRule) -> Self {
        self.node().rule = rule;
        self
    }

    /// Runs the step only if the condition holds when its rule allows it to run.
    pub fn when(mut self, condition: Condition) -> Self {
        self.node().extras().condition = Some(condition);
        self
    }

    /// Fails an attempt that runs longer than `timeout`. At the deadline the step's cancellation token fires; a step
    /// that asks for time to undo its work ([`Step::interrupt_grace`], deploy steps) is polled that much longer, and
    /// the attempt fails with what it said; then, or at once for other steps, the attempt is dropped (what it started
    /// must clean up on drop, as the command step does by killing its process group).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.node().extras().timeout = Some(timeout);
        self
    }

    /// Retries the step after errors it marks retryable.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.node().extras().retry = Some(policy);
        self
    }

    /// A failure of this step does not fail the run, and counts as a success for the steps after it on the happy
    /// path (`all_success`, `none_failed`); a failure handler after it (`on_failure`) still runs.
    pub fn allow_failure(mut self) -> Self {
        self.node().allow_failure = true;
        self
    }

    forward_pipeline_methods!();
}
