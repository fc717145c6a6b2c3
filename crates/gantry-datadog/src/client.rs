//! The HTTP client: sites, keys, timeouts, retries on outages and rate limits.

use std::sync::Once;
use std::time::{Duration, SystemTime};

use gantry_core::Secret;
use gantry_core::http::{Attempt, Policy, retry_after};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::error::DatadogError;

/// A Datadog site: where an organisation's data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Site {
    /// US1, `datadoghq.com`.
    Us1,
    /// US3, `us3.datadoghq.com`.
    Us3,
    /// US5, `us5.datadoghq.com`.
    Us5,
    /// EU1, `datadoghq.eu`.
    Eu1,
    /// AP1, `ap1.datadoghq.com`.
    Ap1,
    /// US1-FED, `ddog-gov.com`.
    Gov,
    /// Another site by domain (`ap2.datadoghq.com`).
    Other(String),
}

impl Site {
    /// The site of a domain as Datadog writes it (`datadoghq.eu`), as `DD_SITE` holds it.
    pub fn from_domain(domain: &str) -> Self {
        match domain.trim().trim_start_matches("api.") {
            "datadoghq.com" | "app.datadoghq.com" => Self::Us1,
            "us3.datadoghq.com" => Self::Us3,
            "us5.datadoghq.com" => Self::Us5,
            "datadoghq.eu" | "app.datadoghq.eu" => Self::Eu1,
            "ap1.datadoghq.com" => Self::Ap1,
            "ddog-gov.com" | "app.ddog-gov.com" => Self::Gov,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The domain.
    pub fn domain(&self) -> &str {
        match self {
            Self::Us1 => "datadoghq.com",
            Self::Us3 => "us3.datadoghq.com",
            Self::Us5 => "us5.datadoghq.com",
            Self::Eu1 => "datadoghq.eu",
            Self::Ap1 => "ap1.datadoghq.com",
            Self::Gov => "ddog-gov.com",
            Self::Other(domain) => domain,
        }
    }

    /// The API's base URL (`https://api.datadoghq.eu`).
    pub fn api_url(&self) -> String {
        format!("https://api.{}", self.domain())
    }
}

/// A connection to Datadog's API: base URL, keys (kept as [`Secret`]s, sent only in headers), timeout, retries.
#[derive(Clone)]
pub struct Datadog {
    http: reqwest::Client,
    base: Url,
    api_key: Secret,
    app_key: Secret,
    policy: Policy,
}

static RUSTLS: Once = Once::new();

impl Datadog {
    /// Datadog at `site`, with an API key and an application key.
    pub fn new(site: &Site, api_key: Secret, app_key: Secret) -> Result<Self, DatadogError> {
        Self::with_url(&site.api_url(), api_key, app_key)
    }

    /// Datadog at a base URL (a proxy, or the test kit's `DatadogSim`).
    pub fn with_url(base: &str, api_key: Secret, app_key: Secret) -> Result<Self, DatadogError> {
        RUSTLS.call_once(|| {
            // reqwest is built without a default crypto provider; the workspace uses ring throughout.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let base = Url::parse(base).map_err(|_| DatadogError::Site(base.to_owned()))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("gantry-datadog/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DatadogError::Unreachable { action: "build a client", why: e.to_string() })?;
        Ok(Self {
            http,
            base,
            api_key,
            app_key,
            policy: Policy::new()
                .attempts(4)
                .timeout(Duration::from_secs(30))
                .backoff(Duration::from_millis(250), Duration::from_secs(8))
                .max_retry_after(Duration::from_secs(60)),
        })
    }

    /// The timeout of each request (default 30 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.policy = self.policy.timeout(timeout);
        self
    }

    /// How many times a request is made at most, across outages and rate limits (default 4).
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.policy = self.policy.attempts(attempts);
        self
    }

    /// The longest wait for a rate-limit window to reset before giving up (default 60 s).
    #[must_use]
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.policy = self.policy.max_retry_after(wait);
        self
    }

    /// The whole HTTP policy at once: attempts, timeout, backoff, longest rate-limit wait (defaults: 4 attempts of
    /// at most 30 s, pauses from 250 ms doubling to 8 s with jitter, rate-limit resets waited for up to 60 s).
    #[must_use]
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    /// Sends a request and returns the JSON body of a 2xx answer, under the client's [`Policy`]: 5xx, timeouts and
    /// lost connections are tried again after a jittered, doubling pause; a 429 waits until `X-RateLimit-Reset` (or
    /// `Retry-After`) says the window resets, if that is within the policy's longest wait.
    pub(crate) async fn send(
        &self,
        action: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        app_key_needed: bool,
    ) -> Result<Value, DatadogError> {
        let url = self.base.join(path).map_err(|e| DatadogError::Site(e.to_string()))?;
        let api_key = sensitive(&self.api_key)?;
        let app_key = if app_key_needed { Some(sensitive(&self.app_key)?) } else { None };
        self.policy
            .run(action, |attempt| {
                let mut request = self
                    .http
                    .request(method.clone(), url.clone())
                    .timeout(self.policy.attempt_timeout())
                    .query(query)
                    .header("DD-API-KEY", api_key.clone())
                    .header("Accept", "application/json");
                if let Some(app_key) = &app_key {
                    request = request.header("DD-APPLICATION-KEY", app_key.clone());
                }
                if let Some(body) = body {
                    request = request.json(body);
                }
                async move {
                    let response = match request.send().await {
                        Ok(response) => response,
                        Err(e) => return Attempt::Retry(DatadogError::Unreachable { action, why: without_url(&e) }),
                    };
                    let status = response.status();
                    // Datadog says when its rate-limit window resets; a standard Retry-After is read too.
                    let reset = header_secs(&response, "x-ratelimit-reset").map(Duration::from_secs).or_else(|| {
                        let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
                        retry_after(value, SystemTime::now())
                    });
                    let text = response.text().await.unwrap_or_default();
                    if status.is_success() {
                        return match serde_json::from_str(&text) {
                            Ok(value) => Attempt::Done(value),
                            Err(e) => Attempt::Failed(DatadogError::Shape { action, why: e.to_string() }),
                        };
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let wait = reset.unwrap_or(Duration::from_secs(1));
                        let limited =
                            DatadogError::RateLimited { action, attempts: attempt, reset_after_secs: wait.as_secs() };
                        return Attempt::RetryAfter(limited, wait);
                    }
                    let error = DatadogError::Status { action, status: status.as_u16(), message: messages(&text) };
                    if error.is_transient() { Attempt::Retry(error) } else { Attempt::Failed(error) }
                }
            })
            .await
    }
}

/// A key as a header value marked sensitive (left out of `Debug` and of HTTP/2 header compression).
fn sensitive(key: &Secret) -> Result<reqwest::header::HeaderValue, DatadogError> {
    let mut value = reqwest::header::HeaderValue::from_str(key.expose()).map_err(|_| DatadogError::InvalidKey)?;
    value.set_sensitive(true);
    Ok(value)
}

/// A reqwest error without the URL (which may carry query parameters).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() { kind.to_owned() } else { format!("{kind}: {detail}") }
}

fn header_secs(response: &reqwest::Response, name: &str) -> Option<u64> {
    response.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Datadog's `{"errors": [...]}`, joined; else the body's start.
fn messages(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => match v.get("errors").and_then(Value::as_array) {
            Some(errors) => errors
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join("; "),
            None => body.chars().take(200).collect(),
        },
        Err(_) => body.chars().take(200).collect(),
    }
}

impl std::fmt::Debug for Datadog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datadog")
            .field("url", &self.base.as_str())
            .field("api_key", &self.api_key)
            .field("app_key", &self.app_key)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}
