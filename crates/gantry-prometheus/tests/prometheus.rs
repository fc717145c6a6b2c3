//! The Prometheus provider against a real Prometheus (started by the test kit, loaded through promtool), and the
//! metric-provider conformance suite.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gantry_core::analysis::{Analysis, ClassicJudge, Direction, Metric, MetricProvider, Outcome};
use gantry_core::strategy::Release;
use gantry_core::{Context, Pipeline, step_fn};
use gantry_prometheus::Prometheus;
use gantry_testkit::metrics::{Fixture, conformance};
use gantry_testkit::prometheus::{PrometheusServer, Sample};

/// 60 one-minute samples ending a minute ago (whole minutes): baseline `version="1"` about 0.100 s, canary
/// `version="2"` about `0.100 × canary_factor`, and `version="3"` equal to the baseline.
fn samples(canary_factor: f64) -> (Vec<Sample>, Vec<SystemTime>) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let last = now / 60 * 60 - 60;
    let times: Vec<SystemTime> = (0..60).map(|i| UNIX_EPOCH + Duration::from_secs(last - 60 * (59 - i))).collect();
    let mut samples = Vec::new();
    for (i, at) in times.iter().enumerate() {
        let wiggle = ((i * 7) % 11) as f64 / 1000.0;
        for (version, factor) in [("1", 1.0), ("2", canary_factor), ("3", 1.0)] {
            samples.push(Sample {
                series: format!("http_request_duration_seconds{{service=\"web\",version=\"{version}\"}}"),
                at: *at,
                value: (0.100 + wiggle) * factor,
            });
        }
    }
    (samples, times)
}

#[tokio::test]
#[ignore = "needs prometheus: run bash .ci/test-all"]
async fn a_real_prometheus_passes_the_provider_conformance_suite() {
    let (samples, times) = samples(1.3);
    let server = PrometheusServer::start(&samples).await.unwrap();
    let provider = Prometheus::new(server.url()).unwrap();
    let expected: Vec<(SystemTime, f64)> =
        samples.iter().filter(|s| s.series.contains("version=\"1\"")).map(|s| (s.at, s.value)).collect();
    let fixture = Fixture {
        query: r#"http_request_duration_seconds{service="web",version="1"}"#.into(),
        expected,
        start: times[0],
        end: times[59],
        step: Duration::from_secs(60),
        empty_query: r#"http_request_duration_seconds{service="nope"}"#.into(),
        bad_query: r#"http_request_duration_seconds{service="#.into(),
    };
    conformance(&provider, &fixture).await.unwrap();
    // A query that returns several series must be aggregated: refused, never judged.
    let all = gantry_core::analysis::MetricQuery::new(
        "latency",
        "http_request_duration_seconds",
        gantry_core::analysis::Group::Canary,
        times[0],
        times[59],
        Duration::from_secs(60),
    );
    let err = provider.query(&all).await.unwrap_err();
    assert!(err.to_string().contains("returns 3 series; aggregate it"), "{err}");
}

async fn judge(server: &PrometheusServer, canary: &str) -> Outcome {
    let analysis = Analysis::new(Arc::new(Prometheus::new(server.url()).unwrap()), Arc::new(ClassicJudge::new()))
        .metric(
            Metric::new(
                "latency",
                r#"avg(http_request_duration_seconds{service="web",version="{{version}}"})"#,
                Direction::Increase,
            )
            .critical(),
        )
        .duration(Duration::ZERO)
        .lookback(Duration::from_secs(2 * 3600))
        .step(Duration::from_secs(60));
    let outcome = Arc::new(std::sync::Mutex::new(None));
    let (seen, canary) = (Arc::clone(&outcome), canary.to_owned());
    let pipeline = Pipeline::builder("p")
        .step(
            "analyse",
            step_fn(move |ctx| {
                let (analysis, seen, canary) = (analysis.clone(), Arc::clone(&seen), canary.clone());
                async move {
                    let verdict = analysis.run(&ctx, &Release::new("web", "1"), &Release::new("web", canary)).await;
                    *seen.lock().unwrap() = Some(verdict.outcome);
                    Ok(())
                }
            }),
        )
        .build()
        .unwrap();
    pipeline.run(Context::new()).await.unwrap();
    outcome.lock().unwrap().take().unwrap()
}

#[tokio::test]
#[ignore = "needs prometheus: run bash .ci/test-all"]
async fn canary_analysis_on_a_real_prometheus_fails_a_slower_canary_and_passes_an_equal_one() {
    let (samples, _) = samples(1.3);
    let server = PrometheusServer::start(&samples).await.unwrap();
    assert_eq!(judge(&server, "2").await, Outcome::Fail, "30% slower");
    assert_eq!(judge(&server, "3").await, Outcome::Pass, "the same");
}

#[tokio::test]
async fn an_unreachable_prometheus_is_unavailable_not_a_pass() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener); // Nothing listens there now.
    let provider = Prometheus::new(&url).unwrap().attempts(1);
    let now = SystemTime::now();
    let query = gantry_core::analysis::MetricQuery::new(
        "latency",
        "up",
        gantry_core::analysis::Group::Baseline,
        now - Duration::from_secs(600),
        now,
        Duration::from_secs(60),
    );
    let err = provider.query(&query).await.unwrap_err();
    assert!(matches!(err, gantry_core::analysis::MetricError::Unavailable { .. }), "{err}");
}

/// The shared HTTP policy on a server that rate-limits: a `429` with `Retry-After` is waited out, then the answer is
/// read; a refused query is not sent again. (A recording receiver stands in for Prometheus: no binary needed.)
#[tokio::test]
async fn a_rate_limited_query_waits_out_retry_after_and_a_bad_query_is_not_retried() {
    let server = gantry_testkit::receiver::Receiver::start().await.unwrap();
    server.respond_with(|r| {
        let bad = r.path.starts_with("/bad/");
        Some(if bad {
            (400, serde_json::json!({"status": "error", "errorType": "bad_data", "error": "parse error"}))
        } else {
            let matrix =
                serde_json::json!({"resultType": "matrix", "result": [{"metric": {}, "values": [[60, "1.5"]]}]});
            (200, serde_json::json!({"status": "success", "data": matrix}))
        })
    });
    server.fail_next(429, 1); // answered with `Retry-After: 1`
    let prometheus = Prometheus::new(&server.url()).unwrap();
    let (start, end) = (UNIX_EPOCH + Duration::from_secs(60), UNIX_EPOCH + Duration::from_secs(120));
    let started = std::time::Instant::now();
    let series = prometheus.query_range("up", start, end, Duration::from_secs(60)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "waited out: {:?}", started.elapsed());
    assert_eq!(series[0].values(), [1.5]);
    assert_eq!(server.requests().len(), 2);

    let bad = Prometheus::new(&format!("{}/bad/", server.url())).unwrap();
    let err = bad.query_range("up{", start, end, Duration::from_secs(60)).await.unwrap_err();
    assert!(!err.is_transient() && err.to_string().contains("parse error"), "{err}");
    assert_eq!(server.requests().len(), 3, "a refused query is sent once");
}
