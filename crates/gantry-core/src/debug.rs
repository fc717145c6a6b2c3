//! Debugging a run: hooks around every step, and a debugger with breakpoints that pauses the run for inspection.
//!
//! ```
//! use gantry_core::{step_fn, Breakpoint, Context, Debugger, Pipeline, Resume, Run};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder("p")
//!     .step("build", step_fn(|ctx| async move { ctx.set_var("tag", "v2"); Ok(()) }))
//!     .step("deploy", step_fn(|_| async { Ok(()) })).after(["build"])
//!     .build().unwrap();
//! let (hook, mut debugger) = Debugger::new([Breakpoint::Step("deploy".into())]);
//! let run = tokio::spawn(Run::new(&pipeline, Context::new()).hook(hook).execute());
//! let pause = debugger.next_pause().await.unwrap();
//! assert_eq!(pause.step(), "deploy");
//! assert_eq!(pause.context().var("build.tag").as_deref(), Some("v2"));
//! pause.resume(Resume::Continue);
//! assert!(run.await.unwrap().is_ok());
//! # });
//! ```

use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::context::StepContext;
use crate::error::StepError;

/// Called before and after every step of a run (sub-pipeline steps too). Hooks see the step's context and, after,
/// its result; they run outside the step's timeout.
#[async_trait]
pub trait Hook: Send + Sync + 'static {
    /// Before the step's first attempt.
    async fn before_step(&self, _ctx: &StepContext) {}
    /// After the step's last attempt. The error is as the step returned it, secrets not masked: show it through
    /// [`StepContext::redact`].
    async fn after_step(&self, _ctx: &StepContext, _result: &Result<(), StepError>) {}
}

/// Where the debugger pauses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Breakpoint {
    /// Before the step with this name (the full `outer/inner` name for sub-pipeline steps).
    Step(String),
    /// After any step that failed.
    OnFailure,
}

/// Why the run paused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PauseReason {
    /// A breakpoint on this step.
    Breakpoint,
    /// Stepping: paused at the next step.
    Stepping,
    /// The step failed (with this message, secrets masked).
    Failed(String),
}

/// How to go on from a pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Run until the next step boundary, then pause again.
    Next,
    /// Run until the next breakpoint.
    Continue,
}

/// A paused step. The run waits (the step does not start, or its failure is not yet acted upon) until
/// [`resume`](Pause::resume) is called or the pause is dropped (which continues).
pub struct Pause {
    context: StepContext,
    reason: PauseReason,
    before: bool,
    resume: oneshot::Sender<Resume>,
}

impl Pause {
    /// The step's name.
    pub fn step(&self) -> &str {
        self.context.name()
    }

    /// The step's context, open for inspection: variables, outputs of earlier steps.
    pub fn context(&self) -> &StepContext {
        &self.context
    }

    /// Why the run paused.
    pub fn reason(&self) -> &PauseReason {
        &self.reason
    }

    /// Whether the step is about to start (else it has just finished).
    pub fn is_before(&self) -> bool {
        self.before
    }

    /// Lets the run go on.
    pub fn resume(self, how: Resume) {
        let _ = self.resume.send(how);
    }
}

impl fmt::Debug for Pause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pause").field("step", &self.step()).field("reason", &self.reason).finish_non_exhaustive()
    }
}

/// The handle a person or a test drives a paused run with. Made by [`Debugger::new`] together with the hook to
/// install on the run.
#[derive(Debug)]
pub struct Debugger {
    pauses: mpsc::UnboundedReceiver<Pause>,
}

impl Debugger {
    /// A debugger with these breakpoints, and the hook to pass to [`Run::hook`](crate::Run::hook).
    pub fn new(breakpoints: impl IntoIterator<Item = Breakpoint>) -> (DebugHook, Debugger) {
        let (tx, rx) = mpsc::unbounded_channel();
        let breakpoints: HashSet<Breakpoint> = breakpoints.into_iter().collect();
        let hook = DebugHook {
            on_failure: breakpoints.contains(&Breakpoint::OnFailure),
            breakpoints,
            stepping: AtomicBool::new(false),
            pauses: tx,
            one_at_a_time: tokio::sync::Mutex::new(()),
        };
        (hook, Debugger { pauses: rx })
    }

    /// A debugger that pauses before the first step, for stepping through a run, and after any failure.
    pub fn stepping() -> (DebugHook, Debugger) {
        let (hook, debugger) = Self::new([Breakpoint::OnFailure]);
        hook.stepping.store(true, Ordering::Relaxed);
        (hook, debugger)
    }

    /// The next pause, or `None` once the run is over.
    pub async fn next_pause(&mut self) -> Option<Pause> {
        self.pauses.recv().await
    }
}

/// The hook half of a [`Debugger`].
pub struct DebugHook {
    breakpoints: HashSet<Breakpoint>,
    on_failure: bool,
    stepping: AtomicBool,
    pauses: mpsc::UnboundedSender<Pause>,
    /// Concurrent steps pause one after another.
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl DebugHook {
    async fn pause(&self, ctx: &StepContext, reason: PauseReason, before: bool) {
        let _turn = self.one_at_a_time.lock().await;
        let (resume, answer) = oneshot::channel();
        let pause = Pause { context: ctx.clone(), reason, before, resume };
        if self.pauses.send(pause).is_err() {
            return; // The debugger is gone: run freely.
        }
        let how = answer.await.unwrap_or(Resume::Continue);
        self.stepping.store(how == Resume::Next, Ordering::Relaxed);
    }
}

#[async_trait]
impl Hook for DebugHook {
    async fn before_step(&self, ctx: &StepContext) {
        if self.breakpoints.contains(&Breakpoint::Step(ctx.name().to_owned())) {
            self.pause(ctx, PauseReason::Breakpoint, true).await;
        } else if self.stepping.load(Ordering::Relaxed) {
            self.pause(ctx, PauseReason::Stepping, true).await;
        }
    }

    async fn after_step(&self, ctx: &StepContext, result: &Result<(), StepError>) {
        if let Err(error) = result
            && self.on_failure
        {
            let message = ctx.redact(&crate::error::error_chain(error)).into_owned();
            self.pause(ctx, PauseReason::Failed(message), false).await;
        }
    }
}

impl fmt::Debug for DebugHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DebugHook").field("breakpoints", &self.breakpoints).finish_non_exhaustive()
    }
}

/// A hook from two closures, for quick instrumentation.
pub struct FnHook<B, A> {
    before: B,
    after: A,
}

/// Makes a [`Hook`] from a closure called before each step and one called after.
pub fn hook_fn<B, A>(before: B, after: A) -> FnHook<B, A>
where
    B: Fn(&StepContext) + Send + Sync + 'static,
    A: Fn(&StepContext, &Result<(), StepError>) + Send + Sync + 'static,
{
    FnHook { before, after }
}

#[async_trait]
impl<B, A> Hook for FnHook<B, A>
where
    B: Fn(&StepContext) + Send + Sync + 'static,
    A: Fn(&StepContext, &Result<(), StepError>) + Send + Sync + 'static,
{
    async fn before_step(&self, ctx: &StepContext) {
        (self.before)(ctx);
    }

    async fn after_step(&self, ctx: &StepContext, result: &Result<(), StepError>) {
        (self.after)(ctx, result);
    }
}

/// Keeps a record of the order steps started and finished in; used by tests and examples.
#[derive(Debug, Default)]
pub struct Recorder {
    log: Mutex<Vec<String>>,
}

impl Recorder {
    /// The recorded `start:<step>` and `end:<step>` entries, in order.
    pub fn entries(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl Hook for std::sync::Arc<Recorder> {
    async fn before_step(&self, ctx: &StepContext) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(format!("start:{}", ctx.name()));
    }

    async fn after_step(&self, ctx: &StepContext, _result: &Result<(), StepError>) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(format!("end:{}", ctx.name()));
    }
}
