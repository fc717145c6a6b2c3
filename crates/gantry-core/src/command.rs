//! The command step: runs a program with templated arguments, never through a shell.
//!
//! The program runs in a process group of its own. Its standard output and error are streamed line by line as log
//! events. A non-zero exit fails the step with the exit code and the last lines of standard error; such a failure is
//! retryable (the step's retry policy, if any, decides), unless `retry_on_exit_codes` narrows it. Cancellation sends
//! `SIGTERM` to the whole group, then `SIGKILL` after the kill grace; a timeout (the step's future is dropped) kills
//! the group at once; when the program exits, whatever it left running in its group is killed too. Unix only.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::context::StepContext;
use crate::error::{StepError, TemplateError};
use crate::event::LogStream;
use crate::step::Step;
use crate::template::Template;

/// Runs a program. Arguments, environment values and the working directory are [`Template`]s over the run's
/// variables (`{{service}}`, `{{secrets.token}}`); every variable is checked before the run starts.
///
/// ```
/// use gantry_core::CommandStep;
/// let deploy = CommandStep::new("kubectl")
///     .args(["set", "image", "deployment/{{service}}", "{{service}}={{image}}"])
///     .env("KUBECONFIG", "{{kubeconfig}}")
///     .retry_on_exit_codes([75]);
/// # let _ = deploy;
/// ```
#[derive(Clone, Debug)]
pub struct CommandStep {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    env_clear: bool,
    current_dir: Option<String>,
    kill_grace: Duration,
    tail_lines: usize,
    /// Exit codes worth another attempt; `None`: any failure (a non-zero exit, a signal).
    retry_on: Option<Vec<i32>>,
    idempotent: bool,
}

struct Rendered {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    current_dir: Option<String>,
}

impl CommandStep {
    /// Runs `program` (a template too), found on `PATH` if it has no `/`.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            current_dir: None,
            kill_grace: Duration::from_secs(10),
            tail_lines: 20,
            retry_on: None,
            idempotent: false,
        }
    }

    /// Says that running the command again after an interruption is safe (it converges: `kubectl apply`, an upload
    /// that overwrites), so a resumed [durable run](crate::Run::resume) runs it again instead of failing it.
    #[must_use]
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Adds an argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable; the value is a template.
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Starts from an empty environment instead of the host process's.
    #[must_use]
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self
    }

    /// Runs in this directory (a template).
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<String>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// How long the program gets between `SIGTERM` and `SIGKILL` on cancellation (default 10 s).
    #[must_use]
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// How many lines of standard error a failure quotes (default 20).
    #[must_use]
    pub fn tail_lines(mut self, lines: usize) -> Self {
        self.tail_lines = lines;
        self
    }

    /// Makes only these exit codes worth another attempt. By default every failure of the program (a non-zero exit,
    /// a signal) is retryable, so that [`StepBuilder::retry`](crate::StepBuilder::retry) retries a failed command;
    /// a program that could not be started, or a template that could not be rendered, never is. With an empty list
    /// no failure is retried.
    #[must_use]
    pub fn retry_on_exit_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.retry_on.get_or_insert_with(Vec::new).extend(codes);
        self
    }

    fn templates(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .chain(self.env.iter().map(|(_, v)| v.as_str()))
            .chain(self.current_dir.as_deref())
    }

    fn render(&self, ctx: &StepContext) -> Result<Rendered, TemplateError> {
        let render = |source: &str| Template::parse(source).and_then(|t| ctx.render(&t));
        Ok(Rendered {
            program: render(&self.program)?,
            args: self.args.iter().map(|a| render(a)).collect::<Result<_, _>>()?,
            env: self.env.iter().map(|(k, v)| Ok((k.clone(), render(v)?))).collect::<Result<_, TemplateError>>()?,
            current_dir: self.current_dir.as_deref().map(render).transpose()?,
        })
    }
}

/// Kills the process group when dropped, unless disarmed: the step's future may be dropped at any await.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, signal);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn pump(
    reader: impl AsyncRead + Unpin + Send + 'static,
    ctx: StepContext,
    stream: LogStream,
    tail: Option<(Arc<Mutex<VecDeque<String>>>, usize)>,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(
        async move {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\n', '\r']);
                        ctx.log_to(stream, line);
                        if let Some((tail, keep)) = &tail {
                            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                            if tail.len() == *keep {
                                tail.pop_front();
                            }
                            if *keep > 0 {
                                tail.push_back(ctx.redact(line).into_owned());
                            }
                        }
                    }
                }
            }
        }
        .in_current_span(),
    ))
}

#[async_trait]
impl Step for CommandStep {
    fn idempotent(&self) -> bool {
        self.idempotent
    }

    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let r = self.render(ctx)?;
        let mut command = tokio::process::Command::new(&r.program);
        command.args(&r.args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        command.process_group(0).kill_on_drop(true);
        if self.env_clear {
            command.env_clear();
        }
        command.envs(r.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &r.current_dir {
            command.current_dir(dir);
        }
        let shown = ctx.redact(&r.program).into_owned();
        let mut child = command.spawn().map_err(|e| StepError::with_source(format!("could not start `{shown}`"), e))?;
        let guard = GroupGuard { pgid: child.id().map(|id| Pid::from_raw(id as i32)) };
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(self.tail_lines)));
        let mut pumps = Vec::new();
        if let Some(out) = child.stdout.take() {
            pumps.push(pump(out, ctx.clone(), LogStream::Stdout, None));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(pump(err, ctx.clone(), LogStream::Stderr, Some((Arc::clone(&tail), self.tail_lines))));
        }
        let token = ctx.cancellation();
        let status = tokio::select! {
            status = child.wait() => status,
            () = token.cancelled() => {
                guard.signal(Signal::SIGTERM);
                if tokio::time::timeout(self.kill_grace, child.wait()).await.is_err() {
                    guard.signal(Signal::SIGKILL);
                    let _ = child.wait().await;
                }
                return Err(StepError::cancelled());
            }
        };
        // What the program left running in its group goes with it; then its output pipes close.
        drop(guard);
        let drain = futures::future::join_all(pumps.iter_mut().map(|p| &mut p.0));
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        let status = status.map_err(|e| StepError::with_source(format!("could not wait for `{shown}`"), e))?;
        if status.success() {
            return Ok(());
        }
        let ended = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "failed".to_owned(),
        };
        let tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        let mut message = format!("`{shown}` {ended}");
        if !tail.is_empty() {
            message.push_str("; last lines of stderr:\n");
            message.push_str(&tail.iter().cloned().collect::<Vec<_>>().join("\n"));
        }
        let error = StepError::new(message);
        let retryable = match &self.retry_on {
            None => true,
            Some(codes) => status.code().is_some_and(|c| codes.contains(&c)),
        };
        Err(if retryable { error.retryable() } else { error })
    }

    fn describe(&self, ctx: &StepContext) -> String {
        let show = |s: &str| Template::parse(s).map(|t| ctx.render_masked(&t)).unwrap_or_else(|_| s.to_owned());
        let mut text = format!("runs `{}", show(&self.program));
        for arg in &self.args {
            text.push(' ');
            text.push_str(&show(arg));
        }
        text.push('`');
        if let Some(dir) = &self.current_dir {
            text.push_str(&format!(" in {}", show(dir)));
        }
        if !self.env.is_empty() {
            let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
            text.push_str(&format!(" with {}", names.join(", ")));
        }
        text
    }

    fn variables(&self) -> Result<Vec<String>, TemplateError> {
        Template::variables_of(self.templates())
    }
}
