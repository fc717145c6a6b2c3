//! A conformance suite for deploy [`Target`]s, in the style of object_store's integration suite: public async
//! checks that any target must pass, each on a fresh target of the platform under test. `gantry-core` runs it
//! against `MemoryTarget` ([`MemoryPlatform`]); `gantry-kube` against `KubeTarget` on the simulated cluster, with
//! traffic by replica shares and through an HTTPRoute.
//!
//! What it checks is the deploy contract of [`Target`]: operations are convergent (applying one twice is applying it
//! once), a failed deploy stays until restored, [`Target::restore`] brings the platform back from every
//! intermediate state, and strategies driven through a pipeline end **whole** — every replica and all traffic on
//! exactly one version, the new one if and only if the step succeeded, nothing left behind — whether they finish,
//! fail, time out, are cancelled or are dropped, at any phase — and one that did not succeed says why (the step's
//! reason, a cancelled status, or a note on the platform after a drop: [`Platform::restore_notes`]).
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! use gantry_testkit::targets::{MemoryPlatform, conformance};
//! conformance(&MemoryPlatform::new()).await.unwrap();
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_core::async_trait;
use gantry_core::strategy::{
    BlueGreen, Canary, Capabilities, Deploy, Match, MemoryTarget, Promotion, Release, Rolling, Slot, Strategy, Target,
    Traffic,
};
use gantry_core::{Context, Pipeline, Run, RunStatus, StepStatus};

/// The service every check deploys.
pub const SERVICE: &str = "web";
/// The version every fresh target runs.
pub const STABLE: &str = "1";
/// A version that becomes ready.
pub const GOOD: &str = "2";
/// A version that never becomes ready (see [`Platform::break_version`]).
pub const BAD: &str = "9";

/// A release of [`SERVICE`] at `version`, with the image `web:<version>`.
pub fn release(version: &str) -> Release {
    Release::new(SERVICE, version).image(format!("{SERVICE}:{version}"))
}

/// What the platform shows: what serves users and what a deploy left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Observed {
    /// The version the stable slot runs, if all its replicas are ready at its full size.
    pub stable: Option<String>,
    /// Versions that receive user traffic, with their share in percent.
    pub serving: BTreeMap<String, u8>,
    /// What is left of a deploy: canary or preview objects, pinned selectors, route weights or rules, annotations.
    pub leftovers: Vec<String>,
}

impl Observed {
    /// Whether every replica and all traffic are on `version`, with nothing left behind.
    pub fn is_whole_on(&self, version: &str) -> bool {
        self.stable.as_deref() == Some(version)
            && self.serving.len() == 1
            && self.serving.get(version) == Some(&100)
            && self.leftovers.is_empty()
    }
}

/// The platform under test.
#[async_trait]
pub trait Platform: Send + Sync {
    /// A fresh target whose stable slot runs `stable` ([`STABLE`]), ready, with all traffic.
    async fn target(&self, stable: &Release) -> Arc<dyn Target>;

    /// What the platform shows now for `target`.
    async fn observe(&self, target: &dyn Target) -> Observed;

    /// Makes releases of `version` never become ready (a crash loop) on targets made from now on.
    fn break_version(&self, version: &str);

    /// About how long one operation takes: the suite interrupts operations at fractions and multiples of it.
    fn operation_time(&self) -> Duration;

    /// How long the platform may take to settle after an operation returned (garbage collection of deleted
    /// objects' pods, say): observations are repeated this long before a check fails.
    fn settle_time(&self) -> Duration {
        Duration::from_secs(10)
    }

    /// What the platform recorded of `target`'s restores and why each happened, as a person looking at the platform
    /// would read it (a Kubernetes Event's message, say), oldest first.
    async fn restore_notes(&self, target: &dyn Target) -> Vec<String>;
}

/// Runs every check. Returns the first failure, naming the check, the phase and what the platform showed.
pub async fn conformance(platform: &dyn Platform) -> Result<(), String> {
    failed_deploy_stays_until_restored(platform).await?;
    promote(platform).await?;
    idempotent(platform).await?;
    restore_from_every_state(platform).await?;
    interrupted_operations(platform).await?;
    strategies_end_whole(platform).await?;
    Ok(())
}

/// Observes until `target` is whole on `version` or the platform's settle time passes.
pub async fn whole_on(platform: &dyn Platform, target: &dyn Target, version: &str, what: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + platform.settle_time();
    loop {
        let seen = platform.observe(target).await;
        if seen.is_whole_on(version) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{what}: expected everything on version {version}, the platform shows {seen:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn check<T, E: fmt::Display>(what: &str, result: Result<T, E>) -> Result<T, String> {
    result.map_err(|e| format!("{what}: {e}"))
}

/// A phase a deploy may reach: one operation.
#[derive(Clone, Debug)]
enum Op {
    Deploy(Slot, &'static str),
    Traffic(Traffic),
    Promote(Slot),
    ScaleDown(Slot),
}

impl Op {
    async fn apply(&self, target: &dyn Target) -> Result<(), String> {
        let result = match self {
            Op::Deploy(slot, version) => target.deploy(*slot, &release(version)).await,
            Op::Traffic(traffic) => target.set_traffic(traffic).await,
            Op::Promote(slot) => target.promote(*slot).await,
            Op::ScaleDown(slot) => target.scale_down(*slot).await,
        };
        result.map_err(|e| format!("{self:?}: {e}"))
    }
}

/// The paths a deploy takes through the operations, for the target's capabilities.
fn paths(capabilities: Capabilities) -> Vec<(&'static str, Vec<Op>)> {
    let mut paths = vec![
        ("rolling", vec![Op::Deploy(Slot::Stable, GOOD)]),
        ("rolling, never ready", vec![Op::Deploy(Slot::Stable, BAD)]),
        (
            "blue/green",
            vec![Op::Deploy(Slot::Preview, GOOD), Op::Traffic(Traffic::weighted(100)), Op::Promote(Slot::Preview)],
        ),
        ("canary, never ready", vec![Op::Deploy(Slot::Canary, BAD)]),
        (
            "canary aborted by hand",
            vec![Op::Deploy(Slot::Canary, GOOD), Op::Traffic(Traffic::stable()), Op::ScaleDown(Slot::Canary)],
        ),
    ];
    if capabilities.weights {
        paths.push((
            "canary",
            vec![
                Op::Deploy(Slot::Canary, GOOD),
                Op::Traffic(Traffic::weighted(25)),
                Op::Traffic(Traffic::weighted(50)),
                Op::Promote(Slot::Canary),
            ],
        ));
    }
    if capabilities.header_routes {
        let rule = Match::Header { name: "x-variant".into(), value: "b".into() };
        paths.push((
            "A/B by header",
            vec![Op::Deploy(Slot::Preview, GOOD), Op::Traffic(Traffic::matching(rule)), Op::Promote(Slot::Preview)],
        ));
    }
    paths
}

/// A release that never becomes ready fails its deploy with `NotReady`, in the stable slot and beside it, and the
/// target shows it is not whole; a restore brings the stable release back.
pub async fn failed_deploy_stays_until_restored(platform: &dyn Platform) -> Result<(), String> {
    platform.break_version(BAD);
    for slot in [Slot::Stable, Slot::Canary] {
        let target = platform.target(&release(STABLE)).await;
        match target.deploy(slot, &release(BAD)).await {
            Err(gantry_core::strategy::TargetError::NotReady { .. }) => {}
            other => return Err(format!("a never-ready release in the {slot} slot gave {other:?}, not NotReady")),
        }
        let seen = platform.observe(target.as_ref()).await;
        if seen.is_whole_on(STABLE) {
            return Err(format!("after a failed deploy into {slot}, the target shows no trace of it: {seen:?}"));
        }
        check("restore", target.restore(&release(STABLE), "conformance: failed deploy").await)?;
        whole_on(platform, target.as_ref(), STABLE, &format!("restored after a failed deploy into {slot}")).await?;
    }
    Ok(())
}

/// Each path that ends in a promotion (or a rolling update) leaves everything on the new version; one that ends by
/// moving traffic back and emptying the canary by hand leaves everything on the stable one.
pub async fn promote(platform: &dyn Platform) -> Result<(), String> {
    let target = platform.target(&release(STABLE)).await;
    for (name, ops) in paths(target.capabilities()) {
        if name.contains("never ready") {
            continue;
        }
        let expected = match ops.last() {
            Some(Op::Promote(_) | Op::Deploy(Slot::Stable, _)) => GOOD,
            _ => STABLE,
        };
        let target = platform.target(&release(STABLE)).await;
        for op in &ops {
            op.apply(target.as_ref()).await.map_err(|e| format!("{name}: {e}"))?;
        }
        whole_on(platform, target.as_ref(), expected, &format!("{name}, every operation done")).await?;
        match target.current().await {
            Ok(Some(current)) if current.version == expected => {}
            other => return Err(format!("{name}, every operation done: current() gave {other:?}")),
        }
    }
    Ok(())
}

/// Applying each operation twice gives what applying it once gives.
pub async fn idempotent(platform: &dyn Platform) -> Result<(), String> {
    let capabilities = platform.target(&release(STABLE)).await.capabilities();
    for (name, ops) in paths(capabilities) {
        if name.contains("never ready") {
            continue;
        }
        let once = platform.target(&release(STABLE)).await;
        let twice = platform.target(&release(STABLE)).await;
        for op in &ops {
            op.apply(once.as_ref()).await.map_err(|e| format!("{name} once: {e}"))?;
            op.apply(twice.as_ref()).await.map_err(|e| format!("{name} twice (first): {e}"))?;
            // A promotion empties its slot: promoting again has nothing to promote, by design.
            if !matches!(op, Op::Promote(_)) {
                op.apply(twice.as_ref()).await.map_err(|e| format!("{name} twice (again): {e}"))?;
            }
            let (a, b) = (platform.observe(once.as_ref()).await, platform.observe(twice.as_ref()).await);
            if a != b {
                return Err(format!("{name}: {op:?} once shows {a:?}, twice shows {b:?}"));
            }
        }
    }
    Ok(())
}

/// From the state after each prefix of each path, [`Target::restore`] brings everything back to the stable
/// release; restoring again changes nothing.
pub async fn restore_from_every_state(platform: &dyn Platform) -> Result<(), String> {
    platform.break_version(BAD);
    let capabilities = platform.target(&release(STABLE)).await.capabilities();
    for (name, ops) in paths(capabilities) {
        for reached in 0..=ops.len() {
            let target = platform.target(&release(STABLE)).await;
            for op in &ops[..reached] {
                // A never-ready release fails its deploy; the state it leaves is what is restored from.
                let _ = op.apply(target.as_ref()).await;
            }
            let what = format!("{name}, restored after {reached} of {} operations", ops.len());
            check(&what, target.restore(&release(STABLE), "conformance: restore").await)?;
            whole_on(platform, target.as_ref(), STABLE, &what).await?;
            check(&what, target.restore(&release(STABLE), "conformance: restore again").await)?;
            whole_on(platform, target.as_ref(), STABLE, &format!("{what}, twice")).await?;
        }
    }
    Ok(())
}

/// Each operation of each path, dropped at several moments while under way (a timeout around it), leaves a state
/// that [`Target::restore`] brings back to the stable release.
pub async fn interrupted_operations(platform: &dyn Platform) -> Result<(), String> {
    platform.break_version(BAD);
    let capabilities = platform.target(&release(STABLE)).await.capabilities();
    let unit = platform.operation_time();
    for (name, ops) in paths(capabilities) {
        for (i, op) in ops.iter().enumerate() {
            // At once (one poll: the first request may be under way), and three quarters through.
            for fraction in [0, 3] {
                let after = unit * fraction / 4;
                let target = platform.target(&release(STABLE)).await;
                for done in &ops[..i] {
                    let _ = done.apply(target.as_ref()).await;
                }
                let _ = tokio::time::timeout(after, op.apply(target.as_ref())).await;
                let what = format!("{name}: {op:?} dropped after {after:?}");
                check(&what, target.restore(&release(STABLE), "conformance: interrupted").await)?;
                whole_on(platform, target.as_ref(), STABLE, &what).await?;
            }
        }
    }
    Ok(())
}

/// How a run of a strategy is interrupted (here and in the chaos suite of `gantry-kube`).
#[derive(Clone, Copy, Debug)]
pub enum Interruption {
    /// Not at all: the run ends by itself.
    None,
    /// The deploy step's own timeout, this long.
    Timeout(Duration),
    /// The run is cancelled after this long.
    Cancel(Duration),
    /// The run's future is dropped after this long.
    Drop(Duration),
}

/// Strategies run as a [`Deploy`] step end whole: on the new version if and only if the step succeeded, else on the
/// stable one; finished, failing, timed out, cancelled or dropped at moments spread over the deploy.
pub async fn strategies_end_whole(platform: &dyn Platform) -> Result<(), String> {
    platform.break_version(BAD);
    let capabilities = platform.target(&release(STABLE)).await.capabilities();
    let unit = platform.operation_time();
    let mut strategies: Vec<(&str, Arc<dyn Strategy>)> = vec![
        ("rolling", Arc::new(Rolling::new())),
        ("blue/green", Arc::new(BlueGreen::new().auto_promote_after(unit).scale_down_delay(unit))),
    ];
    if capabilities.weights {
        let canary = Canary::new().set_weight(25).pause(unit).set_weight(50).pause(unit);
        strategies.push(("canary", Arc::new(canary)));
    }
    if capabilities.header_routes {
        let rule = Match::Header { name: "x-variant".into(), value: "b".into() };
        strategies.push(("A/B", Arc::new(BlueGreen::new().preview_route(rule).wait_for(Promotion::new()))));
    }
    // Early (the new release starting), mid-way (traffic moving, analysis, pauses) and late (the promotion).
    let interruptions = [
        Interruption::None,
        Interruption::Timeout(unit),
        Interruption::Timeout(unit * 4),
        Interruption::Cancel(unit / 2),
        Interruption::Cancel(unit * 3),
        Interruption::Drop(unit * 2),
        Interruption::Drop(unit * 5),
    ];
    for (name, strategy) in &strategies {
        for version in [GOOD, BAD] {
            for interruption in &interruptions {
                let what = format!("{name} of version {version}, {interruption:?}");
                if name == &"A/B" && matches!(interruption, Interruption::None) {
                    // It waits for a promotion nobody gives: only interruptions end it.
                    continue;
                }
                let target = platform.target(&release(STABLE)).await;
                let ended = run_interrupted(Arc::clone(&target), Arc::clone(strategy), version, *interruption)
                    .await
                    .map_err(|e| format!("{what}: {e}"))?;
                let said = ended.as_ref().map_or("nothing: the run was dropped", |e| e.said.as_str());
                let what = format!("{what} (the step said: {said})");
                let succeeded = ended.as_ref().is_some_and(|e| e.run == RunStatus::Succeeded);
                if succeeded && version == BAD {
                    return Err(format!("{what}: the step succeeded with a release that never becomes ready"));
                }
                if matches!(interruption, Interruption::None) && version == GOOD && !succeeded {
                    return Err(format!("{what}: a release that becomes ready, left alone, did not succeed"));
                }
                match &ended {
                    Some(_) => {
                        whole_on(platform, target.as_ref(), if succeeded { version } else { STABLE }, &what).await?
                    }
                    // Dropped: on the stable version, restored by the drop guard; or on the new one, if the strategy
                    // had finished when the run was dropped (the guard is disarmed then). Never in between.
                    None => {
                        let on = whole_on_either(platform, target.as_ref(), [STABLE, version], &what).await?;
                        if on != STABLE {
                            continue;
                        }
                    }
                }
                says_why(platform, target.as_ref(), version, *interruption, ended, unit)
                    .await
                    .map_err(|e| format!("{what}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// Like [`whole_on`], for a platform that may end on either version; returns which.
async fn whole_on_either<'v>(
    platform: &dyn Platform,
    target: &dyn Target,
    versions: [&'v str; 2],
    what: &str,
) -> Result<&'v str, String> {
    let deadline = tokio::time::Instant::now() + platform.settle_time();
    loop {
        let seen = platform.observe(target).await;
        if let Some(version) = versions.into_iter().find(|v| seen.is_whole_on(v)) {
            return Ok(version);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{what}: expected everything on version {versions:?}, the platform shows {seen:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How an interrupted run ended.
struct Ended {
    run: RunStatus,
    step: Option<StepStatus>,
    said: String,
}

/// A deploy that did not succeed says why: the step's reason names the cause (a release that never became ready, the
/// timeout), a cancelled run reports the step cancelled, and a run dropped mid-deploy leaves a note on the platform
/// that it was dropped, naming the release.
async fn says_why(
    platform: &dyn Platform,
    target: &dyn Target,
    version: &str,
    interruption: Interruption,
    ended: Option<Ended>,
    unit: Duration,
) -> Result<(), String> {
    // A release that never becomes ready may fail before an interruption lands: then that is the reason.
    let failed_first = |said: &str| version == BAD && said.contains("did not become ready");
    match (interruption, ended) {
        (_, Some(Ended { run: RunStatus::Succeeded, .. })) => Ok(()),
        (Interruption::None, Some(e)) if !failed_first(&e.said) => {
            Err("the step's reason does not say the release did not become ready".into())
        }
        (Interruption::Timeout(_), Some(e)) if !failed_first(&e.said) => {
            if !e.said.starts_with("timed out after") || !e.said.contains("interrupted") {
                return Err("the step's reason does not say it timed out and was interrupted".into());
            }
            // A timeout is the step's failure, not the run's cancellation.
            if e.step == Some(StepStatus::Failed) {
                Ok(())
            } else {
                Err(format!("a timed-out step ended {:?}", e.step))
            }
        }
        (Interruption::Cancel(_), Some(e)) if !failed_first(&e.said) => {
            if e.run == RunStatus::Cancelled && e.step == Some(StepStatus::Cancelled) {
                Ok(())
            } else {
                Err(format!("the run ended {:?} and the step {:?}, not cancelled", e.run, e.step))
            }
        }
        // Dropped well into the deploy (past its first operation): the restore's task says why on the platform.
        (Interruption::Drop(after), None) if after >= unit * 3 => {
            let deadline = tokio::time::Instant::now() + platform.settle_time();
            let release = format!("{SERVICE} {version}");
            loop {
                let notes = platform.restore_notes(target).await;
                if notes.iter().any(|n| n.contains("dropped") && n.contains(&release)) {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!("no note on the platform says the deploy of {release} was dropped: {notes:?}"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        _ => Ok(()),
    }
}

/// Runs `strategy` as a step, interrupted as told; how the run ended and what the step said (`None` when the run
/// was dropped before it ended).
async fn run_interrupted(
    target: Arc<dyn Target>,
    strategy: Arc<dyn Strategy>,
    version: &str,
    interruption: Interruption,
) -> Result<Option<Ended>, String> {
    let step = Deploy::new(target, strategy, SERVICE, version).image(format!("{SERVICE}:{version}"));
    let mut builder = Pipeline::builder("conformance").step("deploy", step);
    if let Interruption::Timeout(after) = interruption {
        builder = builder.timeout(after);
    }
    let pipeline = builder.build().map_err(|e| e.to_string())?;
    let run = Run::new(&pipeline, Context::new());
    let bound = Duration::from_secs(120);
    let report = match interruption {
        Interruption::Drop(after) => {
            // Dropped at `after` unless it ended first; a restore then runs in a task of its own.
            match tokio::time::timeout(after, run.execute()).await {
                Ok(report) => report.map_err(|e| e.to_string())?,
                Err(_) => return Ok(None),
            }
        }
        Interruption::Cancel(after) => {
            let cancel = run.cancellation_token();
            let canceller = tokio::spawn(async move {
                tokio::time::sleep(after).await;
                cancel.cancel();
            });
            let report = tokio::time::timeout(bound, run.execute()).await;
            canceller.abort();
            report.map_err(|_| "the run did not end".to_owned())?.map_err(|e| e.to_string())?
        }
        Interruption::None | Interruption::Timeout(_) => tokio::time::timeout(bound, run.execute())
            .await
            .map_err(|_| "the run did not end".to_owned())?
            .map_err(|e| e.to_string())?,
    };
    let said =
        report.step("deploy").and_then(|s| s.reason.as_deref().map(str::to_owned)).unwrap_or_else(|| "nothing".into());
    Ok(Some(Ended { run: report.status, step: report.status_of("deploy"), said }))
}

/// [`MemoryTarget`] as a [`Platform`]: operations take 20 ms (so interruptions land half-way), and what it serves is
/// read from its slots and traffic split.
#[derive(Debug, Default)]
pub struct MemoryPlatform {
    capabilities: Option<Capabilities>,
    broken: Mutex<Vec<String>>,
    targets: Mutex<Vec<Arc<MemoryTarget>>>,
}

impl MemoryPlatform {
    /// Targets with every capability.
    pub fn new() -> Self {
        Self::default()
    }

    /// Targets with only `capabilities`.
    #[must_use]
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = Some(capabilities);
        self
    }

    /// The memory target behind `target`, if it is one of this platform's.
    fn find(&self, target: &dyn Target) -> Option<Arc<MemoryTarget>> {
        let address = std::ptr::from_ref(target).cast::<()>();
        Self::lock(&self.targets)
            .iter()
            .find(|t| std::ptr::from_ref::<MemoryTarget>(t.as_ref()).cast::<()>() == address)
            .cloned()
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Platform for MemoryPlatform {
    async fn target(&self, stable: &Release) -> Arc<dyn Target> {
        let mut target = MemoryTarget::with_stable(stable.clone()).latency(self.operation_time());
        if let Some(capabilities) = self.capabilities {
            target = target.with_capabilities(capabilities);
        }
        for version in Self::lock(&self.broken).iter() {
            target.fail_version(version.clone(), "CrashLoopBackOff");
        }
        let target = Arc::new(target);
        Self::lock(&self.targets).push(Arc::clone(&target));
        target
    }

    async fn restore_notes(&self, target: &dyn Target) -> Vec<String> {
        self.find(target).map(|t| t.events()).unwrap_or_default()
    }

    async fn observe(&self, target: &dyn Target) -> Observed {
        let Some(target) = self.find(target) else {
            return Observed { leftovers: vec!["not a target of this platform".into()], ..Observed::default() };
        };
        let broken = Self::lock(&self.broken).clone();
        let ready = |r: &Release| !broken.contains(&r.version);
        let mut seen = Observed::default();
        let stable = target.stable();
        seen.stable = stable.as_ref().filter(|r| ready(r)).map(|r| r.version.clone());
        let traffic = target.traffic();
        let new = target.slot(Slot::Canary).or_else(|| target.slot(Slot::Preview));
        for slot in [Slot::Canary, Slot::Preview] {
            if let Some(r) = target.slot(slot) {
                seen.leftovers.push(format!("{slot} slot runs {r}"));
            }
        }
        if let Some(rule) = &traffic.matching {
            seen.leftovers.push(format!("a route for {rule:?}"));
        }
        let to_new = match &new {
            Some(r) if ready(r) => traffic.weight,
            _ => {
                if traffic.weight > 0 {
                    seen.leftovers.push(format!("{}% of traffic to a slot that cannot serve", traffic.weight));
                }
                0
            }
        };
        if let Some(r) = stable.as_ref().filter(|r| ready(r))
            && to_new < 100
        {
            seen.serving.insert(r.version.clone(), 100 - to_new);
        }
        if let Some(r) = new.filter(|_| to_new > 0) {
            *seen.serving.entry(r.version).or_default() += to_new;
        }
        seen
    }

    fn break_version(&self, version: &str) {
        let mut broken = Self::lock(&self.broken);
        if !broken.iter().any(|v| v == version) {
            broken.push(version.to_owned());
        }
    }

    fn operation_time(&self) -> Duration {
        Duration::from_millis(20)
    }

    fn settle_time(&self) -> Duration {
        Duration::from_secs(2)
    }
}
