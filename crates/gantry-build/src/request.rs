//! What a builder is asked to build, and what it reports while it builds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gantry_core::{ImageRef, LayerSource, LogStream, Secret};

use crate::auth::RegistryAuth;

/// One build, with every template already rendered: what [`Builder::build`](crate::Builder::build) gets.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BuildRequest {
    /// The build context (a directory).
    pub context: PathBuf,
    /// The Containerfile or Dockerfile.
    pub containerfile: PathBuf,
    /// Tags for the image (the first names the build in events).
    pub tags: Vec<ImageRef>,
    /// `--build-arg`s. Not secret: they are recorded in the image's history. Pass secrets as [`secrets`](Self::secrets).
    pub build_args: BTreeMap<String, String>,
    /// The stage to build, for a multi-stage Containerfile.
    pub target: Option<String>,
    /// Labels on the image.
    pub labels: BTreeMap<String, String>,
    /// Build secrets by id: mounted for `RUN --mount=type=secret,id=<id>` only, never in a layer or the history.
    pub secrets: Vec<(String, Secret)>,
    /// Repositories to take cached layers from (`--cache-from`).
    pub cache_from: Vec<ImageRef>,
    /// The repository to push cached layers to (`--cache-to`).
    pub cache_to: Option<ImageRef>,
    /// Credentials for the registries the build pulls from and pushes to.
    pub auth: Option<RegistryAuth>,
    /// Registries reached over plain HTTP without TLS verification (a registry on loopback).
    pub insecure_registries: Vec<String>,
}

impl BuildRequest {
    /// A request to build `context` with its Containerfile, and nothing else set.
    pub fn new(context: impl Into<PathBuf>, containerfile: impl Into<PathBuf>) -> Self {
        Self {
            context: context.into(),
            containerfile: containerfile.into(),
            tags: Vec::new(),
            build_args: BTreeMap::new(),
            target: None,
            labels: BTreeMap::new(),
            secrets: Vec::new(),
            cache_from: Vec::new(),
            cache_to: None,
            auth: None,
            insecure_registries: Vec::new(),
        }
    }

    /// What events call the image: its first tag, else the context's directory name.
    pub fn display_name(&self) -> String {
        match self.tags.first() {
            Some(tag) => tag.to_string(),
            None => self
                .context
                .file_name()
                .map_or_else(|| self.context.display().to_string(), |name| name.to_string_lossy().into_owned()),
        }
    }

    /// Whether `registry` is reached over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        self.insecure_registries.iter().any(|r| r == registry)
    }
}

/// One finished step of a Containerfile, as a builder reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerReport {
    /// Its number, from 1.
    pub number: u32,
    /// How many steps the build has.
    pub of: u32,
    /// The instruction as the builder printed it.
    pub instruction: String,
    /// Where its layer came from.
    pub source: LayerSource,
    /// How long it took.
    pub duration: Duration,
}

/// The Containerfile step a builder's output has begun and not yet ended: what both output parsers keep.
#[derive(Debug, Default)]
pub(crate) struct OpenStep(Option<(LayerReport, std::time::Instant)>);

impl OpenStep {
    /// Begins step `number` of `of` (a `FROM` is a stage's base image; anything else is built until the builder
    /// says otherwise), ending the one before, which is returned.
    pub(crate) fn begin(
        &mut self,
        number: u32,
        of: u32,
        instruction: String,
        now: std::time::Instant,
    ) -> Option<LayerReport> {
        let ended = self.end(now);
        let source = if instruction.starts_with("FROM ") || instruction.contains("] FROM ") {
            LayerSource::BaseImage
        } else {
            LayerSource::Built
        };
        self.0 = Some((LayerReport { number, of, instruction, source, duration: Duration::ZERO }, now));
        ended
    }

    /// Ends the open step, if any, with its duration.
    pub(crate) fn end(&mut self, now: std::time::Instant) -> Option<LayerReport> {
        let (mut report, started) = self.0.take()?;
        report.duration = now.saturating_duration_since(started);
        Some(report)
    }

    /// The open step's instruction.
    pub(crate) fn instruction(&self) -> Option<&str> {
        self.0.as_ref().map(|(report, _)| report.instruction.as_str())
    }

    /// The open step.
    pub(crate) fn current(&mut self) -> Option<&mut LayerReport> {
        self.0.as_mut().map(|(report, _)| report)
    }
}

/// Follows a build: its output lines and its finished steps. The [`BuildImage`](crate::BuildImage) step turns them
/// into log lines and [`Event::BuildStep`](gantry_core::Event::BuildStep)s.
pub trait BuildObserver: Send + Sync {
    /// A line the builder printed.
    fn line(&self, stream: LogStream, line: &str);
    /// A step finished.
    fn layer(&self, report: &LayerReport);
}

/// An observer that keeps everything, for tests and for hosts that build outside a pipeline.
#[derive(Debug, Default)]
pub struct Recorded {
    lines: std::sync::Mutex<Vec<(LogStream, String)>>,
    layers: std::sync::Mutex<Vec<LayerReport>>,
}

impl Recorded {
    /// The lines so far.
    pub fn lines(&self) -> Vec<(LogStream, String)> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The finished steps so far.
    pub fn layers(&self) -> Vec<LayerReport> {
        self.layers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl BuildObserver for Recorded {
    fn line(&self, stream: LogStream, line: &str) {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).push((stream, line.to_owned()));
    }

    fn layer(&self, report: &LayerReport) {
        self.layers.lock().unwrap_or_else(|e| e.into_inner()).push(report.clone());
    }
}
