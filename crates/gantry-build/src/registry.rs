//! A small client of the OCI distribution API: enough to check that a registry is up and takes the credentials
//! before a build, to read back what a push stored, and to tag a manifest again without pulling it.
//!
//! It answers the registry's `WWW-Authenticate` challenge: `Basic` (docker-registry's htpasswd, ECR), or `Bearer`
//! (a token fetched from the challenge's realm with the credentials, as Docker Hub, GHCR and Harbor ask).

use std::sync::Once;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gantry_core::{ImageRef, Secret};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::auth::RegistryAuth;
use crate::error::BuildError;

/// The manifest types a registry may hold for an image.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

static RUSTLS: Once = Once::new();

/// A manifest as a registry serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Manifest {
    /// Its digest (`sha256:...`), as the registry reports it in `Docker-Content-Digest` and as computed from the body.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The manifest itself.
    pub body: Vec<u8>,
}

/// A client of the registries that builds push to.
#[derive(Clone, Debug)]
pub struct Registry {
    http: reqwest::Client,
    auth: Option<RegistryAuth>,
    insecure: Vec<String>,
}

impl Registry {
    /// A client with these credentials, reaching `insecure` registries (`host:port`) over plain HTTP.
    pub fn new(auth: Option<RegistryAuth>, insecure: Vec<String>) -> Result<Self, BuildError> {
        RUSTLS.call_once(|| {
            // reqwest is built without a default crypto provider; the workspace uses ring throughout.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let http = reqwest::Client::builder()
            .user_agent(concat!("gantry-build/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| BuildError::RegistryUnreachable { registry: "(any)".into(), why: e.to_string() })?;
        Ok(Self { http, auth, insecure })
    }

    /// Checks that the registry of `image` answers and accepts the credentials (`GET /v2/`, with the answer to its
    /// challenge). Whether they may push to the repository shows only at the push.
    pub async fn check(&self, image: &ImageRef) -> Result<(), BuildError> {
        let url = format!("{}/v2/", self.base(image.registry()));
        let response = self.send(Method::GET, &url, image, None, None).await?;
        match response.status() {
            s if s.is_success() => Ok(()),
            s => Err(self.refusal(image, s, response).await),
        }
    }

    /// The manifest `image` (by tag or digest) names, or `None` when the registry has no such manifest.
    pub async fn manifest(&self, image: &ImageRef) -> Result<Option<Manifest>, BuildError> {
        let reference = image.digest().or(image.tag()).unwrap_or("latest");
        let url = format!("{}/v2/{}/manifests/{reference}", self.base(image.registry()), image.repository());
        let response = self.send(Method::GET, &url, image, Some(MANIFEST_TYPES), None).await?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            s if s.is_success() => {}
            s => return Err(self.refusal(image, s, response).await),
        }
        let media_type = header(&response, CONTENT_TYPE.as_str()).unwrap_or_default();
        let reported = header(&response, "docker-content-digest");
        let body = response.bytes().await.map_err(|e| unreachable(image, &e))?.to_vec();
        let digest = sha256_digest(&body);
        if let Some(reported) = reported
            && reported != digest
        {
            return Err(BuildError::PushFailed {
                reference: image.to_string(),
                why: format!("the registry reports the digest {reported} for a manifest whose digest is {digest}"),
            });
        }
        Ok(Some(Manifest { digest, media_type, body: body.clone() }))
    }

    /// Stores `manifest` under the tag of `image` (its blobs are already in the repository).
    pub async fn put_manifest(&self, image: &ImageRef, manifest: &Manifest) -> Result<(), BuildError> {
        let tag = image.tag().unwrap_or("latest");
        let url = format!("{}/v2/{}/manifests/{tag}", self.base(image.registry()), image.repository());
        let body = Some((manifest.media_type.as_str(), manifest.body.clone()));
        let response = self.send(Method::PUT, &url, image, None, body).await?;
        match response.status() {
            s if s.is_success() => Ok(()),
            s => Err(self.refusal(image, s, response).await),
        }
    }

    fn base(&self, registry: &str) -> String {
        // Docker Hub's references say docker.io; its API is served elsewhere.
        let host = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
        let scheme = if self.insecure.iter().any(|r| r == registry) { "http" } else { "https" };
        format!("{scheme}://{host}")
    }

    /// Sends a request, answering one authentication challenge.
    async fn send(
        &self,
        method: Method,
        url: &str,
        image: &ImageRef,
        accept: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<reqwest::Response, BuildError> {
        let request = |authorization: Option<reqwest::header::HeaderValue>| {
            let mut request = self.http.request(method.clone(), url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some((content_type, bytes)) = &body {
                request = request.header(CONTENT_TYPE, *content_type).body(bytes.clone());
            }
            if let Some(authorization) = authorization {
                request = request.header(AUTHORIZATION, authorization);
            }
            request
        };
        let response = request(None).send().await.map_err(|e| unreachable(image, &e))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(challenge) = header(&response, WWW_AUTHENTICATE.as_str()) else { return Ok(response) };
        let credentials = self.credentials(image)?;
        let bearer = challenge.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("bearer"));
        if credentials.is_none() && !bearer {
            return Err(BuildError::CredentialsRefused { registry: image.registry().to_owned(), given: false });
        }
        // A Bearer challenge without credentials asks for an anonymous token (public repositories).
        let authorization = self.authorize(&challenge, image, credentials.as_ref()).await?;
        let mut authorization = reqwest::header::HeaderValue::from_str(&authorization).map_err(|_| {
            BuildError::CredentialsRefused { registry: image.registry().to_owned(), given: credentials.is_some() }
        })?;
        authorization.set_sensitive(true);
        request(Some(authorization)).send().await.map_err(|e| unreachable(image, &e))
    }

    fn credentials(&self, image: &ImageRef) -> Result<Option<(String, Secret)>, BuildError> {
        match &self.auth {
            Some(auth) => auth.credentials_for(image.registry()),
            None => Ok(None),
        }
    }

    /// The `Authorization` header that answers `challenge`.
    async fn authorize(
        &self,
        challenge: &str,
        image: &ImageRef,
        credentials: Option<&(String, Secret)>,
    ) -> Result<String, BuildError> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            let (user, password) = credentials.ok_or_else(|| BuildError::CredentialsRefused {
                registry: image.registry().to_owned(),
                given: false,
            })?;
            return Ok(format!("Basic {}", STANDARD.encode(format!("{user}:{}", password.expose()))));
        }
        let params = challenge_params(params);
        let param = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let invalid = |why: String| BuildError::RegistryRefused { reference: image.to_string(), why };
        let realm = param("realm").ok_or_else(|| invalid("it asked for a bearer token without a realm".into()))?;
        // Credentials go to the token service only over TLS, unless the registry itself is reached without it.
        let plain_allowed = realm.starts_with("http://") && self.insecure.iter().any(|r| r == image.registry());
        if !(realm.starts_with("https://") || plain_allowed) {
            return Err(invalid(format!("its token service `{realm}` is not reached over https")));
        }
        let scope = format!("repository:{}:pull,push", image.repository());
        let mut query = vec![("scope", scope.as_str())];
        if let Some(service) = param("service") {
            query.push(("service", service));
        }
        let mut request = self.http.get(realm).query(&query);
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let response = request.send().await.map_err(|e| unreachable(image, &e))?;
        if matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(BuildError::CredentialsRefused {
                registry: image.registry().to_owned(),
                given: credentials.is_some(),
            });
        }
        let token: serde_json::Value = response.json().await.map_err(|e| unreachable(image, &e))?;
        let token = token.get("token").or_else(|| token.get("access_token")).and_then(|t| t.as_str());
        let token = token.ok_or_else(|| invalid("its token service answered without a token".into()))?;
        Ok(format!("Bearer {token}"))
    }

    async fn refusal(&self, image: &ImageRef, status: StatusCode, response: reqwest::Response) -> BuildError {
        let registry = image.registry().to_owned();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            let given = self.credentials(image).ok().flatten().is_some();
            return BuildError::CredentialsRefused { registry, given };
        }
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(300).collect();
        BuildError::RegistryRefused { reference: image.to_string(), why: format!("{status}: {text}") }
    }
}

pub(crate) type RegistryError = Box<dyn FnOnce(bool) -> BuildError>;

/// A registry that could not be reached or refused the credentials, named in buildah's message.
pub(crate) fn registry_problem<'a>(
    message: &str,
    images: impl IntoIterator<Item = &'a ImageRef>,
) -> Option<RegistryError> {
    // Only a message that names a registry is about one: a `RUN` step's own "permission denied" is not.
    let named = images.into_iter().map(ImageRef::registry).find(|r| message.contains(r)).map(str::to_owned);
    let pinged = || {
        let after = message.split_once("pinging container registry ")?.1;
        let host = after.split_whitespace().next()?.trim_end_matches(':');
        Some(host.to_owned())
    };
    let registry = named.or_else(pinged)?;
    let refused = [
        "unauthorized",
        "authentication required",
        "requested access to the resource is denied",
        "invalid username/password",
    ];
    if refused.iter().any(|r| message.contains(r)) {
        return Some(Box::new(move |given| BuildError::CredentialsRefused { registry, given }));
    }
    let down = ["connection refused", "dial tcp", "no such host", "i/o timeout", "connection reset"];
    if down.iter().any(|d| message.contains(d)) {
        let why = message.to_owned();
        return Some(Box::new(move |_| BuildError::RegistryUnreachable { registry, why }));
    }
    None
}

fn unreachable(image: &ImageRef, e: &reqwest::Error) -> BuildError {
    use std::error::Error as _;
    let mut why = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        why = format!("{why}: {cause}");
        source = cause.source();
    }
    BuildError::RegistryUnreachable { registry: image.registry().to_owned(), why }
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// `realm="https://auth",service="registry",scope="x"` as pairs.
fn challenge_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        params.push((key, value.to_owned()));
        rest = remaining.trim_start().trim_start_matches(',');
    }
    params
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(bytes);
    let mut hex = String::with_capacity(71);
    hex.push_str("sha256:");
    for byte in hash {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_as_registries_send_them() {
        let params = challenge_params(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            params,
            [
                ("realm".to_owned(), "https://auth.docker.io/token".to_owned()),
                ("service".to_owned(), "registry.docker.io".to_owned()),
                ("scope".to_owned(), "repository:a/b:pull,push".to_owned()),
            ]
        );
        assert_eq!(challenge_params("realm=gantry"), [("realm".to_owned(), "gantry".to_owned())]);
    }

    #[test]
    fn digests_are_sha256_of_the_bytes() {
        assert_eq!(sha256_digest(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
