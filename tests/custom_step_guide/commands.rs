// src/commands.rs
use std::time::Duration;

use gantry::prelude::*;

/// Points the deployment at the digest the `build` step set.
pub fn set_image() -> CommandStep {
    CommandStep::new("kubectl")
        .args(["set", "image", "deployment/{{service}}", "{{service}}=registry.example/{{service}}@{{build.digest}}"])
        .env("KUBECONFIG", "{{kubeconfig}}")
        .kill_grace(Duration::from_secs(5)) // SIGTERM, then SIGKILL 5 s later, on cancellation
        .tail_lines(40) // a failure quotes the last 40 lines of stderr
        .retry_on_exit_codes([75]) // only exit 75 is worth another attempt (by default every failure is)
}

/// Secrets go in through the environment: argv is visible to every user of the machine.
pub fn notify() -> CommandStep {
    CommandStep::new("./scripts/notify-slack")
        .args(["#deploys", "release of {{service}} to {{env}} finished"])
        .env("SLACK_TOKEN", "{{secrets.slack_token}}")
        .current_dir("{{workdir}}")
}
