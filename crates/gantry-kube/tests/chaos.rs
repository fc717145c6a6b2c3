//! The chaos suite: seeded, reproducible runs of a rolling update, a canary (replica shares and HTTPRoute), a
//! blue/green and an A/B preview on the simulated cluster, with faults injected at random moments (500s, 409s,
//! 401s as from an expired token, added latency, dropped watches) and the runs interrupted at random (step timeouts,
//! cancellation, a dropped run). After every run the cluster must be whole: every replica and all traffic on exactly
//! one version, the new one if and only if the step succeeded, nothing of a canary or preview left behind; a failed
//! step says why, and a restore leaves an Event.
//!
//! `cargo test -p gantry-kube --test chaos` runs 300 seeds. `GANTRY_CHAOS_SEEDS=5000` runs more;
//! `GANTRY_CHAOS_SEED=<n>` runs one seed (to reproduce a failure). The figures are in docs/RELIABILITY.md.

#![allow(clippy::print_stdout)] // The figures of a run are printed for docs/RELIABILITY.md.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gantry_core::strategy::{BlueGreen, Canary, Deploy, Match, Rolling, Strategy};
use gantry_core::{Context, Pipeline, Run, RunStatus};
use gantry_testkit::kube::{Fault, Method, StatusCode};
use gantry_testkit::targets::{BAD, GOOD, Interruption, Platform, STABLE, release, whole_on};
use support::KubePlatform;

/// SplitMix64: a small, seedable, portable generator (the same seed gives the same plan on every machine).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// A fault and when it is injected.
#[derive(Clone, Debug)]
enum Chaos {
    Fault {
        at: Duration,
        code: Option<u16>,
        latency: Duration,
        path: &'static str,
        method: Option<Method>,
        skip: u32,
        times: u32,
    },
    DropWatches {
        at: Duration,
    },
}

/// What one seed does.
#[derive(Debug)]
struct Plan {
    routed: bool,
    strategy: &'static str,
    version: &'static str,
    chaos: Vec<Chaos>,
    interruption: Interruption,
}

fn plan(seed: u64) -> Plan {
    let mut rng = Rng(seed);
    let routed = rng.chance(50);
    let strategies: &[&str] =
        if routed { &["rolling", "canary", "blue/green", "A/B"] } else { &["rolling", "canary", "blue/green"] };
    let strategy = strategies[rng.below(strategies.len() as u64) as usize];
    let version = if rng.chance(25) { BAD } else { GOOD };
    let paths = ["/deployments", "/pods", "/services", "/httproutes", "/replicasets", "/events", ""];
    let chaos = (0..rng.below(5))
        .map(|_| {
            let at = rng.millis(0, 2000);
            if rng.chance(15) {
                return Chaos::DropWatches { at };
            }
            let (code, latency) = match rng.below(4) {
                0 => (Some(500), Duration::ZERO),
                1 => (Some(409), Duration::ZERO),
                2 => (Some(401), Duration::ZERO),
                _ => (None, rng.millis(50, 600)),
            };
            let method = match rng.below(3) {
                0 => Some(Method::GET),
                1 => Some(Method::PATCH),
                _ => None,
            };
            let path = paths[rng.below(paths.len() as u64) as usize];
            Chaos::Fault { at, code, latency, path, method, skip: rng.below(10) as u32, times: 1 + rng.below(3) as u32 }
        })
        .collect();
    let interruption = match rng.below(10) {
        0..=5 => Interruption::None,
        6 | 7 => Interruption::Timeout(rng.millis(300, 4000)),
        8 => Interruption::Cancel(rng.millis(100, 3000)),
        _ => Interruption::Drop(rng.millis(100, 3000)),
    };
    Plan { routed, strategy, version, chaos, interruption }
}

fn strategy(name: &str) -> Arc<dyn Strategy> {
    let unit = Duration::from_millis(300);
    match name {
        "rolling" => Arc::new(Rolling::new()),
        "canary" => Arc::new(Canary::new().set_weight(25).pause(unit).set_weight(50).pause(unit)),
        "blue/green" => Arc::new(BlueGreen::new().auto_promote_after(unit).scale_down_delay(unit)),
        _ => Arc::new(
            BlueGreen::new()
                .preview_route(Match::Header { name: "x-variant".into(), value: "b".into() })
                .auto_promote_after(unit)
                .scale_down_delay(unit),
        ),
    }
}

/// How a seed ended.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    runs: u32,
    faults: u32,
    succeeded: u32,
    failed: u32,
    cancelled: u32,
    dropped: u32,
}

/// Runs one seed; what went wrong, if anything.
async fn run_seed(seed: u64) -> Result<Tally, String> {
    let plan = plan(seed);
    let platform = KubePlatform::new(plan.routed).await.ok_or("needs the simulator")?;
    platform.break_version(BAD);
    let target = platform.target(&release(STABLE)).await;
    let sim = platform.cluster.sim().expect("the simulator");
    let namespace = platform.namespace_of(target.as_ref());

    let pipeline = {
        let step = Deploy::new(Arc::clone(&target), strategy(plan.strategy), "web", plan.version)
            .image(format!("web:{}", plan.version));
        let mut builder = Pipeline::builder("chaos").step("deploy", step);
        if let Interruption::Timeout(after) = plan.interruption {
            builder = builder.timeout(after);
        }
        builder.build().map_err(|e| e.to_string())?
    };
    let run = Run::new(&pipeline, Context::new());
    let cancel = run.cancellation_token();

    // The chaos, at its moments.
    let started = Instant::now();
    let chaos = plan.chaos.clone();
    let mut tally = Tally { runs: 1, faults: chaos.len() as u32, ..Tally::default() };
    let injector = async {
        let mut chaos = chaos;
        let at = |c: &Chaos| match c {
            Chaos::Fault { at, .. } | Chaos::DropWatches { at } => *at,
        };
        chaos.sort_by_key(at);
        for c in chaos {
            tokio::time::sleep_until(tokio::time::Instant::from_std(started + at(&c))).await;
            match c {
                Chaos::DropWatches { .. } => sim.drop_watches(),
                Chaos::Fault { code, latency, path, method, skip, times, .. } => {
                    let mut fault = match code {
                        Some(code) => Fault::status(StatusCode::from_u16(code).unwrap()),
                        None => Fault::latency(latency),
                    };
                    fault = fault.path(path).skip(skip).times(times);
                    if let Some(method) = method {
                        fault = fault.method(method);
                    }
                    sim.inject(fault);
                }
            }
        }
        std::future::pending::<()>().await;
    };
    if let Interruption::Cancel(after) = plan.interruption {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            cancel.cancel();
        });
    }
    let driven = async {
        tokio::select! {
            report = run.execute() => report,
            () = injector => unreachable!("the injector waits forever once done"),
        }
    };
    let bound = Duration::from_secs(120);
    let outcome = match plan.interruption {
        Interruption::Drop(after) => tokio::time::timeout(after, driven).await.ok(),
        _ => Some(
            tokio::time::timeout(bound, driven)
                .await
                .map_err(|_| format!("seed {seed}: the run did not end in {bound:?}"))?,
        ),
    };
    let succeeded = match &outcome {
        None => {
            tally.dropped += 1;
            false
        }
        Some(report) => {
            let report = report.as_ref().map_err(|e| format!("seed {seed}: {e}"))?;
            match report.status {
                RunStatus::Succeeded => tally.succeeded += 1,
                RunStatus::Cancelled => tally.cancelled += 1,
                RunStatus::Failed => tally.failed += 1,
            }
            if report.status != RunStatus::Succeeded {
                let reason = report.step("deploy").and_then(|s| s.reason.clone()).unwrap_or_default();
                if reason.trim().is_empty() {
                    return Err(format!("seed {seed}: the step failed without saying why ({plan:?})"));
                }
            }
            report.status == RunStatus::Succeeded
        }
    };
    if succeeded && plan.version == BAD {
        return Err(format!("seed {seed}: a release that never becomes ready was reported deployed ({plan:?})"));
    }
    let expected = if succeeded { plan.version } else { STABLE };
    // Faults left unused must not hold the check up: the cluster is observed as it is.
    sim.clear_faults();
    whole_on(&platform, target.as_ref(), expected, &format!("seed {seed} ({plan:?})")).await?;
    if !succeeded && touched(&platform, &namespace).await {
        let events: kube::Api<k8s_openapi::api::core::v1::Event> =
            kube::Api::namespaced(platform.cluster.client.clone(), &namespace);
        let mut said = false;
        for _ in 0..100 {
            let items = events.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
            if items.iter().any(|e| e.reason.as_deref() == Some("GantryRolledBack")) {
                said = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !said {
            return Err(format!("seed {seed}: restored without a GantryRolledBack Event ({plan:?})"));
        }
    }
    platform.cluster.cleanup().await;
    Ok(tally)
}

/// Whether the run changed anything in the cluster (a Deployment's generation moved, or a canary or preview was
/// made): then a restore had to happen, and it must have said so.
async fn touched(platform: &KubePlatform, namespace: &str) -> bool {
    let deploys: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(platform.cluster.client.clone(), namespace);
    let stable = deploys.get("web").await.ok();
    stable.and_then(|d| d.metadata.generation).is_some_and(|g| g > 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_interrupted_or_faulted_deploy_ends_whole_on_one_version() {
    let seeds: Vec<u64> = match std::env::var("GANTRY_CHAOS_SEED") {
        Ok(one) => vec![one.parse().expect("GANTRY_CHAOS_SEED is a number")],
        Err(_) => {
            let n = std::env::var("GANTRY_CHAOS_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(300);
            (0..n).collect()
        }
    };
    let concurrency = std::env::var("GANTRY_CHAOS_CONCURRENCY").ok().and_then(|n| n.parse().ok()).unwrap_or(8);
    let started = Instant::now();
    let results: Vec<(u64, Result<Tally, String>)> = futures::stream::iter(seeds.clone())
        .map(|seed| async move { (seed, run_seed(seed).await) })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut total = Tally::default();
    let mut failures = Vec::new();
    for (seed, result) in results {
        match result {
            Ok(t) => {
                total.runs += t.runs;
                total.faults += t.faults;
                total.succeeded += t.succeeded;
                total.failed += t.failed;
                total.cancelled += t.cancelled;
                total.dropped += t.dropped;
            }
            Err(e) => failures.push((seed, e)),
        }
    }
    failures.sort_by_key(|(seed, _)| *seed);
    println!(
        "chaos: {} seeds in {:?}: {} runs ended whole, {} faults scheduled; succeeded {}, failed {}, cancelled {}, \
         dropped {}; {} seeds failed",
        seeds.len(),
        started.elapsed(),
        total.runs,
        total.faults,
        total.succeeded,
        total.failed,
        total.cancelled,
        total.dropped,
        failures.len()
    );
    let shown: Vec<String> = failures.iter().take(10).map(|(seed, e)| format!("seed {seed}: {e}")).collect();
    assert!(failures.is_empty(), "{} of {} seeds failed:\n{}", failures.len(), seeds.len(), shown.join("\n"));
}
