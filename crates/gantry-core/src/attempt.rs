//! A step's attempts: each under its timeout, a panic caught as the attempt's failure, retries with backoff after
//! retryable errors, and the run's hooks before the first attempt and after the last.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;

use crate::context::{Scope, StepContext};
use crate::error::{StepError, error_chain};
use crate::event::Event;
use crate::pipeline::{Children, Node};

/// What the attempts of a step came to.
pub(crate) struct Attempted {
    pub(crate) result: Result<(), StepError>,
    pub(crate) attempts: u32,
    /// When the first attempt started, if later than when the step was started (hooks and breakpoints ran first).
    pub(crate) started: Option<quanta::Instant>,
}

/// Runs a step's attempts with its timeout and retries, between the run's hooks.
pub(crate) async fn attempts(node: &Node, ctx: &StepContext, scope: &Scope) -> Attempted {
    let durable = scope.options.durable.as_deref();
    let mut interrupted = None;
    if let Some(durable) = durable {
        use crate::durable::Before;
        match durable.before(ctx).await {
            Before::Run => {}
            Before::Resume(state) => interrupted = Some(state),
            Before::Replay(result, attempts) => return Attempted { result, attempts, started: None },
            Before::Refuse(error) => {
                let result = durable.after(ctx, Err(error), crate::StepStatus::Failed, 0).await;
                return Attempted { result, attempts: 0, started: None };
            }
        }
    }
    let hooks = &scope.options.hooks;
    for hook in hooks {
        hook.before_step(ctx).await;
    }
    // Time spent in hooks (a paused breakpoint) is not the step's.
    let started = (!hooks.is_empty()).then(quanta::Instant::now);
    let mut attempt = 1;
    let result = loop {
        ctx.set_attempt(attempt);
        if attempt > 1 {
            ctx.emit_attempt(attempt);
        }
        // The first attempt of a step taken over after its host stopped goes through `Step::resume`.
        let result = one_attempt(node, ctx, interrupted.take().as_ref()).await;
        match (&result, node.retry()) {
            (Err(error), Some(policy))
                if error.is_retryable() && attempt <= policy.retries() && !ctx.is_cancelled() =>
            {
                let delay = policy.delay(attempt);
                let message = Arc::from(scope.redact(&error_chain(error)).as_ref());
                tracing::warn!(step = %ctx.name(), attempt, ?delay, error = %message, "retrying");
                if scope.journal.is_active() {
                    let step = Arc::from(ctx.name());
                    ctx.emit(Event::StepRetrying { step, attempt, error: message, delay });
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = ctx.cancellation().cancelled() => break Err(StepError::cancelled()),
                }
                attempt += 1;
            }
            _ => break result,
        }
    };
    for hook in hooks {
        hook.after_step(ctx, &result).await;
    }
    let result = match durable {
        Some(durable) => {
            let status = if ctx.is_cancelled() { crate::StepStatus::Cancelled } else { crate::StepStatus::Failed };
            durable.after(ctx, result, status, attempt).await
        }
        None => result,
    };
    Attempted { result, attempts: attempt, started }
}

/// One call of `Step::run`, under the step's timeout if it has one; a panic is the attempt's failure (so hooks,
/// the debugger and retries see it like any other error).
async fn one_attempt(
    node: &Node,
    ctx: &StepContext,
    interrupted: Option<&crate::Interrupted>,
) -> Result<(), StepError> {
    let attempt = match interrupted {
        Some(interrupted) => node.step.resume(ctx, interrupted),
        None => node.step.run(ctx),
    };
    let run = std::panic::AssertUnwindSafe(attempt).catch_unwind();
    let caught = |outcome: Result<Result<(), StepError>, Box<dyn std::any::Any + Send>>| {
        outcome.unwrap_or_else(|panic| Err(StepError::new(format!("step panicked: {}", panic_message(&*panic)))))
    };
    match node.timeout() {
        Some(limit) => {
            let deadline = Deadline {
                limit,
                grace: node.step.interrupt_grace(),
                // A sub-pipeline's or fan-out's poll does its steps' work: a long one is not the holding step blocking.
                check_blocking: matches!(node.children(), Children::None),
                token: ctx.own_token(),
            };
            deadline.bound(run.map(caught)).await
        }
        None => caught(run.await),
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// A poll at least this long held its thread: async code yields within microseconds.
const HELD: Duration = Duration::from_millis(10);

/// A step attempt's timeout.
///
/// Once `limit` has passed, the attempt's token fires. Without a grace it is dropped at once and fails as timed out,
/// as `tokio::time::timeout` would do. With a grace (a deploy step that restores the last good version) it is polled
/// up to `grace` longer, and fails as timed out with what it said; still running then, it is dropped.
///
/// Unlike `tokio::time::timeout`, when `check_blocking` is set an attempt that held its thread across its deadline
/// (a poll of at least 10 ms, by the wall clock, that began before the deadline and ended after it: blocking work,
/// not an `.await`) fails with a timeout that says so, even if it then returned a result: `tokio::time::timeout`
/// would report it on time, because the timer could only be looked at once the thread came back. A short poll that
/// happens to straddle the deadline is no such thing, and neither is time moved by `tokio::time::advance` in a test.
struct Deadline<'t> {
    limit: Duration,
    grace: Duration,
    check_blocking: bool,
    token: Option<&'t tokio_util::sync::CancellationToken>,
}

impl Deadline<'_> {
    async fn bound<F>(self, future: F) -> Result<(), StepError>
    where
        F: Future<Output = Result<(), StepError>>,
    {
        let Self { limit, grace, check_blocking, token } = self;
        let started = tokio::time::Instant::now();
        let deadline = started + limit;
        let mut future = pin!(future);
        let mut timer = pin!(tokio::time::sleep_until(deadline));
        // Set once the deadline has passed and the step is being given its grace.
        let mut stopping: Option<Pin<Box<tokio::time::Sleep>>> = None;
        poll_fn(|cx| {
            let before = tokio::time::Instant::now();
            let wall = std::time::Instant::now();
            let polled = future.as_mut().poll(cx);
            let after = tokio::time::Instant::now();
            if let Some(grace_timer) = stopping.as_mut() {
                return match polled {
                    Poll::Ready(result) => Poll::Ready(Err(StepError::timeout(limit).explained(match result {
                        Ok(()) => "told to stop, it finished".to_owned(),
                        Err(e) => error_chain(&e),
                    }))),
                    Poll::Pending => match grace_timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Err(StepError::timeout(limit)
                            .explained(format!("told to stop, it did not end within {grace:?}; dropped")))),
                        Poll::Pending => Poll::Pending,
                    },
                };
            }
            if check_blocking && before <= deadline && after > deadline && wall.elapsed() >= HELD {
                return Poll::Ready(Err(held_past_deadline(
                    limit,
                    before - started,
                    after - started,
                    polled.is_ready(),
                )));
            }
            if let Poll::Ready(result) = polled {
                return Poll::Ready(result);
            }
            // The timer is looked at whatever the attempt left of the task's cooperative budget.
            match Pin::new(&mut tokio::task::coop::unconstrained(timer.as_mut())).poll(cx) {
                Poll::Ready(()) => match token {
                    Some(token) if !grace.is_zero() => {
                        token.cancel();
                        let mut grace_timer = Box::pin(tokio::time::sleep(grace));
                        // Registers the grace timer; the step, told to stop, is polled again at once.
                        let _ = grace_timer.as_mut().poll(cx);
                        stopping = Some(grace_timer);
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    _ => {
                        if let Some(token) = token {
                            token.cancel();
                        }
                        Poll::Ready(Err(StepError::timeout(limit)))
                    }
                },
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

fn held_past_deadline(limit: Duration, from: Duration, to: Duration, finished: bool) -> StepError {
    let outcome = if finished { "finished late; its result was discarded" } else { "was stopped when it yielded" };
    StepError::timeout(limit).explained(format!(
        "the attempt held its thread without yielding from {from:.2?} to {to:.2?} after it started, past its \
         deadline, and {outcome} (run blocking work with `tokio::task::spawn_blocking`)"
    ))
}
