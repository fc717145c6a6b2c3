//! What an apply changes: the fields in which the object the server would store differs from the live one.

use serde_json::Value;

/// Metadata the server writes on every change, which says nothing about what the user changed.
const SERVER_METADATA: [&str; 6] =
    ["resourceVersion", "managedFields", "generation", "uid", "creationTimestamp", "selfLink"];

/// The fields that differ between `live` and `after`, as `path: old → new` lines (`status` and server-written
/// metadata left out). With `conceal`, values are left out too (`data.password: changed`), as for Secrets.
pub(crate) fn changed_fields(live: &Value, after: &Value, conceal: bool) -> Vec<String> {
    let mut out = Vec::new();
    let (mut live, mut after) = (live.clone(), after.clone());
    for object in [&mut live, &mut after] {
        if let Some(o) = object.as_object_mut() {
            o.remove("status");
            if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                for key in SERVER_METADATA {
                    meta.remove(key);
                }
            }
        }
    }
    walk("", &live, &after, conceal, &mut out);
    out
}

fn walk(path: &str, old: &Value, new: &Value, conceal: bool, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let (x, y) = (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
                walk(&join(key), x, y, conceal, out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(&format!("{path}[{i}]"), x, y, conceal, out);
            }
        }
        _ if conceal => out.push(format!("{path}: changed")),
        _ => out.push(format!("{path}: {} → {}", show(old), show(new))),
    }
}

/// A value on one line, cut to a readable length.
fn show(v: &Value) -> String {
    let text = match v {
        Value::Null => "(none)".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 80 { format!("{}…", text.chars().take(79).collect::<String>()) } else { text }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reports_changed_added_and_removed_fields_by_path() {
        let live = json!({"metadata": {"name": "web", "resourceVersion": "7", "labels": {"a": "1"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "web:1"}]}}},
            "status": {"replicas": 2}});
        let after = json!({"metadata": {"name": "web", "resourceVersion": "9", "labels": {"b": "2"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}},
            "status": {"replicas": 3}});
        assert_eq!(
            changed_fields(&live, &after, false),
            [
                "metadata.labels.a: 1 → (none)",
                "metadata.labels.b: (none) → 2",
                "spec.replicas: 2 → 3",
                "spec.template.spec.containers[0].image: web:1 → web:2",
            ]
        );
        assert!(changed_fields(&live, &live, false).is_empty());
    }

    #[test]
    fn concealed_values_never_show() {
        let live = json!({"data": {"password": "aHVudGVyMg=="}});
        let after = json!({"data": {"password": "c2VjcmV0"}});
        let lines = changed_fields(&live, &after, true);
        assert_eq!(lines, ["data.password: changed"]);
    }
}
