//! Approvals from Slack: the endpoint Slack posts a button click to (its "Interactivity Request URL"), verified with
//! the app's signing secret, deciding a gate of [`Approvals`].
//!
//! A request is taken only if its `X-Slack-Signature` is `v0=` + HMAC-SHA256 of `v0:<timestamp>:<body>` under the
//! signing secret, its `X-Slack-Request-Timestamp` is within five minutes of now, and it was not seen before (a
//! replay of a signed request within those five minutes is refused). Then the host's authorizer decides whether the
//! Slack user may decide that gate; without one, every click is refused (the gates stay read-only).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gantry_core::{Approvals, Decision, PendingApproval, Secret};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The `action_id` of the Approve button.
pub const APPROVE_ACTION: &str = "gantry.approve";
/// The `action_id` of the Reject button.
pub const REJECT_ACTION: &str = "gantry.reject";
/// How old a signed request may be.
const MAX_AGE: Duration = Duration::from_secs(300);

/// Who clicked, as Slack says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlackUser {
    /// The user's id (`U024BE7LH`).
    pub id: String,
    /// The user's name (`ana`), if Slack sent it.
    pub name: Option<String>,
    /// The workspace (team) id, if Slack sent it.
    pub team: Option<String>,
}

type Authorizer = dyn Fn(&SlackUser, &PendingApproval) -> bool + Send + Sync;

/// The interactivity endpoint: an axum [`Router`](axum::Router) to mount where Slack posts clicks.
///
/// ```
/// use gantry_core::{Approvals, Secret};
/// use gantry_slack::Interactions;
/// let approvals = Approvals::new();
/// let slack = Interactions::new(Secret::new("8f742231b10e8888abcd99yyyzzz85a5"), &approvals)
///     .authorize(|user, _gate| ["U024BE7LH"].contains(&user.id.as_str()));
/// let app: axum::Router = axum::Router::new().nest("/slack/interactions", slack.router());
/// # let _ = app;
/// ```
#[derive(Clone)]
pub struct Interactions {
    signing_secret: Secret,
    approvals: Approvals,
    authorizer: Option<Arc<Authorizer>>,
    seen: Arc<Mutex<VecDeque<(SystemTime, String)>>>,
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
}

impl std::fmt::Debug for Interactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interactions")
            .field("signing_secret", &self.signing_secret)
            .field("approvals", &self.approvals)
            .field("authorizer", &self.authorizer.is_some())
            .finish()
    }
}

/// Why a click was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The signature or timestamp header is missing, or not a signature.
    #[error("the request is not signed")]
    Unsigned,
    /// The timestamp is more than five minutes from now.
    #[error("the request is too old (or from the future)")]
    Stale,
    /// The signature does not match.
    #[error("the signature does not match")]
    BadSignature,
    /// The same signed request came before.
    #[error("the request was already taken (a replay)")]
    Replayed,
    /// No authorizer, or it refused the user.
    #[error("{0} may not decide this gate")]
    NotAllowed(String),
    /// The payload is not a button click of Gantry's.
    #[error("the payload is not a Gantry button click: {0}")]
    Payload(String),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unsigned | Self::Stale | Self::BadSignature => StatusCode::UNAUTHORIZED,
            Self::Replayed => StatusCode::CONFLICT,
            Self::NotAllowed(_) => StatusCode::FORBIDDEN,
            Self::Payload(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl Interactions {
    /// Clicks signed with `signing_secret` (the Slack app's "Signing Secret") decide gates of `approvals`.
    pub fn new(signing_secret: Secret, approvals: &Approvals) -> Self {
        Self {
            signing_secret,
            approvals: approvals.clone(),
            authorizer: None,
            seen: Arc::default(),
            clock: Arc::new(SystemTime::now),
        }
    }

    /// Who may decide which gate. Without an authorizer every click is refused.
    #[must_use]
    pub fn authorize(mut self, may: impl Fn(&SlackUser, &PendingApproval) -> bool + Send + Sync + 'static) -> Self {
        self.authorizer = Some(Arc::new(may));
        self
    }

    /// Another clock (for tests).
    #[must_use]
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The endpoint: `POST /` takes Slack's `application/x-www-form-urlencoded` interaction payloads.
    pub fn router(self) -> axum::Router {
        axum::Router::new().route(
            "/",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let this = self.clone();
                async move { this.handle(&headers, &body) }
            }),
        )
    }

    fn handle(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        match self.take(headers, body) {
            Ok(text) => (StatusCode::OK, text).into_response(),
            Err(refusal) => {
                tracing::warn!(target: "gantry_slack", %refusal, "refused a Slack interaction");
                (refusal.status(), refusal.to_string()).into_response()
            }
        }
    }

    /// Verifies a request and decides its gate; what to answer Slack.
    fn take(&self, headers: &HeaderMap, body: &[u8]) -> Result<String, Refusal> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let timestamp = header("x-slack-request-timestamp").ok_or(Refusal::Unsigned)?;
        let signature = header("x-slack-signature").ok_or(Refusal::Unsigned)?;
        self.verify(timestamp, body, signature)?;
        let (user, action, gate) = parse(body)?;
        let pending = self.approvals.pending().into_iter().find(|p| p.id == gate);
        let Some(pending) = pending else {
            return Ok(format!("gate {gate} is not waiting any more"));
        };
        let who = user.name.clone().unwrap_or_else(|| user.id.clone());
        let allowed = self.authorizer.as_ref().is_some_and(|may| may(&user, &pending));
        if !allowed {
            return Err(Refusal::NotAllowed(who));
        }
        let decision =
            if action == APPROVE_ACTION { Decision::approve(&who, "slack") } else { Decision::reject(&who, "slack") };
        let verb = if decision.approved { "approved" } else { "rejected" };
        match self.approvals.decide(&gate, decision) {
            Ok(()) => Ok(format!("{verb} by {who}")),
            Err(e) => Ok(e.to_string()),
        }
    }

    /// Checks a request's signature and age, and that it was not taken before.
    pub fn verify(&self, timestamp: &str, body: &[u8], signature: &str) -> Result<(), Refusal> {
        let seconds: u64 = timestamp.parse().map_err(|_| Refusal::Unsigned)?;
        let sent = UNIX_EPOCH + Duration::from_secs(seconds);
        let now = (self.clock)();
        let age = now.duration_since(sent).unwrap_or_else(|e| e.duration());
        if age > MAX_AGE {
            return Err(Refusal::Stale);
        }
        let hex = signature.strip_prefix("v0=").ok_or(Refusal::Unsigned)?;
        let expected = decode_hex(hex).ok_or(Refusal::BadSignature)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.signing_secret.expose().as_bytes())
            .map_err(|_| Refusal::BadSignature)?;
        mac.update(format!("v0:{timestamp}:").as_bytes());
        mac.update(body);
        mac.verify_slice(&expected).map_err(|_| Refusal::BadSignature)?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        while seen.front().is_some_and(|(at, _)| now.duration_since(*at).unwrap_or_default() > MAX_AGE * 2) {
            seen.pop_front();
        }
        if seen.iter().any(|(_, s)| s == signature) {
            return Err(Refusal::Replayed);
        }
        seen.push_back((now, signature.to_owned()));
        Ok(())
    }
}

/// `payload=<json>` of a `block_actions` interaction: the user, the action id and the gate id (the button's value).
fn parse(body: &[u8]) -> Result<(SlackUser, String, String), Refusal> {
    let bad = |why: &str| Refusal::Payload(why.to_owned());
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| bad("not a form"))?;
    let payload = form.into_iter().find(|(k, _)| k == "payload").ok_or_else(|| bad("no payload"))?.1;
    let payload: serde_json::Value = serde_json::from_str(&payload).map_err(|_| bad("the payload is not JSON"))?;
    if payload["type"] != "block_actions" {
        return Err(bad("not a block_actions interaction"));
    }
    let user = &payload["user"];
    let user = SlackUser {
        id: user["id"].as_str().ok_or_else(|| bad("no user id"))?.to_owned(),
        name: user["username"].as_str().or_else(|| user["name"].as_str()).map(str::to_owned),
        team: payload["team"]["id"].as_str().map(str::to_owned),
    };
    let action = payload["actions"].as_array().and_then(|a| a.first()).ok_or_else(|| bad("no action"))?;
    let id = action["action_id"].as_str().ok_or_else(|| bad("no action id"))?;
    if id != APPROVE_ACTION && id != REJECT_ACTION {
        return Err(bad("not a Gantry action"));
    }
    let gate = action["value"].as_str().ok_or_else(|| bad("no gate in the button's value"))?;
    Ok((user, id.to_owned(), gate.to_owned()))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// Slack Block Kit buttons that decide `gate` through this endpoint: put them in a message's `blocks`.
pub fn approval_buttons(gate: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": APPROVE_ACTION, "value": gate, "style": "primary",
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": REJECT_ACTION, "value": gate, "style": "danger",
             "text": {"type": "plain_text", "text": "Reject"}}
        ]
    })
}

/// The headers Slack would send with `body` signed by `signing_secret` at `timestamp` (seconds since the epoch):
/// for tests and for hosts that forward clicks.
pub fn sign(signing_secret: &Secret, timestamp: u64, body: &[u8]) -> (String, String) {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(signing_secret.expose().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    (timestamp.to_string(), format!("v0={hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slacks_documented_example_verifies() {
        // From Slack's "Verifying requests from Slack" page.
        let secret = Secret::new("8f742231b10e8888abcd99yyyzzz85a5");
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let (_, signature) = sign(&secret, 1_531_420_618, body);
        assert_eq!(signature, "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503");
        let approvals = Approvals::new();
        let at = UNIX_EPOCH + Duration::from_secs(1_531_420_618 + 10);
        let slack = Interactions::new(secret, &approvals).clock(move || at);
        assert_eq!(slack.verify("1531420618", body, &signature), Ok(()));
        assert_eq!(slack.verify("1531420618", body, &signature), Err(Refusal::Replayed));
        assert_eq!(slack.verify("1531420000", body, &signature), Err(Refusal::Stale));
        let mut tampered = body.to_vec();
        tampered[6] ^= 1;
        let fresh = Interactions::new(Secret::new("8f742231b10e8888abcd99yyyzzz85a5"), &approvals).clock(move || at);
        assert_eq!(fresh.verify("1531420618", &tampered, &signature), Err(Refusal::BadSignature));
    }
}
