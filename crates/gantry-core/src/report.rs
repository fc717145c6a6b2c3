//! What a run did: the status of the run and of every step.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// It ran and succeeded.
    Succeeded,
    /// It ran and failed (after its retries).
    Failed,
    /// It did not run: its trigger rule or condition said no, or the run was cancelled first.
    Skipped,
    /// It was running when the run was cancelled.
    Cancelled,
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        })
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// No step failed, except under `allow_failure`.
    Succeeded,
    /// A step failed, even if a failure path then ran and succeeded.
    Failed,
    /// The run was cancelled.
    Cancelled,
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        })
    }
}

/// One step's part of a [`RunReport`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StepReport {
    /// The step's name, `outer/inner` inside sub-pipelines.
    pub name: Arc<str>,
    /// How it ended.
    pub status: StepStatus,
    /// Whether it failed under `allow_failure` (its status is then `Failed`, but the run did not fail for it).
    pub allowed_failure: bool,
    /// Why it failed or was skipped, secrets masked.
    pub reason: Option<Arc<str>>,
    /// How many attempts ran.
    pub attempts: u32,
    /// From the first attempt's start to the end.
    pub duration: Duration,
    /// The outputs it published, by key, rendered with `Debug`, secrets masked.
    pub outputs: Vec<(String, String)>,
    /// The steps of its sub-pipeline runs, if it is a sub-pipeline or a fan-out.
    pub children: Vec<StepReport>,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunReport {
    /// The run's id.
    pub run_id: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// How the run ended.
    pub status: RunStatus,
    /// Its duration.
    pub duration: Duration,
    /// Every step of the pipeline, in the order they finished.
    pub steps: Vec<StepReport>,
    /// What the run's notifiers could not deliver, each as `<notifier>: <why>` (a notification failure never fails
    /// a run; it shows here).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub undelivered: Vec<String>,
}

impl RunReport {
    /// The report of the step with that name (`outer/inner` reaches into sub-pipelines).
    pub fn step(&self, name: &str) -> Option<&StepReport> {
        fn find<'r>(steps: &'r [StepReport], name: &str) -> Option<&'r StepReport> {
            steps.iter().find_map(|s| if &*s.name == name { Some(s) } else { find(&s.children, name) })
        }
        find(&self.steps, name)
    }

    /// The status of the named step.
    pub fn status_of(&self, name: &str) -> Option<StepStatus> {
        self.step(name).map(|s| s.status)
    }

    /// Every step, sub-pipeline steps included, depth first.
    pub fn all_steps(&self) -> Vec<&StepReport> {
        fn walk<'r>(steps: &'r [StepReport], out: &mut Vec<&'r StepReport>) {
            for s in steps {
                out.push(s);
                walk(&s.children, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        out
    }

    /// One line: the status, and for a failed run the steps whose failure failed it.
    pub fn summary(&self) -> String {
        let failed: Vec<&str> = self
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Failed && !s.allowed_failure)
            .map(|s| &*s.name)
            .collect();
        match self.status {
            RunStatus::Failed if !failed.is_empty() => {
                format!("failed at {}", failed.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
            }
            status => status.to_string(),
        }
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "run {} of `{}`: {} in {:.2?}", self.run_id, self.pipeline, self.summary(), self.duration)?;
        let width = self.all_steps().iter().map(|s| s.name.len()).max().unwrap_or(4);
        for s in self.all_steps() {
            let status = if s.allowed_failure { "failed (allowed)".to_owned() } else { s.status.to_string() };
            let mut line = format!("  {:<width$}  {:<16} {:>9.2?}", s.name, status, s.duration);
            if s.attempts > 1 {
                line.push_str(&format!("  {} attempts", s.attempts));
            }
            if let Some(reason) = &s.reason {
                line.push_str("  ");
                // A reason of several lines (a command's last lines of stderr) keeps to its column.
                let column = line.chars().count();
                let mut lines = reason.lines();
                line.push_str(lines.next().unwrap_or_default());
                for more in lines {
                    line.push('\n');
                    line.extend(std::iter::repeat_n(' ', column));
                    line.push_str(more);
                }
            }
            writeln!(f, "{line}")?;
        }
        for failure in &self.undelivered {
            writeln!(f, "  notification not delivered: {failure}")?;
        }
        Ok(())
    }
}
