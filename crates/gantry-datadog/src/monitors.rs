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
///
/// By default it checks once. With [`watch_for`](MonitorGate::watch_for) it keeps checking (every
/// [`interval`](MonitorGate::interval)) for a bake time after a deploy and fails at the first check that finds a
/// monitor alerting; it passes when the whole period was clear. A failed check (Datadog unreachable) fails the gate
/// too: an unknown state is not a green light.
#[derive(Clone, Debug)]
pub struct MonitorGate {
    client: Datadog,
    tags: Vec<String>,
    allow_warn: bool,
    allow_no_data: bool,
    allow_none: bool,
    watch: Option<(std::time::Duration, std::time::Duration)>,
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
            watch: None,
        }
    }

    /// Keeps checking for `period` (a bake time), failing at the first check that finds a monitor alerting; checks
    /// every 30 s unless [`interval`](MonitorGate::interval) says otherwise.
    #[must_use]
    pub fn watch_for(mut self, period: std::time::Duration) -> Self {
        let every = self.watch.map_or(std::time::Duration::from_secs(30), |(_, every)| every);
        self.watch = Some((period, every));
        self
    }

    /// How often a watching gate checks (default 30 s; Datadog evaluates most monitors every minute).
    #[must_use]
    pub fn interval(mut self, every: std::time::Duration) -> Self {
        let period = self.watch.map_or(std::time::Duration::ZERO, |(period, _)| period);
        self.watch = Some((period, every.max(std::time::Duration::from_millis(1))));
        self
    }

    /// One look at the monitors: `Ok(how many)` when none blocks, else why.
    async fn check(&self, tags: &[String]) -> Result<usize, StepError> {
        let monitors = self.client.monitors(tags).await?;
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
        Ok(monitors.len())
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
        let count = self.check(&tags).await?;
        let Some((period, every)) = self.watch else {
            ctx.log(format!("{count} Datadog monitors tagged {} are OK", tags.join(", ")));
            return Ok(());
        };
        let until = tokio::time::Instant::now() + period;
        let mut checks = 1;
        while tokio::time::Instant::now() < until {
            tokio::select! {
                () = tokio::time::sleep(every.min(until - tokio::time::Instant::now())) => {}
                () = ctx.cancellation().cancelled() => return Err(StepError::cancelled()),
            }
            if let Err(e) = self.check(&tags).await {
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    why.push_str(&format!(": {s}"));
                    source = s.source();
                }
                return Err(StepError::new(format!("after {checks} clear checks over {period:?}: {why}")));
            }
            checks += 1;
        }
        ctx.log(format!(
            "{count} Datadog monitors tagged {} stayed OK for {period:?} ({checks} checks)",
            tags.join(", ")
        ));
        Ok(())
    }

    fn describe(&self, ctx: &StepContext) -> String {
        let tags: Vec<String> = self
            .tags
            .iter()
            .map(|t| Template::parse(t).map(|t| ctx.render_masked(&t)).unwrap_or_else(|_| t.clone()))
            .collect();
        match self.watch {
            None => format!("checks that no Datadog monitor tagged {} is alerting", tags.join(", ")),
            Some((period, _)) => {
                format!(
                    "watches the Datadog monitors tagged {} for {period:?}, failing at the first alert",
                    tags.join(", ")
                )
            }
        }
    }

    fn variables(&self) -> Result<Vec<String>, TemplateError> {
        let mut names = Vec::new();
        for t in &self.tags {
            names.extend(Template::parse(t)?.variables().map(str::to_owned));
        }
        Ok(names)
    }
}
