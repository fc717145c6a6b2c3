//! Image builds with buildah and a registry layer cache: a cold build, an unchanged rebuild on the same storage,
//! and a rebuild on wiped storage from the registry cache, of one sample context with a slow step.
//!
//! The context: `FROM` a busybox base in the local registry, a `RUN` that takes `GANTRY_BUILD_BENCH_SLOW` seconds
//! (default 6: a dependency install), two `COPY`s and a `RUN` that mounts a build secret. Each iteration runs the
//! whole `BuildImage` step as a pipeline would (check the registry, build, push the image and the cache, read the
//! manifest back):
//! - cold: fresh storage and a cache repository nobody pushed to;
//! - cached: the storage of an earlier build, nothing changed;
//! - registry cache: fresh storage, the cache repository of an earlier build.
//!
//! The figures are ratios against the cold build of the same run. Run: `cargo bench --bench image_builds` (needs
//! `buildah runc docker-registry busybox-static`; `bash .ci/test-all` installs them). Recorded in
//! docs/PERFORMANCE.md.
#![allow(clippy::print_stdout)] // The bench prints the ratios docs/PERFORMANCE.md records.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use gantry::build::{BuildImage, Buildah};
use gantry::core::{Context, Pipeline, RunStatus, Secret};
use gantry::testkit::registry::RegistryServer;

static N: AtomicU32 = AtomicU32::new(0);

struct Bench {
    rt: tokio::runtime::Runtime,
    registry: RegistryServer,
    dir: tempfile::TempDir,
    context: PathBuf,
}

impl Bench {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let registry = rt.block_on(RegistryServer::start()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let base = rt.block_on(registry.push_busybox_base(&dir.path().join("base"))).unwrap();
        let slow: u32 = std::env::var("GANTRY_BUILD_BENCH_SLOW").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
        let context = dir.path().join("context");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(
            context.join("Containerfile"),
            format!(
                "FROM {base}\nRUN sleep {slow} && echo deps > /deps\nCOPY app.js /app/app.js\n\
                 RUN --mount=type=secret,id=token test -s /run/secrets/token\nCOPY config.json /app/config.json\n"
            ),
        )
        .unwrap();
        std::fs::write(context.join("app.js"), "console.log('shop');\n").unwrap();
        std::fs::write(context.join("config.json"), "{\"port\": 8080}\n").unwrap();
        Self { rt, registry, dir, context }
    }

    fn fresh(&self, what: &str) -> PathBuf {
        self.dir.path().join(format!("{what}-{}", N.fetch_add(1, Ordering::Relaxed)))
    }

    /// One build on `storage` with the cache repository `cache`; its wall time.
    fn build(&self, storage: &Path, cache: &str) -> Duration {
        let registry = self.registry.address();
        let step = BuildImage::new(
            Buildah::new().root(storage.join("root")).runroot(storage.join("run")).network("none"),
            self.context.display().to_string(),
        )
        .tag(format!("{registry}/bench/shop:1"))
        .cache(format!("{registry}/{cache}"))
        .insecure_registry(registry)
        .secret("token", Secret::new("bench-secret"));
        let pipeline = Pipeline::builder("bench").step("build", step).build().unwrap();
        let started = Instant::now();
        let report = self.rt.block_on(pipeline.run(Context::new())).unwrap();
        let took = started.elapsed();
        assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
        // A storage of a few hundred kilobytes per build; removing it is not timed.
        took
    }
}

fn main() {
    if !RegistryServer::installed() {
        println!("image_builds: buildah, docker-registry or busybox-static is not installed; nothing measured");
        return;
    }
    let bench = Bench::new();
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("image_builds");
    group.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
    group.bench_function("cold", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let storage = bench.fresh("cold");
                    let cache = format!("cache/cold-{}", N.fetch_add(1, Ordering::Relaxed));
                    let took = bench.build(&storage, &cache);
                    let _ = std::fs::remove_dir_all(&storage);
                    took
                })
                .sum()
        });
    });
    let warm = bench.fresh("warm");
    bench.build(&warm, "cache/shared");
    group.bench_function("cached", |b| {
        b.iter_custom(|iterations| (0..iterations).map(|_| bench.build(&warm, "cache/shared")).sum());
    });
    group.bench_function("registry_cache", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let storage = bench.fresh("wiped");
                    let took = bench.build(&storage, "cache/shared");
                    let _ = std::fs::remove_dir_all(&storage);
                    took
                })
                .sum()
        });
    });
    group.finish();
    c.final_summary();
    report();
}

/// The ratios against the cold build, from criterion's estimates of this run.
fn report() {
    let mean = |name: &str| -> Option<f64> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/criterion/image_builds")
            .join(name)
            .join("new/estimates.json");
        let text = std::fs::read_to_string(path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["median"]["point_estimate"].as_f64()
    };
    let (Some(cold), Some(cached), Some(registry)) = (mean("cold"), mean("cached"), mean("registry_cache")) else {
        println!("image_builds: criterion's estimates were not found under target/criterion");
        return;
    };
    println!(
        "\nmedians: cold {:.2} s, cached {:.2} s, from the registry cache {:.2} s",
        cold / 1e9,
        cached / 1e9,
        registry / 1e9
    );
    println!("cached rebuild: {:.1}x faster than cold (target: at least 5x)", cold / cached);
    println!(
        "rebuild from the registry cache after a wipe: {:.1}x faster than cold (target: at least 3x)",
        cold / registry
    );
}
