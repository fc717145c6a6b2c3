//! Deployment markers: events on Datadog's event stream (and so on dashboards) at each deployment.

use async_trait::async_trait;
use gantry_core::{OutputKey, Step, StepContext, StepError, Template, TemplateError};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::Datadog;
use crate::error::DatadogError;

/// The id of the event a [`DeploymentMarker`] posted, as Datadog's `id_str` (the JSON number loses precision).
pub const EVENT_ID: OutputKey<String> = OutputKey::new("event_id");

impl Datadog {
    /// Posts an event (`POST /api/v1/events`, API key only) and returns its id as `id_str`.
    pub async fn post_event(
        &self,
        title: &str,
        text: &str,
        tags: &[String],
        alert_type: &str,
    ) -> Result<String, DatadogError> {
        let body =
            json!({"title": title, "text": text, "tags": tags, "alert_type": alert_type, "source_type_name": "gantry"});
        let answer = self.send("post an event", Method::POST, "/api/v1/events", &[], Some(&body), false).await?;
        event_id(&answer)
    }
}

/// The id of a posted event: `event.id_str` (not `event.id`, a number beyond 2^53).
pub fn event_id(answer: &Value) -> Result<String, DatadogError> {
    answer
        .pointer("/event/id_str")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| DatadogError::Shape { action: "post an event", why: "no `event.id_str`".into() })
}

/// A step that marks a deployment on Datadog with an event (title, text and tags are templates), publishing its id
/// as [`EVENT_ID`]. Tag it `service:{{service}}` and `version:{{version}}` to see it on the service's dashboards.
#[derive(Clone, Debug)]
pub struct DeploymentMarker {
    client: Datadog,
    title: String,
    text: String,
    tags: Vec<String>,
}

impl DeploymentMarker {
    /// A marker with a title and text.
    pub fn new(client: Datadog, title: impl Into<String>, text: impl Into<String>) -> Self {
        Self { client, title: title.into(), text: text.into(), tags: Vec::new() }
    }

    /// Adds a tag (a template).
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    fn templates(&self) -> impl Iterator<Item = &String> {
        [&self.title, &self.text].into_iter().chain(&self.tags)
    }
}

#[async_trait]
impl Step for DeploymentMarker {
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let render = |s: &str| Template::parse(s).and_then(|t| ctx.render(&t));
        let tags = self.tags.iter().map(|t| render(t)).collect::<Result<Vec<_>, _>>()?;
        let id = self.client.post_event(&render(&self.title)?, &render(&self.text)?, &tags, "info").await?;
        ctx.log(format!("marked on Datadog as event {id}"));
        ctx.publish(EVENT_ID, id);
        Ok(())
    }

    fn describe(&self, ctx: &StepContext) -> String {
        let show = |s: &str| Template::parse(s).map(|t| ctx.render_masked(&t)).unwrap_or_else(|_| s.to_owned());
        format!("posts the Datadog event \"{}\"", show(&self.title))
    }

    fn variables(&self) -> Result<Vec<String>, TemplateError> {
        let mut names = Vec::new();
        for t in self.templates() {
            names.extend(Template::parse(t)?.variables().map(str::to_owned));
        }
        Ok(names)
    }
}
