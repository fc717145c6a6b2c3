//! Slack notifications against the simulated Slack of the test kit: what people see in the channel, and what happens
//! when Slack is down.

use std::time::{Duration, Instant};

use gantry_core::{Context, Phase, Pipeline, Run, RunReport, RunStatus, Secret, StepError, step_fn};
use gantry_slack::{Notify, Slack};
use gantry_testkit::slack::{BOT_TOKEN, CHANNEL, SlackSim};

const API_KEY: &str = "dd-api-key-0123456789abcdef";

/// A canary release: deploys, gets a failing verdict, aborts, and fails; its error carries a secret.
fn failing_canary() -> Pipeline {
    Pipeline::builder("release")
        .step(
            "canary",
            step_fn(|ctx| async move {
                ctx.phase(Phase::Deployed, "v2 deployed to the canary slot");
                ctx.phase(
                    Phase::Verdict,
                    "failed: error_rate 4.1% vs 0.3% baseline (allowed +1%); p99 412 ms vs 380 ms: pass <8 samples>",
                );
                ctx.phase(Phase::Aborted, "traffic back to v1; canary scaled down");
                let key = ctx.secret("dd_api_key")?;
                Err(StepError::new(format!("analysis failed (queried with key {})", key.expose())))
            }),
        )
        .build()
        .unwrap()
}

fn context() -> Context {
    Context::new()
        .var("repo", "acme/shop")
        .var("sha", "4f2a9c1e77d0b5a3")
        .var("environment", "production")
        .secret("dd_api_key", Secret::new(API_KEY))
}

fn bot(sim: &SlackSim) -> Slack {
    Slack::bot(Secret::new(BOT_TOKEN), CHANNEL.0)
        .api_url(sim.api_url())
        .run_url("https://ci.example.com/runs/{run_id}")
        .dashboard_url("https://app.datadoghq.com/dashboard/abc-123?tpl_var_env={environment}")
        .backoff(Duration::from_millis(20))
}

async fn run(pipeline: &Pipeline, slack: Slack) -> RunReport {
    Run::new(pipeline, context()).with_id("run-42").notify(slack).execute().await.unwrap()
}

#[tokio::test]
async fn a_failed_canary_is_one_thread_ending_in_the_failure_under_an_updated_header() {
    let sim = SlackSim::start().await.unwrap();
    let report = run(&failing_canary(), bot(&sim)).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(report.undelivered.is_empty(), "{:?}", report.undelivered);

    let messages = sim.messages();
    let header = &messages[0];
    assert_eq!(header.thread_ts, None);
    assert_eq!(header.updates, 1, "the header was updated once, at the end");
    let header_text = header.all_text();
    assert!(header_text.contains(":x: *release* for `acme/shop` to *production* failed"), "{header_text}");
    assert!(header_text.contains("`canary` failed: analysis failed"), "{header_text}");
    for link in [
        "<https://ci.example.com/runs/run-42|Run run-42>",
        "<https://github.com/acme/shop/commit/4f2a9c1e77d0b5a3|Commit 4f2a9c1>",
        "<https://github.com/acme/shop/deployments/production|GitHub deployment>",
        "<https://app.datadoghq.com/dashboard/abc-123?tpl_var_env=production|Dashboard>",
    ] {
        assert!(header_text.contains(link), "{link} in {header_text}");
    }
    assert_eq!(header.blocks[1]["type"], "context", "links sit in a context block under the state");

    let thread = sim.thread(&header.ts);
    let texts: Vec<String> = thread.iter().map(|m| m.all_text()).collect();
    assert_eq!(thread.len(), 3, "{texts:#?}");
    assert!(
        texts[0].contains(":bar_chart: `canary` analysis verdict: failed: error_rate 4.1% vs 0.3%"),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains("&lt;8 samples&gt;"), "mrkdwn is escaped: {}", texts[0]);
    assert!(texts[1].contains(":rewind: `canary` rolled back: traffic back to v1"), "{}", texts[1]);
    assert!(texts[2].contains(":x: *release* for `acme/shop` to *production* failed in"), "{}", texts[2]);
    assert!(texts[2].contains("`canary` failed: analysis failed"), "the thread ends in the failure: {}", texts[2]);
    assert_eq!(messages.len(), 4, "nothing outside the run's thread: {messages:#?}");

    let updates: Vec<_> = sim.requests().into_iter().filter(|(path, _)| path.ends_with("chat.update")).collect();
    assert_eq!(updates[0].1["channel"], CHANNEL.1, "chat.update names the channel by id, as Slack requires");
}

#[tokio::test]
async fn secrets_never_reach_slack_nor_the_notifiers_debug_output() {
    let sim = SlackSim::start().await.unwrap();
    let slack = bot(&sim);
    let debug = format!("{slack:?}");
    assert!(!debug.contains(BOT_TOKEN), "{debug}");
    let hook = Slack::webhook(Secret::new(sim.webhook_url()));
    assert!(!format!("{hook:?}").contains("s3cr3tw3bh00k"));

    run(&failing_canary(), slack).await;
    let bodies: String = sim.requests().iter().map(|(_, body)| body.to_string()).collect();
    assert!(bodies.contains("queried with key ***"), "the masked reason is what Slack gets");
    assert!(!bodies.contains(API_KEY), "a secret reached Slack");
    assert!(!bodies.contains(BOT_TOKEN));
}

#[tokio::test]
async fn an_incoming_webhook_gets_one_message_per_event_and_waits_out_a_429() {
    let sim = SlackSim::start().await.unwrap();
    sim.rate_limit_next(1, 1);
    let slack = Slack::webhook(Secret::new(sim.webhook_url())).backoff(Duration::from_millis(20));
    let started = Instant::now();
    let report = run(&failing_canary(), slack).await;
    assert!(report.undelivered.is_empty(), "{:?}", report.undelivered);
    assert!(started.elapsed() >= Duration::from_secs(1), "the retry waited for Retry-After");

    let messages = sim.messages();
    assert_eq!(messages.len(), 4, "started, verdict, rolled back, failed: {messages:#?}");
    assert!(messages.iter().all(|m| m.thread_ts.is_none() && m.updates == 0));
    assert!(messages[0].all_text().contains(":rocket: *release*"));
    assert!(messages[3].all_text().contains("failed in"));
    assert_eq!(sim.requests().len(), 5, "the rate-limited request was sent again, once");
}

#[tokio::test]
async fn only_the_kinds_asked_for_are_told() {
    let sim = SlackSim::start().await.unwrap();
    let ok = Pipeline::builder("release").step("deploy", step_fn(|_| async { Ok(()) })).build().unwrap();
    let report = run(&ok, bot(&sim).only([Notify::Failed, Notify::RolledBack])).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    assert!(sim.messages().is_empty(), "a success was not asked for: {:#?}", sim.messages());

    let report = run(&failing_canary(), bot(&sim).only([Notify::Failed])).await;
    assert_eq!(report.status, RunStatus::Failed);
    let messages = sim.messages();
    assert_eq!(messages.len(), 2, "the header, posted when there was first something to tell, and the failure");
    assert_eq!(messages[1].thread_ts.as_deref(), Some(messages[0].ts.as_str()));
    assert!(messages[0].all_text().contains("failed"), "the header was updated to the end state");
}

#[tokio::test]
async fn slack_down_with_500s_does_not_fail_the_run_and_the_report_says_so() {
    let sim = SlackSim::start().await.unwrap();
    sim.fail_next(500, 1000);
    let ok = Pipeline::builder("release").step("deploy", step_fn(|_| async { Ok(()) })).build().unwrap();
    let report = run(&ok, bot(&sim)).await;
    assert_eq!(report.status, RunStatus::Succeeded, "Slack's outage did not fail the deployment");
    assert_eq!(report.undelivered.len(), 2, "{:#?}", report.undelivered);
    assert!(
        report.undelivered[0].starts_with("slack: the run started message: Slack did not take `chat.postMessage` after 3 attempt(s): Slack answered 500"),
        "{:?}",
        report.undelivered[0]
    );
    assert!(report.undelivered[1].contains("the run succeeded message"), "{:?}", report.undelivered[1]);
    assert_eq!(sim.requests().len(), 3 + 1, "3 attempts at the header, then one for the end (unthreaded)");
    assert!(report.to_string().contains("notification not delivered: slack:"));
}

#[tokio::test]
async fn slack_timing_out_does_not_slow_the_steps_and_the_run_waits_only_its_grace() {
    let sim = SlackSim::start().await.unwrap();
    sim.delay_next(Duration::from_secs(30), 1000);
    let ok = Pipeline::builder("release")
        .step("build", step_fn(|_| async { Ok(()) }))
        .step("deploy", step_fn(|_| async { Ok(()) }))
        .after(["build"])
        .build()
        .unwrap();
    let slack = bot(&sim).timeout(Duration::from_millis(200)).attempts(2);
    let started = Instant::now();
    let report =
        Run::new(&ok, context()).notify(slack).notify_grace(Duration::from_millis(300)).execute().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert!(report.duration < Duration::from_millis(200), "the steps did not wait for Slack: {:?}", report.duration);
    assert!(started.elapsed() < Duration::from_secs(5), "execute waited the grace, not Slack: {:?}", started.elapsed());
    assert!(!report.undelivered.is_empty());
    assert!(
        report.undelivered.iter().any(|u| u.contains("no answer within 200ms") || u.contains("still sending")),
        "{:?}",
        report.undelivered
    );
}

#[tokio::test]
async fn a_refusal_is_reported_at_once_without_retrying() {
    let sim = SlackSim::start().await.unwrap();
    let slack = Slack::bot(Secret::new(BOT_TOKEN), "#no-such-channel").api_url(sim.api_url());
    let ok = Pipeline::builder("release").step("deploy", step_fn(|_| async { Ok(()) })).build().unwrap();
    let report = run(&ok, slack).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    assert!(
        report.undelivered[0].contains("Slack refused `chat.postMessage`: channel_not_found"),
        "{:?}",
        report.undelivered
    );
    let wrong_token = Slack::bot(Secret::new("xoxb-wrong"), CHANNEL.0).api_url(sim.api_url());
    let report = run(&ok, wrong_token).await;
    assert!(report.undelivered[0].contains("invalid_auth"), "{:?}", report.undelivered);
}

#[tokio::test]
async fn the_bot_waits_out_a_429_but_drops_a_message_rather_than_wait_longer_than_allowed() {
    let sim = SlackSim::start().await.unwrap();
    sim.rate_limit_next(1, 1);
    let ok = Pipeline::builder("release").step("deploy", step_fn(|_| async { Ok(()) })).build().unwrap();
    let report = run(&ok, bot(&sim)).await;
    assert!(report.undelivered.is_empty(), "{:?}", report.undelivered);
    assert_eq!(sim.messages().len(), 2, "the header, after one 429, and the end");

    let sim = SlackSim::start().await.unwrap();
    sim.rate_limit_next(60, 1);
    let started = Instant::now();
    let report = run(&ok, bot(&sim)).await;
    assert!(started.elapsed() < Duration::from_secs(5), "a 60 s Retry-After is not waited out");
    assert!(report.undelivered[0].contains("rate limited (429, Retry-After 60s)"), "{:?}", report.undelivered);
}

#[tokio::test]
async fn a_failed_header_update_is_reported_and_the_thread_still_ends_in_the_outcome() {
    let sim = SlackSim::start().await.unwrap();
    sim.fail_method("chat.update", 500, 10);
    let report = run(&failing_canary(), bot(&sim)).await;
    assert_eq!(report.undelivered.len(), 1, "{:?}", report.undelivered);
    assert!(report.undelivered[0].contains("the final header update message: Slack did not take `chat.update`"));
    let header = &sim.messages()[0];
    assert_eq!(header.updates, 0);
    assert!(header.all_text().contains("running"), "the header kept its last state");
    assert!(sim.thread(&header.ts).last().unwrap().all_text().contains("failed in"));
}

#[tokio::test]
async fn a_wait_for_approval_and_a_cancelled_run_are_told() {
    let sim = SlackSim::start().await.unwrap();
    let waiting = Pipeline::builder("release")
        .step(
            "promote",
            step_fn(|ctx| async move {
                ctx.phase(Phase::WaitingForPromotion, "web 3.1.0 at 50%: promote in #deploys");
                ctx.cancellation().cancelled().await;
                Err(StepError::cancelled())
            }),
        )
        .build()
        .unwrap();
    let run = Run::new(&waiting, context()).notify(bot(&sim)).grace_period(Duration::from_millis(100));
    let token = run.cancellation_token();
    let mut events = run.subscribe();
    let cancel_when_waiting = async {
        let waiting = async {
            while let Some(event) = futures::StreamExt::next(&mut events).await {
                if matches!(event, gantry_core::Event::Phase { phase: Phase::WaitingForPromotion, .. }) {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("the step waits for approval");
        token.cancel();
    };
    let (report, ()) = tokio::join!(run.execute(), cancel_when_waiting);
    let report = report.unwrap();
    assert_eq!(report.status, RunStatus::Cancelled);
    let header = &sim.messages()[0];
    let thread: Vec<String> = sim.thread(&header.ts).iter().map(|m| m.all_text()).collect();
    assert!(
        thread[0].contains(":hourglass_flowing_sand: `promote` waiting for approval: web 3.1.0 at 50%"),
        "{thread:?}"
    );
    assert!(thread[1].contains(":no_entry_sign:") && thread[1].contains("cancelled"), "{thread:?}");
    assert!(header.all_text().contains(":no_entry_sign: *release*"), "{}", header.all_text());
}

#[tokio::test]
async fn a_webhooks_url_never_shows_in_what_was_not_delivered() {
    let unreachable = Slack::webhook(Secret::new("http://127.0.0.1:9/services/T0/B0/s3cr3tw3bh00k"))
        .backoff(Duration::from_millis(5));
    let ok = Pipeline::builder("release").step("deploy", step_fn(|_| async { Ok(()) })).build().unwrap();
    let report = run(&ok, unreachable).await;
    assert!(!report.undelivered.is_empty());
    let sim = SlackSim::start().await.unwrap();
    let wrong =
        Slack::webhook(Secret::new(format!("{}/services/T0/B0/wr0ngs3cr3t", sim.api_url().trim_end_matches("/api"))));
    let refused = run(&ok, wrong).await;
    assert!(
        refused.undelivered[0].contains("Slack refused `webhook`: 404 Not Found no_service"),
        "{:?}",
        refused.undelivered
    );
    let all = format!("{:?} {:?} {report} {refused}", report.undelivered, refused.undelivered);
    assert!(!all.contains("s3cr3t") && !all.contains("/services/"), "{all}");
}

#[tokio::test]
async fn variables_cannot_break_out_of_a_link() {
    let sim = SlackSim::start().await.unwrap();
    let ok = Pipeline::builder("release").step("deploy", step_fn(|_| async { Ok(()) })).build().unwrap();
    let context = Context::new().var("repo", "acme/shop").var("sha", "abc").var("environment", "x><!channel>|y");
    Run::new(&ok, context).notify(bot(&sim)).execute().await.unwrap();
    let header = sim.messages()[0].all_text();
    assert!(
        header.contains("<https://github.com/acme/shop/deployments/x%3E%3C%21channel%3E%7Cy|GitHub deployment>"),
        "{header}"
    );
    assert!(!header.contains("<!channel>"), "no mention got through: {header}");
}

#[tokio::test]
async fn what_slack_did_not_take_is_typed_refused_or_unavailable() {
    use gantry_core::{Notifier, NotifyError, RunInfo};
    /// Follows one run of `pipeline` with `slack` directly, as the executor does, and returns what it reports.
    async fn follow(slack: Slack) -> Vec<NotifyError> {
        let ok = Pipeline::builder("release").step("deploy", step_fn(|_| async { Ok(()) })).build().unwrap();
        let run = Run::new(&ok, context());
        let events = run.subscribe();
        let info = RunInfo::new("run-7", "release", Default::default());
        let following = tokio::spawn(async move { slack.follow(info, events).await });
        run.execute().await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), following).await.unwrap().unwrap()
    }
    let sim = SlackSim::start().await.unwrap();

    let refused = follow(Slack::bot(Secret::new(BOT_TOKEN), "#no-such-channel").api_url(sim.api_url())).await;
    assert!(matches!(&refused[0], NotifyError::Refused { what, .. } if what == "run started"), "{refused:?}");
    assert!(!refused[0].is_retryable());
    let source = std::error::Error::source(&refused[0]).unwrap().to_string();
    assert_eq!(source, "Slack refused `chat.postMessage`: channel_not_found");

    sim.fail_next(500, 1000);
    let down = follow(bot(&sim).backoff(Duration::from_millis(10))).await;
    assert!(matches!(&down[0], NotifyError::Unavailable { .. }) && down[0].is_retryable(), "{down:?}");
    assert!(down[0].to_string().contains("after 3 attempt(s): Slack answered 500"), "{}", down[0]);
}
