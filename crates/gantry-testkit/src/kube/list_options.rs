//! The query parameters of a list or watch, checked as the API server checks them before it serves either:
//! `resourceVersionMatch` and `sendInitialEvents` (upstream's `ValidateListOptions`, answered `422 Invalid` for kind
//! `ListOptions`), and a `resourceVersion` newer than the store's (waited for up to 3 seconds, then `504` "Too large
//! resource version", as the watch cache does).
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions>
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/#streaming-lists>

use std::collections::HashMap;
use std::time::Duration;

use axum::response::Response;
use serde_json::json;

use super::admission::{Cause, invalid_status};
use super::{Sim, lock};

const NOT_OLDER_THAN: &str = "NotOlderThan";
const EXACT: &str = "Exact";

/// The rules upstream's `ValidateListOptions` applies, for a watch or a list.
fn errors(params: &HashMap<String, String>, watch: bool) -> Vec<Cause> {
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let (rv, matched, cont) = (get("resourceVersion"), get("resourceVersionMatch"), get("continue"));
    let send_initial = params.contains_key("sendInitialEvents");
    let mut errs = Vec::new();
    if watch {
        if send_initial && matched != NOT_OLDER_THAN {
            errs.push(Cause::forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !matched.is_empty() {
            if !send_initial {
                errs.push(Cause::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if matched != NOT_OLDER_THAN {
                errs.push(Cause::not_supported("resourceVersionMatch", matched, &[NOT_OLDER_THAN]));
            }
            if !cont.is_empty() {
                errs.push(Cause::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
        return errs;
    }
    if !matched.is_empty() {
        if rv.is_empty() {
            errs.push(Cause::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if !cont.is_empty() {
            errs.push(Cause::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if matched != EXACT && matched != NOT_OLDER_THAN {
            errs.push(Cause::not_supported("resourceVersionMatch", matched, &[EXACT, NOT_OLDER_THAN, ""]));
        }
        if matched == EXACT && rv == "0" {
            errs.push(Cause::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
    }
    if send_initial {
        errs.push(Cause::forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"));
    }
    errs
}

/// `Err(422 Invalid)` when the list or watch options break a rule, worded as the API server words it.
pub(super) fn validate(params: &HashMap<String, String>, watch: bool) -> Result<(), Box<Response>> {
    let errs = errors(params, watch);
    if errs.is_empty() {
        return Ok(());
    }
    Err(Box::new(invalid_status("meta.k8s.io", "ListOptions", "", &errs)))
}

/// A `resourceVersion` that is not a number is a `400`, as the storage layer's `ParseResourceVersion` refuses it
/// (for a get, a list and a watch alike).
pub(super) fn check_resource_version(params: &HashMap<String, String>) -> Result<(), Box<Response>> {
    let Some(rv) = params.get("resourceVersion").filter(|v| !v.is_empty()) else { return Ok(()) };
    let why = match rv.parse::<u64>() {
        Ok(_) => return Ok(()),
        Err(e) if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) => "value out of range",
        Err(_) => "invalid syntax",
    };
    Err(Box::new(super::api::bad_request(format!(
        "invalid resource version: resourceVersion: Invalid value: {rv:?}: strconv.ParseUint: parsing {rv:?}: {why}"
    ))))
}

/// How long a request for a resourceVersion the store has not reached waits for it (the watch cache's 3 s).
const FRESHNESS_WAIT: Duration = Duration::from_secs(3);

/// Waits until the store has reached the `resourceVersion` asked for; if it does not within 3 seconds, `Err` with
/// the `504` Status (a list answers it; a streaming list sends it as an ERROR event).
pub(super) async fn wait_fresh(sim: &Sim, params: &HashMap<String, String>) -> Result<(), serde_json::Value> {
    let Some(asked) = params.get("resourceVersion").and_then(|v| v.parse::<u64>().ok()) else { return Ok(()) };
    let deadline = tokio::time::Instant::now() + FRESHNESS_WAIT;
    loop {
        let current = lock(&sim.store).resource_version();
        if asked <= current {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("Too large resource version: {asked}, current: {current}"), "reason": "Timeout",
                "details": {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1},
                "code": 504,
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(pairs: &[(&str, &str)], watch: bool) -> Vec<String> {
        let params = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        errors(&params, watch).into_iter().map(|e| format!("{}: {}", e.field, e.message)).collect()
    }

    #[test]
    fn watch_and_list_rules() {
        assert!(messages(&[("sendInitialEvents", "true"), ("resourceVersionMatch", "NotOlderThan")], true).is_empty());
        assert_eq!(
            messages(&[("sendInitialEvents", "true")], true),
            [
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
            ]
        );
        assert_eq!(
            messages(&[("resourceVersionMatch", "NotOlderThan"), ("resourceVersion", "5")], true),
            [
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
            ]
        );
        assert_eq!(
            messages(&[("resourceVersionMatch", "Exact")], false),
            ["resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"]
        );
        assert_eq!(
            messages(&[("resourceVersionMatch", "Newest"), ("resourceVersion", "3")], false),
            [r#"resourceVersionMatch: Unsupported value: "Newest": supported values: "Exact", "NotOlderThan", """#]
        );
        assert_eq!(
            messages(&[("resourceVersionMatch", "Exact"), ("resourceVersion", "0")], false),
            [r#"resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0""#]
        );
        assert_eq!(
            messages(&[("sendInitialEvents", "true")], false),
            ["sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"]
        );
        assert!(messages(&[("resourceVersion", "3"), ("resourceVersionMatch", "NotOlderThan")], false).is_empty());
    }
}
