//! Gating a pipeline on Datadog monitors.

use async_trait::async_trait;
use gantry_core::{Step, StepContext, StepError, Template, TemplateError};
use reqwest::Method;
use serde_json::Value;

use crate::client::Datadog;
use crate::error::DatadogError;

/// A monitor's state, as the API reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MonitorState {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// `OK`, `Alert`, `Warn`, `No Data`, ...
    pub state: String,
}

impl Datadog {
    /// The monitors carrying every one of `tags` (`GET /api/v1/monitor?monitor_tags=...`).
    pub async fn monitors(&self, tags: &[String]) -> Result<Vec<MonitorState>, DatadogError> {
        let params = [("monitor_tags", tags.join(","))];
        let answer = self.send("list monitors", Method::GET, "/api/v1/monitor", &params, None, true).await?;
        let list = answer
            .as_array()
            .ok_or_else(|| DatadogError::Shape { action: "list monitors", why: "not an array".into() })?;
        Ok(list
            .iter()
            .map(|m| MonitorState {
                id: m.get("id").and_then(Value::as_u64).unwrap_or(0),
                name: m.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                state: m.get("overall_state").and_then(Value::as_str).unwrap_or("Unknown").to_owned(),
            })
            .collect())
    }
}

/// A step that passes only while no monitor matching its tags (templates, e.g. `service:{{service}}`) is alerting:
/// `Alert` fails it, and so do `Warn` and `No Data` unless allowed. No matching monitor at all fails it too, unless
/// allowed: a gate that checks nothing should not look like a green light.
#[derive(Clone, Debug)]
pub struct MonitorGate {
    client: Datadog,
    tags: Vec<String>,
    allow_warn: bool,
    allow_no_data: bool,
    allow_none: bool,
}

impl MonitorGate {
    /// A gate on the monitors carrying all of `tags`.
    pub fn new(client: Datadog, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            client,
            tags: tags.into_iter().map(Into::into).collect(),
            allow_warn: false,
            allow_no_data: false,
            allow_none: false,
        }
    }

    /// Lets `Warn` pass.
    #[must_use]
    pub fn allow_warn(mut self) -> Self {
        self.allow_warn = true;
        self
    }

    /// Lets `No Data` pass.
    #[must_use]
    pub fn allow_no_data(mut self) -> Self {
        self.allow_no_data = true;
        self
    }

    /// Passes when no monitor matches.
    #[must_use]
    pub fn allow_no_monitors(mut self) -> Self {
        self.allow_none = true;
        self
    }
}

#[async_trait]
impl Step for MonitorGate {
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let tags =
            self.tags.iter().map(|t| Template::parse(t).and_then(|t| ctx.render(&t))).collect::<Result<Vec<_>, _>>()?;
        let monitors = self.client.monitors(&tags).await?;
        if monitors.is_empty() && !self.allow_none {
            return Err(StepError::new(format!("no Datadog monitor carries the tags {}", tags.join(", "))));
        }
        let blocking: Vec<String> = monitors
            .iter()
            .filter(|m| match m.state.as_str() {
                "OK" => false,
                "Warn" => !self.allow_warn,
                "No Data" => !self.allow_no_data,
                _ => true,
            })
            .map(|m| format!("`{}` ({}, id {})", m.name, m.state, m.id))
            .collect();
        if !blocking.is_empty() {
            return Err(StepError::new(format!("Datadog monitors are not OK: {}", blocking.join(", "))));
        }
        ctx.log(format!("{} Datadog monitors tagged {} are OK", monitors.len(), tags.join(", ")));
        Ok(())
    }

    fn describe(&self, ctx: &StepContext) -> String {
        let tags: Vec<String> = self
            .tags
            .iter()
            .map(|t| Template::parse(t).map(|t| ctx.render_masked(&t)).unwrap_or_else(|_| t.clone()))
            .collect();
        format!("waits for no alert on the Datadog monitors tagged {}", tags.join(", "))
    }

    fn variables(&self) -> Result<Vec<String>, TemplateError> {
        let mut names = Vec::new();
        for t in &self.tags {
            names.extend(Template::parse(t)?.variables().map(str::to_owned));
        }
        Ok(names)
    }
}
