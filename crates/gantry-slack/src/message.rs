//! What a run's events look like in Slack: Block Kit blocks with a fallback text.

use std::time::Duration;

use gantry_core::{Phase, RunInfo, RunStatus};
use serde_json::{Value, json};

/// Which events of a run are told to Slack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Notify {
    /// The run started.
    RunStarted,
    /// The run succeeded.
    Succeeded,
    /// The run failed or was cancelled.
    Failed,
    /// A deployment was aborted, rolled back or switched back.
    RolledBack,
    /// An analysis reached a verdict (a canary's or a blue/green's).
    Verdict,
    /// A deployment waits for someone to promote it.
    WaitingForApproval,
}

impl Notify {
    /// Every kind.
    pub const ALL: [Notify; 6] = [
        Notify::RunStarted,
        Notify::Succeeded,
        Notify::Failed,
        Notify::RolledBack,
        Notify::Verdict,
        Notify::WaitingForApproval,
    ];

    /// The kind a phase is told as, if any.
    pub(crate) fn of_phase(phase: Phase) -> Option<Self> {
        match phase {
            Phase::Verdict => Some(Self::Verdict),
            Phase::WaitingForPromotion | Phase::WaitingForApproval => Some(Self::WaitingForApproval),
            Phase::Aborted | Phase::RolledBack | Phase::SwitchedBack => Some(Self::RolledBack),
            _ => None,
        }
    }
}

/// The links a run's messages carry, as templates filled from the run ([`RunInfo::fill`]): `{run_id}`,
/// `{pipeline}` and the run's variables (`{repo}`, `{sha}`, `{environment}`, `{deployment_id}` for a run GitHub
/// started). A link whose variables the run lacks is left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Links {
    pub(crate) run: Option<String>,
    pub(crate) commit: Option<String>,
    pub(crate) deployment: Option<String>,
    pub(crate) dashboard: Option<String>,
}

impl Default for Links {
    fn default() -> Self {
        Self {
            run: None,
            commit: Some("https://github.com/{repo}/commit/{sha}".into()),
            deployment: Some("https://github.com/{repo}/deployments/{environment}".into()),
            dashboard: None,
        }
    }
}

/// Slack's `mrkdwn` escapes: `&`, `<` and `>` (https://api.slack.com/reference/surfaces/formatting#escaping).
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Keeps a section's text within Slack's 3,000 characters.
fn clip(text: &str) -> String {
    const MAX: usize = 2900;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

/// A message: fallback text (notifications, screen readers) and blocks.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Message {
    pub(crate) text: String,
    pub(crate) blocks: Value,
}

impl Message {
    fn new(text: String, blocks: Vec<Value>) -> Self {
        Self { text, blocks: Value::Array(blocks) }
    }
}

/// The run's header state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Running,
    Finished(RunStatus),
}

fn emoji(state: State) -> &'static str {
    match state {
        State::Running => ":rocket:",
        State::Finished(RunStatus::Succeeded) => ":white_check_mark:",
        State::Finished(RunStatus::Failed) => ":x:",
        State::Finished(RunStatus::Cancelled) => ":no_entry_sign:",
    }
}

fn title(run: &RunInfo) -> String {
    let mut title = format!("*{}*", escape(&run.pipeline));
    if let Some(repo) = run.vars.get("repo") {
        title.push_str(&format!(" for `{}`", escape(repo)));
    }
    if let Some(env) = run.vars.get("environment") {
        title.push_str(&format!(" to *{}*", escape(env)));
    }
    title
}

/// The header: the run's state, what it deploys, and its links.
pub(crate) fn header(run: &RunInfo, links: &Links, state: State, detail: Option<&str>) -> Message {
    let state_text = match state {
        State::Running => "running".to_owned(),
        State::Finished(status) => status.to_string(),
    };
    let mut line = format!("{} {} {}", emoji(state), title(run), state_text);
    if let Some(detail) = detail {
        line.push_str(&format!(": {}", escape(detail)));
    }
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&line)}})];
    let links = link_elements(run, links);
    if !links.is_empty() {
        blocks.push(json!({"type": "context", "elements": links}));
    }
    let plain = format!("{} {} {}", run.pipeline, run.run_id, state_text);
    Message::new(plain, blocks)
}

fn link_elements(run: &RunInfo, links: &Links) -> Vec<Value> {
    let short_sha = run.vars.get("sha").map(|s| s.chars().take(7).collect::<String>()).unwrap_or_default();
    let candidates = [
        (&links.run, format!("Run {}", run.run_id)),
        (&links.commit, format!("Commit {short_sha}")),
        (&links.deployment, "GitHub deployment".to_owned()),
        (&links.dashboard, "Dashboard".to_owned()),
    ];
    candidates
        .into_iter()
        .filter_map(|(template, label)| {
            // Values are percent-encoded into the URL: none can close the link or add a mention.
            let url = run.fill_url(template.as_deref()?)?;
            let url = url.replace('<', "%3C").replace('>', "%3E").replace('|', "%7C");
            Some(json!({"type": "mrkdwn", "text": format!("<{url}|{}>", escape(&label))}))
        })
        .collect()
}

/// A reply about a phase of a deployment (a verdict with its numbers, an abort, a wait for approval).
pub(crate) fn phase(kind: Notify, step: &str, message: &str) -> Message {
    let (icon, what) = match kind {
        Notify::Verdict => (":bar_chart:", "analysis verdict"),
        Notify::WaitingForApproval => (":hourglass_flowing_sand:", "waiting for approval"),
        Notify::RolledBack => (":rewind:", "rolled back"),
        _ => (":information_source:", "update"),
    };
    let line = format!("{icon} `{}` {what}: {}", escape(step), escape(message));
    Message::new(
        format!("{step} {what}: {message}"),
        vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&line)}})],
    )
}

/// The run's end, as a reply: how it ended, after how long, and for a failure which step and why.
pub(crate) fn finished(
    run: &RunInfo,
    links: &Links,
    status: RunStatus,
    duration: Duration,
    failure: Option<(&str, &str)>,
) -> Message {
    let mut line = format!("{} {} {} in {:.1?}", emoji(State::Finished(status)), title(run), status, duration);
    if let Some((step, reason)) = failure {
        line.push_str(&format!("\n`{}` failed: {}", escape(step), escape(reason)));
    }
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&line)}})];
    let links = link_elements(run, links);
    if !links.is_empty() {
        blocks.push(json!({"type": "context", "elements": links}));
    }
    let mut text = format!("{} {} {}", run.pipeline, run.run_id, status);
    if let Some((step, reason)) = failure {
        text.push_str(&format!(": {step} failed: {reason}"));
    }
    Message::new(text, blocks)
}
