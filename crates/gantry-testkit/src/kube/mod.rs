//! A simulated Kubernetes API server on 127.0.0.1 that the real `kube::Client` and `kubectl` talk to.
//!
//! What it does follows the Kubernetes API conventions for everything Gantry uses: resourceVersion on every write and
//! `409 Conflict` for a stale one; `generation` bumped by changes outside metadata and status; status written only
//! through the `status` subresource for types that have one; list and watch with label and field selectors; watch
//! from a resourceVersion, with `410 Gone` once it is compacted, and a bookmark every second to watches that ask
//! (the API server: about once a minute); JSON merge patch, strategic merge patch and server-side apply with field
//! ownership: every write records who set which fields in `managedFields` (`fieldsV1`), an apply that would change
//! a field another manager set is refused with `409 Conflict` and `FieldManagerConflict` causes unless forced, and
//! fields a manager stops applying (that no one else set) are removed (see the `ownership` module for what it
//! approximates); lists in pages (`limit` and `continue`, each page from one consistent snapshot, `410` once it is
//! compacted); deletion with owner-reference propagation and garbage collection of Deployments, ReplicaSets, Jobs
//! and Pods whose owners are gone (orphaned dependents lose their reference to the owner,
//! and a Deployment adopts the unowned ReplicaSets its selector selects), delete preconditions (uid,
//! resourceVersion: `409`), the initial namespaces refused deletion (`403`); label and field selectors checked
//! (invalid keys and values, unsupported fields: `400`); discovery for kubectl. A write without a resourceVersion
//! (patch, apply, PUT) is applied to the object as it is when written, so it never fails with `409` because a
//! controller wrote in between (the API server retries such writes). Watch history is kept for 5 minutes and at
//! most 10,000 changes (then `410 Gone`, as after etcd's compaction; the first versions, from before the cluster
//! served, are compacted from the start), and writes cost what their namespace holds. Streaming lists
//! (`sendInitialEvents`, ending with the `k8s.io/initial-events-end` bookmark); list and watch options validated as
//! upstream's `ValidateListOptions` does (`422`); a resourceVersion the store has not reached is waited for 3 s,
//! then `504` "Too large resource version"; `resourceVersionMatch=Exact` is served from the current state (no older
//! snapshots are kept); a resourceVersion that is not a number is a `400`.
//!
//! Protobuf (`application/vnd.kubernetes.protobuf`, which kubectl 1.32+ and Helm 4 send for built-in types): request
//! bodies of the built-in kinds are decoded, and a client that prefers protobuf gets objects, lists and `Status`
//! errors as protobuf; see the `protobuf` module (decoded objects keep explicit zeros that Go's JSON would omit).
//!
//! OpenAPI: v3 documents per group-version with the built-in types' schemas (`kubectl explain`), and a v2 document
//! (JSON, or gnostic protobuf for kubectl 1.27 and 1.28) whose paths tell kubectl that the server validates fields;
//! see the `openapi` module. Unknown fields of built-in objects are dropped on every write, and
//! `fieldValidation` (`Strict`, `Warn` by default, `Ignore`) decides whether the client is refused, warned or told
//! nothing; `dryRun` and `fieldValidation` values are checked (see the `field_validation` module).
//!
//! Deletion: finalizers (`deletionTimestamp`, gone with the last finalizer), `Background`, `Foreground` and `Orphan`
//! propagation with a garbage collector for every namespaced kind, and namespace termination (`Terminating`,
//! creates refused, content deleted, then the namespace): see the `deletion` module.
//!
//! Tables (server-side printing, `kubectl get`'s columns, also for `get -w`): see the `table` module.
//!
//! Defaulting and validation of the built-in kinds as the registry's strategies do them, for the rules a pipeline
//! meets first (names, labels, replicas, selectors, containers and images, a Job's restart policy, immutable
//! selectors, a body's namespace; Deployment, Job, Pod, Service and Namespace defaults, Service cluster IPs): see
//! the `admission` module for what it covers and what it stores as sent.
//!
//! What it does not model (yet): authentication and authorization; the other field validations (resources,
//! probes, volumes...) and admission webhooks; protobuf for custom resources (refused with `415`, as
//! upstream) and protobuf watch streams (watches answer JSON, which client-go also accepts); strategic merge's full list
//! semantics (lists of objects merge by `name`, `containerPort`, `port` or `type`; `$patch: delete` is honoured,
//! other directives are ignored); graceful deletion of pods (a pod without finalizers goes at once).
//! Controllers: Deployment, ReplicaSet and Job, and a kubelet whose pods behave as scripted per image ([`PodScript`];
//! an image without a script runs until deleted in a pod that restarts always, and exits 0 after 50 ms in a pod that
//! runs to completion, as a Job's does),
//! with their output served as pod logs, printed line by line over the container's run and followed with
//! `follow=true` until it exits or the pod is deleted (other log parameters, such as `tailLines`, `sinceSeconds` and
//! `timestamps`, are ignored); old ReplicaSets beyond `revisionHistoryLimit` are deleted once a rollout completes;
//! the `Recreate` strategy; paused Deployments (no rollout, replicas still scaled: a rollout paused half-way gives
//! the difference to one ReplicaSet, where upstream shares it out in proportion); the `scale` subresource of
//! Deployments and ReplicaSets. See the `controllers` and `scale` modules. The controllers, the scheduler and the
//! kubelet record Events as upstream words them (`kubectl get events`, `describe`; see the `events` module). Not
//! modelled: scheduling and nodes. `minReadySeconds` is honoured in whole seconds (a pod is available once its Ready
//! condition's `lastTransitionTime` is that old). There is one Node object,
//! ready (pods are not bound to it), and `SelfSubjectAccessReview` allows every request (`kubectl auth can-i`).

mod admission;
mod api;
mod controllers;
mod deletion;
mod events;
mod fault;
mod field_validation;
mod list_options;
mod openapi;
mod ownership;
mod patch;
mod protobuf;
mod resources;
mod scale;
mod selector;
pub(crate) mod store;
mod table;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

pub use axum::http::{Method, StatusCode};
pub use controllers::PodScript;
pub use fault::Fault;
pub use resources::ResourceType;
use store::{Key, Store};

/// Errors of the simulated cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The server could not listen on loopback.
    #[error("could not start the simulated API server on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    /// The generated kubeconfig was refused by kube.
    #[error("kube refused the simulator's kubeconfig")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    /// kube could not make a client.
    #[error("kube could not make a client for the simulator")]
    Client(#[source] kube::Error),
}

/// The simulated cluster's one node.
pub(crate) const NODE: &str = "gantry-node-1";

/// The node object: ready, linux/amd64, the server's kubelet version, room for 110 pods.
/// <https://kubernetes.io/docs/reference/node/node-status/>
fn node() -> serde_json::Value {
    let now = store::now_rfc3339();
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "node-role.kubernetes.io/control-plane": ""}},
        "spec": {},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": NODE}],
            "nodeInfo": {"kubeletVersion": format!("v1.{}.0", api::SERVER_MINOR), "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64", "containerRuntimeVersion": "gantry-testkit://1", "kernelVersion": "", "osImage": "Gantry simulated node", "machineID": "", "systemUUID": "", "bootID": ""},
        },
    })
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// State shared by the server's handlers.
pub(crate) struct Sim {
    pub(crate) addr: SocketAddr,
    pub(crate) store: Mutex<Store>,
    pub(crate) types: RwLock<Vec<ResourceType>>,
    faults: Mutex<Vec<Fault>>,
    requests: Mutex<BTreeMap<String, u64>>,
    names: AtomicU64,
    /// Ends every open watch when notified.
    pub(crate) watch_stop: Arc<Notify>,
    /// The longest a watch stays open.
    pub(crate) max_watch: Duration,
    /// How often a watch that asked for bookmarks gets one (the API server: about once a minute).
    pub(crate) bookmark_every: Duration,
    /// Paginated lists in progress: the consistent snapshot each `continue` token reads from (the newest 32).
    pub(crate) pages: Mutex<std::collections::VecDeque<(u64, Arc<api::Snapshot>)>>,
    /// The id of the next paginated list (never reused, so a token from before a compaction stays expired).
    pub(crate) list_ids: AtomicU64,
    pub(crate) control: controllers::ControlPlane,
    /// Set when the simulator stops, so that its control plane ends too.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
}

impl Sim {
    /// A suffix for `generateName`.
    pub(crate) fn suffix(&self) -> String {
        let n = self.names.fetch_add(1, Ordering::Relaxed);
        let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
        (0..5).map(|i| alphabet[((n / 27u64.pow(i)) % 27) as usize] as char).collect()
    }

    /// Counts a request to the API by verb and resource (`LIST pods`, `WATCH deployments`, `PATCH deployments`).
    pub(crate) fn count(&self, what: &str) {
        *lock(&self.requests).entry(what.to_owned()).or_default() += 1;
    }

    /// What an injected fault does to this request, if one matches.
    pub(crate) fn take_fault(&self, method: &Method, path: &str) -> Option<fault::Injected> {
        fault::take(&mut lock(&self.faults), method, path)
    }
}

/// How a service performs when an image serves it, for the metrics the simulated Datadog reports
/// ([`crate::datadog::DatadogSim::follow`]). The default is a healthy service: 100 ms, 1% errors.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Health {
    /// Mean request latency, in milliseconds.
    pub latency_ms: f64,
    /// The share of requests that fail.
    pub error_rate: f64,
}

impl Health {
    /// A service answering in `latency_ms` with `error_rate` of its requests failing.
    pub fn new(latency_ms: f64, error_rate: f64) -> Self {
        Self { latency_ms, error_rate }
    }
}

impl Default for Health {
    fn default() -> Self {
        Self { latency_ms: 100.0, error_rate: 0.01 }
    }
}

/// The label pods carry their release's version in (as Gantry sets it).
const VERSION_LABEL: &str = "app.kubernetes.io/version";

impl Sim {
    /// How each ready pod of `service` (label `app` or `app.kubernetes.io/name`) at `version` (label
    /// `app.kubernetes.io/version`, or its image's tag) performs, by its image.
    pub(crate) fn serving(&self, service: &str, version: &str) -> Vec<Health> {
        let pods = self.types.read().unwrap_or_else(|e| e.into_inner()).iter().position(|t| t.kind == "Pod");
        let Some(pods) = pods else { return Vec::new() };
        let health = lock(&self.control.health).clone();
        let store = lock(&self.store);
        store
            .list(pods, None)
            .into_iter()
            .filter(|p| {
                let labels = p.pointer("/metadata/labels");
                let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
                let image = p.pointer("/spec/containers/0/image").and_then(Value::as_str).unwrap_or_default();
                let pod_version = label(VERSION_LABEL)
                    .map(str::to_owned)
                    .or_else(|| gantry_core::ImageRef::parse(image).ok().map(|r| r.version()));
                (label("app") == Some(service) || label("app.kubernetes.io/name") == Some(service))
                    && pod_version.as_deref() == Some(version)
                    && p.pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .map(|p| {
                let image = p.pointer("/spec/containers/0/image").and_then(Value::as_str).unwrap_or_default();
                health.get(image).copied().unwrap_or_default()
            })
            .collect()
    }
}

/// A running simulated cluster. It stops, closing every connection and watch, when dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use gantry_testkit::kube::ClusterSim;
/// use k8s_openapi::api::core::v1::ConfigMap;
///
/// let cluster = ClusterSim::start().await?;
/// let configmaps: kube::Api<ConfigMap> = kube::Api::namespaced(cluster.client().await?, "default");
/// assert!(configmaps.list(&Default::default()).await?.items.is_empty());
/// # Ok(()) }
/// ```
pub struct ClusterSim {
    sim: Arc<Sim>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    control: tokio::task::JoinHandle<()>,
}

impl ClusterSim {
    /// Starts a cluster with the namespaces `default`, `kube-system` and `kube-public`, on a free loopback port.
    pub async fn start() -> Result<Self, SimError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(SimError::Bind)?;
        let addr = listener.local_addr().map_err(SimError::Bind)?;
        let sim = Arc::new(Sim {
            addr,
            store: Mutex::new(Store::new()),
            types: RwLock::new(resources::builtins()),
            faults: Mutex::default(),
            requests: Mutex::default(),
            names: AtomicU64::new(0),
            watch_stop: Arc::new(Notify::new()),
            max_watch: Duration::from_secs(300),
            bookmark_every: Duration::from_secs(1),
            pages: Mutex::default(),
            list_ids: AtomicU64::new(1),
            control: controllers::ControlPlane::default(),
            stopping: std::sync::atomic::AtomicBool::new(false),
        });
        {
            let mut store = lock(&sim.store);
            for ns in ["default", "kube-system", "kube-public"] {
                let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "status": {"phase": "Active"}});
                let _ = store.create(Key { kind: 0, namespace: String::new(), name: ns.to_owned() }, object, false);
            }
            // One node, ready, as `kubectl get nodes` shows it (pods are not scheduled to it: see above).
            let node_kind = controllers::kind_of(&sim, "Node");
            let _ =
                store.create(Key { kind: node_kind, namespace: String::new(), name: NODE.to_owned() }, node(), false);
            // A real cluster's first versions are long compacted: a watch from `resourceVersion=1` is 410 Gone.
            store.compact();
        }
        let app = axum::Router::new().fallback(api::handle).with_state(Arc::clone(&sim));
        let control = tokio::spawn(controllers::run(Arc::clone(&sim)));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self { sim, shutdown: Some(shutdown), server, control })
    }

    /// The server's URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.sim.addr)
    }

    /// A kubeconfig for this cluster (context `gantry-testkit`, namespace `default`), for kube and kubectl.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gantry-testkit\n  cluster:\n    server: {}\ncontexts:\n- name: gantry-testkit\n  context:\n    cluster: gantry-testkit\n    user: gantry-testkit\n    namespace: default\ncurrent-context: gantry-testkit\nusers:\n- name: gantry-testkit\n  user:\n    token: testkit\n",
            self.url()
        )
    }

    /// The kube configuration for this cluster.
    pub async fn config(&self) -> Result<kube::Config, SimError> {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml()).map_err(SimError::Kubeconfig)?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(SimError::Kubeconfig)
    }

    /// A real `kube::Client` talking to this cluster.
    pub async fn client(&self) -> Result<kube::Client, SimError> {
        kube::Client::try_from(self.config().await?).map_err(SimError::Client)
    }

    /// Serves a custom resource type from now on (stored, no controller), e.g. Gateway API HTTPRoutes.
    pub fn register(&self, resource: ResourceType) {
        self.sim.types.write().unwrap_or_else(|e| e.into_inner()).push(resource);
    }

    /// Forgets the watch history: watches resuming from an older resourceVersion get `410 Gone`.
    pub fn compact(&self) {
        lock(&self.sim.store).compact();
        // As etcd's compaction: the snapshots continue tokens read from are gone too.
        lock(&self.sim.pages).clear();
    }

    /// Fails or delays the next matching requests (see [`Fault`]).
    pub fn inject(&self, fault: Fault) {
        lock(&self.sim.faults).push(fault);
    }

    /// Removes every injected fault not used up yet.
    pub fn clear_faults(&self) {
        lock(&self.sim.faults).clear();
    }

    /// Ends every open watch now, as a restarting API server or a broken connection would.
    pub fn drop_watches(&self) {
        self.sim.watch_stop.notify_waiters();
    }

    /// How containers of `image` behave on the simulated kubelet (default: ready after 50 ms).
    pub fn script(&self, image: impl Into<String>, script: PodScript) {
        lock(&self.sim.control.scripts).insert(image.into(), script);
    }

    /// How services perform when `image` serves them, in the metrics of a [`DatadogSim`](crate::datadog::DatadogSim)
    /// that follows this cluster (default: 100 ms, 1% errors).
    pub fn script_health(&self, image: impl Into<String>, health: Health) {
        lock(&self.sim.control.health).insert(image.into(), health);
    }

    pub(crate) fn shared(&self) -> Arc<Sim> {
        Arc::clone(&self.sim)
    }

    /// API requests received so far, by verb and resource: `GET deployments`, `LIST pods`, `WATCH pods`,
    /// `PATCH deployments`, `POST events`, `PUT replicasets/status` (discovery is not counted).
    pub fn requests(&self) -> BTreeMap<String, u64> {
        lock(&self.sim.requests).clone()
    }

    /// Forgets the requests counted so far.
    pub fn reset_requests(&self) {
        lock(&self.sim.requests).clear();
    }
}

impl Drop for ClusterSim {
    fn drop(&mut self) {
        self.sim.stopping.store(true, Ordering::Release);
        self.control.abort();
        self.drop_watches();
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        self.server.abort();
    }
}

impl std::fmt::Debug for ClusterSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSim").field("url", &self.url()).finish_non_exhaustive()
    }
}
