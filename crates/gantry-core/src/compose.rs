//! Pipelines inside pipelines: a sub-pipeline as one step, and fan-out of a pipeline over a list of items.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;

use crate::context::{Scope, StepContext};
use crate::error::StepError;
use crate::executor::drive;
use crate::pipeline::Pipeline;
use crate::secret::Redactor;
use crate::step::Step;

/// How a fan-out's items show in step names (`deploy[item]/step`): with the run's secrets masked, and where masking
/// made two of them alike, numbered by position (`deploy[******** #2]`), so that no two sub-runs share a name.
pub(crate) fn shown_items<'i>(items: impl Iterator<Item = &'i str>, redactor: &Redactor) -> Vec<String> {
    let masked: Vec<(String, bool)> = items
        .map(|item| match redactor.redact(item) {
            std::borrow::Cow::Borrowed(_) => (item.to_owned(), false),
            std::borrow::Cow::Owned(masked) => (masked, true),
        })
        .collect();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (shown, _) in &masked {
        *count.entry(shown.as_str()).or_default() += 1;
    }
    masked
        .iter()
        .enumerate()
        .map(
            |(k, (shown, was_masked))| {
                if *was_masked && count[shown.as_str()] > 1 { format!("{shown} #{}", k + 1) } else { shown.clone() }
            },
        )
        .collect()
}

/// Runs a pipeline as one step of another. Built by [`PipelineBuilder::pipeline`](crate::PipelineBuilder::pipeline).
pub(crate) struct SubPipeline {
    pipeline: Pipeline,
}

impl SubPipeline {
    pub(crate) fn new(pipeline: Pipeline) -> Self {
        Self { pipeline }
    }
}

#[async_trait]
impl Step for SubPipeline {
    /// Its steps resume inside: those that ended are replayed, the others follow their own policy.
    fn idempotent(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let scope = Arc::new(Scope::child(ctx, self.pipeline.clone(), ctx.name(), HashMap::new()));
        let outcome = drive(&scope).await;
        let (result, steps) = outcome.into_step_result(&format!("sub-pipeline `{}`", self.pipeline.name()));
        ctx.scope.add_child_reports(ctx.node(), steps);
        result
    }

    fn describe(&self, _ctx: &StepContext) -> String {
        format!("runs pipeline `{}` ({} steps)", self.pipeline.name(), self.pipeline.len())
    }

    fn interrupt_grace(&self) -> std::time::Duration {
        longest_grace(&self.pipeline)
    }
}

/// The longest time a step of `pipeline` asks for to undo its work when interrupted: what a sub-pipeline holding
/// them needs once its own timeout has passed.
fn longest_grace(pipeline: &Pipeline) -> std::time::Duration {
    (0..pipeline.len()).map(|i| pipeline.node(i).step.interrupt_grace()).max().unwrap_or_default()
}

/// Runs one sub-pipeline per item, concurrently. Built by [`PipelineBuilder::fan_out`](crate::PipelineBuilder::fan_out).
pub(crate) struct FanOut {
    var: String,
    runs: Vec<(String, Pipeline)>,
}

impl FanOut {
    pub(crate) fn new(var: String, runs: Vec<(String, Pipeline)>) -> Self {
        Self { var, runs }
    }
}

#[async_trait]
impl Step for FanOut {
    /// Its sub-runs resume inside: steps that ended are replayed, the others follow their own policy.
    fn idempotent(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let shown = shown_items(self.runs.iter().map(|(item, _)| item.as_str()), &ctx.scope.secrets.redactor);
        let sub_runs = self.runs.iter().zip(&shown).map(|((item, pipeline), shown)| async move {
            let vars = HashMap::from([(self.var.clone(), item.clone())]);
            let prefix = format!("{}[{shown}]", ctx.name());
            let scope = Arc::new(Scope::child(ctx, pipeline.clone(), &prefix, vars));
            let outcome = drive(&scope).await;
            outcome.into_step_result(&format!("`{shown}`"))
        });
        let mut failures = Vec::new();
        let mut cancelled = false;
        for (result, steps) in join_all(sub_runs).await {
            ctx.scope.add_child_reports(ctx.node(), steps);
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == crate::StepErrorKind::Cancelled => cancelled = true,
                Err(e) => failures.push(e.to_string()),
            }
        }
        if cancelled {
            return Err(StepError::cancelled());
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(StepError::new(format!(
                "{} of {} sub-runs failed: {}",
                failures.len(),
                self.runs.len(),
                failures.join("; ")
            )))
        }
    }

    fn describe(&self, _ctx: &StepContext) -> String {
        let items: Vec<&str> = self.runs.iter().map(|(item, _)| item.as_str()).collect();
        format!("fans out over {} = [{}]", self.var, items.join(", "))
    }

    fn interrupt_grace(&self) -> std::time::Duration {
        self.runs.iter().map(|(_, pipeline)| longest_grace(pipeline)).max().unwrap_or_default()
    }
}
