//! Gantry's run view: an axum [`Router`](axum::Router) (a tower service) the host mounts under any prefix. This
//! first part serves the run history as JSON and each run's events as server-sent events that resume from the last
//! event a viewer saw; the pages come next (issue #16).
//!
//! - `GET /api/runs?pipeline=&status=&env=&offset=&limit=`: the run list, newest first, with the total.
//! - `GET /api/runs/{id}`: one run's summary.
//! - `GET /api/runs/{id}/events`: the run's events as `text/event-stream`, each with its number as its `id`; a
//!   viewer that reconnects with `Last-Event-ID: n` gets the events after `n`. The stream follows a live run and
//!   ends after its last event.
//!
//! Every text of an event had the run's secrets masked before it was recorded, so nothing here can show one.
//!
//! ```
//! use std::sync::Arc;
//! use gantry_core::MemoryHistory;
//! let history = MemoryHistory::new();
//! let app: axum::Router = axum::Router::new().nest("/deploys", gantry_web::RunView::new(Arc::new(history)).router());
//! # let _ = app;
//! ```

mod api;

pub use api::RunView;
