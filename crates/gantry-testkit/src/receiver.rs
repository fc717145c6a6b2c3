//! A local HTTP receiver standing in for an API that takes JSON (GitHub's deployment statuses, Slack's webhooks): it
//! records every request and answers as told, including outages. Stops when dropped.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::serve::{Faults, Loopback, lock};

/// A request the receiver got.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Recorded {
    /// `POST`, `PATCH`, ...
    pub method: String,
    /// The path and query.
    pub path: String,
    /// Header values by lower-case name.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` if it was not JSON).
    pub body: Value,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Answers a request: a status and a JSON body, or `None` for the default answer.
type Responder = dyn Fn(&Recorded) -> Option<(u16, Value)> + Send + Sync;

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    failures: Faults<u16>,
    delays: Faults<std::time::Duration>,
    reply: Mutex<Value>,
    responder: Mutex<Option<Arc<Responder>>>,
}

/// A recording HTTP server on 127.0.0.1.
pub struct Receiver {
    server: Loopback,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Starts on a free loopback port, answering `201` with `{}` until told otherwise.
    pub async fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared { reply: Mutex::new(serde_json::json!({})), ..Shared::default() });
        let server = Loopback::serve(axum::Router::new().fallback(handle).with_state(Arc::clone(&shared))).await?;
        Ok(Self { server, shared })
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The next `times` requests get `status` (an outage, a rate limit).
    pub fn fail_next(&self, status: u16, times: u32) {
        self.shared.failures.push(status, times);
    }

    /// The next `times` requests are answered only after `delay` (a client's timeout fires first).
    pub fn delay_next(&self, delay: std::time::Duration, times: u32) {
        self.shared.delays.push(delay, times);
    }

    /// Answers requests with `respond` (a status and a JSON body); where it gives `None`, the default answer.
    pub fn respond_with(&self, respond: impl Fn(&Recorded) -> Option<(u16, Value)> + Send + Sync + 'static) {
        *lock(&self.shared.responder) = Some(Arc::new(respond));
    }

    /// The JSON body of successful answers.
    pub fn reply_with(&self, body: Value) {
        *lock(&self.shared.reply) = body;
    }

    /// Every request so far, in order (failed ones too).
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").field("url", &self.url()).finish_non_exhaustive()
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path_and_query().map_or_else(|| uri.path().to_owned(), ToString::to_string),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    lock(&shared.requests).push(recorded.clone());
    if let Some(delay) = shared.delays.take() {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = shared.failures.take() {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (code, [("retry-after", "1")], "{\"message\":\"injected by the test kit\"}").into_response();
    }
    let responder = lock(&shared.responder).clone();
    if let Some((status, body)) = responder.and_then(|respond| respond(&recorded)) {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (code, [("content-type", "application/json")], body.to_string()).into_response();
    }
    let reply = lock(&shared.reply).clone();
    (StatusCode::CREATED, [("content-type", "application/json")], reply.to_string()).into_response()
}
