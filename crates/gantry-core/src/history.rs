//! The history of runs: what a run list shows (pipeline, trigger variables, status, start, duration, step counts)
//! and each run's events, for a view that opens a run later or resumes a live one from an event number.
//!
//! [`RunHistory`] is the trait a store implements; [`MemoryHistory`] keeps the newest runs in memory. A history
//! follows runs as a [`Notifier`] does (`Run::notify(history.clone())`), so a run records itself without any step's
//! help, and a slow store never slows a run.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use futures::StreamExt;

use crate::event::{Event, EventStream};
use crate::notify::{Notifier, NotifyError, RunInfo};
use crate::plan::Plan;
use crate::report::{RunStatus, StepStatus};

/// One run as a run list shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct RunSummary {
    /// The run's id.
    pub run_id: Arc<str>,
    /// The pipeline's name.
    pub pipeline: Arc<str>,
    /// The run's variables as it started (`repo`, `sha`, `environment`, the trigger's), secrets masked.
    pub vars: BTreeMap<String, String>,
    /// When it started.
    pub started_at: SystemTime,
    /// How it ended; `None` while it runs.
    pub status: Option<RunStatus>,
    /// How long it took; `None` while it runs.
    pub duration: Option<Duration>,
    /// Steps finished so far, by status: succeeded, failed, skipped, cancelled.
    pub steps: [usize; 4],
}

/// Which runs to list: filters, newest first, and a page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunQuery {
    /// Only this pipeline's runs.
    pub pipeline: Option<String>,
    /// Only runs that ended so (`None`: any, running ones included).
    pub status: Option<RunStatus>,
    /// Only runs whose variable has this value (`environment` = `production`).
    pub var: Option<(String, String)>,
    /// How many of the matching runs to skip.
    pub offset: usize,
    /// How many to give at most (0: 50).
    pub limit: usize,
}

impl RunQuery {
    /// Every run, the first page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only `pipeline`'s runs.
    #[must_use]
    pub fn pipeline(mut self, pipeline: impl Into<String>) -> Self {
        self.pipeline = Some(pipeline.into());
        self
    }

    /// Only runs that ended with `status`.
    #[must_use]
    pub fn status(mut self, status: RunStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only runs whose variable `name` is `value`.
    #[must_use]
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.var = Some((name.into(), value.into()));
        self
    }

    /// The page: skip `offset` runs, give at most `limit`.
    #[must_use]
    pub fn page(mut self, offset: usize, limit: usize) -> Self {
        self.offset = offset;
        self.limit = limit;
        self
    }

    fn matches(&self, run: &RunSummary) -> bool {
        self.pipeline.as_deref().is_none_or(|p| &*run.pipeline == p)
            && self.status.is_none_or(|s| run.status == Some(s))
            && self.var.as_ref().is_none_or(|(k, v)| run.vars.get(k) == Some(v))
    }
}

/// A page of runs, and how many match in all.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct RunPage {
    /// The runs of the page, newest first.
    pub runs: Vec<RunSummary>,
    /// How many runs match the query.
    pub total: usize,
}

/// A store of runs: the run list and each run's events.
#[async_trait::async_trait]
pub trait RunHistory: Send + Sync + 'static {
    /// The runs that match `query`, newest first.
    async fn list(&self, query: &RunQuery) -> RunPage;

    /// One run's summary.
    async fn get(&self, run_id: &str) -> Option<RunSummary>;

    /// A run's events from number `from` on (0 for all; the number of an event is its place in the run, so a
    /// viewer resumes after the last it saw), each with when it was recorded, or `None` for a run the history does
    /// not know.
    async fn events(&self, run_id: &str, from: usize) -> Option<Vec<RecordedEvent>>;

    /// What the run was to do as it started ([`RunInfo::plan`]), if the history has it (`None` by default).
    async fn plan(&self, run_id: &str) -> Option<Arc<Plan>> {
        let _ = run_id;
        None
    }
}

/// An event of a run, with when the history recorded it. As JSON: the event's fields and `recorded_at`, in
/// milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct RecordedEvent {
    /// When it was recorded (a moment after it happened: events are published in batches).
    #[serde(rename = "recorded_at", serialize_with = "unix_millis")]
    pub at: SystemTime,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

impl RecordedEvent {
    /// `event`, recorded at `at`.
    pub fn new(at: SystemTime, event: Event) -> Self {
        Self { at, event }
    }
}

fn unix_millis<S: serde::Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let millis = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis();
    s.serialize_u64(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// Records a run that ends without its end (its future dropped, which also stops its followers) as cancelled when
/// the history stops following it, so that viewers do not wait for an end that never comes.
struct Unended {
    history: MemoryHistory,
    run_id: Arc<str>,
}

impl Drop for Unended {
    fn drop(&mut self) {
        self.history.with_record(&self.run_id, |record| {
            if record.summary.status.is_none() {
                let duration = record.summary.started_at.elapsed().unwrap_or_default();
                record.summary.status = Some(RunStatus::Cancelled);
                record.summary.duration = Some(duration);
                let run_id = Arc::clone(&self.run_id);
                let end = Event::RunFinished { run_id, status: RunStatus::Cancelled, duration };
                record.events.push(RecordedEvent::new(SystemTime::now(), end));
            }
        });
    }
}

struct Record {
    summary: RunSummary,
    plan: Option<Arc<Plan>>,
    events: Vec<RecordedEvent>,
}

/// The newest runs in memory (1,000 by default) with up to 100,000 events each. Clones share the runs.
///
/// ```
/// use gantry_core::{CommandStep, Context, MemoryHistory, Pipeline, Run, RunHistory, RunQuery};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let history = MemoryHistory::new();
/// let pipeline = Pipeline::builder("release").step("build", CommandStep::new("true")).build().unwrap();
/// Run::new(&pipeline, Context::new().var("environment", "staging")).notify(history.clone()).execute().await.unwrap();
/// let page = history.list(&RunQuery::new().var("environment", "staging")).await;
/// assert_eq!((page.total, &*page.runs[0].pipeline), (1, "release"));
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryHistory {
    runs: Arc<RwLock<VecDeque<Record>>>,
    capacity: usize,
    events_per_run: usize,
}

impl std::fmt::Debug for MemoryHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let runs = self.runs.read().unwrap_or_else(|e| e.into_inner()).len();
        f.debug_struct("MemoryHistory").field("runs", &runs).field("capacity", &self.capacity).finish()
    }
}

impl Default for MemoryHistory {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryHistory {
    /// Keeps the newest 1,000 runs and 100,000 events of each.
    pub fn new() -> Self {
        Self::with_capacity(1_000, 100_000)
    }

    /// Keeps the newest `runs` runs and `events_per_run` events of each. Past that, a run's log lines and build steps
    /// are dropped and its other events still kept: its structure (steps' starts and ends, phases, verdicts) and its
    /// end matter more than the last log lines of a runaway step.
    pub fn with_capacity(runs: usize, events_per_run: usize) -> Self {
        Self { runs: Arc::default(), capacity: runs.max(1), events_per_run }
    }

    fn with_record<T>(&self, run_id: &str, f: impl FnOnce(&mut Record) -> T) -> Option<T> {
        let mut runs = self.runs.write().unwrap_or_else(|e| e.into_inner());
        runs.iter_mut().rev().find(|r| &*r.summary.run_id == run_id).map(f)
    }

    fn start(&self, run: &RunInfo) {
        let summary = RunSummary {
            run_id: Arc::clone(&run.run_id),
            pipeline: Arc::clone(&run.pipeline),
            vars: run.vars.clone(),
            started_at: SystemTime::now(),
            status: None,
            duration: None,
            steps: [0; 4],
        };
        let mut runs = self.runs.write().unwrap_or_else(|e| e.into_inner());
        if runs.len() == self.capacity {
            runs.pop_front();
        }
        runs.push_back(Record { summary, plan: run.plan.clone(), events: Vec::new() });
    }
}

#[async_trait::async_trait]
impl RunHistory for MemoryHistory {
    async fn list(&self, query: &RunQuery) -> RunPage {
        let runs = self.runs.read().unwrap_or_else(|e| e.into_inner());
        let limit = if query.limit == 0 { 50 } else { query.limit };
        let matching = runs.iter().rev().filter(|r| query.matches(&r.summary));
        let total = matching.clone().count();
        let runs = matching.skip(query.offset).take(limit).map(|r| r.summary.clone()).collect();
        RunPage { runs, total }
    }

    async fn get(&self, run_id: &str) -> Option<RunSummary> {
        let runs = self.runs.read().unwrap_or_else(|e| e.into_inner());
        runs.iter().rev().find(|r| &*r.summary.run_id == run_id).map(|r| r.summary.clone())
    }

    async fn events(&self, run_id: &str, from: usize) -> Option<Vec<RecordedEvent>> {
        let runs = self.runs.read().unwrap_or_else(|e| e.into_inner());
        let record = runs.iter().rev().find(|r| &*r.summary.run_id == run_id)?;
        Some(record.events.get(from..).map(<[RecordedEvent]>::to_vec).unwrap_or_default())
    }

    async fn plan(&self, run_id: &str) -> Option<Arc<Plan>> {
        let runs = self.runs.read().unwrap_or_else(|e| e.into_inner());
        runs.iter().rev().find(|r| &*r.summary.run_id == run_id)?.plan.clone()
    }
}

#[async_trait::async_trait]
impl Notifier for MemoryHistory {
    fn name(&self) -> &str {
        "history"
    }

    async fn follow(&self, run: RunInfo, mut events: EventStream) -> Vec<NotifyError> {
        self.start(&run);
        let _end = Unended { history: self.clone(), run_id: Arc::clone(&run.run_id) };
        while let Some(event) = events.next().await {
            let cap = self.events_per_run;
            self.with_record(&run.run_id, |record| {
                match &event {
                    Event::RunStarted { at, .. } => record.summary.started_at = *at,
                    Event::StepFinished { status, .. } => {
                        let slot = match status {
                            StepStatus::Succeeded => 0,
                            StepStatus::Failed => 1,
                            StepStatus::Skipped => 2,
                            StepStatus::Cancelled => 3,
                        };
                        record.summary.steps[slot] += 1;
                    }
                    Event::RunFinished { status, duration, .. } => {
                        record.summary.status = Some(*status);
                        record.summary.duration = Some(*duration);
                    }
                    _ => {}
                }
                // Past the cap only output is dropped: the run's structure and its end are always kept.
                let output = matches!(event, Event::Log { .. } | Event::BuildStep { .. });
                if record.events.len() < cap || !output {
                    record.events.push(RecordedEvent::new(SystemTime::now(), event.clone()));
                }
            });
        }
        Vec::new()
    }
}
