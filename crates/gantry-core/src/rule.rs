//! Trigger rules and conditions: when a step runs.
//!
//! Once all of a step's upstream steps are finished, its [`TriggerRule`] decides whether it runs; if it may, its
//! [`Condition`] (if any) has the last word. The rules follow Airflow's trigger rules:
//!
//! | rule | runs when | otherwise |
//! |---|---|---|
//! | [`AllSuccess`](TriggerRule::AllSuccess) (default) | every upstream succeeded | skipped, naming the upstream that failed or was skipped |
//! | [`OnFailure`](TriggerRule::OnFailure) | at least one upstream failed | skipped |
//! | [`Always`](TriggerRule::Always) | every upstream finished, also after a cancellation | — |
//! | [`NoneFailed`](TriggerRule::NoneFailed) | no upstream failed (skipped is fine) | skipped |
//!
//! A failure under `allow_failure` counts as a success for `AllSuccess` and `NoneFailed` (the happy path goes on) and
//! as a failure for `OnFailure` (its handler still runs). After a cancellation only `Always` steps run.

use std::fmt;
use std::sync::Arc;

use crate::context::StepContext;

/// When a step runs, given how its upstream steps ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    /// Every upstream step succeeded: the happy path.
    #[default]
    AllSuccess,
    /// At least one upstream step failed: the failure path.
    OnFailure,
    /// Every upstream step finished, however: finally-steps such as notifications and cleanup.
    Always,
    /// No upstream step failed; skipped ones are fine: the join after conditional branches.
    NoneFailed,
}

impl TriggerRule {
    /// The rule's name as written in graphs and plans.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllSuccess => "all_success",
            Self::OnFailure => "on_failure",
            Self::Always => "always",
            Self::NoneFailed => "none_failed",
        }
    }
}

impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the upstream steps of one step ended, as counts. `first_failed` and `first_skipped` name an example (the
/// first one to end so), meaningful while the count beside them is not zero.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Upstream {
    pub(crate) failed: u32,
    /// Failures under `allow_failure`: a success for the happy path, a failure for the failure path.
    pub(crate) allowed_failed: u32,
    pub(crate) skipped: u32,
    pub(crate) first_failed: u32,
    pub(crate) first_skipped: u32,
}

/// The rule's verdict.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Run,
    /// Skipped because upstream `node` failed.
    UpstreamFailed(u32),
    /// Skipped because upstream `node` was skipped.
    UpstreamSkipped(u32),
    /// An `on_failure` step with nothing failed upstream.
    NothingFailed,
}

impl TriggerRule {
    pub(crate) fn decide(self, up: &Upstream) -> Verdict {
        let failed = || Verdict::UpstreamFailed(up.first_failed);
        match self {
            Self::AllSuccess if up.failed > 0 => failed(),
            Self::AllSuccess if up.skipped > 0 => Verdict::UpstreamSkipped(up.first_skipped),
            Self::OnFailure if up.failed == 0 && up.allowed_failed == 0 => Verdict::NothingFailed,
            Self::NoneFailed if up.failed > 0 => failed(),
            _ => Verdict::Run,
        }
    }
}

type Predicate = dyn Fn(&StepContext) -> bool + Send + Sync;

/// A predicate on the run context that decides whether a step whose rule allows it really runs. Its label is shown
/// in plans, graphs and skip reasons.
///
/// ```
/// use gantry_core::Condition;
/// let prod = Condition::var_equals("env", "production");
/// assert_eq!(prod.label(), "env == production");
/// let custom = Condition::new("hotfix label", |ctx| ctx.var("labels").is_some_and(|l| l.contains("hotfix")));
/// # let _ = custom;
/// ```
#[derive(Clone)]
pub struct Condition {
    label: Arc<str>,
    predicate: Arc<Predicate>,
}

impl Condition {
    /// A condition from a label and a predicate.
    pub fn new(label: impl Into<String>, predicate: impl Fn(&StepContext) -> bool + Send + Sync + 'static) -> Self {
        Self { label: Arc::from(label.into()), predicate: Arc::new(predicate) }
    }

    /// True when the variable `name` equals `value`.
    pub fn var_equals(name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        let label = format!("{name} == {value}");
        Self::new(label, move |ctx| ctx.var(&name).as_deref() == Some(value.as_str()))
    }

    /// True when the variable `name` differs from `value` (or is not set).
    pub fn var_not_equals(name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        let label = format!("{name} != {value}");
        Self::new(label, move |ctx| ctx.var(&name).as_deref() != Some(value.as_str()))
    }

    /// True when the variable `name` is set.
    pub fn var_exists(name: impl Into<String>) -> Self {
        let name = name.into();
        Self::new(format!("{name} is set"), move |ctx| ctx.var(&name).is_some())
    }

    /// The label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Evaluates the predicate. A panic in the predicate counts as false.
    pub fn evaluate(&self, ctx: &StepContext) -> bool {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.predicate)(ctx))).unwrap_or(false)
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition").field(&self.label).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(failed: u32, skipped: u32) -> Upstream {
        Upstream { failed, allowed_failed: 0, skipped, first_failed: 1, first_skipped: 2 }
    }

    fn allowed(n: u32) -> Upstream {
        Upstream { allowed_failed: n, ..Upstream::default() }
    }

    #[test]
    fn rule_table() {
        use TriggerRule::*;
        use Verdict::*;
        let cases = [
            (AllSuccess, up(0, 0), Run),
            (AllSuccess, up(1, 1), UpstreamFailed(1)),
            (AllSuccess, up(0, 1), UpstreamSkipped(2)),
            (OnFailure, up(0, 0), NothingFailed),
            (OnFailure, up(0, 3), NothingFailed),
            (OnFailure, up(1, 0), Run),
            (Always, up(2, 2), Run),
            (NoneFailed, up(0, 2), Run),
            (NoneFailed, up(1, 0), UpstreamFailed(1)),
            (AllSuccess, allowed(1), Run),
            (NoneFailed, allowed(1), Run),
            (OnFailure, allowed(1), Run),
            (Always, allowed(1), Run),
        ];
        for (rule, upstream, verdict) in cases {
            assert_eq!(rule.decide(&upstream), verdict, "{rule} with {upstream:?}");
        }
    }
}
