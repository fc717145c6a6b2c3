//! Manual gates: an [`Approval`] step anywhere in a pipeline waits for a person's decision, taken wherever the host
//! takes it (a web page, a Slack button, an API) through the shared [`Approvals`] handle.
//!
//! A gate is named `<run id>/<step>` (`<step>` namespaced inside sub-pipelines and fan-outs, `deploy[web]/approve`).
//! An approval lets the run go on; a rejection fails the step, so the pipeline's failure path runs; no decision
//! within the step's own timeout fails it too. Each decision records who took it, when, how (`web`, `slack`, `api`)
//! and why, as the step's [`DECISION`] output and as a phase event.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::context::{OutputKey, StepContext};
use crate::error::{StepError, TemplateError};
use crate::step::Step;
use crate::template::Template;

/// A decision on a gate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the gate was approved.
    pub approved: bool,
    /// Who decided (as the host's authorizer named them).
    pub by: String,
    /// Where from: `web`, `slack`, `api`, or the host's word.
    pub via: String,
    /// When.
    pub at: SystemTime,
    /// Why, if they said.
    pub comment: Option<String>,
}

impl Decision {
    /// An approval by `by`, taken through `via`, now.
    pub fn approve(by: impl Into<String>, via: impl Into<String>) -> Self {
        Self { approved: true, by: by.into(), via: via.into(), at: SystemTime::now(), comment: None }
    }

    /// A rejection by `by`, taken through `via`, now.
    pub fn reject(by: impl Into<String>, via: impl Into<String>) -> Self {
        Self { approved: false, ..Self::approve(by, via) }
    }

    /// With a comment.
    #[must_use]
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    pub(crate) fn describe(&self) -> String {
        let verb = if self.approved { "approved" } else { "rejected" };
        let mut text = format!("{verb} by {} via {}", self.by, self.via);
        if let Some(comment) = &self.comment {
            text.push_str(&format!(": {comment}"));
        }
        text
    }
}

/// The output key of an [`Approval`]'s decision.
pub const DECISION: OutputKey<Decision> = OutputKey::new("decision");

/// A gate waiting for a decision, as [`Approvals::pending`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PendingApproval {
    /// The gate's id: `<run id>/<step>`.
    pub id: String,
    /// The run.
    pub run_id: String,
    /// The step.
    pub step: String,
    /// What is asked (the step's rendered message; secrets masked).
    pub message: String,
    /// Since when it waits.
    pub since: SystemTime,
}

/// Why a decision was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// No gate of that id waits (it was decided, timed out, or never existed).
    #[error("no gate `{0}` waits for a decision")]
    NotWaiting(String),
}

struct Waiting {
    pending: PendingApproval,
    decide: oneshot::Sender<Decision>,
}

/// The gates of the runs that share it: what a web page lists and a Slack button decides. Clones share the gates.
///
/// ```
/// use gantry_core::{Approval, Approvals, Context, Decision, Pipeline};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let approvals = Approvals::new();
/// let pipeline = Pipeline::builder("release")
///     .step("approve", Approval::new(&approvals, "ship {{service}}?"))
///     .build()
///     .unwrap();
/// let run = tokio::spawn({
///     let pipeline = pipeline.clone();
///     async move { pipeline.run(Context::new().var("service", "web")).await }
/// });
/// let gate = loop {
///     if let Some(gate) = approvals.pending().into_iter().next() { break gate; }
///     tokio::task::yield_now().await;
/// };
/// assert_eq!(gate.message, "ship web?");
/// approvals.decide(&gate.id, Decision::approve("ana", "api")).unwrap();
/// assert_eq!(run.await.unwrap().unwrap().status, gantry_core::RunStatus::Succeeded);
/// # });
/// ```
#[derive(Clone, Default)]
pub struct Approvals {
    gates: Arc<Mutex<BTreeMap<String, Waiting>>>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals").field("pending", &self.pending().len()).finish()
    }
}

impl Approvals {
    /// No gates yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The gates waiting now, oldest first.
    pub fn pending(&self) -> Vec<PendingApproval> {
        let gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        let mut pending: Vec<PendingApproval> = gates.values().map(|w| w.pending.clone()).collect();
        pending.sort_by_key(|p| p.since);
        pending
    }

    /// Decides the gate `id`: the step waiting on it goes on (approved) or fails (rejected).
    pub fn decide(&self, id: &str, decision: Decision) -> Result<(), ApprovalError> {
        let waiting = self.gates.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        let waiting = waiting.ok_or_else(|| ApprovalError::NotWaiting(id.to_owned()))?;
        // A step that stopped waiting between the removal and now has dropped its receiver: nothing waits.
        waiting.decide.send(decision).map_err(|_| ApprovalError::NotWaiting(id.to_owned()))
    }

    pub(crate) fn open(&self, pending: PendingApproval) -> (Registration, oneshot::Receiver<Decision>) {
        let (decide, decided) = oneshot::channel();
        let id = pending.id.clone();
        self.gates.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), Waiting { pending, decide });
        (Registration { gates: Arc::clone(&self.gates), id }, decided)
    }
}

/// Takes a gate off the list when its step stops waiting, however it stops.
pub(crate) struct Registration {
    gates: Arc<Mutex<BTreeMap<String, Waiting>>>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.gates.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

/// A manual gate: waits for a decision through [`Approvals`]; goes on when approved, fails when rejected (so the
/// failure path runs) or when no decision comes within `timeout`. The message is a template.
#[derive(Clone, Debug)]
pub struct Approval {
    approvals: Approvals,
    message: String,
    timeout: Option<Duration>,
}

impl Approval {
    /// A gate asking `message` (a template: `promote {{service}} {{release}} to production?`).
    pub fn new(approvals: &Approvals, message: impl Into<String>) -> Self {
        Self { approvals: approvals.clone(), message: message.into(), timeout: None }
    }

    /// Fails the step when no decision comes within `timeout` (default: wait until the run is cancelled or the
    /// step's own timeout passes).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

#[async_trait]
impl Step for Approval {
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let message = ctx.redact(&ctx.render(&Template::parse(&self.message)?)?).into_owned();
        let id = format!("{}/{}", ctx.run_id(), ctx.name());
        let pending = PendingApproval {
            id: id.clone(),
            run_id: ctx.run_id().to_owned(),
            step: ctx.name().to_owned(),
            message: message.clone(),
            since: SystemTime::now(),
        };
        let (_registration, decided) = self.approvals.open(pending);
        ctx.phase(crate::Phase::WaitingForApproval, format!("waits for a decision on gate {id}: {message}"));
        let timeout = async {
            match self.timeout {
                Some(timeout) => tokio::time::sleep(timeout).await,
                None => std::future::pending().await,
            }
        };
        let decision = tokio::select! {
            decision = decided => decision.map_err(|_| StepError::new(format!("gate {id} was dropped")))?,
            () = ctx.cancellation().cancelled() => return Err(StepError::cancelled()),
            () = timeout => {
                let waited = self.timeout.unwrap_or_default();
                return Err(StepError::new(format!("no decision within {waited:?} on `{message}`")));
            }
        };
        let told = decision.describe();
        let approved = decision.approved;
        ctx.set_var("decided_by", decision.by.clone());
        ctx.publish(DECISION, decision);
        if approved {
            ctx.phase(crate::Phase::Approved, &told);
            Ok(())
        } else {
            ctx.phase(crate::Phase::Rejected, &told);
            Err(StepError::new(format!("`{message}` {told}")))
        }
    }

    fn describe(&self, ctx: &StepContext) -> String {
        let message = Template::parse(&self.message).map_or_else(|_| self.message.clone(), |t| ctx.render_masked(&t));
        match self.timeout {
            Some(timeout) => format!("waits up to {timeout:?} for a decision: {message}"),
            None => format!("waits for a decision: {message}"),
        }
    }

    fn variables(&self) -> Result<Vec<String>, TemplateError> {
        Ok(Template::parse(&self.message)?.variables().map(str::to_owned).collect())
    }

    fn validate(&self) -> Result<(), String> {
        Template::parse(&self.message).map(|_| ()).map_err(|e| e.to_string())
    }
}
