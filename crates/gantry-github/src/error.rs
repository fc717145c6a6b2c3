//! What can go wrong setting up GitHub access.

/// An error of gantry-github's setup (delivery failures are reported, never raised: see [`Finished`](crate::Finished)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitHubError {
    /// The GitHub App's private key cannot be used (the key itself is never shown).
    #[error("the GitHub App's private key cannot be used: {why}")]
    AppKey {
        /// Why.
        why: &'static str,
    },
}
