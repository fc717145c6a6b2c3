//! Patches: JSON patch (RFC 6902), JSON merge patch (RFC 7386), and the simulator's approximation of strategic merge
//! patch, which server-side apply uses too.

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

/// The parent container and last token of a JSON pointer.
fn parent<'v>(target: &'v mut Value, path: &str) -> Result<(&'v mut Value, String), String> {
    let (head, last) = path.rsplit_once('/').ok_or_else(|| format!("invalid path `{path}`"))?;
    let container = if head.is_empty() {
        target
    } else {
        target.pointer_mut(head).ok_or_else(|| format!("path `{head}` does not exist"))?
    };
    Ok((container, last.replace("~1", "/").replace("~0", "~")))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (container, token) = parent(target, path)?;
    match container {
        Value::Object(m) => {
            m.insert(token, value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if token == "-" {
                a.len()
            } else {
                token.parse::<usize>().map_err(|_| format!("bad index `{token}`"))?
            };
            if i > a.len() {
                return Err(format!("index {i} out of bounds"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("cannot add to `{path}`")),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (container, token) = parent(target, path)?;
    match container {
        Value::Object(m) => m.remove(&token).ok_or_else(|| format!("`{path}` does not exist")),
        Value::Array(a) => {
            let i = token.parse::<usize>().map_err(|_| format!("bad index `{token}`"))?;
            if i >= a.len() {
                return Err(format!("index {i} out of bounds"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("cannot remove `{path}`")),
    }
}

/// RFC 6902: applies every operation, or none (the target is left as it was on error).
pub(crate) fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("a JSON patch is a list of operations")?;
    let mut work = target.clone();
    for op in ops {
        let path = op.get("path").and_then(Value::as_str).ok_or("an operation needs a path")?;
        let value = || op.get("value").cloned().ok_or_else(|| format!("operation on `{path}` needs a value"));
        match op.get("op").and_then(Value::as_str) {
            Some("add") => add(&mut work, path, value()?)?,
            Some("remove") => {
                remove(&mut work, path)?;
            }
            Some("replace") => {
                remove(&mut work, path)?;
                add(&mut work, path, value()?)?;
            }
            Some("move") => {
                let from = op.get("from").and_then(Value::as_str).ok_or("move needs from")?;
                let moved = remove(&mut work, from)?;
                add(&mut work, path, moved)?;
            }
            Some("copy") => {
                let from = op.get("from").and_then(Value::as_str).ok_or("copy needs from")?;
                let copied = work.pointer(from).cloned().ok_or_else(|| format!("`{from}` does not exist"))?;
                add(&mut work, path, copied)?;
            }
            Some("test") => {
                if work.pointer(path) != Some(&value()?) {
                    return Err(format!("test of `{path}` failed"));
                }
            }
            other => return Err(format!("unknown operation {other:?}")),
        }
    }
    *target = work;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_patch_follows_rfc_6902() {
        let mut t = json!({"a": {"b": [1, 2]}, "c": "x"});
        json_patch(
            &mut t,
            &json!([
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "replace", "path": "/c", "value": "y"},
                {"op": "move", "from": "/c", "path": "/d"},
                {"op": "remove", "path": "/a/b/0"},
                {"op": "add", "path": "/metadata~1x", "value": true},
            ]),
        )
        .unwrap();
        assert_eq!(t, json!({"a": {"b": [2, 3]}, "d": "y", "metadata/x": true}));
        let before = t.clone();
        assert!(
            json_patch(&mut t, &json!([{"op": "remove", "path": "/d"}, {"op": "test", "path": "/a/b/0", "value": 9}]))
                .is_err()
        );
        assert_eq!(t, before, "all or nothing");
    }

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
