//! Deployment statuses through GitHub's REST API: `in_progress` when a run starts, its outcome when it ends.

use std::time::{Duration, SystemTime};

use gantry_core::http::{Attempt, Policy, retry_after};
use gantry_core::{RunInfo, RunReport, RunStatus, Secret};
use serde_json::json;

use crate::app::App;
use crate::error::{DeploymentState, GitHubError, StatusError};

/// How requests are authenticated.
#[derive(Clone)]
enum Auth {
    /// A personal access token, or an installation token the host got itself.
    Token(Secret),
    /// A GitHub App: installation tokens made from its JWT, cached.
    App(App),
}

/// Where and how to report deployment statuses.
#[derive(Clone)]
pub struct GitHub {
    http: reqwest::Client,
    api: String,
    auth: Auth,
    policy: Policy,
    log_url: Option<String>,
    environment_url: Option<String>,
}

impl GitHub {
    /// `https://api.github.com` with a token (a personal access token, or a GitHub App installation token).
    pub fn new(token: Secret) -> Self {
        Self::with_url("https://api.github.com", token)
    }

    /// As a GitHub App (`app_id`, and its private key as GitHub hands it out, PEM): each request uses an
    /// installation token made from the App's JWT, cached until five minutes before it expires. The installation
    /// is the one set with [`installation`](Self::installation), else the delivery's `installation.id`.
    pub fn app(app_id: u64, private_key_pem: &Secret) -> Result<Self, GitHubError> {
        let mut github = Self::new(Secret::new(""));
        github.auth = Auth::App(App::new(app_id.to_string(), private_key_pem)?);
        Ok(github)
    }

    /// The GitHub App installation to act as when a delivery does not say (for [`app`](Self::app); no effect with
    /// a token). A delivery's own `installation.id` comes first: the App is installed where the repository is.
    #[must_use]
    pub fn installation(mut self, id: u64) -> Self {
        if let Auth::App(app) = self.auth {
            self.auth = Auth::App(app.installation(id));
        }
        self
    }

    /// Another API base (GitHub Enterprise `https://host/api/v3`, or a test receiver).
    #[must_use]
    pub fn api_url(mut self, api: impl Into<String>) -> Self {
        self.api = api.into().trim_end_matches('/').to_owned();
        self
    }

    /// Another API base (GitHub Enterprise `https://host/api/v3`, or a test receiver), with a token.
    pub fn with_url(api: impl Into<String>, token: Secret) -> Self {
        static RUSTLS: std::sync::Once = std::sync::Once::new();
        RUSTLS.call_once(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let http = reqwest::Client::builder()
            .user_agent(concat!("gantry-github/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            http,
            api: api.into().trim_end_matches('/').to_owned(),
            auth: Auth::Token(token),
            policy: Policy::new().attempts(3).timeout(Duration::from_secs(10)),
            log_url: None,
            environment_url: None,
        }
    }

    /// How long each request may take (default 10 s).
    #[must_use]
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.policy = self.policy.timeout(timeout);
        self
    }

    /// The whole HTTP policy at once (defaults: 3 attempts of at most 10 s, pauses from 200 ms doubling to 5 s with
    /// jitter, a `Retry-After` honoured up to 30 s).
    #[must_use]
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The run's log URL, e.g. `https://deploys.example/runs/{run_id}`: `{run_id}`, `{pipeline}` and the run's
    /// variables (`{repo}`, `{environment}`, `{sha}`, `{payload.KEY}`, ...) are filled in, percent-encoded; a
    /// template naming a variable the run lacks is left out.
    #[must_use]
    pub fn log_url(mut self, template: impl Into<String>) -> Self {
        self.log_url = Some(template.into());
        self
    }

    /// The deployed environment's URL, e.g. `https://{environment}.shop.example`: filled in as
    /// [`log_url`](Self::log_url) is, from the start of the run.
    #[must_use]
    pub fn environment_url(mut self, template: impl Into<String>) -> Self {
        self.environment_url = Some(template.into());
        self
    }

    /// Posts a status under the client's [`Policy`]: 5xx, timeouts, lost connections and an App token GitHub no
    /// longer takes are retried; a `429` or `403` with `Retry-After` (a rate limit) is waited out within the policy.
    /// An error is returned for the caller to report, never to fail a deployment. (A GitHub App needs
    /// [`installation`](Self::installation) here.)
    pub async fn status(
        &self,
        repo: &str,
        deployment_id: u64,
        state: DeploymentState,
        description: &str,
        urls: (Option<String>, Option<String>),
    ) -> Result<(), StatusError> {
        self.status_as(None, repo, deployment_id, state, description, urls).await
    }

    async fn token(&self, installation: Option<u64>) -> Result<Secret, crate::app::TokenError> {
        match &self.auth {
            Auth::Token(token) => Ok(token.clone()),
            Auth::App(app) => {
                app.token(&self.http, &self.api, app.installation_for(installation), self.policy.attempt_timeout())
                    .await
            }
        }
    }

    async fn status_as(
        &self,
        installation: Option<u64>,
        repo: &str,
        deployment_id: u64,
        state: DeploymentState,
        description: &str,
        urls: (Option<String>, Option<String>),
    ) -> Result<(), StatusError> {
        let url = format!("{}/repos/{repo}/deployments/{deployment_id}/statuses", self.api);
        let mut body = json!({"state": state, "description": description.chars().take(140).collect::<String>()});
        if let Some(log) = urls.0 {
            body["log_url"] = log.into();
        }
        if let Some(env) = urls.1 {
            body["environment_url"] = env.into();
        }
        let timeout = self.policy.attempt_timeout();
        let (url, body) = (&url, &body);
        self.policy
            .run("post a deployment status", |attempt| async move {
                let unavailable = |last: String| StatusError::Unavailable { state, attempts: attempt, last };
                let token = match self.token(installation).await {
                    Ok(token) => token,
                    Err(e) => {
                        let error = StatusError::Credentials { state, why: e.message, retryable: e.retryable };
                        return if e.retryable { Attempt::Retry(error) } else { Attempt::Failed(error) };
                    }
                };
                let Ok(mut authorization) =
                    reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                else {
                    let why = "the token cannot be sent in a header".to_owned();
                    return Attempt::Failed(StatusError::Credentials { state, why, retryable: false });
                };
                authorization.set_sensitive(true);
                let sent = self
                    .http
                    .post(url)
                    .header(reqwest::header::AUTHORIZATION, authorization)
                    .header(reqwest::header::ACCEPT, "application/vnd.github+json")
                    .header("X-GitHub-Api-Version", "2022-11-28")
                    .timeout(timeout)
                    .json(body)
                    .send()
                    .await;
                let r = match sent {
                    Ok(r) => r,
                    Err(e) if e.is_timeout() => {
                        return Attempt::Retry(unavailable(format!("GitHub did not answer within {timeout:?}")));
                    }
                    Err(e) => {
                        return Attempt::Retry(unavailable(format!(
                            "GitHub could not be reached: {}",
                            e.without_url()
                        )));
                    }
                };
                let status = r.status();
                if status.is_success() {
                    return Attempt::Done(());
                }
                if status == reqwest::StatusCode::UNAUTHORIZED
                    && let Auth::App(app) = &self.auth
                {
                    // An installation token revoked or expired early: forget it, and the next attempt gets another.
                    if let Some(installation) = app.installation_for(installation) {
                        app.forget(installation);
                    }
                    return Attempt::Retry(unavailable("GitHub no longer took the installation token (401)".into()));
                }
                if status.is_server_error() {
                    return Attempt::Retry(unavailable(format!("GitHub answered {status}")));
                }
                let wait = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, SystemTime::now()));
                let answer: serde_json::Value = r.json().await.unwrap_or_default();
                let message = answer.get("message").and_then(|m| m.as_str()).unwrap_or_default().to_owned();
                let refused = StatusError::Refused { state, status: status.as_u16(), message };
                match wait {
                    // GitHub's secondary rate limits answer 403 or 429 with Retry-After.
                    Some(wait) if matches!(status.as_u16(), 403 | 429) => Attempt::RetryAfter(refused, wait),
                    _ => Attempt::Failed(refused),
                }
            })
            .await
    }

    /// Reports a run from start to end: `in_progress` as the run starts (sent beside it, so a slow GitHub never
    /// delays the deployment), then `success`, `failure` or `error` (cancelled, or could not start) with the log and
    /// environment URLs. Returns what could not be delivered (also added to the report's `undelivered`).
    pub(crate) async fn report_run(
        &self,
        event: &crate::DeploymentEvent,
        pipeline: &str,
        run: impl std::future::Future<Output = Option<RunReport>>,
    ) -> (Option<RunReport>, Vec<StatusError>) {
        let (installation, repo, id) = (event.installation, event.repository.as_str(), event.deployment_id);
        let vars = event.context().vars().clone();
        let fill = |template: &Option<String>, run_id: &str| {
            template.as_deref().and_then(|t| RunInfo::new(run_id, pipeline, vars.clone()).fill_url(t))
        };
        let env_url = fill(&self.environment_url, "");
        let started = self.status_as(
            installation,
            repo,
            id,
            DeploymentState::InProgress,
            "Gantry is deploying",
            (None, env_url.clone()),
        );
        let (started, report) = tokio::join!(started, run);
        let mut failed: Vec<StatusError> = started.err().into_iter().collect();
        let (state, description, run_id) = match &report {
            Some(r) => (
                match r.status {
                    RunStatus::Succeeded => DeploymentState::Success,
                    RunStatus::Failed => DeploymentState::Failure,
                    RunStatus::Cancelled => DeploymentState::Error,
                },
                r.summary(),
                r.run_id.clone(),
            ),
            None => (DeploymentState::Error, "the run could not start".to_owned(), String::new()),
        };
        let log_url = fill(&self.log_url, &run_id);
        if let Err(e) = self.status_as(installation, repo, id, state, &description, (log_url, env_url)).await {
            failed.push(e);
        }
        let mut report = report;
        if let Some(report) = &mut report {
            // The run's report lists every notification that failed, its notifiers' and GitHub's alike.
            report.undelivered.extend(failed.iter().map(|f| format!("github: {f}")));
        }
        (report, failed)
    }
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("GitHub");
        d.field("api", &self.api);
        match &self.auth {
            Auth::Token(token) => d.field("token", token),
            Auth::App(app) => d.field("app", app),
        };
        d.finish_non_exhaustive()
    }
}
