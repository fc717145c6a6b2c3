//! The simulated API server through the real `kube::Client`. Each test names the Kubernetes behaviour it checks and
//! the page that documents it; with `GANTRY_E2E_KUBECONFIG` set, the same tests run against that real cluster.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use gantry_testkit::kube::{Fault, Method, ResourceType, StatusCode};
use gantry_testkit::test_cluster::TestCluster;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

fn configmap(name: &str, app: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": app}}, "data": {"k": "v"}})).unwrap()
}

fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": image}]}}
        }
    }))
    .unwrap()
}

fn api_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other}"),
    }
}

/// Create, get, list with a label selector, delete.
/// <https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#api>
#[tokio::test]
async fn create_get_list_by_label_and_delete() {
    let c = TestCluster::new("crud").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let pp = PostParams::default();
    let a = cms.create(&pp, &configmap("a", "web")).await.unwrap();
    cms.create(&pp, &configmap("b", "api")).await.unwrap();
    assert!(
        a.metadata.uid.is_some() && a.metadata.resource_version.is_some() && a.metadata.creation_timestamp.is_some()
    );
    assert_eq!(api_code(cms.create(&pp, &configmap("a", "web")).await.unwrap_err()), 409, "AlreadyExists");
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "v");
    let web: Vec<String> = cms
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(web, ["a"]);
    let by_name = cms.list(&ListParams::default().fields("metadata.name=b")).await.unwrap();
    assert_eq!(by_name.items.len(), 1);
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_code(cms.get("a").await.unwrap_err()), 404);
    c.cleanup().await;
}

/// A write with a stale resourceVersion is refused with 409 Conflict; one without a version is unconditional.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions>
#[tokio::test]
async fn stale_resource_version_is_a_conflict() {
    let c = TestCluster::new("conflict").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let first = cms.create(&PostParams::default(), &configmap("cm", "web")).await.unwrap();
    let mut second = first.clone();
    second.data = Some([("k".to_owned(), "v2".to_owned())].into());
    let updated = cms.replace("cm", &PostParams::default(), &second).await.unwrap();
    assert_ne!(updated.metadata.resource_version, first.metadata.resource_version);
    let mut stale = first.clone();
    stale.data = Some([("k".to_owned(), "stale".to_owned())].into());
    let err = cms.replace("cm", &PostParams::default(), &stale).await.unwrap_err();
    let kube::Error::Api(status) = err else { panic!() };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(status.message.contains("the object has been modified"), "{}", status.message);
    let mut unconditional = stale;
    unconditional.metadata.resource_version = None;
    assert_eq!(cms.replace("cm", &PostParams::default(), &unconditional).await.unwrap().data.unwrap()["k"], "stale");
    c.cleanup().await;
}

/// generation counts spec changes only; status goes through the status subresource and does not bump it.
/// <https://kubernetes.io/docs/concepts/overview/working-with-objects/#object-spec-and-status>
#[tokio::test]
async fn generation_bumps_on_spec_changes_only() {
    let c = TestCluster::new("generation").await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    let created = deploys.create(&PostParams::default(), &deployment("web", "nginx:1.27")).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let pp = PatchParams::default();
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}]}}}});
    let patched = deploys.patch("web", &pp, &Patch::Strategic(image)).await.unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    let labels =
        deploys.patch("web", &pp, &Patch::Merge(json!({"metadata": {"labels": {"team": "shop"}}}))).await.unwrap();
    assert_eq!(labels.metadata.generation, Some(2), "metadata changes do not bump generation");
    c.cleanup().await;
}

/// Status goes through the status subresource: it does not bump generation, and the main resource ignores it.
/// <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#status-subresource>
#[tokio::test]
async fn status_is_written_through_its_subresource() {
    let c = TestCluster::new("status").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    let mut widget = ResourceType::custom("example.gantry.dev", "v1", "Widget", "widgets");
    widget.status = true;
    sim.register(widget);
    let gvk = GroupVersionKind::gvk("example.gantry.dev", "v1", "Widget");
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(c.client.clone(), &c.namespace, &ApiResource::from_gvk(&gvk));
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.gantry.dev/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 1}, "status": {"ignored": "on create"}
    }))
    .unwrap();
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.data["status"], json!({}), "status is not set on create");
    let pp = PatchParams::default();
    let with_status = widgets
        .patch_status("w", &pp, &Patch::Merge(json!({"status": {"observedGeneration": 1, "ready": true}})))
        .await
        .unwrap();
    assert_eq!(with_status.metadata.generation, Some(1), "a status write does not bump generation");
    assert_eq!(with_status.data["status"]["ready"], true);
    let ignored =
        widgets.patch("w", &pp, &Patch::Merge(json!({"spec": {"size": 2}, "status": {"ready": false}}))).await.unwrap();
    assert_eq!(ignored.data["status"]["ready"], true, "the main resource ignores status");
    assert_eq!(ignored.metadata.generation, Some(2));
    c.cleanup().await;
}

/// Server-side apply creates, then merges; dry run changes nothing.
/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/>
#[tokio::test]
async fn server_side_apply_and_dry_run() {
    let c = TestCluster::new("apply").await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    let ssa = PatchParams::apply("gantry").force();
    let applied = deploys.patch("web", &ssa, &Patch::Apply(deployment("web", "nginx:1.27"))).await.unwrap();
    assert_eq!(applied.metadata.generation, Some(1));
    assert!(applied.metadata.managed_fields.unwrap().iter().any(|f| f.manager.as_deref() == Some("gantry")));
    let dry = PatchParams::apply("gantry").force().dry_run();
    let would = deploys.patch("web", &dry, &Patch::Apply(deployment("web", "nginx:1.29"))).await.unwrap();
    assert_eq!(would.spec.unwrap().template.spec.unwrap().containers[0].image.as_deref(), Some("nginx:1.29"));
    let stored = deploys.get("web").await.unwrap();
    assert_eq!(
        stored.spec.unwrap().template.spec.unwrap().containers[0].image.as_deref(),
        Some("nginx:1.27"),
        "dry run stored nothing"
    );
    let reapplied = deploys.patch("web", &ssa, &Patch::Apply(deployment("web", "nginx:1.28"))).await.unwrap();
    assert_eq!(reapplied.metadata.generation, Some(2));
    c.cleanup().await;
}

/// A watch from a resourceVersion sees ADDED, MODIFIED and DELETED in order.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes>
#[tokio::test]
async fn watch_from_a_resource_version_sees_changes_in_order() {
    let c = TestCluster::new("watch").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut events = cms.watch(&WatchParams::default().timeout(10), &rv).await.unwrap().boxed();
    let created = cms.create(&PostParams::default(), &configmap("w", "web")).await.unwrap();
    let mut changed = created.clone();
    changed.data = Some([("k".to_owned(), "v2".to_owned())].into());
    cms.replace("w", &PostParams::default(), &changed).await.unwrap();
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.unwrap().unwrap().unwrap();
        seen.push(match event {
            WatchEvent::Added(cm) => format!("ADDED {}", cm.metadata.name.unwrap()),
            WatchEvent::Modified(cm) => format!("MODIFIED {}", cm.data.unwrap()["k"]),
            WatchEvent::Deleted(cm) => format!("DELETED {}", cm.metadata.name.unwrap()),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(seen, ["ADDED w", "MODIFIED v2", "DELETED w"]);
    c.cleanup().await;
}

/// A watch from a compacted resourceVersion gets an ERROR event with 410 Gone.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#410-gone-responses>
#[tokio::test]
async fn watch_from_a_compacted_version_is_gone() {
    let c = TestCluster::new("gone").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let old =
        cms.create(&PostParams::default(), &configmap("x", "web")).await.unwrap().metadata.resource_version.unwrap();
    cms.delete("x", &DeleteParams::default()).await.unwrap();
    sim.compact();
    let mut events = cms.watch(&WatchParams::default(), &old).await.unwrap().boxed();
    match events.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(status) => assert_eq!(status.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    c.cleanup().await;
}

/// A watch that asks for bookmarks learns how far it has got even when nothing it watches changes, and resumes from
/// there: after the history is compacted it needs no new LIST, where a watch without bookmarks would be Gone.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#watch-bookmarks>
#[tokio::test]
async fn bookmarks_let_a_quiet_watch_resume_after_compaction() {
    let c = TestCluster::new("bookmarks").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let quiet = WatchParams::default().labels("app=nobody").timeout(30);
    let mut events = cms.watch(&quiet.clone(), &rv).await.unwrap().boxed();
    let mut last = String::new();
    for i in 0..5 {
        last = cms
            .create(&PostParams::default(), &configmap(&format!("other-{i}"), "web"))
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
    }
    let bookmarked = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.unwrap().unwrap().unwrap();
        match event {
            WatchEvent::Bookmark(b)
                if b.metadata.resource_version.parse::<u64>().unwrap() >= last.parse::<u64>().unwrap() =>
            {
                break b.metadata.resource_version;
            }
            WatchEvent::Bookmark(_) => {}
            other => panic!("nothing it watches changed, yet: {other:?}"),
        }
    };
    sim.compact();
    // Resuming from the bookmark works; from the version of the last event it saw (before the changes) it is Gone.
    let mut resumed = cms.watch(&quiet.clone().timeout(1), &bookmarked).await.unwrap().boxed();
    let next = tokio::time::timeout(Duration::from_secs(10), resumed.try_next()).await.unwrap().unwrap();
    assert!(!matches!(next, Some(WatchEvent::Error(_))), "resumed from the bookmark: {next:?}");
    let mut stale = cms.watch(&quiet, &rv).await.unwrap().boxed();
    match stale.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(status) => assert_eq!(status.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    c.cleanup().await;
}

/// Deleting an owner deletes what it owns, unless orphaned.
/// <https://kubernetes.io/docs/concepts/architecture/garbage-collection/#cascading-deletion>
#[tokio::test]
async fn deletion_propagates_to_owned_objects_unless_orphaned() {
    let c = TestCluster::new("gc").await.unwrap();
    if c.sim().is_none() {
        // On a real cluster the Deployment controller makes its own ReplicaSets; this checks the simulator's GC.
        return c.cleanup().await;
    }
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), &c.namespace);
    for (name, policy) in [("cascade", DeleteParams::background()), ("orphan", DeleteParams::orphan())] {
        let owner = deploys.create(&PostParams::default(), &deployment(name, "nginx")).await.unwrap();
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-rs"), "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": owner.metadata.uid.unwrap(), "controller": true}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}
        }))
        .unwrap();
        rss.create(&PostParams::default(), &rs).await.unwrap();
        deploys.delete(name, &policy).await.unwrap();
    }
    let left: Vec<String> =
        rss.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|r| r.metadata.name).collect();
    assert!(left.contains(&"orphan-rs".to_owned()), "{left:?}");
    assert!(!left.iter().any(|n| n.starts_with("cascade")), "the cascade went with its owner: {left:?}");
    c.cleanup().await;
}

/// Objects in a namespace that does not exist are refused; custom resources registered by a test are served.
#[tokio::test]
async fn missing_namespaces_and_custom_resources() {
    let c = TestCluster::new("custom").await.unwrap();
    let missing: Api<ConfigMap> = Api::namespaced(c.client.clone(), "no-such-namespace");
    assert_eq!(api_code(missing.create(&PostParams::default(), &configmap("a", "web")).await.unwrap_err()), 404);
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.register(ResourceType::custom("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"));
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let routes: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), &c.namespace, &ApiResource::from_gvk(&gvk));
    let route: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "shop"},
        "spec": {"rules": [{"backendRefs": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}]}
    }))
    .unwrap();
    routes.create(&PostParams::default(), &route).await.unwrap();
    let got = routes.get("shop").await.unwrap();
    assert_eq!(got.data["spec"]["rules"][0]["backendRefs"][1]["weight"], 10);
    c.cleanup().await;
}

/// Injected faults answer the next matching requests, then the server behaves again; requests are counted by verb.
#[tokio::test]
async fn injected_faults_and_request_counts() {
    let c = TestCluster::new("faults").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    sim.inject(Fault::status(StatusCode::INTERNAL_SERVER_ERROR).method(Method::GET).path("/configmaps").times(2));
    for _ in 0..2 {
        assert_eq!(api_code(cms.list(&ListParams::default()).await.unwrap_err()), 500);
    }
    assert!(cms.list(&ListParams::default()).await.is_ok());
    assert!(sim.requests()["LIST configmaps"] >= 1, "{:?}", sim.requests());
    c.cleanup().await;
}

/// An injected 409 carries the `Status` a real API server sends (reason `Conflict`), after the requests it lets
/// through; injected latency delays only the requests it matches.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions> (409 on a stale write)
#[tokio::test]
async fn injected_conflicts_and_latency() {
    let c = TestCluster::new("conflicts").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    cms.create(&PostParams::default(), &configmap("cfg", "web")).await.unwrap();
    sim.inject(Fault::status(StatusCode::CONFLICT).method(Method::PATCH).path("/configmaps/cfg").skip(1));
    let patch = |v: &str| Patch::Merge(serde_json::json!({"data": {"k": v}}));
    assert!(cms.patch("cfg", &PatchParams::default(), &patch("1")).await.is_ok(), "skipped");
    match cms.patch("cfg", &PatchParams::default(), &patch("2")).await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (409, "Conflict")),
        other => panic!("{other}"),
    }
    assert!(cms.patch("cfg", &PatchParams::default(), &patch("3")).await.is_ok(), "used up");

    let delay = Duration::from_millis(300);
    sim.inject(Fault::latency(delay).method(Method::GET).path("/configmaps/cfg").times(1));
    let started = std::time::Instant::now();
    let got = cms.get("cfg").await.unwrap();
    assert!(started.elapsed() >= delay, "served after the injected delay");
    assert_eq!(got.data.unwrap()["k"], "3", "and then served normally");
    c.cleanup().await;
}

/// The next object name a watcher yields; its errors (it reports each, then retries) are skipped.
async fn next(
    names: &mut futures::stream::BoxStream<'static, Result<String, kube::runtime::watcher::Error>>,
) -> String {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(name) = names.next().await.expect("the watcher does not end") {
                return name;
            }
        }
    })
    .await
    .expect("in time")
}

/// kube-runtime's watcher survives dropped watches and errors: it resumes, and sees every later change.
#[tokio::test]
async fn a_watcher_survives_dropped_watches_and_errors() {
    use kube::runtime::{WatchStreamExt, watcher};
    let c = TestCluster::new("resume").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let mut names = watcher(cms.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .map(|r| r.map(|cm| cm.metadata.name.unwrap_or_default()))
        .boxed();
    cms.create(&PostParams::default(), &configmap("before", "web")).await.unwrap();
    assert_eq!(next(&mut names).await, "before");
    sim.drop_watches();
    sim.inject(Fault::status(StatusCode::INTERNAL_SERVER_ERROR).method(Method::GET).path("/configmaps").times(2));
    cms.create(&PostParams::default(), &configmap("after", "web")).await.unwrap();
    // The watcher may replay what it knew on re-listing; it must reach the new object.
    let mut seen = next(&mut names).await;
    while seen != "after" {
        assert_eq!(seen, "before", "only replays before the new object");
        seen = next(&mut names).await;
    }
    c.cleanup().await;
}

/// A Secret's `stringData` is stored base64-encoded in `data`, merged over the keys already there, and not kept.
/// <https://kubernetes.io/docs/concepts/configuration/secret/#restriction-names-data>
#[tokio::test]
async fn secret_string_data_is_stored_as_data() {
    use k8s_openapi::api::core::v1::Secret;
    let c = TestCluster::new("secrets").await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.namespace);
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db"}, "data": {"user": "YWRtaW4="}, "stringData": {"password": "hunter2"}
    }))
    .unwrap();
    let stored = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert!(stored.string_data.is_none());
    let data = stored.data.unwrap();
    assert_eq!((data["user"].0.as_slice(), data["password"].0.as_slice()), (&b"admin"[..], &b"hunter2"[..]));
    c.cleanup().await;
}

/// Lists come in pages when asked (`limit`, then `continue`), every page from the snapshot of the first: an object
/// created between pages does not show up; a token from before a compaction is `410 Gone`.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks>
#[tokio::test]
async fn lists_come_in_consistent_pages() {
    let c = TestCluster::new("pages").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    for i in 0..7 {
        cms.create(&PostParams::default(), &configmap(&format!("cm-{i}"), "web")).await.unwrap();
    }
    let first = cms.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    assert_eq!(first.metadata.remaining_item_count, Some(4));
    let rv = first.metadata.resource_version.clone();
    cms.create(&PostParams::default(), &configmap("late", "web")).await.unwrap();
    let mut names: Vec<String> = first.items.into_iter().filter_map(|cm| cm.metadata.name).collect();
    let mut token = first.metadata.continue_;
    while let Some(t) = token.filter(|t| !t.is_empty()) {
        let page = cms.list(&ListParams::default().limit(3).continue_token(&t)).await.unwrap();
        assert_eq!(page.metadata.resource_version, rv, "every page is the first page's snapshot");
        names.extend(page.items.into_iter().filter_map(|cm| cm.metadata.name));
        token = page.metadata.continue_;
    }
    assert_eq!(names, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>(), "in order, none twice, not `late`");
    // kube-runtime's watcher lists in pages of its own and sees everything.
    let all = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 8);
    assert!(all.metadata.continue_.is_none_or(|t| t.is_empty()));

    if let Some(sim) = c.sim() {
        let page = cms.list(&ListParams::default().limit(2)).await.unwrap();
        sim.compact();
        let err = cms
            .list(&ListParams::default().limit(2).continue_token(&page.metadata.continue_.unwrap()))
            .await
            .unwrap_err();
        assert!(matches!(err, kube::Error::Api(ref s) if s.code == 410), "{err}");
    }
    c.cleanup().await;
}

/// The `scale` subresource: a `Scale` (autoscaling/v1) with the Deployment's replicas and selector; written, it sets
/// `spec.replicas`; a stale resourceVersion is a conflict and negative replicas are invalid.
/// <https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/deployment-v1/#update-replace-scale-of-the-specified-deployment>
#[tokio::test]
async fn the_scale_subresource_reads_and_sets_replicas() {
    let c = TestCluster::new("scale").await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    deploys.create(&PostParams::default(), &deployment("web", "nginx:1.27")).await.unwrap();
    let scale = deploys.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    let stale = scale.metadata.resource_version.clone().unwrap();

    let patched = deploys
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}})))
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(4));
    assert_eq!(deploys.get("web").await.unwrap().spec.unwrap().replicas, Some(4));

    let mut replace = deploys.get_scale("web").await.unwrap();
    replace.metadata.resource_version = Some(stale);
    replace.spec.as_mut().unwrap().replicas = Some(1);
    assert_eq!(api_code(deploys.replace_scale("web", &PostParams::default(), &replace).await.unwrap_err()), 409);
    let negative = Patch::Merge(json!({"spec": {"replicas": -1}}));
    assert_eq!(api_code(deploys.patch_scale("web", &PatchParams::default(), &negative).await.unwrap_err()), 422);
    assert_eq!(deploys.get("web").await.unwrap().spec.unwrap().replicas, Some(4), "nothing changed");
    c.cleanup().await;
}

/// A streaming list (`sendInitialEvents=true`, `resourceVersionMatch=NotOlderThan`): the current objects as ADDED
/// events, then a bookmark annotated `k8s.io/initial-events-end: "true"`, then changes; kube's watcher with streaming
/// lists finishes its initial sync on it.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#streaming-lists>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_list_ends_its_initial_events_with_a_bookmark() {
    use kube::runtime::watcher;
    let c = TestCluster::new("streaming-list").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    for name in ["a", "b"] {
        cms.create(&PostParams::default(), &configmap(name, "web")).await.unwrap();
    }
    let mut events = cms.watch(&WatchParams::streaming_lists(), "0").await.unwrap().boxed();
    let mut added = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.unwrap().unwrap().unwrap() {
            WatchEvent::Added(cm) => added.push(cm.metadata.name.unwrap()),
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str), Some("true"));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    added.sort();
    assert!(added.iter().any(|n| n == "a") && added.iter().any(|n| n == "b"), "{added:?}");
    cms.create(&PostParams::default(), &configmap("c", "web")).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.unwrap().unwrap().unwrap() {
            WatchEvent::Added(cm) if cm.metadata.name.as_deref() == Some("c") => break,
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // kube's watcher in streaming-list mode completes its initial sync.
    let config = watcher::Config::default().streaming_lists();
    let mut watch = watcher(cms.clone(), config).boxed();
    let synced = async {
        while let Some(event) = watch.try_next().await.unwrap() {
            if matches!(event, watcher::Event::InitDone) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), synced).await.expect("the watcher's initial sync ends");
    c.cleanup().await;
}

/// A GET over plain HTTP/1.1 to the simulator: the status code and the body.
async fn plain_get(url: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, response)
}

async fn raw_status(client: &kube::Client, path: &str) -> (u16, serde_json::Value) {
    let request = axum::http::Request::get(path).body(Vec::new()).unwrap();
    match client.request::<serde_json::Value>(request).await {
        Ok(body) => (200, body),
        Err(kube::Error::Api(status)) => (status.code, serde_json::to_value(&status).unwrap()),
        Err(other) => panic!("{other}"),
    }
}

/// List and watch options checked as the API server checks them: `422 Invalid` for kind `ListOptions` naming the
/// rule, a resourceVersion newer than the cluster's is `504` after a short wait, and one long compacted is `410`.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_watch_options_are_validated() {
    let c = TestCluster::new("list-options").await.unwrap();
    let base = format!("/api/v1/namespaces/{}/configmaps", c.namespace);
    for (query, field, message) in [
        (
            "watch=true&sendInitialEvents=true",
            "resourceVersionMatch",
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ),
        (
            "resourceVersionMatch=Exact",
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ),
        (
            "resourceVersion=0&resourceVersionMatch=Exact",
            "resourceVersionMatch",
            "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        ),
        ("sendInitialEvents=true", "sendInitialEvents", "sendInitialEvents is forbidden for list"),
    ] {
        let (code, status) = raw_status(&c.client, &format!("{base}?{query}")).await;
        assert_eq!(code, 422, "{query}: {status}");
        assert_eq!(status["reason"], "Invalid", "{query}");
        let text = status["message"].as_str().unwrap();
        assert!(
            text.starts_with("ListOptions.meta.k8s.io \"\" is invalid: ") && text.contains(message),
            "{query}: {text}"
        );
        assert_eq!(status["details"]["causes"][0]["field"], field, "{query}");
    }
    let (code, _) = raw_status(&c.client, &format!("{base}?resourceVersion=1&resourceVersionMatch=NotOlderThan")).await;
    assert_eq!(code, 200, "a version at least as new as 1 is served");
    if let Some(sim) = c.sim() {
        // Over plain HTTP: kube's client retries a 504 as it should, with backoff, for minutes.
        let (code, body) = plain_get(&sim.url(), &format!("{base}?resourceVersion=999999999")).await;
        assert_eq!(code, 504, "{body}");
        assert!(body.contains("Too large resource version: 999999999"), "{body}");
    }
    // The cluster's first versions are long compacted.
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let mut events = cms.watch(&WatchParams::default(), "1").await.unwrap().boxed();
    match events.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(status) => assert_eq!(status.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    c.cleanup().await;
}

/// `timeoutSeconds=0` is no timeout of the client's (the server's own limit applies), not a watch closed at once.
/// <https://kubernetes.io/docs/reference/kubernetes-api/common-parameters/common-parameters/#timeoutseconds>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_with_timeout_zero_stays_open() {
    let c = TestCluster::new("timeout-zero").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut events = cms.watch(&WatchParams::default().timeout(0), &rv).await.unwrap().boxed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cms.create(&PostParams::default(), &configmap("late", "web")).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Added(cm)) => assert_eq!(cm.metadata.name.as_deref(), Some("late")),
        other => panic!("expected the new ConfigMap, got {other:?}"),
    }
    c.cleanup().await;
}

/// Delete preconditions: a uid or resourceVersion that is no longer the object's is a conflict, and nothing is
/// deleted. <https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/delete-options/>
#[tokio::test]
async fn delete_preconditions_are_checked() {
    let c = TestCluster::new("preconditions").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let created = cms.create(&PostParams::default(), &configmap("x", "web")).await.unwrap();
    let stale = created.metadata.resource_version.clone().unwrap();
    cms.patch("x", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}}))).await.unwrap();
    let by_version = DeleteParams {
        preconditions: Some(kube::api::Preconditions { resource_version: Some(stale), uid: None }),
        ..Default::default()
    };
    assert_eq!(api_code(cms.delete("x", &by_version).await.unwrap_err()), 409);
    let by_uid = DeleteParams {
        preconditions: Some(kube::api::Preconditions { resource_version: None, uid: Some("not-the-uid".into()) }),
        ..Default::default()
    };
    assert_eq!(api_code(cms.delete("x", &by_uid).await.unwrap_err()), 409);
    assert!(cms.get_opt("x").await.unwrap().is_some(), "nothing was deleted");
    let right = DeleteParams {
        preconditions: Some(kube::api::Preconditions { resource_version: None, uid: created.metadata.uid }),
        ..Default::default()
    };
    cms.delete("x", &right).await.unwrap();
    assert!(cms.get_opt("x").await.unwrap().is_none());
    c.cleanup().await;
}

/// The namespaces the cluster starts with cannot be deleted (403).
/// <https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/#initial-namespaces>
#[tokio::test]
async fn system_namespaces_cannot_be_deleted() {
    let c = TestCluster::new("system-namespaces").await.unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.client.clone());
    for name in ["default", "kube-system", "kube-public"] {
        assert_eq!(api_code(namespaces.delete(name, &DeleteParams::default()).await.unwrap_err()), 403, "{name}");
        assert!(namespaces.get_opt(name).await.unwrap().is_some(), "{name}");
    }
    c.cleanup().await;
}

/// A plain watch from a resourceVersion the cluster has not reached opens at once and sends what comes after it
/// (only lists and streaming lists wait for it).
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-watch>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_future_version_opens_and_sends_what_follows() {
    let c = TestCluster::new("future-watch").await.unwrap();
    let Some(_) = c.sim() else { return c.cleanup().await };
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let rv: u64 = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap().parse().unwrap();
    let started = std::time::Instant::now();
    let mut events = cms.watch(&WatchParams::default(), &(rv + 2).to_string()).await.unwrap().boxed();
    assert!(started.elapsed() < Duration::from_secs(2), "the watch opened without waiting");
    for name in ["one", "two", "three"] {
        cms.create(&PostParams::default(), &configmap(name, "web")).await.unwrap();
    }
    match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Added(cm)) => assert_eq!(cm.metadata.name.as_deref(), Some("three"), "only what follows"),
        other => panic!("expected the third ConfigMap, got {other:?}"),
    }
    c.cleanup().await;
}

/// Selectors are checked: a label selector with an empty key or an invalid value, and a field selector on a field
/// the kind does not support, are `400`; the supported ones work.
/// <https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/#supported-fields>,
/// <https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors>
#[tokio::test]
async fn invalid_selectors_are_bad_requests() {
    let c = TestCluster::new("selectors").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    cms.create(&PostParams::default(), &configmap("a", "web")).await.unwrap();
    for (labels, fields) in [("=a", ""), ("app=not a value", ""), ("", "spec.foo=x"), ("", "data.k=v")] {
        let lp = ListParams {
            label_selector: Some(labels.into()),
            field_selector: Some(fields.into()),
            ..Default::default()
        };
        let err = cms.list(&lp).await.unwrap_err();
        assert_eq!(api_code(err), 400, "labels {labels:?}, fields {fields:?}");
    }
    let by_name = ListParams::default().fields("metadata.name=a").labels("app in (web,api)");
    assert_eq!(cms.list(&by_name).await.unwrap().items.len(), 1);
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c.client.clone(), &c.namespace);
    pods.list(&ListParams::default().fields("status.phase=Running")).await.unwrap();
    c.cleanup().await;
}

/// Sends `body` with `content_type`, asking for `accept`; returns the status, the answer's content type and body.
async fn send_raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    accept: &str,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .header("accept", accept)
        .body(kube::client::Body::from(body))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, content_type, response.into_body().collect_bytes().await.unwrap().to_vec())
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// `k8s\0` + `runtime.Unknown{typeMeta, raw}`, as client-go writes a protobuf body.
fn protobuf_body(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    use prost::Message;
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [b"k8s\0".to_vec(), unknown.encode_to_vec()].concat()
}

/// The object inside a protobuf answer, with its type.
fn protobuf_answer(body: &[u8]) -> (String, String, Vec<u8>) {
    use prost::Message;
    let unknown =
        k8s_pb::apimachinery::pkg::runtime::Unknown::decode(body.strip_prefix(b"k8s\0").expect("magic")).unwrap();
    let type_meta = unknown.type_meta.unwrap();
    (type_meta.api_version.unwrap(), type_meta.kind.unwrap(), unknown.raw.unwrap())
}

/// Protobuf bodies and content negotiation, with the objects encoded and decoded by kube-rs' `k8s-pb` (prost):
/// a Secret created as protobuf reads back as JSON and as protobuf; a list and a `Status` error come back as
/// protobuf to a client that prefers it; JSON stays the default; a custom resource refuses protobuf (415); a body
/// that is not protobuf is a 400 naming what was wrong.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#protobuf-encoding>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_bodies_and_content_negotiation() {
    use k8s_pb::api::core::v1 as pb;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as pbmeta;
    use prost::Message;
    let c = TestCluster::new("protobuf").await.unwrap();
    let base = format!("/api/v1/namespaces/{}/secrets", c.namespace);
    let secret = pb::Secret {
        metadata: Some(pbmeta::ObjectMeta {
            name: Some("db".into()),
            labels: [("app".to_owned(), "web".to_owned())].into(),
            ..Default::default()
        }),
        data: [("password".to_owned(), b"hunter2".to_vec())].into(),
        r#type: Some("Opaque".into()),
        ..Default::default()
    };
    let body = protobuf_body("v1", "Secret", secret.encode_to_vec());
    let accept = format!("{PROTOBUF},application/json");
    let (code, content_type, answer) = send_raw(&c.client, "POST", &base, PROTOBUF, &accept, body).await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(content_type, PROTOBUF);
    let (api_version, kind, raw) = protobuf_answer(&answer);
    assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "Secret"));
    let created = pb::Secret::decode(raw.as_slice()).unwrap();
    let meta = created.metadata.unwrap();
    assert!(
        meta.uid.is_some_and(|u| !u.is_empty()) && meta.creation_timestamp.is_some_and(|t| t.seconds.unwrap_or(0) > 0)
    );
    assert_eq!(created.data["password"], b"hunter2");

    // JSON readers see the same object.
    let json = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(c.client.clone(), &c.namespace);
    let read = json.get("db").await.unwrap();
    assert_eq!(read.data.unwrap()["password"].0, b"hunter2");
    assert_eq!(read.metadata.labels.unwrap()["app"], "web");

    // A list, as protobuf; JSON when the client prefers it or says nothing.
    let (code, content_type, answer) = send_raw(&c.client, "GET", &base, "", &accept, Vec::new()).await;
    assert_eq!((code, content_type.as_str()), (200, PROTOBUF));
    let (_, kind, raw) = protobuf_answer(&answer);
    assert_eq!(kind, "SecretList");
    let list = pb::SecretList::decode(raw.as_slice()).unwrap();
    assert_eq!(
        list.items.iter().map(|s| s.metadata.as_ref().unwrap().name.clone().unwrap()).collect::<Vec<_>>(),
        ["db"]
    );
    assert!(list.metadata.unwrap().resource_version.is_some_and(|rv| !rv.is_empty()));
    for accept in [format!("application/json,{PROTOBUF}"), String::new()] {
        let (code, content_type, _) = send_raw(&c.client, "GET", &base, "", &accept, Vec::new()).await;
        assert_eq!((code, content_type.as_str()), (200, "application/json"), "Accept: {accept}");
    }

    // An error is a protobuf Status.
    let (code, content_type, answer) =
        send_raw(&c.client, "GET", &format!("{base}/nope"), "", &accept, Vec::new()).await;
    assert_eq!((code, content_type.as_str()), (404, PROTOBUF));
    let (_, kind, raw) = protobuf_answer(&answer);
    assert_eq!(kind, "Status");
    let status = pbmeta::Status::decode(raw.as_slice()).unwrap();
    assert_eq!((status.reason.as_deref(), status.code), (Some("NotFound"), Some(404)));

    // A body that is not protobuf, and one cut short.
    let (code, _, answer) =
        send_raw(&c.client, "POST", &base, PROTOBUF, "application/json", b"{\"kind\":\"Secret\"}".to_vec()).await;
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&answer).contains("magic"), "{}", String::from_utf8_lossy(&answer));
    let mut cut = protobuf_body("v1", "Secret", secret.encode_to_vec());
    cut.truncate(cut.len() - 5);
    let (code, _, _) = send_raw(&c.client, "POST", &base, PROTOBUF, "application/json", cut).await;
    assert_eq!(code, 400);

    // Custom resources are JSON only.
    if let Some(sim) = c.sim() {
        sim.register(ResourceType::custom("example.gantry.dev", "v1", "Gadget", "gadgets"));
        let path = format!("/apis/example.gantry.dev/v1/namespaces/{}/gadgets", c.namespace);
        let body = protobuf_body("example.gantry.dev/v1", "Gadget", Vec::new());
        let (code, _, answer) = send_raw(&c.client, "POST", &path, PROTOBUF, "application/json", body).await;
        assert_eq!(code, 415, "{}", String::from_utf8_lossy(&answer));
    }
    c.cleanup().await;
}

/// The OpenAPI documents: v3 per group-version with the built-in types' schemas, each kind marked with
/// `x-kubernetes-group-version-kind` and references wrapped in `allOf` as upstream writes them, and object paths whose
/// PATCH takes `fieldValidation`; v2 with the same paths.
/// <https://kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-v3>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_describe_the_served_types() {
    let c = TestCluster::new("openapi").await.unwrap();
    let (code, index) = raw_status(&c.client, "/openapi/v3").await;
    assert_eq!(code, 200);
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap().to_owned();
    let (code, apps) = raw_status(&c.client, &url).await;
    assert_eq!(code, 200);
    let deployment = &apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    let spec_ref = deployment["properties"]["spec"]["allOf"][0]["$ref"].as_str().unwrap();
    assert_eq!(spec_ref, "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec");
    let spec = &apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"];
    assert_eq!(spec["properties"]["replicas"]["type"], "integer");
    assert!(spec["required"].as_array().unwrap().contains(&json!("selector")));
    let patch = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
    let (code, v2) = raw_status(&c.client, "/openapi/v2").await;
    assert_eq!(code, 200);
    assert_eq!(v2["swagger"], "2.0");
    let patch = &v2["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "ConfigMap");
    let (code, _) = raw_status(&c.client, "/openapi/v3/apis/nothing.example/v1").await;
    assert_eq!(code, 404);
    c.cleanup().await;
}

/// A client that asks for a Table gets one: column definitions, one row per object with its cells and, as
/// `includeObject` says, the object's metadata (the default), the whole object or nothing; `meta.k8s.io/v1beta1` too.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_for_clients_that_ask_for_them() {
    let c = TestCluster::new("tables").await.unwrap();
    let configmaps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(c.client.clone(), &c.namespace);
    configmaps.create(&Default::default(), &configmap("settings", "web")).await.unwrap();
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let base = format!("/api/v1/namespaces/{}/configmaps", c.namespace);
    let (code, content_type, body) = send_raw(&c.client, "GET", &base, "", table, Vec::new()).await;
    assert_eq!((code, content_type.as_str()), (200, "application/json"));
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((answer["kind"].as_str(), answer["apiVersion"].as_str()), (Some("Table"), Some("meta.k8s.io/v1")));
    let names: Vec<&str> =
        answer["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Name", "Data", "Age"]);
    let row = &answer["rows"][0];
    assert_eq!((row["cells"][0].as_str(), row["cells"][1].as_i64()), (Some("settings"), Some(1)));
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["metadata"]["labels"]["app"], "web");
    assert!(answer["metadata"]["resourceVersion"].as_str().is_some_and(|rv| !rv.is_empty()));

    let (_, _, body) =
        send_raw(&c.client, "GET", &format!("{base}/settings?includeObject=Object"), "", table, Vec::new()).await;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["rows"].as_array().unwrap().len(), 1);
    assert_eq!(answer["rows"][0]["object"]["data"]["k"], "v");
    let (_, _, body) = send_raw(&c.client, "GET", &format!("{base}?includeObject=None"), "", table, Vec::new()).await;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(answer["rows"][0].get("object").is_none());
    let beta = "application/json;as=Table;v=v1beta1;g=meta.k8s.io";
    let (_, _, body) = send_raw(&c.client, "GET", &base, "", beta, Vec::new()).await;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["apiVersion"], "meta.k8s.io/v1beta1");
    // Errors stay Status.
    let (code, _, body) = send_raw(&c.client, "GET", &format!("{base}/nope"), "", table, Vec::new()).await;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((code, answer["kind"].as_str()), (404, Some("Status")));
    c.cleanup().await;
}

/// A `resourceVersion` that is not a number is a `400` for a get, a list and a watch, worded as the storage layer's
/// `ParseResourceVersion` words it; an empty one is none.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_version_that_is_not_a_number_is_a_bad_request() {
    let c = TestCluster::new("rv-syntax").await.unwrap();
    let configmaps: kube::Api<ConfigMap> = kube::Api::namespaced(c.client.clone(), &c.namespace);
    configmaps.create(&Default::default(), &configmap("settings", "web")).await.unwrap();
    let base = format!("/api/v1/namespaces/{}/configmaps", c.namespace);
    for path in [
        format!("{base}?resourceVersion=abc"),
        format!("{base}/settings?resourceVersion=abc"),
        format!("{base}?watch=true&resourceVersion=abc"),
    ] {
        let (code, status) = raw_status(&c.client, &path).await;
        assert_eq!(code, 400, "{path}: {status}");
        assert_eq!(
            status["message"],
            "invalid resource version: resourceVersion: Invalid value: \"abc\": strconv.ParseUint: parsing \"abc\": invalid syntax",
            "{path}"
        );
    }
    let (code, _) = raw_status(&c.client, &format!("{base}?resourceVersion=")).await;
    assert_eq!(code, 200);
    c.cleanup().await;
}
