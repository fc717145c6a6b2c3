//! Gantry: continuous delivery as a Rust library.
//!
//! This facade re-exports the Gantry crates: [`core`] (always) and, behind features, the integrations as they land.
//! Most programs need only `use gantry::prelude::*`.
//!
//! ```
//! use gantry::prelude::*;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder("hello")
//!     .step("greet", CommandStep::new("echo").arg("hello {{who}}"))
//!     .build()
//!     .unwrap();
//! let report = pipeline.run(Context::new().var("who", "world")).await.unwrap();
//! assert_eq!(report.status, RunStatus::Succeeded);
//! # });
//! ```

pub use gantry_core as core;

/// The names most pipelines use.
pub mod prelude {
    pub use gantry_core::{
        Breakpoint, CommandStep, Condition, Context, Debugger, Event, OutputKey, Pipeline, RetryPolicy, Run, RunReport,
        RunStatus, Secret, Step, StepContext, StepError, StepStatus, TriggerRule, async_trait, step_fn,
    };
}
