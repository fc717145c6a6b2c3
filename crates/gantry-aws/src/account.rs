//! Accounts and sessions: STS AssumeRole, chains, cached credentials.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_sts::error::ProvideErrorMetadata;
use tokio::sync::Mutex;

use crate::error::AwsError;

/// A role to assume.
#[derive(Clone, Debug)]
pub struct Account {
    role_arn: String,
    external_id: Option<String>,
    session_name: String,
    duration: Duration,
    tags: Vec<(String, String)>,
}

impl Account {
    /// The role `role_arn`, session `gantry`, for one hour.
    pub fn new(role_arn: impl Into<String>) -> Self {
        Self {
            role_arn: role_arn.into(),
            external_id: None,
            session_name: "gantry".into(),
            duration: Duration::from_secs(3600),
            tags: Vec::new(),
        }
    }

    /// The external id the role's trust policy asks for.
    #[must_use]
    pub fn external_id(mut self, id: impl Into<String>) -> Self {
        self.external_id = Some(id.into());
        self
    }

    /// The session name (shows in CloudTrail; default `gantry`).
    #[must_use]
    pub fn session_name(mut self, name: impl Into<String>) -> Self {
        self.session_name = name.into();
        self
    }

    /// How long the credentials last (15 minutes to the role's maximum; default one hour).
    #[must_use]
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// A session tag.
    #[must_use]
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// The role ARN, checked: `arn:<partition>:iam::<12 digits>:role/<path and name>`.
    fn checked_arn(&self) -> Result<&str, AwsError> {
        let arn = self.role_arn.as_str();
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && !parts[1].is_empty()
            && parts[2] == "iam"
            && parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5].strip_prefix("role/").is_some_and(|name| !name.is_empty());
        if ok { Ok(arn) } else { Err(AwsError::MalformedArn(arn.to_owned())) }
    }
}

/// What a session reads the time from (the system clock, or a test's).
pub(crate) type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// Where sessions start: the base AWS configuration (the environment's credentials, or given ones).
#[derive(Clone)]
pub struct Aws {
    config: SdkConfig,
    clock: Clock,
}

impl std::fmt::Debug for Aws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aws").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Aws {
    /// The configuration the environment gives (env vars, profiles, SSO, IMDS — as the AWS CLI finds them).
    pub async fn from_environment() -> Self {
        Self { config: aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await, clock: system_clock() }
    }

    /// A given configuration.
    pub fn from_config(config: SdkConfig) -> Self {
        Self { config, clock: system_clock() }
    }

    /// Reads the time from `clock` instead of the system's, for this configuration's sessions and the sessions
    /// chained from them: when credentials are due for renewal, and when EKS tokens are signed. For tests of hosts
    /// that run for hours (a clock moved forward two hours makes every session renew).
    #[must_use]
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Static credentials against an STS endpoint (a test double such as moto, a VPC endpoint); region as given.
    pub fn with_static_credentials(access_key: &str, secret_key: &str, region: &str, endpoint: Option<&str>) -> Self {
        let mut builder = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                access_key,
                secret_key,
                None,
                None,
                "gantry-static",
            )))
            .http_client(http_client());
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Self { config: builder.build(), clock: system_clock() }
    }

    /// The SDK configuration, for other AWS clients (KMS for SOPS, ...).
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.config
    }

    /// Assumes `account` with the base credentials: a session whose credentials are fetched now (so errors show
    /// here), cached, and refreshed before they expire.
    pub async fn assume(&self, account: &Account) -> Result<Session, AwsError> {
        Session::start(self.config.clone(), account, Arc::clone(&self.clock)).await
    }
}

/// One HTTP client for the SDK: rustls with ring, as the rest of the workspace.
fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Credentials of an assumed role, cached, refreshed `refresh_before` their expiry (default five minutes).
///
/// A session is a live credentials provider: SDK clients made from [`config`](Session::config), and sessions
/// chained from it with [`assume`](Session::assume), ask it for credentials at each use, so they keep working past
/// any number of expiries (a chained role renews itself with its parent's current credentials, not the ones it
/// started from).
#[derive(Clone)]
pub struct Session {
    base: SdkConfig,
    account: Account,
    cache: Arc<Mutex<Option<Credentials>>>,
    refresh_before: Duration,
    clock: Clock,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("account", &self.account)
            .field("refresh_before", &self.refresh_before)
            .finish_non_exhaustive()
    }
}

impl aws_credential_types::provider::ProvideCredentials for Session {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            self.credentials().await.map_err(aws_credential_types::provider::error::CredentialsError::provider_error)
        })
    }
}

impl Session {
    async fn start(base: SdkConfig, account: &Account, clock: Clock) -> Result<Self, AwsError> {
        account.checked_arn()?;
        let session = Self {
            base,
            account: account.clone(),
            cache: Arc::new(Mutex::new(None)),
            refresh_before: Duration::from_secs(300),
            clock,
        };
        session.credentials().await?;
        Ok(session)
    }

    /// Refreshes credentials this long before they expire (default five minutes).
    #[must_use]
    pub fn refresh_before(mut self, margin: Duration) -> Self {
        self.refresh_before = margin;
        self
    }

    /// The role this session is for.
    pub fn role_arn(&self) -> &str {
        &self.account.role_arn
    }

    /// When the cached credentials expire (`None` before the first fetch, or for credentials without an expiry).
    pub async fn expires_at(&self) -> Option<SystemTime> {
        self.cache.lock().await.as_ref().and_then(Credentials::expiry)
    }

    pub(crate) fn now(&self) -> SystemTime {
        (self.clock)()
    }

    /// The session's credentials: cached, fetched again when they expire within the refresh margin.
    pub async fn credentials(&self) -> Result<Credentials, AwsError> {
        let mut cache = self.cache.lock().await;
        if let Some(creds) = cache.as_ref()
            && creds.expiry().is_none_or(|at| at > self.now() + self.refresh_before)
        {
            return Ok(creds.clone());
        }
        let fresh = self.assume_now().await?;
        *cache = Some(fresh.clone());
        Ok(fresh)
    }

    async fn assume_now(&self) -> Result<Credentials, AwsError> {
        let arn = self.account.checked_arn()?;
        let action = format!("assume {arn}");
        let client = aws_sdk_sts::Client::new(&self.base);
        let mut request = client
            .assume_role()
            .role_arn(arn)
            .role_session_name(&self.account.session_name)
            .duration_seconds(i32::try_from(self.account.duration.as_secs()).unwrap_or(3600));
        if let Some(id) = &self.account.external_id {
            request = request.external_id(id);
        }
        for (key, value) in &self.account.tags {
            request = request.tags(
                aws_sdk_sts::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build()
                    .map_err(|e| AwsError::Unavailable { action: action.clone(), why: e.to_string() })?,
            );
        }
        let answer = request.send().await.map_err(|e| sdk_error(&action, &e))?;
        let creds = answer.credentials().ok_or_else(|| AwsError::Unavailable {
            action: action.clone(),
            why: "no credentials in the answer".into(),
        })?;
        // STS says when they expire by the real clock; the session's clock (a test's) may run ahead: count the
        // duration from the session's now.
        let lifetime = SystemTime::try_from(*creds.expiration())
            .ok()
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .unwrap_or(self.account.duration);
        let expiry = Some(self.now() + lifetime);
        tracing::debug!(target: "gantry_aws", role = %arn, "assumed role");
        Ok(Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_owned()),
            expiry,
            "gantry-assume-role",
        ))
    }

    /// A configuration whose credentials come from this session at each use (same region and endpoint as the
    /// base), for SDK clients: they keep working as the session renews its credentials. Fails if the session cannot
    /// give credentials now.
    pub async fn config(&self) -> Result<SdkConfig, AwsError> {
        self.credentials().await?;
        Ok(self.live_config())
    }

    /// The base configuration with this session as its credentials provider. The session caches and renews its
    /// credentials itself, so the SDK's own cache (which reads the system clock) stays out of the way.
    fn live_config(&self) -> SdkConfig {
        self.base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(self.clone()))
            .identity_cache(aws_config::identity::IdentityCache::no_cache())
            .build()
    }

    /// Assumes `account` from this session (hub → spoke). The new session renews itself with this session's
    /// current credentials.
    pub async fn assume(&self, account: &Account) -> Result<Session, AwsError> {
        Session::start(self.live_config(), account, Arc::clone(&self.clock)).await
    }

    /// Who these credentials are (`GetCallerIdentity`): the assumed-role ARN.
    pub async fn caller_arn(&self) -> Result<String, AwsError> {
        let action = "get the caller identity".to_owned();
        let client = aws_sdk_sts::Client::new(&self.config().await?);
        let answer = client.get_caller_identity().send().await.map_err(|e| sdk_error(&action, &e))?;
        Ok(answer.arn().unwrap_or_default().to_owned())
    }

    pub(crate) fn region(&self) -> String {
        self.base.region().map_or_else(|| "us-east-1".to_owned(), |r| r.to_string())
    }
}

/// An AWS SDK error (any service's) as an [`AwsError`]: the service's refusal with its code, or unavailable.
pub(crate) fn sdk_error<E: ProvideErrorMetadata + std::fmt::Display, R: std::fmt::Debug>(
    action: &str,
    e: &aws_sdk_sts::error::SdkError<E, R>,
) -> AwsError {
    match e {
        aws_sdk_sts::error::SdkError::ServiceError(service) => AwsError::Refused {
            action: action.to_owned(),
            code: service.err().code().unwrap_or("Unknown").to_owned(),
            message: service.err().message().unwrap_or_default().to_owned(),
        },
        other => AwsError::Unavailable { action: action.to_owned(), why: format!("{other}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_checked() {
        assert!(Account::new("arn:aws:iam::123456789012:role/deployer").checked_arn().is_ok());
        assert!(Account::new("arn:aws-cn:iam::123456789012:role/path/deployer").checked_arn().is_ok());
        for bad in ["arn:aws:iam::12345:role/x", "arn:aws:s3:::bucket", "deployer", "arn:aws:iam::123456789012:user/x"]
        {
            let e = Account::new(bad).checked_arn().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
