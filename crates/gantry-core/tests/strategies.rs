//! Deployment strategies on the in-memory target, with analysis on synthetic metrics of known effect.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gantry_core::analysis::{Analysis, ClassicJudge, Direction, Metric, OnInconclusive, Outcome};
use gantry_core::strategy::{
    BlueGreen, Canary, Conditional, Deploy, Match, MemoryTarget, Promotion, Release, Rolling, Slot, Strategy, VERDICT,
};
use gantry_core::{Condition, Context, Event, Phase, Pipeline, Run, RunReport, RunStatus, step_fn};
use support::metrics::{Shape, SyntheticProvider};

const LATENCY: Shape = Shape::Normal { mean: 100.0, sd: 10.0 };
const ERRORS: Shape = Shape::Counts { mean: 4.0 };

/// Latency and errors for the stable 1.0 and for a candidate whose latency and errors are scaled.
fn provider(version: &str, latency_factor: f64, errors_factor: f64) -> Arc<SyntheticProvider> {
    Arc::new(
        SyntheticProvider::new(60)
            .shape("latency", "1.0", LATENCY)
            .shape("errors", "1.0", ERRORS)
            .shape("latency", version, Shape::Normal { mean: 100.0 * latency_factor, sd: 10.0 })
            .shape("errors", version, Shape::Counts { mean: 4.0 * errors_factor }),
    )
}

fn analysis(provider: Arc<SyntheticProvider>, policy: OnInconclusive) -> Analysis {
    Analysis::new(provider, Arc::new(ClassicJudge::new()))
        .metric(
            Metric::new("latency", "avg:latency{version:{{version}}}", Direction::Increase)
                .critical()
                .on_inconclusive(policy),
        )
        .metric(Metric::new("errors", "sum:errors{version:{{version}}}", Direction::Increase).on_inconclusive(policy))
        .duration(Duration::from_millis(5))
}

fn target() -> Arc<MemoryTarget> {
    Arc::new(MemoryTarget::with_stable(Release::new("web", "1.0")))
}

/// Runs a Deploy step of `strategy`, with a step after it that reads the verdict it published.
async fn deploy(
    target: &Arc<MemoryTarget>,
    strategy: impl Strategy + 'static,
    ctx: Context,
) -> (RunReport, Vec<(Phase, String)>, Option<Outcome>) {
    let verdict = Arc::new(std::sync::Mutex::new(None));
    let seen = Arc::clone(&verdict);
    let pipeline = Pipeline::builder("release")
        .step("deploy", Deploy::new(target.clone(), strategy, "web", "{{version}}"))
        .step(
            "after",
            step_fn(move |ctx| {
                let seen = Arc::clone(&seen);
                async move {
                    *seen.lock().unwrap() = ctx.output("deploy", VERDICT).ok().map(|v| v.outcome);
                    Ok(())
                }
            }),
        )
        .after(["deploy"])
        .rule(gantry_core::TriggerRule::Always)
        .build()
        .unwrap();
    let (report, events) = support::run_collecting(&pipeline, ctx).await;
    let phases = events
        .into_iter()
        .filter_map(|e| match e {
            Event::Phase { phase, message, .. } => Some((phase, message.to_string())),
            _ => None,
        })
        .collect();
    let outcome = *verdict.lock().unwrap();
    (report, phases, outcome)
}

/// Returns once the run reports that it waits for a promotion (bounded).
async fn waiting_for_promotion(mut events: gantry_core::EventStream) {
    use futures::StreamExt;
    let wait = async {
        while let Some(event) = events.next().await {
            if matches!(event, Event::Phase { phase: Phase::WaitingForPromotion, .. }) {
                return;
            }
        }
        panic!("the run ended without waiting for a promotion");
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.expect("waits for a promotion in time");
}

fn version(v: &str) -> Context {
    Context::new().var("version", v)
}

fn canary(provider: Arc<SyntheticProvider>) -> Canary {
    Canary::new()
        .set_weight(20)
        .analyze(analysis(Arc::clone(&provider), OnInconclusive::Abort))
        .set_weight(50)
        .analyze(analysis(provider, OnInconclusive::Abort))
}

#[tokio::test]
async fn a_good_canary_is_promoted() {
    let target = target();
    let (report, phases, verdict) = deploy(&target, canary(provider("1.1", 1.0, 1.0)), version("1.1")).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(target.stable().unwrap().version, "1.1");
    assert!(target.slot(Slot::Canary).is_none());
    assert_eq!(target.traffic().weight, 0, "promotion gives all traffic to the (new) stable slot");
    assert_eq!(
        target.operations(),
        ["deploy canary web 1.1", "traffic 20%", "traffic 50%", "promote canary"],
        "the canary's operations, in order"
    );
    let kinds: Vec<Phase> = phases.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        kinds,
        [Phase::Deployed, Phase::WeightChanged, Phase::Verdict, Phase::WeightChanged, Phase::Verdict, Phase::Promoted]
    );
    assert_eq!(verdict, Some(Outcome::Pass));
}

async fn assert_aborted(latency: f64, errors: f64, failing_metric: &str) {
    let target = target();
    let (report, phases, verdict) = deploy(&target, canary(provider("2.0", latency, errors)), version("2.0")).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(verdict, Some(Outcome::Fail));
    assert_eq!(target.stable().unwrap().version, "1.0", "the cluster ends fully on stable");
    assert!(target.slot(Slot::Canary).is_none(), "the canary is scaled down");
    assert_eq!(target.traffic().weight, 0, "all traffic back on stable");
    let reason = report.step("deploy").unwrap().reason.clone().unwrap();
    assert!(reason.contains("canary web 2.0 aborted: analysis failed"), "{reason}");
    assert!(reason.contains(&format!("{failing_metric}: High")), "the failing metric and its numbers: {reason}");
    assert!(reason.contains("canary/baseline mean"), "{reason}");
    let (phase, message) = phases.last().unwrap();
    assert_eq!(*phase, Phase::Aborted);
    assert!(message.contains("all traffic back on web 1.0"), "{message}");
    assert!(!target.operations().iter().any(|o| o.starts_with("promote")), "{:?}", target.operations());
}

#[tokio::test]
async fn a_canary_with_30_percent_more_latency_is_aborted_by_analysis() {
    assert_aborted(1.3, 1.0, "latency").await;
}

#[tokio::test]
async fn a_canary_with_three_times_the_errors_is_aborted_by_analysis() {
    assert_aborted(1.0, 3.0, "errors").await;
}

#[tokio::test]
async fn a_metrics_outage_during_analysis_is_inconclusive_never_a_pass() {
    let provider = provider("1.1", 1.0, 1.0);
    provider.down.store(true, Ordering::Relaxed);
    let target = target();
    let (report, _, verdict) = deploy(&target, canary(Arc::clone(&provider)), version("1.1")).await;
    assert_eq!(verdict, Some(Outcome::Inconclusive));
    assert_eq!(report.status, RunStatus::Failed, "the metrics' policy is to abort");
    assert!(report.step("deploy").unwrap().reason.as_deref().unwrap().contains("analysis inconclusive"));
    assert_eq!(target.stable().unwrap().version, "1.0");

    // With a policy to notify only, the canary carries on and the verdict says so.
    let notify = Canary::new().set_weight(10).analyze(analysis(provider, OnInconclusive::Notify));
    let (report, phases, verdict) = deploy(&target, notify, version("1.1")).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(verdict, Some(Outcome::Inconclusive));
    assert!(phases.iter().any(|(p, m)| *p == Phase::Verdict && m.contains("503 Service Unavailable")), "{phases:?}");
}

#[tokio::test]
async fn a_background_analysis_aborts_a_canary_between_its_steps() {
    let target = target();
    let bad = provider("2.0", 1.3, 1.0);
    let strategy = Canary::new()
        .set_weight(10)
        .pause(Duration::from_secs(30))
        .set_weight(50)
        .background(analysis(bad, OnInconclusive::Abort));
    let started = std::time::Instant::now();
    let (report, _, _) = deploy(&target, strategy, version("2.0")).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(started.elapsed() < Duration::from_secs(10), "aborted during the pause");
    assert_eq!(target.operations(), ["deploy canary web 2.0", "traffic 10%", "restore web 1.0"]);
}

#[tokio::test]
async fn a_canary_waits_for_its_promotion() {
    let target = target();
    let promotion = Promotion::new();
    let strategy = Canary::new().set_weight(25).pause_until_promoted().set_weight(75).promotion(promotion.clone());
    let pipeline = Pipeline::builder("release")
        .step("deploy", Deploy::new(target.clone(), strategy, "web", "{{version}}"))
        .build()
        .unwrap();
    let run = Run::new(&pipeline, version("1.1"));
    let events = run.subscribe();
    let handle = tokio::spawn(run.execute());
    waiting_for_promotion(events).await;
    assert_eq!(target.traffic().weight, 25, "paused at 25%");
    assert!(!handle.is_finished());
    promotion.promote();
    let report = tokio::time::timeout(Duration::from_secs(10), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(target.stable().unwrap().version, "1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_with_approvals_is_a_gate_approve_promotes_and_reject_aborts() {
    for approve in [true, false] {
        let target = target();
        let approvals = gantry_core::Approvals::new();
        let promotion = Promotion::new().with_approvals(&approvals);
        let strategy = Canary::new().set_weight(25).pause_until_promoted().set_weight(75).promotion(promotion);
        let pipeline = Pipeline::builder("release")
            .step("deploy", Deploy::new(target.clone(), strategy, "web", "{{version}}"))
            .build()
            .unwrap();
        let run = Run::new(&pipeline, version("1.1"));
        let handle = tokio::spawn(run.execute());
        let gate = loop {
            if let Some(gate) = approvals.pending().pop() {
                break gate;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!((gate.step.as_str(), gate.message.as_str()), ("deploy", "promote web 1.1? (reject aborts it)"));
        assert_eq!(target.traffic().weight, 25, "paused at 25%");
        let decision = if approve {
            gantry_core::Decision::approve("ana", "web")
        } else {
            gantry_core::Decision::reject("ana", "slack").comment("errors are up")
        };
        approvals.decide(&gate.id, decision).unwrap();
        let report = tokio::time::timeout(Duration::from_secs(10), handle).await.unwrap().unwrap().unwrap();
        assert!(approvals.pending().is_empty());
        if approve {
            assert_eq!(report.status, RunStatus::Succeeded, "{report}");
            assert_eq!(target.stable().unwrap().version, "1.1");
        } else {
            assert_eq!(report.status, RunStatus::Failed);
            let reason = report.step("deploy").and_then(|s| s.reason.clone()).unwrap_or_default();
            assert!(reason.contains("rejected by ana via slack: errors are up"), "{reason}");
            assert_eq!(target.stable().unwrap().version, "1.0", "aborted: the stable version keeps all traffic");
            assert_eq!(target.traffic().weight, 0);
        }
    }
}

fn blue_green() -> BlueGreen {
    BlueGreen::new().scale_down_delay(Duration::from_millis(1))
}

#[tokio::test]
async fn blue_green_promotes_and_scales_the_old_version_down() {
    let target = target();
    let strategy = blue_green()
        .pre_promotion(analysis(provider("1.1", 1.0, 1.0), OnInconclusive::Abort))
        .post_promotion(analysis(provider("1.1", 1.0, 1.0), OnInconclusive::Abort));
    let (report, phases, _) = deploy(&target, strategy, version("1.1")).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(target.operations(), ["deploy preview web 1.1", "traffic 100%", "promote preview"]);
    assert_eq!(target.stable().unwrap().version, "1.1");
    assert!(target.slot(Slot::Preview).is_none());
    assert_eq!(phases.iter().filter(|(p, _)| *p == Phase::Verdict).count(), 2);
}

#[tokio::test]
async fn blue_green_pre_promotion_failure_keeps_the_old_version_active() {
    let target = target();
    let strategy = blue_green().pre_promotion(analysis(provider("2.0", 1.3, 1.0), OnInconclusive::Abort));
    let (report, phases, verdict) = deploy(&target, strategy, version("2.0")).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(verdict, Some(Outcome::Fail));
    assert_eq!(target.operations(), ["deploy preview web 2.0", "restore web 1.0"]);
    assert_eq!(target.stable().unwrap().version, "1.0");
    assert_eq!(phases.last().unwrap().0, Phase::Aborted);
}

#[tokio::test]
async fn blue_green_post_promotion_failure_switches_back() {
    let target = target();
    let strategy = blue_green().post_promotion(analysis(provider("2.0", 1.0, 3.0), OnInconclusive::Abort));
    let (report, phases, _) = deploy(&target, strategy, version("2.0")).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(
        target.operations(),
        ["deploy preview web 2.0", "traffic 100%", "restore web 1.0"],
        "switched to the new version, then back"
    );
    assert_eq!(target.stable().unwrap().version, "1.0");
    let (phase, message) = phases.last().unwrap();
    assert_eq!(*phase, Phase::SwitchedBack);
    assert!(message.contains("switched back to web 1.0"), "{message}");
}

#[tokio::test]
async fn blue_green_a_b_route_is_created_while_in_preview_and_removed_at_promotion() {
    let target = target();
    let promotion = Promotion::new();
    let rule = Match::Header { name: "x-variant".into(), value: "b".into() };
    let strategy = blue_green().preview_route(rule.clone()).wait_for(promotion.clone());
    let pipeline = Pipeline::builder("release")
        .step("deploy", Deploy::new(target.clone(), strategy, "web", "{{version}}"))
        .build()
        .unwrap();
    let run = Run::new(&pipeline, version("1.1"));
    let events = run.subscribe();
    let handle = tokio::spawn(run.execute());
    waiting_for_promotion(events).await;
    assert_eq!(target.traffic().matching, Some(rule), "the A/B route is in place while in preview");
    assert_eq!(target.traffic().weight, 0);
    promotion.promote();
    let report = tokio::time::timeout(Duration::from_secs(10), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(target.traffic().matching, None, "the route is gone after promotion");
    assert_eq!(target.stable().unwrap().version, "1.1");
}

#[tokio::test]
async fn rolling_rolls_back_a_release_that_does_not_become_ready() {
    let target = target();
    target.fail_version("2.0", "ImagePullBackOff");
    let (report, phases, _) = deploy(&target, Rolling::new(), version("2.0")).await;
    let reason = report.step("deploy").unwrap().reason.clone().unwrap();
    assert!(reason.contains("ImagePullBackOff") && reason.contains("rolled back to web 1.0"), "{reason}");
    assert_eq!(target.operations(), ["deploy stable web 2.0", "restore web 1.0"]);
    assert_eq!(phases.last().unwrap().0, Phase::RolledBack);
}

#[tokio::test]
async fn the_conditional_strategy_picks_by_context() {
    let strategy = || {
        Conditional::new(Rolling::new())
            .when(Condition::var_equals("hotfix", "true"), Rolling::new())
            .when(Condition::var_equals("env", "production"), Canary::new().set_weight(10))
    };
    for (ctx, expected) in [
        (version("1.1").var("env", "production"), "deploy canary web 1.1"),
        (version("1.1").var("env", "staging"), "deploy stable web 1.1"),
        (version("1.1").var("env", "production").var("hotfix", "true"), "deploy stable web 1.1"),
    ] {
        let target = target();
        let (report, _, _) = deploy(&target, strategy(), ctx).await;
        assert_eq!(report.status, RunStatus::Succeeded, "{report}");
        assert_eq!(target.operations()[0], expected);
    }
    let plan = Pipeline::builder("p")
        .step("deploy", Deploy::new(target(), strategy(), "web", "{{version}}"))
        .build()
        .unwrap()
        .plan(&version("1.1").var("env", "production"))
        .to_string();
    assert!(plan.contains("canary: 10% → promote") && plan.contains("because env == production"), "{plan}");
}

#[test]
fn a_strategy_that_needs_what_its_target_lacks_is_refused_when_the_pipeline_is_built() {
    use gantry_core::BuildError;
    use gantry_core::strategy::Capabilities;
    let build = |target: MemoryTarget, strategy: Conditional| {
        Pipeline::builder("release")
            .step("deploy", Deploy::new(Arc::new(target), strategy, "web", "{{version}}"))
            .build()
    };
    let plain = || MemoryTarget::with_stable(Release::new("web", "1.0")).with_capabilities(Capabilities::NONE);
    // A canary at 20 % needs traffic weights; only one branch of the conditional picks it: still refused, since
    // any branch may run.
    let canary =
        Conditional::new(Rolling::new()).when(Condition::var_equals("env", "production"), Canary::new().set_weight(20));
    match build(plain(), canary.clone()) {
        Err(BuildError::InvalidStep { step, why, .. }) => {
            assert_eq!(step, "deploy");
            assert!(why.contains("needs traffic weights"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let ab = Conditional::new(BlueGreen::new().preview_route(Match::Cookie { name: "v".into(), value: "b".into() }));
    let error = build(plain().with_capabilities(Capabilities::NONE.with_weights()), ab.clone()).unwrap_err();
    assert!(error.to_string().contains("needs cookie routes"), "{error}");
    // What the target has, it may use; a canary that only goes 0 → 100 % needs no weights.
    assert!(build(plain().with_capabilities(Capabilities::NONE.with_weights()), canary).is_ok());
    assert!(build(plain().with_capabilities(Capabilities::NONE.with_cookie_routes()), ab).is_ok());
    assert!(build(plain(), Conditional::new(Canary::new().set_weight(100))).is_ok());
    assert!(build(plain(), Conditional::new(BlueGreen::new())).is_ok());
}

#[tokio::test]
async fn a_restore_that_keeps_failing_is_retried_within_its_budget_and_named_in_the_failure() {
    let target = target();
    target.fail_version("2.0", "CrashLoopBackOff");
    target.fail_operation("restore");
    let pipeline = Pipeline::builder("release")
        .step(
            "deploy",
            Deploy::new(target.clone(), Rolling::new(), "web", "{{version}}").restore_budget(Duration::from_secs(2)),
        )
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let report = pipeline.run(version("2.0")).await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let reason = report.step("deploy").unwrap().reason.clone().unwrap();
    assert!(
        reason.contains("restoring web 1.0 failed: the target failed to restore web 1.0: gave up after"),
        "{reason}"
    );
    assert!(reason.contains("the platform is unavailable"), "the last failure is named: {reason}");
    assert_eq!(target.operations(), ["deploy stable web 2.0"], "each restore was refused before it did anything");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(5), "within the budget: {took:?}");
}

#[tokio::test]
async fn a_restore_that_fails_once_is_retried_and_the_release_is_restored() {
    let target = target();
    target.fail_version("2.0", "CrashLoopBackOff");
    target.fail_operation("restore");
    let healer = Arc::clone(&target);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        healer.heal_operation("restore");
    });
    let (report, _, _) = deploy(&target, Rolling::new(), version("2.0")).await;
    let reason = report.step("deploy").unwrap().reason.clone().unwrap();
    assert!(reason.contains("rolled back to web 1.0, which is healthy again"), "{reason}");
    assert_eq!(target.stable().unwrap().version, "1.0");
    assert!(target.events()[0].contains("deploying web 2.0 failed"), "the target was told why: {:?}", target.events());
}

#[tokio::test]
async fn a_deploy_that_met_a_passing_platform_fault_is_retried_and_one_that_did_not_become_ready_is_not() {
    use gantry_core::RetryPolicy;
    use gantry_core::strategy::TargetError;
    let retried = |target: &Arc<MemoryTarget>| {
        Pipeline::builder("release")
            .step("deploy", Deploy::new(target.clone(), Rolling::new(), "web", "{{version}}"))
            .retry(RetryPolicy::fixed(2, Duration::from_millis(5)))
            .build()
            .unwrap()
    };

    // The platform refuses to deploy for a passing reason: the step is tried three times, rolled back each time.
    let flaky = target();
    flaky.fail_operation("deploy");
    let report = retried(&flaky).run(version("2.0")).await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.step("deploy").unwrap().attempts, 3, "{report}");
    assert_eq!(flaky.stable().unwrap().version, "1.0");

    // The release crash-loops: the same release would fail the same way, so it is not tried again.
    let crashing = target();
    crashing.fail_version("2.0", "CrashLoopBackOff");
    let report = retried(&crashing).run(version("2.0")).await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.step("deploy").unwrap().attempts, 1, "{report}");
    assert_eq!(crashing.stable().unwrap().version, "1.0");

    // The errors say so themselves, and carry their source.
    let transient = TargetError::transient("patch Deployment `web`", "503 Service Unavailable");
    let refused = TargetError::platform("patch Deployment `web`", "403 Forbidden");
    assert!(transient.is_retryable() && !refused.is_retryable());
    assert_eq!(refused.to_string(), "the target failed to patch Deployment `web`: 403 Forbidden");
    assert_eq!(std::error::Error::source(&refused).unwrap().to_string(), "403 Forbidden");
}

/// The route after each move, as `Event::Traffic` reports it: (weight, matching).
fn routes(events: &[Event]) -> Vec<(u8, Option<String>, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Traffic { route, .. } => Some((route.weight, route.matching.clone(), route.candidate.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies_report_each_move_of_traffic_and_each_verdict_with_its_evidence() {
    // A canary: each weight, then all traffic at the promotion; the verdict with the points judged.
    let pipeline = |strategy: Canary| {
        Pipeline::builder("release")
            .step("deploy", Deploy::new(target(), strategy, "web", "{{version}}"))
            .build()
            .unwrap()
    };
    let good =
        Canary::new().set_weight(25).analyze(analysis(provider("1.1", 1.0, 1.0), OnInconclusive::Abort)).set_weight(50);
    let (report, events) = support::run_collecting(&pipeline(good), version("1.1")).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let web11 = "web 1.1".to_owned();
    assert_eq!(routes(&events), [(25, None, web11.clone()), (50, None, web11.clone()), (100, None, web11.clone())]);
    let verdicts: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Analysis { step, verdict } => Some((step.to_string(), Arc::clone(verdict))),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].0, "deploy");
    assert_eq!(verdicts[0].1.outcome, Outcome::Pass);
    for metric in &verdicts[0].1.metrics {
        assert!(!metric.evidence.baseline.is_empty() && !metric.evidence.canary.is_empty(), "{metric:?}");
    }

    // Aborted: back to none.
    let bad = Canary::new().set_weight(25).analyze(analysis(provider("2.0", 1.3, 1.0), OnInconclusive::Abort));
    let (report, events) = support::run_collecting(&pipeline(bad), version("2.0")).await;
    assert_eq!(report.status, RunStatus::Failed);
    let web20 = "web 2.0".to_owned();
    assert_eq!(routes(&events), [(25, None, web20.clone()), (0, None, web20)]);

    // Blue/green with an A/B route: the route while in preview, then the switch.
    let rule = Match::Header { name: "x-variant".into(), value: "b".into() };
    let bg = Pipeline::builder("release")
        .step("deploy", Deploy::new(target(), blue_green().preview_route(rule), "web", "{{version}}"))
        .build()
        .unwrap();
    let (report, events) = support::run_collecting(&bg, version("1.1")).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(routes(&events), [(0, Some("header x-variant: b".into()), web11.clone()), (100, None, web11)]);
}
