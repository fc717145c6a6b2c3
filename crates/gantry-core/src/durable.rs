//! Durable runs: a journal of each run in a [`RunStore`], written before a step's effect is acknowledged to the rest
//! of the run, and [`Run::resume`](crate::Run::resume) after the host died.
//!
//! The journal of a run is an append-only list of [`JournalRecord`]s: the run's start (the pipeline, a fingerprint
//! of its structure, its variables and the *names* of its secrets, never their values), each step's start and end
//! (status, reason, attempts), and the run's end. A step's start is in the store before the step runs, and its end
//! before any step that waits for it starts, so a resumed run knows every step that finished and every step that
//! was in flight.
//!
//! On resume, finished steps are not run again: their recorded outcome is replayed. A step that was in flight is run
//! again only if it declares itself [idempotent](crate::Step::idempotent) (sub-pipelines and fan-outs do: their
//! steps resume inside); otherwise it fails with "interrupted; not idempotent" and the failure path runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;

use crate::context::StepContext;
use crate::error::{StepError, error_chain};
use crate::plan::Plan;
use crate::report::{RunStatus, StepStatus};

/// One record of a run's journal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum JournalRecord {
    /// The run started.
    RunStarted {
        /// The pipeline's name.
        pipeline: String,
        /// The structure it had: a digest per step.
        fingerprint: Vec<StepPrint>,
        /// The run's variables, those that hold no secret.
        vars: BTreeMap<String, String>,
        /// Variables that held a secret of the run: not stored, to be given again on resume.
        sealed_vars: Vec<String>,
        /// The names of the run's secrets (never their values).
        secret_names: Vec<String>,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
    /// A new process took the run over.
    RunResumed {
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
    /// A step started (written before it runs).
    StepStarted {
        /// The step's full name (`deploy[web]/smoke`).
        step: String,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
    /// A step ended (written before any step that waits for it starts).
    StepEnded {
        /// The step's full name.
        step: String,
        /// How it ended.
        status: StepStatus,
        /// Why it failed, secrets masked.
        reason: Option<String>,
        /// How many attempts ran.
        attempts: u32,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
    /// A step published a [durable output](crate::OutputKey::durable) (written with its end).
    Output {
        /// The step's full name.
        step: String,
        /// The output's key.
        key: String,
        /// The value, as JSON.
        value: serde_json::Value,
    },
    /// A step recorded its progress ([`StepContext::checkpoint`]).
    Checkpoint {
        /// The step's full name.
        step: String,
        /// The state, as JSON.
        state: serde_json::Value,
    },
    /// A step set a variable ([`StepContext::set_var`]; written with its end).
    VarSet {
        /// The step's full name.
        step: String,
        /// The variable's key (the step's own: `<step>.<key>` for later steps).
        key: String,
        /// Its value.
        value: String,
    },
    /// The run ended.
    RunEnded {
        /// How.
        status: RunStatus,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
}

/// A step's part of a pipeline's fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepPrint {
    /// The step's full name.
    pub step: String,
    /// A digest of its trigger rule, its condition and what it waits for.
    pub digest: String,
}

/// Why a store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A run of that id is in the store already.
    #[error("the store has a run `{0}` already")]
    Exists(String),
    /// No run of that id is in the store.
    #[error("the store has no run `{0}`")]
    UnknownRun(String),
    /// A record of the journal cannot be read.
    #[error("record {position} of run `{run_id}` cannot be read: {why}")]
    Corrupt {
        /// The run.
        run_id: String,
        /// The record's place in the journal, from 0.
        position: usize,
        /// What is wrong with it.
        why: String,
    },
    /// The store was written by a newer Gantry: its schema is unknown to this one.
    #[error("the store's schema is version {found}; this Gantry knows versions up to {known}: upgrade Gantry")]
    SchemaTooNew {
        /// The store's version.
        found: i64,
        /// The newest this code knows.
        known: i64,
    },
    /// The store cannot be reached or refused the operation.
    #[error("the run store failed: {0}")]
    Unavailable(String),
}

/// Where runs' journals are kept. Appends are durable when they return `Ok`.
#[async_trait]
pub trait RunStore: Send + Sync + 'static {
    /// Starts the journal of a new run with its first record.
    async fn create(&self, run_id: &str, first: &JournalRecord) -> Result<(), StoreError>;

    /// Appends `records` to a run's journal, in order, durably.
    async fn append(&self, run_id: &str, records: &[JournalRecord]) -> Result<(), StoreError>;

    /// A run's journal in order; `None` for a run the store does not know.
    async fn records(&self, run_id: &str) -> Result<Option<Vec<JournalRecord>>, StoreError>;
}

/// Journals in memory: for tests, and for hosts that want a run's journal without durability. Clones share them.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    runs: Arc<Mutex<HashMap<String, Vec<JournalRecord>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RunStore for MemoryStore {
    async fn create(&self, run_id: &str, first: &JournalRecord) -> Result<(), StoreError> {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if runs.contains_key(run_id) {
            return Err(StoreError::Exists(run_id.to_owned()));
        }
        runs.insert(run_id.to_owned(), vec![first.clone()]);
        Ok(())
    }

    async fn append(&self, run_id: &str, records: &[JournalRecord]) -> Result<(), StoreError> {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let journal = runs.get_mut(run_id).ok_or_else(|| StoreError::UnknownRun(run_id.to_owned()))?;
        journal.extend_from_slice(records);
        Ok(())
    }

    async fn records(&self, run_id: &str) -> Result<Option<Vec<JournalRecord>>, StoreError> {
        Ok(self.runs.lock().unwrap_or_else(|e| e.into_inner()).get(run_id).cloned())
    }
}

/// Why a run could not be resumed. A failed resume writes nothing to the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// The store has no run of that id.
    #[error("the store has no run `{0}` to resume")]
    UnknownRun(String),
    /// The run ended: there is nothing to resume.
    #[error("run `{run_id}` ended ({status}): there is nothing to resume")]
    Ended {
        /// The run.
        run_id: String,
        /// How it ended.
        status: RunStatus,
    },
    /// The journal does not start with the run's start.
    #[error("the journal of run `{0}` does not start with the run's start")]
    Unreadable(String),
    /// The pipeline is another one, or its structure changed since the run started.
    #[error(
        "pipeline `{pipeline}` is not the one run `{run_id}` started with: {}",
        differences.join("; ")
    )]
    Changed {
        /// The pipeline given.
        pipeline: String,
        /// The run.
        run_id: String,
        /// What differs, a step at a time (`` `smoke` added ``, `` `deploy` changed ``).
        differences: Vec<String>,
    },
    /// Secrets the run had are missing from the context given.
    #[error("run `{run_id}` needs the secrets {} again (secrets are never stored)", names.join(", "))]
    MissingSecrets {
        /// The run.
        run_id: String,
        /// The secrets' names.
        names: Vec<String>,
    },
    /// Variables that held a secret (so were not stored) are missing from the context given.
    #[error("run `{run_id}` needs the variables {} again (they held a secret, so were not stored)", names.join(", "))]
    MissingVariables {
        /// The run.
        run_id: String,
        /// The variables' names.
        names: Vec<String>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The fingerprint of a pipeline's structure: per step (at every depth), a digest of its name, trigger rule,
/// condition and the steps it waits for. Descriptions, timeouts and retries are left out: tuning them is a reason to
/// resume, not a change of structure.
pub(crate) fn fingerprint(plan: &Plan) -> Vec<StepPrint> {
    use sha2::Digest as _;
    plan.steps
        .iter()
        .map(|step| {
            let mut after = step.after.clone();
            after.sort();
            let text = format!(
                "gantry-fp/1\n{}\n{}\n{}\n{}",
                step.name,
                step.rule.as_str(),
                step.condition.as_deref().unwrap_or(""),
                after.join("\n")
            );
            let digest = sha2::Sha256::digest(text.as_bytes());
            let digest: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            StepPrint { step: step.name.clone(), digest }
        })
        .collect()
}

/// What differs between two fingerprints, a step at a time.
pub(crate) fn differences(recorded: &[StepPrint], now: &[StepPrint]) -> Vec<String> {
    let before: HashMap<&str, &str> = recorded.iter().map(|p| (p.step.as_str(), p.digest.as_str())).collect();
    let after: HashMap<&str, &str> = now.iter().map(|p| (p.step.as_str(), p.digest.as_str())).collect();
    let mut out = Vec::new();
    for p in now {
        match before.get(p.step.as_str()) {
            None => out.push(format!("`{}` added", p.step)),
            Some(d) if *d != p.digest => out.push(format!("`{}` changed", p.step)),
            Some(_) => {}
        }
    }
    for p in recorded {
        if !after.contains_key(p.step.as_str()) {
            out.push(format!("`{}` removed", p.step));
        }
    }
    out
}

pub(crate) fn now_ms() -> u64 {
    let millis = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis();
    u64::try_from(millis).unwrap_or(u64::MAX)
}

/// What a resumed run knows from its journal.
#[derive(Debug, Default)]
pub(crate) struct Resumed {
    /// Steps that ended: their status, reason and attempts.
    pub(crate) ended: HashMap<String, (StepStatus, Option<String>, u32)>,
    /// Steps that started and did not end: the host died while they ran.
    pub(crate) in_flight: HashSet<String>,
    /// The durable outputs of steps that ended, by step and key.
    pub(crate) outputs: HashMap<(String, String), serde_json::Value>,
    /// The variables steps that ended had set, by step.
    pub(crate) vars: HashMap<String, Vec<(String, String)>>,
    /// The last checkpoint of each step that has not ended.
    pub(crate) checkpoints: HashMap<String, serde_json::Value>,
}

/// What a step that was running when its host stopped had done, as [`Step::resume`](crate::Step::resume) gets it.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Interrupted {
    checkpoint: Option<serde_json::Value>,
}

impl Interrupted {
    /// The step's last [checkpoint](StepContext::checkpoint), if it wrote one; an error if it cannot be read as a
    /// `T` (the step's state changed shape between versions).
    pub fn checkpoint<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, StepError> {
        self.checkpoint
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| StepError::new(format!("the step's last checkpoint cannot be read: {e}")))
    }
}

impl Resumed {
    pub(crate) fn from_records(records: &[JournalRecord]) -> Self {
        let mut resumed = Self::default();
        for record in records {
            match record {
                JournalRecord::StepStarted { step, .. } => {
                    resumed.ended.remove(step);
                    resumed.in_flight.insert(step.clone());
                    // What an earlier attempt of the step left is not what it will leave.
                    resumed.outputs.retain(|(s, _), _| s != step);
                    resumed.vars.remove(step);
                }
                JournalRecord::Output { step, key, value } => {
                    resumed.outputs.insert((step.clone(), key.clone()), value.clone());
                }
                JournalRecord::Checkpoint { step, state } => {
                    resumed.checkpoints.insert(step.clone(), state.clone());
                }
                JournalRecord::VarSet { step, key, value } => {
                    resumed.vars.entry(step.clone()).or_default().push((key.clone(), value.clone()));
                }
                JournalRecord::StepEnded { step, status, reason, attempts, .. } => {
                    resumed.in_flight.remove(step);
                    resumed.checkpoints.remove(step);
                    resumed.ended.insert(step.clone(), (*status, reason.clone(), *attempts));
                }
                _ => {}
            }
        }
        resumed
    }
}

/// A run's journaling: the store, and what the run knows from an earlier incarnation.
pub(crate) struct Durable {
    pub(crate) store: Arc<dyn RunStore>,
    pub(crate) resumed: Option<Resumed>,
    /// Records written with the next step end (outputs, variables).
    /// By step: each step's records go with its own end, never with another's.
    pub(crate) pending: Mutex<HashMap<String, Vec<JournalRecord>>>,
}

/// What journaling says before a step's attempts.
pub(crate) enum Before {
    /// Run it (its start is in the store).
    Run,
    /// It ended in an earlier incarnation: this is its outcome, not run again.
    Replay(Result<(), StepError>, u32),
    /// It was running when the host stopped: take it over through `Step::resume` (its start is in the store).
    Resume(Interrupted),
    /// Do not run it: it fails with this error.
    Refuse(StepError),
}

impl Durable {
    /// Before a step's attempts: replays a step that ended, refuses an interrupted step that is not idempotent, and
    /// records the start of a step that runs (durably, before it runs).
    pub(crate) async fn before(&self, ctx: &StepContext) -> Before {
        let step = ctx.name();
        if let Some(resumed) = &self.resumed
            && let Some((status, reason, attempts)) = resumed.ended.get(step)
        {
            for (key, value) in resumed.vars.get(step).into_iter().flatten() {
                ctx.set_var_here(key, value.clone());
            }
            let result = match status {
                StepStatus::Succeeded | StepStatus::Skipped => Ok(()),
                StepStatus::Failed | StepStatus::Cancelled => {
                    Err(StepError::new(reason.clone().unwrap_or_else(|| "failed before the run resumed".into())))
                }
            };
            return Before::Replay(result, *attempts);
        }
        let interrupted = self
            .resumed
            .as_ref()
            .filter(|r| r.in_flight.contains(step))
            .map(|r| Interrupted { checkpoint: r.checkpoints.get(step).cloned() });
        let record = JournalRecord::StepStarted { step: step.to_owned(), at_ms: now_ms() };
        match self.store.append(ctx.run_id(), &[record]).await {
            Ok(()) => interrupted.map_or(Before::Run, Before::Resume),
            Err(e) => Before::Refuse(StepError::new(format!(
                "not started: the run store could not record its start: {}",
                ctx.redact(&e.to_string())
            ))),
        }
    }

    /// After a step's attempts: records its end durably; a failure to record fails the step, so that nothing goes
    /// on from a result the journal does not hold.
    pub(crate) async fn after(
        &self,
        ctx: &StepContext,
        result: Result<(), StepError>,
        status_if_err: StepStatus,
        attempts: u32,
    ) -> Result<(), StepError> {
        let (status, reason) = match &result {
            Ok(()) => (StepStatus::Succeeded, None),
            Err(e) => (status_if_err, Some(ctx.redact(&error_chain(e)).into_owned())),
        };
        let record =
            JournalRecord::StepEnded { step: ctx.name().to_owned(), status, reason, attempts, at_ms: now_ms() };
        // The outputs and variables written so far go with it: durable before anything waits on them.
        let mut records = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(ctx.name()).unwrap_or_default();
        records.push(record);
        match self.store.append(ctx.run_id(), &records).await {
            Ok(()) => result,
            Err(e) => Err(StepError::new(format!(
                "the run store could not record the end of this step: {}",
                ctx.redact(&e.to_string())
            ))),
        }
    }
}

impl Durable {
    /// A step published a durable output: written with the next step end, unless it holds a secret of the run.
    pub(crate) fn output(&self, ctx: &StepContext, key: &str, value: Option<serde_json::Value>) {
        let Some(value) = value else { return };
        if holds_secret(ctx, &value) {
            tracing::debug!(step = %ctx.name(), key, "an output holding a secret is not journaled");
            return;
        }
        let record = JournalRecord::Output { step: ctx.name().to_owned(), key: key.to_owned(), value };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.entry(ctx.name().to_owned()).or_default().push(record);
    }

    /// A step set a variable: written with the next step end, unless it holds a secret of the run.
    pub(crate) fn var(&self, ctx: &StepContext, key: &str, value: &str) {
        if ctx.redact(value) != value {
            return;
        }
        let (step, key, value) = (ctx.name().to_owned(), key.to_owned(), value.to_owned());
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.entry(step.clone()).or_default().push(JournalRecord::VarSet { step, key, value });
    }

    /// The journaled output `key` of the step `step` (its full name), in a resumed run.
    pub(crate) fn restored_output(&self, step: &str, key: &str) -> Option<serde_json::Value> {
        // Only a step that ended has outputs to give: what an interrupted step published is not its result.
        let resumed = self.resumed.as_ref()?;
        resumed.ended.contains_key(step).then(|| resumed.outputs.get(&(step.to_owned(), key.to_owned())).cloned())?
    }
}

impl Durable {
    /// Records a step's progress durably.
    pub(crate) async fn checkpoint(&self, ctx: &StepContext, state: serde_json::Value) -> Result<(), StepError> {
        if holds_secret(ctx, &state) {
            return Err(StepError::new("a checkpoint cannot hold a secret of the run: secrets are never stored"));
        }
        let record = JournalRecord::Checkpoint { step: ctx.name().to_owned(), state };
        self.store.append(ctx.run_id(), &[record]).await.map_err(|e| {
            StepError::new(format!("the run store could not record a checkpoint: {}", ctx.redact(&e.to_string())))
        })
    }
}

/// Whether any text in `value` (its strings and keys, unescaped: JSON escaping could hide a secret holding `"` or
/// `\\` from a check of the encoded text) holds a secret of the run.
fn holds_secret(ctx: &StepContext, value: &serde_json::Value) -> bool {
    let secret = |text: &str| ctx.redact(text) != text;
    match value {
        serde_json::Value::String(text) => secret(text),
        serde_json::Value::Array(items) => items.iter().any(|v| holds_secret(ctx, v)),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| secret(k) || holds_secret(ctx, v)),
        _ => false,
    }
}
