//! The one trait every builder implements.

use async_trait::async_trait;
use gantry_core::{CancellationToken, ImageRef};

use crate::error::BuildError;
use crate::request::{BuildObserver, BuildRequest};

/// Something that builds images from a context and pushes them: [`Buildah`](crate::Buildah), the Docker Engine, or a
/// host's own (an in-cluster builder, a remote BuildKit).
///
/// A builder reports each line it prints and each finished step of the Containerfile to the observer, stops when
/// `cancel` fires (and when its future is dropped), and never puts a build secret anywhere but the `RUN` steps that
/// mount it.
#[async_trait]
pub trait Builder: Send + Sync + std::fmt::Debug + 'static {
    /// Its name, for events and errors (`buildah`).
    fn name(&self) -> &'static str;

    /// Builds the image and returns its id (`sha256:...` or the builder's form of it).
    async fn build(
        &self,
        request: &BuildRequest,
        observer: &dyn BuildObserver,
        cancel: &CancellationToken,
    ) -> Result<String, BuildError>;

    /// Pushes the image `image_id` to `to` and returns the digest of the manifest pushed.
    async fn push(
        &self,
        image_id: &str,
        to: &ImageRef,
        request: &BuildRequest,
        observer: &dyn BuildObserver,
        cancel: &CancellationToken,
    ) -> Result<String, BuildError>;
}
