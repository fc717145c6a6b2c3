//! The Datadog client against recorded bodies and against the test kit's simulated Datadog API.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gantry_core::analysis::{
    Analysis, ClassicJudge, Direction, Group, Metric, MetricError, MetricProvider, MetricQuery, Outcome,
};
use gantry_core::strategy::Release;
use gantry_core::{Context, Pipeline, RunStatus, Secret, step_fn};
use gantry_datadog::{
    Datadog, DatadogError, DatadogMetrics, DeploymentMarker, EVENT_ID, MetricsApi, MonitorGate, Site, event_id,
    parse_v1, parse_v2,
};
use gantry_testkit::datadog::{DatadogFault, DatadogSim, Monitor};
use serde_json::Value;

const API_KEY: &str = "0123456789abcdef0123456789abcdef";
const APP_KEY: &str = "fedcba9876543210fedcba9876543210fedcba98";

fn recorded(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_recorded_v1_answer_parses() {
    let series = parse_v1(&recorded("v1_query_timeseries_points.response.json")).unwrap();
    assert_eq!(series.len(), 1);
    let points = &series[0].points;
    assert_eq!(points.len(), 288, "the recorded `length`");
    assert_eq!(points[0].0, UNIX_EPOCH + Duration::from_millis(1_641_344_100_000));
    assert!((points[0].1 - 91.458_384_047_614_2).abs() < 1e-9);
    assert!(points.windows(2).all(|w| w[1].0.duration_since(w[0].0).unwrap() == Duration::from_secs(300)));
}

#[test]
fn the_recorded_v2_answer_parses() {
    let series = parse_v2(&recorded("v2_query_timeseries.response.json")).unwrap();
    assert_eq!(series[0].values(), [1.0, 1.0, 87.0]);
    assert_eq!(series[0].points[2].0, UNIX_EPOCH + Duration::from_millis(1_711_980_225_000));
    assert!(parse_v2(&recorded("v2_query_timeseries.400.response.json")).is_err(), "an error body is no series");
}

#[test]
fn the_recorded_event_id_is_taken_from_id_str() {
    let answer = recorded("v1_events_post.response.json");
    assert_eq!(event_id(&answer).unwrap(), "6327818702635911562");
    // The JSON number has lost its last digits: why `id_str` exists.
    assert_ne!(answer["event"]["id"].as_u64(), Some(6_327_818_702_635_911_562));
}

#[test]
fn sites_give_api_urls() {
    assert_eq!(Site::Us1.api_url(), "https://api.datadoghq.com");
    assert_eq!(Site::from_domain("datadoghq.eu"), Site::Eu1);
    assert_eq!(Site::from_domain("us5.datadoghq.com").api_url(), "https://api.us5.datadoghq.com");
    assert_eq!(Site::from_domain("ap2.datadoghq.com").api_url(), "https://api.ap2.datadoghq.com");
}

async fn sim() -> DatadogSim {
    let sim = DatadogSim::start(API_KEY, APP_KEY).await.unwrap();
    sim.model(|metric, tags, at| {
        let minute = at.duration_since(UNIX_EPOCH).unwrap().as_secs() / 60;
        let base = if tags.get("version").map(String::as_str) == Some("bad") { 150.0 } else { 100.0 };
        (metric == "latency").then_some(base + (minute % 7) as f64)
    });
    sim
}

fn client(sim: &DatadogSim) -> Datadog {
    Datadog::with_url(&sim.url(), Secret::new(API_KEY), Secret::new(APP_KEY)).unwrap()
}

fn window() -> (SystemTime, SystemTime) {
    let now = SystemTime::now();
    (now - Duration::from_secs(1800), now)
}

#[tokio::test]
async fn v1_and_v2_queries_agree_and_send_what_the_api_expects() {
    let sim = sim().await;
    let (from, to) = window();
    let v1 = DatadogMetrics::new(client(&sim))
        .points("avg:latency{service:web,version:2}", from, to, Duration::from_secs(60))
        .await
        .unwrap();
    let v2 = DatadogMetrics::new(client(&sim))
        .api(MetricsApi::V2)
        .points("avg:latency{service:web,version:2}", from, to, Duration::from_secs(60))
        .await
        .unwrap();
    let spacing = |s: &gantry_core::analysis::Series| s.points[1].0.duration_since(s.points[0].0).unwrap();
    assert_eq!(spacing(&v1), Duration::from_secs(6), "v1: Datadog's own interval for 30 minutes (about 300 points)");
    assert_eq!(spacing(&v2), Duration::from_secs(60), "v2: the interval asked for");
    assert!((30..=31).contains(&v2.points.len()), "{}", v2.points.len());
    let received = sim.received();
    assert_eq!(received[0].request, "GET /api/v1/query");
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
    assert_eq!(received[0].params["from"], secs(from), "v1 takes seconds");
    assert_eq!(received[0].params["query"], "avg:latency{service:web,version:2}");
    assert_eq!(received[1].request, "POST /api/v2/query/timeseries");
    let attributes = &received[1].params["data"]["attributes"];
    assert_eq!(attributes["from"].as_u64().unwrap(), secs(from).parse::<u64>().unwrap() * 1000, "v2 takes ms");
    assert_eq!(received[1].params["data"]["type"], "timeseries_request");
}

#[tokio::test]
async fn wrong_keys_are_refused_and_never_shown() {
    let sim = sim().await;
    let wrong = Datadog::with_url(&sim.url(), Secret::new(API_KEY), Secret::new("not-the-app-key-0000")).unwrap();
    let (from, to) = window();
    let query = MetricQuery::new("latency", "avg:latency{version:2}", Group::Canary, from, to, Duration::from_secs(60));
    let err = DatadogMetrics::new(wrong.clone()).query(&query).await.unwrap_err();
    assert!(
        matches!(&err, MetricError::Refused { .. })
            && !err.is_retryable()
            && err.to_string().contains("403")
            && err.to_string().contains("Forbidden"),
        "{err}"
    );
    let shown = format!("{err} {err:?} {wrong:?}");
    for key in [API_KEY, "not-the-app-key-0000"] {
        assert!(!shown.contains(key), "a key leaked: {shown}");
    }
}

#[tokio::test]
async fn rate_limits_wait_for_the_reset_and_then_give_up() {
    let sim = sim().await;
    let (from, to) = window();
    sim.fail_next(DatadogFault::RateLimited { reset_after: 1 }, 2);
    let started = Instant::now();
    let ok =
        DatadogMetrics::new(client(&sim)).points("avg:latency{version:2}", from, to, Duration::from_secs(60)).await;
    assert!(ok.is_ok(), "{ok:?}");
    assert!(started.elapsed() >= Duration::from_secs(2), "waited for two resets");

    sim.fail_next(DatadogFault::RateLimited { reset_after: 1 }, 5);
    let err = DatadogMetrics::new(client(&sim).attempts(2))
        .points("avg:latency{version:2}", from, to, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, DatadogError::RateLimited { attempts: 2, reset_after_secs: 1, .. }), "{err}");
    sim.fail_next(DatadogFault::RateLimited { reset_after: 3600 }, 1);
    let started = Instant::now();
    let err = DatadogMetrics::new(client(&sim))
        .points("avg:latency{version:2}", from, to, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, DatadogError::RateLimited { reset_after_secs: 3600, .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "a reset beyond max_wait is not waited for");
}

#[tokio::test]
async fn outages_are_retried_then_reported_as_unavailable() {
    let sim = sim().await;
    let (from, to) = window();
    sim.fail_next(DatadogFault::Outage(503), 2);
    assert!(
        DatadogMetrics::new(client(&sim))
            .points("avg:latency{version:2}", from, to, Duration::from_secs(60))
            .await
            .is_ok()
    );
    sim.fail_next(DatadogFault::Outage(500), 10);
    let query = MetricQuery::new("latency", "avg:latency{version:2}", Group::Canary, from, to, Duration::from_secs(60));
    let err = DatadogMetrics::new(client(&sim).attempts(3)).query(&query).await.unwrap_err();
    assert!(
        matches!(&err, MetricError::Unavailable { .. }) && err.is_retryable() && err.to_string().contains("500"),
        "{err}"
    );
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        for _ in 0..4 {
            if let Ok((socket, _)) = listener.accept().await {
                open.push(socket); // Accepted, never answered.
            }
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let client = Datadog::with_url(&url, Secret::new(API_KEY), Secret::new(APP_KEY))
        .unwrap()
        .timeout(Duration::from_millis(200))
        .attempts(2);
    let (from, to) = window();
    let started = Instant::now();
    let err =
        DatadogMetrics::new(client).points("avg:latency{*}", from, to, Duration::from_secs(60)).await.unwrap_err();
    assert!(matches!(&err, DatadogError::Unreachable { why, .. } if why.starts_with("timed out")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_outage_during_analysis_is_inconclusive_not_a_pass() {
    let sim = sim().await;
    sim.fail_next(DatadogFault::Outage(503), 1_000);
    let analysis =
        Analysis::new(Arc::new(DatadogMetrics::new(client(&sim).attempts(2))), Arc::new(ClassicJudge::new()))
            .metric(Metric::new("latency", "avg:latency{service:web,version:{{version}}}", Direction::Increase))
            .duration(Duration::ZERO);
    let verdict = Arc::new(std::sync::Mutex::new(None));
    let seen = Arc::clone(&verdict);
    let pipeline = Pipeline::builder("p")
        .step(
            "analyse",
            step_fn(move |ctx| {
                let (analysis, seen) = (analysis.clone(), Arc::clone(&seen));
                async move {
                    let v = analysis.run(&ctx, &Release::new("web", "1"), &Release::new("web", "2")).await;
                    *seen.lock().unwrap() = Some(v);
                    Ok(())
                }
            }),
        )
        .build()
        .unwrap();
    pipeline.run(Context::new()).await.unwrap();
    let verdict = verdict.lock().unwrap().take().unwrap();
    assert_eq!(verdict.outcome, Outcome::Inconclusive, "{verdict}");
    assert!(verdict.to_string().contains("503"), "{verdict}");
}

#[tokio::test]
async fn a_deployment_marker_posts_an_event_and_publishes_its_id() {
    let sim = sim().await;
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    let keep = Arc::clone(&seen);
    let pipeline = Pipeline::builder("release")
        .step(
            "mark",
            DeploymentMarker::new(client(&sim), "Deploying {{service}} {{version}}", "by gantry")
                .tag("service:{{service}}")
                .tag("version:{{version}}"),
        )
        .step(
            "after",
            step_fn(move |ctx| {
                let keep = Arc::clone(&keep);
                async move {
                    *keep.lock().unwrap() = ctx.output("mark", EVENT_ID)?.as_ref().clone();
                    Ok(())
                }
            }),
        )
        .after(["mark"])
        .build()
        .unwrap();
    let report = pipeline.run(Context::new().var("service", "web").var("version", "2")).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let events = sim.events();
    assert_eq!(events[0]["title"], "Deploying web 2");
    assert_eq!(events[0]["tags"], serde_json::json!(["service:web", "version:2"]));
    assert_eq!(*seen.lock().unwrap(), events[0]["id_str"].as_str().unwrap());
    assert_eq!(sim.received()[0].request, "POST /api/v1/events");
}

#[tokio::test]
async fn a_monitor_gate_passes_only_while_monitors_are_ok() {
    let sim = sim().await;
    let gate = |g: MonitorGate| Pipeline::builder("p").step("gate", g).build().unwrap();
    let run = |p: Pipeline| async move { p.run(Context::new().var("service", "web")).await.unwrap() };
    let tags = ["service:{{service}}", "env:prod"];
    sim.monitors(vec![
        Monitor::new(1, "web latency", &["service:web", "env:prod"], "OK"),
        Monitor::new(2, "web errors", &["service:web", "env:prod"], "OK"),
        Monitor::new(3, "api errors", &["service:api", "env:prod"], "Alert"),
    ]);
    assert_eq!(run(gate(MonitorGate::new(client(&sim), tags))).await.status, RunStatus::Succeeded);
    assert_eq!(sim.received().last().unwrap().params["monitor_tags"], "service:web,env:prod");

    sim.monitors(vec![
        Monitor::new(1, "web latency", &["service:web", "env:prod"], "Warn"),
        Monitor::new(2, "web errors", &["service:web", "env:prod"], "Alert"),
    ]);
    let report = run(gate(MonitorGate::new(client(&sim), tags))).await;
    let reason = report.step("gate").unwrap().reason.clone().unwrap();
    assert!(reason.contains("`web errors` (Alert, id 2)") && reason.contains("`web latency` (Warn, id 1)"), "{reason}");
    let report = run(gate(MonitorGate::new(client(&sim), tags).allow_warn())).await;
    assert!(!report.step("gate").unwrap().reason.clone().unwrap().contains("Warn"));

    sim.monitors(Vec::new());
    let report = run(gate(MonitorGate::new(client(&sim), tags))).await;
    assert!(
        report
            .step("gate")
            .unwrap()
            .reason
            .clone()
            .unwrap()
            .contains("no Datadog monitor carries the tags service:web, env:prod")
    );
    assert_eq!(run(gate(MonitorGate::new(client(&sim), tags).allow_no_monitors())).await.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn the_simulated_datadog_passes_the_provider_conformance_suite_with_both_apis() {
    use gantry_testkit::metrics::{Fixture, conformance};
    let sim = DatadogSim::start(API_KEY, APP_KEY).await.unwrap();
    let end =
        UNIX_EPOCH + Duration::from_secs(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 60 * 60);
    let start = end - Duration::from_secs(3600);
    let value = |at: SystemTime| (at.duration_since(UNIX_EPOCH).unwrap().as_secs() / 60 % 13) as f64 + 0.5;
    sim.model(move |metric, tags, at| {
        (metric == "known" && tags.get("service").map(String::as_str) == Some("web") && at >= start && at <= end)
            .then(|| value(at))
    });
    let expected: Vec<(SystemTime, f64)> =
        (0..=60).map(|i| start + Duration::from_secs(60 * i)).map(|t| (t, value(t))).collect();
    let fixture = Fixture {
        query: "avg:known{service:web}".into(),
        expected,
        start,
        end,
        step: Duration::from_secs(60),
        empty_query: "avg:known{service:nope}".into(),
        bad_query: "avg:known".into(),
    };
    // v2 honours the interval asked for; v1 picks its own for the window, so it is checked on the v2 API here and
    // on the recorded v1 body above.
    conformance(&DatadogMetrics::new(client(&sim)).api(MetricsApi::V2), &fixture).await.unwrap();
}

#[tokio::test]
async fn a_watching_monitor_gate_holds_for_its_bake_time_and_fails_at_the_first_alert() {
    let sim = std::sync::Arc::new(sim().await);
    let ok = || {
        vec![
            Monitor::new(1, "web latency", &["service:web"], "OK"),
            Monitor::new(2, "web errors", &["service:web"], "OK"),
        ]
    };
    sim.monitors(ok());
    let gate = |period: u64| {
        let g = MonitorGate::new(client(&sim), ["service:web"])
            .watch_for(Duration::from_millis(period))
            .interval(Duration::from_millis(50));
        Pipeline::builder("p").step("bake", g).build().unwrap()
    };
    let plan = gate(300).plan(&Context::new());
    assert_eq!(
        plan.step("bake").unwrap().description,
        "watches the Datadog monitors tagged service:web for 300ms, failing at the first alert"
    );

    // All clear for the whole bake time: it passes after checking again and again.
    let before = sim.received().len();
    let started = std::time::Instant::now();
    let report = gate(300).run(Context::new()).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(sim.received().len() - before >= 5, "it kept checking");

    // An alert in the middle of the bake time fails it then, not at the end.
    let alerting = {
        let sim = std::sync::Arc::clone(&sim);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            sim.monitors(vec![
                Monitor::new(1, "web latency", &["service:web"], "OK"),
                Monitor::new(2, "web errors", &["service:web"], "Alert"),
            ]);
        })
    };
    let started = std::time::Instant::now();
    let report = gate(5_000).run(Context::new()).await.unwrap();
    alerting.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "failed at the first alert: {:?}", started.elapsed());
    let reason = report.step("bake").unwrap().reason.clone().unwrap();
    assert!(
        reason.contains("clear checks over 5s: Datadog monitors are not OK: `web errors` (Alert, id 2)"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_query_returning_several_series_is_refused_not_cut_to_its_first() {
    // A `by {host}` query answers one series per host: judging the first would judge an arbitrary host.
    let mut body = recorded("v1_query_timeseries_points.response.json");
    let series = body["series"][0].clone();
    body["series"] = Value::Array(vec![series.clone(), series]);
    let server = gantry_testkit::receiver::Receiver::start().await.unwrap();
    server.respond_with(move |_| Some((200, body.clone())));
    let metrics =
        DatadogMetrics::new(Datadog::with_url(&server.url(), Secret::new(API_KEY), Secret::new(APP_KEY)).unwrap());
    let (from, to) = window();
    let query = "avg:trace.http.request.duration{service:web} by {host}";
    let err = metrics.points(query, from, to, Duration::from_secs(60)).await.unwrap_err();
    assert!(matches!(&err, DatadogError::ManySeries { count: 2, .. }), "{err}");
    assert!(err.to_string().contains("aggregate them to one"), "{err}");
    let provided = metrics
        .query(&gantry_core::analysis::MetricQuery::new(
            "latency",
            query,
            Group::Canary,
            from,
            to,
            Duration::from_secs(60),
        ))
        .await
        .unwrap_err();
    assert!(matches!(provided, MetricError::Refused { .. }) && !provided.is_retryable(), "{provided}");
}
