//! Deployment statuses through GitHub's REST API: `in_progress` when a run starts, its outcome when it ends.

use std::time::Duration;

use gantry_core::{RunReport, RunStatus, Secret};
use serde_json::json;

/// Where and how to report deployment statuses.
#[derive(Clone)]
pub struct GitHub {
    http: reqwest::Client,
    api: String,
    token: Secret,
    attempts: u32,
    log_url: Option<String>,
    environment_url: Option<String>,
}

impl GitHub {
    /// `https://api.github.com` with a token (a personal access token, or a GitHub App installation token).
    pub fn new(token: Secret) -> Self {
        Self::with_url("https://api.github.com", token)
    }

    /// Another API base (GitHub Enterprise `https://host/api/v3`, or a test receiver).
    pub fn with_url(api: impl Into<String>, token: Secret) -> Self {
        static RUSTLS: std::sync::Once = std::sync::Once::new();
        RUSTLS.call_once(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let http = reqwest::Client::builder()
            .user_agent(concat!("gantry-github/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            http,
            api: api.into().trim_end_matches('/').to_owned(),
            token,
            attempts: 3,
            log_url: None,
            environment_url: None,
        }
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
    /// caller to report, never to fail a deployment.
    pub async fn status(
        &self,
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
            let mut authorization = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.token.expose()))
                .map_err(|_| "the token cannot be sent in a header".to_owned())?;
            authorization.set_sensitive(true);
            let sent = self
                .http
                .post(&url)
                .header(reqwest::header::AUTHORIZATION, authorization)
                .header(reqwest::header::ACCEPT, "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().is_server_error() => last = format!("GitHub answered {}", r.status()),
                Ok(r) => return Err(format!("GitHub refused the `{state}` status: {}", r.status())),
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
    /// log and environment URLs. Returns what could not be delivered.
    pub(crate) async fn report_run(
        &self,
        repo: &str,
        environment: &str,
        deployment_id: u64,
        run: impl std::future::Future<Output = Option<RunReport>>,
    ) -> (Option<RunReport>, Vec<String>) {
        let mut failed = Vec::new();
        let env_url = Self::fill(&self.environment_url, repo, environment, "");
        if let Err(e) =
            self.status(repo, deployment_id, "in_progress", "Gantry is deploying", (None, env_url.clone())).await
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
        if let Err(e) = self.status(repo, deployment_id, state, &description, (log_url, env_url)).await {
            failed.push(e);
        }
        (report, failed)
    }
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub").field("api", &self.api).field("token", &self.token).finish_non_exhaustive()
    }
}
