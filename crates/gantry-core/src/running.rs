//! The set of running step futures of one coordinator.
//!
//! Like `futures::stream::FuturesUnordered`, but its slots and their wakers are reused from one step to the next
//! instead of allocated per future: a pipeline of ten thousand steps that each wait once allocates a slot per step
//! running at the same time, not per step. A slot's waker puts the slot's index on a shared ready list and wakes the
//! coordinator; a future just added is ready at once, without a wake.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// What the wakers of a set share: the indices of slots woken, and the coordinator's waker.
#[derive(Default)]
struct Shared {
    woken: Mutex<Vec<u32>>,
    parent: AtomicWaker,
}

struct SlotWaker {
    index: u32,
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.shared.woken.lock().unwrap_or_else(|e| e.into_inner()).push(self.index);
            self.shared.parent.wake();
        }
    }
}

struct Slot<F> {
    future: Option<F>,
    signal: Arc<SlotWaker>,
    waker: Waker,
}

/// Running futures, polled when woken; `poll_next` yields the output of one that finished.
pub(crate) struct RunningSet<F> {
    slots: Vec<Slot<F>>,
    free: Vec<u32>,
    /// Slots to poll, known without a wake (just added) or taken from the shared list.
    ready: Vec<u32>,
    shared: Arc<Shared>,
    len: usize,
}

impl<F: Future + Unpin> RunningSet<F> {
    pub(crate) fn new() -> Self {
        Self { slots: Vec::new(), free: Vec::new(), ready: Vec::new(), shared: Arc::default(), len: 0 }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many futures wait to be polled without a wake (just added).
    pub(crate) fn unpolled(&self) -> usize {
        self.ready.len()
    }

    pub(crate) fn push(&mut self, future: F) {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = self.slots.len() as u32;
                let signal =
                    Arc::new(SlotWaker { index, queued: AtomicBool::new(false), shared: Arc::clone(&self.shared) });
                let waker = Waker::from(Arc::clone(&signal));
                self.slots.push(Slot { future: None, signal, waker });
                index
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.future = Some(future);
        slot.signal.queued.store(true, Ordering::Release);
        self.ready.push(index);
        self.len += 1;
    }

    /// Polls woken futures until one finishes (its output), none is left (`None`), or none is ready (`Pending`).
    ///
    /// One call does a bounded amount of work and then yields (wakes the caller and returns `Pending`): after as many
    /// polls as there are futures, after two futures woke themselves while being polled (they asked to yield, or
    /// tokio's cooperative budget turned them away, which wakes them at once), and as soon as the task's budget is
    /// spent. Polling such futures again in the same call would spin without ever giving the runtime the chance to
    /// refill the budget, drive its timers and I/O, or reap child processes: a run awaited inline on a
    /// multi-thread runtime (where those wakes are not deferred) would never return.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        if self.len == 0 {
            return Poll::Ready(None);
        }
        let mut polled = 0usize;
        let mut yielded = 0u32;
        loop {
            if self.ready.is_empty() {
                // Register first, then look: a wake in between is either seen here or wakes us.
                self.shared.parent.register(cx.waker());
                std::mem::swap(&mut self.ready, &mut *self.shared.woken.lock().unwrap_or_else(|e| e.into_inner()));
                if self.ready.is_empty() {
                    return Poll::Pending;
                }
            }
            if polled >= self.len || yielded >= 2 || !tokio::task::coop::has_budget_remaining() {
                // Futures are ready, but this call has done its share: come back after the runtime has run.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let Some(index) = self.ready.pop() else { continue };
            let slot = &mut self.slots[index as usize];
            slot.signal.queued.store(false, Ordering::Release);
            let Some(future) = slot.future.as_mut() else { continue };
            polled += 1;
            if let Poll::Ready(output) = Pin::new(future).poll(&mut Context::from_waker(&slot.waker)) {
                slot.future = None;
                self.free.push(index);
                self.len -= 1;
                return Poll::Ready(Some(output));
            }
            // Woken while it was polled: it yielded on purpose, or was turned away by the budget.
            if slot.signal.queued.load(Ordering::Acquire) {
                yielded += 1;
            }
        }
    }

    /// Removes every running future, for dropping.
    pub(crate) fn take_all(&mut self) -> Vec<F> {
        self.ready.clear();
        self.len = 0;
        let mut all = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Some(future) = slot.future.take() {
                all.push(future);
                self.free.push(index as u32);
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test]
    async fn yields_outputs_as_futures_finish_and_reuses_slots() {
        let mut set = RunningSet::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        set.push(Box::pin(async move { rx.await.unwrap() }) as Pin<Box<dyn Future<Output = u32> + Send>>);
        set.push(Box::pin(async { 1 }));
        assert_eq!(poll_fn(|cx| set.poll_next(cx)).await, Some(1));
        assert_eq!(set.len(), 1);
        let sender = tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.send(7).unwrap();
        });
        assert_eq!(poll_fn(|cx| set.poll_next(cx)).await, Some(7));
        sender.await.unwrap();
        assert_eq!(poll_fn(|cx| set.poll_next(cx)).await, None);
        set.push(Box::pin(async { 3 }));
        assert_eq!(set.slots.len(), 2, "a free slot was reused");
        assert_eq!(poll_fn(|cx| set.poll_next(cx)).await, Some(3));
    }

    /// A future that wakes itself on every poll and finishes after `left` more polls, counting its polls.
    struct SelfWaking {
        left: u32,
        polls: Arc<std::sync::atomic::AtomicU32>,
    }

    impl Future for SelfWaking {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.left == 0 {
                return Poll::Ready(7);
            }
            self.left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn a_future_that_wakes_itself_is_not_polled_again_in_the_same_call() {
        let polls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut set = RunningSet::new();
        set.push(Box::pin(SelfWaking { left: 1000, polls: Arc::clone(&polls) }) as Pin<Box<dyn Future<Output = u32>>>);
        let woken = Arc::new(std::sync::atomic::AtomicU32::new(0));
        struct Count(Arc<std::sync::atomic::AtomicU32>);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let waker = Waker::from(Arc::new(Count(Arc::clone(&woken))));
        let mut cx = Context::from_waker(&waker);
        // One call polls the lone future once, sees it wake itself, and yields: it asks to be polled again.
        assert!(set.poll_next(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        assert!(woken.load(Ordering::Relaxed) >= 1, "the caller is woken to come back");
        // Each later call makes a bounded amount of progress; the future finishes after its 1,001st poll.
        let mut calls = 1;
        let output = loop {
            calls += 1;
            if let Poll::Ready(output) = set.poll_next(&mut cx) {
                break output;
            }
        };
        assert_eq!(output, Some(7));
        assert_eq!(polls.load(Ordering::Relaxed), 1001);
        assert_eq!(calls, 1001, "one poll per call");
    }

    #[test]
    fn many_self_waking_futures_get_at_most_two_polls_per_call_after_yielding() {
        let polls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut set = RunningSet::new();
        for _ in 0..100 {
            set.push(Box::pin(SelfWaking { left: 10, polls: Arc::clone(&polls) }) as Pin<Box<dyn Future<Output = u32>>>);
        }
        let mut cx = Context::from_waker(Waker::noop());
        assert!(set.poll_next(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 2, "two futures woke themselves: the call yields");
    }
}
