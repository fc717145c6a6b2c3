//! Jobs as steps: preflight checks before a deploy, smoke tests after.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gantry_core::{LogStream, Step, StepContext, StepError, Template};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::cluster::Cluster;
use crate::error::KubeError;
use crate::watch::{Change, changes};

/// What the Job runs.
#[derive(Clone, Debug)]
enum JobSource {
    /// A whole Job; its name is replaced.
    Template(Box<Job>),
    /// One container: image and command (templates).
    Image { image: String, command: Vec<String> },
}

/// Runs a Kubernetes Job to completion: named `<prefix>-<run id>-<step hash>` (the prefix is a template), its pods'
/// output logged as the step's lines while they run (followed as `kubectl logs -f` does), succeeding when the Job is Complete and failing with the last lines when it
/// Failed; deleted afterwards (with its pods) unless kept for debugging. A timeout of the step deletes the Job too.
///
/// A pod that cannot start (its image cannot be pulled, its configuration is wrong) fails the step at once: the Job
/// itself would wait for it forever. Every Job gets a deadline (`activeDeadlineSeconds`, 10 minutes unless
/// [`deadline`](JobStep::deadline) says otherwise or the Job given to [`from_job`](JobStep::from_job) has one), after
/// which Kubernetes fails it (`DeadlineExceeded`) and stops its pods.
///
/// ```no_run
/// # fn demo(cluster: gantry_kube::Cluster) {
/// use gantry_kube::JobStep;
/// let smoke = JobStep::image(cluster, "smoke", "curlimages/curl:8.10.1", ["curl", "-fsS", "http://{{service}}/health"]);
/// # let _ = smoke; }
/// ```
#[derive(Clone, Debug)]
pub struct JobStep {
    cluster: Cluster,
    prefix: String,
    source: JobSource,
    keep: bool,
    tail: usize,
    deadline: Option<std::time::Duration>,
}

/// A Job's deadline when none is given.
const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

impl JobStep {
    /// A Job of one container running `command` in `image` (templates), never restarted, not retried by Kubernetes.
    pub fn image<I, S>(cluster: Cluster, prefix: impl Into<String>, image: impl Into<String>, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let source = JobSource::Image { image: image.into(), command: command.into_iter().map(Into::into).collect() };
        Self { cluster, prefix: prefix.into(), source, keep: false, tail: 20, deadline: None }
    }

    /// A Job from a whole object (its name is replaced by `<prefix>-<run id>`).
    pub fn from_job(cluster: Cluster, prefix: impl Into<String>, job: Job) -> Self {
        Self {
            cluster,
            prefix: prefix.into(),
            source: JobSource::Template(Box::new(job)),
            keep: false,
            tail: 20,
            deadline: None,
        }
    }

    /// How long the Job may run before Kubernetes fails it (`activeDeadlineSeconds`, whole seconds, at least one;
    /// default 10 minutes, or the deadline of the Job given to `from_job`).
    #[must_use]
    pub fn deadline(mut self, deadline: std::time::Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Keeps the Job and its pods after the step, for debugging.
    #[must_use]
    pub fn keep(mut self) -> Self {
        self.keep = true;
        self
    }

    fn job(&self, ctx: &StepContext, name: &str) -> Result<Job, StepError> {
        let mut job = match &self.source {
            JobSource::Template(job) => (**job).clone(),
            JobSource::Image { image, command } => {
                let render = |s: &str| Template::parse(s).and_then(|t| ctx.render(&t));
                let command: Vec<String> = command.iter().map(|c| render(c)).collect::<Result<_, _>>()?;
                serde_json::from_value(json!({
                    "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": render(image)?, "command": command}]}}}
                }))
                .map_err(|e| StepError::new(format!("could not build the Job: {e}")))?
            }
        };
        job.metadata.name = Some(name.to_owned());
        job.metadata.namespace = None;
        if let Some(spec) = job.spec.as_mut() {
            match self.deadline {
                Some(deadline) => spec.active_deadline_seconds = Some(deadline.as_secs().max(1) as i64),
                None => {
                    spec.active_deadline_seconds.get_or_insert(DEFAULT_DEADLINE.as_secs() as i64);
                }
            }
        }
        let labels = job.metadata.labels.get_or_insert_with(Default::default);
        labels.insert("gantry.dev/run".into(), dns_label(ctx.run_id(), 63));
        Ok(job)
    }
}

/// `<prefix>-<run id>-<hash of the step's full name>`: unique for each step of each run, fan-outs included, as a
/// DNS label.
fn job_name(prefix: &str, run_id: &str, step: &str) -> String {
    // SHA-256: the same in every process and every build (a resumed run finds its Job by this name).
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(step.as_bytes());
    let suffix = format!("{}-{:02x}{:02x}{:02x}", dns_label(run_id, 24), digest[0], digest[1], digest[2]);
    let prefix = dns_label(prefix, 63 - suffix.len() - 1);
    format!("{prefix}-{suffix}")
}

/// A DNS label: lower-case letters, digits and `-`, at most `max` long, starting and ending with an alphanumeric.
fn dns_label(s: &str, max: usize) -> String {
    let mut out: String = s.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    out.truncate(max);
    out.trim_matches('-').to_owned()
}

/// Why a pod of a Job cannot run, if a container waits in a state it will not leave by itself.
fn cannot_start(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|s| {
        let waiting = s.state.as_ref()?.waiting.as_ref()?;
        // A crash loop is the Job's own retrying (`restartPolicy: OnFailure`, `backoffLimit`): it decides that.
        let reason = waiting
            .reason
            .as_deref()
            .filter(|r| *r != "CrashLoopBackOff" && crate::rollout::FATAL_WAITING.contains(r))?;
        let message = waiting.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        Some(format!("pod `{name}` container `{}` is in {reason}{message}", s.name))
    })
}

/// The output of a Job's pods: followed while they run, as `kubectl logs -f` does (each line logged as the step's
/// as it is printed), or read once when a pod has terminated if it was not followed to its end (then standard error
/// for a failed pod); kept for the failure message.
struct PodOutput<'a> {
    pods: &'a Api<Pod>,
    ctx: &'a StepContext,
    /// Pods being followed now.
    following: HashSet<String>,
    /// Pods whose output has been logged to its end.
    done: HashSet<String>,
    /// How many lines of each pod have been logged.
    logged: HashMap<String, usize>,
    lines: Vec<String>,
}

/// A pod's output followed until its container exits: the pod, its lines, and whether the stream reached the end.
type Followed = (String, Vec<String>, bool);

impl<'a> PodOutput<'a> {
    /// Starts following a running pod's output, once.
    fn follow(&mut self, pod: &Pod) -> Option<futures::future::BoxFuture<'a, Followed>> {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        if phase != "Running" || self.done.contains(&name) || !self.following.insert(name.clone()) {
            return None;
        }
        let (pods, ctx) = (self.pods, self.ctx);
        Some(Box::pin(async move {
            use futures::{AsyncBufReadExt, TryStreamExt};
            let mut got = Vec::new();
            let params = LogParams { follow: true, ..LogParams::default() };
            let Ok(reader) = pods.log_stream(&name, &params).await else { return (name, got, false) };
            let mut lines = reader.lines();
            loop {
                match lines.try_next().await {
                    Ok(Some(line)) => {
                        ctx.log_to(LogStream::Stdout, &line);
                        got.push(line);
                    }
                    Ok(None) => return (name, got, true),
                    Err(_) => return (name, got, false),
                }
            }
        }))
    }

    /// Takes what a follower logged.
    fn followed(&mut self, (name, got, complete): Followed) {
        self.following.remove(&name);
        *self.logged.entry(name.clone()).or_default() += got.len();
        self.lines.extend(got);
        if complete {
            self.done.insert(name);
        }
    }

    /// Reads a terminated pod's output, once, from the first line not logged yet; not while it is followed.
    async fn read(&mut self, pod: &Pod) {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        if !matches!(phase, "Succeeded" | "Failed") || self.following.contains(&name) || !self.done.insert(name.clone())
        {
            return;
        }
        let stream = if phase == "Failed" { LogStream::Stderr } else { LogStream::Stdout };
        let log = self.pods.logs(&name, &LogParams::default()).await.unwrap_or_default();
        let skip = self.logged.get(&name).copied().unwrap_or(0);
        for line in log.lines().skip(skip) {
            self.ctx.log_to(stream, line);
            self.lines.push(line.to_owned());
        }
    }
}

/// Waits (up to 5 s) for the pods still followed to reach the end of their output, so that the last lines are not
/// lost when the Job ends a moment before its pods' streams do.
async fn drain(followers: &mut FuturesUnordered<futures::future::BoxFuture<'_, Followed>>, output: &mut PodOutput<'_>) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(followed) = followers.next().await {
            output.followed(followed);
        }
    })
    .await;
}

/// Deletes the Job when the step's future is dropped (a timeout), unless disarmed.
struct DeleteOnDrop {
    jobs: Option<Api<Job>>,
    name: String,
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if let Some(jobs) = self.jobs.take() {
            let name = std::mem::take(&mut self.name);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = jobs.delete(&name, &DeleteParams::background()).await;
                });
            }
        }
    }
}

#[async_trait]
impl Step for JobStep {
    /// Its Job's name is the same in every process that runs this step of this run: a resumed run finds the Job
    /// it started and follows it, never starting a second one.
    fn idempotent(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let prefix = Template::parse(&self.prefix).and_then(|t| ctx.render(&t))?;
        let name = job_name(&prefix, ctx.run_id(), ctx.name());
        let namespace = self.cluster.namespace().to_owned();
        let client = self.cluster.client();
        let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let job = self.job(ctx, &name)?;
        match jobs.create(&PostParams::default(), &job).await {
            Ok(_) => ctx.log(format!("started Job {namespace}/{name}")),
            // The Job of this step of this run exists: it was started before the run resumed (its host stopped).
            // Follow it instead of starting a second one.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                ctx.log(format!("re-attached to Job {namespace}/{name}, started before the run resumed"));
            }
            Err(e) => return Err(KubeError::api(format!("create Job `{name}`"), e).into()),
        }
        let mut cleanup = DeleteOnDrop { jobs: (!self.keep).then(|| jobs.clone()), name: name.clone() };

        let job_changes = changes(
            jobs.clone(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
            format!("Job `{name}` in namespace `{namespace}`"),
        );
        let pod_changes = changes(
            pods.clone(),
            watcher::Config::default().labels(&format!("job-name={name}")),
            format!("the pods of Job `{name}` in namespace `{namespace}`"),
        );
        tokio::pin!(job_changes, pod_changes);
        let mut output = PodOutput {
            pods: &pods,
            ctx,
            following: HashSet::new(),
            done: HashSet::new(),
            logged: HashMap::new(),
            lines: Vec::new(),
        };
        let mut followers = FuturesUnordered::new();
        let result = loop {
            tokio::select! {
                () = ctx.cancellation().cancelled() => break Err(StepError::cancelled()),
                Some(followed) = followers.next() => output.followed(followed),
                Some(change) = pod_changes.next() => match change {
                    Change::Applied(pod) => {
                        if let Some(why) = cannot_start(&pod) {
                            break Err(StepError::new(format!("Job {namespace}/{name} cannot run: {why}")));
                        }
                        followers.extend(output.follow(&pod));
                        output.read(&pod).await;
                    }
                    Change::Deleted(_) => {}
                    Change::Failed(e) => break Err(e.into()),
                },
                Some(change) = job_changes.next() => {
                    let job = match change {
                        Change::Applied(job) => job,
                        Change::Deleted(_) => break Err(StepError::new(format!("Job {namespace}/{name} was deleted"))),
                        Change::Failed(e) => break Err(e.into()),
                    };
                    let conditions = job.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
                    let is = |kind: &str| conditions.iter().find(|c| c.type_ == kind && c.status == "True");
                    if is("Complete").is_some() {
                        drain(&mut followers, &mut output).await;
                        break Ok(());
                    }
                    if let Some(failed) = is("Failed") {
                        drain(&mut followers, &mut output).await;
                        output.following.clear();
                        // The Job may fail before its last pod's change reached us: read what is left, once.
                        let selector = ListParams::default().labels(&format!("job-name={name}"));
                        for pod in pods.list(&selector).await.map(|l| l.items).unwrap_or_default() {
                            output.read(&pod).await;
                        }
                        let reason = failed.reason.clone().unwrap_or_else(|| "Failed".into());
                        let lines = &output.lines;
                        let tail: Vec<&str> = lines.iter().rev().take(self.tail).rev().map(String::as_str).collect();
                        let mut message = format!("Job {namespace}/{name} failed ({reason})");
                        if !tail.is_empty() {
                            message.push_str("; last lines:\n");
                            message.push_str(&tail.join("\n"));
                        }
                        break Err(StepError::new(message));
                    }
                }
                else => break Err(KubeError::WatchEnded { what: format!("Job `{name}`") }.into()),
            }
        };
        // Cleanup now rather than on drop, so that it is done when the step ends.
        if let Some(jobs) = cleanup.jobs.take()
            && let Err(e) = jobs.delete(&name, &DeleteParams::background()).await
        {
            ctx.log_to(LogStream::Stderr, &format!("could not delete Job {name}: {e}"));
        }
        result
    }

    fn describe(&self, _ctx: &StepContext) -> String {
        match &self.source {
            JobSource::Image { image, command } => {
                format!("runs Job {}-<run id>: {image} {}", self.prefix, command.join(" "))
            }
            JobSource::Template(_) => format!("runs Job {}-<run id> from its template", self.prefix),
        }
    }

    fn variables(&self) -> Result<Vec<String>, gantry_core::TemplateError> {
        let mut names: Vec<String> = Template::parse(&self.prefix)?.variables().map(str::to_owned).collect();
        if let JobSource::Image { image, command } = &self.source {
            for t in std::iter::once(image).chain(command) {
                names.extend(Template::parse(t)?.variables().map(str::to_owned));
            }
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_unique_per_step_and_valid_dns_labels() {
        let a = job_name("Preflight", "1a2b-0", "deploy[api]/preflight");
        let b = job_name("Preflight", "1a2b-0", "deploy[web]/preflight");
        assert_ne!(a, b);
        // The same in every process and build: a resumed run finds its Job by it.
        assert_eq!(job_name("smoke", "r1", "smoke"), "smoke-r1-04d588");
        let long = job_name(&"x".repeat(100), "run", "s");
        for n in [&a, &b, &long] {
            assert!(
                n.len() <= 63 && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
        }
    }
}
