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

/// Where sessions start: the base AWS configuration (the environment's credentials, or given ones).
#[derive(Clone, Debug)]
pub struct Aws {
    config: SdkConfig,
}

impl Aws {
    /// The configuration the environment gives (env vars, profiles, SSO, IMDS — as the AWS CLI finds them).
    pub async fn from_environment() -> Self {
        Self { config: aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await }
    }

    /// A given configuration.
    pub fn from_config(config: SdkConfig) -> Self {
        Self { config }
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
        Self { config: builder.build() }
    }

    /// The SDK configuration, for other AWS clients (KMS for SOPS, ...).
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.config
    }

    /// Assumes `account` with the base credentials: a session whose credentials are fetched now (so errors show
    /// here), cached, and refreshed before they expire.
    pub async fn assume(&self, account: &Account) -> Result<Session, AwsError> {
        Session::start(self.config.clone(), account).await
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
#[derive(Clone, Debug)]
pub struct Session {
    base: SdkConfig,
    account: Account,
    cache: Arc<Mutex<Option<Credentials>>>,
    refresh_before: Duration,
}

impl Session {
    async fn start(base: SdkConfig, account: &Account) -> Result<Self, AwsError> {
        account.checked_arn()?;
        let session = Self {
            base,
            account: account.clone(),
            cache: Arc::new(Mutex::new(None)),
            refresh_before: Duration::from_secs(300),
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

    /// The session's credentials: cached, fetched again when they expire within the refresh margin.
    pub async fn credentials(&self) -> Result<Credentials, AwsError> {
        let mut cache = self.cache.lock().await;
        if let Some(creds) = cache.as_ref()
            && creds.expiry().is_none_or(|at| at > SystemTime::now() + self.refresh_before)
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
        let answer = request.send().await.map_err(|e| sts_error(&action, &e))?;
        let creds = answer.credentials().ok_or_else(|| AwsError::Unavailable {
            action: action.clone(),
            why: "no credentials in the answer".into(),
        })?;
        let expiry = SystemTime::try_from(*creds.expiration()).ok();
        tracing::debug!(target: "gantry_aws", role = %arn, "assumed role");
        Ok(Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_owned()),
            expiry,
            "gantry-assume-role",
        ))
    }

    /// A configuration that uses this session's credentials (same region and endpoint as the base), for SDK
    /// clients and for chaining.
    pub async fn config(&self) -> Result<SdkConfig, AwsError> {
        let creds = self.credentials().await?;
        Ok(self.base.to_builder().credentials_provider(SharedCredentialsProvider::new(creds)).build())
    }

    /// Assumes `account` from this session (hub → spoke).
    pub async fn assume(&self, account: &Account) -> Result<Session, AwsError> {
        Session::start(self.config().await?, account).await
    }

    /// Who these credentials are (`GetCallerIdentity`): the assumed-role ARN.
    pub async fn caller_arn(&self) -> Result<String, AwsError> {
        let action = "get the caller identity".to_owned();
        let client = aws_sdk_sts::Client::new(&self.config().await?);
        let answer = client.get_caller_identity().send().await.map_err(|e| sts_error(&action, &e))?;
        Ok(answer.arn().unwrap_or_default().to_owned())
    }

    pub(crate) fn region(&self) -> String {
        self.base.region().map_or_else(|| "us-east-1".to_owned(), |r| r.to_string())
    }
}

fn sts_error<E: ProvideErrorMetadata + std::fmt::Display>(
    action: &str,
    e: &aws_sdk_sts::error::SdkError<E>,
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
