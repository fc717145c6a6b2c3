//! A simulated Slack: the Web API's `chat.postMessage` and `chat.update`, and incoming webhooks, on 127.0.0.1.
//!
//! It keeps each channel's messages and threads, so a test asserts what people would see: the header message as
//! last updated, and the replies in its thread, in order. It answers as Slack documents
//! (<https://api.slack.com/methods/chat.postMessage>, <https://api.slack.com/methods/chat.update>,
//! <https://api.slack.com/messaging/webhooks>, <https://api.slack.com/apis/rate-limits>):
//!
//! - Web API calls answer `200` with `{"ok": true, "channel": <id>, "ts": ...}`, or `{"ok": false, "error": ...}`:
//!   `not_authed` / `invalid_auth` without the bot token, `channel_not_found`, `no_text` (neither `text` nor
//!   `blocks`), `invalid_blocks` (more than 50 blocks, a section text over 3,000 characters), `message_not_found`
//!   (`chat.update` of an unknown `ts`). `chat.update` takes only the channel's id, as Slack does, not its `#name`.
//! - An incoming webhook (`POST /services/T.../B.../<secret>`) answers `200 ok`, or `400 no_text` /
//!   `400 invalid_blocks`, or `404 no_service` for an unknown URL.
//! - Faults: the next requests answer `500`, or `429` with `Retry-After`, or answer only after a delay.
//!
//! Not modelled: rate limits by themselves (only injected), `mrkdwn` rendering, files, reactions, edits by people.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::serve::{Faults, Loopback, lock};

/// A message as Slack keeps it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Message {
    /// The channel's id.
    pub channel: String,
    /// Its timestamp (its id).
    pub ts: String,
    /// The thread it replies in.
    pub thread_ts: Option<String>,
    /// Its fallback text.
    pub text: String,
    /// Its Block Kit blocks.
    pub blocks: Value,
    /// How many times `chat.update` changed it.
    pub updates: u32,
}

impl Message {
    /// Every text in the message (its fallback text and every text of its blocks), joined by newlines.
    pub fn all_text(&self) -> String {
        fn walk(v: &Value, out: &mut String) {
            match v {
                Value::Object(map) => {
                    for (k, v) in map {
                        if let (true, Value::String(s)) = (k == "text", v) {
                            out.push_str(s);
                            out.push('\n');
                            continue;
                        }
                        walk(v, out);
                    }
                }
                Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
                _ => {}
            }
        }
        let mut out = format!("{}\n", self.text);
        walk(&self.blocks, &mut out);
        out
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Status(u16),
    RateLimited(u64),
    Delay(Duration),
}

#[derive(Default)]
struct Shared {
    messages: Mutex<Vec<Message>>,
    faults: Faults<Fault>,
    method_failures: Mutex<Vec<(String, u16, u32)>>,
    requests: Mutex<Vec<(String, Value)>>,
    clock: Mutex<u64>,
}

/// The bot token the simulator accepts.
pub const BOT_TOKEN: &str = "xoxb-gantry-test-token";
/// The channel the simulator has: its name and its id.
pub const CHANNEL: (&str, &str) = ("#deploys", "C0GANTRY1");
/// The incoming webhook's path (its last segment is the webhook's secret).
pub const WEBHOOK_PATH: &str = "/services/T0GANTRY/B0GANTRY/s3cr3tw3bh00k";

/// A simulated Slack workspace with one channel, a bot token and an incoming webhook. Stops when dropped.
pub struct SlackSim {
    server: Loopback,
    shared: Arc<Shared>,
}

impl SlackSim {
    /// Starts on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared { clock: Mutex::new(1_764_000_000_000_100), ..Shared::default() });
        let server = Loopback::serve(axum::Router::new().fallback(handle).with_state(Arc::clone(&shared))).await?;
        Ok(Self { server, shared })
    }

    /// The Web API's base URL (`http://127.0.0.1:PORT/api`).
    pub fn api_url(&self) -> String {
        format!("{}/api", self.server.url())
    }

    /// The incoming webhook's URL.
    pub fn webhook_url(&self) -> String {
        format!("{}{WEBHOOK_PATH}", self.server.url())
    }

    /// The next `times` requests answer `status`.
    pub fn fail_next(&self, status: u16, times: u32) {
        self.shared.faults.push(Fault::Status(status), times);
    }

    /// The next `times` calls of the Web API `method` (`chat.update`) answer `status`; other calls are not affected.
    pub fn fail_method(&self, method: &str, status: u16, times: u32) {
        lock(&self.shared.method_failures).push((method.to_owned(), status, times));
    }

    /// The next `times` requests answer `429 Too Many Requests` with `Retry-After: retry_after`.
    pub fn rate_limit_next(&self, retry_after: u64, times: u32) {
        self.shared.faults.push(Fault::RateLimited(retry_after), times);
    }

    /// The next `times` requests answer only after `delay` (a client's timeout fires first).
    pub fn delay_next(&self, delay: Duration, times: u32) {
        self.shared.faults.push(Fault::Delay(delay), times);
    }

    /// The channel's messages in the order they were posted (thread replies included), as last updated.
    pub fn messages(&self) -> Vec<Message> {
        lock(&self.shared.messages).clone()
    }

    /// The replies in the thread of the message `ts`, in order.
    pub fn thread(&self, ts: &str) -> Vec<Message> {
        self.messages().into_iter().filter(|m| m.thread_ts.as_deref() == Some(ts)).collect()
    }

    /// Every request: its path and body (failed ones too).
    pub fn requests(&self) -> Vec<(String, Value)> {
        lock(&self.shared.requests).clone()
    }
}

impl std::fmt::Debug for SlackSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackSim").field("url", &self.server.url()).finish_non_exhaustive()
    }
}

fn api_error(error: &str) -> Response {
    (StatusCode::OK, axum::Json(json!({"ok": false, "error": error}))).into_response()
}

/// Slack's own limits on blocks: at most 50 in a message, a section's text at most 3,000 characters.
fn blocks_problem(blocks: &Value) -> Option<&'static str> {
    let Some(list) = blocks.as_array() else { return if blocks.is_null() { None } else { Some("invalid_blocks") } };
    if list.len() > 50 {
        return Some("invalid_blocks");
    }
    let long = list.iter().any(|b| {
        b.pointer("/text/text").and_then(Value::as_str).is_some_and(|t| t.chars().count() > 3000)
            || b.get("type").and_then(Value::as_str).is_none()
    });
    long.then_some("invalid_blocks")
}

async fn handle(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    lock(&shared.requests).push((uri.path().to_owned(), body.clone()));
    let method_failure = {
        let mut failures = lock(&shared.method_failures);
        let method = uri.path().strip_prefix("/api/").unwrap_or_default();
        failures.iter().position(|(m, _, _)| m == method).map(|i| {
            let status = failures[i].1;
            failures[i].2 -= 1;
            if failures[i].2 == 0 {
                failures.remove(i);
            }
            status
        })
    };
    if let Some(status) = method_failure {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (code, "injected by the test kit").into_response();
    }
    match shared.faults.take() {
        Some(Fault::Status(code)) => {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (code, "injected by the test kit").into_response();
        }
        Some(Fault::RateLimited(after)) => {
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", after.to_string())], "ratelimited")
                .into_response();
        }
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let text = body.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
    let blocks = body.get("blocks").cloned().unwrap_or(Value::Null);
    let path = uri.path();
    if path.starts_with("/services/") {
        if path != WEBHOOK_PATH {
            return (StatusCode::NOT_FOUND, "no_service").into_response();
        }
        if text.is_empty() && blocks.is_null() {
            return (StatusCode::BAD_REQUEST, "no_text").into_response();
        }
        if let Some(problem) = blocks_problem(&blocks) {
            return (StatusCode::BAD_REQUEST, problem).into_response();
        }
        let ts = tick(&shared);
        lock(&shared.messages).push(Message {
            channel: CHANNEL.1.into(),
            ts,
            thread_ts: None,
            text,
            blocks,
            updates: 0,
        });
        return (StatusCode::OK, "ok").into_response();
    }
    let method = path.strip_prefix("/api/").unwrap_or_default();
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => return api_error("not_authed"),
        Some(auth) if auth != format!("Bearer {BOT_TOKEN}") => return api_error("invalid_auth"),
        Some(_) => {}
    }
    let channel = body.get("channel").and_then(Value::as_str).unwrap_or_default();
    match method {
        "chat.postMessage" => {
            if channel != CHANNEL.0 && channel != CHANNEL.1 {
                return api_error("channel_not_found");
            }
            if text.is_empty() && blocks.is_null() {
                return api_error("no_text");
            }
            if let Some(problem) = blocks_problem(&blocks) {
                return api_error(problem);
            }
            let ts = tick(&shared);
            let thread_ts = body.get("thread_ts").and_then(Value::as_str).map(str::to_owned);
            lock(&shared.messages).push(Message {
                channel: CHANNEL.1.into(),
                ts: ts.clone(),
                thread_ts,
                text: text.clone(),
                blocks,
                updates: 0,
            });
            axum::Json(json!({"ok": true, "channel": CHANNEL.1, "ts": ts, "message": {"text": text}})).into_response()
        }
        "chat.update" => {
            if channel != CHANNEL.1 {
                return api_error("channel_not_found");
            }
            let ts = body.get("ts").and_then(Value::as_str).unwrap_or_default();
            if let Some(problem) = blocks_problem(&blocks) {
                return api_error(problem);
            }
            let mut messages = lock(&shared.messages);
            let Some(message) = messages.iter_mut().find(|m| m.ts == ts) else {
                return api_error("message_not_found");
            };
            if !text.is_empty() {
                message.text = text.clone();
            }
            if !blocks.is_null() {
                message.blocks = blocks;
            }
            message.updates += 1;
            axum::Json(json!({"ok": true, "channel": CHANNEL.1, "ts": ts, "text": text})).into_response()
        }
        _ => api_error("unknown_method"),
    }
}

/// Slack's message timestamps: seconds and microseconds, unique and increasing within the channel.
fn tick(shared: &Shared) -> String {
    let mut clock = lock(&shared.clock);
    *clock += 100;
    format!("{}.{:06}", *clock / 1_000_000, *clock % 1_000_000)
}
