//! The run context: variables for templates, typed outputs passed between steps, and secrets.
//!
//! A run starts from a [`Context`] (variables and secrets). Each step gets a [`StepContext`] through which it reads
//! variables, upstream outputs and secrets, publishes its own outputs and variables, logs, and watches for
//! cancellation. Steps write only to their own slots (outputs are keyed by the publishing step; variables a step sets
//! are named `step.key`), so parallel steps never write to the same place.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::task::AtomicWaker;
use tokio_util::sync::CancellationToken;

use crate::error::{ContextError, TemplateError};
use crate::event::{Event, Journal, LogStream, Raw};
use crate::executor::{ChildReports, RunOptions};
use crate::pipeline::Pipeline;
use crate::report::StepReport;
use crate::secret::{Redactor, Secret};
use crate::template::{SECRET_PREFIX, Template};

/// The starting point of a run: variables and secrets.
///
/// ```
/// use gantry_core::{Context, Secret};
/// let ctx = Context::new().var("service", "api").var("env", "staging").secret("token", Secret::new("t0k3n"));
/// assert_eq!(ctx.get_var("service"), Some("api"));
/// assert!(!format!("{ctx:?}").contains("t0k3n"));
/// ```
#[derive(Clone, Default)]
pub struct Context {
    vars: BTreeMap<String, String>,
    secrets: BTreeMap<String, Secret>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a variable.
    #[must_use]
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Adds a secret, available to steps by name and as `{{secrets.NAME}}` in templates, and masked everywhere.
    #[must_use]
    pub fn secret(mut self, name: impl Into<String>, value: Secret) -> Self {
        self.secrets.insert(name.into(), value);
        self
    }

    /// Whether the context has a secret of this name.
    pub fn has_secret(&self, name: &str) -> bool {
        self.secrets.contains_key(name)
    }

    /// The names of the context's secrets.
    pub(crate) fn secret_names(&self) -> Vec<String> {
        self.secrets.keys().cloned().collect()
    }

    /// Every variable, by name (secrets are not variables).
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// A variable's value.
    pub fn get_var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Whether a template variable name resolves in this context (`secrets.X` looks among the secrets).
    pub(crate) fn knows(&self, name: &str) -> bool {
        match name.strip_prefix(SECRET_PREFIX) {
            Some(secret) => self.secrets.contains_key(secret),
            None => self.vars.contains_key(name),
        }
    }
}

impl Context {
    /// A redactor that masks this context's secrets.
    pub fn redactor(&self) -> Redactor {
        let redactor = Redactor::new();
        for secret in self.secrets.values() {
            redactor.register(secret);
        }
        redactor
    }
}

/// Variables are shown with the context's secrets masked in them (a DSN variable that holds a password shows
/// without it); secrets show as masks.
impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redactor = self.redactor();
        let vars: BTreeMap<&str, std::borrow::Cow<'_, str>> =
            self.vars.iter().map(|(k, v)| (k.as_str(), redactor.redact(v))).collect();
        f.debug_struct("Context").field("vars", &vars).field("secrets", &self.secrets).finish()
    }
}

/// The name and type of an output a step publishes. Declare keys as constants next to the step that publishes them.
///
/// ```
/// use gantry_core::OutputKey;
/// pub const IMAGE_DIGEST: OutputKey<String> = OutputKey::new("image_digest");
/// assert_eq!(IMAGE_DIGEST.name(), "image_digest");
/// ```
pub struct OutputKey<T> {
    name: &'static str,
    codec: Option<Codec>,
    _type: PhantomData<fn() -> T>,
}

/// How a durable output is written to a run's journal and read back.
#[derive(Clone, Copy)]
pub(crate) struct Codec {
    pub(crate) encode: fn(&(dyn Any + Send + Sync)) -> Option<serde_json::Value>,
    pub(crate) decode: fn(&serde_json::Value) -> Option<Arc<dyn Any + Send + Sync>>,
}

fn encode_as<T: serde::Serialize + Any>(value: &(dyn Any + Send + Sync)) -> Option<serde_json::Value> {
    value.downcast_ref::<T>().and_then(|v| serde_json::to_value(v).ok())
}

fn decode_as<T: serde::de::DeserializeOwned + Any + Send + Sync>(
    value: &serde_json::Value,
) -> Option<Arc<dyn Any + Send + Sync>> {
    serde_json::from_value::<T>(value.clone()).ok().map(|v| Arc::new(v) as Arc<dyn Any + Send + Sync>)
}

impl<T> OutputKey<T> {
    /// A key with this name.
    pub const fn new(name: &'static str) -> Self {
        Self { name, codec: None, _type: PhantomData }
    }

    /// The key's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T: serde::Serialize + serde::de::DeserializeOwned + Any + Send + Sync> OutputKey<T> {
    /// A key whose outputs outlive the process: in a [durable run](crate::Run::store) each output is written to the
    /// journal (as JSON, with the step's end) and, when the run [resumes](crate::Run::resume), read back for the
    /// steps after it. An output that holds a secret of the run is not written: after a resume it is missing.
    pub const fn durable(name: &'static str) -> Self {
        Self { name, codec: Some(Codec { encode: encode_as::<T>, decode: decode_as::<T> }), _type: PhantomData }
    }
}

impl<T> Clone for OutputKey<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for OutputKey<T> {}

impl<T> fmt::Debug for OutputKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutputKey<{}>({:?})", std::any::type_name::<T>(), self.name)
    }
}

struct StoredOutput {
    value: Arc<dyn Any + Send + Sync>,
    rendered: String,
}

/// Secrets by name plus the redactor; one per top-level run, shared by its sub-runs.
#[derive(Default)]
pub(crate) struct SecretStore {
    named: RwLock<HashMap<String, Secret>>,
    pub(crate) redactor: Redactor,
}

/// The names the steps of one (sub-)run go by in events and reports. Registered with the run's journal, whose
/// readers turn step indices back into names.
#[derive(Clone)]
pub(crate) enum Names {
    /// Top-level run: the pipeline's own names.
    Plain(Pipeline),
    /// Sub-run: `prefix/name` for each node.
    Prefixed(Arc<[Arc<str>]>),
}

impl fmt::Debug for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(p) => write!(f, "Names::Plain({})", p.name()),
            Self::Prefixed(names) => write!(f, "Names::Prefixed({} steps)", names.len()),
        }
    }
}

impl Names {
    #[inline]
    pub(crate) fn get(&self, node: u32) -> &Arc<str> {
        match self {
            Self::Plain(pipeline) => &pipeline.node(node as usize).name,
            Self::Prefixed(names) => &names[node as usize],
        }
    }
}

/// What a scope's steps emit (log lines, retries), waiting for the scope's coordinator to take it into its own
/// sequence of events. Everything a scope emits thus reaches the journal through its coordinator, in one order.
#[derive(Default)]
pub(crate) struct Inbox {
    events: Mutex<Vec<Raw>>,
    filled: AtomicBool,
    coordinator: AtomicWaker,
}

impl Inbox {
    /// Leaves an event for the coordinator and wakes it.
    pub(crate) fn push(&self, event: Raw) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events.push(event);
        self.filled.store(true, Ordering::Release);
        drop(events);
        self.coordinator.wake();
    }

    /// Moves what is waiting to the end of `into` (a load of a flag when nothing is).
    #[inline]
    pub(crate) fn take_into(&self, into: &mut Vec<Raw>) {
        if self.filled.load(Ordering::Acquire) {
            let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
            self.filled.store(false, Ordering::Release);
            into.append(&mut events);
        }
    }

    /// The coordinator's waker, registered before it takes what is waiting and waits.
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.coordinator.register(waker);
    }
}

/// Shared state of one run or sub-run.
pub(crate) struct Scope {
    pub(crate) run_id: Arc<str>,
    pub(crate) pipeline: Pipeline,
    pub(crate) names: Names,
    /// This scope's number in the journal's table of names.
    pub(crate) id: u32,
    vars: RwLock<HashMap<String, String>>,
    parent: Option<Arc<Scope>>,
    outputs: Mutex<HashMap<(u32, &'static str), StoredOutput>>,
    pub(crate) secrets: Arc<SecretStore>,
    pub(crate) journal: Arc<Journal>,
    pub(crate) inbox: Inbox,
    pub(crate) run_token: CancellationToken,
    pub(crate) final_token: CancellationToken,
    pub(crate) options: Arc<RunOptions>,
    child_reports: ChildReports,
    /// Per step with a timeout, its own token (a child of the run's, cancelled at its deadline); empty when no step
    /// of this pipeline has a timeout.
    step_tokens: Box<[std::sync::OnceLock<CancellationToken>]>,
}

/// A token slot per step, if some step has a timeout.
fn step_tokens(pipeline: &Pipeline) -> Box<[std::sync::OnceLock<CancellationToken>]> {
    if pipeline.any_timeout() {
        (0..pipeline.len()).map(|_| std::sync::OnceLock::new()).collect()
    } else {
        Box::new([])
    }
}

impl Scope {
    /// The scope of a top-level run.
    pub(crate) fn root(
        run_id: Arc<str>,
        pipeline: Pipeline,
        context: Context,
        journal: Arc<Journal>,
        run_token: CancellationToken,
        options: Arc<RunOptions>,
    ) -> Self {
        let secrets = SecretStore::default();
        for secret in context.secrets.values() {
            secrets.redactor.register(secret);
        }
        *secrets.named.write().unwrap_or_else(|e| e.into_inner()) = context.secrets.into_iter().collect();
        let names = Names::Plain(pipeline.clone());
        Self {
            step_tokens: step_tokens(&pipeline),
            id: journal.register(names.clone()),
            run_id,
            pipeline,
            names,
            vars: RwLock::new(context.vars.into_iter().collect()),
            parent: None,
            outputs: Mutex::default(),
            secrets: Arc::new(secrets),
            journal,
            inbox: Inbox::default(),
            run_token,
            final_token: CancellationToken::new(),
            options,
            child_reports: ChildReports::default(),
        }
    }

    /// The scope of a sub-run of `pipeline` started by the step `parent` under the name `prefix`, with extra variables.
    pub(crate) fn child(parent: &StepContext, pipeline: Pipeline, prefix: &str, vars: HashMap<String, String>) -> Self {
        let names: Arc<[Arc<str>]> =
            (0..pipeline.len()).map(|i| Arc::from(format!("{prefix}/{}", pipeline.node(i).name))).collect();
        let names = Names::Prefixed(names);
        let scope = &parent.scope;
        Self {
            step_tokens: step_tokens(&pipeline),
            id: scope.journal.register(names.clone()),
            run_id: Arc::clone(&scope.run_id),
            pipeline,
            names,
            vars: RwLock::new(vars),
            parent: Some(Arc::clone(scope)),
            outputs: Mutex::default(),
            secrets: Arc::clone(&scope.secrets),
            journal: Arc::clone(&scope.journal),
            inbox: Inbox::default(),
            run_token: parent.cancellation().clone(),
            final_token: CancellationToken::new(),
            options: Arc::clone(&scope.options),
            child_reports: ChildReports::default(),
        }
    }

    #[inline]
    pub(crate) fn name(&self, node: u32) -> &Arc<str> {
        self.names.get(node)
    }

    pub(crate) fn redact<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        self.secrets.redactor.redact(text)
    }

    fn var(&self, name: &str) -> Option<String> {
        let own = self.vars.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
        own.or_else(|| self.parent.as_ref().and_then(|p| p.var(name)))
    }

    pub(crate) fn var_names(&self, into: &mut BTreeMap<String, String>) {
        if let Some(p) = &self.parent {
            p.var_names(into);
        }
        into.extend(self.vars.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// Removes and returns every output as (node, key, rendered), for the report.
    pub(crate) fn drain_outputs(&self) -> Vec<(u32, &'static str, String)> {
        let mut outputs = self.outputs.lock().unwrap_or_else(|e| e.into_inner());
        outputs.drain().map(|((node, key), v)| (node, key, v.rendered)).collect()
    }

    /// Records the step reports of a sub-run started by `node`.
    pub(crate) fn add_child_reports(&self, node: u32, steps: Vec<StepReport>) {
        self.child_reports.add(node, steps);
    }

    pub(crate) fn take_child_reports(&self) -> HashMap<u32, Vec<StepReport>> {
        self.child_reports.take()
    }
}

/// What a step sees of its run. Cheap to clone; clones refer to the same run.
pub struct StepContext {
    pub(crate) scope: Arc<Scope>,
    node: u32,
    /// Set before an `always` step starts after a cancellation: it then gets the run's final token.
    finally: AtomicBool,
    attempt: AtomicU32,
}

impl Clone for StepContext {
    fn clone(&self) -> Self {
        Self {
            scope: Arc::clone(&self.scope),
            node: self.node,
            finally: AtomicBool::new(self.finally.load(Ordering::Relaxed)),
            attempt: AtomicU32::new(self.attempt()),
        }
    }
}

impl StepContext {
    pub(crate) fn new(scope: Arc<Scope>, node: u32) -> Self {
        Self { scope, node, finally: AtomicBool::new(false), attempt: AtomicU32::new(1) }
    }

    pub(crate) fn set_finally(&self) {
        self.finally.store(true, Ordering::Relaxed);
    }

    pub(crate) fn node(&self) -> u32 {
        self.node
    }

    pub(crate) fn set_attempt(&self, attempt: u32) {
        self.attempt.store(attempt, Ordering::Relaxed);
    }

    /// The step's name (`outer/inner` inside a sub-pipeline).
    pub fn name(&self) -> &str {
        self.scope.name(self.node)
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.scope.run_id
    }

    /// The current attempt, 1 for the first.
    pub fn attempt(&self) -> u32 {
        self.attempt.load(Ordering::Relaxed)
    }

    /// The signal to stop: cancelled when the run is cancelled, or when the step's timeout passes. Steps that run
    /// after a cancellation (`always` steps) get a token that only their own timeout cancels.
    pub fn cancellation(&self) -> &CancellationToken {
        match self.scope.step_tokens.get(self.node as usize).and_then(std::sync::OnceLock::get) {
            Some(own) => own,
            None => self.run_cancellation(),
        }
    }

    /// The run's token as this step sees it (the final token for `always` steps after a cancellation), whatever its
    /// own timeout did.
    fn run_cancellation(&self) -> &CancellationToken {
        if self.finally.load(Ordering::Relaxed) { &self.scope.final_token } else { &self.scope.run_token }
    }

    /// Whether the run (not the step's own timeout) was cancelled.
    pub(crate) fn run_is_cancelled(&self) -> bool {
        self.run_cancellation().is_cancelled()
    }

    /// The step's own token, made on first use as a child of the run's: cancelled at its timeout.
    pub(crate) fn own_token(&self) -> Option<&CancellationToken> {
        let slot = self.scope.step_tokens.get(self.node as usize)?;
        Some(slot.get_or_init(|| self.run_cancellation().child_token()))
    }

    /// Whether the step should stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancellation().is_cancelled()
    }

    /// A variable: the run's, a sub-run's (`item` of a fan-out), or one set by a step as `step.key`.
    pub fn var(&self, name: &str) -> Option<String> {
        self.scope.var(name)
    }

    /// A variable that must exist.
    pub fn require_var(&self, name: &str) -> Result<String, ContextError> {
        self.var(name).ok_or_else(|| ContextError::MissingVariable { name: name.to_owned() })
    }

    /// All variables visible to the step, for showing (a debugger, a plan): the run's secrets are masked in them.
    /// A step reads a value with [`var`](Self::var).
    pub fn vars(&self) -> BTreeMap<String, String> {
        let mut all = BTreeMap::new();
        self.scope.var_names(&mut all);
        for value in all.values_mut() {
            if let std::borrow::Cow::Owned(masked) = self.redact(value) {
                *value = masked;
            }
        }
        all
    }

    /// Sets the variable `<this step's name>.<key>`, visible to every step that runs after this one.
    pub fn set_var(&self, key: &str, value: impl Into<String>) {
        let value = value.into();
        if let Some(durable) = &self.scope.options.durable {
            durable.var(self, key, &value);
        }
        self.set_var_here(key, value);
    }

    /// Records `state` as this step's progress: in a [durable run](crate::Run::store) it is in the store when this
    /// returns, and if the host stops before the step ends, [`Step::resume`](crate::Step::resume) gets the last one
    /// (a Job's name, the revision a rollout started from, a canary's weight). Without a store it does nothing.
    /// Refused for a state that holds a secret of the run, or that does not serialise.
    pub async fn checkpoint<T: serde::Serialize + ?Sized>(&self, state: &T) -> Result<(), crate::StepError> {
        let Some(durable) = &self.scope.options.durable else { return Ok(()) };
        let state = serde_json::to_value(state)
            .map_err(|e| crate::StepError::new(format!("a checkpoint cannot be written: {e}")))?;
        durable.checkpoint(self, state).await
    }

    /// Sets the variable in this run only (replaying a journal).
    pub(crate) fn set_var_here(&self, key: &str, value: String) {
        let local = &self.scope.pipeline.node(self.node as usize).name;
        let mut vars = self.scope.vars.write().unwrap_or_else(|e| e.into_inner());
        vars.insert(format!("{local}.{key}"), value);
    }

    /// A secret by name.
    pub fn secret(&self, name: &str) -> Result<Secret, ContextError> {
        let named = self.scope.secrets.named.read().unwrap_or_else(|e| e.into_inner());
        named.get(name).cloned().ok_or_else(|| ContextError::MissingSecret { name: name.to_owned() })
    }

    /// Adds the secret `<this step's name>.<key>` to the run: masked from now on everywhere, and available to the
    /// steps after this one as `{{secrets.<step>.<key>}}` (the template check accepts it there, as for step
    /// variables).
    pub fn set_secret(&self, key: &str, secret: Secret) {
        let local = &self.scope.pipeline.node(self.node as usize).name;
        self.add_secret(format!("{local}.{key}"), secret);
    }

    /// Adds a secret to the run: masked from now on in every event, log line, error and report, and available to
    /// later steps by name.
    pub fn add_secret(&self, name: impl Into<String>, secret: Secret) {
        self.scope.secrets.redactor.register(&secret);
        crate::panic::cover(&self.scope.secrets.redactor);
        self.scope.secrets.named.write().unwrap_or_else(|e| e.into_inner()).insert(name.into(), secret);
    }

    /// Masks the run's secrets in `text`.
    pub fn redact<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        self.scope.redact(text)
    }

    /// Looks up a template variable: `secrets.NAME` gives the secret's value, anything else a variable.
    pub fn lookup(&self, name: &str) -> Option<String> {
        match name.strip_prefix(SECRET_PREFIX) {
            Some(secret) => self.secret(secret).ok().map(|s| s.expose().to_owned()),
            None => self.var(name),
        }
    }

    /// Renders a template with the step's variables and secrets.
    pub fn render(&self, template: &Template) -> Result<String, TemplateError> {
        template.render(|name| self.lookup(name))
    }

    /// Renders a template for display: secrets show as a mask.
    pub fn render_masked(&self, template: &Template) -> String {
        let rendered = template.render(|name| {
            if name.starts_with(SECRET_PREFIX) { Some(crate::secret::MASK.to_owned()) } else { self.var(name) }
        });
        rendered.unwrap_or_else(|_| template.source().to_owned())
    }

    /// Publishes an output of this step under `key`. Publishing the same key again replaces the value.
    pub fn publish<T>(&self, key: OutputKey<T>, value: T)
    where
        T: Any + Send + Sync + fmt::Debug,
    {
        let rendered = format!("{value:?}");
        let value: Arc<dyn Any + Send + Sync> = Arc::new(value);
        if let (Some(durable), Some(codec)) = (&self.scope.options.durable, key.codec) {
            durable.output(self, key.name(), (codec.encode)(&*value));
        }
        let stored = StoredOutput { value, rendered };
        let mut outputs = self.scope.outputs.lock().unwrap_or_else(|e| e.into_inner());
        outputs.insert((self.node, key.name()), stored);
    }

    /// An output published by the step `step` (of this pipeline, or of an enclosing one).
    pub fn output<T>(&self, step: &str, key: OutputKey<T>) -> Result<Arc<T>, ContextError>
    where
        T: Any + Send + Sync,
    {
        let mut scope = Some(&self.scope);
        while let Some(s) = scope {
            if let Some(node) = s.pipeline.index_of(step) {
                let mut outputs = s.outputs.lock().unwrap_or_else(|e| e.into_inner());
                let missing = || ContextError::MissingOutput { step: step.to_owned(), key: key.name().to_owned() };
                if let std::collections::hash_map::Entry::Vacant(slot) = outputs.entry((node, key.name())) {
                    // A resumed run: the output of a step that ended before, read back from the journal.
                    let restored = s.options.durable.as_ref().zip(key.codec).and_then(|(durable, codec)| {
                        let json = durable.restored_output(s.name(node), key.name())?;
                        (codec.decode)(&json)
                    });
                    if let Some(value) = restored {
                        let rendered = "(restored from the run's journal)".to_owned();
                        slot.insert(StoredOutput { value, rendered });
                    }
                }
                let stored = outputs.get(&(node, key.name())).ok_or_else(missing)?;
                return Arc::clone(&stored.value).downcast::<T>().map_err(|_| ContextError::OutputType {
                    step: step.to_owned(),
                    key: key.name().to_owned(),
                    expected: std::any::type_name::<T>(),
                });
            }
            scope = s.parent.as_ref();
        }
        Err(ContextError::UnknownStep { step: step.to_owned() })
    }

    /// Logs a line as the step's output (secrets masked).
    pub fn log(&self, line: impl AsRef<str>) {
        self.log_to(LogStream::Stdout, line.as_ref());
    }

    /// Logs a line on the given stream (secrets masked).
    pub fn log_to(&self, stream: LogStream, line: &str) {
        let line = self.redact(line);
        tracing::debug!(step = %self.name(), ?stream, line = %line, "step output");
        self.emit(Event::Log { step: Arc::clone(self.scope.name(self.node)), stream, line: Arc::from(line.as_ref()) });
    }

    /// Reports a phase of a deployment as an [`Event::Phase`] (secrets masked), and traces it at info level.
    pub fn phase(&self, phase: crate::Phase, message: impl AsRef<str>) {
        let message = self.redact(message.as_ref());
        tracing::info!(step = %self.name(), ?phase, message = %message, "phase");
        self.emit(Event::Phase {
            step: Arc::clone(self.scope.name(self.node)),
            phase,
            message: Arc::from(message.as_ref()),
        });
    }

    /// Reports one finished step of an image build as an [`Event::BuildStep`] (the instruction's secrets masked).
    pub fn build_step(
        &self,
        image: &str,
        number: u32,
        of: u32,
        instruction: &str,
        source: crate::LayerSource,
        duration: std::time::Duration,
    ) {
        let instruction = self.redact(instruction);
        tracing::info!(step = %self.name(), image, number, of, instruction = %instruction, ?source, ?duration, "build step");
        let layer = crate::BuildLayer {
            image: Arc::from(self.redact(image).as_ref()),
            number,
            of,
            instruction: Arc::from(instruction.as_ref()),
            source,
            duration,
        };
        self.emit(Event::BuildStep { step: Arc::clone(self.scope.name(self.node)), layer: Arc::new(layer) });
    }

    /// The step's name, shared (for events).
    pub(crate) fn name_arc(&self) -> Arc<str> {
        Arc::clone(self.scope.name(self.node))
    }

    /// Emits an event of this step through its coordinator, if anyone listens.
    pub(crate) fn emit(&self, event: Event) {
        if self.scope.journal.is_active() {
            self.scope.inbox.push(Raw::Event(event));
        }
    }

    /// Emits the start of a later attempt of this step.
    pub(crate) fn emit_attempt(&self, attempt: u32) {
        if self.scope.journal.is_active() {
            self.scope.inbox.push(Raw::Started { scope: self.scope.id, node: self.node, attempt });
        }
    }
}

impl fmt::Debug for StepContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepContext")
            .field("step", &self.name())
            .field("run_id", &self.run_id())
            .field("attempt", &self.attempt())
            .finish_non_exhaustive()
    }
}
