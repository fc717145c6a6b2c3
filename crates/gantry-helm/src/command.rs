//! Running the `helm` binary: argv only (never a shell), values on stdin, output captured.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// What went wrong running Helm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelmError {
    /// No `helm` binary where it was looked for.
    #[error("helm is not installed: no `{0}` on the PATH (install Helm 3 or 4, or give its path with Helm::at)")]
    NotInstalled(String),
    /// Helm ran and failed.
    #[error("`helm {command}` failed (exit {code}): {stderr}")]
    Failed {
        /// The subcommand (`upgrade`, `history`, ...).
        command: String,
        /// Its exit code.
        code: i32,
        /// The end of its error output.
        stderr: String,
    },
    /// Helm could not be started or talked to.
    #[error("could not run helm: {0}")]
    Io(String),
    /// Helm's output was not what was expected.
    #[error("unexpected output from `helm {command}`: {why}")]
    Output {
        /// The subcommand.
        command: String,
        /// What did not fit.
        why: String,
    },
}

/// Where the `helm` binary is.
#[derive(Clone, Debug)]
pub struct Helm {
    program: String,
    env: Vec<(String, String)>,
}

impl Helm {
    /// `helm`, looked up on the `PATH` when it runs.
    pub fn on_path() -> Self {
        Self { program: "helm".into(), env: Vec::new() }
    }

    /// A given binary.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { program: path.into().display().to_string(), env: Vec::new() }
    }

    /// An environment variable for every Helm command, e.g. `HELM_DRIVER=configmap` for Helm's ConfigMap release
    /// storage (Secret storage is Helm's default), or `HELM_CACHE_HOME`.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The binary's path, or why there is none.
    pub(crate) fn resolve(&self) -> Result<PathBuf, HelmError> {
        let candidate = PathBuf::from(&self.program);
        if candidate.components().count() > 1 {
            return if candidate.is_file() {
                Ok(candidate)
            } else {
                Err(HelmError::NotInstalled(self.program.clone()))
            };
        }
        std::env::var_os("PATH")
            .and_then(|path| std::env::split_paths(&path).map(|d| d.join(&self.program)).find(|p| p.is_file()))
            .ok_or_else(|| HelmError::NotInstalled(self.program.clone()))
    }

    /// Runs `helm <args>` with `stdin` (if any) on its standard input; returns its standard output.
    pub(crate) async fn run(&self, args: &[String], stdin: Option<&[u8]>) -> Result<String, HelmError> {
        let program = self.resolve()?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| HelmError::Io(e.to_string()))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            match pipe.write_all(input).await {
                // Helm exited without reading its values (a failure before it got there): its exit status says why.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(HelmError::Io(format!("writing values to helm: {e}"))),
                Ok(()) => {}
            }
            drop(pipe);
        }
        let output = child.wait_with_output().await.map_err(|e| HelmError::Io(e.to_string()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            return Err(HelmError::Failed {
                command: args.first().cloned().unwrap_or_default(),
                code: output.status.code().unwrap_or(-1),
                stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Which cluster a Helm command talks to: `--kubeconfig` and `--kube-context` (templates), a kubeconfig made for
/// each run by a [`KubeconfigSource`](gantry_kube::KubeconfigSource) (an EKS cluster with a fresh token), or Helm's
/// own lookup (`KUBECONFIG`, then `~/.kube/config`) when none is set.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClusterAccess {
    pub(crate) kubeconfig: Option<String>,
    pub(crate) context: Option<String>,
    pub(crate) source: Option<std::sync::Arc<dyn gantry_kube::KubeconfigSource>>,
}

/// Stands in the argv for the path of a kubeconfig made for the run, until it is made.
const MADE_FOR_THE_RUN: &str = "<kubeconfig made for the run>";

impl ClusterAccess {
    /// The flags, rendered with `render`.
    pub(crate) fn args(
        &self,
        render: &dyn Fn(&str) -> Result<String, gantry_core::TemplateError>,
    ) -> Result<Vec<String>, gantry_core::TemplateError> {
        let mut args = Vec::new();
        if self.source.is_some() {
            args.extend(["--kubeconfig".to_owned(), MADE_FOR_THE_RUN.to_owned()]);
        } else if let Some(path) = &self.kubeconfig {
            args.extend(["--kubeconfig".to_owned(), render(path)?]);
        }
        if let Some(context) = &self.context {
            args.extend(["--kube-context".to_owned(), render(context)?]);
        }
        Ok(args)
    }

    /// The templates it holds.
    pub(crate) fn templates(&self) -> impl Iterator<Item = &String> {
        self.kubeconfig.iter().chain(&self.context)
    }

    /// Makes the kubeconfig of the source, if there is one, in a private file (mode 0600) that is removed when the
    /// returned guard is dropped, and puts its path in `args`.
    pub(crate) async fn made_for_the_run(
        &self,
        args: &mut [String],
    ) -> Result<Option<KubeconfigFile>, gantry_core::StepError> {
        let Some(source) = &self.source else { return Ok(None) };
        let kubeconfig = source.kubeconfig().await?;
        let file = KubeconfigFile::write(kubeconfig.expose())?;
        for arg in args.iter_mut().filter(|a| *a == MADE_FOR_THE_RUN) {
            *arg = file.0.display().to_string();
        }
        Ok(Some(file))
    }
}

/// A kubeconfig written for one Helm run; removed on drop.
#[derive(Debug)]
pub(crate) struct KubeconfigFile(std::path::PathBuf);

impl KubeconfigFile {
    fn write(text: &str) -> Result<Self, gantry_core::StepError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "gantry-helm-{}-{}.kubeconfig",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let failed =
            |e: std::io::Error| gantry_core::StepError::new(format!("could not write a kubeconfig for helm: {e}"));
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(failed)?;
        // From here the file is removed whatever happens, a failed write included.
        let guard = Self(path);
        file.write_all(text.as_bytes()).map_err(failed)?;
        Ok(guard)
    }
}

impl Drop for KubeconfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl From<HelmError> for gantry_core::StepError {
    fn from(e: HelmError) -> Self {
        gantry_core::StepError::new(e.to_string())
    }
}
