//! The notifier: follows a run and tells its story in Slack.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use gantry_core::http::Policy;
use gantry_core::{Event, EventStream, Notifier, NotifyError, RunInfo, RunStatus, Secret, StepStatus};
use serde_json::{Value, json};

use crate::error::DeliveryError;
use crate::message::{self, Links, Message, Notify, State};
use crate::transport::{self, Transport};

/// Slack notifications for runs: a [`Notifier`] to give to [`Run::notify`](gantry_core::Run::notify).
///
/// With a **bot token** (`chat:write`), a run is one conversation: its first message is a header (what deploys
/// where, with links), every later event is a reply in that header's thread, and when the run ends the header is
/// updated (`chat.update`) to the final state. With an **incoming webhook**, each event is a message of its own
/// (webhooks can neither reply in threads nor update).
///
/// Delivery is bounded: each call times out (5 s), is tried at most 3 times (5xx, timeouts, and `429` after
/// `Retry-After` up to 10 s), and once Slack has failed a message, later ones get a single attempt until one gets
/// through. A message that cannot be delivered is logged and listed in the run's report; it never fails or slows
/// the run. Messages hold only what the run's events hold, in which every secret is already masked.
#[derive(Clone)]
pub struct Slack {
    transport: Transport,
    notify: HashSet<Notify>,
    links: Links,
    policy: Policy,
    http: reqwest::Client,
    buttons: bool,
}

impl Slack {
    fn with(transport: Transport) -> Self {
        Self {
            transport,
            notify: Notify::ALL.into_iter().collect(),
            links: Links::default(),
            policy: Policy::new()
                .attempts(3)
                .timeout(Duration::from_secs(5))
                .backoff(Duration::from_millis(250), Duration::from_secs(4))
                .max_retry_after(Duration::from_secs(10)),
            http: transport::client(),
            buttons: false,
        }
    }

    /// Through an incoming webhook (its URL is a secret: it is never logged or shown).
    pub fn webhook(url: Secret) -> Self {
        Self::with(Transport::Webhook(url))
    }

    /// Through the Web API with a bot token, in `channel` (`#deploys` or a channel id).
    pub fn bot(token: Secret, channel: impl Into<String>) -> Self {
        Self::with(Transport::Bot { api: "https://slack.com/api".into(), token, channel: channel.into() })
    }

    /// Another Web API base URL than `https://slack.com/api` (a proxy, or a test's simulated Slack). No effect on
    /// an incoming webhook, whose URL says where it goes.
    #[must_use]
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        if let Transport::Bot { api, .. } = &mut self.transport {
            *api = url.into().trim_end_matches('/').to_owned();
        }
        self
    }

    /// Tells only these kinds of events (all of them by default).
    #[must_use]
    pub fn only(mut self, kinds: impl IntoIterator<Item = Notify>) -> Self {
        self.notify = kinds.into_iter().collect();
        self
    }

    /// The link to the run (in the host's UI or logs), e.g. `https://ci.example.com/runs/{run_id}`. Templates are
    /// filled by [`RunInfo::fill`]: `{run_id}`, `{pipeline}` and the run's variables.
    #[must_use]
    pub fn run_url(mut self, template: impl Into<String>) -> Self {
        self.links.run = Some(template.into());
        self
    }

    /// The link to the commit (default `https://github.com/{repo}/commit/{sha}`).
    #[must_use]
    pub fn commit_url(mut self, template: impl Into<String>) -> Self {
        self.links.commit = Some(template.into());
        self
    }

    /// The link to the GitHub deployment (default `https://github.com/{repo}/deployments/{environment}`).
    #[must_use]
    pub fn deployment_url(mut self, template: impl Into<String>) -> Self {
        self.links.deployment = Some(template.into());
        self
    }

    /// The link to a dashboard, e.g. `https://app.datadoghq.com/dashboard/abc-123?tpl_var_env={environment}`.
    #[must_use]
    pub fn dashboard_url(mut self, template: impl Into<String>) -> Self {
        self.links.dashboard = Some(template.into());
        self
    }

    /// How long each call may take (default 5 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.policy = self.policy.timeout(timeout);
        self
    }

    /// How many attempts a message gets while Slack answers (default 3, at least 1).
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.policy = self.policy.attempts(attempts);
        self
    }

    /// The longest `Retry-After` waited out (default 10 s); a rate limit asking for longer drops the message.
    #[must_use]
    pub fn max_retry_after(mut self, wait: Duration) -> Self {
        self.policy = self.policy.max_retry_after(wait);
        self
    }

    /// The first pause between attempts (default 250 ms), doubling with jitter up to 4 s, or up to `pause` itself
    /// when it is longer.
    #[must_use]
    pub fn backoff(mut self, pause: Duration) -> Self {
        self.policy = self.policy.backoff(pause, pause.max(Duration::from_secs(4)));
        self
    }

    /// Puts Approve and Reject buttons ([`approval_buttons`](crate::approval_buttons)) under each message about a
    /// manual gate that waits: for apps whose interactivity URL is served by [`Interactions`](crate::Interactions).
    #[must_use]
    pub fn approval_buttons(mut self) -> Self {
        self.buttons = true;
        self
    }

    /// The whole HTTP policy at once (defaults: 3 attempts of at most 5 s, pauses from 250 ms doubling to 4 s with
    /// jitter, a `Retry-After` waited out up to 10 s).
    #[must_use]
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Slack");
        match &self.transport {
            Transport::Webhook(url) => d.field("webhook", url),
            Transport::Bot { api, token, channel } => {
                d.field("api", api).field("token", token).field("channel", channel)
            }
        };
        d.field("notify", &self.notify).finish_non_exhaustive()
    }
}

/// One run's conversation.
struct Conversation<'s> {
    slack: &'s Slack,
    run: RunInfo,
    /// The header message: the channel's id and its `ts` (bot only).
    header: Option<(String, String)>,
    /// Posting the header failed: replies go unthreaded, and it is not tried again.
    header_failed: bool,
    /// Slack failed the last message: try the next ones once.
    down: bool,
    undelivered: Vec<NotifyError>,
}

impl Conversation<'_> {
    async fn call(&mut self, what: &str, method: &'static str, body: Value) -> Option<Value> {
        // Once Slack is known to be down, each later message gets one attempt: the run's story is not held up.
        let policy = if self.down { self.slack.policy.attempts(1) } else { self.slack.policy };
        match transport::send(&self.slack.http, &self.slack.transport, method, &body, policy).await {
            Ok(answer) => {
                self.down = false;
                Some(answer)
            }
            Err(e) => {
                tracing::warn!(target: "gantry_slack", run_id = %self.run.run_id, error = %e, "a Slack message was not delivered: {what}");
                self.down = true;
                self.undelivered.push(match e {
                    DeliveryError::Refused { .. } => NotifyError::refused(what, e),
                    _ => NotifyError::unavailable(what, e),
                });
                None
            }
        }
    }

    /// Posts the header (bot) if it is not there yet; returns whether it is there.
    async fn ensure_header(&mut self) -> bool {
        let Transport::Bot { channel, .. } = &self.slack.transport else { return false };
        if self.header.is_some() {
            return true;
        }
        if self.header_failed {
            return false;
        }
        let m = message::header(&self.run, &self.slack.links, State::Running, None);
        let body = json!({"channel": channel, "text": m.text, "blocks": m.blocks, "unfurl_links": false});
        let answer = self.call("run started", "chat.postMessage", body).await;
        let posted = answer.as_ref().and_then(|a| {
            let ts = a.get("ts").and_then(Value::as_str)?;
            Some((a.get("channel").and_then(Value::as_str).unwrap_or(channel).to_owned(), ts.to_owned()))
        });
        if answer.is_some() && posted.is_none() {
            self.undelivered.push(NotifyError::refused("run started", "Slack's answer had no `ts` to thread under"));
        }
        self.header_failed = posted.is_none();
        self.header = posted;
        self.header.is_some()
    }

    /// A message: a reply in the header's thread (bot), or a message of its own (webhook).
    async fn tell(&mut self, what: &str, m: Message) {
        match &self.slack.transport {
            Transport::Webhook(_) => {
                let body = json!({"text": m.text, "blocks": m.blocks, "unfurl_links": false});
                self.call(what, "webhook", body).await;
            }
            Transport::Bot { channel, .. } => {
                let channel = channel.clone();
                let mut body = json!({"channel": channel, "text": m.text, "blocks": m.blocks, "unfurl_links": false});
                if self.ensure_header().await
                    && let Some((channel_id, ts)) = &self.header
                {
                    body["channel"] = channel_id.clone().into();
                    body["thread_ts"] = ts.clone().into();
                }
                self.call(what, "chat.postMessage", body).await;
            }
        }
    }

    /// The header, updated to how the run ended (bot).
    async fn close(&mut self, status: RunStatus, failure: Option<&(String, String)>) {
        let Some((channel_id, ts)) = self.header.clone() else { return };
        let detail = failure.map(|(step, reason)| format!("`{step}` failed: {reason}"));
        let m = message::header(&self.run, &self.slack.links, State::Finished(status), detail.as_deref());
        let body = json!({"channel": channel_id, "ts": ts, "text": m.text, "blocks": m.blocks});
        self.call("final header update", "chat.update", body).await;
    }
}

#[async_trait::async_trait]
impl Notifier for Slack {
    fn name(&self) -> &str {
        "slack"
    }

    async fn follow(&self, run: RunInfo, mut events: EventStream) -> Vec<NotifyError> {
        let mut talk =
            Conversation { slack: self, run, header: None, header_failed: false, down: false, undelivered: Vec::new() };
        let wants = |kind: Notify| self.notify.contains(&kind);
        let mut failure: Option<(String, String)> = None;
        while let Some(event) = events.next().await {
            match event {
                Event::RunStarted { .. } if wants(Notify::RunStarted) => match &self.transport {
                    Transport::Bot { .. } => {
                        talk.ensure_header().await;
                    }
                    Transport::Webhook(_) => {
                        let m = message::header(&talk.run, &self.links, State::Running, None);
                        talk.tell("run started", m).await;
                    }
                },
                Event::Phase { step, phase, message: text, .. } => {
                    if let Some(kind) = Notify::of_phase(phase).filter(|k| wants(*k)) {
                        let mut m = message::phase(kind, &step, &text);
                        if self.buttons && phase == gantry_core::Phase::WaitingForApproval {
                            // The gate's id, as `Approvals` names it.
                            let gate = format!("{}/{step}", talk.run.run_id);
                            if let Value::Array(blocks) = &mut m.blocks {
                                blocks.push(crate::approval_buttons(&gate));
                            }
                        }
                        talk.tell(&format!("`{step}` {phase:?}"), m).await;
                    }
                }
                Event::StepFinished { step, status: StepStatus::Failed, reason, .. } if failure.is_none() => {
                    failure = Some((step.to_string(), reason.as_deref().unwrap_or("no reason given").to_owned()));
                }
                Event::RunFinished { status, duration, .. } => {
                    let kind = if status == RunStatus::Succeeded { Notify::Succeeded } else { Notify::Failed };
                    let failure = failure.as_ref().filter(|_| status != RunStatus::Succeeded);
                    if wants(kind) {
                        let m = message::finished(
                            &talk.run,
                            &self.links,
                            status,
                            duration,
                            failure.map(|(s, r)| (s.as_str(), r.as_str())),
                        );
                        talk.tell(&format!("run {status}"), m).await;
                    }
                    talk.close(status, failure).await;
                }
                _ => {}
            }
        }
        talk.undelivered
    }
}
