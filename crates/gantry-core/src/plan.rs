//! Dry runs: what a run would do with a given context, without running anything.

use std::fmt;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::attempt::panic_message;
use crate::compose::shown_items;
use crate::context::{Context, Scope, StepContext};
use crate::event::Journal;
use crate::executor::RunOptions;
use crate::panic::Masking;
use crate::pipeline::{Children, Node, Pipeline};
use crate::rule::TriggerRule;

/// What the plan expects of a step, assuming the steps before it succeed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", content = "why", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PlannedStatus {
    /// It would run.
    Runs,
    /// Its condition is false with this context.
    SkippedByCondition(String),
    /// It would be skipped because a step before it is skipped.
    Skipped(String),
    /// Whether it runs depends on an outcome known only at run time (a failure path).
    DependsOnOutcome(String),
}

/// One step of a [`Plan`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PlannedStep {
    /// The step, `outer/inner` inside sub-pipelines, `fan[item]/inner` inside fan-outs.
    pub name: String,
    /// Its trigger rule.
    pub rule: TriggerRule,
    /// Its condition's label, if any.
    pub condition: Option<String>,
    /// The steps it waits for.
    pub after: Vec<String>,
    /// What the plan expects.
    pub status: PlannedStatus,
    /// What the step says it would do ([`Step::describe`](crate::Step::describe)), secrets masked.
    pub description: String,
}

/// A dry run of a pipeline over a context: every step, in an order that respects dependencies.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// The pipeline.
    pub pipeline: String,
    /// Its steps, sub-pipeline steps after the step that holds them.
    pub steps: Vec<PlannedStep>,
}

impl Plan {
    /// The planned step with this name.
    pub fn step(&self, name: &str) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| s.name == name)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plan for `{}`:", self.pipeline)?;
        let width = self.steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in &self.steps {
            let status = match &s.status {
                PlannedStatus::Runs => "runs".to_owned(),
                PlannedStatus::SkippedByCondition(c) => format!("skipped: condition false: {c}"),
                PlannedStatus::Skipped(why) => format!("skipped: {why}"),
                PlannedStatus::DependsOnOutcome(why) => format!("at run time: {why}"),
            };
            writeln!(f, "  {:<width$}  {:<12} {}", s.name, s.rule.as_str(), status)?;
            writeln!(f, "  {:<width$}  {:<12} -> {}", "", "", s.description)?;
        }
        Ok(())
    }
}

/// The plan's abstract outcome of a step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Abstract {
    Runs,
    Skipped,
    Maybe,
}

impl Pipeline {
    /// What a run with `context` would do: which steps run, which are skipped by their condition, which depend on
    /// outcomes known only at run time, and each step's description. Runs nothing. Conditions are evaluated on
    /// `context`; a condition that reads outputs of steps sees none.
    pub fn plan(&self, context: &Context) -> Plan {
        let scope = Arc::new(Scope::root(
            Arc::from("plan"),
            self.clone(),
            context.clone(),
            Arc::new(Journal::default()),
            CancellationToken::new(),
            Arc::new(RunOptions::default()),
        ));
        let mut steps = Vec::new();
        plan_scope(&scope, &mut steps);
        Plan { pipeline: self.name().to_owned(), steps }
    }
}

/// What the step says it would do; a panic in `describe` is described, not passed on.
fn describe(node: &Node, ctx: &StepContext) -> String {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.step.describe(ctx)))
        .unwrap_or_else(|panic| format!("(`describe` panicked: {})", panic_message(&*panic)))
}

fn plan_scope(scope: &Arc<Scope>, out: &mut Vec<PlannedStep>) {
    let _masking = Masking::enter(&scope.secrets.redactor);
    let pipeline = &scope.pipeline;
    let mut outcome = vec![Abstract::Runs; pipeline.len()];
    for i in pipeline.topological() {
        let node = pipeline.node(i as usize);
        let mut after: Vec<u32> = pipeline.upstream(i).collect();
        after.sort_unstable();
        let ups: Vec<Abstract> = after.iter().map(|&u| outcome[u as usize]).collect();
        let name_of = |a: Abstract| {
            after.iter().zip(&ups).find(|(_, o)| **o == a).map(|(u, _)| pipeline.node(*u as usize).name.to_string())
        };
        let by_rule = match node.rule {
            _ if !ups.is_empty() && ups.iter().all(|o| *o == Abstract::Skipped) && node.rule != TriggerRule::Always => {
                (Abstract::Skipped, Some(PlannedStatus::Skipped("every upstream step is skipped".into())))
            }
            TriggerRule::AllSuccess if ups.contains(&Abstract::Skipped) => {
                let why = format!("upstream `{}` is skipped", name_of(Abstract::Skipped).unwrap_or_default());
                (Abstract::Skipped, Some(PlannedStatus::Skipped(why)))
            }
            TriggerRule::AllSuccess if ups.contains(&Abstract::Maybe) => {
                let why = format!("runs if `{}` runs and succeeds", name_of(Abstract::Maybe).unwrap_or_default());
                (Abstract::Maybe, Some(PlannedStatus::DependsOnOutcome(why)))
            }
            TriggerRule::OnFailure => {
                let why = "runs only if an upstream step fails".to_owned();
                (Abstract::Maybe, Some(PlannedStatus::DependsOnOutcome(why)))
            }
            _ => (Abstract::Runs, None),
        };
        let ctx = StepContext::new(Arc::clone(scope), i);
        let (state, status) = match by_rule {
            (Abstract::Skipped, Some(status)) => (Abstract::Skipped, status),
            (state, status) => match node.condition() {
                Some(condition) if !condition.evaluate(&ctx) => {
                    (Abstract::Skipped, PlannedStatus::SkippedByCondition(scope.redact(condition.label()).into_owned()))
                }
                _ => (state, status.unwrap_or(PlannedStatus::Runs)),
            },
        };
        outcome[i as usize] = state;
        out.push(PlannedStep {
            name: ctx.name().to_owned(),
            rule: node.rule,
            condition: node.condition().map(|c| scope.redact(c.label()).into_owned()),
            after: after.iter().map(|&u| scope.name(u).to_string()).collect(),
            status,
            description: scope.redact(&describe(node, &ctx)).into_owned(),
        });
        match node.children() {
            Children::None => {}
            Children::Pipeline(sub) => {
                let child = Arc::new(Scope::child(&ctx, sub.clone(), ctx.name(), Default::default()));
                plan_scope(&child, out);
            }
            Children::FanOut { var, runs } => {
                let shown = shown_items(runs.iter().map(|(item, _)| item.as_str()), &scope.secrets.redactor);
                for ((item, sub), shown) in runs.iter().zip(shown) {
                    let vars = [(var.clone(), item.clone())].into_iter().collect();
                    let prefix = format!("{}[{shown}]", ctx.name());
                    plan_scope(&Arc::new(Scope::child(&ctx, sub.clone(), &prefix, vars)), out);
                }
            }
        }
    }
}
