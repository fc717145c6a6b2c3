//! The errors of SOPS decryption. None of them ever carries plaintext.

/// What went wrong decrypting (or encrypting) a SOPS document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SopsError {
    /// The document could not be parsed in its format.
    #[error("not a valid {format} document: {why}")]
    Parse {
        /// `yaml`, `json`, `dotenv`, `ini`, `binary`.
        format: &'static str,
        /// What is wrong and where.
        why: String,
    },
    /// The document has no (or an incomplete) `sops` metadata section.
    #[error("no SOPS metadata: {0}")]
    Metadata(String),
    /// A key source is unusable.
    #[error("the age keys in {source_name} are unusable: {why}")]
    Key {
        /// Where the keys came from.
        source_name: String,
        /// Why.
        why: String,
    },
    /// None of the identities opens the data key.
    #[error("no identity matches a recipient of the file (tried {tried:?}; the file is for {recipients:?})")]
    NoMatchingIdentity {
        /// The public recipients of the identities tried.
        tried: Vec<String>,
        /// The recipients the file names.
        recipients: Vec<String>,
    },
    /// Key groups with a Shamir threshold could not be combined.
    #[error("the data key needs {threshold} of {groups} key groups; only {opened} could be opened")]
    NotEnoughKeyGroups {
        /// Shares needed.
        threshold: usize,
        /// Key groups in the file.
        groups: usize,
        /// Key groups opened.
        opened: usize,
    },
    /// A key source the file uses is not supported (PGP, KMS without the feature, ...).
    #[error("unsupported key source `{0}`; Gantry decrypts age (and AWS KMS with the `kms` feature)")]
    Unsupported(String),
    /// An `ENC[...]` value is malformed.
    #[error("malformed encrypted value at `{path}`: {why}")]
    Malformed {
        /// Its key path.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A value does not authenticate: tampered, moved to another key, or encrypted with another data key.
    #[error("the value at `{path}` does not authenticate (tampered, moved from another key, or another data key)")]
    Tampered {
        /// Its key path.
        path: String,
    },
    /// The MAC does not match the values: something was added, removed, changed or reordered.
    #[error("MAC mismatch: the file's values were changed after it was encrypted")]
    MacMismatch,
    /// A file could not be read.
    #[error("cannot read {path}: {why}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// A file did not decrypt.
    #[error("cannot decrypt {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: Box<SopsError>,
    },
    /// The file has no MAC and the caller did not allow that.
    #[error("the file has no MAC; refusing to trust it (allow it explicitly to decrypt anyway)")]
    NoMac,
}

impl SopsError {
    pub(crate) fn within(self, source_name: &str) -> Self {
        match self {
            Self::Key { why, .. } => Self::Key { source_name: source_name.to_owned(), why },
            other => other,
        }
    }
}
