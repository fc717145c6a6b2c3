//! Deletion through the real `kube::Client`: finalizers, foreground and background cascading, and namespace
//! termination, each test citing the Kubernetes documentation it follows. With `GANTRY_E2E_KUBECONFIG` set they run
//! against that cluster too.

use std::time::Duration;

use gantry_testkit::test_cluster::{TestCluster, eventually};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const KEEP: &str = "example.gantry.dev/keep";

fn config_map(name: &str, finalizers: &[&str]) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "finalizers": finalizers}, "data": {"a": "b"}})).unwrap()
}

async fn set_finalizers<K>(api: &Api<K>, name: &str, finalizers: &[&str]) -> Result<K, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": finalizers}}))).await
}

/// An object with a finalizer is not removed by a DELETE: it gets a `deletionTimestamp` and stays until its last
/// finalizer is removed; no finalizer may be added meanwhile, and it can still be read and updated otherwise.
/// <https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalizer_holds_an_object_until_it_is_removed() {
    let c = TestCluster::new("del-finalizer").await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    configmaps.create(&PostParams::default(), &config_map("held", &[KEEP])).await.unwrap();
    let answered = configmaps.delete("held", &DeleteParams::default()).await.unwrap();
    let held = answered.left().expect("the DELETE answers the object, still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    let read = configmaps.get("held").await.unwrap();
    assert!(read.metadata.deletion_timestamp.is_some());
    assert_eq!(read.metadata.finalizers.as_deref(), Some(&[KEEP.to_owned()][..]));

    let refused = set_finalizers(&configmaps, "held", &[KEEP, "example.gantry.dev/more"]).await.unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 422 && s.message.contains("no new finalizers can be added if the object is being deleted")),
        "{refused}"
    );
    // A delete again changes nothing.
    configmaps.delete("held", &DeleteParams::default()).await.unwrap();
    assert!(configmaps.get_opt("held").await.unwrap().is_some());

    set_finalizers(&configmaps, "held", &[]).await.unwrap();
    assert!(configmaps.get_opt("held").await.unwrap().is_none(), "gone with its last finalizer");
    c.cleanup().await;
}

/// Foreground deletion: the Deployment stays (`deletionTimestamp`, finalizer `foregroundDeletion`) while its
/// ReplicaSet does, which stays while its pods do; a pod held by a finalizer holds the whole chain, and releasing it
/// lets all three go, dependents first.
/// <https://kubernetes.io/docs/concepts/architecture/garbage-collection/#foreground-deletion>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_removes_dependents_first() {
    let c = TestCluster::new("del-foreground").await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    let sets: Api<ReplicaSet> = Api::namespaced(c.client.clone(), &c.namespace);
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &c.namespace);
    let web: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &web).await.unwrap();
    eventually("two pods run", || async {
        pods.list(&ListParams::default().labels("app=web")).await.unwrap().items.len() == 2
    })
    .await;
    let held =
        pods.list(&ListParams::default().labels("app=web")).await.unwrap().items[0].metadata.name.clone().unwrap();
    set_finalizers(&pods, &held, &[KEEP]).await.unwrap();

    deployments.delete("web", &DeleteParams::foreground()).await.unwrap();
    eventually("the other pod is gone", || async {
        pods.list(&ListParams::default().labels("app=web")).await.unwrap().items.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = deployments.get("web").await.unwrap();
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert!(waiting.metadata.finalizers.unwrap_or_default().contains(&"foregroundDeletion".to_owned()));
    let set = &sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(set.len(), 1, "the ReplicaSet waits for the held pod");
    assert!(set[0].metadata.deletion_timestamp.is_some());
    assert!(
        pods.get(&held).await.unwrap().metadata.deletion_timestamp.is_some(),
        "the held pod is being deleted, not replaced"
    );

    set_finalizers(&pods, &held, &[]).await.unwrap();
    eventually("the Deployment is gone", || async { deployments.get_opt("web").await.unwrap().is_none() }).await;
    assert!(sets.list(&ListParams::default()).await.unwrap().items.is_empty());
    assert!(pods.list(&ListParams::default()).await.unwrap().items.is_empty());
    c.cleanup().await;
}

/// Background deletion (the default): the owner goes at once and its dependents after it; an owner held by a
/// finalizer keeps its dependents until it goes.
/// <https://kubernetes.io/docs/concepts/architecture/garbage-collection/#background-deletion>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletion_waits_for_the_owner_to_go() {
    let c = TestCluster::new("del-background").await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let owner = configmaps.create(&PostParams::default(), &config_map("owner", &[KEEP])).await.unwrap();
    let mut dependent = config_map("dependent", &[]);
    dependent.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().unwrap(),
        ..Default::default()
    }]);
    configmaps.create(&PostParams::default(), &dependent).await.unwrap();
    configmaps.delete("owner", &DeleteParams::background()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(configmaps.get_opt("dependent").await.unwrap().is_some(), "the owner is still there");
    set_finalizers(&configmaps, "owner", &[]).await.unwrap();
    eventually("the dependent is collected", || async { configmaps.get_opt("dependent").await.unwrap().is_none() })
        .await;
    c.cleanup().await;
}

/// A deleted namespace is `Terminating`: creates in it are refused (`403`, `NamespaceTerminating`), its content is
/// deleted, its conditions say what remains (a finalizer holding an object), and it is gone once nothing is left.
/// <https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/#deleting-a-namespace>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_terminates_once_its_content_is_gone() {
    let c = TestCluster::new("del-namespace").await.unwrap();
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let name = format!("{}-doomed", c.namespace);
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), &name);
    configmaps.create(&PostParams::default(), &config_map("held", &[KEEP])).await.unwrap();
    configmaps.create(&PostParams::default(), &config_map("plain", &[])).await.unwrap();

    namespaces.delete(&name, &DeleteParams::default()).await.unwrap();
    eventually("the plain ConfigMap is deleted", || async { configmaps.get_opt("plain").await.unwrap().is_none() })
        .await;
    let terminating = namespaces.get(&name).await.unwrap();
    assert_eq!(terminating.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Terminating"));
    let conditions = terminating.status.unwrap().conditions.unwrap_or_default();
    let finalizers =
        conditions.iter().find(|c| c.type_ == "NamespaceFinalizersRemaining").expect("a condition on finalizers");
    assert!(finalizers.message.as_deref().unwrap_or_default().contains(KEEP), "{finalizers:?}");

    let refused = configmaps.create(&PostParams::default(), &config_map("late", &[])).await.unwrap_err();
    let kube::Error::Api(status) = &refused else { panic!("{refused}") };
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert!(status.message.contains("because it is being terminated"), "{}", status.message);
    assert_eq!(status.details.as_ref().unwrap().causes[0].reason, "NamespaceTerminating");

    set_finalizers(&configmaps, "held", &[]).await.unwrap();
    eventually("the namespace is gone", || async { namespaces.get_opt(&name).await.unwrap().is_none() }).await;
    c.cleanup().await;
}

/// A `propagationPolicy` other than the three is refused (`422`, kind `DeleteOptions`) and deletes nothing.
/// <https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/delete-options/>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_propagation_policy_is_invalid() {
    let c = TestCluster::new("del-policy").await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    configmaps.create(&PostParams::default(), &config_map("kept", &[])).await.unwrap();
    let path = format!("/api/v1/namespaces/{}/configmaps/kept?propagationPolicy=Sideways", c.namespace);
    let request = axum::http::Request::delete(path).body(Vec::new()).unwrap();
    let err = c.client.request::<serde_json::Value>(request).await.unwrap_err();
    let kube::Error::Api(status) = &err else { panic!("{err}") };
    assert_eq!(status.code, 422);
    assert!(status.message.contains("propagationPolicy: Unsupported value: \"Sideways\""), "{}", status.message);
    assert!(configmaps.get_opt("kept").await.unwrap().is_some());
    c.cleanup().await;
}
