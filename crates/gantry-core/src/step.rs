//! The [`Step`] trait and closure steps.

use std::fmt;
use std::future::Future;

use async_trait::async_trait;

use crate::context::StepContext;
use crate::error::StepError;

/// A unit of work in a pipeline.
///
/// Implement it in the host application for custom steps; the executor calls [`run`](Step::run) once per attempt.
/// A step watches [`StepContext::cancellation`] and returns [`StepError::cancelled`] soon after it fires; a step that
/// does not is dropped after the run's grace period, so anything it started must be cleaned up on drop.
///
/// ```
/// use gantry_core::{async_trait, Step, StepContext, StepError};
///
/// struct Greet;
///
/// #[async_trait]
/// impl Step for Greet {
///     async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
///         let who = ctx.require_var("service")?;
///         ctx.log(format!("hello, {who}"));
///         Ok(())
///     }
///
///     fn describe(&self, _ctx: &StepContext) -> String {
///         "greets the service".into()
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Gantry step",
    label = "this is not a step",
    note = "implement `gantry_core::Step` (with `#[async_trait]`), or wrap an async closure in `gantry_core::step_fn`"
)]
#[async_trait]
pub trait Step: Send + Sync + 'static {
    /// Does the work. Errors marked [`retryable`](StepError::retryable) may be retried by the pipeline.
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError>;

    /// What the step would do, for plans and dry runs. Render templates with [`StepContext::render_masked`].
    fn describe(&self, _ctx: &StepContext) -> String {
        "custom step".to_owned()
    }

    /// The template variables the step will read, checked against the run's variables before anything runs.
    /// An unparsable template is reported here too.
    fn variables(&self) -> Result<Vec<String>, crate::TemplateError> {
        Ok(Vec::new())
    }

    /// How long the step needs to undo its work once its timeout has passed (a deploy step restoring the last good
    /// version). At the deadline its [cancellation token](StepContext::cancellation) fires and the attempt is polled
    /// this much longer before it is dropped; it then fails as timed out, with what the step said. Zero (the default)
    /// drops the attempt at the deadline.
    fn interrupt_grace(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Whether running the step again from its start, after its host stopped while it ran, is safe (it converges, or
    /// checks what it did before acting). A [durable run](crate::Run::resume) runs such a step again when it resumes;
    /// a step that is not idempotent (the default) fails instead, with "interrupted; not idempotent", and the failure
    /// path runs.
    fn idempotent(&self) -> bool {
        false
    }

    /// Takes over an attempt that was running when the host stopped, when a [durable run](crate::Run::resume)
    /// resumes: `interrupted` has the step's last [checkpoint](StepContext::checkpoint). A step that can find what
    /// it started (a Job by its name, a rollout by its revision) re-attaches here. The default runs the step again
    /// if it is [idempotent](Self::idempotent), and otherwise fails it ("interrupted; not idempotent"), so the
    /// failure path runs.
    async fn resume(&self, ctx: &StepContext, interrupted: &crate::Interrupted) -> Result<(), StepError> {
        let _ = interrupted;
        if self.idempotent() {
            self.run(ctx).await
        } else {
            Err(StepError::new(
                "interrupted; not idempotent: it was running when the host stopped, and running it again could repeat \
                 what it did",
            ))
        }
    }

    /// Checks the step's own configuration when it is added to a pipeline: an `Err` (saying what is wrong) makes
    /// [`PipelineBuilder::build`](crate::PipelineBuilder::build) fail with
    /// [`BuildError::InvalidStep`](crate::BuildError::InvalidStep), before anything runs. The default accepts.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A step made from an async closure; see [`step_fn`].
pub struct FnStep<F> {
    f: F,
    description: String,
    idempotent: bool,
}

/// Makes a step from an async closure that gets a clone of the [`StepContext`].
///
/// ```
/// use gantry_core::{step_fn, Pipeline};
/// let pipeline = Pipeline::builder("hello")
///     .step("say", step_fn(|ctx| async move {
///         ctx.log("hello");
///         Ok(())
///     }))
///     .build()
///     .unwrap();
/// # let _ = pipeline;
/// ```
pub fn step_fn<F, Fut>(f: F) -> FnStep<F>
where
    F: Fn(StepContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), StepError>> + Send + 'static,
{
    FnStep { f, description: "closure step".to_owned(), idempotent: false }
}

impl<F> FnStep<F> {
    /// Sets what [`Step::describe`] says.
    #[must_use]
    pub fn describe(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Says that running the closure again after an interruption is safe ([`Step::idempotent`]).
    #[must_use]
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
}

#[async_trait]
impl<F, Fut> Step for FnStep<F>
where
    F: Fn(StepContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), StepError>> + Send + 'static,
{
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        (self.f)(ctx.clone()).await
    }

    fn describe(&self, _ctx: &StepContext) -> String {
        self.description.clone()
    }

    fn idempotent(&self) -> bool {
        self.idempotent
    }
}

impl<F> fmt::Debug for FnStep<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnStep").field("description", &self.description).finish_non_exhaustive()
    }
}
