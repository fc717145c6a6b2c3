//! Panic messages with the run's secrets masked.
//!
//! A panic in a step (or a condition, a hook, a `describe`) is caught and reported as the step's failure, masked like
//! every error. Before it unwinds, though, Rust's panic hook prints its message to standard error, where a secret in
//! it would be shown. While Gantry polls a run's code, the thread knows the run's [`Redactor`]; Gantry's hook (set
//! once, when a run with a secret is first polled, in front of whatever hook the host had) prints such a panic's
//! message masked instead, in the default hook's shape. Panics whose message holds no secret, and panics outside
//! Gantry's polls (a task a step spawned, the host's own code), go to the host's hook unchanged. A host that sets
//! its own hook after Gantry's replaces it: it then gets every panic unmasked.

use std::cell::{Cell, RefCell};
use std::sync::Once;

use crate::attempt::panic_message;
use crate::secret::Redactor;

thread_local! {
    /// The redactors of the runs whose code this thread is polling now (a run awaited inside another run's step
    /// nests), each once.
    static MASKING: RefCell<Vec<Redactor>> = const { RefCell::new(Vec::new()) };
    /// How many `Masking` guards are live on this thread: whether it is polling a run's code now.
    static POLLING: Cell<u32> = const { Cell::new(0) };
}

/// Masks panics with a run's redactor while a poll of the run's code lasts. A run without secrets has nothing to
/// mask and adds nothing (a counter and a check, no reference count touched); if one of its steps registers the
/// run's first secret during the poll, [`cover`] adds the redactor then. Whatever was added while the thread polled
/// is dropped when its outermost poll ends.
pub(crate) struct Masking {
    /// The redactor this guard added, to take away when it ends (the same run's sub-runs add nothing again).
    added: Option<Redactor>,
}

impl Masking {
    pub(crate) fn enter(redactor: &Redactor) -> Self {
        POLLING.with(|p| p.set(p.get() + 1));
        if redactor.is_empty() {
            return Self { added: None };
        }
        Self { added: add(redactor).then(|| redactor.clone()) }
    }
}

impl Drop for Masking {
    fn drop(&mut self) {
        let outermost = POLLING.with(|p| {
            p.set(p.get().saturating_sub(1));
            p.get() == 0
        });
        let added = self.added.take();
        let _ = MASKING.try_with(|m| {
            let mut masking = m.borrow_mut();
            if outermost {
                masking.clear();
            } else if let Some(added) = added
                && let Some(at) = masking.iter().rposition(|r| r.same_as(&added))
            {
                masking.remove(at);
            }
        });
    }
}

/// Adds `redactor` to the thread's masking unless it is there; whether it added it.
fn add(redactor: &Redactor) -> bool {
    install_hook();
    MASKING
        .try_with(|m| {
            let mut masking = m.borrow_mut();
            let known = masking.iter().any(|r| r.same_as(redactor));
            if !known {
                masking.push(redactor.clone());
            }
            !known
        })
        .unwrap_or(false)
}

/// A step registered a secret while its run was polled: the thread masks with `redactor` until its outermost poll
/// ends, if it did not already. Outside a poll (a task the step spawned), nothing is set: nothing would clear it.
pub(crate) fn cover(redactor: &Redactor) {
    if POLLING.with(Cell::get) > 0 {
        add(redactor);
    }
}

/// `message` masked with every redactor of the runs this thread is polling, if any.
fn masked(message: &str) -> Option<String> {
    MASKING
        .try_with(|m| {
            let masking = m.try_borrow().ok()?;
            if masking.is_empty() {
                return None;
            }
            let mut text = message.to_owned();
            for redactor in masking.iter() {
                if let std::borrow::Cow::Owned(less) = redactor.redact(&text) {
                    text = less;
                }
            }
            Some(text)
        })
        .ok()
        .flatten()
}

fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info.payload_as_str().map_or_else(|| panic_message(info.payload()), str::to_owned);
            match masked(&message) {
                Some(masked) if masked != message => {
                    let thread = std::thread::current();
                    let name = thread.name().unwrap_or("<unnamed>");
                    let at = info.location().map(|l| l.to_string()).unwrap_or_else(|| "an unknown place".to_owned());
                    let backtrace = std::backtrace::Backtrace::capture();
                    let mut text = format!("thread '{name}' panicked at {at}:\n{masked}\n");
                    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
                        text.push_str(&format!("stack backtrace:\n{backtrace}\n"));
                    }
                    // One write, as the default hook does, so that concurrent panics do not interleave.
                    use std::io::Write;
                    let _ = std::io::stderr().lock().write_all(text.as_bytes());
                }
                _ => previous(info),
            }
        }));
    });
}
