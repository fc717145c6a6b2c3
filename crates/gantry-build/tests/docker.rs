//! Image builds through the Docker Engine API on a real `dockerd` of the test's own (Debian's docker.io, 20.10),
//! with BuildKit and with the classic builder, and a real registry on loopback as the cache and the push target.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use gantry_build::{BUILT, BuildImage, BuiltImage, DockerEngine};
use gantry_core::{Context, Event, LayerSource, Pipeline, Run, RunReport, RunStatus, Secret, step_fn};
use gantry_testkit::docker::DockerDaemon;
use gantry_testkit::registry::RegistryServer;

fn context(dir: &Path, base: &str) -> PathBuf {
    let ctx = dir.join("web");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nRUN echo deps > /deps && sleep 1\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n"),
    )
    .unwrap();
    std::fs::write(ctx.join("a.txt"), "a\n").unwrap();
    std::fs::write(ctx.join("b.txt"), "b\n").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "*.log\n").unwrap();
    std::fs::write(ctx.join("debug.log"), "not sent\n").unwrap();
    ctx
}

async fn run(build: BuildImage, release: &str) -> (RunReport, Vec<Event>, Option<BuiltImage>) {
    let built = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&built);
    let pipeline = Pipeline::builder("ci")
        .step("build", build)
        .step(
            "record",
            step_fn(move |ctx| {
                let seen = Arc::clone(&seen);
                async move {
                    *seen.lock().unwrap() = Some((*ctx.output("build", BUILT)?).clone());
                    Ok(())
                }
            }),
        )
        .after(["build"])
        .build()
        .unwrap();
    let run = Run::new(&pipeline, Context::new().var("release", release));
    let events = run.subscribe();
    let report = tokio::spawn(async move { run.execute().await }).await.unwrap().unwrap();
    let events: Vec<Event> = events.collect().await;
    let built = built.lock().unwrap().clone();
    (report, events, built)
}

fn sources(events: &[Event]) -> Vec<LayerSource> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::BuildStep { layer, .. } if !layer.instruction.starts_with("FROM") => Some(layer.source),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dockerd (docker.io), buildah and docker-registry: run bash .ci/test-all"]
async fn buildkit_builds_from_its_cache_then_from_the_inline_registry_cache_and_pushes_by_digest() {
    round_trip(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dockerd (docker.io), buildah and docker-registry: run bash .ci/test-all"]
async fn the_classic_builder_builds_from_its_cache_then_from_the_registry_cache_and_pushes_by_digest() {
    round_trip(true).await;
}

async fn round_trip(classic: bool) {
    assert!(RegistryServer::installed() && DockerDaemon::installed(), "bash .ci/test-all installs what this needs");
    let registry = RegistryServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = registry.push_busybox_base(&dir.path().join("base")).await.unwrap();
    let daemon = DockerDaemon::start().await.unwrap();
    let ctx = context(dir.path(), &base);
    let address = registry.address().to_owned();
    let step = || {
        let engine = DockerEngine::new(daemon.socket()).network("none");
        let engine = if classic { engine.classic() } else { engine };
        BuildImage::new(engine, ctx.display().to_string())
            .tag(format!("{address}/shop/web:{{{{release}}}}"))
            .cache(format!("{address}/cache/web"))
            .insecure_registry(&address)
    };

    let (report, events, built) = run(step(), "1").await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(sources(&events), [LayerSource::Built; 3]);
    let cold = built.unwrap();
    // The pushed manifest, read back by the step, is what the registry serves for the tag.
    let served = http_client()
        .head(format!("http://{address}/v2/shop/web/manifests/1"))
        .header("Accept", "application/vnd.docker.distribution.manifest.v2+json")
        .send()
        .await
        .unwrap();
    assert_eq!(served.headers()["docker-content-digest"].to_str().unwrap(), cold.digest.as_deref().unwrap());
    assert_eq!(cold.image.digest(), cold.digest.as_deref());

    let (report, events, built) = run(step(), "2").await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(sources(&events), [LayerSource::Cache; 3]);
    assert_eq!(built.unwrap().image_id, cold.image_id);

    daemon.wipe().unwrap();
    assert_eq!(daemon.cli(&["images", "-aq"]).unwrap().trim(), "", "nothing left in the daemon");
    let (report, events, built) = run(step(), "3").await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(sources(&events), [LayerSource::RegistryCache; 3], "from the cache image pulled from the registry");
    assert_eq!(built.unwrap().image_id, cold.image_id, "the same image");

    std::fs::write(ctx.join("b.txt"), "b, changed\n").unwrap();
    let (report, events, _) = run(step(), "4").await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(sources(&events), [LayerSource::Cache, LayerSource::Cache, LayerSource::Built]);

    // The classic builder cannot mount build secrets: refused, by name, before anything is built.
    let (report, events, _) = run(step().secret("token", Secret::new("s3cret-token")), "5").await;
    let why = report.step("build").and_then(|s| s.reason.as_deref()).unwrap_or_default().to_owned();
    assert!(why.contains("docker cannot do build secrets") && why.contains("BuildKit client session"), "{why}");
    assert!(sources(&events).is_empty());

    // A failing RUN names the step and its exit code.
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {base}\nRUN echo no database >&2; exit 4\n")).unwrap();
    let (report, _, _) = run(step(), "6").await;
    let why = report.step("build").and_then(|s| s.reason.as_deref()).unwrap_or_default().to_owned();
    assert!(why.contains("build step `RUN echo no database >&2; exit 4` failed: exit code 4"), "{why}");
    assert!(why.contains("no database"), "{why}");
}

/// A client for reading the registry back. reqwest is built without a default crypto provider; the workspace uses
/// ring (installed here, not left to the step under test having done it first).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
