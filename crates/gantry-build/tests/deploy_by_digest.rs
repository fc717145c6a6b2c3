//! What was built is what runs: a build pushes to a real registry, and the rolling deploy after it pins the
//! Deployment to the pushed digest, on the simulated cluster. (Not run against a real cluster with
//! `GANTRY_E2E_KUBECONFIG`: its nodes cannot pull from a registry on this machine's loopback.)

use std::time::Duration;

use gantry_build::{BUILT, BuildImage, Buildah};
use gantry_core::{Context, Pipeline, Run, RunStatus, step_fn};
use gantry_kube::{Cluster, RollingDeploy};
use gantry_testkit::kube::ClusterSim;
use gantry_testkit::registry::RegistryServer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube::runtime::wait::await_condition;
use serde_json::json;

fn image(d: &Deployment) -> String {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs buildah and docker-registry: run bash .ci/test-all"]
async fn a_deploy_by_the_pushed_digest_rolls_out_exactly_what_was_built() {
    assert!(RegistryServer::installed(), "buildah, docker-registry and busybox-static are needed: bash .ci/test-all");
    let registry = RegistryServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = registry.push_busybox_base(&dir.path().join("base")).await.unwrap();
    let ctx = dir.path().join("web");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Containerfile"), format!("FROM {base}\nCOPY index.html /www/index.html\n")).unwrap();
    std::fs::write(ctx.join("index.html"), "<h1>shop 3.1.0</h1>\n").unwrap();

    let sim = ClusterSim::start().await.unwrap();
    let client = sim.client().await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let web: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "app", "image": "shop/web:3.0.0"}]}}
        }
    }))
    .unwrap();
    deploys.create(&PostParams::default(), &web).await.unwrap();

    let address = registry.address().to_owned();
    let pipeline = Pipeline::builder("release")
        .step(
            "build",
            BuildImage::new(
                Buildah::new().root(dir.path().join("s/root")).runroot(dir.path().join("s/run")).network("none"),
                ctx.display().to_string(),
            )
            .tag(format!("{address}/shop/web:{{{{release}}}}"))
            .insecure_registry(&address),
        )
        .step("rollout", RollingDeploy::new(Cluster::new(client.clone(), "default"), "web", "{{build.image}}"))
        .after(["build"])
        .step(
            "check",
            step_fn(|ctx| async move {
                let built = ctx.output("build", BUILT)?;
                ctx.log(format!("deployed {}", built.image));
                Ok(())
            }),
        )
        .after(["rollout"])
        .build()
        .unwrap();
    let run = Run::new(&pipeline, Context::new().var("release", "3.1.0"));
    let report = tokio::time::timeout(Duration::from_secs(120), run.execute()).await.unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");

    let deployed = image(&deploys.get("web").await.unwrap());
    let (name, digest) = deployed.split_once('@').expect("the Deployment names a digest");
    assert_eq!(name, format!("{address}/shop/web"));
    // The digest is the one the registry serves for the tag that was pushed.
    let served = http_client()
        .head(format!("http://{address}/v2/shop/web/manifests/3.1.0"))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(served.headers()["docker-content-digest"].to_str().unwrap(), digest);

    // Rolled out: both replicas ready on the pinned image.
    let ready = |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .is_some_and(|s| s.updated_replicas == Some(2) && s.available_replicas == Some(2))
    };
    tokio::time::timeout(Duration::from_secs(30), await_condition(deploys.clone(), "web", ready))
        .await
        .unwrap()
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pods = pods.list(&ListParams::default().labels("app=web")).await.unwrap();
    let running: Vec<String> = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.spec.as_ref().unwrap().containers[0].image.clone().unwrap())
        .collect();
    assert_eq!(running, [deployed.clone(), deployed]);
}

/// A client for reading the registry back. reqwest is built without a default crypto provider; the workspace uses
/// ring (installed here, not left to the step under test having done it first).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
