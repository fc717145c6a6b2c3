//! Secret values and their redaction.
//!
//! A [`Secret`] prints as a mask in `Debug` and `Display` and zeroes its memory on drop. Every secret known to a run
//! (given in its [`Context`](crate::Context), or registered by a step at run time) is masked by the run's
//! [`Redactor`] in every event, log line, error and report before anything leaves the executor.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, RwLock};

use zeroize::Zeroizing;

/// What a secret value is replaced with wherever it would be shown.
pub const MASK: &str = "********";

/// A secret string: masked when printed, zeroed when dropped.
///
/// ```
/// use gantry_core::Secret;
/// let token = Secret::new("hunter2");
/// assert_eq!(format!("{token:?} {token}"), "Secret(********) ********");
/// assert_eq!(token.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret value itself. Pass it only where it is needed (an argument, an environment variable, a header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({MASK})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// Masks every registered secret value in text. Cheap to clone: clones share the set of secrets.
///
/// Values are matched exactly, longest first. An empty value is never registered; a very short one (a single
/// character) is masked wherever it occurs, as CI systems do. A value that is split across two
/// log lines is not recognised in either half: keep secrets on one line (sops, tokens and passwords are).
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<Secret>>>,
}

impl Redactor {
    /// A redactor that knows no secret yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a value to be masked from now on. Registering the same value twice is harmless.
    pub fn register(&self, secret: &Secret) {
        if secret.expose().is_empty() {
            return;
        }
        let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        if secrets.iter().any(|s| s == secret) {
            return;
        }
        secrets.push(secret.clone());
        // Longest first, so that a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
    }

    /// How many distinct values are registered.
    pub fn len(&self) -> usize {
        self.secrets.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no value is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `text` with every registered value replaced by [`MASK`]. Borrows when there is nothing to mask.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Cow::Borrowed(text);
        for secret in secrets.iter() {
            if out.contains(secret.expose()) {
                out = Cow::Owned(out.replace(secret.expose(), MASK));
            }
        }
        out
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor").field("secrets", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first_and_borrows_when_clean() {
        let r = Redactor::new();
        r.register(&Secret::new("abc"));
        r.register(&Secret::new("abcdef"));
        r.register(&Secret::new(""));
        assert_eq!(r.len(), 2);
        assert_eq!(r.redact("x abcdef y abc"), format!("x {MASK} y {MASK}"));
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("s3cr3t-value");
        let shown = format!("{s:?} {s} {:?}", vec![s.clone()]);
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
