//! Faults a test injects into the simulated API server: error answers and latency, for the next matching requests.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A fault for the next requests whose method and path match: answer with an error status, or answer late.
/// Faults apply to requests for resources (under `/api/v1` and `/apis/<group>/<version>`), not to discovery, and a
/// faulted request still counts in [`ClusterSim::requests`](super::ClusterSim::requests).
///
/// ```
/// use std::time::Duration;
/// use gantry_testkit::kube::{Fault, Method, StatusCode};
///
/// // The second and third PATCH of Deployment `web` get 409 Conflict; the first goes through.
/// let conflict = Fault::status(StatusCode::CONFLICT).method(Method::PATCH).path("/deployments/web").skip(1).times(2);
/// // Every pod request for the next 50 waits 200 ms before it is served.
/// let slow = Fault::latency(Duration::from_millis(200)).path("/pods").times(50);
/// # let _ = (conflict, slow);
/// ```
#[derive(Clone, Debug)]
pub struct Fault {
    effect: Effect,
    method: Option<Method>,
    path_contains: String,
    skip: u32,
    times: u32,
}

/// What a fault does to a request it matches.
#[derive(Clone, Copy, Debug)]
enum Effect {
    Status(StatusCode),
    Latency(Duration),
}

/// What the server does with a request a fault matched.
pub(crate) enum Injected {
    /// Answer this instead.
    Answer(Response),
    /// Wait this long, then serve the request.
    Delay(Duration),
}

impl Fault {
    /// Answers matching requests with `code` and a `Status` body whose reason fits the code (`Conflict`,
    /// `InternalError`, `TooManyRequests`, ...). Matches every request, once, until narrowed.
    pub fn status(code: StatusCode) -> Self {
        Self::new(Effect::Status(code))
    }

    /// Serves matching requests only after `delay`. Matches every request, once, until narrowed.
    pub fn latency(delay: Duration) -> Self {
        Self::new(Effect::Latency(delay))
    }

    fn new(effect: Effect) -> Self {
        Self { effect, method: None, path_contains: String::new(), skip: 0, times: 1 }
    }

    /// Only requests with this HTTP method (a watch or a list is a `GET`).
    #[must_use]
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Only requests whose path contains this (`"/deployments/web"`, `"/pods"`).
    #[must_use]
    pub fn path(mut self, contains: impl Into<String>) -> Self {
        self.path_contains = contains.into();
        self
    }

    /// Lets the first `n` matching requests through untouched.
    #[must_use]
    pub fn skip(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    /// Affects this many matching requests (after the skipped ones), then no more.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.times > 0 && self.method.as_ref().is_none_or(|m| m == method) && path.contains(&self.path_contains)
    }
}

/// Applies the first fault that matches the request, counting it down.
pub(crate) fn take(faults: &mut [Fault], method: &Method, path: &str) -> Option<Injected> {
    let fault = faults.iter_mut().find(|f| f.matches(method, path))?;
    if fault.skip > 0 {
        fault.skip -= 1;
        return None;
    }
    fault.times -= 1;
    Some(match fault.effect {
        Effect::Latency(delay) => Injected::Delay(delay),
        Effect::Status(code) => Injected::Answer(answer(code)),
    })
}

fn answer(code: StatusCode) -> Response {
    // The reasons the API server gives for these codes (metav1.StatusReason).
    let (reason, message) = match code.as_u16() {
        409 => {
            ("Conflict", "the object has been modified; please apply your changes to the latest version and try again")
        }
        429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
        500 => ("InternalError", "an error on the server has prevented the request from succeeding"),
        503 => ("ServiceUnavailable", "the server is currently unable to handle the request"),
        504 => ("Timeout", "the server was unable to return a response in the time allotted"),
        404 => ("NotFound", "the server could not find the requested resource"),
        403 => ("Forbidden", "forbidden"),
        401 => ("Unauthorized", "Unauthorized"),
        _ => ("", "injected by the test kit"),
    };
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{message} (injected by the test kit)"), "reason": reason, "code": code.as_u16()
    });
    let mut response =
        (code, [(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if code == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_then_counts_down_then_stops() {
        let mut faults = vec![Fault::status(StatusCode::CONFLICT).method(Method::PATCH).path("/web").skip(1).times(2)];
        let hit = |f: &mut Vec<Fault>, m: Method, p: &str| take(f, &m, p).is_some();
        assert!(!hit(&mut faults, Method::GET, "/apis/apps/v1/deployments/web"), "other method");
        assert!(!hit(&mut faults, Method::PATCH, "/api/v1/pods/x"), "other path");
        assert!(!hit(&mut faults, Method::PATCH, "/deployments/web"), "skipped");
        assert!(hit(&mut faults, Method::PATCH, "/deployments/web"));
        assert!(hit(&mut faults, Method::PATCH, "/deployments/web"));
        assert!(!hit(&mut faults, Method::PATCH, "/deployments/web"), "used up");
    }
}
