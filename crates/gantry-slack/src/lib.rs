//! Gantry's Slack notifications: a run's story in Slack, with links, that never fails or slows the run.
//!
//! [`Slack`] is a [`Notifier`](gantry_core::Notifier): give it to a run with
//! [`Run::notify`](gantry_core::Run::notify). With a bot token, the run's first message is a header (the pipeline,
//! the repository and environment, links to the run, the commit, the GitHub deployment and a dashboard); canary
//! verdicts with their numbers, waits for approval, rollbacks and the end are replies in its thread; at the end
//! the header is updated to the final state. Through an incoming webhook, each is a message of its own.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use gantry_core::{Context, Pipeline, Run, Secret, step_fn};
//! use gantry_slack::Slack;
//! use gantry_testkit::slack::{BOT_TOKEN, SlackSim};
//!
//! let slack_api = SlackSim::start().await?; // stands in for https://slack.com/api
//! let slack = Slack::bot(Secret::new(BOT_TOKEN), "#deploys")
//!     .api_url(slack_api.api_url())
//!     .run_url("https://ci.example.com/runs/{run_id}");
//! let pipeline = Pipeline::builder("release").step("deploy", step_fn(|_| async { Ok(()) })).build()?;
//! let context = Context::new().var("repo", "acme/shop").var("sha", "4f2a9c1e").var("environment", "production");
//! let report = Run::new(&pipeline, context).notify(slack).execute().await?;
//!
//! assert!(report.undelivered.is_empty());
//! let header = &slack_api.messages()[0];
//! assert!(header.all_text().contains("succeeded"), "the header shows the final state");
//! assert_eq!(slack_api.thread(&header.ts).len(), 1, "and the end is told in its thread");
//! # Ok(()) }
//! ```

mod error; // Why a message was not delivered: shown in the run report's `undelivered`.
mod interactions;
mod message;
mod notifier;
mod transport;

pub use interactions::{APPROVE_ACTION, Interactions, REJECT_ACTION, Refusal, SlackUser, approval_buttons, sign};
pub use message::Notify;
pub use notifier::Slack;
