//! The core of Gantry: continuous delivery pipelines as plain Rust code.
//!
//! A [`Pipeline`] is a DAG of named [`Step`]s. Each step runs when its [`TriggerRule`] and optional [`Condition`]
//! allow, with a timeout, retries and `allow_failure` as configured. A [`Run`] executes a pipeline concurrently,
//! streams [`Event`]s to any number of subscribers, masks every [`Secret`] in whatever it shows, and ends with a
//! [`RunReport`]. [`Pipeline::plan`] is a dry run; [`Pipeline::to_dot`] and [`Pipeline::to_mermaid`] draw the graph;
//! [`Debugger`] pauses a run at breakpoints.
//!
//! This crate knows nothing of Kubernetes, clouds or vendors: those come as steps from sibling crates.
//!
//! ```
//! use std::time::Duration;
//! use gantry_core::{step_fn, CommandStep, Condition, Context, Pipeline, RetryPolicy, RunStatus, StepError, TriggerRule};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder("release")
//!     .step("build", CommandStep::new("echo").args(["building", "{{service}}"]))
//!     .step("push", step_fn(|ctx| async move {
//!         if ctx.attempt() < 2 { return Err(StepError::new("registry busy").retryable()); }
//!         Ok(())
//!     }))
//!         .after(["build"])
//!         .retry(RetryPolicy::fixed(2, Duration::from_millis(1)))
//!     .step("deploy-prod", step_fn(|_| async { Ok(()) }))
//!         .after(["push"])
//!         .when(Condition::var_equals("env", "production"))
//!     .step("rollback", step_fn(|_| async { Ok(()) }))
//!         .after(["deploy-prod"])
//!         .rule(TriggerRule::OnFailure)
//!     .build()
//!     .unwrap();
//!
//! let report = pipeline.run(Context::new().var("service", "api").var("env", "staging")).await.unwrap();
//! assert_eq!(report.status, RunStatus::Succeeded);
//! assert_eq!(report.step("push").unwrap().attempts, 2);
//! assert_eq!(report.step("deploy-prod").unwrap().reason.as_deref(), Some("condition false: env == production"));
//! # });
//! ```

pub mod analysis;
mod approval;
mod attempt;
mod command;
mod compose;
mod context;
mod debug;
mod durable;
mod error;
mod event;
mod executor;
mod export;
mod history;
pub mod http;
mod image;
mod notify;
mod panic;
mod pipeline;
mod plan;
mod report;
mod retry;
mod rule;
mod running;
mod secret;
mod step;
pub mod strategy;
mod template;
pub mod time;

pub use async_trait::async_trait;
pub use tokio_util::sync::CancellationToken;

pub use approval::{Approval, ApprovalError, Approvals, DECISION, Decision, PendingApproval};
pub use command::CommandStep;
pub use context::{Context, OutputKey, StepContext};
pub use debug::{Breakpoint, DebugHook, Debugger, FnHook, Hook, Pause, PauseReason, Recorder, Resume, hook_fn};
pub use durable::{Interrupted, JournalRecord, MemoryStore, ResumeError, RunStore, StepPrint, StoreError};
pub use error::{BoxError, BuildError, ContextError, Problem, RunError, StepError, StepErrorKind, TemplateError};
pub use event::{BuildLayer, Event, EventStream, LayerSource, LogStream, Phase, TrafficRoute};
pub use executor::Run;
pub use history::{MemoryHistory, RecordedEvent, RunHistory, RunPage, RunQuery, RunSummary};
pub use image::{ImageRef, ImageRefError};
pub use notify::{Notifier, NotifyError, RunInfo};
pub use pipeline::{Pipeline, PipelineBuilder, StepBuilder};
pub use plan::{Plan, PlannedStatus, PlannedStep};
pub use report::{RunReport, RunStatus, StepReport, StepStatus};
pub use retry::RetryPolicy;
pub use rule::{Condition, TriggerRule};
pub use secret::{MASK, Redactor, Secret};
pub use step::{FnStep, Step, step_fn};
pub use template::Template;
