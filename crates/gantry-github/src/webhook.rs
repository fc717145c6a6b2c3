//! The webhook receiver: signature first, then size, event type, redelivery, routing, and a run in the background.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gantry_core::{Notifier, Pipeline, Run, RunReport, Secret};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::event::DeploymentEvent;

/// Makes the pipeline for an event.
pub type Factory = dyn Fn(&DeploymentEvent) -> Pipeline + Send + Sync;

/// Which events a route takes: a repository (`owner/name`, or `owner/*`), and optionally an environment and a task.
#[derive(Clone, Debug)]
pub struct Route {
    repository: String,
    environment: Option<String>,
    task: Option<String>,
}

impl Route {
    /// Events of `repository` (`acme/shop`, or `acme/*` for every repository of `acme`).
    pub fn repository(repository: impl Into<String>) -> Self {
        Self { repository: repository.into(), environment: None, task: None }
    }

    /// Only deployments to `environment`.
    #[must_use]
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// Only deployments with this task (`deploy`, `deploy:migrations`).
    #[must_use]
    pub fn task(mut self, task: impl Into<String>) -> Self {
        self.task = Some(task.into());
        self
    }

    fn matches(&self, event: &DeploymentEvent) -> bool {
        let repository = match self.repository.strip_suffix("/*") {
            Some(owner) => event.repository.split_once('/').is_some_and(|(o, _)| o == owner),
            None => event.repository == self.repository,
        };
        repository
            && self.environment.as_ref().is_none_or(|e| *e == event.environment)
            && self.task.as_ref().is_none_or(|t| *t == event.task)
    }
}

/// How a background run ended: its report, and the statuses that could not be delivered to GitHub (a GitHub outage
/// never fails a deployment; it shows here, and in the report's `undelivered` with the notifiers' failures).
#[derive(Debug)]
#[non_exhaustive]
pub struct Finished {
    /// The run's report (`None` if the run could not start).
    pub report: Option<RunReport>,
    /// Statuses GitHub did not take, with why.
    pub undelivered: Vec<crate::StatusError>,
}

/// A run the receiver started: for which delivery, which pipeline, and how it ends.
#[derive(Debug)]
pub struct Started {
    /// The delivery that started it.
    pub delivery: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The run, in the background.
    pub run: tokio::task::JoinHandle<Finished>,
}

struct Shared {
    github: Option<crate::statuses::GitHub>,
    notifiers: Vec<Arc<dyn Notifier>>,
    secret: Secret,
    routes: Vec<(Route, Arc<Factory>)>,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
    started: Mutex<Vec<Started>>,
    /// Whether a [`Runs`] handle exists to take what `started` collects (else runs are not kept).
    keep_started: std::sync::atomic::AtomicBool,
}

/// Receives GitHub webhooks as an axum `Router` the host mounts (a `tower::Service`):
///
/// 1. `X-Hub-Signature-256` is verified over the raw body, in constant time, before anything is parsed: a missing
///    or wrong signature is `401`.
/// 2. Bodies above the limit (default 25 MB, GitHub's own maximum) are `413`.
/// 3. `ping` is answered `200`; event types other than `deployment` are answered `202` and ignored.
/// 4. A delivery id seen before (GitHub's redelivery) is answered `200` and starts nothing.
/// 5. The payload is parsed (`400` if it is not JSON or lacks a field), routed to every matching pipeline, and each
///    run starts in the background; the answer, `202`, does not wait for them.
///
/// ```
/// use gantry_core::{Pipeline, Secret, step_fn};
/// use gantry_github::{Route, Webhooks};
///
/// let app: axum::Router = Webhooks::new(Secret::new("webhook-secret"))
///     .route(Route::repository("acme/*").environment("production"), |event| {
///         Pipeline::builder("release").step("deploy", step_fn(|_| async { Ok(()) })).build().unwrap()
///     })
///     .router();
/// # let _ = app;
/// ```
pub struct Webhooks {
    github: Option<crate::statuses::GitHub>,
    notifiers: Vec<Arc<dyn Notifier>>,
    secret: Secret,
    routes: Vec<(Route, Arc<Factory>)>,
    limit: usize,
    remember: usize,
    shared: Option<Arc<Shared>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Webhooks {
    /// A receiver checking signatures with the webhook's `secret`.
    pub fn new(secret: Secret) -> Self {
        Self {
            github: None,
            notifiers: Vec::new(),
            secret,
            routes: Vec::new(),
            limit: 25 * 1024 * 1024,
            remember: 10_000,
            shared: None,
        }
    }

    /// Reports each run's deployment status to GitHub: `in_progress` when it starts, then its outcome.
    #[must_use]
    pub fn statuses(mut self, github: crate::statuses::GitHub) -> Self {
        self.github = Some(github);
        self
    }

    /// Like [`notify`](Self::notify), for a notifier shared with other receivers or runs.
    #[must_use]
    pub fn notify_shared(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }

    /// Tells `notifier` (Slack, ...) about every run the receiver starts; what it could not deliver is in the run's
    /// report ([`RunReport::undelivered`]).
    #[must_use]
    pub fn notify(mut self, notifier: impl Notifier) -> Self {
        self.notifiers.push(Arc::new(notifier));
        self
    }

    /// Starts `factory`'s pipeline for the deployment events `route` matches. Several routes may match one event
    /// (each starts its pipeline), and one factory may serve several routes.
    #[must_use]
    pub fn route(
        mut self,
        route: Route,
        factory: impl Fn(&DeploymentEvent) -> Pipeline + Send + Sync + 'static,
    ) -> Self {
        self.routes.push((route, Arc::new(factory)));
        self
    }

    /// The largest body accepted (default 25 MB).
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }

    /// How many delivery ids are remembered for redelivery checks (default 10,000).
    #[must_use]
    pub fn remember(mut self, deliveries: usize) -> Self {
        self.remember = deliveries.max(1);
        self
    }

    fn shared(&mut self) -> Arc<Shared> {
        let routes = std::mem::take(&mut self.routes);
        Arc::clone(self.shared.get_or_insert_with(|| {
            Arc::new(Shared {
                github: self.github.clone(),
                notifiers: self.notifiers.clone(),
                secret: self.secret.clone(),
                routes,
                seen: Mutex::new((HashSet::new(), VecDeque::new())),
                started: Mutex::new(Vec::new()),
                keep_started: std::sync::atomic::AtomicBool::new(false),
            })
        }))
    }

    /// The router to mount (it answers `POST` on any path it is mounted at), and a handle on the runs it starts.
    pub fn router_with_runs(mut self) -> (axum::Router, Runs) {
        let shared = self.shared();
        let router = self.make_router(Arc::clone(&shared));
        shared.keep_started.store(true, std::sync::atomic::Ordering::Relaxed);
        (router, Runs { shared })
    }

    /// The router to mount. The runs it starts are not kept (nothing could take them): each ends on its own.
    pub fn router(mut self) -> axum::Router {
        let shared = self.shared();
        self.make_router(shared)
    }

    fn make_router(&self, shared: Arc<Shared>) -> axum::Router {
        let remember = self.remember;
        axum::Router::new()
            .fallback(move |State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes| async move {
                receive(&shared, remember, &headers, &body)
            })
            .layer(DefaultBodyLimit::max(self.limit))
            .with_state(shared)
    }
}

/// The runs a receiver started.
#[derive(Clone)]
pub struct Runs {
    shared: Arc<Shared>,
}

impl Runs {
    /// Takes the runs started so far (each with its background task).
    pub fn take(&self) -> Vec<Started> {
        std::mem::take(&mut *lock(&self.shared.started))
    }
}

/// The `X-Hub-Signature-256` GitHub sends for `body` under `secret` (`sha256=<hex>`): for tools and tests that
/// play GitHub's part.
pub fn sign_payload(secret: &Secret, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`, compared in constant time.
pub fn verify_signature(secret: &Secret, body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("sha256=") else { return false };
    if hex.len() != 64 {
        return false;
    }
    // Byte by byte: a text of 64 bytes need not be 64 characters (slicing it by bytes could split one).
    let nibble = |b: u8| char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let Some(expected) = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else { return false };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn answer(code: StatusCode, message: &str) -> Response {
    (code, message.to_owned()).into_response()
}

fn receive(shared: &Shared, remember: usize, headers: &HeaderMap, body: &[u8]) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(signature) = header("x-hub-signature-256") else {
        return answer(StatusCode::UNAUTHORIZED, "missing X-Hub-Signature-256");
    };
    if !verify_signature(&shared.secret, body, signature) {
        return answer(StatusCode::UNAUTHORIZED, "bad signature");
    }
    let event = header("x-github-event").unwrap_or_default();
    match event {
        "ping" => return answer(StatusCode::OK, "pong"),
        "deployment" => {}
        other => return answer(StatusCode::ACCEPTED, &format!("ignored: `{other}` events start nothing here")),
    }
    let Some(delivery) = header("x-github-delivery").filter(|d| !d.is_empty()) else {
        return answer(StatusCode::BAD_REQUEST, "missing X-GitHub-Delivery");
    };
    let deployment = match DeploymentEvent::from_body(delivery, body) {
        Ok(d) => d,
        Err(e) => return answer(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    {
        let mut seen = lock(&shared.seen);
        if seen.0.contains(delivery) {
            return answer(StatusCode::OK, "duplicate delivery: already started");
        }
        seen.0.insert(delivery.to_owned());
        seen.1.push_back(delivery.to_owned());
        while seen.1.len() > remember {
            if let Some(old) = seen.1.pop_front() {
                seen.0.remove(&old);
            }
        }
    }
    let mut count = 0;
    for (route, factory) in &shared.routes {
        if !route.matches(&deployment) {
            continue;
        }
        let pipeline = factory(&deployment);
        let name = pipeline.name().to_owned();
        let context = deployment.context();
        let github = shared.github.clone();
        let notifiers = shared.notifiers.clone();
        let event = deployment.clone();
        let pipeline_name = name.clone();
        let span = tracing::info_span!("gantry.webhook", delivery, repository = %deployment.repository);
        let run = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let run = async move {
                    let run = notifiers.into_iter().fold(Run::new(&pipeline, context), Run::notify_shared);
                    run.execute().await.ok()
                };
                match github {
                    Some(github) => {
                        let (report, undelivered) = github.report_run(&event, &pipeline_name, run).await;
                        Finished { report, undelivered }
                    }
                    None => Finished { report: run.await, undelivered: Vec::new() },
                }
            },
            span,
        ));
        tracing::info!(target: "gantry_github", delivery, repository = %deployment.repository, pipeline = %name, "run started");
        if shared.keep_started.load(std::sync::atomic::Ordering::Relaxed) {
            lock(&shared.started).push(Started { delivery: delivery.to_owned(), pipeline: name, run });
        }
        count += 1;
    }
    if count == 0 {
        return answer(StatusCode::ACCEPTED, "no pipeline for this repository, environment and task");
    }
    answer(StatusCode::ACCEPTED, &format!("started {count} run(s)"))
}
