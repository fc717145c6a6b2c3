//! The command step: argv without a shell, streaming, exit codes, templates.

mod support;

use gantry_core::{CommandStep, Context, Event, LogStream, Pipeline, RetryPolicy, StepStatus};

async fn run_one(step: CommandStep, ctx: Context) -> (gantry_core::RunReport, Vec<Event>) {
    let p = Pipeline::builder("p").step("cmd", step).build().unwrap();
    support::run_collecting(&p, ctx).await
}

fn lines(events: &[Event]) -> Vec<(LogStream, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { stream, line, .. } => Some((*stream, line.to_string())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn output_is_streamed_line_by_line_on_its_stream() {
    let script = "echo one; echo two >&2; printf 'three\\nfour'";
    let (report, events) = run_one(CommandStep::new("sh").args(["-c", script]), Context::new()).await;
    assert_eq!(report.status_of("cmd"), Some(StepStatus::Succeeded));
    let mut got = lines(&events);
    got.sort();
    assert_eq!(
        got,
        [
            (LogStream::Stdout, "four".to_owned()),
            (LogStream::Stdout, "one".to_owned()),
            (LogStream::Stdout, "three".to_owned()),
            (LogStream::Stderr, "two".to_owned())
        ]
    );
}

#[tokio::test]
async fn arguments_are_argv_never_a_shell() {
    // Shell syntax in a variable reaches the program as one literal argument.
    let ctx = Context::new().var("service", "api; echo pwned $(id -u) > /dev/null");
    let (_, events) = run_one(CommandStep::new("printf").args(["[%s]", "{{service}}"]), ctx).await;
    assert_eq!(lines(&events), [(LogStream::Stdout, "[api; echo pwned $(id -u) > /dev/null]".to_owned())]);
}

#[tokio::test]
async fn a_non_zero_exit_fails_with_the_code_and_the_last_stderr_lines() {
    let script = "for i in 1 2 3 4 5; do echo err$i >&2; done; echo out; exit 7";
    let step = CommandStep::new("sh").args(["-c", script]).tail_lines(2);
    let (report, _) = run_one(step, Context::new()).await;
    let cmd = report.step("cmd").unwrap();
    assert_eq!(cmd.status, StepStatus::Failed);
    assert_eq!(cmd.reason.as_deref(), Some("`sh` exited with code 7; last lines of stderr:\nerr4\nerr5"));
}

#[tokio::test]
async fn environment_working_directory_and_templates() {
    let tmp = support::TempDir::new("cwd");
    let step = CommandStep::new("sh")
        .args(["-c", "echo \"$GREETING from $(pwd)\""])
        .env("GREETING", "hello {{service}}")
        .current_dir("{{dir}}");
    let ctx = Context::new().var("service", "web").var("dir", tmp.display());
    let (_, events) = run_one(step, ctx).await;
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    assert_eq!(lines(&events), [(LogStream::Stdout, format!("hello web from {}", dir.display()))]);
}

#[tokio::test]
async fn a_missing_program_is_a_clear_error() {
    let (report, _) = run_one(CommandStep::new("no-such-program-gantry"), Context::new()).await;
    let reason = report.step("cmd").unwrap().reason.clone().unwrap();
    assert!(reason.starts_with("could not start `no-such-program-gantry`: "), "{reason}");
    assert!(reason.contains("No such file or directory"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_marked_retryable_are_retried() {
    let tmp = support::TempDir::new("retry");
    // Fails with 75 (EX_TEMPFAIL) until the third attempt.
    let script = "n=$(cat {{dir}}/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > {{dir}}/n; [ $n -ge 3 ] || exit 75";
    let step = CommandStep::new("sh").args(["-c", script]).retry_on_exit_codes([75]);
    let p = Pipeline::builder("p")
        .step("cmd", step)
        .retry(RetryPolicy::fixed(3, std::time::Duration::from_millis(10)))
        .build()
        .unwrap();
    let report = p.run(Context::new().var("dir", tmp.display())).await.unwrap();
    let cmd = report.step("cmd").unwrap();
    assert_eq!((cmd.status, cmd.attempts), (StepStatus::Succeeded, 3));
}

#[test]
fn describe_and_variables() {
    let step = CommandStep::new("helm")
        .args(["upgrade", "{{service}}", "--set", "token={{secrets.token}}"])
        .env("KUBECONFIG", "{{kubeconfig}}");
    use gantry_core::Step;
    assert_eq!(step.variables().unwrap(), ["service", "secrets.token", "kubeconfig"]);
    let repeated = CommandStep::new("echo").args(["{{x}}", "{{y}}", "{{x}}"]);
    assert_eq!(repeated.variables().unwrap(), ["x", "y"], "each variable once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_command_is_retried_under_a_retry_policy_without_naming_exit_codes() {
    let tmp = support::TempDir::new("retry-default");
    let script = "n=$(cat {{dir}}/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > {{dir}}/n; [ $n -ge 2 ] || exit 1";
    let p = Pipeline::builder("p")
        .step("cmd", CommandStep::new("sh").args(["-c", script]))
        .retry(RetryPolicy::fixed(2, std::time::Duration::from_millis(10)))
        .build()
        .unwrap();
    let report = p.run(Context::new().var("dir", tmp.display())).await.unwrap();
    let cmd = report.step("cmd").unwrap();
    assert_eq!((cmd.status, cmd.attempts), (StepStatus::Succeeded, 2), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_named_for_retries_are_the_only_ones_retried() {
    let p = |step: CommandStep| {
        Pipeline::builder("p")
            .step("cmd", step)
            .retry(RetryPolicy::fixed(2, std::time::Duration::from_millis(1)))
            .build()
            .unwrap()
    };
    let other_code = p(CommandStep::new("sh").args(["-c", "exit 4"]).retry_on_exit_codes([75]));
    let report = other_code.run(Context::new()).await.unwrap();
    assert_eq!(report.step("cmd").unwrap().attempts, 1, "{report}");
    let never = p(CommandStep::new("sh").args(["-c", "exit 75"]).retry_on_exit_codes([]));
    let report = never.run(Context::new()).await.unwrap();
    assert_eq!(report.step("cmd").unwrap().attempts, 1, "{report}");
    let missing = p(CommandStep::new("no-such-program-gantry"));
    let report = missing.run(Context::new()).await.unwrap();
    assert_eq!(report.step("cmd").unwrap().attempts, 1, "a program that cannot start is not retried: {report}");
}

#[tokio::test]
async fn the_report_table_keeps_a_multi_line_reason_in_its_column() {
    let step = CommandStep::new("sh").args(["-c", "echo first >&2; echo second >&2; exit 2"]);
    let (report, _) = run_one(step, Context::new()).await;
    let table = report.to_string();
    let lines: Vec<&str> = table.lines().collect();
    let first = lines.iter().position(|l| l.contains("exited with code 2")).expect(&table);
    let column = lines[first].find("`sh` exited").unwrap();
    for (line, text) in lines[first + 1..=first + 2].iter().zip(["first", "second"]) {
        assert_eq!(line.find(text), Some(column), "continuation lines start under the reason:\n{table}");
        assert!(line[..column].trim().is_empty(), "{table}");
    }
}
