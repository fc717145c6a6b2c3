//! Gantry's run view: an axum [`Router`](axum::Router) (a tower service) the host mounts under any prefix, to
//! *understand* deployments: what runs now, why something failed, what the canary evidence was.
//!
//! Pages (HTML; their script and style are compiled into the crate, nothing is fetched from elsewhere):
//! - `/`: the run list (pipeline, trigger, commit, environment, status, start, duration), with filters and paging.
//! - `/runs/{id}`: a run: the pipeline's graph (a layered layout computed here, drawn as SVG, coloured live by
//!   status; sub-pipelines and fan-outs folded until clicked), each step's attempts and duration, a live log per
//!   step, the deployment's phases, the plan as the run started, the run's links (commit, GitHub deployment, the
//!   host's dashboards), and the gates that wait for a decision, with Approve and Reject for the viewers the
//!   authorizer allows.
//!   Slack and GitHub messages link here: give them `https://<host><prefix>/runs/{run_id}`.
//! - `/runs/{id}/canary`: each analysis (per metric the baseline's and the canary's points on one chart, the
//!   verdict, the effect with its interval, the decision and when it was taken) and the traffic: the weight over
//!   time, and for blue/green which version is active, which is the preview, and the route.
//!
//! The API under them:
//! - `GET /api/runs?pipeline=&status=&env=&offset=&limit=`: the run list, newest first, with the total.
//! - `GET /api/runs/{id}`, `/api/runs/{id}/plan`: one run's summary, and its plan.
//! - `GET /api/runs/{id}/events`: the run's events as `text/event-stream`, each with its number as its `id` and the
//!   time it was recorded as `recorded_at`; a viewer that reconnects with `Last-Event-ID: n` gets the events after `n`.
//! - `GET /api/gates?run=`: the gates waiting for a decision; `POST /api/gates/decide` (`{"gate", "approve",
//!   "comment"}`) decides one.
//!
//! Without an [`Authorizer`] the view is read-only: every state-changing request is refused. With one, a decision
//! also needs the anti-forgery token the page carries (a cookie sent back in a header), and records who decided
//! (the authorizer's answer), when, and `web`. Every text of an event had the run's secrets masked before it was
//! recorded, and pages put text into the document as text, never as markup.
//!
//! ```
//! use std::sync::Arc;
//! use gantry_core::{Approvals, MemoryHistory};
//! let (history, approvals) = (MemoryHistory::new(), Approvals::new());
//! let view = gantry_web::RunView::new(Arc::new(history))
//!     .approvals(&approvals)
//!     // The host's login: here, a header its proxy sets.
//!     .authorizer(|request: &axum::http::request::Parts, _: &gantry_web::Action| {
//!         request.headers.get("x-user").and_then(|v| v.to_str().ok()).map(str::to_owned)
//!     })
//!     .link("Datadog", "https://app.datadoghq.com/dashboard/web?tpl_var_service={service}");
//! let app: axum::Router = axum::Router::new().nest("/deploys", view.router());
//! # let _ = app;
//! ```

mod api;
mod auth;
mod graph;
mod html;
mod view;

pub use auth::{Action, Authorizer};
pub use view::RunView;
