//! The rolling deploy with automated rollback.

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::StreamExt;
use gantry_core::{CancellationToken, Step, StepContext, StepError, Template};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::cluster::Cluster;
use crate::error::KubeError;
use crate::retry::retrying;
use crate::watch::{Change, changes};

/// Why a rollout stopped when its step was told to.
pub(crate) const INTERRUPTED: &str = "interrupted (the run was cancelled, or the step's timeout passed)";

/// Container states that fail a rollout (or a Job) at once instead of at the progress deadline: the container cannot
/// start, or keeps crashing.
pub(crate) const FATAL_WAITING: [&str; 7] = [
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Sets a new image on a Deployment and follows the rollout as `kubectl rollout status` does, by watching; fails fast
/// on crash loops, image pull errors and restarts above a threshold (the Deployment's `progressDeadlineSeconds` is the
/// backstop); on failure, timeout or cancellation rolls back to the pod template that was live before, waits until
/// that is healthy again, and fails saying what went wrong and that it rolled back. Each phase is a Kubernetes Event
/// on the Deployment and a log line of the step.
///
/// ```no_run
/// # fn demo(cluster: gantry_kube::Cluster) {
/// use gantry_kube::RollingDeploy;
/// let deploy = RollingDeploy::new(cluster, "{{service}}", "{{image}}").container("app").max_restarts(2);
/// # let _ = deploy; }
/// ```
#[derive(Clone, Debug)]
pub struct RollingDeploy {
    cluster: Cluster,
    namespace: Option<String>,
    deployment: String,
    image: String,
    container: Option<String>,
    max_restarts: i32,
    interrupt_grace: std::time::Duration,
}

/// How long a rolling deploy may take to roll back once its timeout has passed, unless told otherwise.
pub(crate) const ROLLBACK_GRACE: std::time::Duration = std::time::Duration::from_secs(300);

/// The Deployment being rolled out and how to watch it and its pods.
pub(crate) struct Watched<'a> {
    pub(crate) deploys: &'a Api<Deployment>,
    pub(crate) pods: &'a Api<Pod>,
    pub(crate) name: &'a str,
    pub(crate) selector: &'a str,
}

/// How following a rollout ended.
pub(crate) enum Followed {
    Complete,
    Failed(String),
    /// A watch was given up (the server kept refusing or failing it): the rollout's fate is unknown.
    Unwatchable(KubeError),
    Cancelled,
}

impl RollingDeploy {
    /// Deploys `image` (a template, e.g. `{{image}}`) to the Deployment `deployment` (a template too) in the
    /// cluster's namespace.
    pub fn new(cluster: Cluster, deployment: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            cluster,
            namespace: None,
            deployment: deployment.into(),
            image: image.into(),
            container: None,
            max_restarts: 2,
            interrupt_grace: ROLLBACK_GRACE,
        }
    }

    /// How long the step may take, once its timeout has passed, to roll back and see the previous version healthy
    /// again before it is dropped (default 5 minutes). Dropped mid-rollout (this grace or the run's grace period
    /// ran out, or the run was dropped), it still starts the rollback, in a task of its own, and records a
    /// Kubernetes Event saying so.
    #[must_use]
    pub fn interrupt_grace(mut self, grace: std::time::Duration) -> Self {
        self.interrupt_grace = grace;
        self
    }

    /// Another namespace (a template).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The container whose image changes (default: the first).
    #[must_use]
    pub fn container(mut self, name: impl Into<String>) -> Self {
        self.container = Some(name.into());
        self
    }

    /// Fails the rollout once a new pod's container has restarted more than this (default 2).
    #[must_use]
    pub fn max_restarts(mut self, restarts: i32) -> Self {
        self.max_restarts = restarts;
        self
    }

    fn templates(&self) -> impl Iterator<Item = &str> {
        [self.deployment.as_str(), self.image.as_str()].into_iter().chain(self.namespace.as_deref())
    }
}

/// Follows the Deployment until its rollout of `generation` is complete, fails, or `cancel` fires; a pod of
/// `image` crash-looping, failing to pull, or restarting more than `max_restarts` times fails it at once.
pub(crate) async fn follow(
    w: &Watched<'_>,
    generation: i64,
    image: &str,
    max_restarts: i32,
    cancel: Option<&CancellationToken>,
) -> Followed {
    let (deploys, pods, name, selector) = (w.deploys, w.pods, w.name, w.selector);
    let namespace = deploys.namespace().unwrap_or("default");
    let deployment_changes = changes(
        deploys.clone(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
        format!("Deployment `{name}` in namespace `{namespace}`"),
    );
    let pod_changes = changes(
        pods.clone(),
        watcher::Config::default().labels(selector),
        format!("the pods `{selector}` in namespace `{namespace}`"),
    );
    tokio::pin!(deployment_changes, pod_changes);
    let never = CancellationToken::new();
    let cancel = cancel.unwrap_or(&never);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Followed::Cancelled,
            Some(change) = deployment_changes.next() => {
                let d = match change {
                    Change::Applied(d) => d,
                    Change::Deleted(_) => return Followed::Failed(format!("Deployment `{name}` was deleted")),
                    Change::Failed(e) => return Followed::Unwatchable(e),
                };
                tracing::debug!(target: "gantry_kube::rollout", status = ?d.status.as_ref().map(|s| (s.observed_generation, s.replicas, s.updated_replicas, s.available_replicas)), generation, "deployment changed");
                if rollout_complete(&d, generation) {
                    return Followed::Complete;
                }
                if let Some(message) = deadline_exceeded(&d) {
                    return Followed::Failed(format!("no progress within the deadline ({message})"));
                }
            }
            Some(change) = pod_changes.next() => {
                tracing::trace!(target: "gantry_kube::rollout", "pod changed");
                match change {
                    Change::Applied(pod) => {
                        if let Some(why) = fatal(&pod, image, max_restarts) {
                            return Followed::Failed(why);
                        }
                    }
                    Change::Deleted(_) => {}
                    // Without the pods, crash loops and pull errors would go unseen until the progress deadline.
                    Change::Failed(e) => return Followed::Unwatchable(e),
                }
            }
            else => return Followed::Failed(format!("the watches of `{name}` ended")),
        }
    }
}

/// Puts Deployment `name` back on its `previous` pod template (a JSON patch replacing `/spec/template` whole, as
/// `kubectl rollout undo` does) and follows that rollout of `image`.
async fn restore_template(
    deploys: &Api<Deployment>,
    pods: &Api<Pod>,
    name: &str,
    previous: &serde_json::Value,
    image: &str,
    max_restarts: i32,
) -> Result<Followed, KubeError> {
    let back = Patch::Json::<()>(
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/template", "value": previous}]))
            .map_err(|e| KubeError::Invalid(e.to_string()))?,
    );
    let params = PatchParams::default();
    let patched = retrying(&format!("roll back Deployment `{name}`"), || deploys.patch(name, &params, &back)).await?;
    let selector = selector_of(&patched)?;
    let watched = Watched { deploys, pods, name, selector: &selector };
    Ok(Box::pin(follow(&watched, patched.metadata.generation.unwrap_or(0), image, max_restarts, None)).await)
}

/// Follows the rollouts of Deployments just applied (namespace, name, previous pod template if it existed); if one
/// fails, restores the previous template of every one that had one, waits for those, and fails saying what happened.
pub(crate) async fn track(
    cluster: &Cluster,
    ctx: &StepContext,
    deployments: &[(String, String, Option<serde_json::Value>)],
) -> Result<(), StepError> {
    let client = cluster.client();
    let mut failure = None;
    for (namespace, name, _) in deployments {
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let current = retrying(&format!("get Deployment `{name}`"), || deploys.get(name)).await?;
        let selector = selector_of(&current)?;
        let template = current.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let image =
            template.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default();
        let watched = Watched { deploys: &deploys, pods: &pods, name, selector: &selector };
        let generation = current.metadata.generation.unwrap_or(0);
        match Box::pin(follow(&watched, generation, &image, 2, Some(ctx.cancellation()))).await {
            Followed::Complete => ctx.log(format!("deployment.apps/{name} rolled out {image}")),
            Followed::Failed(why) => {
                failure = Some(format!("the rollout of Deployment `{name}` failed: {why}"));
                break;
            }
            Followed::Unwatchable(e) => {
                failure =
                    Some(format!("the rollout of Deployment `{name}` failed: the rollout cannot be followed: {e}"));
                break;
            }
            Followed::Cancelled => {
                failure = Some(INTERRUPTED.to_owned());
                break;
            }
        }
    }
    let Some(failure) = failure else { return Ok(()) };
    let mut restored = Vec::new();
    for (namespace, name, previous) in deployments {
        let Some(previous) = previous else { continue };
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let image =
            previous.pointer("/spec/containers/0/image").and_then(serde_json::Value::as_str).unwrap_or_default();
        let outcome = match Box::pin(restore_template(&deploys, &pods, name, previous, image, 2)).await? {
            Followed::Complete => format!("{name} is back on {image}"),
            Followed::Failed(why) => format!("rolling {name} back failed too: {why}"),
            Followed::Unwatchable(e) => format!("rolling {name} back failed too: the rollout cannot be followed: {e}"),
            Followed::Cancelled => format!("rolling {name} back did not complete"),
        };
        ctx.log(&outcome);
        restored.push(outcome);
    }
    ctx.phase(gantry_core::Phase::RolledBack, format!("{failure}; {}", restored.join("; ")));
    let message = format!(
        "{failure}; rolled back: {}",
        if restored.is_empty() { "nothing existed before".to_owned() } else { restored.join("; ") }
    );
    Err(if ctx.is_cancelled() { StepError::interrupted(message) } else { StepError::new(message) })
}

fn rollout_complete(d: &Deployment, generation: i64) -> bool {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &d.status else { return false };
    status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) == replicas
        && status.replicas.unwrap_or(0) == replicas
        && status.available_replicas.unwrap_or(0) == replicas
}

fn deadline_exceeded(d: &Deployment) -> Option<String> {
    let conditions = d.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == "Progressing" && c.status == "False")?;
    (c.reason.as_deref() == Some("ProgressDeadlineExceeded")).then(|| c.message.clone().unwrap_or_default())
}

/// Why a pod running `image` dooms the rollout, if it does.
fn fatal(pod: &Pod, image: &str, max_restarts: i32) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    // Runtimes report the normalised reference (`nginx:1.27` as `docker.io/library/nginx:1.27`) and a digest.
    let wanted = gantry_core::ImageRef::parse(image).ok();
    let runs = |s: &k8s_openapi::api::core::v1::ContainerStatus| match &wanted {
        Some(wanted) => wanted.matches_status(&s.image, &s.image_id),
        None => s.image == image,
    };
    for s in statuses.iter().filter(|s| runs(s)) {
        let waiting = s.state.as_ref().and_then(|st| st.waiting.as_ref());
        if let Some(w) = waiting
            && let Some(reason) = w.reason.as_deref().filter(|r| FATAL_WAITING.contains(r))
        {
            let message = w.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            let restarts = match s.restart_count {
                1 => "restarted once".to_owned(),
                n => format!("{n} restarts"),
            };
            return Some(format!("pod `{name}` container `{}` is in {reason}{message} ({restarts})", s.name));
        }
        if s.restart_count > max_restarts {
            return Some(format!(
                "pod `{name}` container `{}` restarted {} times (more than {max_restarts})",
                s.name, s.restart_count
            ));
        }
    }
    None
}

pub(crate) fn selector_of(d: &Deployment) -> Result<String, KubeError> {
    let labels: BTreeMap<String, String> =
        d.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    if labels.is_empty() {
        return Err(KubeError::Invalid("the Deployment has no matchLabels selector".into()));
    }
    Ok(labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
}

pub(crate) fn image_of(template: &PodTemplateSpec, container: &str) -> Option<String> {
    template.spec.as_ref()?.containers.iter().find(|c| c.name == container)?.image.clone()
}

#[async_trait]
impl Step for RollingDeploy {
    /// The rolling strategy on a [`KubeTarget`](crate::KubeTarget) of the Deployment: one code path for rolling
    /// updates on Kubernetes, whether written as this step or as `Deploy` with `Rolling`.
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let render = |s: &str| Template::parse(s).and_then(|t| ctx.render(&t));
        let (name, image) = (render(&self.deployment)?, render(&self.image)?);
        let namespace = match &self.namespace {
            Some(ns) => render(ns)?,
            None => self.cluster.namespace().to_owned(),
        };
        let deploys: Api<Deployment> = Api::namespaced(self.cluster.client().clone(), &namespace);
        if retrying(&format!("get Deployment `{name}`"), || deploys.get_opt(&name)).await?.is_none() {
            return Err(KubeError::NotFound { kind: "Deployment", namespace, name }.into());
        }
        let mut target = crate::KubeTarget::new(self.cluster.clone(), name.clone())
            .namespace(namespace.clone())
            .max_restarts(self.max_restarts);
        if let Some(container) = &self.container {
            target = target.container(container.clone());
        }
        let version = gantry_core::ImageRef::parse(&image).map_or_else(|_| image.clone(), |r| r.version());
        // Named `namespace/name` in what the step reports (phases, Slack threads), as before.
        let release = gantry_core::strategy::Release::new(format!("{namespace}/{name}"), version).image(image.clone());
        ctx.log(format!("deploying {image} to {namespace}/{name}"));
        let rolling = gantry_core::strategy::Rolling::new();
        let budget = gantry_core::strategy::DEFAULT_RESTORE_BUDGET;
        let result =
            gantry_core::strategy::run_strategy(std::sync::Arc::new(target), &rolling, &release, ctx, budget).await;
        if result.is_ok() {
            ctx.log(format!("{namespace}/{name} rolled out {image}"));
        }
        result
    }

    fn describe(&self, ctx: &StepContext) -> String {
        let show = |s: &str| Template::parse(s).map(|t| ctx.render_masked(&t)).unwrap_or_else(|_| s.to_owned());
        let namespace = self.namespace.as_deref().map_or_else(|| self.cluster.namespace().to_owned(), show);
        format!(
            "rolls out {} to Deployment {namespace}/{}, rolling back on failure",
            show(&self.image),
            show(&self.deployment)
        )
    }

    fn variables(&self) -> Result<Vec<String>, gantry_core::TemplateError> {
        let mut names = Vec::new();
        for t in self.templates() {
            names.extend(Template::parse(t)?.variables().map(str::to_owned));
        }
        Ok(names)
    }

    fn interrupt_grace(&self) -> std::time::Duration {
        self.interrupt_grace
    }
}
