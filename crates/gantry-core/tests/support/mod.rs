//! Helpers shared by the core's integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod metrics;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "gantry-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn display(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether a process is gone (or a zombie waiting to be reaped), waiting up to 5 s for it to go.
pub async fn process_gone(pid: u32) -> bool {
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) => {
                // The state follows the parenthesised command name.
                let state = stat.rsplit(')').next().and_then(|rest| rest.trim_start().chars().next());
                if state == Some('Z') {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Reads a pid a test script wrote, waiting up to 5 s for the file.
pub async fn read_pid(path: &Path) -> u32 {
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pid in {}", path.display());
}

/// Runs `run` as a task, cancels it after `after`, and returns its report with how long the run took.
pub async fn cancel_after(run: gantry_core::Run, after: Duration) -> (gantry_core::RunReport, Duration) {
    let token = run.cancellation_token();
    let started = tokio::time::Instant::now();
    let handle = tokio::spawn(run.execute());
    tokio::time::sleep(after).await;
    token.cancel();
    let report = handle.await.unwrap().unwrap();
    (report, started.elapsed())
}

/// Runs a pipeline with one subscriber and returns the report with every event of the run.
pub async fn run_collecting(
    pipeline: &gantry_core::Pipeline,
    context: gantry_core::Context,
) -> (gantry_core::RunReport, Vec<gantry_core::Event>) {
    use futures::StreamExt;
    let run = gantry_core::Run::new(pipeline, context);
    let events = run.subscribe();
    let report = run.execute().await.unwrap();
    (report, events.collect().await)
}
