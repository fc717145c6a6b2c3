//! Retrying API calls that failed for a passing reason.
//!
//! kube's client already retries 429, 503 and 504 (honouring `Retry-After`). What is left is retried here under the
//! shared HTTP policy ([`gantry_core::http::Policy`]: at most 5 attempts, pauses from 50 ms doubling to 1 s, with
//! jitter): `409 Conflict` (Gantry's writes are patches without a resourceVersion precondition, so the same patch is
//! simply sent again; a server-side apply's field conflict is not retried), `500` and `502`, and lost connections.
//! Anything else, such as a 403 or a 422, fails at once. The timeout of each request is the kube client's own.

use std::future::Future;
use std::time::Duration;

use gantry_core::http::{Attempt, Policy};

use crate::error::KubeError;

/// Makes `call` under the shared HTTP [`Policy`] until it succeeds, fails for good, or has been made 5 times;
/// `action` names it in errors ("patch Deployment `web`").
pub(crate) async fn retrying<T, F, Fut>(action: &str, mut call: F) -> Result<T, KubeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    Policy::new()
        .attempts(5)
        .backoff(Duration::from_millis(50), Duration::from_secs(1))
        .run(action, |_| {
            let call = call();
            async move {
                match call.await {
                    Ok(value) => Attempt::Done(value),
                    Err(e) if passing(&e) => Attempt::Retry(e),
                    Err(e) => Attempt::Failed(e),
                }
            }
        })
        .await
        .map_err(|e| KubeError::api(action, e))
}

/// Whether the same call may succeed if made again. A server-side apply's field conflict (a `409` whose causes are
/// `FieldManagerConflict`) would meet the same conflict again: it is not retried.
pub(crate) fn passing(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) if status.code == 409 => {
            !status.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "FieldManagerConflict"))
        }
        kube::Error::Api(status) => matches!(status.code, 500 | 502),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}
