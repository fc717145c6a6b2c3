//! The simulated control plane: Deployment rollouts, the kubelet's scripted pods, progress deadlines. Each test
//! cites the page of the Kubernetes documentation whose behaviour it checks.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use gantry_testkit::kube::{ClusterSim, PodScript};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::runtime::watcher;
use serde_json::json;

fn deployment(name: &str, image: &str, replicas: i32, surge: i32, unavailable: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 600,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": image}]}}
        }
    }))
    .unwrap()
}

/// Whether a rollout is complete, as `kubectl rollout status` decides.
fn complete(d: Option<&Deployment>) -> bool {
    let Some(d) = d else { return false };
    let (spec, status) = (d.spec.as_ref().unwrap(), d.status.clone().unwrap_or_default());
    let replicas = spec.replicas.unwrap_or(1);
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas == Some(replicas)
        && status.replicas == Some(replicas)
        && status.available_replicas == Some(replicas)
}

async fn wait_complete(api: &Api<Deployment>, name: &str) -> Deployment {
    tokio::time::timeout(Duration::from_secs(20), await_condition(api.clone(), name, complete))
        .await
        .expect("the rollout completes in time")
        .unwrap()
        .unwrap()
}

fn image_of(p: &Pod) -> String {
    p.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default()
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// During a rolling update, available pods never fall below replicas - maxUnavailable and all pods never exceed
/// replicas + maxSurge, at every state a watcher observes; the rollout ends with every pod on the new template.
/// <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#max-unavailable>,
/// <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#max-surge>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_keeps_within_surge_and_unavailability() {
    for (replicas, surge, unavailable) in [(4, 1, 1), (5, 2, 0), (3, 0, 1)] {
        let sim = ClusterSim::start().await.unwrap();
        sim.script("shop:1", PodScript::ReadyAfter(Duration::from_millis(40)));
        sim.script("shop:2", PodScript::ReadyAfter(Duration::from_millis(80)));
        let client = sim.client().await.unwrap();
        let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        deploys
            .create(&PostParams::default(), &deployment("shop", "shop:1", replicas, surge, unavailable))
            .await
            .unwrap();
        wait_complete(&deploys, "shop").await;

        let mut events = watcher(pods.clone(), watcher::Config::default()).boxed();
        let mut state: BTreeMap<String, Pod> = BTreeMap::new();
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop:2"}]}}}});
        let mut patched = false;
        let mut observed = 0;
        let done = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(event) = events.next().await {
                match event.unwrap() {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        state.insert(p.metadata.name.clone().unwrap(), p);
                    }
                    watcher::Event::Delete(p) => {
                        state.remove(&p.metadata.name.clone().unwrap());
                    }
                    watcher::Event::Init => state.clear(),
                    watcher::Event::InitDone => {
                        if !patched {
                            deploys
                                .patch("shop", &PatchParams::default(), &Patch::Strategic(patch.clone()))
                                .await
                                .unwrap();
                            patched = true;
                        }
                    }
                }
                if !patched {
                    continue;
                }
                observed += 1;
                let total = state.len() as i32;
                let available = state.values().filter(|p| is_ready(p)).count() as i32;
                assert!(total <= replicas + surge, "{total} pods exceed {replicas} + maxSurge {surge}");
                assert!(
                    available >= replicas - unavailable,
                    "{available} available under {replicas} - maxUnavailable {unavailable}"
                );
                let all_new = state.values().all(|p| image_of(p) == "shop:2");
                if total == replicas && available == replicas && all_new {
                    return;
                }
            }
        })
        .await;
        assert!(done.is_ok(), "the rollout of ({replicas}, {surge}, {unavailable}) finished");
        assert!(observed > replicas, "the watcher saw the rollout's intermediate states ({observed})");
        let d = wait_complete(&deploys, "shop").await;
        let conditions = d.status.unwrap().conditions.unwrap();
        let progressing = conditions.iter().find(|c| c.type_ == "Progressing").unwrap();
        assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetAvailable"));
        let sets: Vec<ReplicaSet> =
            Api::<ReplicaSet>::default_namespaced(client).list(&ListParams::default()).await.unwrap().items;
        let mut revisions: Vec<(String, i32)> = sets
            .iter()
            .map(|rs| {
                (
                    rs.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"].clone(),
                    rs.spec.as_ref().unwrap().replicas.unwrap(),
                )
            })
            .collect();
        revisions.sort();
        assert_eq!(revisions, [("1".to_owned(), 0), ("2".to_owned(), replicas)]);
    }
}

/// Going back to an earlier pod template reuses its ReplicaSet under a new revision, as `kubectl rollout undo` does.
/// <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#rolling-back-a-deployment>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_back_to_an_earlier_template_reuses_its_replica_set() {
    let sim = ClusterSim::start().await.unwrap();
    let client = sim.client().await.unwrap();
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    deploys.create(&PostParams::default(), &deployment("web", "web:1", 2, 1, 0)).await.unwrap();
    wait_complete(&deploys, "web").await;
    let image = |i: &str| {
        Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": i}]}}}}))
    };
    deploys.patch("web", &PatchParams::default(), &image("web:2")).await.unwrap();
    wait_complete(&deploys, "web").await;
    let first: Vec<String> = Api::<ReplicaSet>::default_namespaced(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    deploys.patch("web", &PatchParams::default(), &image("web:1")).await.unwrap();
    let d = wait_complete(&deploys, "web").await;
    let sets: Vec<ReplicaSet> =
        Api::<ReplicaSet>::default_namespaced(client).list(&ListParams::default()).await.unwrap().items;
    assert_eq!(sets.len(), 2, "no third ReplicaSet");
    let names: Vec<String> = sets.iter().filter_map(|r| r.metadata.name.clone()).collect();
    assert_eq!(names, first);
    let active = sets.iter().find(|rs| rs.spec.as_ref().unwrap().replicas == Some(2)).unwrap();
    assert_eq!(active.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"], "3");
    assert_eq!(d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"], "3");
}

async fn pod_state(pods: &Api<Pod>, until: impl Fn(&Pod) -> bool) -> Pod {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(p) = pods.list(&ListParams::default()).await.unwrap().items.into_iter().find(&until) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the pod reaches the state in time")
}

fn waiting_reason(p: &Pod) -> Option<String> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()?.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

/// A crash-looping container restarts with a growing restartCount and waits in CrashLoopBackOff; an image that cannot
/// be pulled shows ErrImagePull, then ImagePullBackOff.
/// <https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#container-restarts>,
/// <https://kubernetes.io/docs/concepts/containers/images/#imagepullbackoff>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_pods_crash_loop_and_fail_to_pull() {
    let sim = ClusterSim::start().await.unwrap();
    sim.script("web:crash", PodScript::CrashLoop { runs_for: Duration::from_millis(100), exit_code: 1 });
    sim.script("web:typo", PodScript::ImagePullError);
    let client = sim.client().await.unwrap();
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    deploys.create(&PostParams::default(), &deployment("crash", "web:crash", 1, 1, 0)).await.unwrap();
    deploys.create(&PostParams::default(), &deployment("pull", "web:typo", 1, 1, 0)).await.unwrap();
    let crashing = pod_state(&pods, |p| {
        image_of(p) == "web:crash"
            && waiting_reason(p).as_deref() == Some("CrashLoopBackOff")
            && p.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0].restart_count >= 2
    })
    .await;
    assert!(!is_ready(&crashing));
    let status = &crashing.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0];
    let last =
        status.last_state.as_ref().and_then(|s| s.terminated.as_ref()).expect("the last exit, as the kubelet keeps it");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    pod_state(&pods, |p| image_of(p) == "web:typo" && waiting_reason(p).as_deref() == Some("ImagePullBackOff")).await;
}

/// A rollout that makes no progress for progressDeadlineSeconds reports Progressing=False, ProgressDeadlineExceeded.
/// <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#failed-deployment>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_rollout_exceeds_its_progress_deadline() {
    let sim = ClusterSim::start().await.unwrap();
    sim.script("web:stuck", PodScript::NeverReady);
    let client = sim.client().await.unwrap();
    let deploys: Api<Deployment> = Api::default_namespaced(client);
    let mut d = deployment("stuck", "web:stuck", 1, 1, 0);
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(1);
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let exceeded = |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref()?.conditions.clone()).is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "Progressing"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
        })
    };
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), await_condition(deploys.clone(), "stuck", exceeded))
        .await
        .expect("in time")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the deadline: {:?}", started.elapsed());
    let status = deploys.get("stuck").await.unwrap().status.unwrap();
    assert_eq!(status.available_replicas, Some(0));
}

fn job(name: &str, image: &str, completions: i32, backoff_limit: i32) -> k8s_openapi::api::batch::v1::Job {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "completions": completions, "parallelism": 1, "backoffLimit": backoff_limit,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "check", "image": image}]}}
        }
    }))
    .unwrap()
}

fn job_condition(j: Option<&k8s_openapi::api::batch::v1::Job>, kind: &str) -> bool {
    j.and_then(|j| j.status.as_ref()?.conditions.clone())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// A Job runs pods until `completions` succeeded (Complete), or fails once more than `backoffLimit` pods failed
/// (Failed, BackoffLimitExceeded); its pods' output is in their logs.
/// <https://kubernetes.io/docs/concepts/workloads/controllers/job/#job-termination-and-cleanup>,
/// <https://kubernetes.io/docs/concepts/workloads/controllers/job/#pod-backoff-failure-policy>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_or_fail_after_their_backoff_limit() {
    use k8s_openapi::api::batch::v1::Job;
    let sim = ClusterSim::start().await.unwrap();
    let ok_logs = vec!["checking database".to_owned(), "schema up to date".to_owned()];
    sim.script("preflight:ok", PodScript::Exit { after: Duration::from_millis(30), code: 0, logs: ok_logs.clone() });
    sim.script(
        "smoke:bad",
        PodScript::Exit { after: Duration::from_millis(30), code: 3, logs: vec!["GET /health -> 503".into()] },
    );
    let client = sim.client().await.unwrap();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    jobs.create(&PostParams::default(), &job("preflight", "preflight:ok", 2, 6)).await.unwrap();
    jobs.create(&PostParams::default(), &job("smoke", "smoke:bad", 1, 1)).await.unwrap();
    let wait = |name: &'static str, kind: &'static str| {
        let jobs = jobs.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(10),
                await_condition(jobs, name, move |j: Option<&Job>| job_condition(j, kind)),
            )
            .await
            .expect("in time")
            .unwrap()
            .unwrap()
        }
    };
    let done = wait("preflight", "Complete").await;
    let status = done.status.unwrap();
    assert_eq!((status.succeeded, status.failed.unwrap_or(0)), (Some(2), 0));
    assert!(status.completion_time.is_some());
    let failed = wait("smoke", "Failed").await;
    let status = failed.status.unwrap();
    assert_eq!(status.failed, Some(2), "backoffLimit 1: the second failure fails the Job");
    let reason = status.conditions.unwrap().into_iter().find(|c| c.type_ == "Failed").unwrap().reason;
    assert_eq!(reason.as_deref(), Some("BackoffLimitExceeded"));
    let preflight_pod = pods.list(&ListParams::default().labels("job-name=preflight")).await.unwrap().items.remove(0);
    let log = pods.logs(&preflight_pod.metadata.name.unwrap(), &Default::default()).await.unwrap();
    assert_eq!(log.lines().collect::<Vec<_>>(), ok_logs);
}

/// A change a client makes while the controllers are busy with a large reconcile is acted on, never lost: the
/// controllers are level-triggered, as Kubernetes controllers are, so whatever they miss in the change feed they
/// still see in the store. Each new image is set the moment the last rollout completes, while the controllers are
/// still working through the changes that completed it.
/// <https://kubernetes.io/docs/concepts/architecture/controller/#controller-pattern>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_the_controllers_are_busy_is_not_lost() {
    let sim = ClusterSim::start().await.unwrap();
    let deploys: Api<Deployment> = Api::default_namespaced(sim.client().await.unwrap());
    deploys.create(&PostParams::default(), &deployment("big", "big:1", 400, 100, 100)).await.unwrap();
    wait_complete(&deploys, "big").await;
    for image in ["big:2", "big:3"] {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
        deploys.patch("big", &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
        let d = wait_complete(&deploys, "big").await;
        assert_eq!(d.spec.unwrap().template.spec.unwrap().containers[0].image.as_deref(), Some(image));
    }
}

/// Once a rollout is complete, old ReplicaSets beyond `revisionHistoryLimit` (default 10) are deleted, oldest
/// revisions first; the newest are kept for `kubectl rollout undo`.
/// <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#revision-history-limit>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_replica_sets_beyond_the_revision_history_limit_are_deleted() {
    let c = gantry_testkit::test_cluster::TestCluster::new("history-limit").await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    let sets: Api<ReplicaSet> = Api::namespaced(c.client.clone(), &c.namespace);
    let mut limited = deployment("limited", "busybox:1.0", 1, 1, 0);
    limited.spec.as_mut().unwrap().revision_history_limit = Some(2);
    deploys.create(&PostParams::default(), &limited).await.unwrap();
    deploys.create(&PostParams::default(), &deployment("default", "busybox:1.0", 1, 1, 0)).await.unwrap();
    for version in 1..=12 {
        for name in ["limited", "default"] {
            let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": format!("busybox:1.{version}")}]}}}});
            deploys.patch(name, &PatchParams::default(), &Patch::Strategic(image)).await.unwrap();
            wait_complete(&deploys, name).await;
        }
    }
    let revisions = |app: &str, all: &[ReplicaSet]| -> Vec<i64> {
        let mut r: Vec<i64> = all
            .iter()
            .filter(|rs| rs.metadata.name.as_deref().unwrap_or_default().starts_with(&format!("{app}-")))
            .map(|rs| rs.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"].parse().unwrap())
            .collect();
        r.sort_unstable();
        r
    };
    // The controller deletes right after the rollout completes: wait for the count to settle.
    let mut all = Vec::new();
    for _ in 0..100 {
        all = sets.list(&ListParams::default()).await.unwrap().items;
        if revisions("limited", &all).len() == 3 && revisions("default", &all).len() == 11 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(revisions("limited", &all), [11, 12, 13], "the current revision and the 2 before it");
    assert_eq!(revisions("default", &all), (3..=13).collect::<Vec<_>>(), "the current revision and 10 before it");
    c.cleanup().await;
}

fn image_patch(image: &str) -> Patch<serde_json::Value> {
    Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}))
}

/// A paused Deployment does not roll out a new template, and its Progressing condition says so; a change of
/// replicas is still carried out; once resumed, the rollout goes ahead.
/// <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#pausing-and-resuming-a-deployment>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_deployment_scales_but_does_not_roll_out_until_resumed() {
    let c = gantry_testkit::test_cluster::TestCluster::new("paused").await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &c.namespace);
    deploys.create(&PostParams::default(), &deployment("web", "busybox:1.0", 2, 1, 0)).await.unwrap();
    wait_complete(&deploys, "web").await;
    let pause = |paused: bool| Patch::Merge(json!({"spec": {"paused": paused}}));
    deploys.patch("web", &PatchParams::default(), &pause(true)).await.unwrap();
    deploys.patch("web", &PatchParams::default(), &image_patch("busybox:2.0")).await.unwrap();
    deploys.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await.unwrap();
    let reason = |d: &Deployment| {
        let conditions = d.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        conditions.into_iter().find(|c| c.type_ == "Progressing").and_then(|c| c.reason).unwrap_or_default()
    };
    let three_old = |d: Option<&Deployment>| {
        d.is_some_and(|d| reason(d) == "DeploymentPaused" && d.status.as_ref().unwrap().available_replicas == Some(3))
    };
    tokio::time::timeout(Duration::from_secs(20), await_condition(deploys.clone(), "web", three_old))
        .await
        .expect("the paused Deployment scales to 3")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let images: Vec<String> = pods.list(&ListParams::default()).await.unwrap().items.iter().map(image_of).collect();
    assert_eq!(images, ["busybox:1.0"; 3], "no pod of the new template while paused");
    let sets: Api<ReplicaSet> = Api::namespaced(c.client.clone(), &c.namespace);
    assert_eq!(sets.list(&ListParams::default()).await.unwrap().items.len(), 1, "no new ReplicaSet while paused");

    deploys.patch("web", &PatchParams::default(), &pause(false)).await.unwrap();
    let done = wait_complete(&deploys, "web").await;
    assert_eq!(reason(&done), "NewReplicaSetAvailable");
    let images: Vec<String> = pods.list(&ListParams::default()).await.unwrap().items.iter().map(image_of).collect();
    assert_eq!(images.iter().filter(|i| *i == "busybox:2.0").count(), 3, "{images:?}");
    c.cleanup().await;
}

/// With the `Recreate` strategy every old pod is gone before any new one is created: at no state a watcher sees
/// do pods of both templates exist.
/// <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#recreate-deployment>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_every_old_pod_before_creating_new_ones() {
    let c = gantry_testkit::test_cluster::TestCluster::new("recreate").await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &c.namespace);
    let mut d = deployment("db", "busybox:1.0", 3, 1, 0);
    d.spec.as_mut().unwrap().strategy = Some(serde_json::from_value(json!({"type": "Recreate"})).unwrap());
    deploys.create(&PostParams::default(), &d).await.unwrap();
    wait_complete(&deploys, "db").await;

    let mut events = watcher(pods.clone(), watcher::Config::default()).boxed();
    let mut state: BTreeMap<String, Pod> = BTreeMap::new();
    deploys.patch("db", &PatchParams::default(), &image_patch("busybox:2.0")).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout_at(deadline, events.next()).await.expect("the rollout ends").unwrap().unwrap();
        match event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                state.insert(p.metadata.name.clone().unwrap(), p);
            }
            watcher::Event::Delete(p) => {
                state.remove(p.metadata.name.as_deref().unwrap());
            }
            _ => {}
        }
        let images: std::collections::BTreeSet<String> = state.values().map(image_of).collect();
        assert!(images.len() <= 1, "pods of both templates at once: {images:?}");
        let ready_new = state.values().filter(|p| image_of(p) == "busybox:2.0" && is_ready(p)).count();
        if ready_new == 3 {
            break;
        }
    }
    let done = wait_complete(&deploys, "db").await;
    assert_eq!(done.status.unwrap().updated_replicas, Some(3));
    c.cleanup().await;
}

/// Two namespaces written one right after the other: the controllers act on both, whichever change their pass
/// picked up first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_in_two_namespaces_at_once_are_both_acted_on() {
    let sim = ClusterSim::start().await.unwrap();
    let client = sim.client().await.unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for round in 0..20 {
        let names = [format!("a-{round}"), format!("b-{round}")];
        for ns in &names {
            let body = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
            namespaces.create(&PostParams::default(), &body).await.unwrap();
        }
        let apis: Vec<Api<Deployment>> = names.iter().map(|ns| Api::namespaced(client.clone(), ns)).collect();
        let (a, b) = (deployment("web", "busybox:1.0", 1, 1, 0), deployment("web", "busybox:1.0", 1, 1, 0));
        let pp = PostParams::default();
        let (ra, rb) = tokio::join!(apis[0].create(&pp, &a), apis[1].create(&pp, &b));
        ra.unwrap();
        rb.unwrap();
        for api in &apis {
            wait_complete(api, "web").await;
        }
    }
}

/// An object whose owner does not exist is collected, with what it owns: a ReplicaSet that names an owner uid no
/// object has goes, and so do its pods.
/// <https://kubernetes.io/docs/concepts/architecture/garbage-collection/#owners-dependents>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_whose_owner_is_gone_are_collected() {
    let c = gantry_testkit::test_cluster::TestCluster::new("gc-dangling").await.unwrap();
    let sets: Api<ReplicaSet> = Api::namespaced(c.client.clone(), &c.namespace);
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &c.namespace);
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "stray", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "gone", "uid": "00000000-0000-4000-8000-00000000dead", "controller": true}]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "stray"}}, "template": {"metadata": {"labels": {"app": "stray"}}, "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}
    }))
    .unwrap();
    sets.create(&PostParams::default(), &rs).await.unwrap();
    let kept: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "kept"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "kept"}}, "template": {"metadata": {"labels": {"app": "kept"}}, "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}
    }))
    .unwrap();
    sets.create(&PostParams::default(), &kept).await.unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let stray_pods = pods.list(&ListParams::default().labels("app=stray")).await.unwrap().items.len();
            if sets.get_opt("stray").await.unwrap().is_none() && stray_pods == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    gone.await.expect("the ReplicaSet without an owner and its pods are collected");
    assert!(sets.get_opt("kept").await.unwrap().is_some(), "an object without owner references stays");
    c.cleanup().await;
}

/// The controllers and kubelet record Events as upstream words them: the Deployment's `ScalingReplicaSet`, the
/// ReplicaSet's `SuccessfulCreate`, the pods' `Scheduled` and `Started`, a Job's `Completed`, a crash loop's
/// `BackOff` warning (one Event whose count grows), and an image that cannot be pulled.
/// <https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_record_events() {
    use k8s_openapi::api::core::v1::Event;
    let sim = ClusterSim::start().await.unwrap();
    sim.script("web:crash", PodScript::CrashLoop { runs_for: Duration::from_millis(50), exit_code: 2 });
    sim.script("web:missing", PodScript::ImagePullError);
    let client = sim.client().await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &deployment("web", "nginx:1.27", 2, 1, 0)).await.unwrap();
    wait_complete(&deployments, "web").await;
    let said = |events: &[Event], kind: &str, reason: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some(kind) && e.reason.as_deref() == Some(reason))
            .filter_map(|e| e.message.clone())
            .collect()
    };
    let all = events.list(&ListParams::default()).await.unwrap().items;
    let scaled = said(&all, "Deployment", "ScalingReplicaSet");
    assert!(
        scaled.len() == 1 && scaled[0].starts_with("Scaled up replica set web-") && scaled[0].ends_with(" from 0 to 2"),
        "{scaled:?}"
    );
    assert_eq!(said(&all, "ReplicaSet", "SuccessfulCreate").len(), 2);
    assert!(said(&all, "Pod", "Scheduled").iter().all(|m| m.ends_with(" to gantry-node-1")));
    assert_eq!(said(&all, "Pod", "Started"), ["Started container app", "Started container app"]);
    let e = all.iter().find(|e| e.reason.as_deref() == Some("ScalingReplicaSet")).unwrap();
    assert_eq!(
        (e.type_.as_deref(), e.source.as_ref().and_then(|s| s.component.as_deref())),
        (Some("Normal"), Some("deployment-controller"))
    );

    deployments.create(&PostParams::default(), &deployment("crash", "web:crash", 1, 1, 0)).await.unwrap();
    let mut back_offs = 0;
    for _ in 0..100 {
        let all = events.list(&ListParams::default()).await.unwrap().items;
        let found: Vec<&Event> = all.iter().filter(|e| e.reason.as_deref() == Some("BackOff")).collect();
        if let [one] = found[..] {
            assert_eq!(one.type_.as_deref(), Some("Warning"));
            assert!(
                one.message.as_deref().unwrap().starts_with("Back-off restarting failed container app in pod crash-")
            );
            back_offs = one.count.unwrap_or(0);
            if back_offs >= 2 {
                break;
            }
        }
        assert!(found.len() <= 1, "repeats raise the count of one Event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back_offs >= 2, "the back-off repeats: count {back_offs}");

    deployments.create(&PostParams::default(), &deployment("missing", "web:missing", 1, 1, 0)).await.unwrap();
    let mut pulled = Vec::new();
    for _ in 0..100 {
        let all = events.list(&ListParams::default()).await.unwrap().items;
        pulled =
            all.iter().filter(|e| e.reason.as_deref() == Some("Failed")).filter_map(|e| e.message.clone()).collect();
        if pulled.iter().any(|m| m == "Error: ImagePullBackOff") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        pulled.iter().any(|m| m == "Error: ErrImagePull") && pulled.iter().any(|m| m == "Error: ImagePullBackOff"),
        "{pulled:?}"
    );
}

/// `minReadySeconds`: a ready pod counts as available only after it has been ready that long, so a rollout (and
/// `kubectl rollout status`) waits for it.
/// <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#min-ready-seconds>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_is_available_after_min_ready_seconds() {
    let sim = ClusterSim::start().await.unwrap();
    let client = sim.client().await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut slow = deployment("slow", "nginx:1.27", 2, 1, 0);
    slow.spec.as_mut().unwrap().min_ready_seconds = Some(2);
    let started = std::time::Instant::now();
    deployments.create(&PostParams::default(), &slow).await.unwrap();
    // Ready at once, not yet available.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let early = deployments.get("slow").await.unwrap().status.unwrap_or_default();
    assert_eq!(early.ready_replicas, Some(2), "{early:?}");
    assert_eq!(early.available_replicas.unwrap_or(0), 0, "{early:?}");
    wait_complete(&deployments, "slow").await;
    let waited = started.elapsed();
    // Whole-second timestamps: between one and three seconds after the pods became ready.
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(6), "{waited:?}");
}
