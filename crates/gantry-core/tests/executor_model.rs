//! Property test: random DAGs (up to 40 steps) with random trigger rules, conditions, outcomes and retries, run by
//! the executor and by a small reference model (sequential evaluation in topological order) written here from the
//! rule table in DESIGN.md, independently of the executor's code.
//!
//! Checked for every case: the same final status for every step and for the run, the same number of attempts; no
//! step starts before all of its upstream steps have finished; no step runs more than 1 + retries times; never more
//! steps at once than the concurrency bound; every run terminates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use gantry_core::{
    Condition, Context, Event, Pipeline, RetryPolicy, Run, RunStatus, StepError, StepStatus, TriggerRule, step_fn,
};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Attempt {
    Ok,
    Retryable,
    Fatal,
}

#[derive(Clone, Debug)]
struct StepSpec {
    upstream: Vec<usize>,
    rule: TriggerRule,
    /// Runs only if flag `k` is on.
    condition: Option<usize>,
    /// Results of attempts 1, 2, ...; attempts past the end succeed.
    script: Vec<Attempt>,
    retries: u32,
    allow_failure: bool,
    yields: u8,
}

#[derive(Clone, Debug)]
struct Case {
    steps: Vec<StepSpec>,
    flags: Vec<bool>,
    max_concurrency: Option<usize>,
}

const FLAGS: usize = 4;

fn rule_strategy() -> impl Strategy<Value = TriggerRule> {
    prop_oneof![
        4 => Just(TriggerRule::AllSuccess),
        2 => Just(TriggerRule::OnFailure),
        1 => Just(TriggerRule::Always),
        2 => Just(TriggerRule::NoneFailed),
    ]
}

fn attempt_strategy() -> impl Strategy<Value = Attempt> {
    prop_oneof![3 => Just(Attempt::Ok), 2 => Just(Attempt::Retryable), 1 => Just(Attempt::Fatal)]
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (1usize..=40).prop_flat_map(|n| {
        let steps = (0..n)
            .map(|i| {
                (
                    proptest::collection::vec(0..i.max(1), 0..=3.min(i)),
                    rule_strategy(),
                    proptest::option::weighted(0.25, 0..FLAGS),
                    proptest::collection::vec(attempt_strategy(), 0..4),
                    0u32..3,
                    proptest::bool::weighted(0.15),
                    0u8..3,
                )
                    .prop_map(
                        move |(mut up, rule, condition, script, retries, allow_failure, yields)| {
                            if i == 0 {
                                up.clear();
                            }
                            up.sort_unstable();
                            up.dedup();
                            // A failure handler needs something upstream.
                            let rule = if up.is_empty() && rule == TriggerRule::OnFailure {
                                TriggerRule::AllSuccess
                            } else {
                                rule
                            };
                            StepSpec { upstream: up, rule, condition, script, retries, allow_failure, yields }
                        },
                    )
            })
            .collect::<Vec<_>>();
        (steps, proptest::collection::vec(any::<bool>(), FLAGS), proptest::option::of(1usize..4))
            .prop_map(|(steps, flags, max_concurrency)| Case { steps, flags, max_concurrency })
    })
}

/// What the model says a step ends as: status and attempts.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Expected {
    status: StepStatus,
    attempts: u32,
}

/// The reference model: steps in index order (a topological order, edges only go from lower to higher indices).
fn model(case: &Case) -> (Vec<Expected>, RunStatus) {
    let mut out: Vec<Expected> = Vec::with_capacity(case.steps.len());
    let mut run_failed = false;
    for spec in &case.steps {
        let failed_up = spec
            .upstream
            .iter()
            .filter(|&&u| out[u].status == StepStatus::Failed && !case.steps[u].allow_failure)
            .count();
        // A failure under `allow_failure` is a success for the happy path and a failure for the failure path.
        let allowed_up = spec
            .upstream
            .iter()
            .filter(|&&u| out[u].status == StepStatus::Failed && case.steps[u].allow_failure)
            .count();
        let skipped_up = spec.upstream.iter().filter(|&&u| out[u].status == StepStatus::Skipped).count();
        let rule_allows = match spec.rule {
            TriggerRule::AllSuccess => failed_up == 0 && skipped_up == 0,
            TriggerRule::OnFailure => failed_up + allowed_up > 0,
            TriggerRule::Always => true,
            TriggerRule::NoneFailed => failed_up == 0,
        };
        let condition_holds = spec.condition.is_none_or(|k| case.flags[k]);
        let expected = if !(rule_allows && condition_holds) {
            Expected { status: StepStatus::Skipped, attempts: 0 }
        } else {
            let mut attempt = 1u32;
            loop {
                match spec.script.get(attempt as usize - 1).copied().unwrap_or(Attempt::Ok) {
                    Attempt::Ok => {
                        break Expected { status: StepStatus::Succeeded, attempts: attempt };
                    }
                    Attempt::Retryable if attempt <= spec.retries => attempt += 1,
                    Attempt::Retryable | Attempt::Fatal => {
                        break Expected { status: StepStatus::Failed, attempts: attempt };
                    }
                }
            }
        };
        run_failed |= expected.status == StepStatus::Failed && !spec.allow_failure;
        out.push(expected);
    }
    (out, if run_failed { RunStatus::Failed } else { RunStatus::Succeeded })
}

#[derive(Default)]
struct Observed {
    clock: AtomicU64,
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// Per step: (start tick of each attempt, end tick of the last attempt).
    ticks: Mutex<HashMap<usize, (Vec<u64>, u64)>>,
}

fn build(case: &Case, seen: &Arc<Observed>) -> Pipeline {
    let mut builder: Option<gantry_core::StepBuilder> = None;
    for (i, spec) in case.steps.iter().enumerate() {
        let seen = Arc::clone(seen);
        let script = spec.script.clone();
        let yields = spec.yields;
        let step = step_fn(move |ctx| {
            let seen = Arc::clone(&seen);
            let script = script.clone();
            async move {
                let start = seen.clock.fetch_add(1, Ordering::SeqCst);
                let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
                seen.max_running.fetch_max(now, Ordering::SeqCst);
                seen.ticks.lock().unwrap().entry(i).or_default().0.push(start);
                for _ in 0..yields {
                    tokio::task::yield_now().await;
                }
                let result = match script.get(ctx.attempt() as usize - 1).copied().unwrap_or(Attempt::Ok) {
                    Attempt::Ok => Ok(()),
                    Attempt::Retryable => Err(StepError::new("transient").retryable()),
                    Attempt::Fatal => Err(StepError::new("fatal")),
                };
                seen.running.fetch_sub(1, Ordering::SeqCst);
                let end = seen.clock.fetch_add(1, Ordering::SeqCst);
                seen.ticks.lock().unwrap().entry(i).or_default().1 = end;
                result
            }
        });
        let name = format!("s{i}");
        let mut s = match builder.take() {
            None => Pipeline::builder("random").step(name, step),
            Some(b) => b.step(name, step),
        };
        s = s.after(spec.upstream.iter().map(|u| format!("s{u}"))).rule(spec.rule);
        if let Some(k) = spec.condition {
            s = s.when(Condition::var_equals(format!("flag{k}"), "on"));
        }
        if spec.retries > 0 {
            s = s.retry(RetryPolicy::fixed(spec.retries, Duration::from_millis(1)));
        }
        if spec.allow_failure {
            s = s.allow_failure();
        }
        builder = Some(s);
    }
    builder.expect("at least one step").build().expect("generated pipelines are valid")
}

fn check(case: Case) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    let seen = Arc::new(Observed::default());
    let pipeline = build(&case, &seen);
    let mut context = Context::new();
    for (k, on) in case.flags.iter().enumerate() {
        context = context.var(format!("flag{k}"), if *on { "on" } else { "off" });
    }
    let mut run = Run::new(&pipeline, context);
    if let Some(n) = case.max_concurrency {
        run = run.max_concurrency(n);
    }
    let events = run.subscribe();
    let (report, events) = runtime.block_on(async {
        let report = tokio::time::timeout(Duration::from_secs(3600), run.execute()).await;
        (report, events.collect::<Vec<Event>>().await)
    });
    let report = report.map_err(|_| TestCaseError::fail("the run did not terminate"))?.unwrap();

    let (expected, expected_run) = model(&case);
    prop_assert_eq!(report.status, expected_run, "run status");
    prop_assert_eq!(report.steps.len(), case.steps.len());
    for (i, want) in expected.iter().enumerate() {
        let got = report.step(&format!("s{i}")).unwrap();
        prop_assert_eq!(got.status, want.status, "status of s{}: {:?}", i, got.reason);
        prop_assert_eq!(got.attempts, want.attempts, "attempts of s{}", i);
        prop_assert!(got.attempts <= 1 + case.steps[i].retries);
    }

    // Order, as the steps saw it: each attempt starts after every upstream step that ran has ended.
    let ticks = seen.ticks.lock().unwrap();
    for (i, spec) in case.steps.iter().enumerate() {
        if let Some((starts, _)) = ticks.get(&i) {
            prop_assert_eq!(starts.len() as u32, expected[i].attempts);
            for u in &spec.upstream {
                if let Some((_, end)) = ticks.get(u) {
                    prop_assert!(starts[0] > *end, "s{} started before upstream s{} ended", i, u);
                }
            }
        }
    }
    // Order, as the events tell it: StepStarted of a step after StepFinished of each upstream step, skipped ones too.
    let mut finished_at = HashMap::new();
    for (n, event) in events.iter().enumerate() {
        match event {
            Event::StepFinished { step, .. } => {
                finished_at.insert(step.to_string(), n);
            }
            Event::StepStarted { step, attempt: 1 } => {
                let i: usize = step[1..].parse().unwrap();
                for u in &case.steps[i].upstream {
                    prop_assert!(finished_at.contains_key(&format!("s{u}")), "{} started before s{} finished", step, u);
                }
            }
            _ => {}
        }
    }
    prop_assert_eq!(finished_at.len(), case.steps.len(), "one StepFinished per step");
    let last_is_run_finished = matches!(events.last(), Some(Event::RunFinished { .. }));
    prop_assert!(last_is_run_finished, "the stream ends with RunFinished");
    if let Some(n) = case.max_concurrency {
        prop_assert!(seen.max_running.load(Ordering::SeqCst) <= n, "concurrency bound {} exceeded", n);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn executor_agrees_with_the_reference_model(case in case_strategy()) {
        check(case)?;
    }
}

/// The model itself, on a hand-checked case, so that a wrong model cannot make the property vacuous.
#[test]
fn model_sanity() {
    let spec = |upstream: Vec<usize>, rule, script: Vec<Attempt>, retries| StepSpec {
        upstream,
        rule,
        condition: None,
        script,
        retries,
        allow_failure: false,
        yields: 0,
    };
    let case = Case {
        steps: vec![
            spec(vec![], TriggerRule::AllSuccess, vec![Attempt::Retryable, Attempt::Fatal], 3),
            spec(vec![0], TriggerRule::AllSuccess, vec![], 0),
            spec(vec![0], TriggerRule::OnFailure, vec![], 0),
            spec(vec![1, 2], TriggerRule::NoneFailed, vec![], 0),
            spec(vec![1, 2], TriggerRule::Always, vec![], 0),
        ],
        flags: vec![false; FLAGS],
        max_concurrency: None,
    };
    let (steps, run) = model(&case);
    let statuses: Vec<StepStatus> = steps.iter().map(|e| e.status).collect();
    use StepStatus::*;
    assert_eq!(statuses, [Failed, Skipped, Succeeded, Succeeded, Succeeded]);
    assert_eq!(steps[0].attempts, 2);
    assert_eq!(run, RunStatus::Failed);
    check(case).unwrap();
}
