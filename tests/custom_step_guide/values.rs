// src/values.rs
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Stdio;

use gantry::core::TemplateError;
use gantry::prelude::*;

/// Removes the file when dropped: after success, after an error, and when the step's future is dropped
/// (a timeout, or a cancellation not answered within the grace period).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `helm upgrade` with a values file that holds a secret, for tools that read secrets only from files.
pub struct HelmUpgrade;

#[async_trait]
impl Step for HelmUpgrade {
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let service = ctx.require_var("service")?;
        let password = ctx.secret("db_password")?;
        let path = std::env::temp_dir().join(format!("{}-{service}-{}.yaml", ctx.run_id(), ctx.attempt()));
        let _cleanup = RemoveOnDrop(path.clone());
        // A small file: writing it synchronously does not hold up the run.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StepError::with_source("could not create the values file", e))?;
        writeln!(file, "db:\n  password: {:?}", password.expose())
            .map_err(|e| StepError::with_source("could not write the values file", e))?;
        drop(file);

        let mut child = tokio::process::Command::new("helm")
            .args(["upgrade", "--install", service.as_str(), "./chart", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .kill_on_drop(true) // the child dies with the step's future; its own children do not
            .spawn()
            .map_err(|e| StepError::with_source("could not start helm", e))?;
        let status = tokio::select! {
            status = child.wait() => status.map_err(|e| StepError::with_source("could not wait for helm", e))?,
            () = ctx.cancellation().cancelled() => {
                let _ = child.kill().await;
                return Err(StepError::cancelled());
            }
        };
        if status.success() { Ok(()) } else { Err(StepError::new(format!("helm failed: {status}"))) }
    }

    fn describe(&self, ctx: &StepContext) -> String {
        format!("helm upgrade {} with a values file, removed afterwards", ctx.var("service").unwrap_or_default())
    }

    fn variables(&self) -> Result<Vec<String>, TemplateError> {
        Ok(vec!["service".to_owned(), "secrets.db_password".to_owned()])
    }
}
