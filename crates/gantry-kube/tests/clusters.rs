//! Connections: `Cluster::from_context` reads the kubeconfig `KUBECONFIG` names and picks a context (tested in a
//! child process, which has the environment of its own), `Cluster::in_cluster` says clearly when it is not in a pod,
//! and the `Clusters` registry finds clusters by name and names the ones it knows when asked for another.

#![allow(clippy::print_stdout)] // The child prints what it connected to, for the parent to read.

use gantry_kube::{Cluster, Clusters};
use gantry_testkit::kube::ClusterSim;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;

/// A kubeconfig with two contexts on one simulated cluster, each with its own namespace.
fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {url}\ncontexts:\n\
         - name: staging\n  context:\n    cluster: sim\n    user: deployer\n    namespace: staging\n\
         - name: production\n  context:\n    cluster: sim\n    user: deployer\n    namespace: production\n\
         current-context: staging\nusers:\n- name: deployer\n  user:\n    token: testkit\n"
    )
}

/// Run by `a_named_context_of_the_kubeconfig_is_used_with_its_namespace` in a child process with `KUBECONFIG` set;
/// on its own (no `GANTRY_TEST_CONTEXT`) it does nothing.
#[tokio::test]
#[ignore = "run by its parent test"]
async fn child_connects_through_a_context() {
    let Ok(context) = std::env::var("GANTRY_TEST_CONTEXT") else { return };
    match Cluster::from_context(&context).await {
        Ok(cluster) => {
            let maps: Api<ConfigMap> = Api::default_namespaced(cluster.client().clone());
            let names: Vec<String> = maps
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter_map(|m| m.metadata.name)
                .collect();
            println!("\nCONNECTED namespace={} configmaps={}", cluster.namespace(), names.join(","));
        }
        Err(e) => println!("\nREFUSED {e}"),
    }
}

fn child(kubeconfig: &std::path::Path, context: &str) -> String {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_connects_through_a_context", "--include-ignored", "--nocapture", "--test-threads=1"])
        .env("KUBECONFIG", kubeconfig)
        .env("GANTRY_TEST_CONTEXT", context)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout.lines().find(|l| l.starts_with("CONNECTED") || l.starts_with("REFUSED")).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_context_of_the_kubeconfig_is_used_with_its_namespace() {
    let sim = ClusterSim::start().await.unwrap();
    let client = sim.client().await.unwrap();
    for ns in ["staging", "production"] {
        let namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
        Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        let map = serde_json::from_value(serde_json::json!({"metadata": {"name": format!("only-in-{ns}")}})).unwrap();
        Api::<ConfigMap>::namespaced(client.clone(), ns).create(&PostParams::default(), &map).await.unwrap();
    }
    let dir = std::env::temp_dir().join(format!("gantry-clusters-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config");
    std::fs::write(&path, kubeconfig(&sim.url())).unwrap();

    // Not the current context (staging): the one asked for, with its namespace as the default.
    let production = child(&path, "production");
    assert_eq!(production, "CONNECTED namespace=production configmaps=only-in-production");
    assert_eq!(child(&path, "staging"), "CONNECTED namespace=staging configmaps=only-in-staging");
    let missing = child(&path, "prod");
    assert!(missing.starts_with("REFUSED") && missing.contains("kubeconfig context `prod`"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn outside_a_pod_in_cluster_says_so() {
    // Tests do not run in a pod: no service account is mounted, KUBERNETES_SERVICE_HOST is not set.
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return;
    }
    let error = Cluster::in_cluster().unwrap_err().to_string();
    assert!(error.contains("in-cluster configuration"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_finds_clusters_by_name_and_names_the_known_ones() {
    let sim = ClusterSim::start().await.unwrap();
    let client = sim.client().await.unwrap();
    let clusters = Clusters::new()
        .with("staging", Cluster::new(client.clone(), "staging"))
        .with("production", Cluster::new(client, "production"));
    assert_eq!(clusters.get("production").unwrap().namespace(), "production");
    assert_eq!(clusters.get("staging").unwrap().namespace(), "staging");
    let error = clusters.get("prod").unwrap_err().to_string();
    assert!(error.contains("no cluster named `prod` (known: production, staging)"), "{error}");
    // What it gives is a working connection.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> =
        Api::all(clusters.get("staging").unwrap().client().clone());
    assert!(namespaces.list(&Default::default()).await.unwrap().items.len() >= 3);
}
