//! Events to lines: the part of the view that decides what to say, without a terminal.

use std::collections::HashSet;
use std::time::Duration;

use gantry_core::{Event, Phase, StepStatus};

/// `text` cut to `width` columns (characters), ending with `…` when cut.
pub fn fit(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) { format!("{}ms", d.as_millis()) } else { format!("{:.1}s", d.as_secs_f64()) }
}

/// Turns a run's events into the view's lines.
#[derive(Debug)]
pub struct Renderer {
    width: usize,
    details: bool,
    /// Steps whose failure a verdict already explained.
    explained: HashSet<String>,
}

impl Renderer {
    /// Lines of at most `width` columns; `details` adds metric lines, logs and build steps.
    pub fn new(width: usize, details: bool) -> Self {
        Self { width: width.max(20), details, explained: HashSet::new() }
    }

    /// The lines `event` adds (none for most).
    pub fn lines(&mut self, event: &Event) -> Vec<String> {
        let mut lines = Vec::new();
        match event {
            Event::RunStarted { run_id, pipeline, .. } => lines.push(format!("▶ {pipeline} {run_id}")),
            Event::StepRetrying { step, error, delay, .. } => {
                lines.push(format!("↻ {step}: {}; again in {}", first_line(error), seconds(*delay)));
            }
            Event::Log { step, line, .. } if self.details => lines.push(format!("  {step} │ {line}")),
            Event::BuildStep { step, layer } if self.details => lines.push(format!(
                "  {step} │ {}/{} {}: {} {}",
                layer.number,
                layer.of,
                layer.instruction,
                layer.source.describe(),
                seconds(layer.duration)
            )),
            Event::Phase { step, phase, message } => match phase {
                Phase::Verdict => {
                    self.explained.insert(step.to_string());
                    lines.push(format!("◆ {step}: {}", first_line(message)));
                    if self.details {
                        lines.extend(message.lines().skip(1).map(|l| format!("    {}", l.trim())));
                    }
                }
                Phase::Aborted | Phase::RolledBack | Phase::SwitchedBack => {
                    // What was restored: the message's last clause. Its first ones say why, which the step's
                    // verdict said already, or its failure line says next.
                    let restored = message.rsplit("; ").next().unwrap_or(message);
                    lines.push(format!("↩ {step}: {restored}"));
                }
                Phase::WaitingForApproval | Phase::WaitingForPromotion => {
                    lines.push(format!("⏸ {step}: {}", first_line(message)));
                }
                _ if self.details => lines.push(format!("  {step}: {}", first_line(message))),
                _ => {}
            },
            Event::StepFinished { step, status, reason, duration, .. } => {
                let line = match status {
                    StepStatus::Succeeded => format!("✔ {step} {}", seconds(*duration)),
                    StepStatus::Skipped => format!("⏭ {step} skipped"),
                    StepStatus::Cancelled => format!("■ {step} cancelled"),
                    StepStatus::Failed => {
                        let mut line = format!("✘ {step} {}", seconds(*duration));
                        if let Some(reason) = reason
                            && !self.explained.contains(&**step)
                        {
                            line.push_str(": ");
                            line.push_str(first_line(reason));
                        }
                        line
                    }
                };
                lines.push(line);
            }
            Event::RunFinished { status, duration, .. } => {
                lines.push(format!("■ run {status} in {}", seconds(*duration)))
            }
            _ => {}
        }
        lines.into_iter().map(|l| fit(&l, self.width)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn phase(step: &str, phase: Phase, message: &str) -> Event {
        Event::Phase { step: Arc::from(step), phase, message: Arc::from(message) }
    }

    #[test]
    fn a_verdict_is_said_once_and_every_line_fits() {
        let mut r = Renderer::new(80, false);
        let verdict = "Fail (score 0): critical metric failed: latency\n  latency: High, canary/baseline mean 1.361";
        let mut out = r.lines(&phase("canary[web]/deploy", Phase::Verdict, verdict));
        out.extend(r.lines(&phase(
            "canary[web]/deploy",
            Phase::Aborted,
            "canary web 3.1.0 aborted: analysis failed: Fail (score 0): critical metric failed: latency; all traffic back on web 2.9.0, canary removed",
        )));
        out.extend(r.lines(&Event::StepFinished {
            step: Arc::from("canary[web]/deploy"),
            status: StepStatus::Failed,
            reason: Some(Arc::from("canary web 3.1.0 aborted: analysis failed: Fail (score 0): ...")),
            attempts: 1,
            duration: Duration::from_millis(746),
        }));
        assert_eq!(
            out,
            [
                "◆ canary[web]/deploy: Fail (score 0): critical metric failed: latency",
                "↩ canary[web]/deploy: all traffic back on web 2.9.0, canary removed",
                "✘ canary[web]/deploy 746ms",
            ]
        );
        assert_eq!(out.iter().filter(|l| l.contains("Fail (score 0)")).count(), 1);
        let long = r.lines(&Event::StepRetrying {
            step: Arc::from("push"),
            attempt: 1,
            error: Arc::from("x".repeat(200)),
            delay: Duration::from_millis(200),
        });
        assert_eq!(long[0].chars().count(), 80);
        assert!(long[0].ends_with('…'));
    }

    #[test]
    fn an_unexplained_failure_says_why_and_details_add_metrics() {
        let mut r = Renderer::new(80, true);
        let failed = r.lines(&Event::StepFinished {
            step: Arc::from("smoke"),
            status: StepStatus::Failed,
            reason: Some(Arc::from("Job smoke-web failed: exit code 1\nmore")),
            attempts: 1,
            duration: Duration::from_secs(2),
        });
        assert_eq!(failed, ["✘ smoke 2.0s: Job smoke-web failed: exit code 1"]);
        let verdict = r.lines(&phase("c", Phase::Verdict, "Pass (score 100)\n  latency: Pass"));
        assert_eq!(verdict, ["◆ c: Pass (score 100)", "    latency: Pass"]);
        assert_eq!(fit("abc", 2), "a…");
    }
}
