//! Image builds on the real buildah, with a real registry (Debian's docker-registry) on loopback as the layer cache
//! and the push target, and a busybox base image made locally. Each build has its own buildah storage and
//! `--network none`.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use gantry_build::{BUILT, BuildImage, Buildah, BuiltImage, RegistryAuth};
use gantry_core::{Context, Event, LayerSource, Pipeline, Run, RunReport, RunStatus, Secret, step_fn};
use gantry_testkit::registry::{REGISTRY_PASSWORD, REGISTRY_USER, RegistryServer};

const SECRET: &str = "npm-token-7f3c9a1e52";

struct Fixture {
    registry: RegistryServer,
    base: String,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(auth: bool) -> Self {
        assert!(
            RegistryServer::installed(),
            "buildah, docker-registry and busybox-static are needed: bash .ci/test-all"
        );
        let registry = if auth { RegistryServer::start_with_auth().await } else { RegistryServer::start().await };
        let registry = registry.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let base = registry.push_busybox_base(&dir.path().join("base-storage")).await.unwrap();
        Self { registry, base, dir }
    }

    /// A build context: a slow step, two files, a step that needs the secret, and a late file.
    fn context(&self, name: &str) -> PathBuf {
        let ctx = self.dir.path().join(name);
        std::fs::create_dir_all(&ctx).unwrap();
        let containerfile = format!(
            "FROM {base}\n\
             RUN echo one > /one && sleep 1\n\
             COPY a.txt /a.txt\n\
             RUN --mount=type=secret,id=token test -s /run/secrets/token && wc -c < /run/secrets/token > /token-length\n\
             COPY b.txt /b.txt\n",
            base = self.base
        );
        std::fs::write(ctx.join("Containerfile"), containerfile).unwrap();
        std::fs::write(ctx.join("a.txt"), format!("a of {name}\n")).unwrap();
        std::fs::write(ctx.join("b.txt"), format!("b of {name}\n")).unwrap();
        ctx
    }

    fn storage(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn step(&self, storage: &Path, context: &Path) -> BuildImage {
        let registry = self.registry.address();
        BuildImage::new(buildah(storage), context.display().to_string())
            .tag(format!("{registry}/shop/web:{{{{release}}}}"))
            .cache(format!("{registry}/cache/shop"))
            .insecure_registry(registry)
            .secret("token", Secret::new(SECRET))
            .label("org.opencontainers.image.title", "web")
            .auth(RegistryAuth::new().basic(registry, REGISTRY_USER, Secret::new(REGISTRY_PASSWORD)))
    }
}

fn buildah(storage: &Path) -> Buildah {
    Buildah::new().root(storage.join("root")).runroot(storage.join("run")).network("none")
}

/// Runs `build` as the step `build` and returns the report, the events, and what it built.
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
                    let built = ctx.output("build", BUILT)?;
                    assert_eq!(ctx.require_var("build.image")?, built.image.to_string());
                    *seen.lock().unwrap() = Some((*built).clone());
                    Ok(())
                }
            }),
        )
        .after(["build"])
        .build()
        .unwrap();
    let run = Run::new(&pipeline, Context::new().var("release", release));
    let events = run.subscribe();
    // Spawned, on a multi-thread runtime, as a host runs it.
    let report = tokio::spawn(async move { run.execute().await }).await.unwrap().unwrap();
    let events: Vec<Event> = events.collect().await;
    let built = built.lock().unwrap().clone();
    (report, events, built)
}

fn layers(events: &[Event]) -> Vec<(String, LayerSource)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::BuildStep { instruction, source, .. } => Some((instruction.to_string(), *source)),
            _ => None,
        })
        .collect()
}

fn sources(events: &[Event]) -> Vec<LayerSource> {
    layers(events).into_iter().filter(|(i, _)| !i.starts_with("FROM")).map(|(_, s)| s).collect()
}

/// The manifest of `reference` (`repo:tag` or `repo@digest`) as the registry serves it: its digest header and body.
async fn manifest(registry: &str, repository: &str, reference: &str) -> Option<(String, Vec<u8>)> {
    let url = format!("http://{registry}/v2/{repository}/manifests/{reference}");
    let response = reqwest::Client::new()
        .get(url)
        .basic_auth(REGISTRY_USER, Some(REGISTRY_PASSWORD))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    if response.status() == 404 {
        return None;
    }
    assert!(response.status().is_success(), "{}", response.status());
    let digest = response.headers()["docker-content-digest"].to_str().unwrap().to_owned();
    Some((digest, response.bytes().await.unwrap().to_vec()))
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Every blob the registry stores, decompressed when gzipped: layers, image configs (with the history), manifests.
fn blobs(storage: &Path) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    let mut stack = vec![storage.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "data") {
                let bytes = std::fs::read(&path).unwrap();
                if bytes.starts_with(&[0x1f, 0x8b]) {
                    let mut plain = Vec::new();
                    flate2::read::GzDecoder::new(bytes.as_slice()).read_to_end(&mut plain).unwrap();
                    found.push(plain);
                } else {
                    found.push(bytes);
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs buildah and docker-registry: run bash .ci/test-all"]
async fn layers_come_from_the_local_cache_then_the_registry_cache_and_a_late_change_rebuilds_only_what_follows() {
    let f = Fixture::new(true).await;
    let ctx = f.context("web");
    let first_storage = f.storage("storage-1");

    // A cold build: every step built, the image pushed, and its cache.
    let (report, events, built) = run(f.step(&first_storage, &ctx), "1.0.0").await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(sources(&events), [LayerSource::Built; 5], "{:?}", layers(&events));
    let cold = built.unwrap();
    assert!(cold.rebuilt);
    let digest = cold.digest.clone().unwrap();
    let (served, body) = manifest(f.registry.address(), "shop/web", "1.0.0").await.unwrap();
    assert_eq!(served, digest, "the step's digest is the pushed manifest's");
    assert_eq!(sha256(&body), digest, "and it is the digest of the manifest's bytes");
    assert_eq!(cold.image.to_string(), format!("{}/shop/web@{digest}", f.registry.address()));
    assert!(manifest(f.registry.address(), "shop/web", &digest).await.is_some(), "readable by digest");
    let steps: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::BuildStep { number, of: 6, .. } => Some(*number),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6], "one event per step of the Containerfile (and its label), in order");

    // Unchanged, same storage: every step from the local cache, the same image.
    let (report, events, built) = run(f.step(&first_storage, &ctx), "1.0.1").await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(sources(&events), [LayerSource::Cache; 5], "{:?}", layers(&events));
    let cached = built.unwrap();
    assert_eq!(cached.image_id, cold.image_id, "the same image id");

    // Local storage wiped: every step pulled from the registry cache, the same image.
    let (report, events, built) = run(f.step(&f.storage("storage-2"), &ctx), "1.0.2").await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(sources(&events), [LayerSource::RegistryCache; 5], "{:?}", layers(&events));
    assert_eq!(built.unwrap().image_id, cold.image_id, "the same image id from the registry cache");

    // One late file changed: the steps before it cached, the step that copies it (and the label after it) built.
    std::fs::write(ctx.join("b.txt"), "b, changed\n").unwrap();
    let (report, events, built) = run(f.step(&first_storage, &ctx), "1.0.3").await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(
        sources(&events),
        [LayerSource::Cache, LayerSource::Cache, LayerSource::Cache, LayerSource::Built, LayerSource::Built],
        "{:?}",
        layers(&events)
    );
    let changed = built.unwrap();
    assert_ne!(changed.image_id, cold.image_id);
    assert_ne!(changed.digest, cold.digest);

    // The secret was mounted (`test -s` passed) and is nowhere: not in a layer, an image config's history, a
    // manifest, an event, or the report.
    let stored = blobs(&f.registry.storage());
    assert!(stored.len() > 10, "layers, configs and manifests are stored: {}", stored.len());
    assert!(stored.iter().any(|b| b.windows(b"token-length".len()).any(|w| w == b"token-length")), "the RUN ran");
    for blob in &stored {
        assert!(!blob.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "the secret is in a stored blob");
    }
    let all = format!("{events:?} {}", serde_json::to_string(&events).unwrap());
    assert!(!all.contains(SECRET), "the secret is in an event");
    assert!(!format!("{report:?}").contains(SECRET));
}
