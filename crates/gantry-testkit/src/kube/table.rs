//! Server-side printing: `Table` answers for clients that ask for them, as `kubectl get` does
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`,
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables>).
//!
//! The columns are upstream's (`pkg/printers/internalversion/printers.go` of Kubernetes 1.33) for the kinds the
//! simulator serves: `kubectl get pods` shows READY, STATUS, RESTARTS and AGE, `-o wide` the priority-1 columns
//! (IP, NODE, CONTAINERS, IMAGES, SELECTOR...). Each row carries the object as `includeObject` asks: its metadata
//! (`PartialObjectMetadata`, the default), the whole object, or nothing. Watches (`kubectl get -w`) answer a
//! one-row table per event. Custom resources get NAME and AGE (no `additionalPrinterColumns`).
//!
//! Not modelled: pods have no IP or node (`<none>`), readiness gates are not evaluated, and ages are computed
//! against the wall clock in whole seconds.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

/// Whether the client's first acceptable media type is a `meta.k8s.io` Table (v1 or v1beta1).
pub(super) fn wanted(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    for media in accept.split(',') {
        let parts: Vec<&str> = media.split(';').map(str::trim).collect();
        let is_table = parts.contains(&"as=Table") && parts.contains(&"g=meta.k8s.io");
        if is_table && parts.contains(&"v=v1") {
            return Some("meta.k8s.io/v1");
        }
        if is_table && parts.contains(&"v=v1beta1") {
            return Some("meta.k8s.io/v1beta1");
        }
        if parts.first().is_some_and(|m| *m == "application/json" || *m == "*/*") && !media.contains("as=") {
            return None;
        }
    }
    None
}

/// A column: name, type, format, description, priority (1 for `-o wide` only).
type Column = (&'static str, &'static str, &'static str, &'static str, u8);

const NAME: Column = ("Name", "string", "name", "Name must be unique within a namespace.", 0);
const AGE: Column = (
    "Age",
    "string",
    "",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
    0,
);
const CONTAINERS: Column = ("Containers", "string", "", "Names of each container in the template.", 1);
const IMAGES: Column = ("Images", "string", "", "Images referenced by each container in the template.", 1);
const SELECTOR: Column =
    ("Selector", "string", "", "Selector is a label query over pods that should match the replica count.", 1);

fn columns(kind: &str) -> Vec<Column> {
    match kind {
        "Pod" => vec![
            NAME,
            ("Ready", "string", "", "The aggregate readiness state of this pod for accepting traffic.", 0),
            ("Status", "string", "", "The aggregate status of the containers in this pod.", 0),
            (
                "Restarts",
                "string",
                "",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                0,
            ),
            AGE,
            (
                "IP",
                "string",
                "",
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                1,
            ),
            ("Node", "string", "", "NodeName is a request to schedule this pod onto a specific node.", 1),
            (
                "Nominated Node",
                "string",
                "",
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
                1,
            ),
            (
                "Readiness Gates",
                "string",
                "",
                "If specified, all readiness gates will be evaluated for pod readiness.",
                1,
            ),
        ],
        "Deployment" => vec![
            NAME,
            ("Ready", "string", "", "Number of the pod with ready state", 0),
            (
                "Up-to-date",
                "string",
                "",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                0,
            ),
            (
                "Available",
                "string",
                "",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                0,
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "ReplicaSet" => vec![
            NAME,
            ("Desired", "integer", "", "Replicas is the number of desired replicas.", 0),
            ("Current", "integer", "", "Replicas is the most recently observed number of replicas.", 0),
            ("Ready", "integer", "", "The number of ready replicas for this replica set.", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "Job" => vec![
            NAME,
            ("Status", "string", "", "Status of the job.", 0),
            ("Completions", "string", "", "The completion status of the job.", 0),
            ("Duration", "string", "", "Time required to complete the job.", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "Service" => vec![
            NAME,
            ("Type", "string", "", "Type determines how the Service is exposed.", 0),
            ("Cluster-IP", "string", "", "clusterIP is the IP address of the service.", 0),
            (
                "External-IP",
                "string",
                "",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
                0,
            ),
            ("Port(s)", "string", "", "The list of ports that are exposed by this service.", 0),
            AGE,
            (
                "Selector",
                "string",
                "",
                "Route service traffic to pods with label keys and values matching this selector.",
                1,
            ),
        ],
        "ConfigMap" => vec![NAME, ("Data", "integer", "", "Data contains the configuration data.", 0), AGE],
        "Secret" => vec![
            NAME,
            ("Type", "string", "", "The type of secret", 0),
            ("Data", "integer", "", "Data contains the secret data.", 0),
            AGE,
        ],
        "Namespace" => vec![NAME, ("Status", "string", "", "The status of the namespace", 0), AGE],
        "ServiceAccount" => vec![
            NAME,
            (
                "Secrets",
                "integer",
                "",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
                0,
            ),
            AGE,
        ],
        "Node" => vec![
            NAME,
            ("Status", "string", "", "The status of the node", 0),
            ("Roles", "string", "", "The roles of the node", 0),
            AGE,
            ("Version", "string", "", "Kubelet Version reported by the node.", 0),
            ("Internal-IP", "string", "", "List of addresses reachable to the node.", 1),
            ("External-IP", "string", "", "List of addresses reachable to the node.", 1),
            (
                "OS-Image",
                "string",
                "",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                1,
            ),
            (
                "Kernel-Version",
                "string",
                "",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                1,
            ),
            (
                "Container-Runtime",
                "string",
                "",
                "Container runtime version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                1,
            ),
        ],
        "Event" => vec![
            ("Last Seen", "string", "", "Time when last event occurred", 0),
            ("Type", "string", "", "Type of this event (Normal, Warning), new types could be added in the future.", 0),
            (
                "Reason",
                "string",
                "",
                "This should be a short, machine understandable string that gives the reason for this event being generated.",
                0,
            ),
            ("Object", "string", "", "The object that this event is about.", 0),
            ("Message", "string", "", "A human-readable description of the status of this operation.", 0),
            ("Subobject", "string", "", "The field of the object that this event is about.", 1),
            ("Source", "string", "", "The component reporting this event.", 1),
            ("First Seen", "string", "", "The time at which the most recent occurrence of this event was recorded.", 1),
            ("Count", "string", "", "The number of times this event has occurred.", 1),
            ("Name", "string", "name", "Name must be unique within a namespace.", 1),
        ],
        _ => vec![NAME, AGE],
    }
}

/// A list, or one object, as a Table of `version` (`meta.k8s.io/v1`); `None` for anything else (a `Status`).
pub(super) fn from(value: &Value, version: &str, include_object: &str) -> Option<Value> {
    let kind = value.get("kind")?.as_str()?;
    if kind == "Status" {
        return None;
    }
    let (item_kind, items, metadata) = match (kind.strip_suffix("List"), value.get("items").and_then(Value::as_array)) {
        (Some(item_kind), Some(items)) => {
            (item_kind, items.clone(), value.get("metadata").cloned().unwrap_or(json!({})))
        }
        _ => {
            let rv = value.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""));
            (kind, vec![value.clone()], json!({"resourceVersion": rv}))
        }
    };
    let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or("v1");
    let definitions: Vec<Value> = columns(item_kind)
        .into_iter()
        .map(|(name, kind, format, description, priority)| {
            json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority})
        })
        .collect();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut row = json!({"cells": cells(item_kind, item, now)});
            let object = match include_object {
                "None" => None,
                "Object" => {
                    let mut whole = item.clone();
                    whole["apiVersion"] = json!(api_version);
                    whole["kind"] = json!(item_kind);
                    Some(whole)
                }
                _ => Some(json!({
                    "kind": "PartialObjectMetadata", "apiVersion": version,
                    "metadata": item.get("metadata").cloned().unwrap_or(json!({})),
                })),
            };
            if let Some(object) = object {
                row["object"] = object;
            }
            row
        })
        .collect();
    Some(json!({
        "kind": "Table", "apiVersion": version, "metadata": metadata,
        "columnDefinitions": definitions, "rows": rows,
    }))
}

/// A watch event whose object is shown as a one-row Table, as `kubectl get -w` receives them.
pub(super) fn event(event: Value, version: &str, include_object: &str) -> Value {
    match event.get("object").and_then(|o| from(o, version, include_object)) {
        Some(table) => json!({"type": event["type"], "object": table}),
        None => event,
    }
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn seconds_of(timestamp: &str) -> Option<u64> {
    gantry_core::time::parse_rfc3339(timestamp)?.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// How long ago `timestamp` was, as kubectl writes ages (`<unknown>` without one).
fn age(timestamp: &str, now: u64) -> String {
    match seconds_of(timestamp) {
        Some(at) if at <= now => human_duration(now - at),
        Some(_) => "<invalid>".into(),
        None => "<unknown>".into(),
    }
}

/// apimachinery's `duration.HumanDuration`: `45s`, `2m30s`, `10m`, `3h5m`, `20h`, `3d4h`, `40d`, `2y30d`.
pub(super) fn human_duration(seconds: u64) -> String {
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    let years = days / 365;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        if seconds.is_multiple_of(60) { format!("{minutes}m") } else { format!("{minutes}m{}s", seconds % 60) }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        if minutes.is_multiple_of(60) { format!("{hours}h") } else { format!("{hours}h{}m", minutes % 60) }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        if hours.is_multiple_of(24) { format!("{days}d") } else { format!("{days}d{}h", hours % 24) }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        if days.is_multiple_of(365) { format!("{years}y") } else { format!("{years}y{}d", days % 365) }
    } else {
        format!("{years}y")
    }
}

/// Container names and images of a pod template, comma-joined.
fn template_containers(item: &Value) -> (String, String) {
    let containers =
        item.pointer("/spec/template/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// A label selector as kubectl prints it (`app=web`, `<none>`).
fn selector(item: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(labels) = item.pointer("/spec/selector/matchLabels").and_then(Value::as_object) {
        parts.extend(labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())));
    }
    for e in item.pointer("/spec/selector/matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let values: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        match text(e, "/operator") {
            "In" => parts.push(format!("{} in ({})", text(e, "/key"), values.join(","))),
            "NotIn" => parts.push(format!("{} notin ({})", text(e, "/key"), values.join(","))),
            "Exists" => parts.push(text(e, "/key").to_owned()),
            _ => parts.push(format!("!{}", text(e, "/key"))),
        }
    }
    if parts.is_empty() { "<none>".into() } else { parts.join(",") }
}

fn cells(kind: &str, item: &Value, now: u64) -> Vec<Value> {
    let name = json!(text(item, "/metadata/name"));
    let created = age(text(item, "/metadata/creationTimestamp"), now);
    match kind {
        "Pod" => pod_cells(item, name, created, now),
        "Deployment" => {
            let (containers, images) = template_containers(item);
            let desired = item.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
            vec![
                name,
                json!(format!("{}/{desired}", int(item, "/status/readyReplicas"))),
                json!(int(item, "/status/updatedReplicas")),
                json!(int(item, "/status/availableReplicas")),
                json!(created),
                json!(containers),
                json!(images),
                json!(selector(item)),
            ]
        }
        "ReplicaSet" => {
            let (containers, images) = template_containers(item);
            vec![
                name,
                json!(item.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)),
                json!(int(item, "/status/replicas")),
                json!(int(item, "/status/readyReplicas")),
                json!(created),
                json!(containers),
                json!(images),
                json!(selector(item)),
            ]
        }
        "Job" => job_cells(item, name, created, now),
        "Service" => {
            let ports: Vec<String> = item
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| {
                    let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                        Some(node) => format!("{}:{node}/{protocol}", int(p, "/port")),
                        None => format!("{}/{protocol}", int(p, "/port")),
                    }
                })
                .collect();
            let external: Vec<&str> = item
                .pointer("/spec/externalIPs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let selector = item.pointer("/spec/selector").and_then(Value::as_object).map_or("<none>".to_owned(), |s| {
                let parts: Vec<String> =
                    s.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
                if parts.is_empty() { "<none>".into() } else { parts.join(",") }
            });
            let service_type = item.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
            let cluster_ip = item.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("<none>");
            vec![
                name,
                json!(service_type),
                json!(cluster_ip),
                json!(if external.is_empty() { "<none>".to_owned() } else { external.join(",") }),
                json!(if ports.is_empty() { "<none>".to_owned() } else { ports.join(",") }),
                json!(created),
                json!(selector),
            ]
        }
        "ConfigMap" => {
            let count = |f: &str| item.get(f).and_then(Value::as_object).map_or(0, serde_json::Map::len);
            vec![name, json!(count("data") + count("binaryData")), json!(created)]
        }
        "Secret" => {
            let data = item.get("data").and_then(Value::as_object).map_or(0, serde_json::Map::len);
            vec![name, json!(item.get("type").and_then(Value::as_str).unwrap_or("Opaque")), json!(data), json!(created)]
        }
        "Namespace" => {
            vec![name, json!(item.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Active")), json!(created)]
        }
        "ServiceAccount" => {
            vec![name, json!(item.get("secrets").and_then(Value::as_array).map_or(0, Vec::len)), json!(created)]
        }
        "Node" => {
            let ready = item
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let address = |kind: &str| {
                item.pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|a| a["type"] == kind)
                    .and_then(|a| a["address"].as_str())
                    .unwrap_or("<none>")
                    .to_owned()
            };
            let info = |field: &str| {
                let value = text(item, &format!("/status/nodeInfo/{field}"));
                if value.is_empty() { "<unknown>".to_owned() } else { value.to_owned() }
            };
            vec![
                name,
                json!(if ready { "Ready" } else { "NotReady" }),
                json!("<none>"),
                json!(created),
                json!(text(item, "/status/nodeInfo/kubeletVersion")),
                json!(address("InternalIP")),
                json!(address("ExternalIP")),
                json!(info("osImage")),
                json!(info("kernelVersion")),
                json!(info("containerRuntimeVersion")),
            ]
        }
        "Event" => {
            let last =
                [text(item, "/lastTimestamp"), text(item, "/eventTime"), text(item, "/metadata/creationTimestamp")]
                    .into_iter()
                    .find(|t| !t.is_empty())
                    .unwrap_or_default();
            let first =
                [text(item, "/firstTimestamp"), text(item, "/eventTime"), text(item, "/metadata/creationTimestamp")]
                    .into_iter()
                    .find(|t| !t.is_empty())
                    .unwrap_or_default();
            let object =
                format!("{}/{}", text(item, "/involvedObject/kind").to_lowercase(), text(item, "/involvedObject/name"));
            let source = [text(item, "/source/component"), text(item, "/reportingComponent")]
                .into_iter()
                .find(|s| !s.is_empty())
                .unwrap_or_default();
            vec![
                json!(age(last, now)),
                json!(text(item, "/type")),
                json!(text(item, "/reason")),
                json!(object),
                json!(text(item, "/message").trim()),
                json!(text(item, "/involvedObject/fieldPath")),
                json!(source),
                json!(age(first, now)),
                json!(item.get("count").and_then(Value::as_i64).unwrap_or(1).to_string()),
                name,
            ]
        }
        _ => vec![name, json!(created)],
    }
}

/// A pod's READY, STATUS and RESTARTS as kubectl shows them: the reason a container waits or ended
/// (`CrashLoopBackOff`, `ImagePullBackOff`, `Completed`, `Error`) over the phase, `Terminating` once deleted.
fn pod_cells(item: &Value, name: Value, created: String, now: u64) -> Vec<Value> {
    let statuses = item.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
    let total = item.pointer("/spec/containers").and_then(Value::as_array).map_or(statuses.len(), Vec::len);
    let ready = statuses.iter().filter(|s| s["ready"] == true).count();
    let restarts: i64 = statuses.iter().map(|s| s["restartCount"].as_i64().unwrap_or(0)).sum();
    let last_restart = statuses.iter().filter_map(|s| seconds_of(text(s, "/lastState/terminated/finishedAt"))).max();
    let mut reason =
        item.pointer("/status/reason").and_then(Value::as_str).unwrap_or(text(item, "/status/phase")).to_owned();
    for s in statuses.iter().rev() {
        if let Some(waiting) = s.pointer("/state/waiting/reason").and_then(Value::as_str).filter(|r| !r.is_empty()) {
            reason = waiting.to_owned();
        } else if let Some(terminated) = s.pointer("/state/terminated") {
            reason = match terminated.get("reason").and_then(Value::as_str) {
                Some(r) if !r.is_empty() => r.to_owned(),
                _ => format!("ExitCode:{}", int(terminated, "/exitCode")),
            };
        }
    }
    if item.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        reason = "Terminating".into();
    }
    let restarts = match last_restart {
        Some(at) if restarts > 0 && at <= now => format!("{restarts} ({} ago)", human_duration(now - at)),
        _ => restarts.to_string(),
    };
    let ip = item.pointer("/status/podIP").and_then(Value::as_str).unwrap_or("<none>");
    let node = item.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("<none>");
    vec![
        name,
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        json!(created),
        json!(ip),
        json!(node),
        json!("<none>"),
        json!("<none>"),
    ]
}

/// A Job's STATUS, COMPLETIONS and DURATION as kubectl 1.33 shows them.
fn job_cells(item: &Value, name: Value, created: String, now: u64) -> Vec<Value> {
    let condition = |kind: &str| {
        item.pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == kind && c["status"] == "True")
    };
    let status = if item.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        "Terminating"
    } else if condition("Complete") {
        "Complete"
    } else if condition("Failed") {
        "Failed"
    } else if condition("Suspended") {
        "Suspended"
    } else if condition("FailureTarget") {
        "FailureTarget"
    } else if condition("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let succeeded = int(item, "/status/succeeded");
    let completions = match item.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = item.pointer("/spec/parallelism").and_then(Value::as_i64).unwrap_or(1);
            if parallelism > 1 { format!("{succeeded}/1 of {parallelism}") } else { format!("{succeeded}/1") }
        }
    };
    let start = seconds_of(text(item, "/status/startTime"));
    let end = seconds_of(text(item, "/status/completionTime")).unwrap_or(now);
    let duration = start.filter(|s| *s <= end).map_or(String::new(), |s| human_duration(end - s));
    let (containers, images) = template_containers(item);
    vec![
        name,
        json!(status),
        json!(completions),
        json!(duration),
        json!(created),
        json!(containers),
        json!(images),
        json!(selector(item)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_kubectl_prints_ages() {
        for (seconds, text) in [
            (45, "45s"),
            (119, "119s"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 + 300, "3h5m"),
            (20 * 3600, "20h"),
            (3 * 86_400 + 4 * 3600, "3d4h"),
            (40 * 86_400, "40d"),
            (2 * 365 * 86_400 + 30 * 86_400, "2y30d"),
        ] {
            assert_eq!(human_duration(seconds), text, "{seconds}");
        }
    }

    #[test]
    fn the_first_acceptable_media_type_decides() {
        let with = |accept: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, accept.parse().unwrap());
            wanted(&h)
        };
        assert_eq!(
            with(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            ),
            Some("meta.k8s.io/v1")
        );
        assert_eq!(with("application/json, application/json;as=Table;v=v1;g=meta.k8s.io"), None);
        assert_eq!(with("application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"), None);
    }
}
