//! The Docker Engine, through its API on a unix socket: BuildKit (the default) with inline cache, or the classic
//! builder, with `--cache-from` images in a registry.
//!
//! A registry cache here is an image: `cache_to` pushes the built image to the cache repository (tag `buildcache`
//! unless the reference names one) and `cache_from` names such images to the builder, which reuses every step whose
//! instruction and parent match. With BuildKit the image carries its cache inline (`BUILDKIT_INLINE_CACHE=1`) and
//! BuildKit fetches what it reuses from the registry; the classic builder needs the cache image pulled first, which
//! this builder does. Cache hits are reported as from the registry cache when the Engine had nothing of its own
//! (BuildKit: no build cache at all; classic: the cache image was pulled for this build), as cached otherwise.
//!
//! Not supported, and refused with a clear error: build secrets. `RUN --mount=type=secret` needs BuildKit with a
//! client session (gRPC over the Engine's `/session`), which this builder does not open; for the same reason
//! BuildKit pulls bases and caches anonymously. Use [`Buildah`](crate::Buildah) for builds with secrets.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use async_trait::async_trait;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, BuilderVersion, CreateImageOptionsBuilder, PushImageOptionsBuilder,
    TagImageOptionsBuilder,
};
use futures::StreamExt;
use gantry_core::{CancellationToken, ImageRef, LayerSource, LogStream};

use crate::builder::Builder;
use crate::error::BuildError;
use crate::fingerprint::context_files;
use crate::registry::registry_problem;
use crate::request::{BuildObserver, BuildRequest, LayerReport, OpenStep};

/// How long an API call may take before the client gives up (a build streams for as long as it runs).
const TIMEOUT_SECS: u64 = 3600;

/// Builds with the Docker Engine (BuildKit, or the classic builder), pushes with the Engine.
///
/// ```
/// use gantry_build::DockerEngine;
/// let docker = DockerEngine::new("/var/run/docker.sock").network("none");
/// # let _ = docker;
/// ```
#[derive(Clone, Debug)]
pub struct DockerEngine {
    socket: PathBuf,
    network: String,
    buildkit: bool,
}

impl DockerEngine {
    /// The Engine listening on the unix socket `socket`; `RUN` steps on its default network.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self { socket: socket.into(), network: "default".into(), buildkit: true }
    }

    /// Builds with the Engine's classic builder instead of BuildKit (the default): its cache images are pulled
    /// with the build's credentials, where BuildKit without a client session pulls them anonymously.
    #[must_use]
    pub fn classic(mut self) -> Self {
        self.buildkit = false;
        self
    }

    /// The network of `RUN` steps: `default`, `host`, `none`, or a network the Engine knows.
    #[must_use]
    pub fn network(mut self, network: impl Into<String>) -> Self {
        self.network = network.into();
        self
    }

    async fn connect(&self) -> Result<Docker, BuildError> {
        let down = |why: String| BuildError::BuilderMissing {
            binary: format!("the Docker Engine at {} ({why})", self.socket.display()),
            hint: "start dockerd, or point DockerEngine at its socket",
        };
        let path = self.socket.to_string_lossy();
        let docker = Docker::connect_with_unix(&path, TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(|e| down(e.to_string()))?;
        docker.negotiate_version().await.map_err(|e| down(e.to_string()))
    }

    /// Whether the Engine answers on its socket.
    pub async fn available(&self) -> bool {
        match self.connect().await {
            Ok(docker) => docker.ping().await.is_ok(),
            Err(_) => false,
        }
    }
}

/// The request with its credential sources asked now.
async fn resolved(request: &BuildRequest) -> Result<BuildRequest, BuildError> {
    let mut request = request.clone();
    if let Some(auth) = &request.auth {
        request.auth = Some(auth.resolve().await?);
    }
    Ok(request)
}

/// The credentials for `image`'s registry, as the Engine takes them.
fn credentials(request: &BuildRequest, image: &ImageRef) -> Result<Option<DockerCredentials>, BuildError> {
    let Some(auth) = &request.auth else { return Ok(None) };
    Ok(auth.credentials_for(image.registry())?.map(|(user, password)| DockerCredentials {
        username: Some(user),
        password: Some(password.expose().to_owned()),
        serveraddress: Some(image.registry().to_owned()),
        ..Default::default()
    }))
}

/// The image a registry cache is kept as.
fn cache_image(cache: &ImageRef) -> Result<ImageRef, BuildError> {
    Ok(match cache.tag() {
        Some(_) => cache.clone(),
        None => cache.with_tag("buildcache")?,
    })
}

fn repository_of(image: &ImageRef) -> String {
    format!("{}/{}", image.registry(), image.repository())
}

/// The context as a tar stream, with the Containerfile under `name` when it lies outside the context.
fn context_tar(request: &BuildRequest) -> Result<(Vec<u8>, String), BuildError> {
    let io = |action: String| move |e: std::io::Error| BuildError::io(action, e);
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let files = context_files(&request.context)?;
    for relative in &files {
        let path = request.context.join(relative);
        tar.append_path_with_name(&path, relative).map_err(io(format!("could not pack {}", path.display())))?;
    }
    let dockerfile = match request.containerfile.strip_prefix(&request.context) {
        Ok(inside) => inside.to_string_lossy().replace('\\', "/"),
        Err(_) => ".gantry.Containerfile".to_owned(),
    };
    if !files.contains(&dockerfile) {
        // The Engine reads the Containerfile from the context, even one `.dockerignore` excludes.
        tar.append_path_with_name(&request.containerfile, &dockerfile)
            .map_err(io(format!("could not pack {}", request.containerfile.display())))?;
    }
    let bytes = tar.into_inner().map_err(io("could not pack the context".into()))?;
    Ok((bytes, dockerfile))
}

#[async_trait]
impl Builder for DockerEngine {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn build(
        &self,
        request: &BuildRequest,
        observer: &dyn BuildObserver,
        cancel: &CancellationToken,
    ) -> Result<String, BuildError> {
        let request = &resolved(request).await?;
        if !request.secrets.is_empty() {
            return Err(BuildError::Unsupported {
                builder: "docker",
                what: "build secrets: mounting them needs a BuildKit client session, which this builder does not \
                       open; use Buildah, or pass no secrets"
                    .into(),
            });
        }
        let docker = self.connect().await?;
        let (tar, dockerfile) = context_tar(request)?;
        if self.buildkit {
            let cache_from: Vec<String> =
                request.cache_from.iter().map(|c| cache_image(c).map(|i| i.to_string())).collect::<Result<_, _>>()?;
            let registry_cache = !cache_from.is_empty() && !crate::buildkit::has_build_cache(&self.socket).await?;
            let outcome = crate::buildkit::build(
                &self.socket,
                request,
                &self.network,
                tar,
                &dockerfile,
                &cache_from,
                registry_cache,
                observer,
                cancel,
            )
            .await?;
            if let Some(cache) = &request.cache_to {
                let image = cache_image(cache)?;
                tag_as(&docker, &outcome.image_id, &image).await?;
                push(&docker, request, &image, observer, cancel).await?;
            }
            return Ok(outcome.image_id);
        }

        // The registry caches, pulled at each build (a pull of an unchanged image is a manifest request).
        let mut cache_from = Vec::new();
        let mut pulled = false;
        for cache in &request.cache_from {
            let image = cache_image(cache)?;
            let name = image.to_string();
            match pull(&docker, request, &image, observer, cancel).await? {
                Some(newer) => pulled |= newer,
                None => {
                    observer.line(LogStream::Stdout, &format!("no cache at {name} yet"));
                    continue;
                }
            }
            cache_from.push(name);
        }

        let mut options = BuildImageOptionsBuilder::new()
            .dockerfile(&dockerfile)
            .rm(true)
            .forcerm(true)
            .networkmode(&self.network)
            .version(BuilderVersion::BuilderV1);
        if let Some(first) = request.tags.first() {
            options = options.t(&first.to_string());
        }
        if !cache_from.is_empty() {
            options = options.cachefrom(&cache_from);
        }
        if !request.build_args.is_empty() {
            let args: HashMap<&str, &str> = request.build_args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            options = options.buildargs(&args);
        }
        if !request.labels.is_empty() {
            let labels: HashMap<&str, &str> = request.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            options = options.labels(&labels);
        }
        if let Some(target) = &request.target {
            options = options.target(target);
        }
        let mut registries = HashMap::new();
        for image in request.tags.iter().chain(&request.cache_from) {
            if let Some(c) = credentials(request, image)? {
                registries.insert(image.registry().to_owned(), c);
            }
        }
        let registries = (!registries.is_empty()).then_some(registries);
        let mut stream = docker.build_image(options.build(), registries, Some(bollard::body_full(tar.into())));
        let mut steps = ClassicParser { registry_cache: pulled, ..ClassicParser::default() };
        let mut tail: Vec<String> = Vec::new();
        let mut image_id = None;
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                // Dropping the stream closes the connection, and the Engine cancels the build.
                () = cancel.cancelled() => return Err(BuildError::Cancelled),
            };
            let Some(item) = item else { break };
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(classify(request, &steps, error, tail));
                }
                Err(e) => return Err(BuildError::Builder { builder: "docker", why: e.to_string(), tail }),
            };
            if let Some(id) = info.aux.and_then(|aux| aux.id) {
                image_id = Some(id);
            }
            for text in info.stream.iter().chain(info.status.iter()) {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    if let Some(report) = steps.feed(line, Instant::now()) {
                        observer.layer(&report);
                    }
                    observer.line(LogStream::Stdout, line);
                    tail.push(line.to_owned());
                    if tail.len() > 25 {
                        tail.remove(0);
                    }
                }
            }
        }
        if let Some(report) = steps.finish(Instant::now()) {
            observer.layer(&report);
        }
        let image_id = image_id.ok_or_else(|| BuildError::Builder {
            builder: "docker",
            why: "the build ended without an image id".into(),
            tail: tail.clone(),
        })?;
        for tag in request.tags.iter().skip(1) {
            tag_as(&docker, &image_id, tag).await?;
        }
        if let Some(cache) = &request.cache_to {
            let image = cache_image(cache)?;
            tag_as(&docker, &image_id, &image).await?;
            push(&docker, request, &image, observer, cancel).await?;
        }
        Ok(image_id)
    }

    async fn push(
        &self,
        image_id: &str,
        to: &ImageRef,
        request: &BuildRequest,
        observer: &dyn BuildObserver,
        cancel: &CancellationToken,
    ) -> Result<String, BuildError> {
        let request = &resolved(request).await?;
        let docker = self.connect().await?;
        tag_as(&docker, image_id, to).await?;
        push(&docker, request, to, observer, cancel).await
    }
}

async fn tag_as(docker: &Docker, image_id: &str, tag: &ImageRef) -> Result<(), BuildError> {
    let options = TagImageOptionsBuilder::new().repo(&repository_of(tag)).tag(tag.tag().unwrap_or("latest")).build();
    docker.tag_image(image_id, Some(options)).await.map_err(|e| BuildError::Builder {
        builder: "docker",
        why: format!("could not tag {image_id} as {tag}: {e}"),
        tail: Vec::new(),
    })
}

/// Pulls `image`: whether it brought a newer image (`None`: the registry has no such image, so no cache yet).
async fn pull(
    docker: &Docker,
    request: &BuildRequest,
    image: &ImageRef,
    observer: &dyn BuildObserver,
    cancel: &CancellationToken,
) -> Result<Option<bool>, BuildError> {
    let options =
        CreateImageOptionsBuilder::new().from_image(&repository_of(image)).tag(image.tag().unwrap_or("latest")).build();
    let mut stream = docker.create_image(Some(options), None, credentials(request, image)?);
    let mut newer = false;
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            () = cancel.cancelled() => return Err(BuildError::Cancelled),
        };
        match item {
            None => return Ok(Some(newer)),
            Some(Ok(info)) => {
                if let Some(status) = info.status {
                    newer |= status.contains("Downloaded newer image");
                    observer.line(LogStream::Stdout, &status);
                }
            }
            Some(Err(e)) => {
                let why = e.to_string();
                // Registries say "not found" or "manifest unknown" for a tag nobody pushed; Docker Hub and ECR
                // say "pull access denied" for a repository that does not exist.
                if ["not found", "manifest unknown", "pull access denied"].iter().any(|w| why.contains(w)) {
                    return Ok(None);
                }
                if let Some(problem) = registry_problem(&why, [image]) {
                    return Err(problem(request.auth.is_some()));
                }
                return Err(BuildError::Builder { builder: "docker", why, tail: Vec::new() });
            }
        }
    }
}

/// Pushes `image` (already tagged so) and returns the digest the Engine reports.
async fn push(
    docker: &Docker,
    request: &BuildRequest,
    image: &ImageRef,
    observer: &dyn BuildObserver,
    cancel: &CancellationToken,
) -> Result<String, BuildError> {
    let options = PushImageOptionsBuilder::new().tag(image.tag().unwrap_or("latest")).build();
    let mut stream = docker.push_image(&repository_of(image), Some(options), credentials(request, image)?);
    let mut digest = None;
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            () = cancel.cancelled() => return Err(BuildError::Cancelled),
        };
        match item {
            None => break,
            Some(Ok(info)) => {
                if let Some(status) = info.status {
                    // `1.0.0: digest: sha256:... size: 1149`
                    if let Some((_, rest)) = status.split_once("digest: ") {
                        digest = rest.split_whitespace().next().map(str::to_owned);
                    }
                    observer.line(LogStream::Stdout, &status);
                }
            }
            Some(Err(e)) => {
                let why = e.to_string();
                if let Some(problem) = registry_problem(&why, [image]) {
                    return Err(problem(request.auth.is_some()));
                }
                return Err(BuildError::PushFailed { reference: image.to_string(), why });
            }
        }
    }
    digest.ok_or_else(|| BuildError::PushFailed {
        reference: image.to_string(),
        why: "the Engine did not report the pushed digest".into(),
    })
}

/// The error a failed classic build stands for.
fn classify(request: &BuildRequest, steps: &ClassicParser, error: String, tail: Vec<String>) -> BuildError {
    if let Some(problem) = registry_problem(&error, request.tags.iter().chain(&request.cache_from)) {
        return problem(request.auth.is_some());
    }
    if error.contains("returned a non-zero code") {
        let instruction = steps.open.instruction().unwrap_or_default().to_owned();
        let start = tail.iter().rposition(|l| classic_step(l).is_some()).map_or(0, |i| i + 1);
        let tail = tail[start..]
            .iter()
            .filter(|l| !l.starts_with(" ---> ") && !l.starts_with("Removing intermediate"))
            .cloned()
            .collect();
        let why = error.rsplit_once(": ").map_or(error.as_str(), |(_, code)| code).trim();
        return BuildError::StepFailed { instruction, why: format!("exit code {why}"), tail };
    }
    if error.contains("parse error") || error.contains("unknown instruction") || error.contains("Dockerfile") {
        return BuildError::InvalidContainerfile { file: request.containerfile.clone(), message: error };
    }
    BuildError::Builder { builder: "docker", why: error, tail }
}

/// `Step 2/5 : RUN make` as (number, of, instruction).
fn classic_step(line: &str) -> Option<(u32, u32, &str)> {
    let rest = line.strip_prefix("Step ")?;
    let (counts, instruction) = rest.split_once(" : ")?;
    let (number, of) = counts.split_once('/')?;
    Some((number.parse().ok()?, of.parse().ok()?, instruction))
}

/// Follows the classic builder's output.
#[derive(Debug, Default)]
struct ClassicParser {
    open: OpenStep,
    /// Whether cache hits come from images pulled from a registry for this build.
    registry_cache: bool,
}

impl ClassicParser {
    fn feed(&mut self, line: &str, now: Instant) -> Option<LayerReport> {
        if let Some((number, of, instruction)) = classic_step(line) {
            return self.open.begin(number, of, instruction.to_owned(), now);
        }
        if line.starts_with("Successfully built") {
            return self.open.end(now);
        }
        let registry_cache = self.registry_cache;
        if let Some(report) = self.open.current()
            && line.trim() == "---> Using cache"
            && report.source == LayerSource::Built
        {
            report.source = if registry_cache { LayerSource::RegistryCache } else { LayerSource::Cache };
        }
        None
    }

    fn finish(&mut self, now: Instant) -> Option<LayerReport> {
        self.open.end(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_builder_output_tells_cached_steps_apart() {
        let mut parser = ClassicParser::default();
        let now = Instant::now();
        let mut reports = Vec::new();
        for line in [
            "Step 1/3 : FROM 127.0.0.1:5000/base:1",
            " ---> 5db0764498fa",
            "Step 2/3 : RUN make",
            " ---> Using cache",
            " ---> 8fdc7fc941cf",
            "Step 3/3 : COPY b.txt /b.txt",
            " ---> 70cdabb4e65e",
            "Successfully built 70cdabb4e65e",
        ] {
            reports.extend(parser.feed(line, now));
        }
        let sources: Vec<LayerSource> = reports.iter().map(|r| r.source).collect();
        assert_eq!(sources, [LayerSource::BaseImage, LayerSource::Cache, LayerSource::Built]);
        assert_eq!(reports[1].instruction, "RUN make");
    }
}
