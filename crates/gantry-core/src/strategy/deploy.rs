//! The step that runs a strategy.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Release, Strategy, Target};
use crate::analysis::Verdict;
use crate::{OutputKey, Step, StepContext, StepError, Template, TemplateError};

/// The last analysis verdict of a [`Deploy`] step, with its evidence.
pub const VERDICT: OutputKey<Verdict> = OutputKey::new("verdict");

/// A pipeline step that deploys a release (service, version and image are templates) with a strategy.
#[derive(Debug, Clone)]
pub struct Deploy {
    target: Arc<dyn Target>,
    strategy: Arc<dyn Strategy>,
    service: String,
    version: String,
    image: Option<String>,
    interrupt_grace: std::time::Duration,
    restore_budget: std::time::Duration,
}

/// How long a [`Deploy`] step may take to put the stable release back after its timeout, unless told otherwise.
const DEPLOY_INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(300);

impl Deploy {
    /// Deploys `service` at `version` to `target` with `strategy`.
    pub fn new(
        target: Arc<dyn Target>,
        strategy: impl Strategy + 'static,
        service: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        Self {
            target,
            strategy: Arc::new(strategy),
            service: service.into(),
            version: version.into(),
            image: None,
            interrupt_grace: DEPLOY_INTERRUPT_GRACE,
            restore_budget: super::DEFAULT_RESTORE_BUDGET,
        }
    }

    /// How long the step may take, once its timeout has passed, to abort (all traffic back to the stable release,
    /// the new slot emptied) before it is dropped (default 5 minutes; see [`Step::interrupt_grace`]).
    #[must_use]
    pub fn interrupt_grace(mut self, grace: std::time::Duration) -> Self {
        self.interrupt_grace = grace;
        self
    }

    /// How long a restore of the stable release is retried before the step gives up and says what is left behind
    /// (default 1 minute; see [`run_strategy`](super::run_strategy)). Keep it within the step's `interrupt_grace`
    /// and the run's grace period, or an interrupted restore goes on in a task of its own.
    #[must_use]
    pub fn restore_budget(mut self, budget: std::time::Duration) -> Self {
        self.restore_budget = budget;
        self
    }

    /// The release's container image (a template).
    #[must_use]
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    fn templates(&self) -> impl Iterator<Item = &str> {
        [self.service.as_str(), self.version.as_str()].into_iter().chain(self.image.as_deref())
    }
}

#[async_trait]
impl Step for Deploy {
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let render = |s: &str| Template::parse(s).and_then(|t| ctx.render(&t));
        let mut release = Release::new(render(&self.service)?, render(&self.version)?);
        if let Some(image) = &self.image {
            release = release.image(render(image)?);
        }
        super::run_strategy(Arc::clone(&self.target), self.strategy.as_ref(), &release, ctx, self.restore_budget).await
    }

    fn validate(&self) -> Result<(), String> {
        self.strategy.check()?;
        let missing = self.strategy.requires().missing_from(self.target.capabilities());
        if missing.is_empty() {
            return Ok(());
        }
        Err(format!("its strategy needs {} that {:?} cannot do", missing.join(" and "), self.target))
    }

    fn describe(&self, ctx: &StepContext) -> String {
        let show = |s: &str| Template::parse(s).map(|t| ctx.render_masked(&t)).unwrap_or_else(|_| s.to_owned());
        format!(
            "deploys {} {} to {:?} by {}",
            show(&self.service),
            show(&self.version),
            self.target,
            self.strategy.describe(ctx)
        )
    }

    fn interrupt_grace(&self) -> std::time::Duration {
        self.interrupt_grace
    }

    fn variables(&self) -> Result<Vec<String>, TemplateError> {
        let mut names = Vec::new();
        for t in self.templates() {
            names.extend(Template::parse(t)?.variables().map(str::to_owned));
        }
        Ok(names)
    }
}
