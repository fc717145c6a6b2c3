//! Running a builder program: its lines to an observer as they come, its process group killed when the build is
//! cancelled or its future dropped.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use gantry_core::{CancellationToken, LogStream};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::error::BuildError;

/// How many of the last lines a failure quotes.
const TAIL: usize = 25;
/// How long a cancelled builder has to stop after `SIGTERM`.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// How a program ended, with the last lines it printed (both streams).
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) tail: Vec<String>,
}

/// Stops the process group when dropped: `SIGTERM` at once (buildah then stops the `RUN` step's container, which
/// runs in a session of its own that a group signal does not reach), `SIGKILL` after the grace, from a thread,
/// since a drop cannot wait.
struct Group(Option<Pid>);

impl Group {
    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.0 {
            let _ = killpg(pid, signal);
        }
    }

    /// The program has exited: whatever it left in its group goes now.
    fn finish(mut self) {
        self.signal(Signal::SIGKILL);
        self.0 = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let Some(pid) = self.0.take() else { return };
        let _ = killpg(pid, Signal::SIGTERM);
        std::thread::spawn(move || {
            std::thread::sleep(TERM_GRACE);
            let _ = killpg(pid, Signal::SIGKILL);
        });
    }
}

/// Runs `binary args`, handing each line to `on_line` in the order each stream printed them.
pub(crate) async fn run(
    binary: &Path,
    args: &[OsString],
    env: &[(&str, &std::ffi::OsStr)],
    cancel: &CancellationToken,
    hint: &'static str,
    mut on_line: impl FnMut(LogStream, &str) + Send,
) -> Result<Finished, BuildError> {
    let mut command = tokio::process::Command::new(binary);
    command.args(args).envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Not `kill_on_drop`: a `SIGKILL` would leave the builder no time to stop its `RUN` container.
    command.process_group(0);
    let mut child = command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            BuildError::BuilderMissing { binary: binary.display().to_string(), hint }
        } else {
            BuildError::io(format!("could not start `{}`", binary.display()), e)
        }
    })?;
    let group = Group(child.id().map(|id| Pid::from_raw(id as i32)));
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(BuildError::io("the builder's output", std::io::Error::other("no pipes")));
    };
    // The pipes are read by a task of their own, which goes on reading (and dropping) after the build is dropped:
    // a builder whose output pipe closed would die of SIGPIPE before it stopped its `RUN` container.
    let (lines, mut received) = tokio::sync::mpsc::unbounded_channel();
    for (stream, reader) in [
        (LogStream::Stdout, Box::new(out) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        (LogStream::Stderr, Box::new(err)),
    ] {
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            while let Ok(n) = reader.read_until(b'\n', &mut buf).await {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf);
                let _ = lines.send((stream, text.trim_end_matches(['\n', '\r']).to_owned()));
                buf.clear();
            }
        });
    }
    drop(lines);
    let mut tail = VecDeque::with_capacity(TAIL);
    loop {
        tokio::select! {
            line = received.recv() => match line {
                Some((stream, line)) => {
                    on_line(stream, &line);
                    if tail.len() == TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
                None => break,
            },
            () = cancel.cancelled() => {
                group.signal(Signal::SIGTERM);
                if tokio::time::timeout(TERM_GRACE, child.wait()).await.is_err() {
                    group.signal(Signal::SIGKILL);
                    let _ = child.wait().await;
                }
                group.finish();
                return Err(BuildError::Cancelled);
            }
        }
    }
    let status = tokio::select! {
        status = child.wait() => status.map_err(|e| BuildError::io("could not wait for the builder", e))?,
        () = cancel.cancelled() => return Err(BuildError::Cancelled),
    };
    group.finish();
    Ok(Finished { status, tail: tail.into() })
}
