//! The HTTP face of the simulated API server: paths, verbs, discovery, watch streams, `Status` errors.
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/>

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use super::fault::Injected;
use super::resources::ResourceType;
use super::selector::Selector;
use super::store::{Change, Key, Store, StoreError, metadata, now_rfc3339};
use super::{Sim, lock};
use super::{admission, deletion, field_validation, list_options, openapi, ownership, patch, protobuf, scale, table};

/// Namespaces the API server will not delete.
const SYSTEM_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

/// The version the simulator reports; kubectl's dispatcher picks a client from it.
pub(crate) const SERVER_MINOR: &str = "33";

/// What a request is about, from its path.
#[derive(Debug)]
pub(super) struct Target {
    kind: usize,
    pub(super) namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

pub(super) fn json_response(code: StatusCode, body: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// A `metav1.Status` failure body.
pub(super) fn status(
    code: StatusCode,
    reason: &str,
    message: String,
    details: Option<(&ResourceType, &str)>,
) -> Response {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    if let Some((t, name)) = details {
        body["details"] = json!({"name": name, "group": t.group, "kind": t.plural});
    }
    json_response(code, &body)
}

fn not_found_path(path: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("the server could not find the requested resource ({path})"),
        None,
    )
}

pub(super) fn store_error(e: StoreError, t: &ResourceType, name: &str) -> Response {
    let what = if t.group.is_empty() { t.plural.clone() } else { format!("{}.{}", t.plural, t.group) };
    match e {
        StoreError::NotFound => {
            status(StatusCode::NOT_FOUND, "NotFound", format!("{what} \"{name}\" not found"), Some((t, name)))
        }
        StoreError::AlreadyExists => {
            status(StatusCode::CONFLICT, "AlreadyExists", format!("{what} \"{name}\" already exists"), Some((t, name)))
        }
        StoreError::Conflict => status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {what} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some((t, name)),
        ),
        StoreError::Invalid(msg) => status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{} \"{name}\" is invalid: {msg}", t.kind),
            Some((t, name)),
        ),
    }
}

pub(super) fn bad_request(message: String) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

/// The handler for every path.
pub(crate) async fn handle(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Content negotiation (<https://kubernetes.io/docs/reference/using-api/api-concepts/#alternate-representations-of-resources>):
    // a client that prefers protobuf gets it for the built-in types; watches and everything else stay JSON.
    let protobuf = prefers_protobuf(&headers) && !is_true(params.get("watch"));
    let table = table::wanted(&headers).filter(|_| method == Method::GET);
    let response = handle_json(&sim, &method, &uri, &params, &headers, &body).await;
    if let Some(version) = table {
        let include = params.get("includeObject").map_or("Metadata", String::as_str);
        return to_table(response, version, include, is_true(params.get("watch"))).await;
    }
    if protobuf { to_protobuf(response).await } else { response }
}

/// A JSON answer (an object, a list, or a watch's events) as `Table`s, for a client that asked for them; errors as
/// they are.
async fn to_table(response: Response, version: &'static str, include: &str, watching: bool) -> Response {
    let is_json = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v == "application/json");
    if !is_json || !response.status().is_success() {
        return response;
    }
    let include = include.to_owned();
    if watching {
        let (parts, body) = response.into_parts();
        // Each chunk of a watch is one event, one JSON line.
        let events = body.into_data_stream().map(move |chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            let shown = match serde_json::from_slice::<Value>(&chunk) {
                Ok(event) => Bytes::from(format!("{}\n", table::event(event, version, &include))),
                Err(_) => chunk,
            };
            Ok::<_, std::io::Error>(shown)
        });
        return Response::from_parts(parts, Body::from_stream(events));
    }
    reencode(response, |v| Some((table::from(v, version, &include)?.to_string().into_bytes(), "application/json")))
        .await
}

/// A buffered JSON answer re-encoded by `encode` (the body and its content type), or unchanged where `encode` has
/// nothing for it.
async fn reencode(response: Response, encode: impl FnOnce(&Value) -> Option<(Vec<u8>, &'static str)>) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match serde_json::from_slice::<Value>(&bytes).ok().as_ref().and_then(encode) {
        Some((encoded, content_type)) => {
            parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(encoded))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// Whether the first media type of `Accept` that the server can write is protobuf.
fn prefers_protobuf(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept
        .split(',')
        .map(str::trim)
        .find(|m| protobuf::is_protobuf(m) || m.starts_with("application/json") || m.starts_with("*/*"))
        .is_some_and(protobuf::is_protobuf)
}

/// A JSON response of a built-in type re-encoded as protobuf; any other response as it is.
async fn to_protobuf(response: Response) -> Response {
    let is_json = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v == "application/json");
    if !is_json {
        return response;
    }
    reencode(response, |v| Some((protobuf::encode(v)?, protobuf::MEDIA_TYPE))).await
}

async fn handle_json(
    sim: &Arc<Sim>,
    method: &Method,
    uri: &Uri,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => json_response(StatusCode::OK, &version()),
        ["api"] => json_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": sim.addr.to_string()}]}),
        ),
        ["apis"] => json_response(StatusCode::OK, &group_list(sim)),
        ["api", "v1", rest @ ..] => api(sim, path, "", "v1", rest, method, params, headers, body).await,
        ["apis", group, version, rest @ ..] => {
            api(sim, path, group, version, rest, method, params, headers, body).await
        }
        ["healthz" | "livez" | "readyz"] => (StatusCode::OK, "ok").into_response(),
        ["openapi", "v2"] => {
            let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
            if accept.contains(openapi::V2_PROTOBUF_ACCEPT) || accept.contains(openapi::V2_PROTOBUF) {
                let body = openapi::v2_protobuf(sim, &server_version());
                (StatusCode::OK, [(header::CONTENT_TYPE, openapi::V2_PROTOBUF)], body).into_response()
            } else {
                json_response(StatusCode::OK, &openapi::v2_json(sim, &server_version()))
            }
        }
        ["openapi", "v3"] => json_response(StatusCode::OK, &openapi::v3_index(sim)),
        ["openapi", "v3", "api", "v1"] => openapi_v3(sim, "", "v1"),
        ["openapi", "v3", "apis", group, version] => openapi_v3(sim, group, version),
        _ => not_found_path(path),
    }
}

fn openapi_v3(sim: &Sim, group: &str, version: &str) -> Response {
    match openapi::v3_group_version(sim, group, version, &server_version()) {
        Some(document) => json_response(StatusCode::OK, &document),
        None => not_found_path(&format!("/openapi/v3/apis/{group}/{version}")),
    }
}

fn server_version() -> String {
    format!("v1.{SERVER_MINOR}.0")
}

fn version() -> Value {
    json!({
        "major": "1", "minor": SERVER_MINOR, "gitVersion": format!("v1.{SERVER_MINOR}.0-gantry-testkit"),
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "n/a", "compiler": "gc", "platform": "linux/amd64",
    })
}

fn group_list(sim: &Sim) -> Value {
    let types = sim.types.read().unwrap_or_else(|e| e.into_inner());
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, versions)) if !versions.contains(&t.version) => versions.push(t.version.clone()),
            Some(_) => {}
            None => groups.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(name, versions)| {
            let vs: Vec<Value> =
                versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
            json!({"name": name, "versions": vs, "preferredVersion": vs[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(sim: &Sim, group: &str, version: &str) -> Option<Value> {
    let types = sim.types.read().unwrap_or_else(|e| e.into_inner());
    let verbs = json!(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]);
    let mut resources = Vec::new();
    for t in types.iter().filter(|t| t.group == group && t.version == version) {
        let verbs = if is_review(t) { json!(["create"]) } else { verbs.clone() };
        resources.push(json!({
            "name": t.plural, "singularName": t.singular(), "namespaced": t.namespaced, "kind": t.kind,
            "verbs": verbs, "shortNames": t.short_names, "categories": t.categories,
        }));
        if t.status {
            resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
        if t.kind == "Pod" {
            resources.push(
                json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}),
            );
        }
        if scale::has_scale(t) {
            resources.push(json!({"name": format!("{}/scale", t.plural), "singularName": "", "namespaced": true, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}

/// Finds the resource type and object a path names, below `/api/v1` or `/apis/{group}/{version}`.
fn target(sim: &Sim, group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let types = sim.types.read().unwrap_or_else(|e| e.into_inner());
    let find = |plural: &str| types.iter().position(|t| t.group == group && t.version == version && t.plural == plural);
    // What follows a collection: nothing, an object's name, or a name and a subresource.
    let name_and_sub = |tail: &[&str]| -> Option<(Option<String>, Option<String>)> {
        match tail {
            [] => Some((None, None)),
            [name] => Some((Some((*name).to_owned()), None)),
            [name, sub] => Some((Some((*name).to_owned()), Some((*sub).to_owned()))),
            _ => None,
        }
    };
    match rest {
        // The namespace object itself and its subresources.
        ["namespaces", name] => {
            Some(Target { kind: find("namespaces")?, namespace: None, name: Some((*name).into()), sub: None })
        }
        ["namespaces", name, sub @ ("status" | "finalize")] if group.is_empty() => Some(Target {
            kind: find("namespaces")?,
            namespace: None,
            name: Some((*name).into()),
            sub: Some((*sub).into()),
        }),
        ["namespaces", ns, plural, tail @ ..] => {
            let (name, sub) = name_and_sub(tail)?;
            Some(Target { kind: find(plural)?, namespace: Some((*ns).into()), name, sub })
        }
        [plural, tail @ ..] => {
            let (name, sub) = name_and_sub(tail)?;
            Some(Target { kind: find(plural)?, namespace: None, name, sub })
        }
        [] => None,
    }
}

#[allow(clippy::too_many_arguments)]
async fn api(
    sim: &Arc<Sim>,
    path: &str,
    group: &str,
    version: &str,
    rest: &[&str],
    method: &Method,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    if rest.is_empty() {
        return match resource_list(sim, group, version) {
            Some(list) => json_response(StatusCode::OK, &list),
            None => not_found_path(&format!("/apis/{group}/{version}")),
        };
    }
    let Some(target) = target(sim, group, version, rest) else {
        return not_found_path(&rest.join("/"));
    };
    let t = sim.types.read().unwrap_or_else(|e| e.into_inner())[target.kind].clone();
    let verb = match (method, &target.name) {
        (&Method::GET, None) if is_true(params.get("watch")) => "WATCH",
        (&Method::GET, None) => "LIST",
        (m, _) => m.as_str(),
    };
    let what = match &target.sub {
        Some(sub) => format!("{verb} {}/{sub}", t.plural),
        None => format!("{verb} {}", t.plural),
    };
    sim.count(&what);
    // Faults after counting: a request answered with an injected error was still received.
    match sim.take_fault(method, path) {
        Some(Injected::Answer(response)) => return response,
        Some(Injected::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    if target.namespace.is_some() && !t.namespaced {
        return not_found_path(&rest.join("/"));
    }
    let dry_run = params.get("dryRun").is_some_and(|v| v == "All");
    // Who writes: `fieldManager`, else the user agent up to its first `/`, as the API server derives it.
    let manager = params.get("fieldManager").filter(|m| !m.is_empty()).cloned().unwrap_or_else(|| {
        let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
        agent.split('/').next().unwrap_or("unknown").to_owned()
    });
    if is_review(&t) {
        return review(&t, method, headers, body);
    }
    if target.sub.as_deref() == Some("scale") && scale::has_scale(&t) {
        let Some(name) = target.name.clone() else { return not_found_path(&rest.join("/")) };
        let object = Target { sub: None, ..target };
        let mut store = lock(&sim.store);
        return scale::handle(&mut store, &t, &object, &name, method, headers, body, dry_run, &manager);
    }
    if method == Method::GET
        && let Err(r) = list_options::check_resource_version(params)
    {
        return *r;
    }
    if method == Method::GET && target.name.is_none() {
        if let Err(r) = list_options::validate(params, is_true(params.get("watch"))) {
            return *r;
        }
        // A list, or a streaming list, waits for a version the store has not reached; a plain watch from it opens
        // and sends what comes after it.
        let watching = is_true(params.get("watch"));
        if (!watching || is_true(params.get("sendInitialEvents")))
            && let Err(too_large) = list_options::wait_fresh(sim, params).await
        {
            return if watching {
                stream_response(futures::stream::iter(vec![json!({"type": "ERROR", "object": too_large})]).boxed())
            } else {
                json_response(StatusCode::GATEWAY_TIMEOUT, &too_large)
            };
        }
    }
    // The write's options (`dryRun`, `fieldValidation`), checked as `ValidateCreateOptions` and its siblings do.
    let options = match (method, &target.name) {
        (&Method::POST, _) => "CreateOptions",
        (&Method::PUT, _) => "UpdateOptions",
        (&Method::PATCH, _) => "PatchOptions",
        (&Method::DELETE, _) => "DeleteOptions",
        _ => "",
    };
    let directive = match options {
        "" => field_validation::Directive::Warn,
        options => match field_validation::directive(params, options) {
            Ok(directive) => directive,
            Err(refused) => return *refused,
        },
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if protobuf::is_protobuf(content_type) && !protobuf::supports(&t.api_version(), &t.kind) {
        // Custom resources are JSON (and YAML) only.
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"
            ),
            None,
        );
    }
    match (method.clone(), &target.name) {
        (Method::GET, None) if is_true(params.get("watch")) => watch(sim, &t, &target, params),
        (Method::GET, None) => list(sim, &t, &target, params),
        (Method::GET, Some(name)) => get(sim, &t, &target, name, params),
        (Method::POST, None) => match parse_body(headers, body) {
            Ok(mut object) => {
                let unknown = match field_validation::prune(&t, &mut object) {
                    Ok(unknown) => unknown,
                    Err(wrong_type) => return bad_request(wrong_type),
                };
                match field_validation::judge(directive, &unknown, false) {
                    Ok(warnings) => {
                        field_validation::with_warnings(create(sim, &t, &target, object, dry_run, &manager), &warnings)
                    }
                    Err(refused) => *refused,
                }
            }
            Err(e) => bad_request(e),
        },
        (Method::PUT, Some(name)) => match parse_body(headers, body) {
            Ok(mut object) => {
                let unknown = match field_validation::prune(&t, &mut object) {
                    Ok(unknown) => unknown,
                    Err(wrong_type) => return bad_request(wrong_type),
                };
                match field_validation::judge(directive, &unknown, false) {
                    Ok(warnings) => field_validation::with_warnings(
                        replace(sim, &t, &target, name, object, dry_run, &manager),
                        &warnings,
                    ),
                    Err(refused) => *refused,
                }
            }
            Err(e) => bad_request(e),
        },
        (Method::PATCH, Some(name)) => match parse_body(headers, body) {
            Ok(p) => patch_object(sim, &t, &target, name, p, headers, params, dry_run, &manager, directive),
            Err(e) => bad_request(e),
        },
        (Method::DELETE, Some(name)) => delete(sim, &t, &target, name, params, body, dry_run),
        (Method::DELETE, None) => delete_collection(sim, &t, &target, params),
        _ => {
            status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("{method} is not supported here"), None)
        }
    }
}

/// Whether the type is a review that is answered, never stored (`SelfSubjectAccessReview`).
fn is_review(t: &ResourceType) -> bool {
    t.group == "authorization.k8s.io" && t.kind == "SelfSubjectAccessReview"
}

/// `kubectl auth can-i`: the simulator authorizes every request, and says so.
/// <https://kubernetes.io/docs/reference/access-authn-authz/authorization/#checking-api-access>
fn review(t: &ResourceType, method: &Method, headers: &HeaderMap, body: &Bytes) -> Response {
    if *method != Method::POST {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported on {}", t.plural),
            None,
        );
    }
    let mut review = match parse_body(headers, body) {
        Ok(review) => review,
        Err(e) => return bad_request(e),
    };
    if !review
        .get("spec")
        .is_some_and(|s| s.get("resourceAttributes").is_some() || s.get("nonResourceAttributes").is_some())
    {
        let causes = [
            json!({"reason": "FieldValueRequired", "message": "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified", "field": "spec.resourceAttributes"}),
        ];
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified", "reason": "Invalid", "details": {"group": t.group, "kind": t.kind, "causes": causes}, "code": 422}),
        );
    }
    review["status"] = json!({"allowed": true, "reason": "the simulated cluster authorizes every request"});
    json_response(StatusCode::CREATED, &typed(review, t))
}

fn is_true(v: Option<&String>) -> bool {
    v.is_some_and(|v| v == "true" || v == "1")
}

/// JSON, YAML (`application/yaml`, `application/apply-patch+yaml`), or protobuf for the built-in types (kubectl 1.32+'s
/// generator commands and Helm 4's release storage send it).
pub(super) fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, String> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if protobuf::is_protobuf(content_type) {
        return protobuf::decode(body);
    }
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            let yaml =
                headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|c| c.contains("yaml"));
            if yaml {
                let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
                serde_saphyr::from_str(text).map_err(|e| format!("error decoding YAML: {e}"))
            } else {
                Err(format!("error decoding JSON: {json_err}"))
            }
        }
    }
}

pub(super) fn key(target: &Target, t: &ResourceType, name: &str) -> Key {
    Key {
        kind: target.kind,
        namespace: if t.namespaced { target.namespace.clone().unwrap_or_default() } else { String::new() },
        name: name.to_owned(),
    }
}

/// Adds apiVersion and kind, as the API server does in responses.
fn typed(mut object: Value, t: &ResourceType) -> Value {
    object["apiVersion"] = json!(t.api_version());
    object["kind"] = json!(t.kind);
    object
}

/// The request's label and field selectors, checked as the API server checks them: label keys and values must be
/// valid, and a field selector may name only the fields the kind supports, with `=`, `==` or `!=` (`400`).
fn selectors(params: &HashMap<String, String>, t: &ResourceType) -> Result<(Selector, Selector), Box<Response>> {
    let refuse = |e| Box::new(bad_request(e));
    let labels = Selector::parse(params.get("labelSelector").map_or("", String::as_str)).map_err(refuse)?;
    labels.check_labels().map_err(refuse)?;
    let fields = Selector::parse(params.get("fieldSelector").map_or("", String::as_str)).map_err(refuse)?;
    fields.check_fields(&t.kind, t.group.is_empty() || matches!(t.group.as_str(), "apps" | "batch")).map_err(refuse)?;
    Ok((labels, fields))
}

fn get(sim: &Arc<Sim>, t: &ResourceType, target: &Target, name: &str, params: &HashMap<String, String>) -> Response {
    let store = lock(&sim.store);
    match (store.get(&key(target, t, name)), target.sub.as_deref()) {
        (Some(o), None | Some("status")) => json_response(StatusCode::OK, &typed(o.clone(), t)),
        (Some(_), Some("log")) if t.kind == "Pod" => {
            let pod = format!("{}/{name}", target.namespace.as_deref().unwrap_or_default());
            let log = lock(&sim.control.logs).get(&pod).cloned();
            pod_log(Arc::clone(sim), key(target, t, name), log, is_true(params.get("follow")))
        }
        (Some(_), Some(sub)) => not_found_path(sub),
        (None, _) => store_error(StoreError::NotFound, t, name),
    }
}

/// A pod's log (`GET …/pods/<name>/log`): what its container printed so far; with `follow=true`, then each line as
/// it is printed, until the container exits or the pod is deleted, as `kubectl logs -f` reads it.
fn pod_log(sim: Arc<Sim>, pod: Key, log: Option<super::controllers::PodLog>, follow: bool) -> Response {
    let text = |lines: &[String]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let Some(log) = log else { return (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "").into_response() };
    let now = tokio::time::Instant::now().into_std();
    let printed = log.printed_by(now);
    if !follow {
        return (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text(&log.lines[..printed])).into_response();
    }
    let first = Bytes::from(text(&log.lines[..printed]));
    let rest = futures::stream::unfold((sim, pod, log, printed), |(sim, pod, log, mut next)| async move {
        loop {
            // Looked at every 100 ms at most: a deleted pod's stream ends, as the kubelet closes it.
            let due = if next < log.lines.len() { log.printed_at(next) } else { log.exits_at() };
            let step = (tokio::time::Instant::now() + Duration::from_millis(100)).min(due.into());
            tokio::time::sleep_until(step).await;
            let exists = lock(&sim.store).get(&pod).is_some();
            if !exists {
                return None;
            }
            if tokio::time::Instant::now() < due.into() {
                continue;
            }
            if next >= log.lines.len() {
                return None;
            }
            let line = Bytes::from(format!("{}\n", log.lines[next]));
            next += 1;
            return Some((Ok::<_, Infallible>(line), (sim, pod, log, next)));
        }
    });
    let body = futures::stream::once(async move { Ok::<_, Infallible>(first) }).chain(rest);
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], Body::from_stream(body)).into_response()
}

/// A list result kept for the pages after the first: every page of one list reads the same snapshot.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks>
pub(crate) struct Snapshot {
    rv: u64,
    items: Vec<Value>,
}

/// How many paginated lists can be continued at once; older tokens expire.
const OPEN_LISTS: usize = 32;

fn list(sim: &Sim, t: &ResourceType, target: &Target, params: &HashMap<String, String>) -> Response {
    let limit = params.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    let (snapshot, id, offset) = match params.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let found = parse_continue(token).and_then(|(id, offset)| {
                let pages = lock(&sim.pages);
                pages.iter().find(|(i, _)| *i == id).map(|(_, s)| (Arc::clone(s), id, offset))
            });
            match found {
                Some(found) => found,
                None => {
                    return status(
                        StatusCode::GONE,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                        None,
                    );
                }
            }
        }
        None => {
            let (labels, fields) = match selectors(params, t) {
                Ok(s) => s,
                Err(r) => return *r,
            };
            let store = lock(&sim.store);
            let items: Vec<Value> = store
                .list(target.kind, target.namespace.as_deref())
                .into_iter()
                .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
                .map(|o| typed(o.clone(), t))
                .collect();
            let snapshot = Arc::new(Snapshot { rv: store.resource_version(), items });
            drop(store);
            let id = if limit.is_some_and(|l| snapshot.items.len() > l) {
                let id = sim.list_ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut pages = lock(&sim.pages);
                pages.push_back((id, Arc::clone(&snapshot)));
                while pages.len() > OPEN_LISTS {
                    pages.pop_front();
                }
                id
            } else {
                0
            };
            (snapshot, id, 0)
        }
    };
    let end = limit.map_or(snapshot.items.len(), |l| (offset + l).min(snapshot.items.len()));
    let items = snapshot.items.get(offset..end).unwrap_or_default();
    let mut meta = json!({"resourceVersion": snapshot.rv.to_string()});
    if end < snapshot.items.len() {
        meta["continue"] = json!(make_continue(id, end));
        meta["remainingItemCount"] = json!(snapshot.items.len() - end);
    }
    json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", t.kind), "apiVersion": t.api_version(), "metadata": meta, "items": items}),
    )
}

/// An opaque `continue` token: which snapshot, and where the next page starts.
fn make_continue(id: u64, offset: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{id}:{offset}"))
}

fn parse_continue(token: &str) -> Option<(u64, usize)> {
    use base64::Engine;
    let text = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let (id, offset) = text.split_once(':')?;
    Some((id.parse().ok()?, offset.parse().ok()?))
}

fn watch(sim: &Arc<Sim>, t: &ResourceType, target: &Target, params: &HashMap<String, String>) -> Response {
    let (labels, fields) = match selectors(params, t) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (initial_labels, initial_fields) = (labels.clone(), fields.clone());
    let matches = {
        let (kind, ns) = (target.kind, target.namespace.clone());
        move |c: &Change| {
            c.key.kind == kind
                && ns.as_ref().is_none_or(|n| *n == c.key.namespace)
                && labels.matches_labels(&c.object)
                && fields.matches_fields(&c.object)
        }
    };
    let store = lock(&sim.store);
    // A streaming list (`sendInitialEvents=true`, `resourceVersionMatch=NotOlderThan`, validated before): the current
    // state as ADDED events whatever the resourceVersion (it was waited for), then a bookmark that ends them.
    let send_initial = is_true(params.get("sendInitialEvents"));
    let from = params
        .get("resourceVersion")
        .filter(|v| !send_initial && !v.is_empty() && *v != "0")
        .and_then(|v| v.parse::<u64>().ok());
    let mut initial: Vec<Value> = Vec::new();
    match from {
        None => {
            // No version: the current objects as ADDED, then changes.
            for o in store.list(target.kind, target.namespace.as_deref()) {
                if initial_labels.matches_labels(o) && initial_fields.matches_fields(o) {
                    initial.push(json!({"type": "ADDED", "object": typed(o.clone(), t)}));
                }
            }
        }
        Some(rv) => match store.changes_since(rv) {
            Ok(changes) => initial.extend(
                changes
                    .iter()
                    .filter(|c| matches(c))
                    .map(|c| json!({"type": c.kind, "object": typed((*c.object).clone(), t)})),
            ),
            Err(()) => {
                // As the API server: 200, then an ERROR event with a 410 Status.
                let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("too old resource version: {rv} ({})", store.resource_version()), "reason": "Expired", "code": 410}});
                return stream_response(futures::stream::iter(vec![gone]).boxed());
            }
        },
    }
    // Subscribed while the store is locked: no change falls between the snapshot above and the feed.
    let mut live = store.changes.subscribe();
    // What this watch has caught up to: the snapshot above covers everything up to now.
    let mut progressed = store.resource_version();
    drop(store);
    let bookmarks = is_true(params.get("allowWatchBookmarks"));
    // `timeoutSeconds=0`, like none, means the server's own limit.
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .map_or(sim.max_watch, Duration::from_secs)
        .min(sim.max_watch);
    let t = t.clone();
    let stop = sim.watch_stop.clone();
    let after = from.unwrap_or(0);
    // A bookmark: no object, only how far the watch has got, so that a client resumes from there instead of from its
    // last matching change (which may be compacted by then).
    // <https://kubernetes.io/docs/reference/using-api/api-concepts/#watch-bookmarks>
    let bookmark = {
        let (kind, api_version) = (t.kind.clone(), t.api_version());
        move |rv: u64| json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rv.to_string()}}})
    };
    if send_initial && bookmarks {
        // The end of a streaming list's initial events, at the version the snapshot holds.
        let mut end = bookmark(progressed);
        end["object"]["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        initial.push(end);
    }
    let every = sim.bookmark_every;
    let live = async_stream(move |tx| async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                () = &mut deadline => {
                    // As the API server does shortly before it ends a watch: where to resume.
                    if bookmarks {
                        let _ = tx.send(bookmark(progressed)).await;
                    }
                    break;
                }
                () = stop.notified() => break,
                _ = ticks.tick(), if bookmarks => {
                    if tx.send(bookmark(progressed)).await.is_err() { break; }
                }
                change = live.recv() => match change {
                    Ok(c) if c.rv > after && matches(&c) => {
                        progressed = progressed.max(c.rv);
                        if tx.send(json!({"type": c.kind, "object": typed(std::sync::Arc::unwrap_or_clone(c.object), &t)})).await.is_err() { break; }
                    }
                    Ok(c) => progressed = progressed.max(c.rv),
                    // A watcher too slow for the change feed is closed, as the API server closes it; clients resume.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_) | tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    });
    stream_response(futures::stream::iter(initial).chain(live).boxed())
}

/// A stream fed by a task through a channel, ending when the task ends.
fn async_stream<F, Fut>(f: F) -> futures::stream::BoxStream<'static, Value>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Value>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

fn stream_response(events: futures::stream::BoxStream<'static, Value>) -> Response {
    let body = events.map(|e| Ok::<_, Infallible>(Bytes::from(format!("{e}\n"))));
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response()
}

/// Checks apiVersion, kind and name of a body against the path.
fn check_body(t: &ResourceType, target: &Target, object: &Value, name: Option<&str>) -> Result<(), Box<Response>> {
    let refuse = |message: String| Err(Box::new(bad_request(message)));
    // <https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-uris>: the namespace is the URL's.
    if let (true, Some(url), Some(body)) = (
        t.namespaced,
        target.namespace.as_deref(),
        object.pointer("/metadata/namespace").and_then(Value::as_str).filter(|n| !n.is_empty()),
    ) && url != body
    {
        return refuse("the namespace of the provided object does not match the namespace sent on the request".into());
    }
    if let Some(av) = object.get("apiVersion").and_then(Value::as_str)
        && av != t.api_version()
    {
        return refuse(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            t.api_version()
        ));
    }
    if let Some(k) = object.get("kind").and_then(Value::as_str)
        && k != t.kind
    {
        return refuse(format!("the kind in the data ({k}) does not match the expected kind ({})", t.kind));
    }
    if let (Some(url), Some(body)) = (name, object.pointer("/metadata/name").and_then(Value::as_str))
        && url != body
    {
        return refuse(format!("the name of the object ({body}) does not match the name on the URL ({url})"));
    }
    Ok(())
}

/// The namespace a namespaced write goes to, as a key to look up in the store, with its type (for the error).
fn namespace_of(sim: &Sim, t: &ResourceType, target: &Target) -> Option<(Key, ResourceType)> {
    let ns = target.namespace.as_deref().filter(|_| t.namespaced)?;
    let types = sim.types.read().unwrap_or_else(|e| e.into_inner());
    let ns_kind = types.iter().position(|t| t.kind == "Namespace").expect("namespaces are built in");
    Some((Key { kind: ns_kind, namespace: String::new(), name: ns.to_owned() }, types[ns_kind].clone()))
}

/// `404` unless the write's namespace exists (`namespace` from [`namespace_of`]).
fn namespace_exists(store: &Store, namespace: Option<&(Key, ResourceType)>) -> Result<(), Box<Response>> {
    match namespace {
        Some((key, t)) if store.get(key).is_none() => Err(Box::new(store_error(StoreError::NotFound, t, &key.name))),
        _ => Ok(()),
    }
}

/// `403` for a create in a namespace being deleted, as the NamespaceLifecycle admission plugin answers it.
/// <https://kubernetes.io/docs/reference/access-authn-authz/admission-controllers/#namespacelifecycle>
fn namespace_open(
    store: &Store,
    namespace: Option<&(Key, ResourceType)>,
    t: &ResourceType,
    name: &str,
) -> Result<(), Box<Response>> {
    let Some((key, _)) = namespace else { return Ok(()) };
    if !store.get(key).is_some_and(deletion::deleting) {
        return Ok(());
    }
    let ns = &key.name;
    let what = if t.group.is_empty() { t.plural.clone() } else { format!("{}.{}", t.plural, t.group) };
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": format!("{what} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated"),
        "details": {"name": name, "group": t.group, "kind": t.plural,
                    "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]},
    });
    Err(Box::new(json_response(StatusCode::FORBIDDEN, &body)))
}

/// Prepares a new object as the API server's create strategy does.
fn prepare_create(t: &ResourceType, target: &Target, mut object: Value) -> Value {
    let meta = metadata(&mut object);
    if t.namespaced {
        meta.insert("namespace".into(), json!(target.namespace.clone().unwrap_or_else(|| "default".into())));
    }
    for server_owned in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "managedFields",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        meta.remove(server_owned);
    }
    if t.status {
        object["status"] = if t.kind == "Namespace" {
            json!({"phase": "Active"})
        } else if t.kind == "Pod" {
            json!({"phase": "Pending"})
        } else {
            json!({})
        };
    }
    typed(object, t)
}

fn create(sim: &Sim, t: &ResourceType, target: &Target, object: Value, dry_run: bool, manager: &str) -> Response {
    if let Err(r) = check_body(t, target, &object, None) {
        return *r;
    }
    let namespace = namespace_of(sim, t, target);
    let mut object = prepare_create(t, target, object);
    let managed = ownership::update(&[], manager, None, &object, &t.api_version(), &now_rfc3339());
    metadata(&mut object).insert("managedFields".into(), json!(managed));
    let name = match object.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => match object.pointer("/metadata/generateName").and_then(Value::as_str) {
            Some(prefix) => {
                let name = format!("{prefix}{}", sim.suffix());
                metadata(&mut object).insert("name".into(), json!(name));
                name
            }
            None => {
                return store_error(
                    StoreError::Invalid("metadata.name: Required value: name or generateName is required".into()),
                    t,
                    "",
                );
            }
        },
    };
    let mut store = lock(&sim.store);
    if let Err(r) = namespace_exists(&store, namespace.as_ref()) {
        return *r;
    }
    if let Err(r) = namespace_open(&store, namespace.as_ref(), t, &name) {
        return *r;
    }
    insert(&mut store, t, target, &name, object, dry_run)
}

/// Stores a prepared new object (or, in a dry run, answers what would be stored).
fn insert(
    store: &mut Store,
    t: &ResourceType,
    target: &Target,
    name: &str,
    mut object: Value,
    dry_run: bool,
) -> Response {
    admit(t, &mut object);
    // The uid is the new object's from here on: a Job's default selector names it.
    let uid = store.new_uid();
    metadata(&mut object).insert("uid".into(), json!(uid));
    admission::default(t, &mut object, Some(&uid));
    if t.kind == "Service" && t.group.is_empty() {
        allocate_cluster_ip(store, &mut object);
    }
    if let Err(causes) = admission::validate(t, None, &object) {
        return admission::invalid(t, name, &causes);
    }
    let key = key(target, t, name);
    if dry_run {
        // What would be stored, server-set fields included.
        metadata(&mut object).insert("creationTimestamp".into(), json!(now_rfc3339()));
        return if store.get(&key).is_some() {
            store_error(StoreError::AlreadyExists, t, name)
        } else {
            json_response(StatusCode::CREATED, &object)
        };
    }
    match store.create(key, object, t.generation) {
        Ok(o) => json_response(StatusCode::CREATED, &o),
        Err(e) => store_error(e, t, name),
    }
}

/// A Service's cluster IP, allocated from 10.96.0.0/12 as the API server's allocator does (unless it is headless,
/// `None`, or an `ExternalName`); with its `clusterIPs`, IP family and traffic policy.
/// <https://kubernetes.io/docs/concepts/services-networking/cluster-ip-allocation/>
fn allocate_cluster_ip(store: &mut Store, service: &mut Value) {
    let Some(spec) = service.get_mut("spec").filter(|s| s.is_object()) else { return };
    if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
        return;
    }
    let ip = match spec.get("clusterIP").and_then(Value::as_str).filter(|ip| !ip.is_empty()) {
        Some(ip) => ip.to_owned(),
        None => {
            let n = store.next_cluster_ip();
            format!("10.96.{}.{}", n / 254, n % 254 + 1)
        }
    };
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
    if ip != "None" {
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
    }
    if spec.get("internalTrafficPolicy").is_none() {
        spec["internalTrafficPolicy"] = json!("Cluster");
    }
    if service.get("status").is_none_or(|s| s.as_object().is_some_and(|m| m.is_empty())) {
        service["status"] = json!({"loadBalancer": {}});
    }
}

/// An update of a Service that does not name its cluster IPs keeps the allocated ones (the API server's
/// `PrepareForUpdate` carries them over; they are immutable).
fn keep_cluster_ip(old: &Value, new: &mut Value) {
    let Some(spec) = new.get_mut("spec").filter(|s| s.is_object()) else { return };
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        let unset = spec.get(field).is_none_or(|v| v.is_null() || v.as_str() == Some(""));
        if let (true, Some(allocated)) = (unset, old.pointer(&format!("/spec/{field}"))) {
            spec[field] = allocated.clone();
        }
    }
}

/// What the API server's registry does to an object before it stores it, for the types Gantry writes: a Secret's
/// `stringData` is merged into `data`, base64-encoded, and is not stored.
/// <https://kubernetes.io/docs/concepts/configuration/secret/#restriction-names-data>
fn admit(t: &ResourceType, object: &mut Value) {
    use base64::Engine;
    if t.kind != "Secret" {
        return;
    }
    let Some(string_data) = object.as_object_mut().and_then(|o| o.remove("stringData")) else { return };
    let Value::Object(string_data) = string_data else { return };
    if !object.get("data").is_some_and(Value::is_object) {
        object["data"] = json!({});
    }
    for (key, value) in string_data {
        let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        object["data"][key] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// The update a PUT or PATCH asks for, applied as the registry does: the main resource keeps the old status when the
/// type has a status subresource; the status subresource keeps everything but the status.
#[allow(clippy::too_many_arguments)]
pub(super) fn apply_update(
    store: &mut Store,
    t: &ResourceType,
    target: &Target,
    name: &str,
    old: &Value,
    mut new: Value,
    dry_run: bool,
    updater: Option<&str>,
) -> Response {
    if let Err(r) = check_body(t, target, &new, Some(name)) {
        return *r;
    }
    if let Some(manager) = updater {
        // An update owns what it changed (a PUT's body may omit managedFields: they are the server's to keep).
        let before = old.pointer("/metadata/managedFields").and_then(Value::as_array).cloned().unwrap_or_default();
        let managed = ownership::update(&before, manager, Some(old), &new, &t.api_version(), &now_rfc3339());
        metadata(&mut new).insert("managedFields".into(), json!(managed));
    }
    match target.sub.as_deref() {
        Some("status") => {
            let mut merged = old.clone();
            merged["status"] = new.get("status").cloned().unwrap_or(json!({}));
            if let Some(rv) = new.pointer("/metadata/resourceVersion") {
                metadata(&mut merged).insert("resourceVersion".into(), rv.clone());
            }
            new = merged;
        }
        None if t.status => {
            new["status"] = old.get("status").cloned().unwrap_or(json!({}));
        }
        None => {}
        Some(sub) => return not_found_path(sub),
    }
    {
        let meta = metadata(&mut new);
        meta.insert("name".into(), json!(name));
        if t.namespaced {
            meta.insert("namespace".into(), json!(target.namespace.clone().unwrap_or_default()));
        }
    }
    admit(t, &mut new);
    admission::default(t, &mut new, None);
    if t.kind == "Service" && t.group.is_empty() {
        keep_cluster_ip(old, &mut new);
    }
    if let Err(causes) = admission::validate(t, Some(old), &new) {
        return admission::invalid(t, name, &causes);
    }
    let new = typed(new, t);
    if dry_run {
        let current = store.get(&key(target, t, name)).and_then(|o| o.pointer("/metadata/resourceVersion")).cloned();
        let asked = new.pointer("/metadata/resourceVersion").filter(|v| v.as_str() != Some("")).cloned();
        if asked.is_some() && asked != current {
            return store_error(StoreError::Conflict, t, name);
        }
        return json_response(StatusCode::OK, &new);
    }
    match store.update(&key(target, t, name), new) {
        Ok(o) => json_response(StatusCode::OK, &typed(o, t)),
        Err(e) => store_error(e, t, name),
    }
}

fn replace(
    sim: &Sim,
    t: &ResourceType,
    target: &Target,
    name: &str,
    object: Value,
    dry_run: bool,
    manager: &str,
) -> Response {
    // One lock from read to write: a PUT without a resourceVersion is unconditional, and must not fail because a
    // controller wrote in between.
    let mut store = lock(&sim.store);
    let old = store.get(&key(target, t, name)).cloned();
    match old {
        Some(old) => apply_update(&mut store, t, target, name, &old, object, dry_run, Some(manager)),
        None => store_error(StoreError::NotFound, t, name),
    }
}

#[allow(clippy::too_many_arguments)]
fn patch_object(
    sim: &Sim,
    t: &ResourceType,
    target: &Target,
    name: &str,
    patch: Value,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    dry_run: bool,
    updater: &str,
    directive: field_validation::Directive,
) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let apply = content_type.starts_with("application/apply-patch");
    // Unknown fields: an applied configuration is a whole object, checked as sent; other patches are checked in
    // the object they produce.
    let mut patch = patch;
    let mut unknown = if apply {
        match field_validation::prune(t, &mut patch) {
            Ok(unknown) => unknown,
            Err(wrong_type) => return bad_request(wrong_type),
        }
    } else {
        Vec::new()
    };
    if let Err(refused) = field_validation::judge(directive, &unknown, apply) {
        return *refused;
    }
    let response = patch_unknown_checked(
        sim,
        t,
        target,
        name,
        patch,
        content_type,
        params,
        dry_run,
        updater,
        directive,
        &mut unknown,
    );
    match field_validation::judge(directive, &unknown, apply) {
        Ok(warnings) => field_validation::with_warnings(response, &warnings),
        Err(refused) => *refused,
    }
}

/// [`patch_object`] once an applied configuration lost its unknown fields; other patches' unknown fields are
/// removed from the object they produce and added to `unknown`.
#[allow(clippy::too_many_arguments)]
fn patch_unknown_checked(
    sim: &Sim,
    t: &ResourceType,
    target: &Target,
    name: &str,
    patch: Value,
    content_type: &str,
    params: &HashMap<String, String>,
    dry_run: bool,
    updater: &str,
    directive: field_validation::Directive,
    unknown: &mut Vec<String>,
) -> Response {
    // The patch is applied to the object as it is when it is written, under one lock: a patch without a
    // resourceVersion never fails because a controller wrote in between (the API server's registry retries such
    // writes against the current object, in `GuaranteedUpdate`).
    let namespace = namespace_of(sim, t, target);
    let mut store = lock(&sim.store);
    let old = store.get(&key(target, t, name)).cloned();
    if content_type.starts_with("application/apply-patch") {
        let Some(manager) = params.get("fieldManager").filter(|m| !m.is_empty()) else {
            return bad_request("PATCH with apply-patch requires a fieldManager".into());
        };
        let force = params.get("force").is_some_and(|f| f == "true");
        return match old {
            None => {
                let mut object = patch;
                metadata(&mut object).insert("name".into(), json!(name));
                let managed =
                    ownership::apply(&[], manager, &object, &json!({}), true, &t.api_version(), &now_rfc3339())
                        .unwrap_or_default();
                metadata(&mut object).insert("managedFields".into(), json!(managed));
                let object = prepare_create_keep_fields(t, target, object);
                if let Err(r) = namespace_exists(&store, namespace.as_ref()) {
                    return *r;
                }
                let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
                if let Err(r) = namespace_open(&store, namespace.as_ref(), t, &name) {
                    return *r;
                }
                insert(&mut store, t, target, &name, object, dry_run)
            }
            Some(old) => {
                let mut merged = old.clone();
                let mut applied = patch;
                if let Some(m) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                let before =
                    old.pointer("/metadata/managedFields").and_then(Value::as_array).cloned().unwrap_or_default();
                let managed =
                    match ownership::apply(&before, manager, &applied, &old, force, &t.api_version(), &now_rfc3339()) {
                        Ok(m) => m,
                        Err(conflicts) => return apply_conflict(t, name, &conflicts),
                    };
                patch::strategic(&mut merged, &applied);
                // What this manager applied before and no longer does, and nobody else set, is removed.
                for path in ownership::dropped(&before, manager, &applied) {
                    ownership::remove(&mut merged, &path);
                }
                metadata(&mut merged).insert("managedFields".into(), json!(managed));
                if target.sub.is_none() && t.status {
                    // Applying to the main resource leaves status alone.
                    merged["status"] = old.get("status").cloned().unwrap_or(json!({}));
                }
                let rv = old.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""));
                metadata(&mut merged).insert("resourceVersion".into(), rv);
                apply_update(&mut store, t, target, name, &old, merged, dry_run, None)
            }
        };
    }
    let Some(old) = old else { return store_error(StoreError::NotFound, t, name) };
    let mut merged = old.clone();
    if let Err(r) = apply_patch(&mut merged, &patch, content_type, t, name) {
        return *r;
    }
    match field_validation::prune(t, &mut merged) {
        Ok(found) => unknown.extend(found),
        Err(wrong_type) => return bad_request(wrong_type),
    }
    if let Err(refused) = field_validation::judge(directive, unknown, false) {
        return *refused;
    }
    // A patch without a resourceVersion applies to whatever is current.
    if patch.is_array() || patch.pointer("/metadata/resourceVersion").is_none() {
        let rv = old.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""));
        metadata(&mut merged).insert("resourceVersion".into(), rv);
    }
    apply_update(&mut store, t, target, name, &old, merged, dry_run, Some(updater))
}

/// Applies a JSON, merge or strategic merge patch, as its content type says; `415` for any other type, `422` for a
/// JSON patch that does not apply.
pub(super) fn apply_patch(
    target: &mut Value,
    patch: &Value,
    content_type: &str,
    t: &ResourceType,
    name: &str,
) -> Result<(), Box<Response>> {
    if content_type.starts_with("application/merge-patch+json") {
        patch::merge(target, patch);
    } else if content_type.starts_with("application/strategic-merge-patch+json") {
        patch::strategic(target, patch);
    } else if content_type.starts_with("application/json-patch+json") {
        patch::json_patch(target, patch).map_err(|e| Box::new(store_error(StoreError::Invalid(e), t, name)))?;
    } else {
        return Err(Box::new(status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
            None,
        )));
    }
    Ok(())
}

/// `409 Conflict` for an apply that would change fields other managers set, worded as the API server words it.
fn apply_conflict(t: &ResourceType, name: &str, conflicts: &[ownership::Conflict]) -> Response {
    let api = t.api_version();
    let each: Vec<String> =
        conflicts.iter().map(|c| format!("conflict with \"{}\" using {api}: {}", c.manager, c.field)).collect();
    let message = if conflicts.len() == 1 {
        format!("Apply failed with 1 conflict: {}", each[0])
    } else {
        format!("Apply failed with {} conflicts: {}", conflicts.len(), each.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\" using {api}", c.manager), "field": c.field}))
        .collect();
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
        "reason": "Conflict", "code": 409, "details": {"name": name, "group": t.group, "kind": t.plural, "causes": causes},
    });
    json_response(StatusCode::CONFLICT, &body)
}

fn prepare_create_keep_fields(t: &ResourceType, target: &Target, object: Value) -> Value {
    let fields = object.pointer("/metadata/managedFields").cloned();
    let mut prepared = prepare_create(t, target, object);
    if let Some(f) = fields {
        metadata(&mut prepared).insert("managedFields".into(), f);
    }
    prepared
}

fn delete(
    sim: &Sim,
    t: &ResourceType,
    target: &Target,
    name: &str,
    params: &HashMap<String, String>,
    body: &Bytes,
    dry_run: bool,
) -> Response {
    let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let policy = params
        .get("propagationPolicy")
        .cloned()
        .or_else(|| options.get("propagationPolicy").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "Background".into());
    let k = key(target, t, name);
    if t.kind == "Namespace" && t.group.is_empty() && SYSTEM_NAMESPACES.contains(&name) {
        // <https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/#initial-namespaces>
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
            Some((t, name)),
        );
    }
    let mut store = lock(&sim.store);
    let Some(object) = store.get(&k).cloned() else { return store_error(StoreError::NotFound, t, name) };
    // Preconditions: the object must still be the one (uid) and the version (resourceVersion) the client saw.
    // <https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/delete-options/>
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        let (asked, actual) = (
            options.pointer(&format!("/preconditions/{field}")).and_then(Value::as_str),
            object.pointer(&format!("/metadata/{field}")).and_then(Value::as_str).unwrap_or_default(),
        );
        if let Some(asked) = asked.filter(|a| *a != actual) {
            let what = if t.group.is_empty() { t.plural.clone() } else { format!("{}.{}", t.plural, t.group) };
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {what} \"{name}\": Precondition failed: {label} in precondition: {asked}, {label} in object meta: {actual}"
                ),
                Some((t, name)),
            );
        }
    }
    if dry_run {
        return json_response(StatusCode::OK, &typed(object, t));
    }
    let Some(policy) = deletion::Propagation::parse(&policy) else {
        return admission::invalid_status(
            "meta.k8s.io",
            "DeleteOptions",
            "",
            &[admission::Cause::not_supported("propagationPolicy", &policy, &["Foreground", "Background", "Orphan"])],
        );
    };
    match deletion::delete(&mut store, &k, policy) {
        Ok(deletion::Deleted::Gone(o) | deletion::Deleted::Pending(o)) => json_response(StatusCode::OK, &typed(o, t)),
        Err(e) => store_error(e, t, name),
    }
}

fn delete_collection(sim: &Sim, t: &ResourceType, target: &Target, params: &HashMap<String, String>) -> Response {
    let (labels, fields) = match selectors(params, t) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let mut store = lock(&sim.store);
    let doomed: Vec<Key> = store
        .list(target.kind, target.namespace.as_deref())
        .into_iter()
        .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
        .filter_map(|o| {
            let name = o.pointer("/metadata/name")?.as_str()?.to_owned();
            let namespace = o.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_owned();
            Some(Key { kind: target.kind, namespace, name })
        })
        .collect();
    let items: Vec<Value> = doomed.iter().filter_map(|k| store.delete(k).ok()).map(|o| typed(o, t)).collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", t.kind), "apiVersion": t.api_version(), "metadata": {}, "items": items}),
    )
}
