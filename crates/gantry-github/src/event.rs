//! The `deployment` webhook event and what a run gets from it.

use gantry_core::Context;
use serde_json::Value;

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

impl DeploymentEvent {
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
