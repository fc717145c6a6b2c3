//! Gantry's terminal view: a run told compactly, one line per thing that happened, each line fitting the terminal
//! (80 columns unless `COLUMNS` says otherwise). On a terminal the running steps have spinners; elsewhere (CI logs,
//! pipes) the same lines are printed plainly.
//!
//! What it shows: each step's end (`✔`, `✘`, `⏭`, `■`) with its duration; a retry; each analysis verdict once, on
//! one line (the metric lines only in [`details`](TerminalView::details) mode); a rollback or abort by what it
//! restored; a failed step's reason unless its verdict already said it. Log lines and build steps appear in details mode.
//!
//! ```
//! use gantry_core::{CommandStep, Context, Pipeline, Run};
//! use gantry_term::TerminalView;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder("release").step("build", CommandStep::new("true")).build().unwrap();
//! let run = Run::new(&pipeline, Context::new());
//! let view = tokio::spawn(TerminalView::new().plain().follow(run.subscribe()));
//! run.execute().await.unwrap();
//! let lines = view.await.unwrap();
//! assert!(lines.iter().any(|l| l.starts_with("✔ build")));
//! # });
//! ```

mod render;
mod view;

pub use render::{Renderer, fit};
pub use view::TerminalView;
