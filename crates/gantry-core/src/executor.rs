//! The executor: runs a pipeline's steps as soon as their trigger rules allow, concurrently.
//!
//! One coordinator future drives a run. It keeps, per step, the count of unfinished upstream steps and how the
//! finished ones ended; when the count reaches zero the step's rule and condition decide whether it runs. A started
//! step is polled once inline: a step that completes at once never touches the set of running futures. Running steps
//! are polled from a set of running futures (`running.rs`) inside the coordinator's task, so a run costs no task spawns; steps that need
//! a thread of their own spawn one.
//!
//! Cancellation: the run's token fires; running steps see it through [`StepContext::cancellation`]; the coordinator
//! starts nothing new and waits up to the grace period for them; steps still running then are dropped and marked
//! cancelled; then every `always` step whose upstream steps are finished runs (with a token that is not cancelled) and
//! every other step is skipped. The grace period does not bound those `always` steps: give them a timeout.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

// Step durations are read from the CPU's time-stamp counter where it is invariant (else the OS clock): half the
// cost of `std::time::Instant` on the machines measured (docs/PERFORMANCE.md), once or twice per step.
use quanta::Instant;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::attempt::{Attempted, attempts, panic_message};
use crate::context::{Context, Scope, StepContext};
use crate::debug::Hook;
use crate::error::{RunError, StepError, error_chain};
use crate::event::{Event, EventStream, Journal, Raw};
use crate::notify::{Notifier, RunInfo};
use crate::panic::Masking;
use crate::pipeline::{Children, Node, Pipeline};
use crate::report::{RunReport, RunStatus, StepReport, StepStatus};
use crate::rule::{TriggerRule, Upstream, Verdict};
use crate::running::RunningSet;

/// Settings shared by a run and its sub-runs.
pub(crate) struct RunOptions {
    /// Places for steps under `max_concurrency`, shared by the run and all its sub-runs; `None`: unbounded.
    pub(crate) limit: Option<Arc<tokio::sync::Semaphore>>,
    pub(crate) grace: Duration,
    pub(crate) hooks: Vec<Arc<dyn Hook>>,
    /// The run's journaling, for a durable run.
    pub(crate) durable: Option<Arc<crate::durable::Durable>>,
}

/// The notifiers of a run (top level only: sub-runs report through their parent's events).
struct Notifiers {
    list: Vec<Arc<dyn Notifier>>,
    grace: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { limit: None, grace: Duration::from_secs(30), hooks: Vec::new(), durable: None }
    }
}

/// One run of a pipeline: configure it, subscribe to its events, then [`execute`](Run::execute) it.
///
/// ```
/// use gantry_core::{step_fn, Context, Pipeline, Run, RunStatus};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let pipeline = Pipeline::builder("hello")
///     .step("greet", step_fn(|ctx| async move {
///         ctx.log(format!("hello, {}", ctx.require_var("who")?));
///         Ok(())
///     }))
///     .build()
///     .unwrap();
/// let run = Run::new(&pipeline, Context::new().var("who", "world"));
/// let events = run.subscribe();
/// let report = run.execute().await.unwrap();
/// assert_eq!(report.status, RunStatus::Succeeded);
/// # drop(events);
/// # });
/// ```
#[must_use = "a run does nothing until `execute` is awaited"]
pub struct Run {
    pipeline: Pipeline,
    context: Context,
    options: RunOptions,
    journal: Arc<Journal>,
    token: CancellationToken,
    run_id: Arc<str>,
    notifiers: Notifiers,
    store: Option<Arc<dyn crate::durable::RunStore>>,
    resumed: Option<crate::durable::Resumed>,
}

impl Run {
    /// A run of `pipeline` starting from `context`.
    pub fn new(pipeline: &Pipeline, context: Context) -> Self {
        Self {
            pipeline: pipeline.clone(),
            context,
            options: RunOptions::default(),
            journal: Arc::new(Journal::default()),
            token: CancellationToken::new(),
            run_id: Arc::from(new_run_id()),
            notifiers: Notifiers { list: Vec::new(), grace: Duration::from_secs(2) },
            store: None,
            resumed: None,
        }
    }

    /// Journals the run in `store` (durable runs): each step's start is stored before it runs and its end before
    /// any step that waits for it starts, so that [`resume`](Self::resume) can take the run over after the host
    /// died. Secrets' values are never stored.
    pub fn store(mut self, store: Arc<dyn crate::durable::RunStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The run `run_id` of `pipeline`, journaled in `store`, taken over after its host stopped: steps that ended
    /// are not run again (their outcome is replayed); a step that was running is run again only if it is
    /// [idempotent](crate::Step::idempotent), else it fails ("interrupted; not idempotent") and the failure path
    /// runs. `context` gives the run's secrets again (and variables that held one); the run's other variables come
    /// from the journal. Refused, writing nothing, if the run ended, if the pipeline's structure changed (naming the
    /// steps that differ), or if a secret is missing.
    ///
    /// Resume a run only once its host is gone: two processes running one run would both act.
    pub async fn resume(
        pipeline: &Pipeline,
        store: Arc<dyn crate::durable::RunStore>,
        run_id: &str,
        context: Context,
    ) -> Result<Self, crate::durable::ResumeError> {
        use crate::durable::{JournalRecord, ResumeError, Resumed, differences, fingerprint};
        let records = store.records(run_id).await?.ok_or_else(|| ResumeError::UnknownRun(run_id.to_owned()))?;
        if let Some(JournalRecord::RunEnded { status, .. }) =
            records.iter().rev().find(|r| matches!(r, JournalRecord::RunEnded { .. }))
        {
            return Err(ResumeError::Ended { run_id: run_id.to_owned(), status: *status });
        }
        let Some(JournalRecord::RunStarted {
            pipeline: name,
            fingerprint: recorded,
            vars,
            sealed_vars,
            secret_names,
            ..
        }) = records.first()
        else {
            return Err(ResumeError::Unreadable(run_id.to_owned()));
        };
        let missing: Vec<String> = secret_names.iter().filter(|n| !context.has_secret(n)).cloned().collect();
        if !missing.is_empty() {
            return Err(ResumeError::MissingSecrets { run_id: run_id.to_owned(), names: missing });
        }
        let missing: Vec<String> = sealed_vars.iter().filter(|n| context.get_var(n).is_none()).cloned().collect();
        if !missing.is_empty() {
            return Err(ResumeError::MissingVariables { run_id: run_id.to_owned(), names: missing });
        }
        let mut full = context.clone();
        for (k, v) in vars {
            if context.get_var(k).is_none() {
                full = full.var(k.clone(), v.clone());
            }
        }
        let mut diffs = differences(recorded, &fingerprint(&pipeline.plan(&full)));
        if name != pipeline.name() {
            diffs.insert(0, format!("the run is of pipeline `{name}`"));
        }
        if !diffs.is_empty() {
            return Err(ResumeError::Changed {
                pipeline: pipeline.name().to_owned(),
                run_id: run_id.to_owned(),
                differences: diffs,
            });
        }
        let mut run = Self::new(pipeline, full).with_id(run_id).store(store);
        run.resumed = Some(Resumed::from_records(&records));
        Ok(run)
    }

    /// Tells `notifier` about the run: it follows the run's events in a task of its own, so it never slows or fails
    /// the run; what it could not deliver is listed in [`RunReport::undelivered`].
    pub fn notify(mut self, notifier: impl Notifier) -> Self {
        self.notifiers.list.push(Arc::new(notifier));
        self
    }

    /// Like [`notify`](Self::notify), for a notifier shared between runs.
    pub fn notify_shared(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.list.push(notifier);
        self
    }

    /// How long, once the run has ended, `execute` waits for notifiers to deliver their last messages (default
    /// 2 s: a healthy chat service takes milliseconds, and a failing one should not hold the report back). A
    /// notifier still busy then is stopped and reported as undelivered.
    pub fn notify_grace(mut self, grace: Duration) -> Self {
        self.notifiers.grace = grace;
        self
    }

    /// Runs at most `n` steps at once (at least 1), across the whole run: the steps of its sub-pipelines and fan-outs
    /// count, the sub-pipeline and fan-out steps that hold them do not. Within a (sub-)run steps get a place in the
    /// order they became ready; (sub-)runs queue for places first come, first served. Unbounded by default.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        let n = n.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self.options.limit = Some(Arc::new(tokio::sync::Semaphore::new(n)));
        self
    }

    /// How long a cancelled run waits for running steps to stop before dropping them (default 30 s).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.options.grace = grace;
        self
    }

    /// Calls `hook` before and after every step, sub-pipeline steps included.
    pub fn hook(mut self, hook: impl Hook) -> Self {
        self.options.hooks.push(Arc::new(hook));
        self
    }

    /// Uses `id` as the run's id instead of a generated one (e.g. a GitHub deployment id).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.run_id = Arc::from(id.into());
        self
    }

    /// Cancels the run when `token` is cancelled (replaces the run's own token).
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.token = token;
        self
    }

    /// The run's id.
    pub fn id(&self) -> &str {
        &self.run_id
    }

    /// A token that cancels the run.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// A stream of every event of the run from now on, ending with [`Event::RunFinished`]. Any number of
    /// subscribers each get every event, in order.
    pub fn subscribe(&self) -> EventStream {
        self.journal.subscribe()
    }

    /// Runs the pipeline to the end. Fails only if the run cannot start (templates with unknown variables); a
    /// failed step is reported in the [`RunReport`].
    pub async fn execute(self) -> Result<RunReport, RunError> {
        // However this ends (an error, the future dropped), readers' streams end too.
        let _close = CloseOnDrop(Arc::clone(&self.journal));
        let problems = self.pipeline.check_variables(&self.context);
        if !problems.is_empty() {
            return Err(RunError::Templates { pipeline: self.pipeline.name().to_owned(), problems });
        }
        let mut options = self.options;
        if let Some(store) = self.store {
            use crate::durable::{Durable, JournalRecord, now_ms};
            let started = match &self.resumed {
                Some(_) => store.append(&self.run_id, &[JournalRecord::RunResumed { at_ms: now_ms() }]).await,
                None => {
                    let redactor = self.context.redactor();
                    let (mut vars, mut sealed_vars) = (std::collections::BTreeMap::new(), Vec::new());
                    for (k, v) in self.context.vars() {
                        match redactor.redact(v) {
                            std::borrow::Cow::Borrowed(_) => {
                                vars.insert(k.clone(), v.clone());
                            }
                            std::borrow::Cow::Owned(_) => sealed_vars.push(k.clone()),
                        }
                    }
                    let record = JournalRecord::RunStarted {
                        pipeline: self.pipeline.name().to_owned(),
                        fingerprint: crate::durable::fingerprint(&self.pipeline.plan(&self.context)),
                        vars,
                        sealed_vars,
                        secret_names: self.context.secret_names(),
                        at_ms: now_ms(),
                    };
                    store.create(&self.run_id, &record).await
                }
            };
            if let Err(e) = started {
                return Err(RunError::Store { run_id: self.run_id.to_string(), error: e.to_string() });
            }
            options.durable = Some(Arc::new(Durable { store, resumed: self.resumed, pending: Default::default() }));
        }
        let pipeline_name: Arc<str> = Arc::from(self.pipeline.name());
        let span = tracing::info_span!("gantry.run", pipeline = %pipeline_name, run_id = %self.run_id);
        let grace = self.notifiers.grace;
        // Followers get the plan to draw the run's graph; nobody pays for it without them.
        let plan = (!self.notifiers.list.is_empty()).then(|| Arc::new(self.pipeline.plan(&self.context)));
        let scope = Arc::new(Scope::root(
            Arc::clone(&self.run_id),
            self.pipeline,
            self.context,
            Arc::clone(&self.journal),
            self.token,
            Arc::new(options),
        ));
        let following = start_notifiers(&self.notifiers.list, &scope, &pipeline_name, plan, &span);
        let started = Instant::now();
        async {
            tracing::info!("run started");
            self.journal.emit(Event::RunStarted {
                run_id: Arc::clone(&self.run_id),
                pipeline: Arc::clone(&pipeline_name),
                at: SystemTime::now(),
            });
            let outcome = drive(&scope).await;
            let duration = started.elapsed();
            tracing::info!(status = %outcome.status, ?duration, "run finished");
            self.journal.emit(Event::RunFinished {
                run_id: Arc::clone(&self.run_id),
                status: outcome.status,
                duration,
            });
            self.journal.close();
            let mut undelivered = await_notifiers(following, grace).await;
            if let Some(durable) = &scope.options.durable {
                let end =
                    crate::durable::JournalRecord::RunEnded { status: outcome.status, at_ms: crate::durable::now_ms() };
                if let Err(e) = durable.store.append(&self.run_id, &[end]).await {
                    tracing::warn!(error = %e, "the run store could not record the run's end");
                    undelivered.push(format!("run store: the run's end: {e}"));
                }
            }
            Ok(RunReport {
                run_id: self.run_id.to_string(),
                pipeline: pipeline_name.to_string(),
                status: outcome.status,
                duration,
                steps: outcome.steps,
                undelivered,
            })
        }
        .instrument(span)
        .await
    }
}

impl Pipeline {
    /// Runs the pipeline with `context` and default settings: `Run::new(self, context).execute()`.
    pub async fn run(&self, context: Context) -> Result<RunReport, RunError> {
        Run::new(self, context).execute().await
    }
}

/// Starts each notifier on the run's events, in a task of its own. They see the run's variables with its secrets
/// masked by the run's own redactor, as events have them. Nothing is done for a run without notifiers.
fn start_notifiers(
    notifiers: &[Arc<dyn Notifier>],
    scope: &Scope,
    pipeline: &Arc<str>,
    plan: Option<Arc<crate::Plan>>,
    span: &tracing::Span,
) -> Following {
    if notifiers.is_empty() {
        return Following(Vec::new());
    }
    let mut vars = std::collections::BTreeMap::new();
    scope.var_names(&mut vars);
    for value in vars.values_mut() {
        if let std::borrow::Cow::Owned(masked) = scope.redact(value) {
            *value = masked;
        }
    }
    Following(
        notifiers
            .iter()
            .map(|notifier| {
                let mut info = RunInfo::new(Arc::clone(&scope.run_id), Arc::clone(pipeline), vars.clone());
                info.plan.clone_from(&plan);
                let (notifier, events) = (Arc::clone(notifier), scope.journal.subscribe());
                let name = notifier.name().to_owned();
                let follow = async move { notifier.follow(info, events).await };
                (name, tokio::spawn(follow.instrument(span.clone())))
            })
            .collect(),
    )
}

/// The notifiers' tasks: aborted if the run is dropped before it awaits them.
struct Following(Vec<(String, tokio::task::JoinHandle<Vec<crate::NotifyError>>)>);

impl Drop for Following {
    fn drop(&mut self) {
        for (_, task) in &self.0 {
            task.abort();
        }
    }
}

/// Waits, together at most `grace`, for the notifiers to finish; collects what they could not deliver.
async fn await_notifiers(mut following: Following, grace: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + grace;
    let mut undelivered = Vec::new();
    // Tasks still running when this returns, or when it is dropped, are aborted with `following`.
    for (name, task) in &mut following.0 {
        match tokio::time::timeout_at(deadline, &mut *task).await {
            Ok(Ok(failures)) => undelivered.extend(failures.into_iter().map(|f| format!("{name}: {f}"))),
            Ok(Err(_)) => undelivered.push(format!("{name}: the notifier stopped unexpectedly")),
            Err(_) => {
                task.abort();
                undelivered.push(format!("{name}: still sending {grace:?} after the run ended; stopped"));
            }
        }
    }
    for failure in &undelivered {
        tracing::warn!(%failure, "notification not delivered");
    }
    undelivered
}

/// Closes a journal when dropped.
struct CloseOnDrop(Arc<Journal>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

fn new_run_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let millis = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis();
    format!("{millis:x}-{:x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// How a (sub-)run ended.
pub(crate) struct Outcome {
    pub(crate) status: RunStatus,
    pub(crate) steps: Vec<StepReport>,
}

impl Outcome {
    /// The outcome as the result of the step that ran the sub-run.
    pub(crate) fn into_step_result(self, what: &str) -> (Result<(), StepError>, Vec<StepReport>) {
        let result = match self.status {
            RunStatus::Succeeded => Ok(()),
            RunStatus::Cancelled => Err(StepError::cancelled()),
            RunStatus::Failed => {
                let failed: Vec<String> = self
                    .steps
                    .iter()
                    .filter(|s| s.status == StepStatus::Failed && !s.allowed_failure)
                    .map(|s| format!("`{}`", s.name))
                    .collect();
                Err(StepError::new(format!("{what} failed at {}", failed.join(", "))))
            }
        };
        (result, self.steps)
    }
}

/// Runs the pipeline of `scope` to the end.
pub(crate) async fn drive(scope: &Arc<Scope>) -> Outcome {
    // One context per step, made up front: running steps borrow theirs for as long as they run.
    let contexts: Vec<StepContext> =
        (0..scope.pipeline.len() as u32).map(|i| StepContext::new(Arc::clone(scope), i)).collect();
    let mut coordinator = Coordinator::new(scope, &contexts);
    poll_fn(|cx| coordinator.poll(cx)).await;
    coordinator.into_outcome()
}

/// Events a coordinator gathers before it hands them to the journal's readers without waiting for a yield.
const PUBLISH_AT: usize = 512;

/// How many started steps that wait may queue for their next poll before the coordinator polls them.
const UNPOLLED_AT_MOST: usize = 32;

/// How many steps a coordinator starts or completes in one poll before it yields.
const COOP_BUDGET: u32 = 1024;

/// Per step, until it finishes: how many upstream steps it still waits for and how the finished ones ended.
struct Slot {
    waiting: u32,
    up: Upstream,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A place under `max_concurrency` (an error only if the semaphore were closed, which it never is).
type Permit = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>;

enum StepFuture<'a> {
    /// `Step::run` itself: one attempt, no hooks.
    Direct(BoxFuture<'a, Result<(), StepError>>),
    /// Attempts with timeout, retries, hooks and a tracing span.
    Wrapped(BoxFuture<'a, Attempted>),
}

struct Running<'a> {
    node: u32,
    started: Instant,
    future: StepFuture<'a>,
    /// The step's place under `max_concurrency`, given back when it ends or is dropped.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Future for Running<'_> {
    type Output = (u32, Instant, Attempted);

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        // A panicking step fails alone: the run goes on to its failure path and `always` steps.
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &mut self.future {
            StepFuture::Direct(f) => f.as_mut().poll(cx).map(|result| Attempted { result, attempts: 1, started: None }),
            StepFuture::Wrapped(f) => f.as_mut().poll(cx),
        }));
        let attempted = match polled {
            Ok(Poll::Ready(attempted)) => attempted,
            Ok(Poll::Pending) => return Poll::Pending,
            Err(panic) => {
                let result = Err(StepError::new(format!("step panicked: {}", panic_message(&*panic))));
                Attempted { result, attempts: 1, started: None }
            }
        };
        Poll::Ready((self.node, self.started, attempted))
    }
}

struct Coordinator<'a> {
    scope: &'a Arc<Scope>,
    pipeline: &'a Pipeline,
    contexts: &'a [StepContext],
    slots: Vec<Slot>,
    ready: VecDeque<u32>,
    running: RunningSet<Running<'a>>,
    /// Report entries in the order steps finished, and the node of each.
    reports: Vec<StepReport>,
    finished: Vec<u32>,
    cancel_signal: BoxFuture<'a, ()>,
    /// A step that may run and waits for a place under `max_concurrency`; no other step starts before it.
    waiting: Option<(u32, BoxFuture<'static, Permit>)>,
    grace: Option<Pin<Box<tokio::time::Sleep>>>,
    cancelling: bool,
    finalizing: bool,
    failed: bool,
    /// The last clock reading, valid until a step future is polled (nothing else takes measurable time).
    now: Option<Instant>,
    /// Events of the coordinator not yet handed to the journal; flushed before any step future is polled and
    /// before the coordinator waits, so that whatever a step emits comes after its `StepStarted`.
    events: Vec<Raw>,
}

impl<'a> Coordinator<'a> {
    fn new(scope: &'a Arc<Scope>, contexts: &'a [StepContext]) -> Self {
        let pipeline = &scope.pipeline;
        let slots = (0..pipeline.len())
            .map(|i| Slot { waiting: pipeline.node(i).upstream_count, up: Upstream::default() })
            .collect();
        Self {
            scope,
            pipeline,
            contexts,
            slots,
            ready: pipeline.roots().iter().copied().collect(),
            running: RunningSet::new(),
            reports: Vec::with_capacity(pipeline.len()),
            finished: Vec::with_capacity(pipeline.len()),
            cancel_signal: Box::pin(scope.run_token.cancelled()),
            waiting: None,
            grace: None,
            cancelling: false,
            finalizing: false,
            failed: false,
            now: None,
            events: Vec::new(),
        }
    }

    fn clock(&mut self) -> Instant {
        *self.now.get_or_insert_with(Instant::now)
    }

    fn emit(&mut self, event: Raw) {
        self.events.push(event);
        if self.events.len() >= PUBLISH_AT {
            self.publish();
        }
    }

    /// Takes what the steps emitted into the sequence: called after every poll of a step future, before its
    /// result is recorded, so a step's log lines fall between its start and its end.
    #[inline]
    fn take_inbox(&mut self) {
        self.scope.inbox.take_into(&mut self.events);
    }

    /// Hands the sequence to the journal.
    fn flush(&mut self) {
        self.take_inbox();
        if !self.events.is_empty() {
            self.scope.journal.emit_batch(&mut self.events);
            if self.events.capacity() == 0 {
                // The journal kept our buffer: take a new one at full size rather than growing it again.
                self.events.reserve(PUBLISH_AT);
            }
        }
    }

    /// Hands the sequence to the journal and wakes its readers.
    fn publish(&mut self) {
        self.flush();
        self.scope.journal.publish();
    }

    fn poll(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        // A panic in what this poll runs prints with the run's secrets masked.
        let _masking = Masking::enter(&self.scope.secrets.redactor);
        // Steps finished in this poll: past the budget the coordinator yields, so that other tasks on its thread
        // (event readers among them) run, as tokio's cooperative scheduling asks of every task.
        let mut budget = COOP_BUDGET;
        // The token is read once per poll (reading it takes a lock); the cancel signal polled below wakes us.
        if !self.cancelling && self.scope.run_token.is_cancelled() {
            self.begin_cancel();
        }
        loop {
            // Past our own budget, or tokio's (the steps polled in this poll spent it: whatever they wait on now
            // answers `Pending` and wakes them at once), yield, so that the runtime refills it and drives its timers,
            // I/O and child processes.
            if budget == 0 || !tokio::task::coop::has_budget_remaining() {
                self.publish();
                self.now = None;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if !self.cancelling || self.finalizing {
                // The step waiting for a place goes first.
                if let Some((node, acquire)) = &mut self.waiting
                    && let Poll::Ready(permit) = acquire.as_mut().poll(cx)
                {
                    let node = *node;
                    self.waiting = None;
                    self.start(node, permit.ok(), cx);
                    budget = budget.saturating_sub(1);
                }
                // Newly started steps that wait are polled again soon, a few at a time, while their memory is warm.
                while self.waiting.is_none()
                    && budget > 0
                    && self.running.unpolled() < UNPOLLED_AT_MOST
                    && tokio::task::coop::has_budget_remaining()
                {
                    let Some(node) = self.ready.pop_front() else {
                        break;
                    };
                    budget -= 1;
                    if !self.decide(node) {
                        continue;
                    }
                    let permit = match self.limit_for(node) {
                        None => None,
                        Some(limit) => match Arc::clone(limit).try_acquire_owned() {
                            Ok(permit) => Some(permit),
                            Err(_) => {
                                let mut acquire: BoxFuture<'static, Permit> =
                                    Box::pin(Arc::clone(limit).acquire_owned());
                                match acquire.as_mut().poll(cx) {
                                    Poll::Ready(permit) => permit.ok(),
                                    Poll::Pending => {
                                        self.waiting = Some((node, acquire));
                                        break;
                                    }
                                }
                            }
                        },
                    };
                    self.start(node, permit, cx);
                }
            }
            if !self.running.is_empty() {
                self.now = None;
            }
            match self.running.poll_next(cx) {
                Poll::Ready(Some((node, started, attempted))) => {
                    budget = budget.saturating_sub(1);
                    self.take_inbox();
                    self.complete(node, started, attempted);
                }
                Poll::Ready(None) if self.cancelling && !self.finalizing => self.finalizing = true,
                Poll::Ready(None) if self.waiting.is_none() => {
                    if self.ready.is_empty() {
                        self.publish();
                        return Poll::Ready(());
                    }
                }
                // Nothing runs here, and a step waits for a place that a step of another sub-run holds.
                Poll::Ready(None) | Poll::Pending => {
                    if !self.cancelling {
                        if self.cancel_signal.as_mut().poll(cx).is_ready() {
                            self.begin_cancel();
                            continue;
                        }
                    } else if !self.finalizing {
                        let expired = self.grace.as_mut().is_some_and(|g| g.as_mut().poll(cx).is_ready());
                        if expired {
                            self.abandon_running();
                            continue;
                        }
                    }
                    // Register before the last look at the inbox: a step that emits after it wakes us.
                    self.scope.inbox.register(cx.waker());
                    self.publish();
                    self.now = None;
                    return Poll::Pending;
                }
            }
        }
    }

    fn begin_cancel(&mut self) {
        self.cancelling = true;
        // A step waiting for a place gives up its place in the queue (and a place the semaphore may already have
        // handed it): this coordinator starts nothing until it finalizes, and an idle claim would keep the place
        // from a sub-run's `always` step. An `always` step is decided again when this run finalizes.
        if let Some((node, acquire)) = self.waiting.take() {
            drop(acquire);
            if self.pipeline.node(node as usize).rule == TriggerRule::Always {
                self.ready.push_front(node);
            } else {
                self.skip(node, Arc::from("run cancelled"));
            }
        }
        self.grace = Some(Box::pin(tokio::time::sleep(self.scope.options.grace)));
        tracing::warn!("run cancelled; waiting for running steps");
    }

    /// Decides a step whose upstream steps are all finished: whether it runs (else it is skipped, with why).
    fn decide(&mut self, i: u32) -> bool {
        let node: &'a Node = self.pipeline.node(i as usize);
        let verdict = if self.cancelling && node.rule != TriggerRule::Always {
            self.skip(i, Arc::from("run cancelled"));
            return false;
        } else {
            node.rule.decide(&self.slots[i as usize].up)
        };
        let skipped = match verdict {
            Verdict::Run => None,
            Verdict::UpstreamFailed(up) => Some(self.because(up, "failed")),
            Verdict::UpstreamSkipped(up) => Some(self.because(up, "was skipped")),
            Verdict::NothingFailed => Some(Arc::from("no upstream step failed")),
        };
        if let Some(reason) = skipped {
            self.skip(i, reason);
            return false;
        }
        let ctx: &'a StepContext = &self.contexts[i as usize];
        if self.cancelling {
            ctx.set_finally();
        }
        if let Some(condition) = node.condition()
            && !condition.evaluate(ctx)
        {
            let reason = format!("condition false: {}", condition.label());
            self.skip(i, Arc::from(self.scope.redact(&reason).as_ref()));
            return false;
        }
        true
    }

    /// The run's bound on running steps, if `node` takes a place under it (sub-pipelines and fan-outs do not: their
    /// steps do).
    fn limit_for(&self, node: u32) -> Option<&'a Arc<tokio::sync::Semaphore>> {
        let scope: &'a Arc<Scope> = self.scope;
        let limit = scope.options.limit.as_ref()?;
        matches!(self.pipeline.node(node as usize).children(), Children::None).then_some(limit)
    }

    /// Starts a step that runs, holding `permit` (its place under `max_concurrency`) until it ends.
    fn start(&mut self, i: u32, permit: Option<tokio::sync::OwnedSemaphorePermit>, cx: &mut TaskContext<'_>) {
        let node: &'a Node = self.pipeline.node(i as usize);
        let ctx: &'a StepContext = &self.contexts[i as usize];
        if self.cancelling {
            // Decided before the cancellation and waited for a place since: an `always` step, which gets the final
            // token.
            ctx.set_finally();
        }
        if self.scope.journal.is_active() {
            self.emit(Raw::Started { scope: self.scope.id, node: i, attempt: 1 });
            if !matches!(node.children(), Children::None) {
                // A sub-run hands its events to the journal itself: ours must be there first.
                self.flush();
            }
        }
        let started = self.clock();
        let span = tracing::info_span!("gantry.step", step = %self.scope.name(i));
        let options = &self.scope.options;
        let wrap = node.needs_wrapper() || !options.hooks.is_empty() || options.durable.is_some();
        let future = if wrap || !span.is_disabled() {
            StepFuture::Wrapped(Box::pin(attempts(node, ctx, self.scope).instrument(span)))
        } else {
            StepFuture::Direct(node.step.run(ctx))
        };
        let mut running = Running { node: i, started, future, _permit: permit };
        let polled = Pin::new(&mut running).poll(cx);
        self.now = None;
        self.take_inbox();
        match polled {
            Poll::Ready((node, started, attempted)) => self.complete(node, started, attempted),
            Poll::Pending => self.running.push(running),
        }
    }

    fn because(&self, upstream: u32, what: &str) -> Arc<str> {
        Arc::from(format!("upstream `{}` {what}", self.pipeline.node(upstream as usize).name))
    }

    fn skip(&mut self, i: u32, reason: Arc<str>) {
        self.finish(i, StepStatus::Skipped, Some(reason), 0, Duration::ZERO);
    }

    fn complete(&mut self, i: u32, started: Instant, attempted: Attempted) {
        let Attempted { result, attempts, started: first_attempt } = attempted;
        let duration = self.clock().saturating_duration_since(first_attempt.unwrap_or(started));
        match result {
            Ok(()) => self.finish(i, StepStatus::Succeeded, None, attempts, duration),
            Err(error) => {
                // Cancelled only if the run's signal reached the step; an error that merely says so is a failure.
                // (a step's own timeout cancels its token too: that is a failure)
                let status = if self.contexts[i as usize].run_is_cancelled() {
                    StepStatus::Cancelled
                } else {
                    StepStatus::Failed
                };
                let reason = Arc::from(self.scope.redact(&error_chain(&error)).as_ref());
                self.finish(i, status, Some(reason), attempts, duration);
            }
        }
    }

    /// Drops the steps that did not stop within the grace period.
    fn abandon_running(&mut self) {
        let now = self.clock();
        for running in self.running.take_all() {
            let reason = Arc::from("did not stop within the grace period; dropped");
            let attempts = self.contexts[running.node as usize].attempt();
            self.finish(running.node, StepStatus::Cancelled, Some(reason), attempts, now - running.started);
        }
        self.finalizing = true;
    }

    fn finish(&mut self, i: u32, status: StepStatus, reason: Option<Arc<str>>, attempts: u32, duration: Duration) {
        let allowed = status == StepStatus::Failed && self.pipeline.node(i as usize).allow_failure;
        let counts_failed = status == StepStatus::Failed && !allowed;
        let counts_skipped = matches!(status, StepStatus::Skipped | StepStatus::Cancelled);
        self.failed |= counts_failed;
        if status != StepStatus::Succeeded {
            let step = self.scope.name(i);
            tracing::info!(step = %step, %status, reason = reason.as_deref().unwrap_or(""), attempts, "step finished");
        }
        let name = self.scope.name(i);
        if self.scope.journal.is_active() {
            let scope = self.scope.id;
            self.emit(Raw::Finished { scope, node: i, status, reason: reason.clone(), attempts, duration });
        }
        self.reports.push(StepReport {
            name: Arc::clone(name),
            status,
            allowed_failure: allowed,
            reason,
            attempts,
            duration,
            outputs: Vec::new(),
            children: Vec::new(),
        });
        self.finished.push(i);
        for next in self.pipeline.downstream(i) {
            let slot = &mut self.slots[next as usize];
            if counts_failed {
                if slot.up.failed == 0 {
                    slot.up.first_failed = i;
                }
                slot.up.failed += 1;
            } else if allowed {
                slot.up.allowed_failed += 1;
            } else if counts_skipped {
                if slot.up.skipped == 0 {
                    slot.up.first_skipped = i;
                }
                slot.up.skipped += 1;
            }
            slot.waiting -= 1;
            if slot.waiting == 0 {
                self.ready.push_back(next);
            }
        }
    }

    fn into_outcome(self) -> Outcome {
        let status = if self.cancelling {
            RunStatus::Cancelled
        } else if self.failed {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        let mut outputs = self.scope.take_outputs();
        let mut children = self.scope.take_child_reports();
        let mut steps = self.reports;
        if !outputs.is_empty() || !children.is_empty() {
            for (report, &i) in steps.iter_mut().zip(&self.finished) {
                report.outputs = take(&mut outputs, i);
                report.children = take(&mut children, i);
            }
        }
        Outcome { status, steps }
    }
}

/// Removes `node`'s entry, without hashing when the map is empty (the common case).
fn take<T>(map: &mut HashMap<u32, Vec<T>>, node: u32) -> Vec<T> {
    if map.is_empty() { Vec::new() } else { map.remove(&node).unwrap_or_default() }
}

impl Scope {
    /// Outputs by node, rendered and masked, for the report.
    fn take_outputs(&self) -> HashMap<u32, Vec<(String, String)>> {
        let mut by_node: HashMap<u32, Vec<(String, String)>> = HashMap::new();
        for (node, key, rendered) in self.drain_outputs() {
            by_node.entry(node).or_default().push((key.to_owned(), self.redact(&rendered).into_owned()));
        }
        for outputs in by_node.values_mut() {
            outputs.sort();
        }
        by_node
    }
}

/// Where sub-runs leave their step reports for the parent's report.
#[derive(Default)]
pub(crate) struct ChildReports(Mutex<HashMap<u32, Vec<StepReport>>>);

impl ChildReports {
    pub(crate) fn add(&self, node: u32, steps: Vec<StepReport>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(node).or_default().extend(steps);
    }

    pub(crate) fn take(&self) -> HashMap<u32, Vec<StepReport>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod size_tests {
    /// The per-step structures behind the memory budget of docs/PERFORMANCE.md (at most 512 bytes per step for a
    /// pipeline and one run of it): growing one of them is a decision, not an accident.
    #[test]
    fn per_step_structures_stay_small() {
        use std::mem::size_of;
        let sizes = [
            ("Node", size_of::<crate::pipeline::Node>(), 48),
            ("Slot", size_of::<super::Slot>(), 24),
            ("StepContext", size_of::<crate::context::StepContext>(), 24),
            ("StepReport", size_of::<crate::report::StepReport>(), 104),
            ("Raw event", size_of::<crate::event::Raw>(), 56),
        ];
        for (what, size, budget) in sizes {
            assert!(size <= budget, "{what} is {size} bytes, over its budget of {budget}");
        }
    }
}
