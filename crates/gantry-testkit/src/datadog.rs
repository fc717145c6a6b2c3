//! A simulated Datadog API on 127.0.0.1: metric queries (v1 and v2), events, monitors, with the request checks and
//! response shapes of the real API (recorded examples in `shared/testdata/datadog`).
//!
//! - `GET /api/v1/query?from=&to=&query=` (seconds) → `{"status":"ok","res_type":"time_series","series":[{
//!   "metric","scope","tag_set","pointlist":[[ms, value]],"start","end","interval","length",...}],...}`
//! - `POST /api/v2/query/timeseries` (`{"data":{"type":"timeseries_request","attributes":{"from","to" (ms),
//!   "interval","queries":[{"data_source":"metrics","name","query"}],"formulas":[{"formula"}]}}}`) →
//!   `{"data":{"id":"0","type":"timeseries_response","attributes":{"series":[...],"times":[ms],"values":[[...]]}}}`
//! - `POST /api/v1/events` → 202 `{"status":"ok","event":{"id","id_str",...}}` with ids beyond 2^53, as the real ones.
//! - `GET /api/v1/monitor?monitor_tags=a,b` → monitors carrying all those tags, with their `overall_state`.
//!
//! Every request must carry the keys in `DD-API-KEY` and (except events) `DD-APPLICATION-KEY`, else `403
//! {"errors":["Forbidden"]}`. Bad parameters get `400 {"errors":[...]}`. Faults: rate limits (`429` with the
//! `X-RateLimit-*` headers) and outages (`5xx`) for the next requests.
//!
//! Metrics come from a model: by default, one that [follows a simulated cluster](DatadogSim::follow): for
//! `trace.http.request.duration{service:S,version:V}` it averages the [`Health`](crate::kube::Health) of the ready
//! pods of S at V (per image, as scripted), with 5% noise per point; `trace.http.request.errors` is the errors of
//! 1,000 requests per pod and minute, and `trace.http.request.hits` those requests, both per pod (as an `avg:` over
//! pods reads them, so versions with different pod counts compare). No ready pods: no points. A version's metrics
//! exist at any time in a query's window while its pods are ready now (the simulation keeps no history).
//!
//! Not modelled: query functions and arithmetic beyond a single query per formula, `by {tag}` grouping, rollups,
//! units, pagination of monitors.

use crate::serve::{Faults, Loopback, lock};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// A metric value at a time, for a metric name and its tag filter; `None` when there is no data.
pub type Model = dyn Fn(&str, &BTreeMap<String, String>, SystemTime) -> Option<f64> + Send + Sync;

/// What the next matching requests get instead of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatadogFault {
    /// `429 Too Many Requests`, with `X-RateLimit-Reset` saying the window resets in this many seconds.
    RateLimited {
        /// Seconds until the window resets.
        reset_after: u64,
    },
    /// A server error with this status code.
    Outage(u16),
}

/// A monitor the simulated API reports.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Monitor {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its tags (`service:web`).
    pub tags: Vec<String>,
    /// `OK`, `Alert`, `Warn`, `No Data`.
    pub state: String,
}

impl Monitor {
    /// A monitor.
    pub fn new(id: u64, name: impl Into<String>, tags: &[&str], state: impl Into<String>) -> Self {
        Self { id, name: name.into(), tags: tags.iter().map(|t| (*t).to_owned()).collect(), state: state.into() }
    }
}

/// A request the simulated API received: method, path, and the query or body.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    /// `GET /api/v1/query`.
    pub request: String,
    /// The query string's parameters, or the JSON body.
    pub params: Value,
}

struct Shared {
    api_key: String,
    app_key: String,
    model: Mutex<Arc<Model>>,
    faults: Faults<DatadogFault>,
    events: Mutex<Vec<Value>>,
    monitors: Mutex<Vec<Monitor>>,
    received: Mutex<Vec<Received>>,
    next_event: Mutex<u64>,
}

/// A simulated Datadog API on 127.0.0.1. It stops when dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use gantry_testkit::datadog::DatadogSim;
/// let datadog = DatadogSim::start("api-key", "app-key").await.unwrap();
/// datadog.model(|metric, _tags, _at| (metric == "latency").then_some(100.0));
/// assert!(datadog.url().starts_with("http://127.0.0.1:"));
/// # }
/// ```
pub struct DatadogSim {
    server: Loopback,
    state: Arc<Shared>,
}

impl DatadogSim {
    /// Starts the API on a free loopback port, accepting these keys. Until a model is set, no metric has data.
    pub async fn start(api_key: &str, app_key: &str) -> std::io::Result<Self> {
        let state = Arc::new(Shared {
            api_key: api_key.to_owned(),
            app_key: app_key.to_owned(),
            model: Mutex::new(Arc::new(|_: &str, _: &BTreeMap<String, String>, _: SystemTime| None)),
            faults: Faults::default(),
            events: Mutex::default(),
            monitors: Mutex::default(),
            received: Mutex::default(),
            next_event: Mutex::new(6_327_818_702_635_911_562),
        });
        let app = axum::Router::new()
            .route("/api/v1/query", get(v1_query))
            .route("/api/v2/query/timeseries", post(v2_query))
            .route("/api/v1/events", post(post_event))
            .route("/api/v1/monitor", get(monitors))
            .with_state(Arc::clone(&state));
        Ok(Self { server: Loopback::serve(app).await?, state })
    }

    /// The base URL (`http://127.0.0.1:PORT`), in place of `https://api.datadoghq.com`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Serves metrics from `model`.
    pub fn model(
        &self,
        model: impl Fn(&str, &BTreeMap<String, String>, SystemTime) -> Option<f64> + Send + Sync + 'static,
    ) {
        *lock(&self.state.model) = Arc::new(model);
    }

    /// Serves the `trace.http.request.*` metrics of the services running on `cluster` (see the module docs).
    pub fn follow(&self, cluster: &crate::kube::ClusterSim) {
        let sim = cluster.shared();
        self.model(move |metric, tags, at| {
            let (service, version) = (tags.get("service")?, tags.get("version")?);
            let serving = sim.serving(service, version);
            if serving.is_empty() {
                return None;
            }
            let n = serving.len() as f64;
            let noise = unit_noise(metric, tags, at);
            match metric {
                "trace.http.request.duration" => {
                    let mean = serving.iter().map(|h| h.latency_ms).sum::<f64>() / n;
                    Some(mean * (1.0 + 0.05 * noise))
                }
                "trace.http.request.errors" => {
                    let expected: f64 = serving.iter().map(|h| 1000.0 * h.error_rate).sum::<f64>() / n;
                    Some((expected + expected.sqrt() * noise).max(0.0).round())
                }
                "trace.http.request.hits" => Some((1000.0 * (1.0 + 0.02 * noise)).round()),
                _ => None,
            }
        });
    }

    /// The next `times` requests get `fault` instead of an answer.
    pub fn fail_next(&self, fault: DatadogFault, times: u32) {
        self.state.faults.push(fault, times);
    }

    /// Sets the monitors the API reports.
    pub fn monitors(&self, monitors: Vec<Monitor>) {
        *lock(&self.state.monitors) = monitors;
    }

    /// The events posted so far, as stored (with `id` and `id_str`).
    pub fn events(&self) -> Vec<Value> {
        lock(&self.state.events).clone()
    }

    /// The requests received so far (answered or not), in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }
}

impl std::fmt::Debug for DatadogSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatadogSim").field("url", &self.url()).finish_non_exhaustive()
    }
}

/// A deterministic number in about [-1.7, 1.7] with mean 0, from the query and the minute.
fn unit_noise(metric: &str, tags: &BTreeMap<String, String>, at: SystemTime) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (metric, tags, at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)).hash(&mut h);
    let mut x = h.finish();
    // The sum of three uniforms, centred: roughly normal.
    let mut sum = 0.0;
    for _ in 0..3 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        sum += (x >> 11) as f64 / (1u64 << 53) as f64;
    }
    (sum - 1.5) * 2.0
}

fn errors(code: StatusCode, messages: &[&str]) -> Response {
    (code, [("content-type", "application/json")], json!({ "errors": messages }).to_string()).into_response()
}

/// Records the request, checks the keys, and applies a pending fault.
fn admit(state: &Shared, headers: &HeaderMap, request: &str, params: Value, needs_app_key: bool) -> Option<Response> {
    lock(&state.received).push(Received { request: request.to_owned(), params });
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("dd-api-key") != Some(state.api_key.as_str())
        || (needs_app_key && header("dd-application-key") != Some(state.app_key.as_str()))
    {
        return Some(errors(StatusCode::FORBIDDEN, &["Forbidden"]));
    }
    Some(match state.faults.take()? {
        DatadogFault::RateLimited { reset_after } => {
            let mut r = errors(StatusCode::TOO_MANY_REQUESTS, &["Too many requests"]);
            for (k, v) in [
                ("x-ratelimit-limit", "100".to_owned()),
                ("x-ratelimit-period", "60".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset", reset_after.to_string()),
                ("x-ratelimit-name", "query".to_owned()),
            ] {
                r.headers_mut().insert(k, v.parse().expect("a header value"));
            }
            r
        }
        DatadogFault::Outage(code) => {
            errors(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &["Internal Server Error"])
        }
    })
}

/// `avg:metric.name{tag:a,tag2:b}` → (metric, tags). Aggregator optional; `*` means no filter.
fn parse_query(query: &str) -> Result<(String, BTreeMap<String, String>), String> {
    let query = query.trim();
    let (head, rest) =
        query.split_once('{').ok_or_else(|| format!("Error parsing query: missing scope in `{query}`"))?;
    let scope = rest.strip_suffix('}').ok_or_else(|| format!("Error parsing query: unclosed scope in `{query}`"))?;
    let metric = head.rsplit_once(':').map_or(head, |(_, m)| m).trim();
    if metric.is_empty() {
        return Err(format!("Error parsing query: no metric in `{query}`"));
    }
    let mut tags = BTreeMap::new();
    for tag in scope.split(',').map(str::trim).filter(|t| !t.is_empty() && *t != "*") {
        let (k, v) = tag.split_once(':').unwrap_or((tag, ""));
        tags.insert(k.to_owned(), v.to_owned());
    }
    Ok((metric.to_owned(), tags))
}

/// Points of a query from `from` to `to` (seconds): one per `interval` seconds, where the model has data.
fn points(
    state: &Shared,
    metric: &str,
    tags: &BTreeMap<String, String>,
    from: u64,
    to: u64,
    interval: u64,
) -> Vec<(u64, f64)> {
    let model = Arc::clone(&lock(&state.model));
    let start = from.div_ceil(interval) * interval;
    (0..)
        .map(|i| start + i * interval)
        .take_while(|t| *t <= to)
        .take(10_000)
        .filter_map(|t| model(metric, tags, UNIX_EPOCH + Duration::from_secs(t)).map(|v| (t, v)))
        .collect()
}

/// The interval Datadog picks for a window of `seconds` (about 300 points at most, at least 1 s, whole minutes from
/// an hour up).
fn interval_for(seconds: u64) -> u64 {
    let raw = (seconds / 300).max(1);
    if seconds >= 3600 { raw.div_ceil(60) * 60 } else { raw }
}

async fn v1_query(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let echo = json!(params);
    if let Some(r) = admit(&state, &headers, "GET /api/v1/query", echo, true) {
        return r;
    }
    let number = |k: &str| params.get(k).and_then(|v| v.parse::<u64>().ok());
    let (Some(from), Some(to), Some(query)) = (number("from"), number("to"), params.get("query")) else {
        return errors(
            StatusCode::BAD_REQUEST,
            &["The value provided for parameter 'from', 'to' or 'query' is invalid"],
        );
    };
    if from > to {
        return errors(StatusCode::BAD_REQUEST, &["'from' must be before 'to'"]);
    }
    let (metric, tags) = match parse_query(query) {
        Ok(q) => q,
        Err(e) => return errors(StatusCode::BAD_REQUEST, &[&e]),
    };
    let interval = interval_for(to - from);
    let points = points(&state, &metric, &tags, from, to, interval);
    let scope = if tags.is_empty() {
        "*".to_owned()
    } else {
        tags.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(",")
    };
    let series: Vec<Value> = if points.is_empty() {
        Vec::new()
    } else {
        vec![json!({
            "metric": metric, "display_name": metric, "expression": query, "scope": scope,
            "tag_set": tags.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>(),
            "pointlist": points.iter().map(|(t, v)| json!([t * 1000, v])).collect::<Vec<_>>(),
            "start": points[0].0 * 1000, "end": points[points.len() - 1].0 * 1000,
            "interval": interval, "length": points.len(), "aggr": query.split_once(':').map(|(a, _)| a),
            "unit": null, "query_index": 0, "attributes": {}
        })]
    };
    let body = json!({
        "status": "ok", "resp_version": 1, "res_type": "time_series", "query": query, "message": "",
        "from_date": from * 1000, "to_date": to * 1000, "group_by": [], "times": [], "values": [], "series": series
    });
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn v2_query(State(state): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(r) = admit(&state, &headers, "POST /api/v2/query/timeseries", parsed.clone(), true) {
        return r;
    }
    if parsed.pointer("/data/type").and_then(Value::as_str) != Some("timeseries_request") {
        return errors(
            StatusCode::BAD_REQUEST,
            &["API input validation failed: Invalid type. Expected \"timeseries_request\"."],
        );
    }
    let attributes = &parsed["data"]["attributes"];
    let (Some(from), Some(to)) = (attributes["from"].as_u64(), attributes["to"].as_u64()) else {
        return errors(StatusCode::BAD_REQUEST, &["API input validation failed: 'from' and 'to' are required (ms)"]);
    };
    let queries = attributes["queries"].as_array().cloned().unwrap_or_default();
    let formulas = attributes["formulas"].as_array().cloned().unwrap_or_default();
    let mut series = Vec::new();
    let mut values = Vec::new();
    let mut times: Vec<u64> = Vec::new();
    let interval =
        attributes["interval"].as_u64().map_or_else(|| interval_for((to - from) / 1000), |ms| (ms / 1000).max(1));
    for (index, formula) in formulas.iter().enumerate() {
        let name = formula["formula"].as_str().unwrap_or_default();
        let Some(query) = queries.iter().find(|q| q["name"].as_str() == Some(name)) else {
            return errors(
                StatusCode::BAD_REQUEST,
                &[&format!(
                    "API input validation failed: formula `{name}` names no query (only single-query formulas are simulated)"
                )],
            );
        };
        let (metric, tags) = match parse_query(query["query"].as_str().unwrap_or_default()) {
            Ok(q) => q,
            Err(e) => return errors(StatusCode::BAD_REQUEST, &[&e]),
        };
        let points = points(&state, &metric, &tags, from / 1000, to / 1000, interval);
        if points.is_empty() {
            continue;
        }
        if times.is_empty() {
            times = points.iter().map(|(t, _)| t * 1000).collect();
        }
        let by_time: BTreeMap<u64, f64> = points.into_iter().map(|(t, v)| (t * 1000, v)).collect();
        values.push(times.iter().map(|t| by_time.get(t).map_or(Value::Null, |v| json!(v))).collect::<Vec<_>>());
        series.push(json!({"group_tags": [], "query_index": index, "unit": null}));
    }
    let body = json!({"data": {"id": "0", "type": "timeseries_response", "attributes": {"series": series, "times": times, "values": values}}});
    (StatusCode::OK, [("content-type", "application/vnd.api+json")], body.to_string()).into_response()
}

async fn post_event(State(state): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(r) = admit(&state, &headers, "POST /api/v1/events", parsed.clone(), false) {
        return r;
    }
    let (Some(title), Some(text)) = (parsed["title"].as_str(), parsed["text"].as_str()) else {
        return errors(StatusCode::BAD_REQUEST, &["Event title and text are required"]);
    };
    let id = {
        let mut next = lock(&state.next_event);
        *next += 1;
        *next
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let event = json!({
        "id": id, "id_str": id.to_string(), "title": title, "text": text, "date_happened": now,
        "handle": null, "priority": parsed.get("priority").cloned().unwrap_or(Value::Null), "related_event_id": null,
        "tags": parsed.get("tags").cloned().unwrap_or(json!([])), "alert_type": parsed.get("alert_type").cloned().unwrap_or(json!("info")),
        "url": format!("https://app.datadoghq.com/event/event?id={id}")
    });
    lock(&state.events).push(event.clone());
    (StatusCode::ACCEPTED, [("content-type", "application/json")], json!({"status": "ok", "event": event}).to_string())
        .into_response()
}

async fn monitors(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = admit(&state, &headers, "GET /api/v1/monitor", json!(params), true) {
        return r;
    }
    let wanted: Vec<&str> =
        params.get("monitor_tags").map(|t| t.split(',').map(str::trim).collect()).unwrap_or_default();
    let list: Vec<Value> = lock(&state.monitors)
        .iter()
        .filter(|m| wanted.iter().all(|w| m.tags.iter().any(|t| t == w)))
        .map(|m| json!({"id": m.id, "name": m.name, "tags": m.tags, "overall_state": m.state, "type": "metric alert"}))
        .collect();
    (StatusCode::OK, [("content-type", "application/json")], Value::Array(list).to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_into_metric_and_tags() {
        let (metric, tags) = parse_query("avg:trace.http.request.duration{service:web,version:2}").unwrap();
        assert_eq!(metric, "trace.http.request.duration");
        assert_eq!(tags, BTreeMap::from([("service".into(), "web".into()), ("version".into(), "2".into())]));
        assert_eq!(parse_query("system.cpu.idle{*}").unwrap(), ("system.cpu.idle".into(), BTreeMap::new()));
        assert!(parse_query("avg:nothing").unwrap_err().contains("missing scope"));
    }

    #[test]
    fn intervals_follow_the_window() {
        assert_eq!(interval_for(60), 1);
        assert_eq!(interval_for(1800), 6);
        assert_eq!(interval_for(86_400), 300, "a day at five minutes, as the recorded v1 response");
    }
}
