//! Panic messages with the run's secrets masked.
//!
//! A panic in a step (or a condition, a hook, a `describe`) is caught and reported as the step's failure, masked like
//! every error. Before it unwinds, though, Rust's panic hook prints its message to standard error, where a secret in
//! it would be shown. While Gantry polls a run's code, the thread knows the run's [`Redactor`]; Gantry's hook (set
//! once, at the first run, in front of whatever hook the host had) prints such a panic's message masked instead, in
//! the default hook's shape. Panics whose message holds no secret, and panics outside Gantry's polls (a task a step
//! spawned, the host's own code), go to the host's hook unchanged. A host that sets its own hook after the first
//! run replaces Gantry's: it then gets every panic unmasked.

use std::cell::{Cell, RefCell};
use std::sync::Once;

use crate::attempt::panic_message;
use crate::secret::Redactor;

thread_local! {
    /// The redactor of the run whose code this thread is polling, if any.
    static MASKING: RefCell<Option<Redactor>> = const { RefCell::new(None) };
    /// How many `Masking` guards are live on this thread: whether it is polling a run's code now.
    static POLLING: Cell<u32> = const { Cell::new(0) };
}

/// Sets the thread's masking to a run's redactor until dropped, then puts back what was there (sub-runs nest). A run
/// without secrets has nothing to mask and sets nothing (two thread-local reads, no reference count touched); if a
/// step registers the run's first secret during the poll, [`cover`] sets it then, and the drop clears it.
pub(crate) struct Masking {
    /// What the thread had before: `None` when this guard set nothing and the thread had nothing either.
    previous: Option<Option<Redactor>>,
    /// Whether the thread had no masking when this guard was made (so that whatever `cover` set is cleared).
    was_empty: bool,
}

impl Masking {
    pub(crate) fn enter(redactor: &Redactor) -> Self {
        POLLING.with(|p| p.set(p.get() + 1));
        if redactor.is_empty() {
            let was_empty = MASKING.with(|m| m.borrow().is_none());
            return Self { previous: None, was_empty };
        }
        install_hook();
        let previous = MASKING.with(|m| m.replace(Some(redactor.clone())));
        Self { previous: Some(previous), was_empty: false }
    }
}

impl Drop for Masking {
    fn drop(&mut self) {
        POLLING.with(|p| p.set(p.get().saturating_sub(1)));
        if let Some(previous) = self.previous.take() {
            MASKING.with(|m| *m.borrow_mut() = previous);
        } else if self.was_empty {
            MASKING.with(|m| m.borrow_mut().take());
        }
    }
}

/// A step registered a secret while its run was polled: if the thread masks nothing yet (the run had no secret
/// when the poll began), it masks with `redactor` until the poll ends. Outside a poll (a task the step spawned),
/// nothing is set: nothing would clear it.
pub(crate) fn cover(redactor: &Redactor) {
    if POLLING.with(Cell::get) == 0 {
        return;
    }
    install_hook();
    MASKING.with(|m| {
        let mut masking = m.borrow_mut();
        if masking.is_none() {
            *masking = Some(redactor.clone());
        }
    });
}

fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info.payload_as_str().map_or_else(|| panic_message(info.payload()), str::to_owned);
            let masked = MASKING.with(|m| m.borrow().as_ref().map(|r| r.redact(&message).into_owned()));
            match masked {
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
