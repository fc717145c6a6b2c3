//! Server-side apply's field ownership, approximated: who set each field (`metadata.managedFields`), and the
//! conflicts an apply meets when it changes a field another manager set.
//! <https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts>
//!
//! Fields are leaves of the object: scalars, lists of scalars (atomic), and the fields of list items keyed by
//! `name` (containers, env, ports, volumes), as `k:{"name":...}` in `fieldsV1`. Status, `apiVersion`, `kind` and
//! the metadata the server sets are nobody's. Not modelled: other merge keys (`containerPort`, `mountPath`...),
//! `x-kubernetes-list-type: set`, and shared ownership moving on re-apply of an unchanged value by another manager.

use serde_json::{Map, Value, json};

/// One step of a field path: a map field, or a list item by its `name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Seg {
    Field(String),
    Key(String),
}

pub(crate) type Path = Vec<Seg>;

/// A field some other manager set to another value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Conflict {
    pub(crate) manager: String,
    pub(crate) field: String,
}

/// Whether a list is keyed by `name`: every item is a map with a string `name`.
fn keyed(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|i| i.get("name").is_some_and(Value::is_string))
}

fn walk(v: &Value, at: &mut Path, out: &mut Vec<Path>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                at.push(Seg::Field(k.clone()));
                walk(v, at, out);
                at.pop();
            }
        }
        Value::Array(items) if keyed(items) => {
            for item in items {
                let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
                at.push(Seg::Key(name.to_owned()));
                walk(item, at, out);
                at.pop();
            }
        }
        _ => out.push(at.clone()),
    }
}

/// The fields an object sets (not its status, type, or server-set metadata).
pub(crate) fn fields(object: &Value) -> Vec<Path> {
    let mut out = Vec::new();
    let Some(map) = object.as_object() else { return out };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for owned in ["labels", "annotations"] {
                    if let Some(v) = v.get(owned) {
                        let mut at = vec![Seg::Field("metadata".into()), Seg::Field(owned.into())];
                        walk(v, &mut at, &mut out);
                    }
                }
            }
            _ => walk(v, &mut vec![Seg::Field(k.clone())], &mut out),
        }
    }
    out
}

/// The value at a path.
pub(crate) fn get<'v>(object: &'v Value, path: &Path) -> Option<&'v Value> {
    let mut at = object;
    for seg in path {
        at = match seg {
            Seg::Field(f) => at.get(f)?,
            Seg::Key(name) => at.as_array()?.iter().find(|i| i.get("name").and_then(Value::as_str) == Some(name))?,
        };
    }
    Some(at)
}

/// As the API server writes a path in a conflict: `.spec.template.spec.containers[name="app"].image`.
pub(crate) fn display(path: &Path) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Field(f) => format!(".{f}"),
            Seg::Key(n) => format!("[name=\"{n}\"]"),
        })
        .collect()
}

/// Paths as `fieldsV1`: `{"f:spec": {"f:replicas": {}, "f:template": {...}}}`, list items as `k:{"name":"app"}`
/// with `.` for the item itself.
pub(crate) fn to_fields_v1(paths: &[Path]) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut at = &mut root;
        for seg in path {
            let key = match seg {
                Seg::Field(f) => format!("f:{f}"),
                Seg::Key(n) => format!("k:{}", json!({ "name": n })),
            };
            let entry = at.entry(key).or_insert_with(|| json!({}));
            if matches!(seg, Seg::Key(_)) {
                entry.as_object_mut().map(|m| m.entry(".").or_insert_with(|| json!({})));
            }
            at = entry.as_object_mut().expect("fieldsV1 nodes are maps");
        }
    }
    Value::Object(root)
}

/// The leaf paths a `fieldsV1` set holds.
pub(crate) fn from_fields_v1(set: &Value) -> Vec<Path> {
    fn go(node: &Value, at: &mut Path, out: &mut Vec<Path>) {
        let Some(map) = node.as_object() else { return };
        let children: Vec<_> = map.iter().filter(|(k, _)| k.as_str() != ".").collect();
        if children.is_empty() {
            if !at.is_empty() {
                out.push(at.clone());
            }
            return;
        }
        for (k, v) in children {
            let seg = if let Some(f) = k.strip_prefix("f:") {
                Seg::Field(f.to_owned())
            } else if let Some(key) = k.strip_prefix("k:") {
                let name = serde_json::from_str::<Value>(key)
                    .ok()
                    .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default();
                Seg::Key(name)
            } else {
                continue;
            };
            at.push(seg);
            go(v, at, out);
            at.pop();
        }
    }
    let mut out = Vec::new();
    go(set, &mut Vec::new(), &mut out);
    out
}

fn entry(manager: &str, operation: &str, api_version: &str, paths: &[Path], time: &str) -> Value {
    json!({
        "manager": manager, "operation": operation, "apiVersion": api_version, "time": time,
        "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(paths),
    })
}

fn is(e: &Value, manager: &str, operation: &str) -> bool {
    e.get("manager").and_then(Value::as_str) == Some(manager)
        && e.get("operation").and_then(Value::as_str) == Some(operation)
}

/// The managed fields after `manager` applied `applied` onto `live`: `Err` with the conflicts when it changes a
/// field another manager set and `force` is off; with `force`, those fields become the applier's.
pub(crate) fn apply(
    managed: &[Value],
    manager: &str,
    applied: &Value,
    live: &Value,
    force: bool,
    api_version: &str,
    time: &str,
) -> Result<Vec<Value>, Vec<Conflict>> {
    let mine = fields(applied);
    let mut conflicts = Vec::new();
    let mut taken: Vec<(usize, Path)> = Vec::new();
    for (i, e) in managed.iter().enumerate() {
        if is(e, manager, "Apply") {
            continue;
        }
        let other = e.get("manager").and_then(Value::as_str).unwrap_or_default();
        for path in from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null)) {
            let changes = mine.contains(&path) && get(live, &path).is_some() && get(live, &path) != get(applied, &path);
            if changes {
                conflicts.push(Conflict { manager: other.to_owned(), field: display(&path) });
                taken.push((i, path));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let mut out = Vec::new();
    for (i, e) in managed.iter().enumerate() {
        if is(e, manager, "Apply") {
            continue;
        }
        let lost: Vec<&Path> = taken.iter().filter(|(j, _)| *j == i).map(|(_, p)| p).collect();
        if lost.is_empty() {
            out.push(e.clone());
            continue;
        }
        let kept: Vec<Path> = from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null))
            .into_iter()
            .filter(|p| !lost.contains(&p))
            .collect();
        if !kept.is_empty() {
            let mut e = e.clone();
            e["fieldsV1"] = to_fields_v1(&kept);
            out.push(e);
        }
    }
    out.push(entry(manager, "Apply", api_version, &mine, time));
    Ok(out)
}

/// The fields `manager` applied before and no longer applies, that no other manager owns: an apply removes them
/// from the object (<https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management>).
pub(crate) fn dropped(managed: &[Value], manager: &str, applied: &Value) -> Vec<Path> {
    let now: Vec<Path> = fields(applied);
    let Some(before) = managed.iter().find(|e| is(e, manager, "Apply")) else { return Vec::new() };
    let others: Vec<Path> = managed
        .iter()
        .filter(|e| !is(e, manager, "Apply"))
        .flat_map(|e| from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null)))
        .collect();
    from_fields_v1(before.get("fieldsV1").unwrap_or(&Value::Null))
        .into_iter()
        .filter(|p| !now.contains(p) && !others.contains(p))
        .collect()
}

/// Removes the field at `path`; removing a keyed list item's `name` removes the item.
pub(crate) fn remove(object: &mut Value, path: &Path) {
    let Some((last, parent_path)) = path.split_last() else { return };
    if let (Seg::Field(f), Some(Seg::Key(item))) = (last, parent_path.last())
        && f == "name"
    {
        let list_path = &parent_path[..parent_path.len() - 1];
        if let Some(Value::Array(items)) = get_mut(object, list_path) {
            items.retain(|i| i.get("name").and_then(Value::as_str) != Some(item));
        }
        return;
    }
    if let (Seg::Field(f), Some(Value::Object(parent))) = (last, get_mut(object, parent_path)) {
        parent.remove(f);
    }
}

fn get_mut<'v>(object: &'v mut Value, path: &[Seg]) -> Option<&'v mut Value> {
    let mut at = object;
    for seg in path {
        at = match seg {
            Seg::Field(f) => at.get_mut(f)?,
            Seg::Key(name) => {
                at.as_array_mut()?.iter_mut().find(|i| i.get("name").and_then(Value::as_str) == Some(name))?
            }
        };
    }
    Some(at)
}

/// The managed fields after an update (create, replace, or a non-apply patch) by `manager`: it owns what it changed,
/// and nobody else does any more. Updates never conflict.
pub(crate) fn update(
    managed: &[Value],
    manager: &str,
    old: Option<&Value>,
    new: &Value,
    api_version: &str,
    time: &str,
) -> Vec<Value> {
    let changed: Vec<Path> =
        fields(new).into_iter().filter(|p| old.is_none_or(|old| get(old, p) != get(new, p))).collect();
    if changed.is_empty() {
        return managed.to_vec();
    }
    let mut out = Vec::new();
    let mut own: Vec<Path> = Vec::new();
    for e in managed {
        let paths = from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null));
        if is(e, manager, "Update") {
            own = paths;
            continue;
        }
        let kept: Vec<Path> = paths.iter().filter(|p| !changed.contains(p)).cloned().collect();
        if kept.len() == paths.len() {
            out.push(e.clone());
        } else if !kept.is_empty() {
            let mut e = e.clone();
            e["fieldsV1"] = to_fields_v1(&kept);
            out.push(e);
        }
    }
    for p in changed {
        if !own.contains(&p) {
            own.push(p);
        }
    }
    out.push(entry(manager, "Update", api_version, &own, time));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(image: &str, replicas: u32) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}}})
    }

    #[test]
    fn fields_and_their_wire_form_round_trip() {
        let paths = fields(&deployment("web:1", 2));
        let shown: Vec<String> = paths.iter().map(display).collect();
        assert_eq!(
            shown,
            [
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"app\"].image",
                ".spec.template.spec.containers[name=\"app\"].name"
            ]
        );
        let wire = to_fields_v1(&paths);
        assert!(
            wire.pointer("/f:spec/f:template/f:spec/f:containers/k:{\"name\":\"app\"}/f:image").is_some(),
            "{wire}"
        );
        let mut back = from_fields_v1(&wire);
        back.sort();
        let mut paths = paths;
        paths.sort();
        assert_eq!(back, paths);
    }

    #[test]
    fn fields_a_manager_stops_applying_are_dropped_unless_someone_else_owns_them() {
        let mut first = deployment("web:1", 2);
        first["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sidecar", "image": "proxy:1"}));
        first["metadata"]["labels"]["tier"] = json!("front");
        let managed = apply(&[], "gantry", &first, &json!({}), true, "apps/v1", "t").unwrap();
        let second = deployment("web:1", 2);
        let mut gone: Vec<String> = dropped(&managed, "gantry", &second).iter().map(display).collect();
        gone.sort();
        assert_eq!(
            gone,
            [
                ".metadata.labels.tier",
                ".spec.template.spec.containers[name=\"sidecar\"].image",
                ".spec.template.spec.containers[name=\"sidecar\"].name"
            ]
        );
        let mut live = first.clone();
        for path in dropped(&managed, "gantry", &second) {
            remove(&mut live, &path);
        }
        assert_eq!(live, second, "the sidecar and the label are gone");
        // A field another manager also set stays.
        let managed = update(
            &managed,
            "kubectl-label",
            Some(&json!({})),
            &json!({"metadata": {"labels": {"tier": "front"}}}),
            "v1",
            "t",
        );
        assert!(!dropped(&managed, "gantry", &second).iter().any(|p| display(p) == ".metadata.labels.tier"));
    }

    #[test]
    fn an_apply_conflicts_with_another_managers_different_value_unless_forced() {
        let created = deployment("web:1", 2);
        let managed = update(&[], "kubectl-create", None, &created, "apps/v1", "t");
        let mut live = created.clone();
        live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("web:hotfix");
        let managed = update(&managed, "kubectl-set", Some(&created), &live, "apps/v1", "t");

        // Same values as live: no conflict, whoever set them.
        assert!(apply(&managed, "gantry", &deployment("web:hotfix", 2), &live, false, "apps/v1", "t").is_ok());
        // Another image: conflict with the one who set the image, and only on it.
        let conflicts = apply(&managed, "gantry", &deployment("web:2", 2), &live, false, "apps/v1", "t").unwrap_err();
        assert_eq!(
            conflicts,
            [Conflict {
                manager: "kubectl-set".into(),
                field: ".spec.template.spec.containers[name=\"app\"].image".into()
            }]
        );
        // Forced: the image becomes gantry's.
        let forced = apply(&managed, "gantry", &deployment("web:2", 2), &live, true, "apps/v1", "t").unwrap();
        let set = forced.iter().find(|e| is(e, "kubectl-set", "Update"));
        assert!(set.is_none(), "kubectl-set owned only the image, which it lost: {forced:?}");
        assert!(forced.iter().any(|e| is(e, "gantry", "Apply")));
    }
}
