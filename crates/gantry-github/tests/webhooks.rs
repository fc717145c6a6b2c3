//! The webhook receiver: GitHub's published signature vector, each refusal starting nothing, redeliveries, routing.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gantry_core::{Pipeline, RunStatus, Secret, step_fn};
use gantry_github::{DeploymentEvent, Route, Runs, Webhooks, verify_signature};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tower::ServiceExt;

const SECRET: &str = "It's a Secret to Everybody";

/// GitHub's documented example: https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries
#[test]
fn githubs_published_test_vector_verifies() {
    let secret = Secret::new(SECRET);
    let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert!(verify_signature(&secret, b"Hello, World!", good));
    assert!(!verify_signature(&secret, b"Hello, World?", good), "another body");
    assert!(!verify_signature(&Secret::new("another"), b"Hello, World!", good), "another secret");
    assert!(!verify_signature(&secret, b"Hello, World!", "sha1=757107ea"), "not sha256");
    assert!(!verify_signature(&secret, b"Hello, World!", "sha256=zz"), "not hex");
    // 64 bytes that are not 64 characters: refused, without a panic.
    let multibyte = format!("sha256={}{}", "é", "0".repeat(62));
    assert_eq!(multibyte.len() - "sha256=".len(), 64);
    assert!(!verify_signature(&secret, b"Hello, World!", &multibyte));
    assert!(!verify_signature(&secret, b"Hello, World!", &format!("sha256={}", "€".repeat(21) + "0")));
    assert_eq!(gantry_github::sign_payload(&secret, b"Hello, World!"), good);
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn payload(repository: &str) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_str(include_str!("data/payload.json")).expect("the octokit example");
    body["repository"]["full_name"] = repository.into();
    body["deployment"]["payload"] = serde_json::json!({"service": "web", "canary": true});
    serde_json::to_vec(&body).unwrap()
}

async fn post(
    app: &axum::Router,
    event: &str,
    delivery: &str,
    body: Vec<u8>,
    signature: Option<String>,
) -> (StatusCode, String) {
    let mut request =
        Request::post("/hooks/github").header("x-github-event", event).header("x-github-delivery", delivery);
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = app.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// A receiver routing two repositories to one pipeline, and one of them to a second pipeline too; it records
/// the events its pipelines ran for.
fn receiver(limit: usize) -> (axum::Router, Runs, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let release = {
        let seen = Arc::clone(&seen);
        move |event: &DeploymentEvent| {
            let seen = Arc::clone(&seen);
            let line = format!("release {} {}", event.repository, event.environment);
            Pipeline::builder("release")
                .step(
                    "deploy",
                    step_fn(move |ctx| {
                        let (seen, line) = (Arc::clone(&seen), line.clone());
                        async move {
                            let vars = format!(
                                "{line} sha={} service={}",
                                ctx.require_var("sha")?,
                                ctx.require_var("payload.service")?
                            );
                            seen.lock().unwrap().push(vars);
                            Ok(())
                        }
                    }),
                )
                .build()
                .unwrap()
        }
    };
    let audit =
        |_: &DeploymentEvent| Pipeline::builder("audit").step("log", step_fn(|_| async { Ok(()) })).build().unwrap();
    let (app, runs) = Webhooks::new(Secret::new(SECRET))
        .body_limit(limit)
        .route(Route::repository("acme/shop").environment("production"), release.clone())
        .route(Route::repository("acme/api").environment("production"), release)
        .route(Route::repository("acme/*").task("deploy"), audit)
        .router_with_runs();
    (app, runs, seen)
}

#[tokio::test]
async fn a_signed_deployment_starts_every_matching_pipeline_with_the_events_variables() {
    let (app, runs, seen) = receiver(1 << 20);
    for (repo, delivery) in [("acme/shop", "d-1"), ("acme/api", "d-2")] {
        let body = payload(repo);
        let (status, text) = post(&app, "deployment", delivery, body.clone(), Some(sign(&body))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
        assert_eq!(text, "started 2 run(s)", "release and audit");
    }
    let started = runs.take();
    let names: Vec<(String, String)> = started.iter().map(|s| (s.delivery.clone(), s.pipeline.clone())).collect();
    assert_eq!(
        names,
        [
            ("d-1".into(), "release".into()),
            ("d-1".into(), "audit".into()),
            ("d-2".into(), "release".into()),
            ("d-2".into(), "audit".into())
        ]
    );
    for s in started {
        assert_eq!(s.run.await.unwrap().report.unwrap().status, RunStatus::Succeeded);
    }
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            "release acme/api production sha=f95f852bd8fca8fcc58a9a2d6c842781e32a215e service=web",
            "release acme/shop production sha=f95f852bd8fca8fcc58a9a2d6c842781e32a215e service=web",
        ],
        "two repositories, one pipeline; the event's fields as variables"
    );
}

#[tokio::test]
async fn refusals_and_redeliveries_start_nothing() {
    let (app, runs, _) = receiver(64 * 1024);
    let body = payload("acme/shop");
    let good = sign(&body);

    assert_eq!(
        post(&app, "deployment", "r-1", body.clone(), Some(sign(b"other"))).await.0,
        StatusCode::UNAUTHORIZED,
        "bad signature"
    );
    assert_eq!(
        post(&app, "deployment", "r-1", body.clone(), None).await.0,
        StatusCode::UNAUTHORIZED,
        "missing signature"
    );
    let big = vec![b' '; 128 * 1024];
    assert_eq!(post(&app, "deployment", "r-1", big.clone(), Some(sign(&big))).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    let junk = b"{not json".to_vec();
    assert_eq!(
        post(&app, "deployment", "r-1", junk.clone(), Some(sign(&junk))).await.0,
        StatusCode::BAD_REQUEST,
        "malformed JSON"
    );
    let (status, text) = post(&app, "push", "r-1", body.clone(), Some(good.clone())).await;
    assert_eq!((status, text.starts_with("ignored")), (StatusCode::ACCEPTED, true), "{text}");
    assert_eq!(post(&app, "ping", "r-1", body.clone(), Some(good.clone())).await.0, StatusCode::OK);
    assert!(runs.take().is_empty(), "none of these started anything");

    assert_eq!(post(&app, "deployment", "r-2", body.clone(), Some(good.clone())).await.0, StatusCode::ACCEPTED);
    let (status, text) = post(&app, "deployment", "r-2", body.clone(), Some(good)).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "duplicate delivery: already started"), "redelivery");
    assert_eq!(runs.take().len(), 2, "only the first delivery started its two runs");
}

/// A receiver for `acme/shop` whose pipeline fails when `fail` is set, reporting statuses to `api`.
fn reporting(api: &str, fail: bool) -> (axum::Router, Runs) {
    let github = gantry_github::GitHub::with_url(api, Secret::new("ghs_installation_token"))
        .log_url("https://gantry.example/runs/{run_id}")
        .environment_url("https://{environment}.shop.example");
    Webhooks::new(Secret::new(SECRET))
        .statuses(github)
        .route(Route::repository("acme/shop"), move |_| {
            Pipeline::builder("release")
                .step(
                    "deploy",
                    step_fn(move |_| async move {
                        if fail { Err(gantry_core::StepError::new("rollout failed")) } else { Ok(()) }
                    }),
                )
                .build()
                .unwrap()
        })
        .router_with_runs()
}

#[tokio::test]
async fn deployment_statuses_go_in_progress_then_the_outcome_with_links() {
    let github = gantry_testkit::receiver::Receiver::start().await.unwrap();
    for (fail, delivery, outcome) in [(false, "s-1", "success"), (true, "s-2", "failure")] {
        let (app, runs) = reporting(&github.url(), fail);
        let body = payload("acme/shop");
        assert_eq!(post(&app, "deployment", delivery, body.clone(), Some(sign(&body))).await.0, StatusCode::ACCEPTED);
        let finished = runs.take().pop().unwrap().run.await.unwrap();
        assert!(finished.undelivered.is_empty(), "{:?}", finished.undelivered);
        let run_id = finished.report.unwrap().run_id;
        let requests = github.requests();
        let (start, end) = (&requests[requests.len() - 2], &requests[requests.len() - 1]);
        assert_eq!(start.path, "/repos/acme/shop/deployments/145988746/statuses");
        assert_eq!(start.body["state"], "in_progress");
        assert_eq!(end.body["state"], outcome);
        assert_eq!(end.body["log_url"], format!("https://gantry.example/runs/{run_id}"));
        assert_eq!(end.body["environment_url"], "https://production.shop.example");
        assert_eq!(end.header("authorization"), Some("Bearer ghs_installation_token"));
        assert_eq!(end.header("x-github-api-version"), Some("2022-11-28"));
    }
}

#[tokio::test]
async fn a_github_outage_does_not_fail_the_deployment_and_is_reported() {
    let github = gantry_testkit::receiver::Receiver::start().await.unwrap();
    github.fail_next(502, 100);
    let (app, runs) = reporting(&github.url(), false);
    let body = payload("acme/shop");
    post(&app, "deployment", "o-1", body.clone(), Some(sign(&body))).await;
    let finished = runs.take().pop().unwrap().run.await.unwrap();
    assert_eq!(finished.report.unwrap().status, RunStatus::Succeeded, "the deployment completes");
    assert_eq!(finished.undelivered.len(), 2, "{:?}", finished.undelivered);
    assert!(
        finished.undelivered[1].to_string().contains("`success` status was not delivered: GitHub answered 502"),
        "{:?}",
        finished.undelivered
    );
    assert!(
        matches!(
            finished.undelivered[1],
            gantry_github::StatusError::Unavailable { state: gantry_github::DeploymentState::Success, attempts: 3, .. }
        ) && finished.undelivered[1].is_retryable(),
        "typed: {:?}",
        finished.undelivered[1]
    );
    assert_eq!(github.requests().len(), 6, "three attempts for each of the two statuses");
}

#[tokio::test]
async fn a_failed_run_reports_failure_with_its_log_link_and_a_slack_thread_ending_in_the_failure() {
    use gantry_testkit::slack::{BOT_TOKEN, CHANNEL, SlackSim};
    let github = gantry_testkit::receiver::Receiver::start().await.unwrap();
    let slack_api = SlackSim::start().await.unwrap();
    let slack = gantry_slack::Slack::bot(Secret::new(BOT_TOKEN), CHANNEL.0)
        .api_url(slack_api.api_url())
        .run_url("https://gantry.example/runs/{run_id}");
    let statuses = gantry_github::GitHub::with_url(github.url(), Secret::new("ghs_installation_token"))
        .log_url("https://gantry.example/runs/{run_id}");
    let (app, runs) = Webhooks::new(Secret::new(SECRET))
        .statuses(statuses)
        .notify(slack)
        .route(Route::repository("acme/shop"), |_| {
            Pipeline::builder("release")
                .step(
                    "deploy",
                    step_fn(|_| async { Err(gantry_core::StepError::new("rollout failed: web-7f9 CrashLoopBackOff")) }),
                )
                .build()
                .unwrap()
        })
        .router_with_runs();
    let body = payload("acme/shop");
    assert_eq!(post(&app, "deployment", "f-1", body.clone(), Some(sign(&body))).await.0, StatusCode::ACCEPTED);
    let finished = runs.take().pop().unwrap().run.await.unwrap();
    let report = finished.report.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert!(finished.undelivered.is_empty() && report.undelivered.is_empty());

    let states: Vec<_> = github.requests().iter().map(|r| r.body["state"].as_str().unwrap().to_owned()).collect();
    assert_eq!(states, ["in_progress", "failure"]);
    let end = github.requests().pop().unwrap();
    assert_eq!(end.body["log_url"], format!("https://gantry.example/runs/{}", report.run_id));
    assert_eq!(end.body["description"], "failed at `deploy`");

    let messages = slack_api.messages();
    let header = &messages[0];
    assert!(header.all_text().contains(&format!("<https://gantry.example/runs/{0}|Run {0}>", report.run_id)));
    assert!(header.all_text().contains("*release* for `acme/shop` to *production* failed"), "{}", header.all_text());
    let thread = slack_api.thread(&header.ts);
    let last = thread.last().unwrap().all_text();
    assert!(last.contains("`deploy` failed: rollout failed: web-7f9 CrashLoopBackOff"), "{last}");
}

#[tokio::test]
async fn github_timing_out_does_not_fail_the_deployment_and_is_reported() {
    let github = gantry_testkit::receiver::Receiver::start().await.unwrap();
    github.delay_next(std::time::Duration::from_secs(30), 100);
    let statuses =
        gantry_github::GitHub::with_url(github.url(), Secret::new("t")).timeout(std::time::Duration::from_millis(100));
    let (app, runs) = Webhooks::new(Secret::new(SECRET))
        .statuses(statuses)
        .route(Route::repository("acme/shop"), |_| {
            Pipeline::builder("release").step("deploy", step_fn(|_| async { Ok(()) })).build().unwrap()
        })
        .router_with_runs();
    let body = payload("acme/shop");
    post(&app, "deployment", "t-1", body.clone(), Some(sign(&body))).await;
    let finished = runs.take().pop().unwrap().run.await.unwrap();
    assert_eq!(finished.report.unwrap().status, RunStatus::Succeeded);
    assert_eq!(finished.undelivered.len(), 2);
    assert!(
        finished.undelivered[0].to_string().contains("GitHub did not answer within 100ms"),
        "{:?}",
        finished.undelivered
    );
}

#[tokio::test]
async fn with_slack_and_github_both_down_the_deployment_completes_and_its_report_says_what_was_not_told() {
    use gantry_testkit::slack::{BOT_TOKEN, CHANNEL, SlackSim};
    let github = gantry_testkit::receiver::Receiver::start().await.unwrap();
    github.fail_next(503, 100);
    let slack_api = SlackSim::start().await.unwrap();
    slack_api.fail_next(500, 100);
    let slack = gantry_slack::Slack::bot(Secret::new(BOT_TOKEN), CHANNEL.0)
        .api_url(slack_api.api_url())
        .backoff(std::time::Duration::from_millis(10));
    let (app, runs) = Webhooks::new(Secret::new(SECRET))
        .statuses(gantry_github::GitHub::with_url(github.url(), Secret::new("t")))
        .notify(slack)
        .route(Route::repository("acme/shop"), |_| {
            Pipeline::builder("release").step("deploy", step_fn(|_| async { Ok(()) })).build().unwrap()
        })
        .router_with_runs();
    let body = payload("acme/shop");
    post(&app, "deployment", "down-1", body.clone(), Some(sign(&body))).await;
    let report = runs.take().pop().unwrap().run.await.unwrap().report.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "the deployment completed");
    let slack_failures = report.undelivered.iter().filter(|u| u.starts_with("slack: ")).count();
    let github_failures = report.undelivered.iter().filter(|u| u.starts_with("github: ")).count();
    assert_eq!((slack_failures, github_failures), (2, 2), "{:#?}", report.undelivered);
    assert!(report.to_string().contains("notification not delivered: github: the `success` status was not delivered"));
}

#[tokio::test]
async fn a_slow_github_does_not_delay_the_start_of_the_deployment() {
    let github = gantry_testkit::receiver::Receiver::start().await.unwrap();
    github.delay_next(std::time::Duration::from_millis(1500), 1); // the `in_progress` status
    let started_at = Arc::new(Mutex::new(None));
    let record = Arc::clone(&started_at);
    let (app, runs) = Webhooks::new(Secret::new(SECRET))
        .statuses(gantry_github::GitHub::with_url(github.url(), Secret::new("t")))
        .route(Route::repository("acme/shop"), move |_| {
            let record = Arc::clone(&record);
            Pipeline::builder("release")
                .step(
                    "deploy",
                    step_fn(move |_| {
                        let record = Arc::clone(&record);
                        async move {
                            *record.lock().unwrap() = Some(std::time::Instant::now());
                            Ok(())
                        }
                    }),
                )
                .build()
                .unwrap()
        })
        .router_with_runs();
    let body = payload("acme/shop");
    let delivered = std::time::Instant::now();
    post(&app, "deployment", "slow-1", body.clone(), Some(sign(&body))).await;
    let finished = runs.take().pop().unwrap().run.await.unwrap();
    let step_started = started_at.lock().unwrap().unwrap();
    assert!(
        step_started - delivered < std::time::Duration::from_millis(1000),
        "the step started {:?} after the delivery, while `in_progress` took 1.5 s",
        step_started - delivered
    );
    let states: Vec<_> = github.requests().iter().map(|r| r.body["state"].as_str().unwrap().to_owned()).collect();
    assert_eq!(states, ["in_progress", "success"], "the outcome still comes after `in_progress`");
    assert!(finished.undelivered.is_empty());
}

#[test]
fn the_fast_body_reader_agrees_with_the_json_tree_on_githubs_examples() {
    use gantry_github::BodyError;
    let examples = [
        include_str!("data/payload.json"),
        include_str!("data/with-installation.payload.json"),
        include_str!("data/gh-pages.payload.json"),
    ];
    for text in examples {
        let tree: serde_json::Value = serde_json::from_str(text).unwrap();
        let fast = DeploymentEvent::from_body("d", text.as_bytes()).unwrap();
        assert_eq!(fast, DeploymentEvent::parse("d", &tree).unwrap());
    }
    let with_installation = DeploymentEvent::from_body("d", examples[1].as_bytes()).unwrap();
    assert_eq!(with_installation.installation, Some(1));
    // Escapes cannot be borrowed from the body; they are decoded all the same.
    let escaped = examples[0].replace("\"environment\": \"production\"", "\"environment\": \"pr\\u006fduction\"");
    assert_ne!(escaped, examples[0]);
    assert_eq!(DeploymentEvent::from_body("d", escaped.as_bytes()).unwrap().environment, "production");
    assert!(matches!(DeploymentEvent::from_body("d", b"{not json"), Err(BodyError::NotJson(_))));
    let no_sha = examples[0].replace("\"sha\":", "\"shaa\":");
    assert_eq!(
        DeploymentEvent::from_body("d", no_sha.as_bytes()),
        Err(BodyError::NotADeployment("no `/deployment/sha`".into()))
    );
}

#[tokio::test]
async fn a_status_waits_out_a_rate_limit_and_a_refusal_is_typed_and_not_retried() {
    use gantry_github::{DeploymentState, GitHub, StatusError};
    let github = gantry_testkit::receiver::Receiver::start().await.unwrap();
    let client = GitHub::with_url(github.url(), Secret::new("t"));

    // GitHub's secondary rate limit: 403 with Retry-After (1 s here), then the status goes through.
    github.fail_next(403, 1);
    let started = std::time::Instant::now();
    client.status("acme/shop", 7, DeploymentState::InProgress, "deploying", (None, None)).await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "the wait asked for: {:?}", started.elapsed());
    let requests = github.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].body["state"], "in_progress", "the state as GitHub names it");

    // A refusal without Retry-After: one request, and the error says what GitHub said.
    github.respond_with(|_| Some((422, serde_json::json!({"message": "Validation Failed"}))));
    let err = client.status("acme/shop", 7, DeploymentState::Success, "done", (None, None)).await.unwrap_err();
    assert!(
        matches!(&err, StatusError::Refused { state: DeploymentState::Success, status: 422, message } if message == "Validation Failed"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(err.to_string(), "GitHub refused the `success` status: 422 (Validation Failed)");
    assert_eq!(github.requests().len(), 3, "not retried");
}
