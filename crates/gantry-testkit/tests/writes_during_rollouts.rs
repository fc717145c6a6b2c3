//! Writes without a resourceVersion while the controllers write the same objects (a rollout in progress) never get
//! `409 Conflict`: the API server retries them against the current object, as its registry's `GuaranteedUpdate`
//! does; a write that names a stale resourceVersion still gets 409.
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/#patch-and-apply>
//! <https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts>

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gantry_testkit::test_cluster::TestCluster;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const DEPLOYMENTS: usize = 3;
const WRITERS: usize = 4;
const WRITES_EACH: usize = 250;

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"seed": "0"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "web:0"}]}}
        }
    }))
    .unwrap()
}

/// One write of each kind a client sends without a resourceVersion, chosen by `i`.
async fn write(api: &Api<Deployment>, writer: usize, i: usize) -> Result<(), kube::Error> {
    let name = format!("web-{}", i % DEPLOYMENTS);
    let key = format!("writer-{writer}");
    let value = i.to_string();
    let params = PatchParams::default();
    match i % 4 {
        0 => api.patch(&name, &params, &Patch::Merge(json!({"metadata": {"annotations": {&key: value}}}))).await,
        1 => {
            let path = format!("/metadata/annotations/{key}");
            let ops = serde_json::from_value(json!([{"op": "add", "path": path, "value": value}])).unwrap();
            api.patch(&name, &params, &Patch::<()>::Json(ops)).await
        }
        2 => api.patch(&name, &params, &Patch::Strategic(json!({"metadata": {"labels": {&key: value}}}))).await,
        _ => {
            let apply = PatchParams::apply(&key).force();
            let body = json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "annotations": {format!("applied-by-{key}"): value}},
            });
            api.patch(&name, &apply, &Patch::Apply(body)).await
        }
    }
    .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_a_resource_version_never_conflict_during_rollouts() {
    let c = TestCluster::new("writes-during-rollouts").await.unwrap();
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    for d in 0..DEPLOYMENTS {
        api.create(&PostParams::default(), &deployment(&format!("web-{d}"))).await.unwrap();
    }

    // Rollouts, one after another, on every Deployment while the writers write: the controllers write the same
    // objects' status, and their ReplicaSets and Pods, all the time.
    let done = Arc::new(AtomicBool::new(false));
    let rollouts = tokio::spawn({
        let (api, done) = (api.clone(), Arc::clone(&done));
        async move {
            let mut version = 0;
            while !done.load(Ordering::Acquire) {
                version += 1;
                for d in 0..DEPLOYMENTS {
                    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": format!("web:{version}")}]}}}});
                    api.patch(&format!("web-{d}"), &PatchParams::default(), &Patch::Strategic(image)).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            version
        }
    });

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                for i in 0..WRITES_EACH {
                    if let Err(e) = write(&api, w, i).await {
                        failures.push(format!("write {i} of writer {w}: {e}"));
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures = Vec::new();
    for w in writers {
        failures.extend(w.await.unwrap());
    }
    done.store(true, Ordering::Release);
    let rollouts = rollouts.await.unwrap();

    assert!(failures.is_empty(), "{} of {} writes failed: {:#?}", failures.len(), WRITERS * WRITES_EACH, failures);
    // The writes landed: each writer's last value of each kind is on the objects.
    for d in 0..DEPLOYMENTS {
        let got = api.get(&format!("web-{d}")).await.unwrap();
        let annotations = got.metadata.annotations.unwrap_or_default();
        let labels = got.metadata.labels.unwrap_or_default();
        for w in 0..WRITERS {
            let last = |kind: usize| (0..WRITES_EACH).rev().find(|i| i % 4 == kind && i % DEPLOYMENTS == d).unwrap();
            let key = format!("writer-{w}");
            assert_eq!(annotations.get(&key).map(String::as_str), Some(last(1).max(last(0)).to_string().as_str()));
            assert_eq!(labels.get(&key).map(String::as_str), Some(last(2).to_string().as_str()));
            let applied = annotations.get(&format!("applied-by-{key}")).map(String::as_str);
            assert_eq!(applied, Some(last(3).to_string().as_str()));
        }
    }
    // And the controllers were busy: every rollout made a ReplicaSet.
    assert!(rollouts >= 3, "only {rollouts} rollouts ran during the writes");
    eprintln!("{rollouts} rollouts of {DEPLOYMENTS} Deployments during {} writes", WRITERS * WRITES_EACH);
    let sets: Api<ReplicaSet> = Api::namespaced(c.client.clone(), &c.namespace);
    assert!(sets.list(&ListParams::default()).await.unwrap().items.len() > DEPLOYMENTS);

    // A write that names a stale resourceVersion is still refused.
    let current = api.get("web-0").await.unwrap();
    let stale = current.metadata.resource_version.unwrap();
    api.patch("web-0", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"x": "1"}}})))
        .await
        .unwrap();
    let refused = api
        .patch(
            "web-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": stale, "annotations": {"x": "2"}}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, kube::Error::Api(ref s) if s.code == 409), "{refused}");
    c.cleanup().await;
}
