//! ECR registry logins: `GetAuthorizationToken` with a session's credentials, as `aws ecr get-login-password`
//! gives them, cached until shortly before they expire (ECR tokens last 12 hours).

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use tokio::sync::Mutex;

use crate::account::Session;
use crate::error::AwsError;

/// How long before its expiry a login is renewed: longer than a build takes.
const RENEW_BEFORE: Duration = Duration::from_secs(3600);

/// A login to an ECR registry: user `AWS` and a token, for the registry's host.
#[derive(Clone, Debug)]
pub struct EcrLogin {
    /// The registry's host (`123456789012.dkr.ecr.eu-west-1.amazonaws.com`).
    pub registry: String,
    /// The user (`AWS`).
    pub username: String,
    /// The token: a secret.
    pub password: gantry_core::Secret,
    /// When ECR stops accepting it.
    pub expires_at: Option<SystemTime>,
}

/// The ECR registry of an account, logged in to with a session (an assumed role): a source of registry
/// credentials for image builds (`gantry_build::RegistryAuth::source`, feature `build`), renewed an hour before
/// they expire, so that a host running for days keeps pushing.
#[derive(Debug)]
pub struct EcrRegistry {
    session: Session,
    host: String,
    current: Mutex<Option<EcrLogin>>,
}

impl EcrRegistry {
    /// The registry of the account `registry_id` (12 digits) in the session's region.
    pub fn new(session: Session, registry_id: impl Into<String>) -> Self {
        let registry_id = registry_id.into();
        let host = format!("{registry_id}.dkr.ecr.{}.amazonaws.com", session.region());
        Self { session, host, current: Mutex::new(None) }
    }

    /// The registry's host, as image references name it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A login valid for at least an hour: the cached one, or a new one from `GetAuthorizationToken`.
    pub async fn login(&self) -> Result<EcrLogin, AwsError> {
        let mut current = self.current.lock().await;
        let now = self.session.now();
        if let Some(login) = current.as_ref()
            && login.expires_at.is_some_and(|at| at > now + RENEW_BEFORE)
        {
            return Ok(login.clone());
        }
        let action = format!("get an ECR login for {}", self.host);
        let client = aws_sdk_ecr::Client::new(&self.session.config().await?);
        // The token serves every registry the principal may reach; ECR no longer scopes it by registry id.
        let answer =
            client.get_authorization_token().send().await.map_err(|e| crate::account::sdk_error(&action, &e))?;
        let unavailable = |why: &str| AwsError::Unavailable { action: action.clone(), why: why.to_owned() };
        let data = answer
            .authorization_data
            .and_then(|d| d.into_iter().next())
            .ok_or_else(|| unavailable("no authorization data"))?;
        let token = data.authorization_token.ok_or_else(|| unavailable("no token"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token.as_bytes())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| unavailable("the token is not base64 of `user:password`"))?;
        let (username, password) =
            decoded.split_once(':').ok_or_else(|| unavailable("the token is not base64 of `user:password`"))?;
        let expires_at = data.expires_at.and_then(|t| SystemTime::try_from(t).ok());
        let registry = data
            .proxy_endpoint
            .as_deref()
            .map(|e| e.trim_start_matches("https://").trim_end_matches('/').to_owned())
            .unwrap_or_else(|| self.host.clone());
        let login = EcrLogin {
            registry,
            username: username.to_owned(),
            password: gantry_core::Secret::new(password.to_owned()),
            expires_at,
        };
        tracing::debug!(target: "gantry_aws", registry = %login.registry, ?expires_at, "ECR login");
        *current = Some(login.clone());
        Ok(login)
    }
}

#[cfg(feature = "build")]
#[async_trait::async_trait]
impl gantry_build::CredentialSource for EcrRegistry {
    fn registry(&self) -> &str {
        &self.host
    }

    async fn credentials(&self) -> Result<(String, gantry_core::Secret), gantry_core::BoxError> {
        let login = self.login().await?;
        Ok((login.username, login.password))
    }
}
