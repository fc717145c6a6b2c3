//! Events the simulated controllers and kubelet record, as their upstream counterparts word them
//! (`kubectl get events`, `kubectl describe`): the Deployment controller's `ScalingReplicaSet`, the ReplicaSet and
//! Job controllers' `SuccessfulCreate` / `SuccessfulDelete`, the Job controller's `Completed` and
//! `BackoffLimitExceeded`, the scheduler's `Scheduled`, and the kubelet's `Pulled`, `Created`, `Started`, `BackOff`
//! and image pull failures (<https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/>).
//!
//! Events are `core/v1` Event objects in the involved object's namespace. A repeated warning (same object, reason,
//! message and source: a crash loop's `BackOff`) raises `count` and `lastTimestamp` instead of adding an Event, as
//! client-go's aggregation does; normal events do not repeat here and are not aggregated. Upstream keeps events for
//! an hour; here each namespace keeps its newest 1,000.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::resources::builtins;
use super::store::{Key, Store, now_rfc3339};

/// Events kept per namespace.
const KEPT: usize = 1000;

fn event_kind() -> usize {
    static KIND: OnceLock<usize> = OnceLock::new();
    // The built-in types come first in the simulator's type list, in `builtins()` order.
    *KIND.get_or_init(|| builtins().iter().position(|t| t.kind == "Event").unwrap_or(usize::MAX))
}

/// What happened, to whom, said by whom.
pub(super) struct Event<'a> {
    /// `Normal` or `Warning`.
    pub(super) kind: &'a str,
    pub(super) reason: &'a str,
    pub(super) message: String,
    /// The component that reports it (`deployment-controller`, `kubelet`).
    pub(super) source: &'a str,
}

impl<'a> Event<'a> {
    pub(super) fn normal(reason: &'a str, message: String, source: &'a str) -> Self {
        Self { kind: "Normal", reason, message, source }
    }

    pub(super) fn warning(reason: &'a str, message: String, source: &'a str) -> Self {
        Self { kind: "Warning", reason, message, source }
    }
}

/// Records `event` about `involved` (an object with `apiVersion`, `kind` and metadata).
pub(super) fn record(store: &mut Store, involved: &Value, event: Event<'_>) {
    let text = |p: &str| involved.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (namespace, name, uid) = (text("/metadata/namespace"), text("/metadata/name"), text("/metadata/uid"));
    if namespace.is_empty() || event_kind() == usize::MAX {
        return;
    }
    let now = now_rfc3339();
    // Only warnings repeat here (a crash loop's back-offs): normal events are not looked up for aggregation,
    // which keeps recording them cheap.
    let same =
        (event.kind == "Warning").then(|| store.list(event_kind(), Some(&namespace))).into_iter().flatten().find(|e| {
            e.pointer("/involvedObject/uid").and_then(Value::as_str) == Some(uid.as_str())
                && e.get("reason").and_then(Value::as_str) == Some(event.reason)
                && e.get("message").and_then(Value::as_str) == Some(event.message.as_str())
                && e.pointer("/source/component").and_then(Value::as_str) == Some(event.source)
        });
    if let Some(same) = same {
        let mut repeated = same.clone();
        repeated["count"] = json!(same.get("count").and_then(Value::as_i64).unwrap_or(1) + 1);
        repeated["lastTimestamp"] = json!(now);
        let key = Key { kind: event_kind(), namespace, name: text_of(&repeated, "/metadata/name") };
        let _ = store.update(&key, repeated);
        return;
    }
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    if SEQUENCE.load(Ordering::Relaxed).is_multiple_of(100) {
        trim(store, &namespace);
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let event_name = format!("{name}.{:x}", nanos.wrapping_add(SEQUENCE.fetch_add(1, Ordering::Relaxed)));
    let object = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": event_name, "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion").cloned().unwrap_or(json!("v1")),
            "kind": involved.get("kind").cloned().unwrap_or(json!("")),
            "name": name, "namespace": namespace, "uid": uid,
            "resourceVersion": text("/metadata/resourceVersion"),
        },
        "reason": event.reason, "message": event.message, "type": event.kind,
        "source": {"component": event.source},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "reportingComponent": event.source, "reportingInstance": "",
        "eventTime": null,
    });
    let _ = store.create(Key { kind: event_kind(), namespace, name: event_name }, object, false);
}

/// Keeps the namespace's newest [`KEPT`] events (checked every hundredth event, so briefly a few more).
fn trim(store: &mut Store, namespace: &str) {
    let keys = store.keys(event_kind(), Some(namespace));
    if keys.len() <= KEPT {
        return;
    }
    let mut by_age: Vec<(u64, Key)> = keys
        .into_iter()
        .map(|k| {
            let rv = store.get(&k).and_then(|e| e.pointer("/metadata/resourceVersion")?.as_str()?.parse().ok());
            (rv.unwrap_or(0), k)
        })
        .collect();
    by_age.sort_by_key(|(rv, _)| *rv);
    let excess = by_age.len() - KEPT;
    for (_, key) in by_age.into_iter().take(excess) {
        let _ = store.delete(&key);
    }
}

fn text_of(v: &Value, pointer: &str) -> String {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned()
}
