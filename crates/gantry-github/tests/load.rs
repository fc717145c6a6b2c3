//! 1,000 webhook deliveries over loopback TCP, 32 at a time: a tenth with bad signatures, a tenth redelivered while
//! the original may still be in flight. Exactly the valid unique deliveries start runs, each once, none lost.
//! (How fast is measured in `benches/webhooks.rs`, not here.)

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use gantry_core::{Pipeline, Secret, step_fn};
use gantry_github::{Route, Webhooks, sign_payload};

const SECRET: &str = "load-test-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deliveries_start_exactly_the_valid_unique_ones() {
    let ran = Arc::new(Mutex::new(Vec::<String>::new()));
    let (router, runs) = Webhooks::new(Secret::new(SECRET))
        .route(Route::repository("acme/*"), {
            let ran = Arc::clone(&ran);
            move |_| {
                let ran = Arc::clone(&ran);
                Pipeline::builder("release")
                    .step(
                        "deploy",
                        step_fn(move |ctx| {
                            let ran = Arc::clone(&ran);
                            async move {
                                ran.lock().unwrap().push(ctx.require_var("delivery")?);
                                Ok(())
                            }
                        }),
                    )
                    .build()
                    .unwrap()
            }
        })
        .router_with_runs();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let template: serde_json::Value = serde_json::from_str(include_str!("data/payload.json")).unwrap();
    let secret = Secret::new(SECRET);
    // 800 valid unique deliveries; 100 of them sent twice; 100 with a forged signature.
    let mut plan = Vec::new();
    for i in 0..900u32 {
        let mut body = template.clone();
        body["repository"]["full_name"] = format!("acme/service-{}", i % 7).into();
        body["deployment"]["id"] = (10_000 + i).into();
        let body = serde_json::to_vec(&body).unwrap();
        let (id, forged) = (format!("delivery-{i}"), i >= 800);
        let signature = if forged { sign_payload(&Secret::new("forged"), &body) } else { sign_payload(&secret, &body) };
        plan.push((id.clone(), body.clone(), signature.clone()));
        if i % 8 == 3 && !forged {
            plan.push((id, body, signature)); // a redelivery right behind the original
        }
    }
    assert_eq!(plan.len(), 1000);

    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let answers: Vec<(String, u16)> = futures::stream::iter(plan)
        .map(|(id, body, signature)| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let answer = http
                    .post(&url)
                    .header("x-github-event", "deployment")
                    .header("x-github-delivery", &id)
                    .header("x-hub-signature-256", signature)
                    .body(body)
                    .send()
                    .await
                    .expect("the receiver answers every delivery");
                (id, answer.status().as_u16())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;

    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for (_, status) in &answers {
        *by_status.entry(*status).or_default() += 1;
    }
    assert_eq!(by_status, HashMap::from([(202, 800), (200, 100), (401, 100)]), "every delivery answered as it should");

    let started = runs.take();
    assert_eq!(started.len(), 800, "one run per valid unique delivery");
    for run in started {
        let finished = run.run.await.unwrap();
        assert!(finished.report.is_some());
    }
    let ran = ran.lock().unwrap().clone();
    assert_eq!(ran.len(), 800, "800 runs ran, so none twice");
    let ran: BTreeSet<String> = ran.into_iter().collect();
    let expected: BTreeSet<String> = (0..800).map(|i| format!("delivery-{i}")).collect();
    assert_eq!(ran, expected, "none lost, none forged");
    server.abort();
}
