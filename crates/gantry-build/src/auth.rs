//! Registry credentials: a docker `config.json`, or a user and a password or token from the host.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gantry_core::Secret;

use crate::error::BuildError;

/// Credentials fetched each time a build needs them: short-lived registry tokens on a long-lived host (an ECR
/// token lasts 12 hours; `gantry-aws`'s `EcrRegistry`, feature `build`, is one).
#[async_trait::async_trait]
pub trait CredentialSource: Send + Sync + std::fmt::Debug + 'static {
    /// The registry (`host[:port]`) the credentials are for.
    fn registry(&self) -> &str;

    /// A user and a password or token, valid for at least the length of a build. A source may cache them.
    async fn credentials(&self) -> Result<(String, Secret), gantry_core::BoxError>;
}

/// Credentials for registries. Tokens go in as passwords: an ECR token with the user `AWS`, a GitLab or GitHub
/// token with the account's name, Google's access token with `oauth2accesstoken`.
///
/// ```
/// use gantry_build::RegistryAuth;
/// use gantry_core::Secret;
/// let auth = RegistryAuth::new().basic("registry.example:5000", "ci", Secret::new("s3cret"));
/// assert!(!format!("{auth:?}").contains("s3cret"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct RegistryAuth {
    config: Option<PathBuf>,
    basic: BTreeMap<String, (String, Secret)>,
    sources: Vec<Arc<dyn CredentialSource>>,
}

impl RegistryAuth {
    /// No credentials yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `auths` of a docker `config.json` (entries with an `auth` field; credential helpers are not run).
    pub fn docker_config(path: impl Into<PathBuf>) -> Self {
        Self { config: Some(path.into()), ..Self::default() }
    }

    /// Credentials fetched from `source` when a build starts (and so fresh for each build).
    #[must_use]
    pub fn source(mut self, source: impl CredentialSource) -> Self {
        self.sources.push(Arc::new(source));
        self
    }

    /// These credentials with every source's fetched now, as user and password entries.
    pub async fn resolve(&self) -> Result<Self, BuildError> {
        let mut resolved = self.clone();
        for source in &self.sources {
            let registry = source.registry().to_owned();
            let (user, password) = source
                .credentials()
                .await
                .map_err(|e| BuildError::CredentialsUnavailable { registry: registry.clone(), why: e.to_string() })?;
            resolved.basic.insert(registry, (user, password));
        }
        resolved.sources.clear();
        Ok(resolved)
    }

    /// A user and a password (or token) for `registry` (`host[:port]`), taking precedence over a config file's.
    #[must_use]
    pub fn basic(mut self, registry: impl Into<String>, username: impl Into<String>, password: Secret) -> Self {
        self.basic.insert(registry.into(), (username.into(), password));
        self
    }

    /// The user and password for `registry`, if these credentials have one.
    pub fn credentials_for(&self, registry: &str) -> Result<Option<(String, Secret)>, BuildError> {
        if let Some((user, password)) = self.basic.get(registry) {
            return Ok(Some((user.clone(), password.clone())));
        }
        let Some(path) = &self.config else { return Ok(None) };
        let auths = read_config(path)?;
        Ok(auths.get(registry).cloned())
    }

    /// Every registry's user and password (or token), for masking them: the `basic` ones and those of the
    /// config file. Sources are not asked; [`resolve`](Self::resolve) first.
    pub fn passwords(&self) -> Result<Vec<(String, Secret)>, BuildError> {
        let mut all: Vec<(String, Secret)> = match &self.config {
            Some(path) => read_config(path)?.into_iter().map(|(r, (_, p))| (r, p)).collect(),
            None => Vec::new(),
        };
        all.extend(self.basic.iter().map(|(r, (_, p))| (r.clone(), p.clone())));
        Ok(all)
    }

    /// Every registry's credentials as a `config.json` in a private directory (mode 0600), for a builder that reads
    /// one (`--authfile`). The directory goes when the returned value is dropped.
    pub(crate) fn write_authfile(&self) -> Result<AuthFile, BuildError> {
        let mut auths = match &self.config {
            Some(path) => read_config(path)?,
            None => BTreeMap::new(),
        };
        for (registry, (user, password)) in &self.basic {
            auths.insert(registry.clone(), (user.clone(), password.clone()));
        }
        let entries: serde_json::Map<String, serde_json::Value> = auths
            .iter()
            .map(|(registry, (user, password))| {
                let auth = STANDARD.encode(format!("{user}:{}", password.expose()));
                (registry.clone(), serde_json::json!({ "auth": auth }))
            })
            .collect();
        let dir = private_dir()?;
        let path = dir.path().join("auth.json");
        let body = serde_json::json!({ "auths": entries }).to_string();
        write_private(&path, body.as_bytes())?;
        Ok(AuthFile { _dir: dir, path })
    }
}

/// A written `config.json` that is removed on drop.
#[derive(Debug)]
pub(crate) struct AuthFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl AuthFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// A directory only the owner may read, removed on drop.
pub(crate) fn private_dir() -> Result<tempfile::TempDir, BuildError> {
    let dir = tempfile::Builder::new()
        .prefix("gantry-build-")
        .tempdir()
        .map_err(|e| BuildError::io("could not create a private directory", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| BuildError::io("could not make a directory private", e))?;
    }
    Ok(dir)
}

/// Writes a file readable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| BuildError::io(format!("could not create {}", path.display()), e))?;
    file.write_all(bytes).map_err(|e| BuildError::io(format!("could not write {}", path.display()), e))
}

fn read_config(path: &Path) -> Result<BTreeMap<String, (String, Secret)>, BuildError> {
    let bad = |why: String| BuildError::AuthFile { path: path.to_owned(), why };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON ({e})")))?;
    let mut auths = BTreeMap::new();
    let Some(entries) = config.get("auths").and_then(|a| a.as_object()) else { return Ok(auths) };
    for (registry, entry) in entries {
        let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) else { continue };
        let decoded = STANDARD.decode(auth).map_err(|_| bad(format!("the `auth` of {registry} is not base64")))?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad(format!("the `auth` of {registry} is not UTF-8")))?;
        let (user, password) =
            decoded.split_once(':').ok_or_else(|| bad(format!("the `auth` of {registry} is not `user:password`")))?;
        // A config names Docker Hub by its old index address (`https://index.docker.io/v1/`); image references
        // name it `docker.io`.
        let registry = registry.trim_start_matches("https://").trim_start_matches("http://");
        let registry = registry.split('/').next().unwrap_or(registry);
        let registry = match registry {
            "index.docker.io" | "registry-1.docker.io" => "docker.io",
            other => other,
        };
        auths.insert(registry.to_owned(), (user.to_owned(), Secret::new(password.to_owned())));
    }
    Ok(auths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_config_and_basic_credentials_merge_into_one_private_authfile() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        let encoded = STANDARD.encode("robot:from-config");
        let hub = STANDARD.encode("me:hub-token");
        std::fs::write(
            &config,
            format!(
                r#"{{"auths": {{"https://ghcr.io": {{"auth": "{encoded}"}}, "x": {{}},
                    "https://index.docker.io/v1/": {{"auth": "{hub}"}}}}}}"#
            ),
        )
        .unwrap();
        let auth = RegistryAuth::docker_config(&config).basic("127.0.0.1:5000", "ci", Secret::new("tok"));
        let (user, password) = auth.credentials_for("ghcr.io").unwrap().unwrap();
        assert_eq!((user.as_str(), password.expose()), ("robot", "from-config"));
        assert!(auth.credentials_for("quay.io").unwrap().is_none());
        let (user, _) = auth.credentials_for("docker.io").unwrap().expect("docker login's key is Docker Hub");
        assert_eq!(user, "me");
        assert_eq!(auth.passwords().unwrap().len(), 3);
        let file = auth.write_authfile().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let written: serde_json::Value = serde_json::from_slice(&std::fs::read(file.path()).unwrap()).unwrap();
        assert_eq!(written["auths"]["127.0.0.1:5000"]["auth"], STANDARD.encode("ci:tok"));
        assert_eq!(written["auths"]["ghcr.io"]["auth"], encoded);
        let path = file.path().to_owned();
        drop(file);
        assert!(!path.exists(), "the authfile goes with its guard");
    }

    #[derive(Debug)]
    struct Rotating(std::sync::atomic::AtomicU32);

    #[async_trait::async_trait]
    impl CredentialSource for Rotating {
        fn registry(&self) -> &str {
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        }

        async fn credentials(&self) -> Result<(String, Secret), gantry_core::BoxError> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n == 2 {
                return Err("the token service is down".into());
            }
            Ok(("AWS".into(), Secret::new(format!("token-{n}"))))
        }
    }

    #[tokio::test]
    async fn sources_are_asked_for_fresh_credentials_at_each_build() {
        let auth = RegistryAuth::new().source(Rotating(std::sync::atomic::AtomicU32::new(0)));
        let registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        assert!(auth.credentials_for(registry).unwrap().is_none(), "nothing until resolved");
        let first = auth.resolve().await.unwrap().credentials_for(registry).unwrap().unwrap();
        let second = auth.resolve().await.unwrap().credentials_for(registry).unwrap().unwrap();
        assert_eq!((first.0.as_str(), first.1.expose(), second.1.expose()), ("AWS", "token-0", "token-1"));
        let e = auth.resolve().await.unwrap_err();
        assert_eq!(e.to_string(), format!("no credentials for the registry {registry}: the token service is down"));
    }

    #[test]
    fn a_broken_config_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(&config, r#"{"auths": {"r": {"auth": "!!"}}}"#).unwrap();
        let e = RegistryAuth::docker_config(&config).credentials_for("r").unwrap_err();
        assert!(e.to_string().contains("config.json") && e.to_string().contains("not base64"), "{e}");
    }
}
