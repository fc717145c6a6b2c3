//! Gantry's GitHub triggers: a webhook receiver ([`Webhooks`]) that verifies `X-Hub-Signature-256`, limits body
//! size, ignores what it was not asked for, deduplicates redeliveries, and routes `deployment` events by repository,
//! environment and task to pipelines it runs in the background, with the event's fields as variables.
//! With [`GitHub`], each run reports its deployment status: `in_progress`, then `success`, `failure` or `error`
//! with the log and environment URLs; a GitHub outage never fails the deployment.

mod app;
mod error;
mod event;
mod statuses;
mod webhook;

pub use error::GitHubError;
pub use event::{BodyError, DeploymentEvent};
pub use statuses::GitHub;
pub use webhook::{Factory, Finished, Route, Runs, Started, Webhooks, sign_payload, verify_signature};
