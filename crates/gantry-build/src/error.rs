//! What can go wrong in a build, each cause named.

use std::path::PathBuf;

/// Why a build or a push failed. Every variant says what was wrong and where; none carries a secret (build secrets
/// reach the builder as files, never as text of an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The build context is not a directory.
    #[error("the build context `{}` is not a directory", .0.display())]
    ContextMissing(PathBuf),
    /// The Containerfile (or Dockerfile) is not there.
    #[error("no Containerfile at `{}`{}", .path.display(), if *.searched { " (nor a Dockerfile beside it)" } else { "" })]
    ContainerfileMissing {
        /// Where it was looked for.
        path: PathBuf,
        /// Whether both `Containerfile` and `Dockerfile` were tried.
        searched: bool,
    },
    /// The Containerfile does not parse, or names something the builder refuses.
    #[error("the Containerfile `{}` is invalid: {message}", .file.display())]
    InvalidContainerfile {
        /// The file.
        file: PathBuf,
        /// The builder's words.
        message: String,
    },
    /// A step of the build failed (a `RUN` exited non-zero).
    #[error("build step `{instruction}` failed: {why}{}", tail_text(.tail))]
    StepFailed {
        /// The instruction, as the builder printed it.
        instruction: String,
        /// The builder's words (`exit status 3`).
        why: String,
        /// The last lines the step printed.
        tail: Vec<String>,
    },
    /// The builder program is not installed.
    #[error("the builder `{binary}` is not installed ({hint})")]
    BuilderMissing {
        /// The program looked for.
        binary: String,
        /// How to get it.
        hint: &'static str,
    },
    /// A registry could not be reached.
    #[error("the registry {registry} cannot be reached: {why}")]
    RegistryUnreachable {
        /// The registry (`host:port`).
        registry: String,
        /// What happened.
        why: String,
    },
    /// A registry refused the credentials (or asked for some and none were given).
    #[error("the registry {registry} refused the credentials{}", if *.given { "" } else { " (none were given)" })]
    CredentialsRefused {
        /// The registry (`host:port`).
        registry: String,
        /// Whether credentials were given.
        given: bool,
    },
    /// A registry refused a request for another reason than the credentials (a 404 on its API root, a 400, a
    /// token service that answers without a token).
    #[error("the registry refused {reference}: {why}")]
    RegistryRefused {
        /// What was asked for.
        reference: String,
        /// Its answer.
        why: String,
    },
    /// A credential source could not give credentials.
    #[error("no credentials for the registry {registry}: {why}")]
    CredentialsUnavailable {
        /// The registry.
        registry: String,
        /// Why.
        why: String,
    },
    /// The push failed for another reason, or what the registry holds is not what was pushed.
    #[error("pushing {reference} failed: {why}")]
    PushFailed {
        /// Where to.
        reference: String,
        /// What happened.
        why: String,
    },
    /// The builder failed in a way not named above.
    #[error("{builder} failed: {why}{}", tail_text(.tail))]
    Builder {
        /// Which builder.
        builder: &'static str,
        /// What it said.
        why: String,
        /// The last lines it printed.
        tail: Vec<String>,
    },
    /// The builder cannot do what the build asks.
    #[error("{builder} cannot do {what}")]
    Unsupported {
        /// Which builder.
        builder: &'static str,
        /// What it cannot do, and what to do instead.
        what: String,
    },
    /// A tag, cache or base reference is not an image reference.
    #[error(transparent)]
    Reference(#[from] gantry_core::ImageRefError),
    /// The docker `config.json` for the registry could not be read.
    #[error("the registry credentials file `{}` cannot be used: {why}", .path.display())]
    AuthFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A local file (the context, a secret's file, the builder's output) could not be read or written.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The build was cancelled.
    #[error("the build was cancelled")]
    Cancelled,
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() { String::new() } else { format!("; last lines:\n{}", tail.join("\n")) }
}

impl BuildError {
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { action: action.into(), source }
    }

    /// Whether trying again may help: the registry was unreachable, or a push failed midway.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RegistryUnreachable { .. } | Self::PushFailed { .. } | Self::CredentialsUnavailable { .. })
    }
}
