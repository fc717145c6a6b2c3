//! Approvals from Slack buttons, over HTTP on loopback as Slack posts them: a correctly signed click decides the
//! gate; a bad signature, an old timestamp, a replay, a user the authorizer refuses, and any click without an
//! authorizer are refused and change nothing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gantry_core::{Approval, Approvals, Context, Pipeline, Run, RunStatus, Secret, StepStatus};
use gantry_slack::{APPROVE_ACTION, Interactions, REJECT_ACTION, sign};

const SIGNING_SECRET: &str = "5f6c1e7a9b0d4c3e8f2a1b6d7c9e0f3a";

async fn serve(interactions: Interactions) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slack/interactions", listener.local_addr().unwrap());
    let app = axum::Router::new().nest("/slack/interactions", interactions.router());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, server)
}

/// The form body Slack posts for a click of `action` on the button of `gate` by `user`.
fn click(user: &str, action: &str, gate: &str) -> Vec<u8> {
    let payload = serde_json::json!({
        "type": "block_actions",
        "user": {"id": format!("U-{user}"), "username": user},
        "team": {"id": "T0001"},
        "actions": [{"action_id": action, "value": gate, "type": "button"}]
    });
    serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap().into_bytes()
}

async fn post(url: &str, body: &[u8], timestamp: u64, secret: &str) -> (u16, String) {
    let (timestamp, signature) = sign(&Secret::new(secret), timestamp, body);
    // reqwest is built without a default crypto provider; the workspace uses ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Slack-Request-Timestamp", timestamp)
        .header("X-Slack-Signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn waiting(approvals: &Approvals) -> String {
    for _ in 0..400 {
        if let Some(gate) = approvals.pending().into_iter().next() {
            return gate.id;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no gate waits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_click_decides_the_gate_and_forgeries_change_nothing() {
    let approvals = Approvals::new();
    let interactions = Interactions::new(Secret::new(SIGNING_SECRET), &approvals)
        .authorize(|user, gate| user.id == "U-ana" && gate.step == "approve");
    let (url, _server) = serve(interactions).await;
    let pipeline = Pipeline::builder("release")
        .step("approve", Approval::new(&approvals, "ship web?").timeout(Duration::from_secs(30)))
        .build()
        .unwrap();
    let run = Run::new(&pipeline, Context::new());
    let handle = tokio::spawn(async move { run.execute().await.unwrap() });
    let gate = waiting(&approvals).await;

    let approve = click("ana", APPROVE_ACTION, &gate);
    // Signed with another secret.
    assert_eq!(post(&url, &approve, now(), "not-the-signing-secret").await.0, 401);
    // Signed, but ten minutes old.
    assert_eq!(post(&url, &approve, now() - 600, SIGNING_SECRET).await.0, 401);
    // Signed, by someone the authorizer does not allow.
    let (status, text) = post(&url, &click("mallory", APPROVE_ACTION, &gate), now(), SIGNING_SECRET).await;
    assert_eq!((status, text.as_str()), (403, "mallory may not decide this gate"));
    // Not a Gantry action.
    assert_eq!(post(&url, &click("ana", "other.action", &gate), now(), SIGNING_SECRET).await.0, 400);
    assert_eq!(approvals.pending().len(), 1, "nothing changed");

    // The real click.
    let ts = now();
    let (status, text) = post(&url, &approve, ts, SIGNING_SECRET).await;
    assert_eq!((status, text.as_str()), (200, "approved by ana"));
    let report = handle.await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let outputs = &report.step("approve").unwrap().outputs;
    assert!(outputs.iter().any(|(_, v)| v.contains("\"ana\"") && v.contains("\"slack\"")), "{outputs:?}");
    // The same signed request again: a replay, refused.
    assert_eq!(post(&url, &approve, ts, SIGNING_SECRET).await.0, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reject_click_takes_the_failure_path_and_without_an_authorizer_every_click_is_refused() {
    let approvals = Approvals::new();
    let pipeline = Pipeline::builder("release")
        .step("approve", Approval::new(&approvals, "ship web?").timeout(Duration::from_secs(30)))
        .build()
        .unwrap();

    // Read-only: no authorizer.
    let (read_only, _a) = serve(Interactions::new(Secret::new(SIGNING_SECRET), &approvals)).await;
    let run = Run::new(&pipeline, Context::new());
    let handle = tokio::spawn(async move { run.execute().await.unwrap() });
    let gate = waiting(&approvals).await;
    assert_eq!(post(&read_only, &click("ana", APPROVE_ACTION, &gate), now(), SIGNING_SECRET).await.0, 403);
    assert_eq!(approvals.pending().len(), 1, "still waiting");

    let (url, _b) = serve(Interactions::new(Secret::new(SIGNING_SECRET), &approvals).authorize(|_, _| true)).await;
    let (status, text) = post(&url, &click("bob", REJECT_ACTION, &gate), now(), SIGNING_SECRET).await;
    assert_eq!((status, text.as_str()), (200, "rejected by bob"));
    let report = handle.await.unwrap();
    assert_eq!(report.status_of("approve"), Some(StepStatus::Failed));
    let reason = report.step("approve").and_then(|s| s.reason.as_deref()).unwrap_or_default();
    assert_eq!(reason, "`ship web?` rejected by bob via slack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifier_posts_buttons_for_a_waiting_gate_and_a_signed_click_on_them_lets_the_run_go_on() {
    use gantry_testkit::slack::{BOT_TOKEN, CHANNEL, SlackSim};
    let approvals = Approvals::new();
    let (url, _server) =
        serve(Interactions::new(Secret::new(SIGNING_SECRET), &approvals).authorize(|user, _| user.id == "U-ana")).await;
    let slack_api = SlackSim::start().await.unwrap();
    let slack =
        gantry_slack::Slack::bot(Secret::new(BOT_TOKEN), CHANNEL.0).api_url(slack_api.api_url()).approval_buttons();
    let pipeline = Pipeline::builder("release")
        .step("approve", Approval::new(&approvals, "ship web?").timeout(Duration::from_secs(30)))
        .step("deploy", gantry_core::CommandStep::new("true"))
        .after(["approve"])
        .build()
        .unwrap();
    let run = Run::new(&pipeline, Context::new()).notify(slack);
    let handle = tokio::spawn(async move { run.execute().await.unwrap() });
    let gate = waiting(&approvals).await;

    // The buttons reach Slack under the message that says the gate waits, carrying the gate's id.
    let buttons = loop {
        let found = slack_api.messages().into_iter().find_map(|m| {
            m.blocks.as_array()?.iter().find(|b| b["type"] == "actions").cloned().map(|b| (m.text.clone(), b))
        });
        if let Some(found) = found {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(buttons.0.contains("waiting for approval"), "{}", buttons.0);
    let elements = buttons.1["elements"].as_array().unwrap();
    let values: Vec<(&str, &str)> =
        elements.iter().map(|e| (e["action_id"].as_str().unwrap(), e["value"].as_str().unwrap())).collect();
    assert_eq!(values, [(APPROVE_ACTION, gate.as_str()), (REJECT_ACTION, gate.as_str())]);

    // Slack posts the click on the Approve button: what the message carried decides the gate.
    let (status, text) = post(&url, &click("ana", values[0].0, values[0].1), now(), SIGNING_SECRET).await;
    assert_eq!((status, text.as_str()), (200, "approved by ana"));
    let report = handle.await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(report.status_of("deploy"), Some(StepStatus::Succeeded));
}
