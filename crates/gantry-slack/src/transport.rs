//! Delivery: one HTTP call to Slack under the shared HTTP policy (5xx, timeouts, `429` after its `Retry-After`).

use std::time::{Duration, SystemTime};

use gantry_core::Secret;
use gantry_core::http::{Attempt, Policy, retry_after};
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

/// Sends `body` as `method` (`chat.postMessage`, `chat.update`, or `webhook`) under `policy`. Returns the Web API's
/// answer (`Null` for a webhook).
pub(crate) async fn send(
    http: &reqwest::Client,
    transport: &Transport,
    method: &'static str,
    body: &Value,
    policy: Policy,
) -> Result<Value, DeliveryError> {
    let bearer = match transport {
        Transport::Webhook(_) => None,
        Transport::Bot { token, .. } => {
            let mut bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| DeliveryError::Refused { method, error: "the token cannot be sent in a header".into() })?;
            bearer.set_sensitive(true);
            Some(bearer)
        }
    };
    policy
        .run(method, |attempt| {
            let request = match transport {
                Transport::Webhook(url) => http.post(url.expose()),
                Transport::Bot { api, .. } => {
                    let request = http.post(format!("{api}/{method}"));
                    match &bearer {
                        Some(bearer) => request.header(reqwest::header::AUTHORIZATION, bearer.clone()),
                        None => request,
                    }
                }
            };
            let sent = request
                .timeout(policy.attempt_timeout())
                .header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8")
                .body(body.to_string())
                .send();
            let unavailable = move |last: String| DeliveryError::Unavailable { method, attempts: attempt, last };
            async move {
                match sent.await {
                    Ok(r) if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                        let after = r
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| retry_after(v, SystemTime::now()))
                            .unwrap_or(Duration::from_secs(1));
                        // Past the policy's longest wait the message is given up at once: waiting that long would
                        // leave the run's story behind.
                        Attempt::RetryAfter(
                            unavailable(format!("rate limited (429, Retry-After {}s)", after.as_secs())),
                            after,
                        )
                    }
                    Ok(r) if r.status().is_server_error() => {
                        Attempt::Retry(unavailable(format!("Slack answered {}", r.status())))
                    }
                    Ok(r) if r.status().is_success() => {
                        let Transport::Bot { .. } = transport else { return Attempt::Done(Value::Null) };
                        // Not retried when it is not understood: Slack may have posted the message already.
                        let answer: Value = r.json().await.unwrap_or(Value::Null);
                        match answer.get("ok").and_then(Value::as_bool) {
                            Some(true) => Attempt::Done(answer),
                            Some(false) => {
                                let error =
                                    answer.get("error").and_then(Value::as_str).unwrap_or("unknown error").to_owned();
                                Attempt::Failed(DeliveryError::Refused { method, error })
                            }
                            None => Attempt::Failed(DeliveryError::Refused {
                                method,
                                error: "an answer without `ok`".into(),
                            }),
                        }
                    }
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        let error = if text.is_empty() || text.len() > 200 {
                            status.to_string()
                        } else {
                            format!("{status} {text}")
                        };
                        Attempt::Failed(DeliveryError::Refused { method, error })
                    }
                    Err(e) if e.is_timeout() => {
                        Attempt::Retry(unavailable(format!("no answer within {:?}", policy.attempt_timeout())))
                    }
                    Err(e) if e.is_connect() => Attempt::Retry(unavailable("Slack could not be reached".into())),
                    // Not the error itself: its text may carry the webhook's URL, which is a secret.
                    Err(_) => Attempt::Retry(unavailable("the request failed".into())),
                }
            }
        })
        .await
}
