// src/promote.rs
use std::fmt;
use std::sync::Arc;

use gantry::core::{Template, TemplateError};
use gantry::prelude::*;

/// Published by the build step: the digest of the image it pushed.
pub const IMAGE_DIGEST: OutputKey<String> = OutputKey::new("image_digest");
/// Published by `Promote`: the tag it set.
pub const PROMOTED_TAG: OutputKey<String> = OutputKey::new("promoted_tag");

/// What `Promote` needs of a registry; the host implements it with its HTTP client, tests with a fake.
#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Points `tag` at `digest`.
    async fn tag(&self, digest: &str, tag: &str, token: &str) -> Result<(), RegistryError>;
}

/// A registry's refusal.
#[derive(Debug)]
pub struct RegistryError {
    /// The HTTP status.
    pub status: u16,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registry answered {}", self.status)
    }
}

impl std::error::Error for RegistryError {}

/// Tags the image built by the step `build_step` as the rendered `tag` template.
pub struct Promote {
    build_step: String,
    tag: Template,
    registry: Arc<dyn Registry>,
}

impl Promote {
    /// Fails if `tag` is not a valid template.
    pub fn new(build_step: impl Into<String>, tag: &str, registry: Arc<dyn Registry>) -> Result<Self, TemplateError> {
        Ok(Self { build_step: build_step.into(), tag: Template::parse(tag)?, registry })
    }
}

#[async_trait]
impl Step for Promote {
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        // `?` turns TemplateError and ContextError into a StepError that names what was missing.
        let tag = ctx.render(&self.tag)?;
        let digest = ctx.output(&self.build_step, IMAGE_DIGEST)?;
        let token = ctx.secret("registry_token")?;
        ctx.log(format!("tagging {digest} as {tag} (attempt {})", ctx.attempt()));

        tokio::select! {
            result = self.registry.tag(&digest, &tag, token.expose()) => match result {
                Ok(()) => {}
                // Throttling and server errors are worth another attempt, if the pipeline allows retries.
                Err(e) if e.status == 429 || e.status >= 500 => {
                    return Err(StepError::with_source(format!("could not tag {tag}"), e).retryable());
                }
                Err(e) => return Err(StepError::with_source(format!("could not tag {tag}"), e)),
            },
            () = ctx.cancellation().cancelled() => return Err(StepError::cancelled()),
        }

        ctx.publish(PROMOTED_TAG, tag.clone());
        ctx.set_var("tag", tag); // read downstream as {{promote.tag}} if this step is named "promote"
        Ok(())
    }

    fn describe(&self, ctx: &StepContext) -> String {
        format!("tags the output of `{}` as {}", self.build_step, ctx.render_masked(&self.tag))
    }

    fn variables(&self) -> Result<Vec<String>, TemplateError> {
        let mut names: Vec<String> = self.tag.variables().map(str::to_owned).collect();
        // Declaring the secret makes a missing one stop the run before anything runs.
        names.push("secrets.registry_token".to_owned());
        Ok(names)
    }
}
