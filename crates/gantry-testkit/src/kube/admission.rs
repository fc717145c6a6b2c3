//! What the API server does to an object of a built-in kind before it stores it: defaulting, then validation, as
//! the registry's strategies do; a failed validation is `422 Invalid` with one cause per broken rule, worded as
//! upstream words it (`spec.replicas: Invalid value: -1: must be greater than or equal to 0`).
//!
//! Modelled: names (RFC 1123 subdomains, or labels for Namespaces and Services), label keys and values, and for
//! Deployments, ReplicaSets, Jobs and Pods the rules a pipeline meets first: replicas not negative, a selector that
//! matches the template's labels and does not change, containers with names and images, a Job's restart policy,
//! the Deployment strategy; Service ports. Defaults for the same kinds as the API server sets them. Not modelled:
//! the many other field rules (resources, probes, volumes, security contexts...), which are stored as sent.
//! <https://kubernetes.io/docs/concepts/overview/working-with-objects/names/>
//! <https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set>
//! <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#writing-a-deployment-spec>
//! <https://kubernetes.io/docs/concepts/workloads/controllers/job/#writing-a-job-spec>
//! <https://kubernetes.io/docs/concepts/services-networking/service/#defining-a-service>

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::api::json_response;
use super::resources::ResourceType;
use super::selector::label_text as is_label_text;

/// One broken rule.
pub(super) struct Cause {
    pub(super) field: String,
    pub(super) reason: &'static str,
    pub(super) message: String,
}

impl Cause {
    fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Self { field: field.into(), reason: "FieldValueInvalid", message: format!("Invalid value: {shown}: {detail}") }
    }

    fn required(field: impl Into<String>, detail: &str) -> Self {
        let message = if detail.is_empty() { "Required value".to_owned() } else { format!("Required value: {detail}") };
        Self { field: field.into(), reason: "FieldValueRequired", message }
    }

    pub(super) fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self { field: field.into(), reason: "FieldValueForbidden", message: format!("Forbidden: {detail}") }
    }

    pub(super) fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self {
            field: field.into(),
            reason: "FieldValueNotSupported",
            message: format!("Unsupported value: {value:?}: supported values: {}", supported.join(", ")),
        }
    }
}

/// `422 Invalid` for `causes`, as the API server answers it.
pub(super) fn invalid(t: &ResourceType, name: &str, causes: &[Cause]) -> Response {
    invalid_status(&t.group, &t.kind, name, causes)
}

/// `422 Invalid` for `causes` on an object of `kind` in `group` (the name may be empty, as for `ListOptions`).
pub(super) fn invalid_status(group: &str, kind: &str, name: &str, causes: &[Cause]) -> Response {
    let each: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
    let joined = if each.len() == 1 { each[0].clone() } else { format!("[{}]", each.join(", ")) };
    let qualified = if group.is_empty() { kind.to_owned() } else { format!("{kind}.{group}") };
    let causes: Vec<Value> =
        causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect();
    let mut details = json!({"group": group, "kind": kind, "causes": causes});
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{qualified} {name:?} is invalid: {joined}"), "reason": "Invalid",
            "details": details, "code": 422,
        }),
    )
}

const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_NAME: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Label (and annotation-free) metadata rules: the name, and the labels' keys and values.
fn metadata(t: &ResourceType, object: &Value, causes: &mut Vec<Cause>) {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let label_named = matches!(t.kind.as_str(), "Namespace" | "Service");
    if name.is_empty() {
        causes.push(Cause::required("metadata.name", "name or generateName is required"));
    } else if label_named && !is_dns_label(name) {
        causes.push(Cause::invalid("metadata.name", &json!(name), DNS1123_LABEL));
    } else if !label_named && !is_dns_subdomain(name) {
        causes.push(Cause::invalid("metadata.name", &json!(name), DNS1123_SUBDOMAIN));
    }
    labels(object.pointer("/metadata/labels"), "metadata.labels", causes);
}

fn labels(labels: Option<&Value>, field: &str, causes: &mut Vec<Cause>) {
    let Some(labels) = labels.and_then(Value::as_object) else { return };
    for (key, value) in labels {
        let (prefix, name) = match key.rsplit_once('/') {
            Some((prefix, name)) => (Some(prefix), name),
            None => (None, key.as_str()),
        };
        if prefix.is_some_and(|p| !is_dns_subdomain(p)) {
            causes.push(Cause::invalid(
                field,
                &json!(key),
                &format!("prefix part {}", DNS1123_SUBDOMAIN.trim_start_matches("a lowercase RFC 1123 subdomain ")),
            ));
        } else if !is_label_text(name, false) {
            causes.push(Cause::invalid(field, &json!(key), QUALIFIED_NAME));
        }
        match value.as_str() {
            Some(v) if is_label_text(v, true) => {}
            _ => causes.push(Cause::invalid(field, value, LABEL_VALUE)),
        }
    }
}

/// The rules of a pod spec at `path` (a Pod's `spec`, a template's `spec.template.spec`).
fn pod_spec(spec: Option<&Value>, path: &str, restart: &[&str], causes: &mut Vec<Cause>) {
    let containers = spec.and_then(|s| s.get("containers")).and_then(Value::as_array);
    match containers {
        None => causes.push(Cause::required(format!("{path}.containers"), "")),
        Some(list) if list.is_empty() => causes.push(Cause::required(format!("{path}.containers"), "")),
        Some(list) => {
            for (i, c) in list.iter().enumerate() {
                let at = format!("{path}.containers[{i}]");
                match c.get("name").and_then(Value::as_str) {
                    None | Some("") => causes.push(Cause::required(format!("{at}.name"), "")),
                    Some(n) if !is_dns_label(n) => {
                        causes.push(Cause::invalid(format!("{at}.name"), &json!(n), DNS1123_LABEL))
                    }
                    Some(_) => {}
                }
                if c.get("image").and_then(Value::as_str).is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!("{at}.image"), ""));
                }
                for (j, p) in c.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
                    if !(1..=65535).contains(&port) {
                        causes.push(Cause::invalid(
                            format!("{at}.ports[{j}].containerPort"),
                            &json!(port),
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                }
            }
        }
    }
    let policy = spec.and_then(|s| s.get("restartPolicy")).and_then(Value::as_str).unwrap_or("Always");
    if !restart.contains(&policy) {
        causes.push(Cause::not_supported(format!("{path}.restartPolicy"), policy, restart));
    }
}

/// `spec.replicas`, `spec.selector` against the template's labels, and the template (Deployments, ReplicaSets).
fn workload(object: &Value, causes: &mut Vec<Cause>) {
    if let Some(r) = object.pointer("/spec/replicas")
        && r.as_i64().is_none_or(|r| r < 0)
    {
        causes.push(Cause::invalid("spec.replicas", r, "must be greater than or equal to 0"));
    }
    selector_matches(object, causes);
    labels(object.pointer("/spec/template/metadata/labels"), "spec.template.metadata.labels", causes);
    pod_spec(object.pointer("/spec/template/spec"), "spec.template.spec", &["Always"], causes);
}

fn selector_matches(object: &Value, causes: &mut Vec<Cause>) {
    let Some(selector) = object.pointer("/spec/selector").filter(|s| !s.is_null()) else {
        causes.push(Cause::required("spec.selector", ""));
        return;
    };
    let match_labels = selector.get("matchLabels").and_then(Value::as_object);
    let expressions = selector.get("matchExpressions").and_then(Value::as_array);
    if match_labels.is_none_or(|m| m.is_empty()) && expressions.is_none_or(|e| e.is_empty()) {
        causes.push(Cause::invalid("spec.selector", selector, "empty selector is invalid for deployment"));
        return;
    }
    let template = object.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}));
    let text = super::scale::selector_string(selector);
    let selects = super::selector::Selector::parse(&text)
        .is_ok_and(|s| s.matches_labels(&json!({"metadata": {"labels": template.clone()}})));
    if !selects {
        causes.push(Cause::invalid(
            "spec.template.metadata.labels",
            &template,
            "`selector` does not match template `labels`",
        ));
    }
}

fn service(object: &Value, causes: &mut Vec<Cause>) {
    let kind = object.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    let supported = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !supported.contains(&kind) {
        causes.push(Cause::not_supported("spec.type", kind, &supported));
    }
    let ports = object.pointer("/spec/ports").and_then(Value::as_array);
    if kind != "ExternalName" && ports.is_none_or(|p| p.is_empty()) {
        let headless = object.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
        if !headless {
            causes.push(Cause::required("spec.ports", ""));
        }
    }
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                &json!(port),
                "must be between 1 and 65535, inclusive",
            ));
        }
    }
}

/// The rules for a new object (`old` is `None`) or a change of one: `Err` with the causes if any is broken.
pub(super) fn validate(t: &ResourceType, old: Option<&Value>, object: &Value) -> Result<(), Vec<Cause>> {
    let mut causes = Vec::new();
    metadata(t, object, &mut causes);
    // <https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/>: a finalizer may only be removed
    // once the object is being deleted.
    if let Some(old) = old.filter(|o| super::deletion::deleting(o)) {
        let list = |v: &Value| -> Vec<String> {
            v.pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .map(|f| f.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let before = list(old);
        let added: Vec<String> =
            list(object).into_iter().filter(|f| !before.contains(f)).map(|f| format!("{f:?}")).collect();
        if !added.is_empty() {
            causes.push(Cause::forbidden(
                "metadata.finalizers",
                &format!("no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}", added.join(", ")),
            ));
        }
    }
    let builtin = matches!(t.group.as_str(), "" | "apps" | "batch");
    match (builtin, t.kind.as_str()) {
        (true, "Deployment") => {
            workload(object, &mut causes);
            let strategy = object.pointer("/spec/strategy/type").and_then(Value::as_str).unwrap_or("RollingUpdate");
            if !matches!(strategy, "RollingUpdate" | "Recreate") {
                causes.push(Cause::not_supported("spec.strategy.type", strategy, &["Recreate", "RollingUpdate"]));
            }
            if strategy == "Recreate" && object.pointer("/spec/strategy/rollingUpdate").is_some_and(|r| !r.is_null()) {
                causes.push(Cause::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        (true, "ReplicaSet") => workload(object, &mut causes),
        (true, "Job") => {
            for field in ["parallelism", "completions", "backoffLimit"] {
                if let Some(v) = object.pointer(&format!("/spec/{field}"))
                    && v.as_i64().is_none_or(|v| v < 0)
                {
                    causes.push(Cause::invalid(format!("spec.{field}"), v, "must be greater than or equal to 0"));
                }
            }
            labels(object.pointer("/spec/template/metadata/labels"), "spec.template.metadata.labels", &mut causes);
            pod_spec(object.pointer("/spec/template/spec"), "spec.template.spec", &["OnFailure", "Never"], &mut causes);
        }
        (true, "Pod") => pod_spec(object.get("spec"), "spec", &["Always", "OnFailure", "Never"], &mut causes),
        (true, "Service") => service(object, &mut causes),
        _ => {}
    }
    if let Some(old) = old
        && builtin
        && matches!(t.kind.as_str(), "Deployment" | "ReplicaSet" | "Job")
    {
        let (was, is) = (old.pointer("/spec/selector"), object.pointer("/spec/selector"));
        if was != is {
            causes.push(Cause::invalid("spec.selector", is.unwrap_or(&Value::Null), "field is immutable"));
        }
    }
    if causes.is_empty() { Ok(()) } else { Err(causes) }
}

/// `imagePullPolicy`'s default: `Always` for `:latest` or no tag, else `IfNotPresent`.
/// <https://kubernetes.io/docs/concepts/containers/images/#imagepullpolicy-defaulting>
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn set_default(object: &mut Value, path: &[&str], value: Value) {
    let mut at = object;
    for (i, key) in path.iter().enumerate() {
        if !at.is_object() {
            return;
        }
        if i == path.len() - 1 {
            // As Go's defaulting: a field sent empty (`type: ""`, as charts often render it) is unset.
            if at.get(*key).is_none_or(|v| v.is_null() || v.as_str() == Some("")) {
                at[*key] = value;
            }
            return;
        }
        if at.get(*key).is_none_or(Value::is_null) {
            at[*key] = json!({});
        }
        at = &mut at[*key];
    }
}

/// A pod spec's defaults.
fn default_pod_spec(spec: &mut Value, restart: Option<&str>) {
    if let Some(restart) = restart {
        set_default(spec, &["restartPolicy"], json!(restart));
    }
    set_default(spec, &["terminationGracePeriodSeconds"], json!(30));
    set_default(spec, &["dnsPolicy"], json!("ClusterFirst"));
    set_default(spec, &["securityContext"], json!({}));
    set_default(spec, &["schedulerName"], json!("default-scheduler"));
    for c in spec.get_mut("containers").and_then(Value::as_array_mut).into_iter().flatten() {
        if !c.is_object() {
            continue;
        }
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default().to_owned();
        set_default(c, &["imagePullPolicy"], json!(pull_policy(&image)));
        set_default(c, &["terminationMessagePath"], json!("/dev/termination-log"));
        set_default(c, &["terminationMessagePolicy"], json!("File"));
        set_default(c, &["resources"], json!({}));
        for p in c.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
            if p.is_object() {
                set_default(p, &["protocol"], json!("TCP"));
            }
        }
    }
}

/// The API server's defaults for a built-in kind (`uid` is the new object's, for a Job's selector).
/// <https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/deployment-v1/#DeploymentSpec>
/// <https://kubernetes.io/docs/concepts/workloads/controllers/job/#specifying-your-own-pod-selector>
pub(super) fn default(t: &ResourceType, object: &mut Value, uid: Option<&str>) {
    if !matches!(t.group.as_str(), "" | "apps" | "batch") || !object.is_object() {
        return;
    }
    match t.kind.as_str() {
        "Deployment" => {
            set_default(object, &["spec", "replicas"], json!(1));
            let recreate = object.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate");
            set_default(object, &["spec", "strategy", "type"], json!("RollingUpdate"));
            if !recreate {
                set_default(object, &["spec", "strategy", "rollingUpdate", "maxUnavailable"], json!("25%"));
                set_default(object, &["spec", "strategy", "rollingUpdate", "maxSurge"], json!("25%"));
            }
            set_default(object, &["spec", "revisionHistoryLimit"], json!(10));
            set_default(object, &["spec", "progressDeadlineSeconds"], json!(600));
            if let Some(spec) = object.pointer_mut("/spec/template/spec") {
                default_pod_spec(spec, Some("Always"));
            }
        }
        "ReplicaSet" => {
            set_default(object, &["spec", "replicas"], json!(1));
            if let Some(spec) = object.pointer_mut("/spec/template/spec") {
                default_pod_spec(spec, Some("Always"));
            }
        }
        "Job" => {
            // `completions` defaults to 1 only when `parallelism` is unset too (a work queue sets only the latter).
            if object.pointer("/spec/completions").is_none_or(Value::is_null)
                && object.pointer("/spec/parallelism").is_none_or(Value::is_null)
            {
                set_default(object, &["spec", "completions"], json!(1));
            }
            set_default(object, &["spec", "parallelism"], json!(1));
            set_default(object, &["spec", "backoffLimit"], json!(6));
            set_default(object, &["spec", "completionMode"], json!("NonIndexed"));
            set_default(object, &["spec", "suspend"], json!(false));
            let manual = object.pointer("/spec/manualSelector").and_then(Value::as_bool).unwrap_or(false);
            if let (Some(uid), false) = (uid, manual) {
                let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
                set_default(
                    object,
                    &["spec", "selector"],
                    json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
                );
                for (key, value) in [
                    ("batch.kubernetes.io/controller-uid", uid),
                    ("batch.kubernetes.io/job-name", name.as_str()),
                    ("controller-uid", uid),
                    ("job-name", name.as_str()),
                ] {
                    set_default(object, &["spec", "template", "metadata", "labels", key], json!(value));
                }
            }
            if let Some(spec) = object.pointer_mut("/spec/template/spec") {
                default_pod_spec(spec, None);
            }
        }
        "Pod" => {
            if let Some(spec) = object.get_mut("spec") {
                default_pod_spec(spec, Some("Always"));
            }
        }
        "Service" => {
            set_default(object, &["spec", "type"], json!("ClusterIP"));
            set_default(object, &["spec", "sessionAffinity"], json!("None"));
            for p in object.pointer_mut("/spec/ports").and_then(Value::as_array_mut).into_iter().flatten() {
                if !p.is_object() {
                    continue;
                }
                set_default(p, &["protocol"], json!("TCP"));
                // SetDefaults_Service: a target port of 0 or "" (protobuf bodies carry the zero) is the port.
                if p.get("targetPort").is_some_and(|t| t == 0 || t == "") {
                    p["targetPort"] = Value::Null;
                }
                let port = p.get("port").cloned().unwrap_or(Value::Null);
                set_default(p, &["targetPort"], port);
            }
        }
        // SetDefaults_Secret.
        "Secret" => set_default(object, &["type"], json!("Opaque")),
        "Namespace" => {
            let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
            set_default(object, &["metadata", "labels", "kubernetes.io/metadata.name"], json!(name));
            set_default(object, &["spec", "finalizers"], json!(["kubernetes"]));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_labels_and_pull_policies() {
        assert!(is_dns_label("web-1") && !is_dns_label("Web") && !is_dns_label("-a") && !is_dns_label(""));
        assert!(is_dns_subdomain("a.b-c.d") && !is_dns_subdomain("a..b") && !is_dns_subdomain("a_b"));
        assert!(is_label_text("My_value.1", false) && is_label_text("", true) && !is_label_text("bad value", true));
        assert!(!is_label_text(&"a".repeat(64), true));
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("registry:5000/nginx"), "Always");
        assert_eq!(pull_policy("registry:5000/nginx:1.27"), "IfNotPresent");
        assert_eq!(pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }
}
