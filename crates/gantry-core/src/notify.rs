//! Notifiers: what follows a run's events to tell people about it (Slack, chat, pagers), outside the run's path.
//!
//! A notifier reads the run's [`EventStream`] in a task of its own, so a slow or failing notification service never
//! slows a step or fails a run. When the run ends, [`Run::execute`](crate::Run::execute) waits for its notifiers a
//! bounded time ([`Run::notify_grace`](crate::Run::notify_grace)) and lists in the report
//! ([`RunReport::undelivered`](crate::RunReport::undelivered)) what they could not deliver.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::BoxError;
use crate::event::EventStream;

/// The run a notifier follows: its id, its pipeline, and its variables (never its secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunInfo {
    /// The run's id.
    pub run_id: Arc<str>,
    /// The pipeline's name.
    pub pipeline: Arc<str>,
    /// The run's variables as it started (`repo`, `sha`, `environment`, ... for a GitHub-triggered run), with the
    /// run's secrets masked in them.
    pub vars: BTreeMap<String, String>,
    /// What the run was to do as it started: every step (sub-pipelines' and fan-outs' too), what it waits for, and
    /// what the plan expected of it ([`Pipeline::plan`](crate::Pipeline::plan) with the run's context). Run views
    /// draw the pipeline's graph from it.
    pub plan: Option<Arc<crate::Plan>>,
}

impl RunInfo {
    /// A run's description (for notifiers' own tests).
    pub fn new(run_id: impl Into<Arc<str>>, pipeline: impl Into<Arc<str>>, vars: BTreeMap<String, String>) -> Self {
        Self { run_id: run_id.into(), pipeline: pipeline.into(), vars, plan: None }
    }

    /// With the run's plan.
    pub fn with_plan(mut self, plan: Arc<crate::Plan>) -> Self {
        self.plan = Some(plan);
        self
    }

    /// `template` with `{run_id}`, `{pipeline}` and every `{variable}` of the run filled in; `None` if it names a
    /// variable the run does not have (a link that would be wrong is left out rather than sent).
    pub fn fill(&self, template: &str) -> Option<String> {
        let mut out = String::with_capacity(template.len() + 32);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}')? + open;
            let name = &rest[open + 1..close];
            match name {
                "run_id" => out.push_str(&self.run_id),
                "pipeline" => out.push_str(&self.pipeline),
                _ => out.push_str(self.vars.get(name)?),
            }
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// As [`fill`](Self::fill), for a URL: each variable's value is percent-encoded (all but `A-Z a-z 0-9 - . _ ~`
    /// and `/`), so a value cannot end a link early in a chat message or change the URL's structure.
    pub fn fill_url(&self, template: &str) -> Option<String> {
        let encoded = RunInfo {
            run_id: Arc::from(percent_encode(&self.run_id)),
            pipeline: Arc::from(percent_encode(&self.pipeline)),
            vars: self.vars.iter().map(|(k, v)| (k.clone(), percent_encode(v))).collect(),
            plan: None,
        };
        encoded.fill(template)
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A message a notifier could not deliver. Its text is what the run's report lists, after the notifier's name
/// (`slack: the final message: Slack refused \`chat.postMessage\`: channel_not_found`); secrets are never in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The service refused the message, and would refuse it again (a revoked token, an unknown channel, a message
    /// it cannot take).
    #[error("the {what} message: {source}")]
    Refused {
        /// Which message (`start`, `final`, `deploy step`).
        what: String,
        /// Why, as the service said it.
        #[source]
        source: BoxError,
    },
    /// The service could not be reached, or kept failing, for every attempt the notifier made.
    #[error("the {what} message: {source}")]
    Unavailable {
        /// Which message.
        what: String,
        /// What the last attempt met.
        #[source]
        source: BoxError,
    },
}

impl NotifyError {
    /// The service refused message `what`.
    pub fn refused(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Refused { what: what.into(), source: source.into() }
    }

    /// Message `what` could not be delivered for a passing reason.
    pub fn unavailable(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Unavailable { what: what.into(), source: source.into() }
    }

    /// Whether sending the message again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Follows a run's events and tells someone about them.
///
/// `follow` returns what could not be delivered (each with why, secrets never included); the run lists it in its
/// report ([`RunReport::undelivered`](crate::RunReport::undelivered), as text after the notifier's name) and goes
/// on. It should bound its own retries and timeouts: the run waits for it only
/// [`notify_grace`](crate::Run::notify_grace) after the run ends, then drops it.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// A short name for the report (`slack`).
    fn name(&self) -> &str;

    /// Reads `events` to the end ([`Event::RunFinished`](crate::Event::RunFinished)) and notifies.
    async fn follow(&self, run: RunInfo, events: EventStream) -> Vec<NotifyError>;
}
