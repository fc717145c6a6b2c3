//! The simulated control plane: the Deployment and ReplicaSet controllers and a kubelet whose pods behave as
//! scripted per image.
//!
//! One task reconciles whenever the store changes or a scripted pod reaches its next moment, until nothing changes:
//! only the namespaces where something changed (or a moment came), since every object these controllers relate
//! (Deployment, ReplicaSet, Pod, Job) lives in its owner's namespace; so a write costs what its namespace holds,
//! not what the cluster holds. The Deployment controller follows the rolling update of
//! <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#rolling-update-deployment>: ReplicaSets
//! named by a hash of the pod template with a `deployment.kubernetes.io/revision` annotation, the new one scaled up
//! by at most `maxSurge` above `replicas`, old ones scaled down while at least `replicas - maxUnavailable` pods are
//! available; going back to an earlier template reuses its ReplicaSet under a new revision (as `kubectl rollout undo`
//! relies on); status counts, `observedGeneration`, and the `Available` and `Progressing` conditions, including
//! `ProgressDeadlineExceeded` after `progressDeadlineSeconds` without progress.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::store::{Key, Store, metadata, now_rfc3339};
use super::{NODE, Sim, deletion, events, lock};

/// How a container of an image behaves on the simulated kubelet.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum PodScript {
    /// Runs, and is ready after the delay.
    ReadyAfter(Duration),
    /// Runs and never becomes ready.
    NeverReady,
    /// Starts, exits with `exit_code` after `runs_for`, and restarts as the kubelet does: the first exit shows as
    /// `terminated` (reason `Error`) and is restarted at once; from the second on, the container waits in
    /// `CrashLoopBackOff` (100 ms here, not 10 s doubling) with `restartCount` growing and its last exit in
    /// `lastState.terminated`.
    CrashLoop {
        /// How long each run lasts.
        runs_for: Duration,
        /// The exit code of each run.
        exit_code: i32,
    },
    /// The image cannot be pulled: `ErrImagePull`, then `ImagePullBackOff`.
    ImagePullError,
    /// Runs for `after`, prints `logs`, and exits with `code` (the pod then Succeeded or Failed): for Job pods.
    Exit {
        /// How long the run lasts.
        after: Duration,
        /// The exit code.
        code: i32,
        /// What the container prints, line by line (`kubectl logs`).
        logs: Vec<String>,
    },
}

impl Default for PodScript {
    fn default() -> Self {
        Self::ReadyAfter(Duration::from_millis(50))
    }
}

/// What the control plane remembers outside the store: scripts by image, when the kubelet started each pod, and per
/// Deployment the last progress it made (its counts, and when they last moved).
#[derive(Default)]
pub(crate) struct ControlPlane {
    pub(crate) scripts: Mutex<HashMap<String, PodScript>>,
    /// How the services of an image perform, for the simulated metrics.
    pub(crate) health: Mutex<HashMap<String, super::Health>>,
    started: Mutex<HashMap<String, Instant>>,
    /// When each Job (by uid) was first seen active, for `activeDeadlineSeconds`.
    jobs_started: Mutex<HashMap<String, Instant>>,
    progress: Mutex<HashMap<String, (Value, Instant)>>,
    /// Container output by pod (`namespace/name`).
    pub(crate) logs: Mutex<HashMap<String, PodLog>>,
}

/// What a scripted container prints: its lines, spread evenly over its run (line `i` of `n` at `runs_for · i / n`
/// after it started), all of them printed before it exits.
#[derive(Clone, Debug)]
pub(crate) struct PodLog {
    pub(crate) lines: Vec<String>,
    pub(crate) started: Instant,
    pub(crate) runs_for: Duration,
}

impl PodLog {
    /// When line `i` is printed.
    pub(crate) fn printed_at(&self, i: usize) -> Instant {
        let n = u32::try_from(self.lines.len().max(1)).unwrap_or(u32::MAX);
        self.started + self.runs_for * u32::try_from(i).unwrap_or(u32::MAX) / n
    }

    /// The lines printed by `now`.
    pub(crate) fn printed_by(&self, now: Instant) -> usize {
        (0..self.lines.len()).take_while(|i| self.printed_at(*i) <= now).count()
    }

    /// When the container exits (the end of a followed log).
    pub(crate) fn exits_at(&self) -> Instant {
        self.started + self.runs_for
    }
}

/// The index of a built-in kind among the simulator's types.
pub(super) fn kind_of(sim: &Sim, kind: &str) -> usize {
    sim.types.read().unwrap_or_else(|e| e.into_inner()).iter().position(|t| t.kind == kind).expect("built-in kind")
}

/// What a reconcile looks at: every namespace, or those where something changed.
enum Scope {
    All,
    Namespaces(BTreeSet<String>),
}

impl Scope {
    /// Whether a pass over this scope saw the namespace's changes.
    fn covers(&self, namespace: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Namespaces(set) => set.contains(namespace),
        }
    }

    /// The namespaces to list in, `None` meaning all of them at once.
    fn namespaces(&self) -> Vec<Option<&str>> {
        match self {
            Scope::All => vec![None],
            Scope::Namespaces(set) => set.iter().map(|ns| Some(ns.as_str())).collect(),
        }
    }
}

/// Runs the control plane until the simulator stops.
pub(crate) async fn run(sim: Arc<Sim>) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let mut changes = lock(&sim.store).changes.subscribe();
    let stop = Arc::clone(&sim.watch_stop);
    // When each namespace's scripted pods, Jobs or progress deadlines next change on their own.
    let mut moments: BTreeMap<String, Instant> = BTreeMap::new();
    let mut scope = Scope::All;
    // The kinds these controllers read: a change to any other (a ConfigMap, an Event) reconciles nothing.
    let watched = ["Deployment", "ReplicaSet", "Pod", "Job", "Namespace"].map(|kind| kind_of(&sim, kind));
    // Also what may unblock a deletion: an object deleted, or one being deleted (its finalizers changed).
    let concerns = |c: &super::store::Change| {
        watched.contains(&c.key.kind) || c.kind == "DELETED" || deletion::deleting(&c.object)
    };
    loop {
        let (next, handled) = reconcile(&sim, &scope);
        match &scope {
            Scope::All => moments = next,
            Scope::Namespaces(done) => {
                moments.retain(|ns, _| !done.contains(ns));
                moments.extend(next);
            }
        }
        // Changes up to `handled` in the namespaces the pass looked at are our own writes, or were seen by it.
        // Anything newer, or in a namespace it did not look at, came from a client and must not be swallowed:
        // reconcile its namespace at once. A lagged feed may have hidden such a change anywhere.
        let mut dirty = BTreeSet::new();
        let mut lagged = false;
        loop {
            match changes.try_recv() {
                Ok(c) if !concerns(&c) || (c.rv <= handled && scope.covers(&c.key.namespace)) => {}
                Ok(c) => {
                    dirty.insert(c.key.namespace);
                }
                Err(TryRecvError::Lagged(_)) => lagged = true,
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        if !lagged && dirty.is_empty() {
            let wait = moments
                .values()
                .min()
                .map_or(Duration::from_secs(3600), |at| at.saturating_duration_since(Instant::now()));
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(c) if !concerns(&c) => {}
                    Ok(c) => {
                        dirty.insert(c.key.namespace);
                    }
                    Err(RecvError::Lagged(_)) => lagged = true,
                    Err(RecvError::Closed) => return,
                },
                () = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {
                    let now = Instant::now();
                    dirty.extend(moments.iter().filter(|(_, at)| **at <= now).map(|(ns, _)| ns.clone()));
                }
                () = stop.notified() => if sim.stopping.load(std::sync::atomic::Ordering::Acquire) { return },
            }
        }
        // Cluster-scoped objects (namespaces, nodes) have nothing to reconcile per namespace (the namespace
        // controller runs on every pass).
        dirty.remove("");
        scope = if lagged { Scope::All } else { Scope::Namespaces(dirty) };
    }
}

/// Reconciles the namespaces in `scope` until nothing changes (at most 20 passes); returns when, in each namespace,
/// a scripted pod or a deadline next changes something on its own, and the resourceVersion the last pass saw.
fn reconcile(sim: &Sim, scope: &Scope) -> (BTreeMap<String, Instant>, u64) {
    let (deployments, replicasets, pods) =
        (kind_of(sim, "Deployment"), kind_of(sim, "ReplicaSet"), kind_of(sim, "Pod"));
    let jobs = kind_of(sim, "Job");
    let namespaces = scope.namespaces();
    let mut next = BTreeMap::new();
    let mut handled = 0;
    // The namespace controller runs on every pass (also when no namespace is in scope: a namespace's own change is
    // cluster-scoped): a namespace being deleted waits on content anywhere in it.
    // One read of the types (a second read while holding the first can deadlock behind a waiting `register`).
    let namespace_kind = kind_of(sim, "Namespace");
    let namespaced: Vec<(usize, String)> = {
        let types = sim.types.read().unwrap_or_else(|e| e.into_inner());
        types.iter().enumerate().filter(|(_, t)| t.namespaced).map(|(i, t)| (i, t.plural.clone())).collect()
    };
    if namespaces.is_empty() {
        deletion::finish_namespaces(&mut lock(&sim.store), namespace_kind, &namespaced);
        // Nothing looked at: no change is handled (one that came meanwhile must still be seen).
        return (next, 0);
    }
    let keys =
        |store: &Store, kind: usize| -> Vec<Key> { namespaces.iter().flat_map(|ns| store.keys(kind, *ns)).collect() };
    for _ in 0..20 {
        let mut store = lock(&sim.store);
        let before = store.resource_version();
        next.clear();
        let mut at = |key: &Key, when: Option<Instant>| {
            if let Some(when) = when {
                let slot = next.entry(key.namespace.clone()).or_insert(when);
                *slot = (*slot).min(when);
            }
        };
        collect_garbage(&mut store, &namespaces);
        deletion::finish_foreground(&mut store);
        deletion::finish_namespaces(&mut store, namespace_kind, &namespaced);
        for d in keys(&store, deployments) {
            deployment(&mut store, &d, replicasets);
        }
        for rs in keys(&store, replicasets) {
            at(&rs, replicaset(sim, &mut store, &rs, pods));
        }
        for job in keys(&store, jobs) {
            at(&job, self::job(sim, &mut store, &job, pods));
        }
        for p in keys(&store, pods) {
            at(&p, kubelet(sim, &mut store, &p));
        }
        for d in keys(&store, deployments) {
            let mut deadline = None;
            deployment_status(sim, &mut store, &d, replicasets, &mut deadline);
            at(&d, deadline);
            history_limit(&mut store, &d, replicasets);
        }
        handled = store.resource_version();
        if handled == before {
            break;
        }
    }
    (next, handled)
}

fn int(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

/// The objects of a kind in a namespace that `owner_uid` owns, shared with the store (no copy).
fn owned(store: &Store, kind: usize, namespace: &str, owner_uid: &str) -> Vec<Arc<Value>> {
    let mut objects = store.list_shared(kind, Some(namespace));
    objects.retain(|o| {
        o.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| refs.iter().any(|r| r.get("uid").and_then(Value::as_str) == Some(owner_uid)))
    });
    objects
}

fn owner_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!([{
        "apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true,
    }])
}

/// A stable hash of a pod template, as the `pod-template-hash` label (10 characters).
fn template_hash(template: &Value) -> String {
    let mut t = template.clone();
    if let Some(labels) = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove("pod-template-hash");
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    canonical(&t).hash(&mut h);
    let mut n = h.finish();
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|_| {
            let c = alphabet[(n % 27) as usize] as char;
            n /= 27;
            c
        })
        .collect()
}

/// JSON with sorted keys and without null or empty values, so that equal templates hash alike: what the API
/// server's defaulting does for the templates kubectl sends back on `rollout undo` (`creationTimestamp: null`,
/// `resources: {}`).
fn canonical(v: &Value) -> String {
    fn empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Object(m) => m.values().all(empty),
            Value::Array(a) => a.is_empty(),
            _ => false,
        }
    }
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, String> =
                m.iter().filter(|(_, v)| !empty(v)).map(|(k, v)| (k, canonical(v))).collect();
            format!("{{{}}}", sorted.iter().map(|(k, v)| format!("{k:?}:{v}")).collect::<Vec<_>>().join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// `maxSurge` and `maxUnavailable` as pod counts: surge rounds up, unavailable down, and they are not both zero.
fn surge_and_unavailable(d: &Value, replicas: i64) -> (i64, i64) {
    let get = |name: &str| d.pointer(&format!("/spec/strategy/rollingUpdate/{name}")).cloned().unwrap_or(json!("25%"));
    let resolve = |v: Value, round_up: bool| match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(25.0);
            let x = pct * replicas as f64 / 100.0;
            (if round_up { x.ceil() } else { x.floor() }) as i64
        }
        _ => 0,
    };
    let (surge, unavailable) = (resolve(get("maxSurge"), true), resolve(get("maxUnavailable"), false));
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
}

fn revision(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn key_of(object: &Value, kind: usize) -> Key {
    Key {
        kind,
        namespace: object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_owned(),
        name: object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned(),
    }
}

/// The Deployment controller's spec side: the new ReplicaSet exists, and replicas move from old to new.
fn deployment(store: &mut Store, key: &Key, rs_kind: usize) {
    // An object being deleted is left to the garbage collector.
    let Some(d) = store.get(key).cloned().filter(|d| !deletion::deleting(d)) else { return };
    let uid = d.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
    let replicas = d.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = template_hash(&template);
    adopt(store, &d, key, rs_kind);
    let mut sets = owned(store, rs_kind, &key.namespace, &uid);
    let max_revision = sets.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    let new_name = format!("{}-{hash}", key.name);
    if d.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false) {
        paused(store, &sets, &new_name, replicas, rs_kind);
        return;
    }
    let new_rs = match sets
        .iter()
        .position(|rs| rs.pointer("/metadata/name").and_then(Value::as_str) == Some(&new_name))
    {
        Some(i) => {
            let rs = sets.remove(i);
            if revision(&rs) < max_revision {
                // Back to an earlier template: its ReplicaSet comes back under a new revision.
                let mut next = (*rs).clone();
                metadata(&mut next).entry("annotations").or_insert(json!({}))["deployment.kubernetes.io/revision"] =
                    json!((max_revision + 1).to_string());
                let _ = store.update(&key_of(&rs, rs_kind), next.clone());
                store.get(&key_of(&rs, rs_kind)).cloned().unwrap_or(next)
            } else {
                Arc::unwrap_or_clone(rs)
            }
        }
        None => {
            let mut pod_template = template.clone();
            pod_template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let rs = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {
                    "name": new_name, "namespace": key.namespace,
                    "labels": pod_template["metadata"]["labels"],
                    "annotations": {"deployment.kubernetes.io/revision": (max_revision + 1).to_string(), "deployment.kubernetes.io/desired-replicas": replicas.to_string()},
                    "ownerReferences": owner_ref(&d, "apps/v1", "Deployment"),
                },
                "spec": {"replicas": 0, "selector": selector, "template": pod_template, "minReadySeconds": d.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0))},
                "status": {"replicas": 0},
            });
            let rs_key = Key { kind: rs_kind, namespace: key.namespace.clone(), name: new_name.clone() };
            match store.create(rs_key.clone(), rs, true) {
                Ok(rs) => rs,
                Err(_) => return,
            }
        }
    };
    // The Deployment carries its current revision too (`kubectl rollout undo` patches around it).
    let current_revision = revision(&new_rs).to_string();
    if d.pointer("/metadata/annotations/deployment.kubernetes.io~1revision").and_then(Value::as_str)
        != Some(current_revision.as_str())
    {
        let mut annotated = d.clone();
        metadata(&mut annotated).entry("annotations").or_insert(json!({}))["deployment.kubernetes.io/revision"] =
            json!(current_revision);
        let _ = store.update(key, annotated);
    }
    if recreate(&d) {
        // Every old pod goes first; the new ReplicaSet scales up once none is left.
        // <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#recreate-deployment>
        for rs in &sets {
            scale(store, rs, rs_kind, 0);
        }
        let old_pods: i64 = sets.iter().map(|rs| int(rs.pointer("/status/replicas"))).sum();
        let new_target = if old_pods > 0 { 0 } else { replicas };
        scale(store, &new_rs, rs_kind, new_target);
        return;
    }
    let (surge, unavailable) = surge_and_unavailable(&d, replicas);
    let old_total: i64 = sets.iter().map(|rs| int(rs.pointer("/spec/replicas"))).sum();
    let new_spec = int(new_rs.pointer("/spec/replicas"));
    // Scale the new ReplicaSet up within the surge.
    let allowed = replicas + surge;
    let new_target =
        if old_total == 0 { replicas } else { (allowed - old_total).clamp(new_spec.min(replicas), replicas) };
    if new_target != new_spec {
        scale(store, &new_rs, rs_kind, new_target);
    }
    // Scale old ReplicaSets down while enough pods stay available: the upstream controller's
    // reconcileOldReplicaSets, first the unhealthy replicas, then healthy ones down to minAvailable.
    let new_available = int(new_rs.pointer("/status/availableReplicas"));
    let new_unavailable = (new_target - new_available).max(0);
    let min_available = replicas - unavailable;
    let max_scaled_down = old_total + new_target - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return;
    }
    sets.sort_by_key(|rs| revision(rs));
    let mut specs: Vec<i64> = sets.iter().map(|rs| int(rs.pointer("/spec/replicas"))).collect();
    let mut cleaned = 0;
    for (rs, spec) in sets.iter().zip(specs.iter_mut()) {
        let available = int(rs.pointer("/status/availableReplicas"));
        let n = (max_scaled_down - cleaned).min(*spec - available).max(0);
        if n > 0 {
            *spec -= n;
            cleaned += n;
            scale(store, rs, rs_kind, *spec);
        }
    }
    let available_all = new_available + sets.iter().map(|rs| int(rs.pointer("/status/availableReplicas"))).sum::<i64>();
    if available_all <= min_available {
        return;
    }
    let mut to_scale_down = available_all - min_available;
    for (rs, spec) in sets.iter().zip(specs.iter_mut()) {
        if to_scale_down == 0 {
            break;
        }
        let n = (*spec).min(to_scale_down);
        if n > 0 {
            *spec -= n;
            to_scale_down -= n;
            scale(store, rs, rs_kind, *spec);
        }
    }
}

/// The Deployment controller's cleanup: once a rollout is complete, old ReplicaSets beyond
/// `spec.revisionHistoryLimit` (default 10) are deleted, the oldest revisions first, skipping any that still has
/// replicas, as upstream's `cleanupDeployment` does.
/// <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#revision-history-limit>
fn history_limit(store: &mut Store, key: &Key, rs_kind: usize) {
    let Some(d) = store.get(key) else { return };
    let replicas = d.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let status = |field: &str| int(d.pointer(&format!("/status/{field}")));
    let complete = status("updatedReplicas") == replicas
        && status("replicas") == replicas
        && status("availableReplicas") == replicas
        && status("observedGeneration") >= int(d.pointer("/metadata/generation"));
    if !complete {
        return;
    }
    let limit = d.pointer("/spec/revisionHistoryLimit").and_then(Value::as_i64).unwrap_or(10).max(0) as usize;
    let uid = d.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
    let current = format!("{}-{}", key.name, template_hash(d.pointer("/spec/template").unwrap_or(&Value::Null)));
    let mut old: Vec<Arc<Value>> = owned(store, rs_kind, &key.namespace, &uid)
        .into_iter()
        .filter(|rs| rs.pointer("/metadata/name").and_then(Value::as_str) != Some(current.as_str()))
        .collect();
    if old.len() <= limit {
        return;
    }
    old.sort_by_key(|rs| revision(rs));
    let excess = old.len() - limit;
    for rs in old.iter().take(excess) {
        let idle = int(rs.pointer("/spec/replicas")) == 0
            && int(rs.pointer("/status/replicas")) == 0
            && int(rs.pointer("/status/observedGeneration")) >= int(rs.pointer("/metadata/generation"));
        if idle {
            let _ = store.delete(&key_of(rs, rs_kind));
        }
    }
}

/// The garbage collector, for every namespaced kind: an object none of whose owners exists any more
/// (an owner deleted while the object was being made, or a reference to an owner that never was) is deleted, in
/// the background, with what it owns in turn on the next pass.
/// <https://kubernetes.io/docs/concepts/architecture/garbage-collection/#owners-dependents>
fn collect_garbage(store: &mut Store, namespaces: &[Option<&str>]) {
    let in_scope = |key: &Key| namespaces.iter().any(|ns| ns.is_none_or(|ns| ns == key.namespace));
    // Each dependent with the uids of its owners; dangling when none of them is stored.
    let mut owners_of: std::collections::BTreeMap<Key, Vec<&String>> = std::collections::BTreeMap::new();
    for (uid, dependents) in store.with_owners() {
        for key in dependents.iter().filter(|k| in_scope(k)) {
            owners_of.entry(key.clone()).or_default().push(uid);
        }
    }
    let dangling: Vec<Key> = owners_of
        .into_iter()
        .filter(|(_, owners)| owners.iter().all(|uid| !store.has_uid(uid)))
        .map(|(key, _)| key)
        .collect();
    for key in dangling {
        let _ = deletion::delete(store, &key, deletion::Propagation::Background);
    }
}

/// A Deployment adopts the ReplicaSets of its namespace that no controller owns and that its selector selects (an
/// orphan left by `kubectl delete --cascade=orphan`, before the Deployment was created again).
/// <https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#non-template-pod-acquisitions>
fn adopt(store: &mut Store, d: &Value, key: &Key, rs_kind: usize) {
    let Some(selector) = d.pointer("/spec/selector") else { return };
    let Ok(selector) = super::selector::Selector::parse(&super::scale::selector_string(selector)) else { return };
    let controlled = |o: &Value| {
        o.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| refs.iter().any(|r| r.get("controller").and_then(Value::as_bool) == Some(true)))
    };
    let orphans: Vec<Arc<Value>> = store
        .list_shared(rs_kind, Some(&key.namespace))
        .into_iter()
        .filter(|rs| !controlled(rs) && selector.matches_labels(rs))
        .collect();
    for rs in orphans {
        let mut adopted = (*rs).clone();
        let mut refs =
            adopted.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default();
        refs.extend(owner_ref(d, "apps/v1", "Deployment").as_array().cloned().unwrap_or_default());
        metadata(&mut adopted).insert("ownerReferences".into(), json!(refs));
        let _ = store.update(&key_of(&rs, rs_kind), adopted);
    }
}

/// Whether a Deployment's strategy is `Recreate` (else it rolls).
fn recreate(d: &Value) -> bool {
    d.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate")
}

/// A paused Deployment: a new template makes no new ReplicaSet, and only a change of `replicas` is carried out, on
/// the ReplicaSets there are. One active ReplicaSet (or none: the newest) takes the count; when a rollout was paused
/// half-way the difference goes to the ReplicaSet of the current template if it is active, else to the newest
/// active one (upstream shares it out in proportion to each one's size).
/// <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#pausing-and-resuming-a-deployment>
fn paused(store: &mut Store, sets: &[Arc<Value>], new_name: &str, replicas: i64, rs_kind: usize) {
    let spec = |rs: &Value| int(rs.pointer("/spec/replicas"));
    let name = |rs: &Value| rs.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut active: Vec<&Arc<Value>> = sets.iter().filter(|rs| spec(rs) > 0).collect();
    active.sort_by_key(|rs| revision(rs));
    let total: i64 = active.iter().map(|rs| spec(rs)).sum();
    let target = match active.as_slice() {
        [] => sets.iter().find(|rs| name(rs) == new_name).or_else(|| sets.iter().max_by_key(|rs| revision(rs))),
        [only] => Some(*only),
        [.., newest] => active.iter().find(|rs| name(rs) == new_name).copied().or(Some(*newest)),
    };
    if let Some(rs) = target {
        let want = (spec(rs) + replicas - total).max(0);
        scale(store, rs, rs_kind, want);
    }
}

/// Sets a ReplicaSet's `spec.replicas`.
fn scale(store: &mut Store, rs: &Value, rs_kind: usize, replicas: i64) {
    let mut current = match store.get(&key_of(rs, rs_kind)) {
        Some(c) => c.clone(),
        None => return,
    };
    let before = int(current.pointer("/spec/replicas"));
    if before == replicas {
        return;
    }
    current["spec"]["replicas"] = json!(replicas);
    let _ = store.update(&key_of(rs, rs_kind), current);
    // The Deployment that owns it says so.
    let rs_name = rs.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let owner = rs.pointer("/metadata/ownerReferences").and_then(Value::as_array).and_then(|r| r.first()).cloned();
    if let Some(owner) = owner {
        let involved = json!({"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                              "metadata": {"name": owner["name"], "namespace": rs.pointer("/metadata/namespace"), "uid": owner["uid"]}});
        let direction = if replicas > before { "up" } else { "down" };
        let message = format!("Scaled {direction} replica set {rs_name} from {before} to {replicas}");
        events::record(store, &involved, events::Event::normal("ScalingReplicaSet", message, "deployment-controller"));
    }
}

/// The ReplicaSet controller: as many pods as `spec.replicas`, and the counts in status.
fn replicaset(sim: &Sim, store: &mut Store, key: &Key, pod_kind: usize) -> Option<Instant> {
    let rs = store.get(key).cloned().filter(|rs| !deletion::deleting(rs))?;
    let uid = rs.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
    let want = int(rs.pointer("/spec/replicas"));
    let mut pods = owned(store, pod_kind, &key.namespace, &uid);
    let have = pods.len() as i64;
    if have < want {
        for _ in have..want {
            let name = format!("{}-{}", key.name, sim.suffix());
            let mut pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": key.namespace, "labels": rs.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({})), "ownerReferences": owner_ref(&rs, "apps/v1", "ReplicaSet")},
                "spec": rs.pointer("/spec/template/spec").cloned().unwrap_or(json!({})),
                "status": {"phase": "Pending"},
            });
            metadata(&mut pod);
            if store
                .create(Key { kind: pod_kind, namespace: key.namespace.clone(), name: name.clone() }, pod, false)
                .is_ok()
            {
                let created =
                    events::Event::normal("SuccessfulCreate", format!("Created pod: {name}"), "replicaset-controller");
                events::record(store, &rs, created);
            }
        }
    } else if have > want {
        // Not-ready pods go first, then the youngest.
        pods.sort_by_key(|p| {
            (
                ready(p),
                std::cmp::Reverse(
                    p.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or_default().to_owned(),
                ),
            )
        });
        for p in pods.iter().take((have - want) as usize) {
            if deletion::delete(store, &key_of(p, pod_kind), deletion::Propagation::Background).is_ok() {
                let name = p.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                let deleted =
                    events::Event::normal("SuccessfulDelete", format!("Deleted pod: {name}"), "replicaset-controller");
                events::record(store, &rs, deleted);
            }
        }
    }
    let pods = owned(store, pod_kind, &key.namespace, &uid);
    let ready_count = pods.iter().filter(|p| ready(p)).count() as i64;
    // A pod is available once it has been ready for `minReadySeconds`.
    // <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#min-ready-seconds>
    let min_ready = rs.pointer("/spec/minReadySeconds").and_then(Value::as_u64).unwrap_or(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut next = None;
    let mut available_count = 0;
    for since in pods.iter().filter(|p| ready(p)).map(|p| ready_since(p).unwrap_or(0)) {
        if min_ready == 0 || since + min_ready <= now {
            available_count += 1;
        } else {
            let wait = Duration::from_secs(since + min_ready - now);
            next = Some(next.map_or(Instant::now() + wait, |n: Instant| n.min(Instant::now() + wait)));
        }
    }
    let status = json!({
        "replicas": pods.len(), "readyReplicas": ready_count, "availableReplicas": available_count,
        "fullyLabeledReplicas": pods.len(), "observedGeneration": int(rs.pointer("/metadata/generation")),
    });
    if rs.get("status") != Some(&status) {
        let mut updated = rs.clone();
        updated["status"] = status;
        let _ = store.update(key, updated);
    }
    next
}

/// When a pod's Ready condition last turned true, in seconds since the epoch.
fn ready_since(pod: &Value) -> Option<u64> {
    let conditions = pod.pointer("/status/conditions")?.as_array()?;
    let ready = conditions.iter().find(|c| c["type"] == "Ready" && c["status"] == "True")?;
    let at = gantry_core::time::parse_rfc3339(ready.get("lastTransitionTime")?.as_str()?)?;
    at.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

fn ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// The Job controller: up to `parallelism` pods at a time until `completions` succeeded, or `Failed` once more than
/// `backoffLimit` pods failed, or once it has been active longer than `activeDeadlineSeconds` (its active pods are
/// then deleted, reason `DeadlineExceeded`). Returns when its deadline falls, if it has one and is still running.
/// <https://kubernetes.io/docs/concepts/workloads/controllers/job/>
fn job(sim: &Sim, store: &mut Store, key: &Key, pod_kind: usize) -> Option<Instant> {
    let job = store.get(key).cloned().filter(|j| !deletion::deleting(j))?;
    let done = |kind: &str| {
        job.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == kind && c["status"] == "True"))
    };
    if done("Complete") || done("Failed") {
        return None;
    }
    let uid = job.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
    let first_seen = *lock(&sim.control.jobs_started).entry(uid.clone()).or_insert_with(Instant::now);
    let deadline = job
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_u64)
        .map(|secs| first_seen + Duration::from_secs(secs));
    let completions = job.pointer("/spec/completions").and_then(Value::as_i64).unwrap_or(1);
    let parallelism = job.pointer("/spec/parallelism").and_then(Value::as_i64).unwrap_or(1);
    let backoff_limit = job.pointer("/spec/backoffLimit").and_then(Value::as_i64).unwrap_or(6);
    let pods = owned(store, pod_kind, &key.namespace, &uid);
    let phase = |p: &Value| p.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending").to_owned();
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as i64;
    let failed = pods.iter().filter(|p| phase(p) == "Failed").count() as i64;
    let active = pods.len() as i64 - succeeded - failed;
    let mut conditions = Vec::new();
    let now = now_rfc3339();
    let mut completion_time = None;
    if succeeded >= completions {
        conditions.push(json!({"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": now}));
        conditions.push(json!({"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastTransitionTime": now}));
        completion_time = Some(now.clone());
    } else if failed > backoff_limit {
        conditions.push(json!({"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": now}));
        conditions.push(json!({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastTransitionTime": now}));
    } else if deadline.is_some_and(|at| Instant::now() >= at) {
        conditions.push(
            json!({"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded", "lastTransitionTime": now}),
        );
        conditions.push(json!({"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline", "lastTransitionTime": now}));
        for pod in pods.iter().filter(|p| !matches!(phase(p).as_str(), "Succeeded" | "Failed")) {
            if let Some(name) = pod.pointer("/metadata/name").and_then(Value::as_str) {
                let _ = store.delete(&Key { kind: pod_kind, namespace: key.namespace.clone(), name: name.to_owned() });
            }
        }
    } else {
        let wanted = parallelism.min(completions - succeeded) - active;
        for _ in 0..wanted.max(0) {
            let name = format!("{}-{}", key.name, sim.suffix());
            let mut labels = job.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}));
            labels["batch.kubernetes.io/job-name"] = json!(key.name);
            labels["job-name"] = json!(key.name);
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": key.namespace, "labels": labels, "ownerReferences": owner_ref(&job, "batch/v1", "Job")},
                "spec": job.pointer("/spec/template/spec").cloned().unwrap_or(json!({})),
                "status": {"phase": "Pending"},
            });
            if store
                .create(Key { kind: pod_kind, namespace: key.namespace.clone(), name: name.clone() }, pod, false)
                .is_ok()
            {
                let created =
                    events::Event::normal("SuccessfulCreate", format!("Created pod: {name}"), "job-controller");
                events::record(store, &job, created);
            }
        }
    }
    let pods = owned(store, pod_kind, &key.namespace, &uid);
    let active = pods.iter().filter(|p| !matches!(phase(p).as_str(), "Succeeded" | "Failed")).count() as i64;
    let mut status = json!({"active": if conditions.is_empty() { active } else { 0 }, "succeeded": succeeded, "failed": failed, "startTime": job.pointer("/status/startTime").cloned().unwrap_or(json!(now))});
    if !conditions.is_empty() {
        status["conditions"] = json!(conditions);
    }
    if let Some(at) = completion_time {
        status["completionTime"] = json!(at);
    }
    let old = job.get("status").cloned().unwrap_or(json!({}));
    let running = conditions.is_empty();
    if strip_times(&old) != strip_times(&status) || old.get("startTime").is_none() {
        let ended = conditions.iter().find(|c| c["type"] == "Complete" || c["type"] == "Failed").cloned();
        let mut next = job.clone();
        next["status"] = status;
        let _ = store.update(key, next);
        match ended {
            Some(c) if c["type"] == "Complete" => {
                events::record(
                    store,
                    &job,
                    events::Event::normal("Completed", "Job completed".into(), "job-controller"),
                );
            }
            Some(c) => {
                let reason = c["reason"].as_str().unwrap_or("Failed");
                let message = c["message"].as_str().unwrap_or_default().to_owned();
                events::record(store, &job, events::Event::warning(reason, message, "job-controller"));
            }
            None => {}
        }
    }
    deadline.filter(|_| running)
}

/// What the kubelet reports for a container of `image` (`status.image`, `status.imageID`), as containerd does: the
/// normalised reference (`nginx:1.27` as `docker.io/library/nginx:1.27`) and `<repository>@sha256:<digest>`, the
/// digest made up from the reference (or the one it pins). An image not pulled yet shows as written, with no id.
pub(crate) fn reported_image(image: &str, pulled: bool) -> (String, String) {
    let Ok(reference) = gantry_core::ImageRef::parse(image) else { return (image.to_owned(), String::new()) };
    if !pulled {
        return (image.to_owned(), String::new());
    }
    let digest = reference.digest().map_or_else(
        || {
            use sha2::Digest;
            let hash = sha2::Sha256::digest(reference.to_string().as_bytes());
            format!("sha256:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>())
        },
        str::to_owned,
    );
    let shown = match reference.tag() {
        // A reference pinned by digest alone shows as its repository and digest.
        None if reference.digest().is_some() => format!("{}/{}@{digest}", reference.registry(), reference.repository()),
        _ => reference.to_string(),
    };
    (shown, format!("{}/{}@{digest}", reference.registry(), reference.repository()))
}

/// The kubelet: moves a pod along its image's script; returns when it next changes by itself.
fn kubelet(sim: &Sim, store: &mut Store, key: &Key) -> Option<Instant> {
    let pod = store.get(key)?.clone();
    if pod.pointer("/metadata/ownerReferences").is_none() && pod.pointer("/spec/containers").is_none() {
        return None;
    }
    let pod_id = format!(
        "{}/{}/{}",
        key.namespace,
        key.name,
        pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default()
    );
    let now = Instant::now();
    let started = *lock(&sim.control.started).entry(pod_id).or_insert(now);
    let elapsed = now - started;
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let scripts = lock(&sim.control.scripts).clone();
    // An image without a script behaves as a plain container: one that keeps running (ready after 50 ms) in a pod
    // that restarts always, one that runs briefly and exits 0 in a pod that runs to completion (a Job's).
    let runs_to_completion =
        matches!(pod.pointer("/spec/restartPolicy").and_then(Value::as_str), Some("Never" | "OnFailure"));
    let script_of = |c: &Value| match scripts.get(c.get("image").and_then(Value::as_str).unwrap_or_default()) {
        Some(script) => script.clone(),
        None if runs_to_completion => PodScript::Exit { after: Duration::from_millis(50), code: 0, logs: Vec::new() },
        None => PodScript::default(),
    };
    let mut next: Option<Duration> = None;
    let mut statuses = Vec::new();
    let mut all_ready = true;
    let mut phase = "Running";
    for c in &containers {
        let name = c.get("name").cloned().unwrap_or(json!("app"));
        let image = c.get("image").cloned().unwrap_or(json!(""));
        let mut last_state = None;
        let (ready, restarts, state) = match script_of(c) {
            PodScript::ReadyAfter(delay) => {
                if elapsed >= delay {
                    (true, 0, json!({"running": {"startedAt": now_rfc3339()}}))
                } else {
                    next = Some(next.map_or(delay, |n| n.min(delay)));
                    (false, 0, json!({"running": {"startedAt": now_rfc3339()}}))
                }
            }
            PodScript::NeverReady => (false, 0, json!({"running": {"startedAt": now_rfc3339()}})),
            PodScript::CrashLoop { runs_for, exit_code } => {
                // As the kubelet does it: the first exit shows `terminated` (Error) and is restarted at once; from
                // the second exit on, the container waits in `CrashLoopBackOff` with its last exit in `lastState`
                // (a back-off of 100 ms here instead of 10 s doubling).
                let period = runs_for + Duration::from_millis(100);
                let cycle = (elapsed.as_millis() / period.as_millis().max(1)) as u32;
                let in_run = elapsed < period * cycle + runs_for;
                next = Some(if in_run { period * cycle + runs_for } else { period * (cycle + 1) });
                let exited = json!({"exitCode": exit_code, "reason": "Error", "finishedAt": now_rfc3339()});
                let state = match (in_run, cycle) {
                    (true, _) => json!({"running": {"startedAt": now_rfc3339()}}),
                    (false, 0) => json!({"terminated": exited}),
                    (false, _) => {
                        json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off restarting failed container (exit code {exit_code})")}})
                    }
                };
                let last = if cycle > 0 { Some(json!({"terminated": exited})) } else { None };
                last_state = last;
                (false, i64::from(cycle), state)
            }
            PodScript::Exit { after, code, logs } => {
                lock(&sim.control.logs).entry(format!("{}/{}", key.namespace, key.name)).or_insert_with(|| PodLog {
                    lines: logs.clone(),
                    started,
                    runs_for: after,
                });
                if elapsed >= after {
                    (false, 0, json!(code.to_string()))
                } else {
                    next = Some(next.map_or(after, |n| n.min(after)));
                    (false, 0, json!({"running": {"startedAt": now_rfc3339()}}))
                }
            }
            PodScript::ImagePullError => {
                phase = "Pending";
                let reason = if elapsed < Duration::from_millis(200) { "ErrImagePull" } else { "ImagePullBackOff" };
                if elapsed < Duration::from_millis(200) {
                    next = Some(Duration::from_millis(200));
                }
                (false, 0, json!({"waiting": {"reason": reason, "message": format!("Back-off pulling image {image}")}}))
            }
        };
        let (ready, restarts, state) = match (ready, restarts, state) {
            (_, _, Value::String(exit)) => {
                // An Exit script: the container ended.
                let code: i32 = exit.parse().unwrap_or(1);
                phase = if code == 0 { "Succeeded" } else { "Failed" };
                let reason = if code == 0 { "Completed" } else { "Error" };
                (false, 0, json!({"terminated": {"exitCode": code, "reason": reason, "finishedAt": now_rfc3339()}}))
            }
            other => other,
        };
        all_ready &= ready;
        // As containerd reports it once the image is pulled: the normalised reference and a repository digest.
        let pulled = !matches!(script_of(c), PodScript::ImagePullError);
        let (image, image_id) = reported_image(image.as_str().unwrap_or_default(), pulled);
        let mut status = json!({"name": name, "image": image, "imageID": image_id, "ready": ready, "restartCount": restarts, "state": state, "started": ready});
        if let Some(last) = last_state {
            status["lastState"] = last;
        }
        statuses.push(status);
    }
    let ready_status = if all_ready && !containers.is_empty() { "True" } else { "False" };
    // Each condition keeps the time it last changed (`minReadySeconds` counts from Ready's).
    let since = |kind: &str, status: &str| {
        pod.pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind && c["status"] == status))
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now_rfc3339()))
    };
    let status = json!({
        "phase": phase,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": since("PodScheduled", "True")},
            {"type": "Ready", "status": ready_status, "lastTransitionTime": since("Ready", ready_status)},
            {"type": "ContainersReady", "status": ready_status, "lastTransitionTime": since("ContainersReady", ready_status)},
        ],
        "containerStatuses": statuses,
    });
    if !same_status(pod.get("status"), &status) {
        let before = pod.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut updated = pod.clone();
        updated["status"] = status;
        let _ = store.update(key, updated);
        kubelet_events(store, &pod, &before, &statuses);
    }
    next.map(|d| started + d)
}

/// What the scheduler and kubelet report as a pod's containers change state: `Scheduled`, then `Pulled`, `Created`
/// and `Started` per container when the pod first starts (or `Pulling` and the pull's failure), `BackOff` on
/// entering a crash loop, `Error: ImagePullBackOff` on backing off a pull.
fn kubelet_events(store: &mut Store, pod: &Value, before: &[Value], now: &[Value]) {
    let text = |p: &str| pod.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (name, namespace, uid) = (text("/metadata/name"), text("/metadata/namespace"), text("/metadata/uid"));
    if before.is_empty() {
        let message = format!("Successfully assigned {namespace}/{name} to {NODE}");
        events::record(store, pod, events::Event::normal("Scheduled", message, "default-scheduler"));
    }
    let waiting = |s: Option<&Value>| {
        s.and_then(|s| s.pointer("/state/waiting/reason")).and_then(Value::as_str).unwrap_or_default().to_owned()
    };
    for (i, status) in now.iter().enumerate() {
        let container = status["name"].as_str().unwrap_or_default();
        let image = pod.pointer(&format!("/spec/containers/{i}/image")).and_then(Value::as_str).unwrap_or_default();
        let old = before.iter().find(|s| s["name"] == status["name"]);
        let (was, is) = (waiting(old), waiting(Some(status)));
        if old.is_none() {
            if is == "ErrImagePull" {
                events::record(
                    store,
                    pod,
                    events::Event::normal("Pulling", format!("Pulling image {image:?}"), "kubelet"),
                );
                let failed = format!(
                    "Failed to pull image {image:?}: rpc error: code = NotFound desc = failed to pull and unpack image {image:?}: not found"
                );
                events::record(store, pod, events::Event::warning("Failed", failed, "kubelet"));
                events::record(store, pod, events::Event::warning("Failed", "Error: ErrImagePull".into(), "kubelet"));
            } else {
                let pulled = format!("Container image {image:?} already present on machine");
                events::record(store, pod, events::Event::normal("Pulled", pulled, "kubelet"));
                events::record(
                    store,
                    pod,
                    events::Event::normal("Created", format!("Created container: {container}"), "kubelet"),
                );
                events::record(
                    store,
                    pod,
                    events::Event::normal("Started", format!("Started container {container}"), "kubelet"),
                );
            }
        }
        if is != was && is == "CrashLoopBackOff" {
            let message = format!("Back-off restarting failed container {container} in pod {name}_{namespace}({uid})");
            events::record(store, pod, events::Event::warning("BackOff", message, "kubelet"));
        }
        if is != was && is == "ImagePullBackOff" {
            events::record(
                store,
                pod,
                events::Event::normal("BackOff", format!("Back-off pulling image {image:?}"), "kubelet"),
            );
            events::record(store, pod, events::Event::warning("Failed", "Error: ImagePullBackOff".into(), "kubelet"));
        }
    }
}

/// Compares pod statuses without their timestamps.
fn same_status(old: Option<&Value>, new: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "startedAt" | "finishedAt"))
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    old.is_some_and(|o| strip(o) == strip(new))
}

/// The Deployment controller's status side: counts, observedGeneration, Available and Progressing.
fn deployment_status(sim: &Sim, store: &mut Store, key: &Key, rs_kind: usize, next: &mut Option<Instant>) {
    let Some(d) = store.get(key).cloned() else { return };
    let uid = d.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
    let replicas = d.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let hash = template_hash(&d.pointer("/spec/template").cloned().unwrap_or(json!({})));
    let sets = owned(store, rs_kind, &key.namespace, &uid);
    let sum = |path: &str| sets.iter().map(|rs| int(rs.pointer(path))).sum::<i64>();
    let new_rs = sets
        .iter()
        .find(|rs| rs.pointer("/metadata/name").and_then(Value::as_str) == Some(&format!("{}-{hash}", key.name)));
    let updated = new_rs.map_or(0, |rs| int(rs.pointer("/status/replicas")));
    let (total, ready_count, available) =
        (sum("/status/replicas"), sum("/status/readyReplicas"), sum("/status/availableReplicas"));
    // Recreate has no unavailability budget: the Deployment is available when all its replicas are.
    let (_, max_unavailable) = if recreate(&d) { (0, 0) } else { surge_and_unavailable(&d, replicas) };
    let is_paused = d.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false);
    let complete = updated == replicas && total == replicas && available == replicas;
    let old = d.get("status").cloned().unwrap_or(json!({}));
    let condition = |kind: &str| {
        old.get("conditions").and_then(Value::as_array).and_then(|cs| cs.iter().find(|c| c["type"] == kind).cloned())
    };
    let now = now_rfc3339();
    // Progress is judged from the last time the rollout's counts moved.
    let signature = json!([updated, available, total, d.pointer("/metadata/generation")]);
    let last_move = {
        let mut progress = lock(&sim.control.progress);
        let entry = progress.entry(uid.clone()).or_insert_with(|| (signature.clone(), Instant::now()));
        // While paused the deadline does not run; it starts afresh on resume.
        if entry.0 != signature || is_paused {
            *entry = (signature, Instant::now());
        }
        entry.1
    };
    let deadline =
        Duration::from_secs(d.pointer("/spec/progressDeadlineSeconds").and_then(Value::as_u64).unwrap_or(600));
    let (progress_status, progress_reason, message) = if is_paused {
        ("Unknown", "DeploymentPaused", "Deployment is paused".to_owned())
    } else if complete {
        ("True", "NewReplicaSetAvailable", format!("ReplicaSet \"{}-{hash}\" has successfully progressed.", key.name))
    } else if last_move.elapsed() >= deadline {
        ("False", "ProgressDeadlineExceeded", format!("ReplicaSet \"{}-{hash}\" has timed out progressing.", key.name))
    } else {
        *next = Some(next.map_or(last_move + deadline, |n| n.min(last_move + deadline)));
        ("True", "ReplicaSetUpdated", format!("ReplicaSet \"{}-{hash}\" is progressing.", key.name))
    };
    let transition = |kind: &str, status: &str| {
        condition(kind)
            .filter(|c| c["status"] == status)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or(json!(now))
    };
    let available_ok = available >= replicas - max_unavailable;
    let (avail_status, avail_reason) =
        if available_ok { ("True", "MinimumReplicasAvailable") } else { ("False", "MinimumReplicasUnavailable") };
    let status = json!({
        "observedGeneration": int(d.pointer("/metadata/generation")),
        "replicas": total, "updatedReplicas": updated, "readyReplicas": ready_count, "availableReplicas": available,
        "unavailableReplicas": (replicas - available).max(0),
        "conditions": [
            {"type": "Available", "status": avail_status, "reason": avail_reason, "message": if available_ok { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." }, "lastUpdateTime": transition("Available", avail_status), "lastTransitionTime": transition("Available", avail_status)},
            {"type": "Progressing", "status": progress_status, "reason": progress_reason, "message": message, "lastUpdateTime": transition("Progressing", progress_status), "lastTransitionTime": transition("Progressing", progress_status)},
        ],
    });
    if !same_status(Some(&strip_times(&old)), &strip_times(&status)) {
        let mut next_d = d.clone();
        next_d["status"] = status;
        let _ = store.update(key, next_d);
    }
}

fn strip_times(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.ends_with("Time") && !k.ends_with("At"))
                .map(|(k, v)| (k.clone(), strip_times(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_times).collect()),
        other => other.clone(),
    }
}
