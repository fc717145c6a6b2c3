//! The build step: builds an image, pushes it, and hands the deploy steps after it the pushed digest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use gantry_core::{ImageRef, LogStream, OutputKey, Secret, Step, StepContext, StepError, Template, TemplateError};

use crate::auth::RegistryAuth;
use crate::builder::Builder;
use crate::error::BuildError;
use crate::fingerprint::fingerprint;
use crate::registry::{Manifest, Registry};
use crate::request::{BuildObserver, BuildRequest, LayerReport};

/// What a [`BuildImage`] step built, published under [`BUILT`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuiltImage {
    /// The image id in the builder's storage (`None` when an unchanged context reused an earlier build).
    pub image_id: Option<String>,
    /// The digest of the pushed manifest (`None` when the step does not push).
    pub digest: Option<String>,
    /// What to deploy: the first tag pinned to the digest (`registry/repo@sha256:...`), or the first tag when
    /// nothing was pushed.
    pub image: ImageRef,
    /// The tags it was pushed to.
    pub tags: Vec<ImageRef>,
    /// Whether it was built in this run (false: the context was unchanged and an earlier build was tagged again).
    pub rebuilt: bool,
}

/// The output key of [`BuildImage`]'s result.
pub const BUILT: OutputKey<BuiltImage> = OutputKey::new("built");

#[derive(Clone, Debug)]
enum SecretSource {
    Value(Secret),
    Run(String),
}

/// Builds an image from a context and a Containerfile, pushes it, and publishes the digest: the variable
/// `<step>.image` is `registry/repo@sha256:...`, for the deploy steps after it (`RollingDeploy::new(cluster, "web",
/// "{{build.image}}")`), so that what runs is exactly what was built. `<step>.digest` and `<step>.image_id` are set
/// too, and the typed [`BuiltImage`] is published under [`BUILT`].
///
/// Each step of the Containerfile is an [`Event::BuildStep`](gantry_core::Event::BuildStep) saying whether its layer
/// came from the local cache, the registry cache or was built, and how long it took. Build secrets reach the builder
/// as files mounted for `RUN --mount=type=secret` only, and are masked in the run's logs and events.
///
/// Before building, the registries it pushes to and caches in are checked (reachable, credentials accepted), so a
/// registry that is down fails the step at once, not after the build. After pushing, the manifest is read back
/// from the registry and its digest compared with what the builder reported: a push the registry does not hold is
/// never reported as done.
///
/// ```
/// use gantry_build::{BuildImage, Buildah};
/// let build = BuildImage::new(Buildah::new(), "services/{{service}}")
///     .tag("registry.example/shop/{{service}}:{{sha}}")
///     .build_arg("VERSION", "{{release}}")
///     .cache("registry.example/cache/{{service}}")
///     .secret_from_run("npm_token", "npm")
///     .skip_unchanged();
/// # let _ = build;
/// ```
#[derive(Clone, Debug)]
pub struct BuildImage {
    builder: Arc<dyn Builder>,
    context: String,
    containerfile: Option<String>,
    tags: Vec<String>,
    build_args: Vec<(String, String)>,
    target: Option<String>,
    labels: Vec<(String, String)>,
    secrets: Vec<(String, SecretSource)>,
    cache_from: Vec<String>,
    cache_to: Option<String>,
    auth: Option<RegistryAuth>,
    insecure: Vec<String>,
    push: bool,
    skip_unchanged: bool,
}

impl BuildImage {
    /// Builds the context `context` (a template; relative paths are to the host's working directory) with
    /// `builder`. It pushes to its tags unless told [`push(false)`](Self::push).
    pub fn new(builder: impl Builder, context: impl Into<String>) -> Self {
        Self::with_builder(Arc::new(builder), context)
    }

    /// As [`new`](Self::new), sharing a builder.
    pub fn with_builder(builder: Arc<dyn Builder>, context: impl Into<String>) -> Self {
        Self {
            builder,
            context: context.into(),
            containerfile: None,
            tags: Vec::new(),
            build_args: Vec::new(),
            target: None,
            labels: Vec::new(),
            secrets: Vec::new(),
            cache_from: Vec::new(),
            cache_to: None,
            auth: None,
            insecure: Vec::new(),
            push: true,
            skip_unchanged: false,
        }
    }

    /// The Containerfile (a template; relative to the context). By default `Containerfile`, else `Dockerfile`.
    #[must_use]
    pub fn containerfile(mut self, path: impl Into<String>) -> Self {
        self.containerfile = Some(path.into());
        self
    }

    /// A tag (a template): `registry/repository:tag`. The first is what deploys are pinned to.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// A build argument (the value a template). Build arguments are recorded in the image's history: pass secrets
    /// with [`secret`](Self::secret).
    #[must_use]
    pub fn build_arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.build_args.push((name.into(), value.into()));
        self
    }

    /// The stage to build in a multi-stage Containerfile (a template).
    #[must_use]
    pub fn target(mut self, stage: impl Into<String>) -> Self {
        self.target = Some(stage.into());
        self
    }

    /// A label on the image (the value a template).
    #[must_use]
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// A build secret with the id `id`, for `RUN --mount=type=secret,id=<id>`: never in a layer, the history or an
    /// event. It joins the run's secrets (masked everywhere) as `<step>.build-secret.<id>`.
    #[must_use]
    pub fn secret(mut self, id: impl Into<String>, secret: Secret) -> Self {
        self.secrets.push((id.into(), SecretSource::Value(secret)));
        self
    }

    /// A build secret taken from the run's secret `name` (loaded from SOPS, given by the host).
    #[must_use]
    pub fn secret_from_run(mut self, id: impl Into<String>, name: impl Into<String>) -> Self {
        self.secrets.push((id.into(), SecretSource::Run(name.into())));
        self
    }

    /// Takes cached layers from, and pushes them to, the repository `repository` (a template):
    /// `--cache-from` and `--cache-to`.
    #[must_use]
    pub fn cache(self, repository: impl Into<String>) -> Self {
        let repository = repository.into();
        self.cache_from(repository.clone()).cache_to(repository)
    }

    /// Takes cached layers from `repository` (a template); may be given several times.
    #[must_use]
    pub fn cache_from(mut self, repository: impl Into<String>) -> Self {
        self.cache_from.push(repository.into());
        self
    }

    /// Pushes cached layers to `repository` (a template).
    #[must_use]
    pub fn cache_to(mut self, repository: impl Into<String>) -> Self {
        self.cache_to = Some(repository.into());
        self
    }

    /// Credentials for the registries.
    #[must_use]
    pub fn auth(mut self, auth: RegistryAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Reaches `registry` (`host:port`) over plain HTTP, without TLS: a registry on loopback.
    #[must_use]
    pub fn insecure_registry(mut self, registry: impl Into<String>) -> Self {
        self.insecure.push(registry.into());
        self
    }

    /// Whether to push (default true). Without a push there is no digest: `<step>.image` is the first tag.
    #[must_use]
    pub fn push(mut self, push: bool) -> Self {
        self.push = push;
        self
    }

    /// Builds only when the context changed: the input's [fingerprint](crate::fingerprint) is pushed as the tag
    /// `ctx-<fingerprint>` beside the first tag, and a later run that finds that tag tags the same manifest again
    /// instead of building. For fan-outs over services sharing a cache, only the services that changed build.
    /// Needs a push; tags in another repository than the first's make the step build anyway (a manifest is tagged
    /// again within its repository only).
    #[must_use]
    pub fn skip_unchanged(mut self) -> Self {
        self.skip_unchanged = true;
        self
    }

    fn templates(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.context.as_str())
            .chain(self.containerfile.as_deref())
            .chain(self.tags.iter().map(String::as_str))
            .chain(self.build_args.iter().map(|(_, v)| v.as_str()))
            .chain(self.target.as_deref())
            .chain(self.labels.iter().map(|(_, v)| v.as_str()))
            .chain(self.cache_from.iter().map(String::as_str))
            .chain(self.cache_to.as_deref())
    }

    fn request(&self, ctx: &StepContext) -> Result<BuildRequest, StepError> {
        let render = |source: &str| Template::parse(source).and_then(|t| ctx.render(&t));
        let context = PathBuf::from(render(&self.context)?);
        if !context.is_dir() {
            return Err(BuildError::ContextMissing(context).into());
        }
        let containerfile = match &self.containerfile {
            Some(file) => {
                let path = context.join(render(file)?);
                if !path.is_file() {
                    return Err(BuildError::ContainerfileMissing { path, searched: false }.into());
                }
                path
            }
            None => default_containerfile(&context)?,
        };
        let mut request = BuildRequest::new(context, containerfile);
        let image = |text: String| ImageRef::parse(&text).map_err(BuildError::from);
        for tag in &self.tags {
            request.tags.push(image(render(tag)?)?);
        }
        for (name, value) in &self.build_args {
            request.build_args.insert(name.clone(), render(value)?);
        }
        request.target = self.target.as_deref().map(render).transpose()?;
        for (name, value) in &self.labels {
            request.labels.insert(name.clone(), render(value)?);
        }
        for (id, source) in &self.secrets {
            let secret = match source {
                SecretSource::Value(secret) => {
                    ctx.set_secret(&format!("build-secret.{id}"), secret.clone());
                    secret.clone()
                }
                SecretSource::Run(name) => ctx.secret(name)?,
            };
            request.secrets.push((id.clone(), secret));
        }
        for from in &self.cache_from {
            request.cache_from.push(image(render(from)?)?);
        }
        request.cache_to =
            self.cache_to.as_deref().map(|t| render(t).map_err(StepError::from)).transpose()?.map(image).transpose()?;
        request.auth.clone_from(&self.auth);
        request.insecure_registries.clone_from(&self.insecure);
        Ok(request)
    }
}

fn default_containerfile(context: &Path) -> Result<PathBuf, BuildError> {
    let containerfile = context.join("Containerfile");
    if containerfile.is_file() {
        return Ok(containerfile);
    }
    let dockerfile = context.join("Dockerfile");
    if dockerfile.is_file() {
        return Ok(dockerfile);
    }
    Err(BuildError::ContainerfileMissing { path: containerfile, searched: true })
}

fn valid_secret_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl From<BuildError> for StepError {
    fn from(e: BuildError) -> Self {
        if matches!(e, BuildError::Cancelled) {
            return StepError::cancelled();
        }
        let transient = e.is_transient();
        let error = StepError::new(e.to_string());
        if transient { error.retryable() } else { error }
    }
}

/// Turns a builder's reports into the step's log lines and events.
struct Observer<'a> {
    ctx: &'a StepContext,
    image: String,
}

impl BuildObserver for Observer<'_> {
    fn line(&self, stream: LogStream, line: &str) {
        self.ctx.log_to(stream, line);
    }

    fn layer(&self, report: &LayerReport) {
        self.ctx.build_step(&self.image, report.number, report.of, &report.instruction, report.source, report.duration);
    }
}

impl BuildImage {
    /// Checks every registry the build reaches: up, and taking the credentials.
    async fn check_registries(&self, registry: &Registry, request: &BuildRequest) -> Result<(), BuildError> {
        let mut seen = Vec::new();
        let pushed = if self.push { request.tags.as_slice() } else { &[] };
        for image in pushed.iter().chain(&request.cache_from).chain(&request.cache_to) {
            if !seen.contains(&image.registry()) {
                seen.push(image.registry());
                registry.check(image).await?;
            }
        }
        Ok(())
    }

    /// Tags `manifest` as each of `tags` and checks the registry holds it there.
    async fn tag_again(registry: &Registry, manifest: &Manifest, tags: &[ImageRef]) -> Result<(), BuildError> {
        for tag in tags {
            registry.put_manifest(tag, manifest).await?;
            verify(registry, tag, &manifest.digest).await?;
        }
        Ok(())
    }
}

/// Reads `tag` back from its registry: it must name the manifest `digest`.
async fn verify(registry: &Registry, tag: &ImageRef, digest: &str) -> Result<(), BuildError> {
    let stored = registry.manifest(tag).await?;
    match stored {
        Some(m) if m.digest == digest => Ok(()),
        Some(m) => Err(BuildError::PushFailed {
            reference: tag.to_string(),
            why: format!("the registry holds {} there, not the pushed {digest}", m.digest),
        }),
        None => Err(BuildError::PushFailed {
            reference: tag.to_string(),
            why: format!("the registry has no manifest there after the push of {digest}"),
        }),
    }
}

#[async_trait]
impl Step for BuildImage {
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let mut request = self.request(ctx)?;
        if let Some(auth) = &request.auth {
            let resolved = auth.resolve().await?;
            // Registry passwords and tokens are masked from now on, as build secrets are.
            for (registry, password) in resolved.passwords()? {
                ctx.set_secret(&format!("registry-password.{registry}"), password);
            }
            request.auth = Some(resolved);
        }
        let registry = Registry::new(request.auth.clone(), request.insecure_registries.clone())?;
        self.check_registries(&registry, &request).await?;
        let first = request.tags.first().cloned();
        // Re-tagging copies a manifest within its repository only: tags in other repositories need a build.
        let one_repository = request
            .tags
            .iter()
            .all(|t| first.as_ref().is_some_and(|f| t.registry() == f.registry() && t.repository() == f.repository()));
        let unchanged_tag = match (&first, self.skip_unchanged && self.push && one_repository) {
            (Some(first), true) => {
                let print = fingerprint(&request)?;
                Some(first.with_tag(&format!("ctx-{}", &print[..32])).map_err(BuildError::from)?)
            }
            _ => None,
        };
        if let (Some(first), Some(unchanged)) = (&first, &unchanged_tag)
            && let Some(manifest) = registry.manifest(unchanged).await?
        {
            ctx.log(format!(
                "the context is unchanged since the build tagged {unchanged}: tagging {} again instead of building",
                manifest.digest
            ));
            Self::tag_again(&registry, &manifest, &request.tags).await?;
            let built = BuiltImage {
                image_id: None,
                digest: Some(manifest.digest.clone()),
                image: first.pinned(&manifest.digest).map_err(BuildError::from)?,
                tags: request.tags.clone(),
                rebuilt: false,
            };
            publish(ctx, built);
            return Ok(());
        }

        let observer = Observer { ctx, image: request.display_name() };
        let cancel = ctx.cancellation();
        let started = std::time::Instant::now();
        let image_id = self.builder.build(&request, &observer, cancel).await?;
        ctx.log(format!(
            "built {} as {image_id} in {:.1?} with {}",
            observer.image,
            started.elapsed(),
            self.builder.name()
        ));
        let Some(first) = first else {
            return Err(StepError::new("a build needs a tag: add `.tag(..)`"));
        };
        if !self.push {
            let built = BuiltImage {
                image_id: Some(image_id),
                digest: None,
                image: first,
                tags: request.tags.clone(),
                rebuilt: true,
            };
            publish(ctx, built);
            return Ok(());
        }
        let mut digest: Option<String> = None;
        for tag in &request.tags {
            let pushed = self.builder.push(&image_id, tag, &request, &observer, cancel).await?;
            verify(&registry, tag, &pushed).await?;
            ctx.log(format!("pushed {tag} as {pushed}; the registry holds it"));
            digest.get_or_insert(pushed);
        }
        let digest = digest.unwrap_or_default();
        if let Some(unchanged) = &unchanged_tag
            && let Some(manifest) = registry.manifest(&first.pinned(&digest).map_err(BuildError::from)?).await?
        {
            Self::tag_again(&registry, &manifest, std::slice::from_ref(unchanged)).await?;
        }
        let built = BuiltImage {
            image_id: Some(image_id),
            image: first.pinned(&digest).map_err(BuildError::from)?,
            digest: Some(digest),
            tags: request.tags.clone(),
            rebuilt: true,
        };
        publish(ctx, built);
        Ok(())
    }

    fn describe(&self, ctx: &StepContext) -> String {
        let show = |s: &str| Template::parse(s).map(|t| ctx.render_masked(&t)).unwrap_or_else(|_| s.to_owned());
        let mut text = format!("builds {} with {}", show(&self.context), self.builder.name());
        if let Some(tag) = self.tags.first() {
            text.push_str(&format!(" {} {}", if self.push { "and pushes" } else { "as" }, show(tag)));
        }
        if let Some(cache) = self.cache_to.as_deref().or(self.cache_from.first().map(String::as_str)) {
            text.push_str(&format!(", caching layers in {}", show(cache)));
        }
        if self.skip_unchanged {
            text.push_str(", unless its context is unchanged");
        }
        text
    }

    fn variables(&self) -> Result<Vec<String>, TemplateError> {
        Template::variables_of(self.templates())
    }

    fn validate(&self) -> Result<(), String> {
        if self.tags.is_empty() {
            return Err("a build needs a tag (`registry/repository:tag`): add `.tag(..)`".into());
        }
        if self.skip_unchanged && !self.push {
            return Err("`skip_unchanged` finds earlier builds in the registry, so it needs `push(true)`".into());
        }
        if let Some((id, _)) = self.secrets.iter().find(|(id, _)| !valid_secret_id(id)) {
            return Err(format!("the build secret id `{id}` is not letters, digits, `_`, `-` or `.`"));
        }
        for source in self.templates() {
            Template::parse(source).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

fn publish(ctx: &StepContext, built: BuiltImage) {
    ctx.set_var("image", built.image.to_string());
    if let Some(digest) = &built.digest {
        ctx.set_var("digest", digest.clone());
    }
    if let Some(id) = &built.image_id {
        ctx.set_var("image_id", id.clone());
    }
    ctx.publish(BUILT, built);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Buildah;

    #[test]
    fn secrets_and_credentials_are_masked_in_debug_output() {
        let step = BuildImage::new(Buildah::new(), "ctx")
            .tag("registry.example/shop/web:1")
            .secret("token", Secret::new("s3cret-build-value"))
            .auth(RegistryAuth::new().basic("registry.example", "ci", Secret::new("registry-pw-value")));
        let shown = format!("{step:?}");
        assert!(!shown.contains("s3cret-build-value") && !shown.contains("registry-pw-value"), "{shown}");
        assert!(shown.contains("token") && shown.contains("registry.example"), "the rest is shown: {shown}");
    }

    #[test]
    fn bad_configuration_is_refused_before_the_run() {
        let untagged = BuildImage::new(Buildah::new(), "ctx");
        assert!(untagged.validate().unwrap_err().contains("needs a tag"));
        let bad_id =
            BuildImage::new(Buildah::new(), "ctx").tag("r.example/x:1").secret("a,src=/etc/passwd", Secret::new("x"));
        assert!(bad_id.validate().unwrap_err().contains("build secret id `a,src=/etc/passwd`"));
        let bad_template = BuildImage::new(Buildah::new(), "ctx").tag("r.example/x:{{release");
        assert!(bad_template.validate().unwrap_err().contains("unclosed"));
    }
}
