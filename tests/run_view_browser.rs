//! The run view in real Chromium (Debian's `chromium` and `chromium-driver`, over WebDriver on loopback), following
//! live runs of a quickstart-like pipeline on the simulated cluster: the graph's colours change as steps finish, a
//! failed step's log and reason are shown, the canary charts have both series with every point, Approve lets a run
//! go on and Reject takes its failure path, texts with markup stay text, no page holds a secret, and the browser's
//! console has no error. Screenshots of each page go to `target/screenshots/` (`docs/screenshots/` when
//! `GANTRY_SCREENSHOTS=docs`).

use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use gantry::core::analysis::{Analysis, ClassicJudge, Direction, Metric};
use gantry::core::strategy::{Canary, Deploy};
use gantry::datadog::{Datadog, DatadogMetrics};
use gantry::kube::k8s_openapi::api::apps::v1::Deployment;
use gantry::kube::kube::Api;
use gantry::kube::kube::runtime::wait::await_condition;
use gantry::kube::{Cluster, KubeTarget};
use gantry::prelude::*;
use gantry::testkit::browser::ChromeDriver;
use gantry::testkit::datadog::DatadogSim;
use gantry::testkit::kube::{ClusterSim, Health, PodScript};
use gantry::web::{Action, RunView};
use gantry_core::{Approval, Approvals, Event, MemoryHistory, RunHistory};

const SECRET: &str = "tok-9d81c0f3aa57";

/// The browser console's messages (chromedriver's log endpoint).
#[derive(Debug)]
struct ConsoleLog;

impl fantoccini::wd::WebDriverCompatibleCommand for ConsoleLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

struct Browser {
    client: Client,
    _driver: ChromeDriver,
}

impl Browser {
    async fn start() -> Self {
        let driver = ChromeDriver::start().await.expect("chromedriver starts");
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(driver.capabilities(1440, 1000))
            .connect(driver.url())
            .await
            .expect("a Chromium session");
        Self { client, _driver: driver }
    }

    /// Runs `script` (a function body) until it returns something truthy; that value.
    async fn until(&self, what: &str, script: &str) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.client.execute(script, Vec::new()).await.expect("the script runs");
            let truthy = !matches!(&value, serde_json::Value::Null | serde_json::Value::Bool(false))
                && value != serde_json::json!("")
                && value != serde_json::json!(0);
            if truthy {
                return value;
            }
            assert!(tokio::time::Instant::now() < deadline, "waited 30 s for {what}; last: {value}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The status the page shows for a node of the graph.
    async fn node_status(&self, step: &str) -> String {
        let script = format!(
            "const g = [...document.querySelectorAll('g.node')].find(g => g.dataset.step === {}); return g ? g.dataset.status : null;",
            serde_json::to_string(step).unwrap()
        );
        self.client.execute(&script, Vec::new()).await.unwrap().as_str().unwrap_or("absent").to_owned()
    }

    async fn until_node(&self, step: &str, status: &str) {
        let script = format!(
            "const g = [...document.querySelectorAll('g.node')].find(g => g.dataset.step === {}); return !!g && g.dataset.status === {};",
            serde_json::to_string(step).unwrap(),
            serde_json::to_string(status).unwrap()
        );
        self.until(&format!("{step} to show {status}"), &script).await;
    }

    async fn click_node(&self, step: &str) {
        let script = format!(
            "const g = [...document.querySelectorAll('g.node')].find(g => g.dataset.step === {}); if (!g) return false; g.dispatchEvent(new MouseEvent('click', {{bubbles: true}})); return true;",
            serde_json::to_string(step).unwrap()
        );
        self.until(&format!("a node {step} to click"), &script).await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = if std::env::var("GANTRY_SCREENSHOTS").as_deref() == Ok("docs") {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
        } else {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
        };
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// The console's errors since the last call.
    async fn console_errors(&self) -> Vec<String> {
        let log = self.client.issue_cmd(ConsoleLog).await.expect("chromedriver gives the browser's log");
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// The view mounted under `/deploys` on loopback; its URL.
async fn serve(view: RunView) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/deploys", listener.local_addr().unwrap());
    let app = axum::Router::new().nest("/deploys", view.router());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// The host's login, as the authorizer sees it: a `session` cookie names the person.
fn host_login(request: &axum::http::request::Parts, _: &Action) -> Option<String> {
    let cookies = request.headers.get("cookie")?.to_str().ok()?;
    cookies.split(';').find_map(|c| c.trim().strip_prefix("session=")).map(str::to_owned)
}

/// The simulated cluster with `api` and `web` on 2.9.0; 3.1.0 of `web` is slower with more errors.
async fn cluster() -> (ClusterSim, Cluster) {
    let sim = ClusterSim::start().await.unwrap();
    let ready = PodScript::ReadyAfter(Duration::from_millis(100));
    for image in ["shop/api:2.9.0", "shop/web:2.9.0", "shop/api:3.1.0", "shop/web:3.1.0"] {
        sim.script(image, ready.clone());
    }
    sim.script_health("shop/web:3.1.0", Health::new(135.0, 0.03));
    let client = sim.client().await.unwrap();
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    for service in ["api", "web"] {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": service},
            "spec": {
                "replicas": 3,
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "selector": {"matchLabels": {"app": service}},
                "template": {"metadata": {"labels": {"app": service}}, "spec": {"containers": [{"name": "app", "image": format!("shop/{service}:2.9.0")}]}}
            }
        }))
        .unwrap();
        deployments.create(&Default::default(), &d).await.unwrap();
        let available =
            |d: Option<&Deployment>| d.and_then(|d| d.status.as_ref()).is_some_and(|s| s.available_replicas == Some(3));
        tokio::time::timeout(Duration::from_secs(30), await_condition(deployments.clone(), service, available))
            .await
            .unwrap()
            .unwrap();
    }
    (sim, Cluster::new(client, "default"))
}

/// Checkout, a gate, a canary per service analysed on simulated Datadog metrics, a failure path and a notification.
fn release(cluster: &Cluster, datadog: &DatadogSim, approvals: &Approvals) -> Pipeline {
    let client = Datadog::with_url(&datadog.url(), Secret::new("dd-api-key"), Secret::new("dd-app-key")).unwrap();
    let analysis = Analysis::new(Arc::new(DatadogMetrics::new(client)), Arc::new(ClassicJudge::new()))
        .metric(
            Metric::new(
                "latency",
                "avg:trace.http.request.duration{service:{{service}},version:{{version}}}",
                Direction::Increase,
            )
            .critical(),
        )
        .metric(Metric::new(
            "errors",
            "avg:trace.http.request.errors{service:{{service}},version:{{version}}}",
            Direction::Increase,
        ))
        .duration(Duration::from_millis(200))
        .lookback(Duration::from_secs(1800));
    Pipeline::builder("release")
        .step(
            "checkout",
            CommandStep::new("sh").args([
                "-c",
                "echo checked out $0 at $1; echo '<script>window.__xss=1</script><img src=x onerror=window.__xss=2>'; echo using $2",
                "{{repo}}",
                "{{sha}}",
                "{{secrets.token}}",
            ]),
        )
        .step("approve", Approval::new(approvals, "Ship {{release}} to production?"))
        .after(["checkout"])
        .fan_out("canary", "service", ["api", "web"], |service| {
            let target = Arc::new(KubeTarget::new(cluster.clone(), service));
            let strategy =
                Canary::new().set_weight(33).analyze(analysis.clone()).set_weight(66).analyze(analysis.clone());
            Pipeline::builder("canary-service").step(
                "deploy",
                Deploy::new(target, strategy, "{{service}}", "{{release}}").image("shop/{{service}}:{{release}}"),
            )
        })
        .after(["approve"])
        .step("page-oncall", CommandStep::new("echo").arg("a canary of {{release}} failed"))
        .after(["canary"])
        .rule(TriggerRule::OnFailure)
        .step("notify", CommandStep::new("echo").arg("posted to #deploys"))
        .after(["canary"])
        .rule(TriggerRule::Always)
        .build()
        .unwrap()
}

async fn pending(approvals: &Approvals) -> gantry_core::PendingApproval {
    for _ in 0..600 {
        if let Some(gate) = approvals.pending().pop() {
            return gate;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no gate waited within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromium-driver: run bash .ci/test-all"]
async fn a_canary_release_followed_approved_and_explained_in_chromium() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (sim, cluster) = cluster().await;
    let datadog = DatadogSim::start("dd-api-key", "dd-app-key").await.unwrap();
    datadog.follow(&sim);
    let (history, approvals) = (MemoryHistory::new(), Approvals::new());
    let view = RunView::new(Arc::new(history.clone()))
        .approvals(&approvals)
        .authorizer(host_login)
        .link("Datadog", "https://app.datadoghq.com/dashboard/shop?tpl_var_release={release}");
    let url = serve(view).await;
    let pipeline = release(&cluster, &datadog, &approvals);
    let context = Context::new()
        .var("repo", "acme/shop")
        .var("sha", "3f9c2e1")
        .var("environment", "production")
        .var("release", "3.1.0")
        .secret("token", Secret::new(SECRET));
    let run = Run::new(&pipeline, context).notify(history.clone());
    let run_id = run.id().to_owned();
    let handle = tokio::spawn(run.execute());
    let gate = pending(&approvals).await;

    let browser = Browser::start().await;
    let b = &browser.client;
    b.goto(&format!("{url}/runs/{run_id}")).await.unwrap();
    // The host's login: the authorizer reads this cookie.
    b.execute("document.cookie = 'session=ana; path=/; SameSite=Strict';", Vec::new()).await.unwrap();
    b.refresh().await.unwrap();

    // Live colours: checkout done, the gate waiting, the canaries not started.
    browser.until_node("checkout", "succeeded").await;
    browser.until_node("approve", "waiting").await;
    assert_eq!(browser.node_status("canary").await, "pending");
    let question = browser
        .until("the gate's question", "const q = document.querySelector('.gate .q'); return q && q.textContent;")
        .await;
    assert_eq!(question, "Ship 3.1.0 to production?");
    browser.screenshot("run-waiting-for-approval").await;

    // Approve from the page: the run goes on, and the decision names who and how.
    b.find(Locator::Css(".gate button.approve")).await.unwrap().click().await.unwrap();
    browser.until_node("approve", "succeeded").await;
    browser.until("the canaries to start", "const g = [...document.querySelectorAll('g.node')].find(g => g.dataset.step === 'canary'); return g && g.dataset.status !== 'pending';").await;
    let report = tokio::time::timeout(Duration::from_secs(120), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Failed, "web's canary fails its analysis");
    assert!(approvals.pending().is_empty());
    let decided = history.events(&run_id, 0).await.unwrap().into_iter().find_map(|e| match e.event {
        Event::Phase { phase: gantry_core::Phase::Approved, message, .. } => Some(message.to_string()),
        _ => None,
    });
    assert!(decided.as_deref().is_some_and(|m| m.contains("approved by ana via web")), "{decided:?}");
    let _ = gate;

    // The end, live: the fan-out failed, the failure path and the notification ran.
    browser.until("the run's verdict", "return document.getElementById('run-status').textContent === 'failed';").await;
    browser.until_node("canary", "failed").await;
    browser.until_node("page-oncall", "succeeded").await;
    browser.until_node("notify", "succeeded").await;
    browser.screenshot("run").await;

    // Unfold the fan-out, then web's item: its deploy failed; its log and reason are shown.
    browser.click_node("canary").await;
    browser.until_node("canary[web]", "failed").await;
    browser.until_node("canary[api]", "succeeded").await;
    browser.click_node("canary[web]").await;
    browser.until_node("canary[web]/deploy", "failed").await;
    browser.click_node("canary[web]/deploy").await;
    let reason = browser
        .until(
            "the failed step's reason",
            "const r = document.getElementById('log-reason'); return !r.hidden && r.textContent;",
        )
        .await;
    assert!(reason.as_str().unwrap().contains("analysis failed"), "{reason}");
    let log = browser.until("the failed step's log", "return document.getElementById('log').textContent;").await;
    assert!(log.as_str().unwrap().contains("aborted"), "the step's own lines: {log}");
    browser.screenshot("failed-step").await;

    // Markup in a log line is text; the secret is masked.
    browser.click_node("checkout").await;
    let log = browser
        .until(
            "checkout's log",
            "const t = document.getElementById('log').textContent; return t.includes('checked out') && t;",
        )
        .await;
    assert!(
        log.as_str().unwrap().contains("<script>window.__xss=1</script><img src=x onerror=window.__xss=2>"),
        "{log}"
    );
    let injected = b
        .execute("return [window.__xss || 0, document.querySelectorAll('#log script, #log img').length];", Vec::new())
        .await
        .unwrap();
    assert_eq!(injected, serde_json::json!([0, 0]), "nothing in a log line ran or became an element");
    let run_source = b.source().await.unwrap();

    // The canary page: per analysis and metric, both series with every point the judge used.
    b.goto(&format!("{url}/runs/{run_id}/canary")).await.unwrap();
    let analyses: Vec<Arc<gantry_core::analysis::Verdict>> = history
        .events(&run_id, 0)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Analysis { verdict, .. } => Some(verdict),
            _ => None,
        })
        .collect();
    assert_eq!(analyses.len(), 3, "two steps of api's canary, the first of web's");
    let count = format!("return document.querySelectorAll('.analysis').length === {};", analyses.len());
    browser.until("every analysis on the page", &count).await;
    for (i, verdict) in analyses.iter().enumerate() {
        for metric in &verdict.metrics {
            let script = format!(
                "const m = document.querySelector('.analysis[data-index=\"{i}\"] .metric[data-metric=\"{}\"]'); return m && [m.querySelectorAll('circle.baseline').length, m.querySelectorAll('circle.canary').length, m.querySelector('.badge').textContent];",
                metric.metric.name
            );
            let shown = browser.until("a metric's chart", &script).await;
            let (baseline, canary) = (metric.evidence.baseline.len(), metric.evidence.canary.len());
            assert!(baseline > 3 && canary > 3, "a chart worth drawing: {baseline} and {canary} points");
            assert_eq!(shown[0], baseline, "analysis {i}, {}: every baseline point", metric.metric.name);
            assert_eq!(shown[1], canary, "analysis {i}, {}: every canary point", metric.metric.name);
        }
    }
    let web = browser.until("web's route", "const s = document.querySelector('.state[data-step=\"canary[web]/deploy\"] [data-role=active]'); return s && s.textContent;").await;
    assert!(web.as_str().unwrap().contains("web 2.9.0"), "web's abort left all traffic on 2.9.0: {web}");
    let api = browser.until("api's route", "const s = document.querySelector('.state[data-step=\"canary[api]/deploy\"] [data-role=active]'); return s && s.textContent;").await;
    assert!(api.as_str().unwrap().contains("api 3.1.0"), "api's promotion: {api}");
    b.set_window_size(1440, 2200).await.unwrap();
    browser.screenshot("canary").await;
    b.set_window_size(1440, 1000).await.unwrap();
    let canary_source = b.source().await.unwrap();

    // The run list: the run, failed, in production; the filter finds it and a wrong environment does not.
    b.goto(&url).await.unwrap();
    let row = browser
        .until(
            "the run in the list",
            &format!("const r = document.querySelector('tr[data-run=\"{run_id}\"]'); return r && r.textContent;"),
        )
        .await;
    assert!(row.as_str().unwrap().contains("failed") && row.as_str().unwrap().contains("3f9c2e1"), "{row}");
    b.find(Locator::Css("input[name=env]")).await.unwrap().send_keys("staging").await.unwrap();
    b.find(Locator::Css("#filters button")).await.unwrap().click().await.unwrap();
    browser.until("the filter", "return document.getElementById('page-info').textContent === 'no runs';").await;
    b.refresh().await.unwrap();
    browser.until("the list again", &format!("return !!document.querySelector('tr[data-run=\"{run_id}\"]');")).await;
    browser.screenshot("runs").await;
    let list_source = b.source().await.unwrap();

    // No page, answer or stream holds the secret.
    let http = reqwest::Client::new();
    let mut everything = format!("{run_source}{canary_source}{list_source}");
    for path in [
        "/api/runs".to_owned(),
        format!("/api/runs/{run_id}"),
        format!("/api/runs/{run_id}/plan"),
        format!("/api/runs/{run_id}/events"),
        format!("/runs/{run_id}/graph.svg?open=canary"),
    ] {
        everything.push_str(&http.get(format!("{url}{path}")).send().await.unwrap().text().await.unwrap());
    }
    assert!(everything.contains("using"), "the line that used the secret is there");
    assert!(!everything.contains(SECRET), "a secret in a page or answer");

    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "the console has errors: {errors:?}");
    browser.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromium-driver: run bash .ci/test-all"]
async fn reject_in_chromium_takes_the_failure_path_and_a_read_only_view_offers_no_buttons() {
    let (history, approvals) = (MemoryHistory::new(), Approvals::new());
    let url = serve(RunView::new(Arc::new(history.clone())).approvals(&approvals).authorizer(host_login)).await;
    let read_only = serve(RunView::new(Arc::new(history.clone())).approvals(&approvals)).await;
    let pipeline = Pipeline::builder("hotfix")
        .step("approve", Approval::new(&approvals, "Ship the hotfix?"))
        .step("deploy", CommandStep::new("echo").arg("deployed"))
        .after(["approve"])
        .step("restore", CommandStep::new("echo").arg("kept the last good version"))
        .after(["approve"])
        .rule(TriggerRule::OnFailure)
        .build()
        .unwrap();
    let run = Run::new(&pipeline, Context::new()).notify(history.clone());
    let run_id = run.id().to_owned();
    let handle = tokio::spawn(run.execute());
    pending(&approvals).await;

    let browser = Browser::start().await;
    let b = &browser.client;
    // Read-only: the gate is listed without buttons.
    b.goto(&format!("{read_only}/runs/{run_id}")).await.unwrap();
    let gate = browser
        .until("the gate, read-only", "const g = document.querySelector('.gate'); return g && g.textContent;")
        .await;
    assert!(gate.as_str().unwrap().contains("read-only view"), "{gate}");
    assert!(b.find_all(Locator::Css(".gate button")).await.unwrap().is_empty());

    b.goto(&format!("{url}/runs/{run_id}")).await.unwrap();
    b.execute("document.cookie = 'session=bo; path=/; SameSite=Strict';", Vec::new()).await.unwrap();
    b.refresh().await.unwrap();
    browser.until_node("approve", "waiting").await;
    b.find(Locator::Css(".gate input")).await.unwrap().send_keys("not during the sale").await.unwrap();
    b.find(Locator::Css(".gate button.reject")).await.unwrap().click().await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    browser.until_node("approve", "failed").await;
    browser.until_node("deploy", "skipped").await;
    browser.until_node("restore", "succeeded").await;
    let phase = browser
        .until(
            "the rejection",
            "const p = document.querySelector('#phases li[data-phase=rejected]'); return p && p.textContent;",
        )
        .await;
    let phase = phase.as_str().unwrap();
    assert!(phase.contains("rejected by bo via web: not during the sale"), "{phase}");
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "the console has errors: {errors:?}");
    browser.client.clone().close().await.unwrap();
}
