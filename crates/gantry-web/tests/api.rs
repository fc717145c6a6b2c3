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

/// A run waiting at a gate, in `history`; its gate.
async fn waiting_run(
    history: &MemoryHistory,
    approvals: &Approvals,
    vars: &[(&str, &str)],
) -> (String, tokio::task::JoinHandle<gantry_core::RunReport>) {
    let pipeline = Pipeline::builder("release")
        .step("approve", Approval::new(approvals, "ship it?"))
        .step("deploy", CommandStep::new("true"))
        .after(["approve"])
        .build()
        .unwrap();
    let mut context = Context::new();
    for (k, v) in vars {
        context = context.var(*k, *v);
    }
    let run = Run::new(&pipeline, context).notify(history.clone());
    let handle = tokio::spawn(async move { run.execute().await.unwrap() });
    for _ in 0..400 {
        if let Some(gate) = approvals.pending().pop() {
            return (gate.id, handle);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no gate waits");
}

async fn serve_view(view: RunView) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/deploys", listener.local_addr().unwrap());
    let app = axum::Router::new().nest("/deploys", view.router());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// The anti-forgery cookie a page sets, and the token it writes into itself.
async fn page_token(client: &reqwest::Client, url: &str) -> (String, String) {
    let page = client.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let token = html.split("data-csrf=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert_eq!(cookie, format!("gantry_csrf={token}"), "the page carries its cookie's token");
    (cookie, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_need_an_authorizer_the_page_token_and_the_same_origin() {
    let (history, approvals) = (MemoryHistory::new(), Approvals::new());
    let read_only = serve_view(RunView::new(Arc::new(history.clone())).approvals(&approvals)).await;
    let view = RunView::new(Arc::new(history.clone())).approvals(&approvals).authorizer(
        |request: &axum::http::request::Parts, _: &gantry_web::Action| {
            request.headers.get("x-user").and_then(|v| v.to_str().ok()).map(str::to_owned)
        },
    );
    let url = serve_view(view).await;
    let (gate, handle) = waiting_run(&history, &approvals, &[]).await;
    let client = reqwest::Client::new();
    let body = serde_json::json!({ "gate": gate, "approve": true, "comment": "go" }).to_string();
    let decide = |base: &str, cookie: Option<&str>, token: Option<&str>, user: Option<&str>, origin: Option<&str>| {
        let mut request = client.post(format!("{base}/api/gates/decide")).header("content-type", "application/json");
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(token) = token {
            request = request.header("x-gantry-csrf", token);
        }
        if let Some(user) = user {
            request = request.header("x-user", user);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.body(body.clone()).send()
    };

    // Read-only: refused whatever the request carries.
    let (cookie, token) = page_token(&client, &read_only).await;
    let refused = decide(&read_only, Some(&cookie), Some(&token), Some("ana"), None).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("read-only"));

    let (cookie, token) = page_token(&client, &url).await;
    let host = url.trim_start_matches("http://").split('/').next().unwrap().to_owned();
    for (what, cookie, token, user, origin) in [
        ("no token", Some(cookie.as_str()), None, Some("ana"), None),
        ("no cookie", None, Some(token.as_str()), Some("ana"), None),
        ("another origin", Some(cookie.as_str()), Some(token.as_str()), Some("ana"), Some("https://evil.example")),
        ("the authorizer says no", Some(cookie.as_str()), Some(token.as_str()), None, None),
    ] {
        let response = decide(&url, cookie, token, user, origin).await.unwrap();
        assert_eq!(response.status(), 403, "{what}");
    }
    assert_eq!(approvals.pending().len(), 1, "nothing was decided");

    let origin = format!("http://{host}");
    let response = decide(&url, Some(&cookie), Some(&token), Some("ana"), Some(&origin)).await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let report = handle.await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    let decision = &report.step("approve").unwrap().outputs;
    assert!(
        decision.iter().any(|(_, v)| v.contains("\"ana\"") && v.contains("\"web\"") && v.contains("go")),
        "{decision:?}"
    );
    // Decided: the same request again finds no gate.
    assert_eq!(decide(&url, Some(&cookie), Some(&token), Some("ana"), None).await.unwrap().status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_escape_what_runs_carry_and_link_only_to_the_web() {
    let (history, approvals) = (MemoryHistory::new(), Approvals::new());
    let view = RunView::new(Arc::new(history.clone()))
        .approvals(&approvals)
        .link("Dashboard", "https://dash.example/d?service={service}")
        .link("Evil", "javascript:alert({service})");
    let url = serve_view(view).await;
    let markup = "<img src=x onerror=alert(1)>";
    let (gate, handle) =
        waiting_run(&history, &approvals, &[("service", markup), ("repo", "acme/shop"), ("sha", "3f9c2e1")]).await;
    let run_id = gate.split('/').next().unwrap().to_owned();
    let client = reqwest::Client::new();
    let page = client.get(format!("{url}/runs/{run_id}")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(!html.contains(markup), "markup from a variable is escaped");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains(r#"href="https://github.com/acme/shop/commit/3f9c2e1""#), "the commit's link");
    assert!(html.contains(r#"href="https://dash.example/d?service=%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E""#));
    assert!(!html.contains("javascript:"), "a template cannot make a script link");
    // Every page resolves under the prefix; an unknown run is a page that says so.
    for path in [
        "",
        "/assets/view.js",
        "/assets/view.css",
        &format!("/runs/{run_id}/canary"),
        &format!("/runs/{run_id}/graph.svg"),
    ] {
        assert_eq!(client.get(format!("{url}{path}")).send().await.unwrap().status(), 200, "{path}");
    }
    let missing = client.get(format!("{url}/runs/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("No such run"));
    approvals.decide(&gate, gantry_core::Decision::approve("ana", "api")).unwrap();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_resuming_after_a_finished_runs_last_event_gets_an_ended_stream_and_gates_say_who_may_act() {
    let (history, approvals) = (MemoryHistory::new(), Approvals::new());
    let view = RunView::new(Arc::new(history.clone())).approvals(&approvals).authorizer(
        |request: &axum::http::request::Parts, _: &gantry_web::Action| {
            request.headers.get("x-user").and_then(|v| v.to_str().ok()).filter(|u| *u == "ana").map(str::to_owned)
        },
    );
    let url = serve_view(view).await;
    let (gate, handle) = waiting_run(&history, &approvals, &[]).await;
    let client = reqwest::Client::new();
    let gates = |user: &'static str| client.get(format!("{url}/api/gates")).header("x-user", user).send();
    let for_ana: serde_json::Value = gates("ana").await.unwrap().json().await.unwrap();
    let for_bob: serde_json::Value = gates("bob").await.unwrap().json().await.unwrap();
    assert_eq!(
        (for_ana["gates"][0]["id"].as_str(), for_ana["gates"][0]["can_act"].as_bool()),
        (Some(gate.as_str()), Some(true))
    );
    assert_eq!(for_bob["gates"][0]["can_act"], false, "the authorizer is asked for each viewer");
    approvals.decide(&gate, gantry_core::Decision::approve("ana", "api")).unwrap();
    handle.await.unwrap();

    let run_id = gate.split('/').next().unwrap();
    let all = client.get(format!("{url}/api/runs/{run_id}/events")).send().await.unwrap();
    let events = tokio::time::timeout(Duration::from_secs(5), all.text()).await.expect("a finished run's stream ends");
    let last = events.unwrap().lines().rev().find_map(|l| l.strip_prefix("id:")).unwrap().trim().to_owned();
    for after in [last.as_str(), "18446744073709551615"] {
        let resumed = client.get(format!("{url}/api/runs/{run_id}/events")).header("Last-Event-ID", after).send();
        let body = tokio::time::timeout(Duration::from_secs(5), async { resumed.await.unwrap().text().await.unwrap() })
            .await
            .expect("the stream after the last event ends at once");
        assert!(!body.contains("data:"), "nothing after event {after}: {body}");
    }
}
