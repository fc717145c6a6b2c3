//! The simulated cluster's object store: what etcd and the API server's generic registry do for Gantry.
//!
//! Every write bumps one cluster-wide resourceVersion and records an event in a bounded history from which watches
//! resume; a watch from a version older than the history gets `410 Gone`, as from a compacted etcd. History is kept
//! for `HISTORY_AGE` (etcd's API server compacts every 5 minutes by default) and at most `HISTORY` changes, and a
//! change shares its object with the store (and with the other changes' readers) instead of copying it, so memory
//! stays bounded however long a test runs.
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes>
//!
//! Objects are kept in one ordered map by type, namespace and name, so that listing one type in one namespace costs
//! what it returns, not what the cluster holds.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

/// Where an object lives: type index, namespace (empty for cluster-scoped), name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub(crate) kind: usize,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// A change, as a watch reports it.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub(crate) rv: u64,
    pub(crate) kind: &'static str,
    pub(crate) key: Key,
    pub(crate) object: Arc<Value>,
    /// When it happened, for compaction by age.
    pub(crate) at: Instant,
}

/// How a write failed, as the API server says it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StoreError {
    NotFound,
    AlreadyExists,
    Conflict,
    Invalid(String),
}

/// Changes kept for watches to resume from, at most.
const HISTORY: usize = 10_000;

/// How long changes are kept for watches to resume from (the API server's default etcd compaction interval).
/// <https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/> (`--etcd-compaction-interval`)
const HISTORY_AGE: Duration = Duration::from_secs(300);

pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<Key, Arc<Value>>,
    /// Dependents by owner uid (their `ownerReferences`), for the garbage collector and cascading deletion.
    dependents: HashMap<String, BTreeSet<Key>>,
    /// Every stored object's uid.
    by_uid: HashMap<String, Key>,
    /// The objects being deleted (with a `deletionTimestamp`), waiting for finalizers.
    deleting: BTreeSet<Key>,
    history: VecDeque<Change>,
    /// The oldest version a watch may resume from.
    compacted: u64,
    uids: u64,
    cluster_ips: u64,
    pub(crate) changes: broadcast::Sender<Change>,
}

impl Store {
    pub(crate) fn new() -> Self {
        let (changes, _) = broadcast::channel(4096);
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            dependents: HashMap::new(),
            by_uid: HashMap::new(),
            deleting: BTreeSet::new(),
            history: VecDeque::new(),
            compacted: 1,
            uids: 0,
            cluster_ips: 0,
            changes,
        }
    }

    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    pub(crate) fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key).map(|o| &**o)
    }

    /// The objects of a type, in one namespace or all (`None`), ordered by namespace and name, with their keys.
    fn range(&self, kind: usize, namespace: Option<&str>) -> impl Iterator<Item = (&Key, &Arc<Value>)> {
        let start = Key { kind, namespace: namespace.unwrap_or_default().to_owned(), name: String::new() };
        self.objects
            .range(start..)
            .take_while(move |(k, _)| k.kind == kind && namespace.is_none_or(|ns| k.namespace == ns))
    }

    /// Objects of a type, in one namespace or all (`None`), ordered by namespace and name.
    pub(crate) fn list(&self, kind: usize, namespace: Option<&str>) -> Vec<&Value> {
        self.range(kind, namespace).map(|(_, v)| &**v).collect()
    }

    /// Objects of a type in one namespace or all (`None`), shared with the store (no copy), ordered by namespace
    /// and name.
    pub(crate) fn list_shared(&self, kind: usize, namespace: Option<&str>) -> Vec<Arc<Value>> {
        self.range(kind, namespace).map(|(_, v)| Arc::clone(v)).collect()
    }

    /// The keys of a type's objects, in one namespace or all (`None`), ordered by namespace and name.
    pub(crate) fn keys(&self, kind: usize, namespace: Option<&str>) -> Vec<Key> {
        self.range(kind, namespace).map(|(k, _)| k.clone()).collect()
    }

    /// How many changes are kept for watches to resume from.
    #[cfg(test)]
    pub(crate) fn history_len(&self) -> usize {
        self.history.len()
    }

    /// Changes after `rv`, or `Err(())` if they are no longer kept.
    pub(crate) fn changes_since(&self, rv: u64) -> Result<Vec<Change>, ()> {
        if rv < self.compacted {
            return Err(());
        }
        Ok(self.history.iter().filter(|c| c.rv > rv).cloned().collect())
    }

    /// Forgets history up to now: watches from older versions get 410 Gone.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    fn record(&mut self, kind: &'static str, key: Key, object: Arc<Value>) {
        let now = Instant::now();
        let change = Change { rv: self.rv, kind, key, object, at: now };
        while self.history.len() >= HISTORY
            || self.history.front().is_some_and(|c| now.duration_since(c.at) > HISTORY_AGE)
        {
            let Some(dropped) = self.history.pop_front() else { break };
            self.compacted = dropped.rv;
        }
        self.history.push_back(change.clone());
        let _ = self.changes.send(change);
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// A new object's uid (a create keeps one set this way).
    pub(crate) fn new_uid(&mut self) -> String {
        self.uids += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uids)
    }

    /// The next Service cluster IP's number.
    pub(crate) fn next_cluster_ip(&mut self) -> u64 {
        self.cluster_ips += 1;
        self.cluster_ips
    }

    /// Creates an object: sets uid, creationTimestamp, resourceVersion and, for types that keep one, generation 1.
    pub(crate) fn create(&mut self, key: Key, mut object: Value, generation: bool) -> Result<Value, StoreError> {
        if self.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists);
        }
        let rv = self.next_rv();
        let uid = match object.pointer("/metadata/uid").and_then(Value::as_str).filter(|u| !u.is_empty()) {
            Some(uid) => uid.to_owned(),
            None => self.new_uid(),
        };
        let meta = metadata(&mut object);
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        if generation {
            meta.insert("generation".into(), json!(1));
        }
        meta.remove("deletionTimestamp");
        let stored = Arc::new(object);
        self.index(&key, None, Some(&stored));
        self.objects.insert(key.clone(), Arc::clone(&stored));
        self.record("ADDED", key, Arc::clone(&stored));
        Ok(Arc::unwrap_or_clone(stored))
    }

    /// Replaces an object. A resourceVersion in `object` must match the stored one (else `Conflict`). uid and
    /// creationTimestamp are kept; generation is bumped when anything but metadata and status changed.
    pub(crate) fn update(&mut self, key: &Key, object: Value) -> Result<Value, StoreError> {
        self.write(key, object, false)
    }

    /// Marks an object as being deleted: `object` carries its `deletionTimestamp` and finalizers (see the
    /// `deletion` module).
    pub(crate) fn begin_deletion(&mut self, key: &Key, object: Value) -> Result<Value, StoreError> {
        self.write(key, object, true)
    }

    /// An update; `deleting` lets it set `deletionTimestamp`, which clients cannot set or clear. An object being
    /// deleted whose last finalizer the update removes is gone after it.
    fn write(&mut self, key: &Key, mut object: Value, deleting: bool) -> Result<Value, StoreError> {
        let Some(old) = self.objects.get(key).map(|o| &**o) else { return Err(StoreError::NotFound) };
        let old_meta = old.get("metadata").cloned().unwrap_or_default();
        let old_rv = old_meta.get("resourceVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
        match object.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
            Some(rv) if !rv.is_empty() && rv != old_rv => return Err(StoreError::Conflict),
            _ => {}
        }
        if object
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .is_some_and(|u| Some(u) != old_meta.get("uid").and_then(Value::as_str))
        {
            return Err(StoreError::Conflict);
        }
        let changed_spec = strip(old) != strip(&object);
        let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(1) + i64::from(changed_spec);
        if strip_meta_only(old) == strip_meta_only(&object) && same_meta(&old_meta, object.get("metadata")) {
            // Nothing changed: no new version, no event (as the API server does for a no-op update).
            return Ok(old.clone());
        }
        let rv = self.next_rv();
        let meta = metadata(&mut object);
        for kept in ["uid", "creationTimestamp", "namespace", "name"] {
            if let Some(v) = old_meta.get(kept) {
                meta.insert(kept.into(), v.clone());
            }
        }
        if !deleting {
            for kept in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
                match old_meta.get(kept) {
                    Some(v) => meta.insert(kept.into(), v.clone()),
                    None => meta.remove(kept),
                };
            }
        }
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        if old_meta.get("generation").is_some() {
            meta.insert("generation".into(), json!(generation));
        }
        let stored = Arc::new(object);
        let previous = self.objects.get(key).cloned();
        self.index(key, previous.as_deref(), Some(&stored));
        self.objects.insert(key.clone(), Arc::clone(&stored));
        self.record("MODIFIED", key.clone(), Arc::clone(&stored));
        let finalized = stored.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
            && ["/metadata/finalizers", "/spec/finalizers"]
                .iter()
                .all(|p| stored.pointer(p).and_then(Value::as_array).is_none_or(Vec::is_empty));
        if finalized {
            // The last finalizer is gone: so is the object.
            self.delete(key)?;
        }
        Ok(Arc::unwrap_or_clone(stored))
    }

    /// Removes an object and returns it.
    pub(crate) fn delete(&mut self, key: &Key) -> Result<Value, StoreError> {
        let mut object = Arc::unwrap_or_clone(self.objects.remove(key).ok_or(StoreError::NotFound)?);
        self.index(key, Some(&object), None);
        let rv = self.next_rv();
        metadata(&mut object).insert("resourceVersion".into(), json!(rv.to_string()));
        let stored = Arc::new(object);
        self.record("DELETED", key.clone(), Arc::clone(&stored));
        Ok(Arc::unwrap_or_clone(stored))
    }

    /// Every object whose ownerReferences name `uid`.
    pub(crate) fn owned_by(&self, uid: &str) -> Vec<Key> {
        self.dependents.get(uid).map(|keys| keys.iter().cloned().collect()).unwrap_or_default()
    }

    /// Whether an object with this uid is stored.
    pub(crate) fn has_uid(&self, uid: &str) -> bool {
        self.by_uid.contains_key(uid)
    }

    /// The objects that name an owner in `ownerReferences`, with the owners' uids.
    pub(crate) fn with_owners(&self) -> impl Iterator<Item = (&String, &BTreeSet<Key>)> {
        self.dependents.iter()
    }

    /// The objects being deleted, waiting for finalizers.
    pub(crate) fn being_deleted(&self) -> Vec<Key> {
        self.deleting.iter().cloned().collect()
    }

    /// Keeps the indexes in step with a write: `old` is what was stored at `key`, `new` what is now.
    fn index(&mut self, key: &Key, old: Option<&Value>, new: Option<&Value>) {
        let uid =
            |o: Option<&Value>| o.and_then(|o| o.pointer("/metadata/uid")).and_then(Value::as_str).map(str::to_owned);
        if let Some(uid) = uid(old) {
            self.by_uid.remove(&uid);
        }
        if let Some(uid) = uid(new) {
            self.by_uid.insert(uid, key.clone());
        }
        let deleting = new.and_then(|o| o.pointer("/metadata/deletionTimestamp")).is_some_and(|t| !t.is_null());
        if deleting {
            self.deleting.insert(key.clone());
        } else {
            self.deleting.remove(key);
        }
        fn owners(object: Option<&Value>) -> Vec<String> {
            object
                .and_then(|o| o.pointer("/metadata/ownerReferences"))
                .and_then(Value::as_array)
                .map(|refs| refs.iter().filter_map(|r| r.get("uid")?.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        }
        let (before, after) = (owners(old), owners(new));
        for uid in before.iter().filter(|u| !after.contains(u)) {
            if let Some(keys) = self.dependents.get_mut(uid) {
                keys.remove(key);
                if keys.is_empty() {
                    self.dependents.remove(uid);
                }
            }
        }
        for uid in after {
            self.dependents.entry(uid).or_default().insert(key.clone());
        }
    }
}

/// The object's metadata map, created if missing.
pub(crate) fn metadata(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"].as_object_mut().expect("metadata is an object")
}

/// The object without metadata and status: what a change of generation is about.
fn strip(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

fn strip_meta_only(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
    }
    o
}

/// Whether the user-settable metadata is the same (labels, annotations, ownerReferences, finalizers).
fn same_meta(old: &Value, new: Option<&Value>) -> bool {
    ["labels", "annotations", "ownerReferences", "finalizers", "deletionTimestamp"]
        .iter()
        .all(|k| old.get(k) == new.and_then(|n| n.get(k)))
}

/// Now as RFC 3339 in whole seconds, UTC, as Kubernetes writes timestamps.
pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    rfc3339(secs)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339(secs: u64) -> String {
    gantry_core::time::rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key { kind: 0, namespace: "default".into(), name: name.into() }
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_115_200), "2025-11-26T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn versions_conflicts_and_generation() {
        let mut s = Store::new();
        let created = s.create(key("a"), json!({"metadata": {"name": "a"}, "spec": {"replicas": 1}}), true).unwrap();
        let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
        assert_eq!(created["metadata"]["generation"], 1);
        assert_eq!(s.create(key("a"), json!({}), true), Err(StoreError::AlreadyExists));

        let mut next = created.clone();
        next["spec"]["replicas"] = json!(3);
        let updated = s.update(&key("a"), next.clone()).unwrap();
        assert_eq!(updated["metadata"]["generation"], 2);
        assert_ne!(updated["metadata"]["resourceVersion"].as_str().unwrap(), rv);
        // The same stale version again: conflict.
        assert_eq!(s.update(&key("a"), next), Err(StoreError::Conflict));

        let mut status = updated.clone();
        status["status"] = json!({"replicas": 3});
        let with_status = s.update(&key("a"), status).unwrap();
        assert_eq!(with_status["metadata"]["generation"], 2, "a status change does not bump generation");

        let same = s.update(&key("a"), with_status.clone()).unwrap();
        assert_eq!(same["metadata"]["resourceVersion"], with_status["metadata"]["resourceVersion"], "no-op update");
    }

    #[test]
    fn history_is_bounded_and_lists_are_scoped() {
        let mut s = Store::new();
        let start = s.resource_version();
        let object = json!({"metadata": {"name": "a"}, "data": {"k": "0"}});
        s.create(key("a"), object.clone(), false).unwrap();
        for i in 0..HISTORY + 10 {
            let mut next = object.clone();
            next["data"]["k"] = json!(i.to_string());
            s.update(&key("a"), next).unwrap();
        }
        assert_eq!(s.history_len(), HISTORY);
        assert!(s.changes_since(start).is_err(), "the oldest changes are compacted: 410 Gone");
        let recent = s.resource_version() - 5;
        assert_eq!(s.changes_since(recent).unwrap().len(), 5);
        // One type in one namespace, whatever else is stored next to it.
        let other = |kind: usize, ns: &str, name: &str| Key { kind, namespace: ns.into(), name: name.into() };
        for (kind, ns, name) in [(0, "defaulu", "x"), (0, "default0", "y"), (1, "default", "z"), (0, "default", "b")] {
            s.create(other(kind, ns, name), json!({"metadata": {"name": name}}), false).unwrap();
        }
        let names = |kind, ns| s.keys(kind, ns).into_iter().map(|k| k.name).collect::<Vec<_>>();
        assert_eq!(names(0, Some("default")), ["a", "b"]);
        assert_eq!(names(0, None), ["a", "b", "y", "x"], "by namespace (default, default0, defaulu), then name");
        assert_eq!(names(1, None), ["z"]);
        assert!(names(2, None).is_empty());
    }

    #[test]
    fn watches_resume_from_history_until_compacted() {
        let mut s = Store::new();
        let start = s.resource_version();
        s.create(key("a"), json!({"metadata": {"name": "a"}}), false).unwrap();
        s.delete(&key("a")).unwrap();
        let kinds: Vec<&str> = s.changes_since(start).unwrap().iter().map(|c| c.kind).collect();
        assert_eq!(kinds, ["ADDED", "DELETED"]);
        s.compact();
        assert!(s.changes_since(start).is_err(), "410 Gone");
        assert!(s.changes_since(s.resource_version()).unwrap().is_empty());
    }
}
