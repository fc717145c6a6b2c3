//! GitHub App authentication: a JWT signed with the App's private key (RS256), exchanged for an installation token,
//! cached until five minutes before it expires
//! (<https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-an-installation-access-token-for-a-github-app>).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gantry_core::Secret;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

use crate::error::GitHubError;

/// A GitHub App's identity: its id and private key.
#[derive(Clone)]
pub(crate) struct App {
    id: String,
    key: Arc<RsaKeyPair>,
    installation: Option<u64>,
    tokens: Arc<Mutex<HashMap<u64, (Secret, SystemTime)>>>,
    /// One token request at a time: runs starting together share the token the first one gets.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

/// Why no installation token: what happened, and whether trying again may help.
pub(crate) struct TokenError {
    pub(crate) message: String,
    pub(crate) retryable: bool,
}

impl TokenError {
    fn retryable(message: String) -> Self {
        Self { message, retryable: true }
    }

    fn fatal(message: String) -> Self {
        Self { message, retryable: false }
    }
}

/// An installation token is renewed when less than this is left of it.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

impl App {
    /// Reads the App's private key: PEM, PKCS#1 (`BEGIN RSA PRIVATE KEY`, as GitHub hands it out) or PKCS#8.
    pub(crate) fn new(id: impl Into<String>, private_key_pem: &Secret) -> Result<Self, GitHubError> {
        let pem = private_key_pem.expose();
        let (label, der) = pem_body(pem).ok_or(GitHubError::AppKey { why: "it is not a PEM block" })?;
        let key = match label {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            _ => return Err(GitHubError::AppKey { why: "it is not an RSA private key (PKCS#1 or PKCS#8)" }),
        }
        .map_err(|_| GitHubError::AppKey { why: "the RSA key could not be read" })?;
        Ok(Self {
            id: id.into(),
            key: Arc::new(key),
            installation: None,
            tokens: Arc::default(),
            fetching: Arc::default(),
        })
    }

    pub(crate) fn installation(mut self, id: u64) -> Self {
        self.installation = Some(id);
        self
    }

    /// The JWT that authenticates as the App: issued 60 s ago (clock drift), expiring in 9 minutes (GitHub allows
    /// at most 10).
    pub(crate) fn jwt(&self, now: SystemTime) -> Result<Secret, GitHubError> {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({"iat": now.saturating_sub(60), "exp": now + 540, "iss": self.id});
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), signing_input.as_bytes(), &mut signature)
            .map_err(|_| GitHubError::AppKey { why: "signing the JWT failed" })?;
        Ok(Secret::new(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))))
    }

    /// The installation a delivery acts as: the delivery's own (the App is installed there), else the configured one.
    pub(crate) fn installation_for(&self, event_installation: Option<u64>) -> Option<u64> {
        event_installation.or(self.installation)
    }

    fn cached(&self, installation: u64, now: SystemTime) -> Option<Secret> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.get(&installation).filter(|(_, expires)| *expires > now + RENEW_BEFORE).map(|(token, _)| token.clone())
    }

    /// Drops a token GitHub no longer takes (a `401`), so that the next request gets a new one.
    pub(crate) fn forget(&self, installation: u64) {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).remove(&installation);
    }

    /// A token for `installation`, from the cache or fresh (one request at a time; each bounded by `timeout`).
    pub(crate) async fn token(
        &self,
        http: &reqwest::Client,
        api: &str,
        installation: Option<u64>,
        timeout: Duration,
    ) -> Result<Secret, TokenError> {
        let installation = installation.ok_or_else(|| {
            TokenError::fatal(
                "no GitHub App installation: configure one, or let deliveries carry `installation.id`".into(),
            )
        })?;
        if let Some(token) = self.cached(installation, SystemTime::now()) {
            return Ok(token);
        }
        let _one_at_a_time = self.fetching.lock().await;
        let now = SystemTime::now();
        if let Some(token) = self.cached(installation, now) {
            return Ok(token);
        }
        let jwt = self.jwt(now).map_err(|e| TokenError::fatal(e.to_string()))?;
        let mut bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", jwt.expose()))
            .map_err(|_| TokenError::fatal("the App's JWT cannot be sent in a header".into()))?;
        bearer.set_sensitive(true);
        let answer = http
            .post(format!("{api}/app/installations/{installation}/access_tokens"))
            .header(reqwest::header::AUTHORIZATION, bearer)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                TokenError::retryable(if e.is_timeout() {
                    format!("GitHub did not answer an installation token request within {timeout:?}")
                } else {
                    format!("GitHub could not be reached for an installation token: {}", e.without_url())
                })
            })?;
        let status = answer.status();
        if !status.is_success() {
            let message = format!("GitHub refused an installation token for installation {installation}: {status}");
            // A wrong key, App or installation stays wrong; a server error may pass.
            return Err(if status.is_server_error() {
                TokenError::retryable(message)
            } else {
                TokenError::fatal(message)
            });
        }
        let body: serde_json::Value = answer
            .json()
            .await
            .map_err(|_| TokenError::retryable("GitHub's installation token answer was not JSON".into()))?;
        let token = body
            .get("token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| TokenError::retryable("GitHub's answer had no `token`".into()))?;
        let expires = body
            .get("expires_at")
            .and_then(|t| t.as_str())
            .and_then(gantry_core::time::parse_rfc3339)
            .unwrap_or(now + Duration::from_secs(3600));
        let token = Secret::new(token);
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).insert(installation, (token.clone(), expires));
        Ok(token)
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("id", &self.id).field("installation", &self.installation).finish_non_exhaustive()
    }
}

/// The label and decoded body of the first PEM block.
fn pem_body(pem: &str) -> Option<(&str, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + 11..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body_start = label_end + 5;
    let end = rest.find(&format!("-----END {label}-----"))?;
    let b64: String = rest[body_start..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_are_not_rsa_pem_are_refused_without_showing_them() {
        let err = App::new("1", &Secret::new("not a key at all")).unwrap_err();
        assert_eq!(err.to_string(), "the GitHub App's private key cannot be used: it is not a PEM block");
        let err = App::new("1", &Secret::new("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
            .unwrap_err();
        assert!(err.to_string().contains("not an RSA private key"));
    }
}
