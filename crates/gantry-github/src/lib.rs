//! Gantry's GitHub triggers: a webhook receiver ([`Webhooks`]) that verifies `X-Hub-Signature-256`, limits body
//! size, ignores what it was not asked for, deduplicates redeliveries, and routes `deployment` events by repository,
//! environment and task to pipelines it runs in the background, with the event's fields as variables.
//! Deployment statuses back to GitHub are planned (issue #6).

mod event;
mod webhook;

pub use event::DeploymentEvent;
pub use webhook::{Factory, Route, Runs, Started, Webhooks, verify_signature};
