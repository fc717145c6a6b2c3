//! Gantry's image builds: a [`BuildImage`] step on real builders, layers cached in a registry, deploys by digest.
//!
//! A [`Builder`] builds a context and pushes the image: [`Buildah`] (daemonless; `buildah build --layers`) and
//! [`DockerEngine`] (the Engine's API on its socket: BuildKit with inline cache, or the classic builder, with
//! `--cache-from` images). [`BuildImage`] renders its templates, checks the registries before building, builds with layer caches
//! (`--cache-from` / `--cache-to`), passes secrets as build secrets, pushes, reads the pushed manifest back, and
//! sets `<step>.image` to `registry/repository@sha256:...` for the deploy steps after it. Each step of the
//! Containerfile is reported as an [`Event::BuildStep`](gantry_core::Event::BuildStep): from the local cache, from
//! the registry cache, or built, with its duration. [`skip_unchanged`](BuildImage::skip_unchanged) builds only
//! services whose context changed.
//!
//! ```no_run
//! use gantry_build::{BuildImage, Buildah};
//! use gantry_core::{Context, Pipeline};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = Pipeline::builder("ci")
//!     .step(
//!         "build",
//!         BuildImage::new(Buildah::new(), "services/web")
//!             .tag("127.0.0.1:5000/shop/web:{{sha}}")
//!             .cache("127.0.0.1:5000/cache/web")
//!             .insecure_registry("127.0.0.1:5000"),
//!     )
//!     .build()?;
//! let report = pipeline.run(Context::new().var("sha", "4f2a9c1")).await?;
//! assert_eq!(report.status, gantry_core::RunStatus::Succeeded);
//! # Ok(()) }
//! ```
//!
//! A build's configuration is checked when the pipeline is built, before anything runs:
//!
//! ```
//! use gantry_build::{BuildImage, Buildah};
//! use gantry_core::Pipeline;
//!
//! let untagged = Pipeline::builder("ci").step("build", BuildImage::new(Buildah::new(), "services/web")).build();
//! assert!(untagged.unwrap_err().to_string().contains("a build needs a tag"));
//! ```
//!
//! See `docs/guides/image-builds.md` for builders, caches, secrets and deploying by digest.

mod auth;
mod buildah;
mod builder;
mod buildkit;
mod docker;
mod error;
mod fingerprint;
mod process;
mod registry;
mod request;
mod step;

pub use auth::{CredentialSource, RegistryAuth};
pub use buildah::Buildah;
pub use builder::Builder;
pub use docker::DockerEngine;
pub use error::BuildError;
pub use fingerprint::fingerprint;
pub use registry::{Manifest, Registry};
pub use request::{BuildObserver, BuildRequest, LayerReport, Recorded};
pub use step::{BUILT, BuildImage, BuiltImage};
