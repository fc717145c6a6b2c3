//! Delivery: one HTTP call to Slack with bounded retries (5xx, timeouts, `429` after its `Retry-After`).

use std::time::Duration;

use gantry_core::Secret;
use serde_json::Value;

use crate::error::DeliveryError;

/// Where messages go.
#[derive(Clone)]
pub(crate) enum Transport {
    /// An incoming webhook: its URL is a secret.
    Webhook(Secret),
    /// The Web API with a bot token, posting in `channel`.
    Bot { api: String, token: Secret, channel: String },
}

/// How hard to try.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Patience {
    pub(crate) attempts: u32,
    pub(crate) timeout: Duration,
    pub(crate) backoff: Duration,
    pub(crate) max_retry_after: Duration,
}

pub(crate) fn client() -> reqwest::Client {
    static RUSTLS: std::sync::Once = std::sync::Once::new();
    RUSTLS.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .user_agent(concat!("gantry-slack/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// Sends `body` as `method` (`chat.postMessage`, `chat.update`, or `webhook`), trying at most `attempts` times.
/// Returns the Web API's answer (`Null` for a webhook).
pub(crate) async fn send(
    http: &reqwest::Client,
    transport: &Transport,
    method: &'static str,
    body: &Value,
    patience: Patience,
    attempts: u32,
) -> Result<Value, DeliveryError> {
    let mut pause = patience.backoff;
    let mut last = String::new();
    for attempt in 1..=attempts {
        let request = match transport {
            Transport::Webhook(url) => http.post(url.expose()),
            Transport::Bot { api, token, .. } => {
                let mut bearer =
                    reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                        DeliveryError::Refused { method, error: "the token cannot be sent in a header".into() }
                    })?;
                bearer.set_sensitive(true);
                http.post(format!("{api}/{method}")).header(reqwest::header::AUTHORIZATION, bearer)
            }
        };
        let sent = request
            .timeout(patience.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body.to_string())
            .send()
            .await;
        let mut wait = pause;
        match sent {
            Ok(r) if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                let after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs);
                last = format!("rate limited (429, Retry-After {}s)", after.as_secs());
                if after > patience.max_retry_after {
                    // Waiting that long would leave the run's story behind; give up on this message now.
                    return Err(DeliveryError::Unavailable { method, attempts: attempt, last });
                }
                wait = after;
            }
            Ok(r) if r.status().is_server_error() => last = format!("Slack answered {}", r.status()),
            Ok(r) if r.status().is_success() => {
                let Transport::Bot { .. } = transport else { return Ok(Value::Null) };
                // Not retried when it is not understood: Slack may have posted the message already.
                let answer: Value = r.json().await.unwrap_or(Value::Null);
                return match answer.get("ok").and_then(Value::as_bool) {
                    Some(true) => Ok(answer),
                    Some(false) => {
                        let error = answer.get("error").and_then(Value::as_str).unwrap_or("unknown error").to_owned();
                        Err(DeliveryError::Refused { method, error })
                    }
                    None => Err(DeliveryError::Refused { method, error: "an answer without `ok`".into() }),
                };
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                let error =
                    if text.is_empty() || text.len() > 200 { status.to_string() } else { format!("{status} {text}") };
                return Err(DeliveryError::Refused { method, error });
            }
            Err(e) if e.is_timeout() => last = format!("no answer within {:?}", patience.timeout),
            Err(e) if e.is_connect() => last = "Slack could not be reached".into(),
            // Not the error itself: its text may carry the webhook's URL, which is a secret.
            Err(_) => last = "the request failed".into(),
        }
        if attempt < attempts {
            tokio::time::sleep(wait).await;
            pause *= 2;
        }
    }
    Err(DeliveryError::Unavailable { method, attempts, last })
}
