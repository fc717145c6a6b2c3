//! The live view: lines printed as they come, spinners for running steps on a terminal.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::time::Duration;

use futures::StreamExt as _;
use gantry_core::{Event, EventStream};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::render::{Renderer, fit};

/// Follows a run's events and prints them compactly; see the [crate docs](crate).
#[derive(Debug)]
pub struct TerminalView {
    width: usize,
    details: bool,
    live: bool,
}

impl Default for TerminalView {
    fn default() -> Self {
        Self::new()
    }
}

impl TerminalView {
    /// `COLUMNS` wide (80 by default), with spinners when standard output is a terminal.
    pub fn new() -> Self {
        let width = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(80);
        Self { width, details: false, live: std::io::stdout().is_terminal() }
    }

    /// Another width.
    #[must_use]
    pub fn width(mut self, columns: usize) -> Self {
        self.width = columns;
        self
    }

    /// Metric lines of verdicts, log lines and build steps too.
    #[must_use]
    pub fn details(mut self, details: bool) -> Self {
        self.details = details;
        self
    }

    /// Plain lines, no spinners, even on a terminal.
    #[must_use]
    pub fn plain(mut self) -> Self {
        self.live = false;
        self
    }

    /// Prints the run's events until it ends; returns the lines it printed.
    pub async fn follow(self, mut events: EventStream) -> Vec<String> {
        let mut renderer = Renderer::new(self.width, self.details);
        let multi = MultiProgress::with_draw_target(if self.live {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        });
        let style = ProgressStyle::with_template("{spinner:.cyan} {prefix} {elapsed:>4}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let mut spinners: HashMap<String, ProgressBar> = HashMap::new();
        let mut printed = Vec::new();
        while let Some(event) = events.next().await {
            if self.live {
                match &event {
                    Event::StepStarted { step, .. } => {
                        let bar = multi.add(ProgressBar::new_spinner().with_style(style.clone()));
                        bar.set_prefix(fit(step, self.width.saturating_sub(10)));
                        bar.enable_steady_tick(Duration::from_millis(100));
                        spinners.insert(step.to_string(), bar);
                    }
                    Event::StepFinished { step, .. } => {
                        if let Some(bar) = spinners.remove(&**step) {
                            bar.finish_and_clear();
                            multi.remove(&bar);
                        }
                    }
                    _ => {}
                }
            }
            for line in renderer.lines(&event) {
                if self.live {
                    let _ = multi.println(&line);
                } else {
                    #[allow(clippy::print_stdout)] // The view's output is standard output.
                    {
                        println!("{line}");
                    }
                }
                printed.push(line);
            }
        }
        for bar in spinners.into_values() {
            bar.finish_and_clear();
        }
        printed
    }
}
