//! The core's errors: what a step returns ([`StepError`]), what building a pipeline rejects ([`BuildError`]), what
//! stops a run before it starts ([`RunError`]), and mistakes reading the run context ([`ContextError`]).

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// A boxed error that can cross threads: the source of the errors at Gantry's trait boundaries
/// ([`TargetError`](crate::strategy::TargetError), [`MetricError`](crate::analysis::MetricError),
/// [`NotifyError`](crate::NotifyError)).
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a step failed. Steps build it; the executor reads [`StepError::is_retryable`] to decide on retries.
///
/// The message is shown in events and reports after secrets are masked; the source, if any, is available through
/// [`std::error::Error::source`] and is not repeated in the message.
#[derive(Debug)]
pub struct StepError {
    kind: StepErrorKind,
    message: String,
    retryable: bool,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

/// The class of a [`StepError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepErrorKind {
    /// The step's work failed.
    Failed,
    /// The step ran longer than its timeout.
    Timeout,
    /// The step stopped because the run was cancelled.
    Cancelled,
    /// The step read something from the run context that was not there.
    Context,
}

impl StepError {
    /// A failure with a message. Not retryable unless [`retryable`](Self::retryable) is called.
    pub fn new(message: impl Into<String>) -> Self {
        Self { kind: StepErrorKind::Failed, message: message.into(), retryable: false, source: None }
    }

    /// A failure caused by `source`, described by `message`.
    pub fn with_source(message: impl Into<String>, source: impl StdError + Send + Sync + 'static) -> Self {
        Self { source: Some(Box::new(source)), ..Self::new(message) }
    }

    /// Marks the error as transient: the executor retries the step if its retry policy allows.
    #[must_use]
    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// The step was cancelled.
    pub fn cancelled() -> Self {
        Self { kind: StepErrorKind::Cancelled, ..Self::new("cancelled") }
    }

    /// The step stopped because it was told to (its token fired: the run was cancelled, or its timeout passed),
    /// saying what it did about it (`the rollout was interrupted; rolled back to web:1`).
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self { kind: StepErrorKind::Cancelled, ..Self::new(message) }
    }

    /// The step exceeded its timeout.
    pub fn timeout(after: Duration) -> Self {
        Self { kind: StepErrorKind::Timeout, ..Self::new(format!("timed out after {after:?}")) }
    }

    /// The same error with `more` after its message (`<message>: <more>`).
    pub(crate) fn explained(mut self, more: impl AsRef<str>) -> Self {
        self.message.push_str(": ");
        self.message.push_str(more.as_ref());
        self
    }

    /// Whether the executor may retry the step after this error.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The class of error.
    pub fn kind(&self) -> StepErrorKind {
        self.kind
    }

    /// The message, without the source.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The error's message followed by its sources, `: `-separated.
pub(crate) fn error_chain(error: &StepError) -> String {
    let mut text = error.to_string();
    let mut source = StdError::source(error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for StepError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn StdError + 'static))
    }
}

impl From<ContextError> for StepError {
    fn from(e: ContextError) -> Self {
        Self { kind: StepErrorKind::Context, message: e.to_string(), retryable: false, source: None }
    }
}

impl From<TemplateError> for StepError {
    fn from(e: TemplateError) -> Self {
        Self::new(e.to_string())
    }
}

/// A pipeline that cannot be built. Every variant names the steps involved.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The dependencies form a cycle.
    #[error("pipeline `{pipeline}` has a cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The pipeline.
        pipeline: String,
        /// The steps of the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// Two steps have the same name.
    #[error("pipeline `{pipeline}` has two steps named `{step}`")]
    DuplicateStep {
        /// The pipeline.
        pipeline: String,
        /// The repeated name.
        step: String,
    },
    /// A step depends on a step that does not exist.
    #[error("step `{step}` of pipeline `{pipeline}` depends on `{dependency}`, which is not a step of the pipeline")]
    UnknownDependency {
        /// The pipeline.
        pipeline: String,
        /// The step with the dependency.
        step: String,
        /// The missing step.
        dependency: String,
    },
    /// An `on_failure` step has nothing upstream whose failure it could handle.
    #[error("step `{step}` of pipeline `{pipeline}` runs on failure but has no upstream step; add `.after(..)`")]
    FailureHandlerWithoutUpstream {
        /// The pipeline.
        pipeline: String,
        /// The failure handler.
        step: String,
    },
    /// A step name is empty or contains `/` (which separates the names of sub-pipelines), `.` (which separates a
    /// step's name from its variables: `{{build.tag}}`), `[` or `]` (which hold a fan-out's items) or a control
    /// character.
    #[error(
        "pipeline `{pipeline}` has an invalid step name {step:?}: names must be non-empty, without `/`, `.`, `[`, `]` \
         or control characters"
    )]
    InvalidName {
        /// The pipeline.
        pipeline: String,
        /// The name.
        step: String,
    },
    /// A step refused its own configuration ([`Step::validate`](crate::Step::validate)): a deploy strategy that
    /// needs traffic weights or request routes its target cannot do, say.
    #[error("step `{step}` of pipeline `{pipeline}` cannot run: {why}")]
    InvalidStep {
        /// The pipeline.
        pipeline: String,
        /// The step.
        step: String,
        /// What is wrong.
        why: String,
    },
    /// A fan-out item that would make step names ambiguous: empty, or holding `[`, `]` or a control character.
    #[error(
        "fan-out `{step}` of pipeline `{pipeline}` has the item {item:?}, which {problem}: items name sub-runs \
         (`{step}[item]/step`); fan out over names and look longer values up by name"
    )]
    InvalidFanOutItem {
        /// The pipeline.
        pipeline: String,
        /// The fan-out step.
        step: String,
        /// The item, as written.
        item: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A fan-out was given the same item twice.
    #[error("fan-out `{step}` of pipeline `{pipeline}` has the item {item:?} twice: each item names one sub-run")]
    DuplicateFanOutItem {
        /// The pipeline.
        pipeline: String,
        /// The fan-out step.
        step: String,
        /// The repeated item.
        item: String,
    },
    /// A fan-out was given no items.
    #[error("fan-out `{step}` of pipeline `{pipeline}` has no items")]
    EmptyFanOut {
        /// The pipeline.
        pipeline: String,
        /// The fan-out step.
        step: String,
    },
    /// A sub-pipeline of this pipeline failed to build.
    #[error("in `{step}` of pipeline `{pipeline}`: {source}")]
    Nested {
        /// The pipeline.
        pipeline: String,
        /// The step holding the sub-pipeline.
        step: String,
        /// What is wrong inside.
        source: Box<BuildError>,
    },
}

/// A template that cannot be parsed or rendered.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateError {
    /// `{{` without `}}`.
    #[error("unclosed `{{{{` at byte {offset} in template `{template}`")]
    Unclosed {
        /// The template text.
        template: String,
        /// Where the `{{` is.
        offset: usize,
    },
    /// A placeholder whose name has characters other than letters, digits, `_`, `-` and `.`.
    #[error(
        "invalid variable name `{name}` at byte {offset} in template `{template}` (for a literal `{{{{`, write `{{{{{{{{`)"
    )]
    BadName {
        /// The template text.
        template: String,
        /// The name found.
        name: String,
        /// Where the placeholder starts.
        offset: usize,
    },
    /// A variable the run does not have.
    #[error("unknown variable `{name}` in template `{template}`")]
    UnknownVariable {
        /// The template text.
        template: String,
        /// The variable.
        name: String,
    },
}

/// A problem found in a step before the run started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The step, with sub-pipeline names as `outer/inner`.
    pub step: String,
    /// What is wrong.
    pub error: TemplateError,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step `{}`: {}", self.step, self.error)
    }
}

/// A run that could not start. Nothing ran.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunError {
    /// Templates refer to variables the run will not have, or cannot be parsed.
    #[error("pipeline `{pipeline}` cannot start, nothing ran: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Templates {
        /// The pipeline.
        pipeline: String,
        /// Every problem found, in step order.
        problems: Vec<Problem>,
    },
    /// The run store refused the run's start: nothing ran.
    #[error("run `{run_id}` cannot start, nothing ran: {error}")]
    Store {
        /// The run.
        run_id: String,
        /// What the store said.
        error: String,
    },
}

/// A read of the run context that failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContextError {
    /// No step of that name published that output (yet, or at all).
    #[error("step `{step}` has no output `{key}`")]
    MissingOutput {
        /// The step that should have published it.
        step: String,
        /// The output key.
        key: String,
    },
    /// The output exists but holds another type.
    #[error("output `{key}` of step `{step}` is not a `{expected}`")]
    OutputType {
        /// The step that published it.
        step: String,
        /// The output key.
        key: String,
        /// The type asked for.
        expected: &'static str,
    },
    /// No step of that name in this pipeline or an enclosing one.
    #[error("no step named `{step}`")]
    UnknownStep {
        /// The name asked for.
        step: String,
    },
    /// The run has no such variable.
    #[error("no variable `{name}`")]
    MissingVariable {
        /// The variable.
        name: String,
    },
    /// The run has no such secret.
    #[error("no secret `{name}`")]
    MissingSecret {
        /// The secret's name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_is_not_repeated_in_display() {
        let io = std::io::Error::other("disk on fire");
        let e = StepError::with_source("could not write manifest", io);
        assert_eq!(e.to_string(), "could not write manifest");
        assert_eq!(e.source().unwrap().to_string(), "disk on fire");
        assert!(!e.is_retryable());
        assert!(e.retryable().is_retryable());
    }

    #[test]
    fn cycle_error_lists_the_cycle() {
        let e = BuildError::Cycle { pipeline: "p".into(), cycle: vec!["a".into(), "b".into(), "a".into()] };
        assert_eq!(e.to_string(), "pipeline `p` has a cycle: a -> b -> a");
    }
}
