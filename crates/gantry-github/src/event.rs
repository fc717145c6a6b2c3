//! The `deployment` webhook event and what a run gets from it.

use gantry_core::Context;
use serde_json::Value;

/// Why a delivery's body is not a deployment event.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is not JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// The JSON lacks a field a deployment event has (named as a JSON pointer).
    #[error("not a deployment event: {0}")]
    NotADeployment(String),
}

/// A GitHub `deployment` event (the fields pipelines use), from its payload.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DeploymentEvent {
    /// The webhook delivery id (`X-GitHub-Delivery`).
    pub delivery: String,
    /// `owner/name`.
    pub repository: String,
    /// The deployment's id.
    pub deployment_id: u64,
    /// The commit.
    pub sha: String,
    /// The ref asked for (branch, tag or sha).
    pub git_ref: String,
    /// `production`, `staging`, ...
    pub environment: String,
    /// `deploy`, or a custom task.
    pub task: String,
    /// Who created the deployment.
    pub creator: String,
    /// The deployment's free-form payload.
    pub payload: Value,
    /// The GitHub App installation the delivery came through, if any.
    pub installation: Option<u64>,
}

/// The fields Gantry reads, deserialized straight from the body: the rest of GitHub's ~8 KB payload is skipped
/// without being built into a tree.
#[derive(serde::Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    repository: WireRepository<'a>,
    #[serde(borrow)]
    deployment: WireDeployment<'a>,
    installation: Option<WireInstallation>,
}

#[derive(serde::Deserialize)]
struct WireRepository<'a> {
    #[serde(borrow)]
    full_name: std::borrow::Cow<'a, str>,
}

#[derive(serde::Deserialize)]
struct WireDeployment<'a> {
    id: u64,
    #[serde(borrow)]
    sha: std::borrow::Cow<'a, str>,
    #[serde(rename = "ref", borrow)]
    git_ref: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    environment: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    task: Option<std::borrow::Cow<'a, str>>,
    creator: Option<WireUser<'a>>,
    #[serde(default)]
    payload: Value,
}

#[derive(serde::Deserialize)]
struct WireUser<'a> {
    #[serde(borrow)]
    login: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct WireInstallation {
    id: u64,
}

impl DeploymentEvent {
    /// Reads a `deployment` delivery's body. `Err` says whether it is not JSON at all, or which field is missing
    /// (as [`parse`](Self::parse) names it).
    pub fn from_body(delivery: &str, body: &[u8]) -> Result<Self, BodyError> {
        match serde_json::from_slice::<Wire<'_>>(body) {
            Ok(w) => Ok(Self {
                delivery: delivery.to_owned(),
                repository: w.repository.full_name.into_owned(),
                deployment_id: w.deployment.id,
                sha: w.deployment.sha.into_owned(),
                git_ref: w.deployment.git_ref.into_owned(),
                environment: w.deployment.environment.into_owned(),
                task: w.deployment.task.map_or_else(|| "deploy".to_owned(), std::borrow::Cow::into_owned),
                creator: w
                    .deployment
                    .creator
                    .and_then(|c| c.login)
                    .map(std::borrow::Cow::into_owned)
                    .unwrap_or_default(),
                payload: w.deployment.payload,
                installation: w.installation.map(|i| i.id),
            }),
            // Not the shape expected: read it as JSON to say what is wrong.
            Err(_) => match serde_json::from_slice::<Value>(body) {
                Err(e) => Err(BodyError::NotJson(e.to_string())),
                Ok(value) => Self::parse(delivery, &value).map_err(BodyError::NotADeployment),
            },
        }
    }

    /// Reads a `deployment` payload; the error names the missing field.
    pub fn parse(delivery: &str, body: &Value) -> Result<Self, String> {
        let text = |pointer: &str| {
            body.pointer(pointer).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("no `{pointer}`"))
        };
        Ok(Self {
            delivery: delivery.to_owned(),
            repository: text("/repository/full_name")?,
            deployment_id: body.pointer("/deployment/id").and_then(Value::as_u64).ok_or("no `/deployment/id`")?,
            sha: text("/deployment/sha")?,
            git_ref: text("/deployment/ref")?,
            environment: text("/deployment/environment")?,
            task: text("/deployment/task").unwrap_or_else(|_| "deploy".into()),
            creator: text("/deployment/creator/login").unwrap_or_default(),
            payload: body.pointer("/deployment/payload").cloned().unwrap_or(Value::Null),
            installation: body.pointer("/installation/id").and_then(Value::as_u64),
        })
    }

    /// The run's variables: `repo`, `sha`, `ref`, `environment`, `task`, `creator`, `deployment_id`, `delivery`,
    /// and `payload.<key>` for each top-level string, number or boolean of the deployment's payload.
    pub fn context(&self) -> Context {
        let mut ctx = Context::new()
            .var("repo", &self.repository)
            .var("sha", &self.sha)
            .var("ref", &self.git_ref)
            .var("environment", &self.environment)
            .var("task", &self.task)
            .var("creator", &self.creator)
            .var("deployment_id", self.deployment_id.to_string())
            .var("delivery", &self.delivery);
        if let Value::Object(fields) = &self.payload {
            for (key, value) in fields {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => continue,
                };
                ctx = ctx.var(format!("payload.{key}"), text);
            }
        }
        ctx
    }
}
