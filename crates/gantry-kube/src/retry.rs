//! Retrying API calls that failed for a passing reason.
//!
//! kube's client already retries 429, 503 and 504 (honouring `Retry-After`). What is left, and retried here a few
//! times with a doubling pause: `409 Conflict` (Gantry's writes are patches without a resourceVersion precondition,
//! so the same patch is simply sent again; a server-side apply's field conflict is not retried), `500` and `502`,
//! and lost connections. Anything else, such as a 403 or a
//! 422, fails at once.

use std::future::Future;
use std::time::Duration;

use crate::error::KubeError;

/// How many times a call is made at most.
const ATTEMPTS: u32 = 5;
/// The first pause; each later one doubles (50, 100, 200, 400 ms).
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// Makes `call` until it succeeds, fails for good, or has been made [`ATTEMPTS`] times; `action` names it in errors
/// ("patch Deployment `web`").
pub(crate) async fn retrying<T, F, Fut>(action: &str, mut call: F) -> Result<T, KubeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) if attempt < ATTEMPTS && passing(&e) => {
                tracing::debug!(target: "gantry_kube", %action, attempt, error = %e, "retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            Err(e) => return Err(KubeError::api(action, e)),
        }
    }
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
