//! Kubernetes Events that mark what Gantry did to an object, for `kubectl describe` and `kubectl get events`.

use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

/// The object an Event is about.
pub(crate) struct Involved<'a> {
    pub(crate) kind: &'static str,
    pub(crate) api_version: &'static str,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    pub(crate) uid: Option<&'a str>,
}

/// Records an Event (best effort: a failure to record is logged, never fails the step).
pub(crate) async fn record(client: &kube::Client, on: &Involved<'_>, warning: bool, reason: &str, message: &str) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let (namespace, name) = (on.namespace, on.name);
    let event = json!({
        "metadata": {"generateName": format!("{name}."), "namespace": namespace},
        "involvedObject": {"kind": on.kind, "apiVersion": on.api_version, "name": name, "namespace": namespace, "uid": on.uid},
        "reason": reason, "message": message, "type": if warning { "Warning" } else { "Normal" },
        "source": {"component": "gantry"}, "reportingComponent": "gantry", "count": 1,
        "firstTimestamp": now, "lastTimestamp": now,
    });
    let Ok(event) = serde_json::from_value::<Event>(event) else { return };
    if let Err(e) = Api::<Event>::namespaced(client.clone(), namespace).create(&PostParams::default(), &event).await {
        tracing::warn!(error = %e, reason, "could not record a Kubernetes event");
    }
}
