//! Gantry's GitHub triggers: a webhook receiver ([`Webhooks`]) that verifies `X-Hub-Signature-256`, limits body
//! size, ignores what it was not asked for, deduplicates redeliveries, and routes `deployment` events by repository,
//! environment and task to pipelines it runs in the background, with the event's fields as variables.
//! With [`GitHub`], each run reports its deployment status: `in_progress`, then `success`, `failure` or `error`
//! with the log and environment URLs; a GitHub outage never fails the deployment.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::body::Body;
//! use axum::http::{Request, StatusCode};
//! use gantry_core::{Pipeline, Secret, step_fn};
//! use gantry_github::{Route, Webhooks, sign_payload};
//! use tower::ServiceExt;
//!
//! let secret = Secret::new("webhook-secret");
//! let (router, runs) = Webhooks::new(secret.clone())
//!     .route(Route::repository("acme/*").environment("production"), |event| {
//!         let message = format!("deploying {} at {}", event.repository, event.sha);
//!         Pipeline::builder("release")
//!             .step("deploy", step_fn(move |ctx| { ctx.log(&message); async { Ok(()) } }))
//!             .build()
//!             .expect("a valid pipeline")
//!     })
//!     .router_with_runs();
//!
//! // What GitHub sends for a deployment of acme/shop to production:
//! let body = br#"{"repository": {"full_name": "acme/shop"},
//!     "deployment": {"id": 1, "sha": "4f2a9c1", "ref": "main", "environment": "production"}}"#.to_vec();
//! let request = Request::post("/")
//!     .header("x-github-event", "deployment")
//!     .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
//!     .header("x-hub-signature-256", sign_payload(&secret, &body))
//!     .body(Body::from(body))?;
//! assert_eq!(router.oneshot(request).await?.status(), StatusCode::ACCEPTED);
//!
//! let finished = runs.take().remove(0).run.await?;
//! assert!(finished.report.is_some_and(|r| r.status == gantry_core::RunStatus::Succeeded));
//! # Ok(()) }
//! ```

mod app;
mod error;
mod event;
mod statuses;
mod webhook;

pub use error::{DeploymentState, GitHubError, StatusError};
pub use event::{BodyError, DeploymentEvent};
pub use statuses::GitHub;
pub use webhook::{Factory, Finished, Route, Runs, Started, Webhooks, sign_payload, verify_signature};
