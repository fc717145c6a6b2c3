//! The run view's API over HTTP on loopback: the run list with filters, a live run's events as server-sent events
//! that resume from the last event id, and no secret in any answer.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gantry_core::{
    Approval, Approvals, CommandStep, Context, Decision, MemoryHistory, Pipeline, Run, RunStatus, Secret,
};
use gantry_web::RunView;

const SECRET: &str = "tok-51f0c2a9e7";

async fn serve(history: &MemoryHistory) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/deploys", listener.local_addr().unwrap());
    let app = axum::Router::new().nest("/deploys", RunView::new(Arc::new(history.clone())).router());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// The `(id, data)` pairs of an event stream, until `stop` says so or the stream ends.
async fn read_events(response: reqwest::Response, stop: impl Fn(&str) -> bool) -> Vec<(usize, String)> {
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.next()).await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let id = block.lines().find_map(|l| l.strip_prefix("id:")).map(|v| v.trim().parse().unwrap());
            let data = block.lines().find_map(|l| l.strip_prefix("data:")).map(|v| v.trim().to_owned());
            if let (Some(id), Some(data)) = (id, data) {
                let done = stop(&data);
                events.push((id, data));
                if done {
                    return events;
                }
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_streams_its_events_and_a_viewer_resumes_after_the_last_it_saw() {
    let history = MemoryHistory::new();
    let url = serve(&history).await;
    let approvals = Approvals::new();
    let pipeline = Pipeline::builder("release")
        .step("login", CommandStep::new("echo").args(["logging in with", "{{secrets.token}}"]))
        .step("approve", Approval::new(&approvals, "ship {{service}}?"))
        .after(["login"])
        .step("deploy", CommandStep::new("echo").arg("deployed {{service}}"))
        .after(["approve"])
        .build()
        .unwrap();
    let context =
        Context::new().var("service", "web").var("environment", "production").secret("token", Secret::new(SECRET));
    let run = Run::new(&pipeline, context).notify(history.clone());
    let handle = tokio::spawn(async move { run.execute().await.unwrap() });
    let gate = loop {
        if let Some(gate) = approvals.pending().pop() {
            break gate;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let client = reqwest::Client::new();

    // The run list shows the running run.
    let list: serde_json::Value =
        client.get(format!("{url}/api/runs?env=production")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["runs"][0]["pipeline"], "release");
    assert!(list["runs"][0]["status"].is_null(), "running: {list}");

    // A viewer follows it live, then the gate is approved and the stream ends with the run.
    let live = client.get(format!("{url}/api/runs/{}/events", gate.run_id)).send().await.unwrap();
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let approver = {
        let approvals = approvals.clone();
        let id = gate.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            approvals.decide(&id, Decision::approve("ana", "web")).unwrap();
        })
    };
    let events = read_events(live, |data| data.contains("\"run_finished\"")).await;
    approver.await.unwrap();
    assert_eq!(handle.await.unwrap().status, RunStatus::Succeeded);
    let ids: Vec<usize> = events.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (0..events.len()).collect::<Vec<_>>(), "numbered from 0, none missed");
    assert!(events[0].1.contains("\"run_started\""));
    assert!(events.iter().any(|(_, d)| d.contains("deployed web")));

    // A viewer that saw up to event 2 gets the rest, from 3.
    let resumed =
        client.get(format!("{url}/api/runs/{}/events", gate.run_id)).header("Last-Event-ID", "2").send().await.unwrap();
    let rest = read_events(resumed, |data| data.contains("\"run_finished\"")).await;
    assert_eq!(rest.first().map(|(id, _)| *id), Some(3));
    assert_eq!(rest, events[3..]);

    // No answer holds the secret; the log line that used it is masked.
    let everything = format!(
        "{}{}{:?}",
        client.get(format!("{url}/api/runs")).send().await.unwrap().text().await.unwrap(),
        client.get(format!("{url}/api/runs/{}", gate.run_id)).send().await.unwrap().text().await.unwrap(),
        events
    );
    assert!(!everything.contains(SECRET), "a secret in an answer");
    assert!(events.iter().any(|(_, d)| d.contains("logging in with")), "the masked line is there");

    // Unknown runs and statuses are refused by name.
    assert_eq!(client.get(format!("{url}/api/runs/nope")).send().await.unwrap().status(), 404);
    let bad = client.get(format!("{url}/api/runs?status=weird")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("unknown status `weird`"));
}
