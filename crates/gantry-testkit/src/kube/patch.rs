//! Patches: JSON merge patch (RFC 7386), and the simulator's approximation of strategic merge patch, which server-side
//! apply uses too.

use serde_json::Value;

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The merge key of a list of objects: `name` for containers, volumes, env and most others; `containerPort` for a
/// container's ports; `port` for a service's. `None` means the list is replaced.
fn merge_key(items: &[Value]) -> Option<&'static str> {
    ["name", "containerPort", "port", "type"]
        .into_iter()
        .find(|key| !items.is_empty() && items.iter().all(|i| i.get(*key).is_some()))
}

/// Strategic merge, approximated: like [`merge`], but lists of objects that all carry a merge key (see
/// [`merge_key`]) merge item by item; `$patch: delete` on an item removes it; other `$`-directives are dropped.
pub(crate) fn strategic(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch) {
        (Some(t), Value::Object(p)) => {
            for (k, v) in p {
                if k.starts_with('$') {
                    continue;
                }
                if v.is_null() {
                    t.remove(k);
                    continue;
                }
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                match (slot.as_array_mut(), v.as_array()) {
                    (Some(old), Some(new)) if merge_key(new).is_some() && merge_key(old).is_some() => {
                        let key = merge_key(new).expect("checked");
                        for item in new {
                            let id = item.get(key);
                            let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                            match old.iter().position(|o| o.get(key) == id) {
                                Some(i) if delete => {
                                    old.remove(i);
                                }
                                Some(i) => strategic(&mut old[i], item),
                                None if delete => {}
                                None => {
                                    let mut fresh = Value::Object(Default::default());
                                    strategic(&mut fresh, item);
                                    old.push(fresh);
                                }
                            }
                        }
                    }
                    _ => {
                        if slot.is_object() && v.is_object() {
                            strategic(slot, v);
                        } else {
                            let mut fresh = if v.is_object() { Value::Object(Default::default()) } else { Value::Null };
                            if v.is_object() {
                                strategic(&mut fresh, v);
                            } else {
                                fresh = strip_directives(v);
                            }
                            *slot = fresh;
                        }
                    }
                }
            }
        }
        (_, other) => *target = strip_directives(other),
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"list": [1, 2]});
        merge(&mut t, &json!({"list": [3]}));
        assert_eq!(t, json!({"list": [3]}), "lists are replaced");
    }

    #[test]
    fn strategic_merge_merges_named_lists() {
        let mut t =
            json!({"spec": {"containers": [{"name": "app", "image": "a:1"}, {"name": "sidecar", "image": "s:1"}]}});
        strategic(&mut t, &json!({"spec": {"containers": [{"name": "app", "image": "a:2"}]}}));
        assert_eq!(t["spec"]["containers"][0]["image"], "a:2");
        assert_eq!(t["spec"]["containers"][1]["image"], "s:1", "the other container is kept");
        strategic(&mut t, &json!({"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}));
        assert_eq!(t["spec"]["containers"].as_array().unwrap().len(), 1);
        strategic(&mut t, &json!({"spec": {"$retainKeys": ["x"], "replicas": 2}}));
        assert_eq!(t["spec"]["replicas"], 2);
        assert!(t["spec"].get("$retainKeys").is_none());
    }
}
