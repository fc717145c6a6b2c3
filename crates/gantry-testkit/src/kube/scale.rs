//! The `scale` subresource of Deployments and ReplicaSets (`autoscaling/v1` `Scale`), which `kubectl scale` and the
//! HorizontalPodAutoscaler use: read and written as a `Scale`, stored as the object's `spec.replicas`.
//! <https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/deployment-v1/#get-read-scale-of-the-specified-deployment>
//! <https://kubernetes.io/docs/tasks/access-application-cluster/access-cluster-services/> (subresources)

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::api::{Target, apply_patch, apply_update, bad_request, json_response, key, parse_body, status, store_error};
use super::resources::ResourceType;
use super::store::{Store, StoreError};

/// Whether the type has a `scale` subresource.
pub(super) fn has_scale(t: &ResourceType) -> bool {
    t.group == "apps" && matches!(t.kind.as_str(), "Deployment" | "ReplicaSet")
}

/// The object as a `Scale`: its replicas asked and observed, and its selector as a string.
fn to_scale(object: &Value) -> Value {
    let meta = &object["metadata"];
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_string(object.pointer("/spec/selector").unwrap_or(&Value::Null)),
        },
    })
}

/// A label selector as `kubectl get -l` writes it (`metav1.FormatLabelSelector`): `app=web,tier in (a,b),!old`.
pub(super) fn selector_string(selector: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        let mut labels: Vec<(&String, &Value)> = labels.iter().collect();
        labels.sort_by_key(|(k, _)| *k);
        parts.extend(labels.into_iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())));
    }
    for e in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let mut values: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        values.sort_unstable();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

/// GET, PUT or PATCH of `…/{name}/scale`, with the store locked from read to write.
#[allow(clippy::too_many_arguments)]
pub(super) fn handle(
    store: &mut Store,
    t: &ResourceType,
    target: &Target,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
    body: &Bytes,
    dry_run: bool,
    manager: &str,
) -> Response {
    let Some(old) = store.get(&key(target, t, name)).cloned() else {
        return store_error(StoreError::NotFound, t, name);
    };
    let current = to_scale(&old);
    let asked = match *method {
        Method::GET => return json_response(StatusCode::OK, &current),
        Method::PUT => match parse_body(headers, body) {
            Ok(scale) => scale,
            Err(e) => return bad_request(e),
        },
        Method::PATCH => {
            let Ok(patch) = parse_body(headers, body) else { return bad_request("the patch is not JSON".into()) };
            let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let mut scale = current.clone();
            if let Err(r) = apply_patch(&mut scale, &patch, content_type, t, name) {
                return *r;
            }
            // A patch applies to the current version unless it names one.
            if patch.pointer("/metadata/resourceVersion").is_none() {
                scale["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            }
            scale
        }
        _ => {
            return status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{method} is not supported on the scale subresource"),
                None,
            );
        }
    };
    let replicas = match asked.pointer("/spec/replicas") {
        None => 0,
        Some(r) => match r.as_i64() {
            Some(r) if r >= 0 && r <= i64::from(i32::MAX) => r,
            _ => {
                return store_error(
                    StoreError::Invalid(format!(
                        "spec.replicas: Invalid value: {r}: must be greater than or equal to 0"
                    )),
                    t,
                    name,
                );
            }
        },
    };
    let mut next = old.clone();
    next["spec"]["replicas"] = json!(replicas);
    // The Scale's resourceVersion is the object's: a stale one is a conflict, none means "whatever is current".
    let rv = asked.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|v| !v.is_empty());
    next["metadata"]["resourceVersion"] =
        json!(rv.unwrap_or_else(|| current["metadata"]["resourceVersion"].as_str().unwrap_or_default()));
    let response = apply_update(store, t, target, name, &old, next, dry_run, Some(manager));
    if !response.status().is_success() {
        return response;
    }
    let stored = if dry_run {
        let mut would = old;
        would["spec"]["replicas"] = json!(replicas);
        would
    } else {
        store.get(&key(target, t, name)).cloned().unwrap_or(old)
    };
    json_response(StatusCode::OK, &to_scale(&stored))
}
