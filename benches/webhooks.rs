//! Webhook deliveries over loopback TCP: how many per second Gantry's receiver takes, next to a baseline in the
//! same run.
//!
//! Each round sends 1,000 `deployment` deliveries (the octokit example payload, about 8 KB), 32 in flight on one
//! keep-alive client: 800 valid and unique, 100 redelivered right behind their original, 100 with a forged
//! signature. Contenders, on the same runtime (2 worker threads), taking turns round by round:
//! - `baseline`: an axum server that reads the body and answers `202` (the HTTP stack and the client, nothing else);
//! - `gantry`: `gantry_github::Webhooks`: signature check, parse, deduplication, routing, and a one-step run
//!   started in the background for each valid delivery (the runs are awaited between rounds, untimed).
//!
//! Run: `cargo bench --bench webhooks`. The table it prints is recorded in docs/PERFORMANCE.md.
#![allow(clippy::print_stdout)] // The bench prints the table docs/PERFORMANCE.md records.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use gantry::prelude::*;
use gantry_github::{Route, Runs, Webhooks, sign_payload};

const SECRET: &str = "bench-secret";
const DELIVERIES: usize = 1000;
const IN_FLIGHT: usize = 32;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

struct Server {
    url: String,
    runs: Option<Runs>,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(router: axum::Router, runs: Option<Runs>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Server { url, runs, task }
}

async fn baseline() -> Server {
    let router = axum::Router::new().fallback(|_body: axum::body::Bytes| async { axum::http::StatusCode::ACCEPTED });
    serve(router, None).await
}

async fn gantry() -> Server {
    let (router, runs) = Webhooks::new(Secret::new(SECRET))
        .route(Route::repository("acme/*"), |_| {
            Pipeline::builder("release").step("deploy", step_fn(|_| async { Ok(()) })).build().unwrap()
        })
        .router_with_runs();
    serve(router, Some(runs)).await
}

/// One round's deliveries, with delivery ids unique across rounds.
fn deliveries(round: u64) -> Vec<(String, Vec<u8>, String)> {
    let template: serde_json::Value =
        serde_json::from_str(include_str!("../crates/gantry-github/tests/data/payload.json")).unwrap();
    let (secret, forger) = (Secret::new(SECRET), Secret::new("forged"));
    let mut plan = Vec::with_capacity(DELIVERIES);
    for i in 0..900u64 {
        let mut body = template.clone();
        body["repository"]["full_name"] = format!("acme/service-{}", i % 7).into();
        let body = serde_json::to_vec(&body).unwrap();
        let forged = i >= 800;
        let signature = sign_payload(if forged { &forger } else { &secret }, &body);
        let id = format!("r{round}-d{i}");
        plan.push((id.clone(), body.clone(), signature.clone()));
        if i % 8 == 3 && !forged {
            plan.push((id, body, signature));
        }
    }
    plan
}

/// Sends one round; returns the time it took and how many runs it started.
async fn round(http: &reqwest::Client, server: &Server, plan: Vec<(String, Vec<u8>, String)>) -> (Duration, usize) {
    let start = Instant::now();
    let answered: usize = futures::stream::iter(plan)
        .map(|(id, body, signature)| {
            let request = http
                .post(&server.url)
                .header("x-github-event", "deployment")
                .header("x-github-delivery", id)
                .header("x-hub-signature-256", signature)
                .body(body);
            async move { usize::from(request.send().await.is_ok_and(|r| r.status().as_u16() < 500)) }
        })
        .buffer_unordered(IN_FLIGHT)
        .fold(0, |n, ok| async move { n + ok })
        .await;
    let took = start.elapsed();
    assert_eq!(answered, DELIVERIES, "every delivery answered");
    let mut started = 0;
    if let Some(runs) = &server.runs {
        for run in runs.take() {
            run.run.await.unwrap();
            started += 1;
        }
    }
    (took, started)
}

static ROUND: AtomicU64 = AtomicU64::new(0);

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let http = reqwest::Client::new();
    let servers = rt.block_on(async { [("baseline", baseline().await), ("gantry", gantry().await)] });
    let mut group = c.benchmark_group("webhooks/1000 deliveries");
    group.throughput(Throughput::Elements(DELIVERIES as u64));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    for (name, server) in &servers {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let plan = deliveries(ROUND.fetch_add(1, Ordering::Relaxed));
                        rt.block_on(round(&http, server, plan)).0
                    })
                    .sum()
            })
        });
    }
    group.finish();
    for (_, server) in servers {
        server.task.abort();
    }
}

/// Rounds interleaved between the contenders; median deliveries per second and the ratio to the baseline.
fn table() {
    const ROUNDS: usize = 15;
    let rt = runtime();
    let http = reqwest::Client::new();
    let servers = rt.block_on(async { [baseline().await, gantry().await] });
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (i, server) in servers.iter().enumerate() {
            let plan = deliveries(ROUND.fetch_add(1, Ordering::Relaxed));
            let (took, started) = rt.block_on(round(&http, server, plan));
            if i == 1 {
                assert_eq!(started, 800, "exactly the valid unique deliveries started runs");
            }
            times[i].push(took);
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (base, ours) = (median(&mut times[0]), median(&mut times[1]));
    let rate = |d: Duration| DELIVERIES as f64 / d.as_secs_f64();
    println!("\nmedian of {ROUNDS} interleaved rounds of {DELIVERIES} deliveries, {IN_FLIGHT} in flight:");
    println!(
        "  baseline (axum answers 202): {:>8.0} deliveries/s  {:>7.1} µs each",
        rate(base),
        base.as_secs_f64() * 1e6 / DELIVERIES as f64
    );
    println!(
        "  gantry Webhooks:             {:>8.0} deliveries/s  {:>7.1} µs each",
        rate(ours),
        ours.as_secs_f64() * 1e6 / DELIVERIES as f64
    );
    println!("  gantry / baseline time:      {:>8.2}×", ours.as_secs_f64() / base.as_secs_f64());
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let part = std::env::var("GANTRY_BENCH").unwrap_or_default();
    if part != "tables" {
        let mut c = Criterion::default().configure_from_args();
        bench(&mut c);
        c.final_summary();
    }
    if part != "criterion" {
        table();
    }
}
