//! Deletion as the API server and its garbage and namespace controllers carry it out: finalizers, the three
//! propagation policies, and namespace termination.
//!
//! - An object with `metadata.finalizers` is not removed by a DELETE: it gets `deletionTimestamp` (and
//!   `deletionGracePeriodSeconds: 0`) and stays, read-only but for its finalizers, until the last one is removed
//!   (then it is gone). No finalizer may be added meanwhile
//!   (<https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/>).
//! - `propagationPolicy`: `Background` (the default) removes the owner, then its dependents; `Foreground` keeps the
//!   owner with the `foregroundDeletion` finalizer until the garbage collector has removed its dependents (they are
//!   deleted in the foreground too, so a Deployment waits for its ReplicaSets, which wait for their pods); `Orphan`
//!   leaves the dependents without their reference to the owner
//!   (<https://kubernetes.io/docs/concepts/architecture/garbage-collection/#cascading-deletion>).
//! - A deleted namespace is `Terminating` (`deletionTimestamp`, `status.phase`, conditions saying what remains);
//!   creates in it are refused (`403`, cause `NamespaceTerminating`); its content is deleted, and once nothing is
//!   left (finalizers included) the namespace is removed
//!   (<https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/#deleting-a-namespace>).
//!
//! Not modelled: graceful deletion of pods (a pod without finalizers goes at once, where a kubelet would stop it
//! over `terminationGracePeriodSeconds`), `blockOwnerDeletion` (every dependent blocks), and the `orphan` finalizer
//! (orphaning happens during the DELETE).

use serde_json::{Value, json};

use super::store::{Key, Store, StoreError, metadata, now_rfc3339};

/// The finalizer that keeps an owner until its dependents are gone (`propagationPolicy=Foreground`).
pub(super) const FOREGROUND: &str = "foregroundDeletion";

/// How the dependents of a deleted object are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    /// `propagationPolicy` as sent (`None` if it is not one of the three).
    pub(super) fn parse(policy: &str) -> Option<Self> {
        match policy {
            "Background" => Some(Self::Background),
            "Foreground" => Some(Self::Foreground),
            "Orphan" => Some(Self::Orphan),
            _ => None,
        }
    }
}

/// What a DELETE did: the object is gone, or it waits for finalizers with `deletionTimestamp` set.
pub(super) enum Deleted {
    Gone(Value),
    Pending(Value),
}

fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Whether the object is being deleted (has a `deletionTimestamp`).
pub(super) fn deleting(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// Deletes the object at `key` as `policy` says.
pub(super) fn delete(store: &mut Store, key: &Key, policy: Propagation) -> Result<Deleted, StoreError> {
    let object = store.get(key).cloned().ok_or(StoreError::NotFound)?;
    let uid = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
    if deleting(&object) {
        return Ok(Deleted::Pending(object));
    }
    if policy == Propagation::Orphan {
        orphan(store, &uid);
    }
    let mut pending = finalizers(&object);
    if policy == Propagation::Foreground && !store.owned_by(&uid).is_empty() {
        pending.push(FOREGROUND.to_owned());
    }
    // A namespace waits for its content (its `spec.finalizers`, `kubernetes`), which the namespace controller
    // deletes.
    let namespace = key.namespace.is_empty() && object.get("kind").and_then(Value::as_str) == Some("Namespace");
    if !pending.is_empty() || namespace {
        let mut marked = object;
        let meta = metadata(&mut marked);
        meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if !pending.is_empty() {
            meta.insert("finalizers".into(), json!(pending));
        }
        if namespace {
            marked["status"]["phase"] = json!("Terminating");
        }
        return store.begin_deletion(key, marked).map(Deleted::Pending);
    }
    let gone = store.delete(key)?;
    if policy == Propagation::Background {
        for dependent in store.owned_by(&uid) {
            let _ = delete(store, &dependent, Propagation::Background);
        }
    }
    Ok(Deleted::Gone(gone))
}

/// Dependents of `uid` lose their reference to it.
fn orphan(store: &mut Store, uid: &str) {
    for dependent in store.owned_by(uid) {
        if let Some(mut d) = store.get(&dependent).cloned() {
            if let Some(refs) = d.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
            }
            if d.pointer("/metadata/ownerReferences").and_then(Value::as_array).is_some_and(Vec::is_empty) {
                metadata(&mut d).remove("ownerReferences");
            }
            let _ = store.update(&dependent, d);
        }
    }
}

/// The garbage collector's part of foreground deletion: an owner being deleted in the
/// foreground has its dependents deleted in the foreground; once none is left its `foregroundDeletion` finalizer
/// is removed (and, with no other finalizer, it is gone).
pub(super) fn finish_foreground(store: &mut Store) {
    for key in &store.being_deleted() {
        let Some(object) = store.get(key).cloned() else { continue };
        if !deleting(&object) || !finalizers(&object).iter().any(|f| f == FOREGROUND) {
            continue;
        }
        let uid = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
        let dependents = store.owned_by(&uid);
        if dependents.is_empty() {
            remove_finalizer(store, key, &object, FOREGROUND);
        } else {
            for dependent in dependents {
                let _ = delete(store, &dependent, Propagation::Foreground);
            }
        }
    }
}

fn remove_finalizer(store: &mut Store, key: &Key, object: &Value, finalizer: &str) {
    let mut updated = object.clone();
    let left: Vec<String> = finalizers(object).into_iter().filter(|f| f != finalizer).collect();
    metadata(&mut updated).insert("finalizers".into(), json!(left));
    let _ = store.update(key, updated);
}

/// The namespace controller: each namespace being deleted has its content deleted; its status says what remains;
/// when nothing does, it is removed. `kinds` are the served types' store indexes, `namespace_kind` the Namespace
/// type's.
pub(super) fn finish_namespaces(store: &mut Store, namespace_kind: usize, kinds: &[(usize, String)]) {
    let terminating: Vec<Value> =
        store.list(namespace_kind, Some("")).into_iter().filter(|n| deleting(n)).cloned().collect();
    for namespace in terminating {
        let name = namespace.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut remaining: Vec<(String, usize)> = Vec::new();
        let mut blocking: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for (kind, plural) in kinds {
            let keys = store.keys(*kind, Some(&name));
            for key in &keys {
                let _ = delete(store, key, Propagation::Background);
            }
            let left: Vec<&Value> = store.list(*kind, Some(&name));
            for object in &left {
                for f in finalizers(object) {
                    *blocking.entry(f).or_default() += 1;
                }
            }
            if !left.is_empty() {
                remaining.push((plural.clone(), left.len()));
            }
        }
        let key = Key { kind: namespace_kind, namespace: String::new(), name: name.clone() };
        if remaining.is_empty() {
            let _ = store.delete(&key);
            continue;
        }
        let content: Vec<String> =
            remaining.iter().map(|(plural, n)| format!("{plural}. has {n} resource instances")).collect();
        let finalizers: Vec<String> = blocking.iter().map(|(f, n)| format!("{f} in {n} resource instances")).collect();
        let mut updated = namespace.clone();
        updated["status"]["conditions"] = json!([
            {"type": "NamespaceContentRemaining", "status": "True", "reason": "SomeResourcesRemain",
             "message": format!("Some resources are remaining: {}", content.join(", ")),
             "lastTransitionTime": namespace.pointer("/metadata/deletionTimestamp").cloned().unwrap_or_default()},
            {"type": "NamespaceFinalizersRemaining", "status": if finalizers.is_empty() { "False" } else { "True" },
             "reason": if finalizers.is_empty() { "ContentHasNoFinalizers" } else { "SomeFinalizersRemain" },
             "message": if finalizers.is_empty() { "All content-preserving finalizers finished".to_owned() } else { format!("Some content in the namespace has finalizers remaining: {}", finalizers.join(", ")) },
             "lastTransitionTime": namespace.pointer("/metadata/deletionTimestamp").cloned().unwrap_or_default()},
        ]);
        let _ = store.update(&key, updated);
    }
}
