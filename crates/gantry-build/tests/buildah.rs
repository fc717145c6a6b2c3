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
            .auth(RegistryAuth::docker_config(self.docker_config()))
    }

    /// A docker `config.json` with the registry's credentials, as `docker login` writes it.
    fn docker_config(&self) -> PathBuf {
        use base64::Engine as _;
        let path = self.dir.path().join("docker-config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"));
        let config = serde_json::json!({"auths": {self.registry.address(): {"auth": auth}}});
        std::fs::write(&path, config.to_string()).unwrap();
        path
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
            Event::BuildStep { layer, .. } => Some((layer.instruction.to_string(), layer.source)),
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
    let response = http_client()
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
            Event::BuildStep { layer, .. } if layer.of == 6 => Some(layer.number),
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

/// The run's failure, as the report gives it.
fn failure(report: &RunReport) -> String {
    assert_eq!(report.status, RunStatus::Failed, "{report:#?}");
    report.step("build").and_then(|s| s.reason.as_deref()).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs buildah and docker-registry: run bash .ci/test-all"]
async fn bad_input_fails_with_its_cause_named_and_nothing_pushed() {
    let f = Fixture::new(true).await;
    let storage = f.storage("storage");
    let registry = f.registry.address().to_owned();
    let nothing_pushed = || async { manifest(&registry, "shop/web", "bad").await.is_none() };

    // No Containerfile (nor Dockerfile) in the context.
    let empty = f.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (report, _, _) = run(f.step(&storage, &empty), "bad").await;
    let why = failure(&report);
    assert!(
        why.contains("no Containerfile at") && why.contains("empty/Containerfile") && why.contains("nor a Dockerfile"),
        "{why}"
    );
    // A context that is not there.
    let (report, _, _) = run(f.step(&storage, &f.dir.path().join("nowhere")), "bad").await;
    assert!(failure(&report).contains("nowhere` is not a directory"), "{}", failure(&report));

    // A syntax error.
    let ctx = f.context("syntax");
    std::fs::write(ctx.join("Containerfile"), format!("FROM {}\nRUNN echo hi\n", f.base)).unwrap();
    let (report, _, _) = run(f.step(&storage, &ctx), "bad").await;
    let why = failure(&report);
    assert!(why.contains("is invalid") && why.contains("Unknown instruction") && why.contains("RUNN"), "{why}");
    assert!(why.contains("syntax/Containerfile"), "the file is named: {why}");

    // A failing RUN: the step's own output, and its exit status.
    let ctx = f.context("failing");
    std::fs::write(
        ctx.join("Containerfile"),
        format!("FROM {}\nRUN echo preparing\nRUN echo cannot reach the database >&2; exit 3\n", f.base),
    )
    .unwrap();
    let (report, events, _) = run(f.step(&storage, &ctx), "bad").await;
    let why = failure(&report);
    assert!(why.contains("build step `RUN echo cannot reach the database >&2; exit 3` failed: exit status 3"), "{why}");
    assert!(why.contains("cannot reach the database"), "what the step printed: {why}");
    assert!(!why.contains("preparing"), "only the failed step's lines: {why}");
    assert_eq!(sources(&events), [LayerSource::Built], "the step before it was reported, the failed one not");
    assert!(nothing_pushed().await);

    // Credentials refused, and none given.
    let ctx = f.context("refused");
    let wrong = RegistryAuth::new().basic(&registry, REGISTRY_USER, Secret::new("not-the-password"));
    let (report, events, _) = run(f.step(&storage, &ctx).auth(wrong), "bad").await;
    let why = failure(&report);
    assert_eq!(why, format!("the registry {registry} refused the credentials"));
    assert!(layers(&events).is_empty(), "refused before building");
    assert!(!format!("{report:?}{events:?}").contains("not-the-password"));
    let (report, _, _) = run(f.step(&storage, &ctx).auth(RegistryAuth::new()), "bad").await;
    assert_eq!(failure(&report), format!("the registry {registry} refused the credentials (none were given)"));
    assert!(nothing_pushed().await);

    // The registry down: a port nothing listens on. Said before building; retryable.
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let step = BuildImage::new(buildah(&storage), ctx.display().to_string())
        .tag(format!("{down}/shop/web:1"))
        .insecure_registry(&down);
    let started = std::time::Instant::now();
    let (report, events, _) = run(step, "bad").await;
    let why = failure(&report);
    assert!(
        why.starts_with(&format!("the registry {down} cannot be reached")) && why.contains("onnection refused"),
        "{why}"
    );
    assert!(layers(&events).is_empty(), "said before building");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));

    // The builder missing.
    let step = BuildImage::new(Buildah::new().binary("/nonexistent/buildah"), ctx.display().to_string())
        .tag(format!("{registry}/shop/web:bad"))
        .insecure_registry(&registry)
        .auth(RegistryAuth::new().basic(&registry, REGISTRY_USER, Secret::new(REGISTRY_PASSWORD)));
    let (report, _, _) = run(step, "bad").await;
    assert_eq!(
        failure(&report),
        "the builder `/nonexistent/buildah` is not installed (Debian: apt-get install buildah runc; `bash .ci/test-all` installs them)"
    );
    assert!(nothing_pushed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs buildah and docker-registry: run bash .ci/test-all"]
async fn a_fan_out_over_services_shares_the_cache_and_rebuilds_only_the_service_that_changed() {
    let f = Fixture::new(false).await;
    let registry = f.registry.address().to_owned();
    let root = f.dir.path().join("services");
    for service in ["api", "web"] {
        let ctx = f.context(&format!("services/{service}"));
        assert!(ctx.starts_with(&root));
    }
    let storage = f.storage("shared-storage");
    let pipeline = |storage: PathBuf| {
        let registry = registry.clone();
        let root = root.clone();
        Pipeline::builder("release")
            .fan_out("services", "service", ["api", "web"], move |_| {
                Pipeline::builder("service").step(
                    "build",
                    BuildImage::new(buildah(&storage), format!("{}/{{{{service}}}}", root.display()))
                        .tag(format!("{registry}/shop/{{{{service}}}}:{{{{release}}}}"))
                        .cache(format!("{registry}/cache/shop"))
                        .insecure_registry(&registry)
                        .secret("token", Secret::new(SECRET))
                        .skip_unchanged(),
                )
            })
            .build()
            .unwrap()
    };
    let go = |release: &'static str, storage: PathBuf| {
        let pipeline = pipeline(storage);
        async move {
            let run = Run::new(&pipeline, Context::new().var("release", release));
            let events = run.subscribe();
            let report = run.execute().await.unwrap();
            assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
            let events: Vec<Event> = events.collect().await;
            let built: Vec<String> = events
                .iter()
                .filter_map(|e| match e {
                    Event::BuildStep { layer, .. } if layer.number == 1 => Some(layer.image.to_string()),
                    _ => None,
                })
                .collect();
            let unchanged: Vec<String> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Log { step, line, .. } if line.contains("the context is unchanged") => {
                        Some(step.to_string())
                    }
                    _ => None,
                })
                .collect();
            (built, unchanged, events)
        }
    };
    let (mut built, unchanged, _) = go("1", storage.clone()).await;
    built.sort();
    assert_eq!(built, [format!("{registry}/shop/api:1"), format!("{registry}/shop/web:1")], "both built at first");
    assert!(unchanged.is_empty());

    std::fs::write(root.join("web/b.txt"), "web changed\n").unwrap();
    // Another machine: fresh storage, so only the registry knows what was built.
    let (built, unchanged, events) = go("2", f.storage("other-storage")).await;
    assert_eq!(built, [format!("{registry}/shop/web:2")], "only web builds");
    assert_eq!(unchanged.len(), 1, "api is tagged again: {unchanged:?}");
    assert!(unchanged[0].contains("build"), "{unchanged:?}");
    // web's first step, which both services share, came from the shared registry cache. (Its later unchanged
    // steps may not: api and web built that first step at the same time in the first run, each pushing its own
    // layer under the same cache key, and the later steps of the one whose push lost are keyed on a layer the cache
    // no longer names. The guide says so.)
    let web: Vec<LayerSource> = events
        .iter()
        .filter_map(|e| match e {
            Event::BuildStep { layer, .. } if !layer.instruction.starts_with("FROM") => Some(layer.source),
            _ => None,
        })
        .collect();
    assert_eq!(web[0], LayerSource::RegistryCache, "{web:?}");
    assert_eq!(web.last(), Some(&LayerSource::Built), "{web:?}");

    // api:2 is api:1, by digest; web:2 is not web:1.
    let digest = |repo: &'static str, tag: &'static str| {
        let registry = registry.clone();
        async move { manifest(&registry, repo, tag).await.unwrap().0 }
    };
    assert_eq!(digest("shop/api", "2").await, digest("shop/api", "1").await);
    assert_ne!(digest("shop/web", "2").await, digest("shop/web", "1").await);
}

/// The buildah processes working on `storage`, and the slow `RUN` step's own (`sleep 120`, in its container).
fn builders_on(storage: &Path) -> Vec<String> {
    let needle = storage.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let zombie = std::fs::read_to_string(entry.path().join("status")).is_ok_and(|s| s.contains("State:\tZ"));
        if !zombie && let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) || cmdline.contains("sleep 120") {
                found.push(cmdline);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs buildah and docker-registry: run bash .ci/test-all"]
async fn a_build_past_its_timeout_or_cancelled_stops_its_builder_and_pushes_nothing() {
    let f = Fixture::new(false).await;
    let registry = f.registry.address().to_owned();
    let ctx = f.dir.path().join("slow");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Containerfile"), format!("FROM {}\nRUN echo started && sleep 120\n", f.base)).unwrap();
    let storage = f.storage("slow-storage");
    let step = || {
        BuildImage::new(buildah(&storage), ctx.display().to_string())
            .tag(format!("{registry}/shop/slow:1"))
            .insecure_registry(&registry)
    };

    // A timeout drops the step: its builder goes with it.
    let pipeline =
        Pipeline::builder("ci").step("build", step()).timeout(std::time::Duration::from_secs(4)).build().unwrap();
    let started = std::time::Instant::now();
    let report = pipeline.run(Context::new()).await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
    gantry_testkit::test_cluster::eventually("the builder is gone after the timeout", || {
        let left = builders_on(&storage);
        async move { left.is_empty() }
    })
    .await;

    // A cancelled run: SIGTERM to the builder, which stops.
    let pipeline = Pipeline::builder("ci").step("build", step()).build().unwrap();
    let run = Run::new(&pipeline, Context::new());
    let cancel = run.cancellation_token();
    let mut events = run.subscribe();
    let handle = tokio::spawn(async move { run.execute().await });
    while let Some(event) = events.next().await {
        if matches!(&event, Event::Log { line, .. } if line.contains("started")) {
            break;
        }
    }
    cancel.cancel();
    let report = tokio::time::timeout(std::time::Duration::from_secs(30), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Cancelled, "{report:#?}");
    gantry_testkit::test_cluster::eventually("the builder is gone after the cancellation", || {
        let left = builders_on(&storage);
        async move { left.is_empty() }
    })
    .await;
    assert!(manifest(&registry, "shop/slow", "1").await.is_none(), "nothing pushed");
}

/// A client for reading the registry back. reqwest is built without a default crypto provider; the workspace uses
/// ring (installed here, not left to the step under test having done it first).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
