//! The events of a run and the journal that delivers them to any number of subscribers.
//!
//! Delivery is lossless and in order: each subscriber reads the run's events at its own pace from a shared journal,
//! which forgets an event once every subscriber has read it. Subscribe before the run starts to see all of it
//! ([`Run::subscribe`](crate::Run::subscribe)); the stream ends after [`Event::RunFinished`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, SystemTime};

use futures::Stream;

use crate::context::Names;
use crate::report::{RunStatus, StepStatus};

/// Which output stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// Standard output, or a step's own informational log.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The phases of a deployment a step reports with [`StepContext::phase`](crate::StepContext::phase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// A release was deployed into a slot and is ready.
    Deployed,
    /// The share of traffic to the new version changed.
    WeightChanged,
    /// The deployment pauses for a while.
    Paused,
    /// The deployment waits for someone to promote it.
    WaitingForPromotion,
    /// An analysis reached a verdict.
    Verdict,
    /// The new version became the stable one.
    Promoted,
    /// The deployment was aborted: all traffic back to the stable version.
    Aborted,
    /// Traffic was switched back to the previous version after a promotion.
    SwitchedBack,
    /// The previous version was restored.
    RolledBack,
    /// A manual gate waits for a decision ([`Approval`](crate::Approval)).
    WaitingForApproval,
    /// A manual gate was approved: by whom, via what.
    Approved,
    /// A manual gate was rejected: by whom, via what, why.
    Rejected,
}

/// Where the layer of one step of an image build came from, as [`Event::BuildStep`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LayerSource {
    /// A stage's base image (`FROM`): found in local storage or pulled.
    BaseImage,
    /// The builder's local cache had it.
    Cache,
    /// It was pulled from the cache in a registry (`--cache-from`).
    RegistryCache,
    /// It was built.
    Built,
}

impl LayerSource {
    /// How the run view and logs say it: `cached`, `pulled from the registry cache`, `built`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::BaseImage => "base image",
            Self::Cache => "cached",
            Self::RegistryCache => "pulled from the registry cache",
            Self::Built => "built",
        }
    }
}

/// One finished step of an image build, as [`Event::BuildStep`] reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BuildLayer {
    /// The image being built (its first tag, or the context's name).
    pub image: Arc<str>,
    /// The step's number within its stage, from 1.
    pub number: u32,
    /// How many steps its stage has.
    pub of: u32,
    /// The instruction, as the builder printed it (with its stage, `[1/2] RUN make`, in multi-stage builds of
    /// buildah; secrets masked).
    pub instruction: Arc<str>,
    /// Where its layer came from.
    pub source: LayerSource,
    /// How long it took.
    pub duration: Duration,
}

/// Where a strategy's traffic goes, as [`Event::Traffic`] reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TrafficRoute {
    /// The release that was stable when the deployment began, `web 2.0.0` (active until a weight of 100 switches
    /// all traffic to the candidate).
    pub stable: String,
    /// The new (canary, preview) release.
    pub candidate: String,
    /// Percent of traffic to the candidate, 0–100.
    pub weight: u8,
    /// Requests that go to the candidate whatever the weight (a header rule), in words.
    pub matching: Option<String>,
}

/// Something that happened in a run. Step names of sub-pipelines are namespaced `outer/inner`.
/// Every text in an event has had the run's secrets masked.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The run started.
    RunStarted {
        /// The run's id.
        run_id: Arc<str>,
        /// The pipeline's name.
        pipeline: Arc<str>,
        /// Wall-clock start.
        at: SystemTime,
    },
    /// A step started an attempt.
    StepStarted {
        /// The step.
        step: Arc<str>,
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// A line of a step's output.
    Log {
        /// The step.
        step: Arc<str>,
        /// Where the line came from.
        stream: LogStream,
        /// The line, without its newline.
        line: Arc<str>,
    },
    /// A step reached a phase of a deployment (a traffic change, a pause, an analysis verdict, a promotion, an abort,
    /// a rollback): what notifiers and dashboards follow.
    Phase {
        /// The step.
        step: Arc<str>,
        /// Which phase.
        phase: Phase,
        /// What happened, with its numbers.
        message: Arc<str>,
    },
    /// An image build finished one step of its Containerfile (a `FROM`, `RUN`, `COPY`...): where its layer came
    /// from and how long it took. The details are behind an `Arc`, so that every event stays small.
    BuildStep {
        /// The pipeline step that builds.
        step: Arc<str>,
        /// The Containerfile step.
        layer: Arc<BuildLayer>,
    },
    /// An analysis reached a verdict: every metric's evidence (the baseline's and the canary's points, the effect and
    /// its interval, the decision), for dashboards that chart it. The [`Phase::Verdict`] event before it says the
    /// same in words.
    Analysis {
        /// The step that analysed.
        step: Arc<str>,
        /// The verdict.
        verdict: Arc<crate::analysis::Verdict>,
    },
    /// A strategy moved traffic between the stable version and the new one (a canary's weight, a blue/green preview
    /// route or switch, a promotion, a restore): the state of the route after the move.
    Traffic {
        /// The step.
        step: Arc<str>,
        /// The route after the move.
        route: Arc<TrafficRoute>,
    },
    /// An attempt failed with a retryable error and the step will run again after `delay`.
    StepRetrying {
        /// The step.
        step: Arc<str>,
        /// The attempt that failed.
        attempt: u32,
        /// Why it failed.
        error: Arc<str>,
        /// The backoff before the next attempt.
        delay: Duration,
    },
    /// A step reached its final status.
    StepFinished {
        /// The step.
        step: Arc<str>,
        /// How it ended.
        status: StepStatus,
        /// Why it failed or was skipped.
        reason: Option<Arc<str>>,
        /// How many attempts ran (0 for a skipped step).
        attempts: u32,
        /// Time from the first attempt's start to the end.
        duration: Duration,
    },
    /// The run finished.
    RunFinished {
        /// The run's id.
        run_id: Arc<str>,
        /// How it ended.
        status: RunStatus,
        /// Its duration.
        duration: Duration,
    },
}

impl Event {
    /// The step the event is about, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            Self::StepStarted { step, .. }
            | Self::Log { step, .. }
            | Self::Phase { step, .. }
            | Self::BuildStep { step, .. }
            | Self::Analysis { step, .. }
            | Self::Traffic { step, .. }
            | Self::StepRetrying { step, .. }
            | Self::StepFinished { step, .. } => Some(step),
            Self::RunStarted { .. } | Self::RunFinished { .. } => None,
        }
    }
}

/// An event as the journal keeps it. Step events name their step by scope and index, and readers look the name
/// up: the executor's hot path copies a few integers instead of touching a shared name (an atomic reference count
/// whose cache line would bounce between the executor's core and the reader's).
#[derive(Clone, Debug)]
pub(crate) enum Raw {
    Started { scope: u32, node: u32, attempt: u32 },
    Finished { scope: u32, node: u32, status: StepStatus, attempts: u32, duration: Duration, reason: Option<Arc<str>> },
    Event(Event),
}

/// The shared, append-only log of a run's events. Internal: users see [`EventStream`].
///
/// Emitters append to `pending` (one short lock; the order of appends is the order every reader sees). The executor
/// [`publish`](Journal::publish)es at the points where it waits, and when `pending` grows past a batch: the whole
/// batch moves to the readers' side under the other lock, so emitting and reading rarely contend. A lone reader
/// takes whole batches by swapping buffers; several readers each clone what they read.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    pending: Mutex<Vec<Raw>>,
    inner: Mutex<JournalInner>,
    /// Step names of every scope of the run, by scope id.
    names: Mutex<Vec<Names>>,
    subscribers: AtomicUsize,
    waiting: AtomicBool,
}

#[derive(Debug, Default)]
struct JournalInner {
    events: VecDeque<Raw>,
    /// Sequence number of `events[0]`.
    head: u64,
    /// Per subscriber: the next sequence number it reads, and its waker while it waits.
    cursors: Vec<Option<Cursor>>,
    closed: bool,
}

#[derive(Debug)]
struct Cursor {
    next: u64,
    waker: Option<Waker>,
}

/// Pending events past which an emitter publishes by itself.
const FLUSH_AT: usize = 512;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Journal {
    /// Whether anyone listens. Emitters skip building events when no one does.
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
    }

    /// Registers a scope's step names; raw events refer to them by the returned id.
    pub(crate) fn register(&self, names: Names) -> u32 {
        let mut tables = lock(&self.names);
        tables.push(names);
        tables.len() as u32 - 1
    }

    /// Appends an event; readers see it at the next [`publish`](Self::publish).
    pub(crate) fn emit(&self, event: Event) {
        if !self.is_active() {
            return;
        }
        let mut pending = lock(&self.pending);
        pending.push(Raw::Event(event));
        if pending.len() >= FLUSH_AT {
            drop(pending);
            self.publish();
        }
    }

    /// Appends a batch of events (emptying `events`), in order.
    pub(crate) fn emit_batch(&self, events: &mut Vec<Raw>) {
        if !self.is_active() {
            events.clear();
            return;
        }
        let mut pending = lock(&self.pending);
        if pending.is_empty() {
            std::mem::swap(&mut *pending, events);
        } else {
            pending.append(events);
        }
        if pending.len() >= FLUSH_AT {
            drop(pending);
            self.publish();
        }
    }

    /// Moves pending events to the readers and wakes those that wait.
    pub(crate) fn publish(&self) {
        let batch = std::mem::take(&mut *lock(&self.pending));
        let mut inner = lock(&self.inner);
        if !batch.is_empty() && !inner.cursors.is_empty() && !inner.closed {
            if inner.events.is_empty() {
                inner.events = VecDeque::from(batch);
            } else {
                inner.events.extend(batch);
            }
        }
        if self.waiting.swap(false, Ordering::AcqRel) {
            for cursor in inner.cursors.iter_mut().flatten() {
                if let Some(w) = cursor.waker.take() {
                    w.wake();
                }
            }
        }
    }

    /// No more events: readers end after reading what is there.
    pub(crate) fn close(&self) {
        self.waiting.store(true, Ordering::Release);
        self.publish();
        lock(&self.inner).closed = true;
        self.waiting.store(true, Ordering::Release);
        self.publish();
    }

    pub(crate) fn subscribe(self: &Arc<Self>) -> EventStream {
        self.publish();
        let mut inner = lock(&self.inner);
        let next = inner.head + inner.events.len() as u64;
        let cursor = Some(Cursor { next, waker: None });
        let id = match inner.cursors.iter().position(Option::is_none) {
            Some(free) => {
                inner.cursors[free] = cursor;
                free
            }
            None => {
                inner.cursors.push(cursor);
                inner.cursors.len() - 1
            }
        };
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        drop(inner);
        EventStream { journal: Arc::clone(self), id, buffer: VecDeque::new(), names: Vec::new() }
    }

    /// Drops the events every subscriber has read.
    fn compact(inner: &mut JournalInner) {
        let min = inner.cursors.iter().flatten().map(|c| c.next).min();
        let min = min.unwrap_or(inner.head + inner.events.len() as u64);
        let read = (min - inner.head) as usize;
        if read > 0 {
            inner.events.drain(..read);
            inner.head = min;
        }
    }
}

/// A subscriber's stream of a run's events; see [`Run::subscribe`](crate::Run::subscribe).
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct EventStream {
    journal: Arc<Journal>,
    id: usize,
    buffer: VecDeque<Raw>,
    /// The journal's name tables this reader has copied so far.
    names: Vec<Names>,
}

impl EventStream {
    fn resolve(&mut self, raw: Raw) -> Event {
        let scope = match &raw {
            Raw::Started { scope, .. } | Raw::Finished { scope, .. } => *scope as usize,
            Raw::Event(_) => 0,
        };
        if matches!(raw, Raw::Started { .. } | Raw::Finished { .. }) && scope >= self.names.len() {
            let tables = lock(&self.journal.names);
            self.names.extend(tables[self.names.len()..].iter().cloned());
        }
        match raw {
            Raw::Started { node, attempt, .. } => {
                Event::StepStarted { step: Arc::clone(self.names[scope].get(node)), attempt }
            }
            Raw::Finished { node, status, attempts, duration, reason, .. } => Event::StepFinished {
                step: Arc::clone(self.names[scope].get(node)),
                status,
                reason,
                attempts,
                duration,
            },
            Raw::Event(event) => event,
        }
    }

    fn pop(&mut self) -> Option<Event> {
        let raw = self.buffer.pop_front()?;
        Some(self.resolve(raw))
    }
}

/// How many events a reader among several copies at a time.
const BATCH: usize = 256;

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Event>> {
        if let Some(event) = self.pop() {
            return Poll::Ready(Some(event));
        }
        let this = &mut *self;
        let mut inner = lock(&this.journal.inner);
        let (head, available, closed) = (inner.head, inner.events.len() as u64, inner.closed);
        let alone = inner.cursors.iter().flatten().count() == 1;
        let Some(cursor) = inner.cursors[this.id].as_mut() else {
            return Poll::Ready(None);
        };
        let start = cursor.next;
        if start < head + available {
            if alone && start == head {
                // The only reader, and everything there is new to it: take it all.
                cursor.next = head + available;
                inner.head = head + available;
                std::mem::swap(&mut this.buffer, &mut inner.events);
            } else {
                let end = (head + available).min(start + BATCH as u64);
                cursor.next = end;
                let (from, to) = ((start - head) as usize, (end - head) as usize);
                this.buffer.extend(inner.events.range(from..to).cloned());
                Journal::compact(&mut inner);
            }
            drop(inner);
            return Poll::Ready(this.pop());
        }
        if closed {
            return Poll::Ready(None);
        }
        cursor.waker = Some(cx.waker().clone());
        this.journal.waiting.store(true, Ordering::Release);
        // Events still pending are published by their emitter: the executor before it waits or finishes,
        // anyone else at once.
        Poll::Pending
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let mut inner = lock(&self.journal.inner);
        inner.cursors[self.id] = None;
        self.journal.subscribers.fetch_sub(1, Ordering::Relaxed);
        Journal::compact(&mut inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn ev(n: u32) -> Event {
        Event::StepStarted { step: "s".into(), attempt: n }
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_event_in_order() {
        let j = Arc::new(Journal::default());
        let a = j.subscribe();
        let b = j.subscribe();
        for n in 0..1000 {
            j.emit(ev(n));
        }
        j.close();
        let a: Vec<_> = a.collect().await;
        let b: Vec<_> = b.collect().await;
        assert_eq!(a.len(), 1000);
        assert_eq!(a, b);
        assert_eq!(a[999], ev(999));
    }

    #[tokio::test]
    async fn read_events_are_forgotten_and_without_subscribers_nothing_is_kept() {
        let j = Arc::new(Journal::default());
        j.emit(ev(0));
        j.publish();
        assert!(lock(&j.inner).events.is_empty() && lock(&j.pending).is_empty());
        let mut s = j.subscribe();
        let mut t = j.subscribe();
        j.emit(ev(1));
        j.emit(ev(2));
        j.publish();
        assert_eq!(s.next().await, Some(ev(1)));
        assert_eq!(lock(&j.inner).events.len(), 2, "t has not read them yet");
        assert_eq!(t.next().await, Some(ev(1)));
        assert!(lock(&j.inner).events.is_empty(), "both read both into their batches");
        drop(t);
        drop(s);
        assert!(!j.is_active());
    }

    #[tokio::test]
    async fn a_waiting_subscriber_is_woken_by_publish() {
        let j = Arc::new(Journal::default());
        let mut s = j.subscribe();
        let reader = tokio::spawn(async move { s.next().await });
        tokio::task::yield_now().await;
        j.emit(ev(7));
        j.publish();
        assert_eq!(reader.await.unwrap(), Some(ev(7)));
    }
}
