//! Deployment statuses through GitHub's REST API: `in_progress` when a run starts, its outcome when it ends.

use std::time::Duration;

use gantry_core::{RunReport, RunStatus, Secret};
use serde_json::json;

use crate::app::App;
use crate::error::GitHubError;

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
    attempts: u32,
    timeout: Duration,
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

    /// The GitHub App installation to act as (for [`app`](Self::app)).
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
            attempts: 3,
            timeout: Duration::from_secs(10),
            log_url: None,
            environment_url: None,
        }
    }

    /// How long each request may take (default 10 s).
    #[must_use]
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The run's log URL; `{run_id}`, `{repo}` and `{environment}` are filled in.
    #[must_use]
    pub fn log_url(mut self, template: impl Into<String>) -> Self {
        self.log_url = Some(template.into());
        self
    }

    /// The deployed environment's URL; `{repo}` and `{environment}` are filled in.
    #[must_use]
    pub fn environment_url(mut self, template: impl Into<String>) -> Self {
        self.environment_url = Some(template.into());
        self
    }

    fn fill(template: &Option<String>, repo: &str, environment: &str, run_id: &str) -> Option<String> {
        template
            .as_ref()
            .map(|t| t.replace("{run_id}", run_id).replace("{repo}", repo).replace("{environment}", environment))
    }

    /// Posts a status; retries 5xx and transport errors (3 attempts, 200 ms doubling). An error is returned for the
    /// caller to report, never to fail a deployment. (A GitHub App needs [`installation`](Self::installation) here.)
    pub async fn status(
        &self,
        repo: &str,
        deployment_id: u64,
        state: &str,
        description: &str,
        urls: (Option<String>, Option<String>),
    ) -> Result<(), String> {
        self.status_as(None, repo, deployment_id, state, description, urls).await
    }

    async fn token(&self, installation: Option<u64>) -> Result<Secret, String> {
        match &self.auth {
            Auth::Token(token) => Ok(token.clone()),
            Auth::App(app) => app.token(&self.http, &self.api, installation).await,
        }
    }

    async fn status_as(
        &self,
        installation: Option<u64>,
        repo: &str,
        deployment_id: u64,
        state: &str,
        description: &str,
        urls: (Option<String>, Option<String>),
    ) -> Result<(), String> {
        let url = format!("{}/repos/{repo}/deployments/{deployment_id}/statuses", self.api);
        let mut body = json!({"state": state, "description": description.chars().take(140).collect::<String>()});
        if let Some(log) = urls.0 {
            body["log_url"] = log.into();
        }
        if let Some(env) = urls.1 {
            body["environment_url"] = env.into();
        }
        let mut pause = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            let token = match self.token(installation).await {
                Ok(token) => token,
                Err(e) => {
                    last = e;
                    if attempt < self.attempts {
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                    continue;
                }
            };
            let mut authorization = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| "the token cannot be sent in a header".to_owned())?;
            authorization.set_sensitive(true);
            let sent = self
                .http
                .post(&url)
                .header(reqwest::header::AUTHORIZATION, authorization)
                .header(reqwest::header::ACCEPT, "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
                .timeout(self.timeout)
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().is_server_error() => last = format!("GitHub answered {}", r.status()),
                Ok(r) => return Err(format!("GitHub refused the `{state}` status: {}", r.status())),
                Err(e) if e.is_timeout() => last = format!("GitHub did not answer within {:?}", self.timeout),
                Err(e) => last = format!("GitHub could not be reached: {}", e.without_url()),
            }
            if attempt < self.attempts {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        Err(format!("the `{state}` status was not delivered: {last}"))
    }

    /// Reports a run from start to end: `in_progress` now, then `success`, `failure` or `error` (cancelled) with the
    /// log and environment URLs. Returns what could not be delivered (also added to the report's `undelivered`).
    pub(crate) async fn report_run(
        &self,
        installation: Option<u64>,
        repo: &str,
        environment: &str,
        deployment_id: u64,
        run: impl std::future::Future<Output = Option<RunReport>>,
    ) -> (Option<RunReport>, Vec<String>) {
        let mut failed = Vec::new();
        let env_url = Self::fill(&self.environment_url, repo, environment, "");
        if let Err(e) = self
            .status_as(installation, repo, deployment_id, "in_progress", "Gantry is deploying", (None, env_url.clone()))
            .await
        {
            failed.push(e);
        }
        let report = run.await;
        let (state, description, run_id) = match &report {
            Some(r) => (
                match r.status {
                    RunStatus::Succeeded => "success",
                    RunStatus::Failed => "failure",
                    RunStatus::Cancelled => "error",
                },
                r.summary(),
                r.run_id.clone(),
            ),
            None => ("error", "the run could not start".to_owned(), String::new()),
        };
        let log_url = Self::fill(&self.log_url, repo, environment, &run_id);
        if let Err(e) = self.status_as(installation, repo, deployment_id, state, &description, (log_url, env_url)).await
        {
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
