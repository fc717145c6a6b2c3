//! Panic messages with the run's secrets masked.
//!
//! A panic in a step (or a condition, a hook, a `describe`) is caught and reported as the step's failure, masked like
//! every error. Before it unwinds, though, Rust's panic hook prints its message to standard error, where a secret in
//! it would be shown. While Gantry polls a run's code, the thread knows the run's [`Redactor`]; Gantry's hook (set
//! once, at the first run, in front of whatever hook the host had) prints such a panic's message masked instead, in
//! the default hook's shape. Panics whose message holds no secret, and panics outside Gantry's polls (a task a step
//! spawned, the host's own code), go to the host's hook unchanged. A host that sets its own hook after the first
//! run replaces Gantry's: it then gets every panic unmasked.

use std::cell::RefCell;
use std::sync::Once;

use crate::attempt::panic_message;
use crate::secret::Redactor;

thread_local! {
    /// The redactor of the run whose code this thread is polling, if any.
    static MASKING: RefCell<Option<Redactor>> = const { RefCell::new(None) };
}

/// Sets the thread's masking to a run's redactor until dropped, then puts back what was there (sub-runs nest). A run
/// without secrets has nothing to mask and sets nothing: entering costs it one atomic load.
pub(crate) struct Masking(Option<Option<Redactor>>);

impl Masking {
    pub(crate) fn enter(redactor: &Redactor) -> Self {
        if redactor.is_empty() {
            return Self(None);
        }
        install_hook();
        let previous = MASKING.with(|m| m.replace(Some(redactor.clone())));
        Self(Some(previous))
    }
}

impl Drop for Masking {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            MASKING.with(|m| *m.borrow_mut() = previous);
        }
    }
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
