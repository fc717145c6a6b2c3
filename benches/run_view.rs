//! The run view under load: the run page's first render in Chromium for a run of 1,000 steps and 10,000 log lines,
//! and the event stream served to 100 concurrent viewers.
//!
//! - first render: headless Chromium (WebDriver) opens the run page of a finished run; the time is the page's own
//!   `performance.now()` when every step's row and graph node shows its final status and the run its verdict (from
//!   navigation start: the HTML, the script, the plan, the SVG graph laid out by the server, and every event replayed
//!   over the event stream). Baseline: the same page for a run of 10 steps and 100 lines.
//! - event stream: N viewers read a finished run's whole stream (12,002 events) at once; the figure is the server's
//!   CPU time per event delivered, measured on the server's own thread (`/proc/self/task/TID/schedstat`), so the
//!   viewers' reading is not counted. Baseline: one viewer.
//!
//! Run: `cargo bench --bench run_view` (the first part needs `chromium chromium-driver`; `bash .ci/test-all`
//! installs them). Recorded in docs/PERFORMANCE.md.
#![allow(clippy::print_stdout)] // The bench prints the ratios docs/PERFORMANCE.md records.

use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use fantoccini::{Client, ClientBuilder};
use gantry::prelude::*;
use gantry::testkit::browser::ChromeDriver;
use gantry::web::RunView;
use gantry_core::RunHistory as _;

/// A finished run of `steps` steps in 10 lanes (each step after the one before it in its lane), each step logging
/// `lines` lines; its id.
async fn finished_run(history: &MemoryHistory, steps: usize, lines: usize) -> String {
    let mut builder = Pipeline::builder("load").step("s0", logs(lines));
    for i in 1..steps {
        builder = builder.step(format!("s{i}"), logs(lines));
        if i >= 10 {
            builder = builder.after([format!("s{}", i - 10)]);
        }
    }
    let pipeline = builder.build().unwrap();
    let run = Run::new(&pipeline, Context::new()).notify(history.clone());
    let id = run.id().to_owned();
    assert_eq!(run.execute().await.unwrap().status, RunStatus::Succeeded);
    // The history follows in a task of its own: wait until it has the end.
    while history.get(&id).await.and_then(|r| r.status).is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    id
}

fn logs(lines: usize) -> impl Step {
    step_fn(move |ctx| async move {
        for n in 0..lines {
            ctx.log(format!("line {n} of {}: GET /health -> 200 in 3 ms", ctx.name()));
        }
        Ok(())
    })
}

/// Serves `view` from a thread of its own (a current-thread runtime); the URL and the thread's id.
fn serve_on_own_thread(view: RunView) -> (String, u32) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/deploys", listener.local_addr().unwrap());
            let tid = std::fs::read_link("/proc/thread-self").unwrap();
            let tid: u32 = tid.file_name().unwrap().to_str().unwrap().parse().unwrap();
            tx.send((url, tid)).unwrap();
            let app = axum::Router::new().nest("/deploys", view.router());
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// CPU time the thread `tid` of this process has run, in nanoseconds.
fn thread_cpu(tid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
    stat.split_whitespace().next().unwrap().parse().unwrap()
}

/// Reads the whole event stream of `run` with `viewers` concurrent viewers; the events each read.
async fn read_streams(url: &str, run: &str, viewers: usize) -> usize {
    let client = reqwest::Client::new();
    let reads = (0..viewers).map(|_| {
        let client = client.clone();
        let url = format!("{url}/api/runs/{run}/events");
        async move {
            let mut body = client.get(url).send().await.unwrap();
            // Events end with a blank line (data lines hold JSON, which has no raw newline).
            let (mut events, mut previous) = (0, 0_u8);
            while let Some(chunk) = body.chunk().await.unwrap() {
                for &byte in chunk.iter() {
                    events += usize::from(previous == b'\n' && byte == b'\n');
                    previous = byte;
                }
            }
            events
        }
    });
    let counts = futures::future::join_all(reads).await;
    // 1,000 steps × (start, 10 lines, end) and the run's start and end.
    assert!(counts.iter().all(|&n| n == 12_002), "every viewer read every event: {counts:?}");
    counts[0]
}

async fn browser(driver: &ChromeDriver) -> Client {
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(driver.capabilities(1440, 1000))
        .connect(driver.url())
        .await
        .unwrap()
}

/// Opens the run page; the page's time to show every step's final status, in ms.
async fn first_render(client: &Client, url: &str, run: &str, steps: usize) -> f64 {
    client.goto(&format!("{url}/runs/{run}")).await.unwrap();
    let script = format!(
        "const done = arguments[0];
         const check = () => {{
           const rows = document.querySelectorAll('#steps tr');
           const nodes = document.querySelectorAll('g.node[data-status=succeeded]');
           const verdict = document.getElementById('run-status').textContent;
           if (rows.length === {steps} && nodes.length === {steps} && verdict === 'succeeded') done(performance.now());
           else setTimeout(check, 2);
         }};
         check();"
    );
    client.execute_async(&script, Vec::new()).await.unwrap().as_f64().unwrap()
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let history = MemoryHistory::new();
    let big = rt.block_on(finished_run(&history, 1_000, 10));
    let small = rt.block_on(finished_run(&history, 10, 10));
    let (url, server_tid) = serve_on_own_thread(RunView::new(Arc::new(history.clone())));
    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let mut figures = Vec::new();

    if ChromeDriver::installed() {
        let driver = rt.block_on(ChromeDriver::start()).unwrap();
        let client = rt.block_on(browser(&driver));
        let timeouts = fantoccini::wd::TimeoutConfiguration::new(Some(Duration::from_secs(120)), None, None);
        rt.block_on(client.update_timeouts(timeouts)).unwrap();
        let mut means = Vec::new();
        for (name, run, steps) in [("10 steps, 100 lines", &small, 10), ("1,000 steps, 10,000 lines", &big, 1_000)] {
            let mut total = 0.0;
            let mut count = 0.0;
            c.bench_function(&format!("run page first render: {name}"), |b| {
                b.iter_custom(|iters| {
                    let mut sum = Duration::ZERO;
                    for _ in 0..iters {
                        let ms = rt.block_on(first_render(&client, &url, run, steps));
                        total += ms;
                        count += 1.0;
                        sum += Duration::from_secs_f64(ms / 1000.0);
                    }
                    sum
                })
            });
            means.push(total / count);
        }
        figures.push(format!(
            "first render: 10 steps {:.0} ms, 1,000 steps and 10,000 lines {:.0} ms ({:.1}x)",
            means[0],
            means[1],
            means[1] / means[0]
        ));
        rt.block_on(client.close()).unwrap();
    } else {
        println!("chromium and chromedriver are not installed: the first-render part is skipped");
    }

    let mut per_event = Vec::new();
    for viewers in [1, 100] {
        let mut cpu = 0_u64;
        let mut delivered = 0_usize;
        c.bench_function(&format!("event stream: {viewers} viewers of 12,002 events"), |b| {
            b.iter_custom(|iters| {
                let started = std::time::Instant::now();
                for _ in 0..iters {
                    let before = thread_cpu(server_tid);
                    let events = rt.block_on(read_streams(&url, &big, viewers));
                    cpu += thread_cpu(server_tid) - before;
                    delivered += events * viewers;
                }
                started.elapsed()
            })
        });
        per_event.push(cpu as f64 / delivered as f64);
    }
    figures.push(format!(
        "server CPU per event delivered: 1 viewer {:.2} µs, 100 viewers {:.2} µs ({:.2}x)",
        per_event[0] / 1000.0,
        per_event[1] / 1000.0,
        per_event[1] / per_event[0]
    ));
    for figure in figures {
        println!("{figure}");
    }
}
