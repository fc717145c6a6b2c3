//! The HTTP client: sites, keys, timeouts, retries on outages and rate limits.

use std::sync::Once;
use std::time::Duration;

use gantry_core::Secret;
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
    timeout: Duration,
    attempts: u32,
    max_wait: Duration,
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
            timeout: Duration::from_secs(30),
            attempts: 4,
            max_wait: Duration::from_secs(60),
        })
    }

    /// The timeout of each request (default 30 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many times a request is made at most, across outages and rate limits (default 4).
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The longest wait for a rate-limit window to reset before giving up (default 60 s).
    #[must_use]
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    /// Sends a request and returns the JSON body of a 2xx answer. 5xx and timeouts are tried again with a doubling
    /// pause (250 ms first); 429 waits until `X-RateLimit-Reset` says the window resets (at most `max_wait`).
    pub(crate) async fn send(
        &self,
        action: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        app_key: bool,
    ) -> Result<Value, DatadogError> {
        let url = self.base.join(path).map_err(|e| DatadogError::Site(e.to_string()))?;
        let mut pause = Duration::from_millis(250);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .timeout(self.timeout)
                .query(query)
                .header("DD-API-KEY", sensitive(&self.api_key)?)
                .header("Accept", "application/json");
            if app_key {
                request = request.header("DD-APPLICATION-KEY", sensitive(&self.app_key)?);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let outcome = match request.send().await {
                Err(e) => Err(DatadogError::Unreachable { action, why: without_url(&e) }),
                Ok(response) => {
                    let status = response.status();
                    let reset = header_secs(&response, "x-ratelimit-reset");
                    let text = response.text().await.unwrap_or_default();
                    if status.is_success() {
                        return serde_json::from_str(&text)
                            .map_err(|e| DatadogError::Shape { action, why: e.to_string() });
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let reset_after_secs = reset.unwrap_or(1);
                        let wait = Duration::from_secs(reset_after_secs);
                        if attempt < self.attempts && wait <= self.max_wait {
                            tracing::debug!(target: "gantry_datadog", %action, reset_after_secs, "rate-limited; waiting");
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        return Err(DatadogError::RateLimited { action, attempts: attempt, reset_after_secs });
                    }
                    Err(DatadogError::Status { action, status: status.as_u16(), message: messages(&text) })
                }
            };
            match outcome {
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    tracing::debug!(target: "gantry_datadog", %action, attempt, error = %e, "retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                other => return other,
            }
        }
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
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
