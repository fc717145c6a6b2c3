//! The view: its settings, its routes, and the HTML pages (shells the page script fills from the API).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gantry_core::{Approvals, RunHistory, RunInfo, RunSummary};

use crate::api;
use crate::auth::{Authorizer, CSRF_COOKIE, Csrf};
use crate::graph;
use crate::html::escape;

const SCRIPT: &str = include_str!("../assets/view.js");
const STYLE: &str = include_str!("../assets/view.css");
/// Pages run only the view's own script and style, and are never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

#[derive(Clone)]
pub(crate) struct Inner {
    pub(crate) history: Arc<dyn RunHistory>,
    pub(crate) approvals: Option<Approvals>,
    pub(crate) authorizer: Option<Arc<dyn Authorizer>>,
    pub(crate) csrf: Csrf,
    links: Vec<(String, String)>,
    mounted_at: Option<String>,
    title: String,
}

/// The run view over a history: pages, the JSON API and the live event streams, as an axum
/// [`Router`](axum::Router) to mount under any prefix. Clones share everything.
#[derive(Clone)]
pub struct RunView {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for RunView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunView")
            .field("approvals", &self.inner.approvals.is_some())
            .field("authorizer", &self.inner.authorizer.is_some())
            .field("links", &self.inner.links.len())
            .finish_non_exhaustive()
    }
}

impl RunView {
    /// A read-only view of `history`.
    pub fn new(history: Arc<dyn RunHistory>) -> Self {
        let inner = Inner {
            history,
            approvals: None,
            authorizer: None,
            csrf: Csrf::new(),
            links: Vec::new(),
            mounted_at: None,
            title: "Gantry".to_owned(),
        };
        Self { inner: Arc::new(inner) }
    }

    fn with(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        f(Arc::make_mut(&mut self.inner));
        self
    }

    /// Lists the waiting gates of `approvals` on run pages, with Approve and Reject buttons for the viewers the
    /// [`authorizer`](Self::authorizer) would let approve.
    pub fn approvals(self, approvals: &Approvals) -> Self {
        let approvals = approvals.clone();
        self.with(|inner| inner.approvals = Some(approvals))
    }

    /// Who may act (approve, reject): without one the view is read-only and refuses every state-changing request.
    pub fn authorizer(self, authorizer: impl Authorizer) -> Self {
        self.with(|inner| inner.authorizer = Some(Arc::new(authorizer)))
    }

    /// A link shown on each run's page whose variables it has: `template` is filled as
    /// [`RunInfo::fill_url`](gantry_core::RunInfo::fill_url) does (`{run_id}`, `{pipeline}`, `{service}`...). Runs
    /// with `repo` and `sha` (GitHub's triggers set them) link their commit, and with `deployment_id` the
    /// repository's deployments, without one.
    pub fn link(self, label: impl Into<String>, template: impl Into<String>) -> Self {
        let link = (label.into(), template.into());
        self.with(|inner| inner.links.push(link))
    }

    /// The prefix the view is served under, for hosts that mount it by other means than axum's `nest` (which the
    /// view reads by itself), and under a `nest` whose path has parameters (`/{team}/deploys`): the view would see
    /// the pattern, not the path.
    pub fn mounted_at(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into().trim_end_matches('/').to_owned();
        self.with(|inner| inner.mounted_at = Some(prefix))
    }

    /// The key of the anti-forgery tokens, for replicas behind one address: each accepts the others' tokens. By
    /// default the key is random, and tokens are valid for this process only.
    pub fn csrf_key(self, key: &gantry_core::Secret) -> Self {
        let csrf = Csrf::from_secret(key.expose());
        self.with(|inner| inner.csrf = csrf)
    }

    /// The title of the pages (`Gantry`).
    pub fn title(self, title: impl Into<String>) -> Self {
        let title = title.into();
        self.with(|inner| inner.title = title)
    }

    /// The routes, to mount under any prefix.
    pub fn router(self) -> axum::Router {
        axum::Router::new()
            .route("/", get(list_page))
            .route("/runs/{id}", get(run_page))
            .route("/runs/{id}/canary", get(canary_page))
            .route("/runs/{id}/graph.svg", get(graph_svg))
            .route("/assets/view.js", get(script))
            .route("/assets/view.css", get(style))
            .route("/api/runs", get(api::list))
            .route("/api/runs/{id}", get(api::summary))
            .route("/api/runs/{id}/plan", get(api::plan))
            .route("/api/runs/{id}/events", get(api::events))
            .route("/api/gates", get(api::gates))
            .route("/api/gates/decide", post(api::decide))
            .with_state(self)
    }

    fn base(&self, nested: Option<&axum::extract::NestedPath>) -> String {
        match (&self.inner.mounted_at, nested) {
            (Some(prefix), _) => prefix.clone(),
            (None, Some(path)) => path.as_str().trim_end_matches('/').to_owned(),
            (None, None) => String::new(),
        }
    }

    /// The links of a run: the commit and GitHub deployment when its variables name them, then the host's.
    fn links_of(&self, run: &RunSummary) -> Vec<(String, String)> {
        let info = RunInfo::new(Arc::clone(&run.run_id), Arc::clone(&run.pipeline), run.vars.clone());
        let mut links = Vec::new();
        if run.vars.contains_key("repo") && run.vars.contains_key("sha") {
            links.extend(info.fill_url("https://github.com/{repo}/commit/{sha}").map(|u| ("Commit".to_owned(), u)));
            if run.vars.contains_key("deployment_id") {
                let deployments = "https://github.com/{repo}/deployments";
                links.extend(info.fill_url(deployments).map(|u| ("GitHub deployments".to_owned(), u)));
            }
        }
        for (label, template) in &self.inner.links {
            links.extend(info.fill_url(template).map(|u| (label.clone(), u)));
        }
        // Only web links: a template cannot make a `javascript:` link.
        links.retain(|(_, url)| url.starts_with("https://") || url.starts_with("http://"));
        links
    }

    /// A page: the shell with the view's script, the data it needs in attributes, and a fresh anti-forgery cookie
    /// for a browser without a valid one.
    fn page(
        &self,
        headers: &HeaderMap,
        base: &str,
        kind: &str,
        run: Option<&str>,
        title: &str,
        body: &str,
    ) -> Response {
        let (token, fresh) = match self.inner.csrf.token_in_cookie(headers) {
            Some(token) => (token, false),
            None => (self.inner.csrf.issue(), true),
        };
        let html = format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="icon" href="data:,"><link rel="stylesheet" href="{base}/assets/view.css"></head>
<body data-base="{base}" data-page="{kind}" data-run="{run}" data-csrf="{token}">
<header class="top"><a class="brand" href="{home}">{brand}</a><span class="crumbs">{crumbs}</span></header>
<main>{body}</main>
<script src="{base}/assets/view.js"></script>
</body></html>"#,
            title = escape(title),
            base = escape(base),
            kind = kind,
            run = escape(run.unwrap_or("")),
            brand = escape(&self.inner.title),
            // Under axum's `nest("/deploys", ..)` the run list is `/deploys` (not `/deploys/`).
            home = if base.is_empty() { "/".to_owned() } else { escape(base) },
            crumbs = run.map(|r| format!("run <code>{}</code>", escape(r))).unwrap_or_default(),
        );
        let mut response = (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
                (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
                (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            html,
        )
            .into_response();
        if fresh {
            let path = if base.is_empty() { "/" } else { base };
            // `Secure` when the browser came over https (directly, or through a proxy that says so).
            let https = headers.get("x-forwarded-proto").is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
            let secure = if https { "; Secure" } else { "" };
            let cookie = format!("{CSRF_COOKIE}={token}; Path={path}; SameSite=Strict; HttpOnly{secure}");
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
        }
        response
    }
}

type Nested = Option<Extension<axum::extract::NestedPath>>;

async fn list_page(State(view): State<RunView>, nested: Nested, headers: HeaderMap) -> Response {
    let base = view.base(nested.as_ref().map(|n| &n.0));
    let body = r#"<h1>Runs</h1>
<form id="filters" class="filters"><label>Pipeline <input name="pipeline" autocomplete="off"></label>
<label>Status <select name="status"><option value="">any</option><option>succeeded</option><option>failed</option><option>cancelled</option></select></label>
<label>Environment <input name="env" autocomplete="off"></label><button type="submit">Filter</button></form>
<table class="runs"><thead><tr><th>Status</th><th>Pipeline</th><th>Trigger</th><th>Commit</th><th>Environment</th><th>Started</th><th>Duration</th><th>Steps</th></tr></thead><tbody id="runs"></tbody></table>
<nav class="pager"><button id="prev" type="button">Newer</button><span id="page-info"></span><button id="next" type="button">Older</button></nav>"#;
    view.page(&headers, &base, "list", None, "Runs", body)
}

async fn run_page(State(view): State<RunView>, nested: Nested, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let base = view.base(nested.as_ref().map(|n| &n.0));
    let Some(run) = view.inner.history.get(&id).await else {
        return not_found(&view, &headers, &base, &id);
    };
    let links: String = view
        .links_of(&run)
        .iter()
        .map(|(label, url)| format!(r#"<a href="{}" rel="noopener noreferrer">{}</a>"#, escape(url), escape(label)))
        .collect();
    let vars: String = run
        .vars
        .iter()
        .map(|(k, v)| format!("<span class=\"var\"><b>{}</b> {}</span>", escape(k), escape(v)))
        .collect();
    let body = format!(
        r#"<section class="run-head"><h1><span id="run-status" class="badge st-running">running</span> {pipeline}</h1>
<div class="vars">{vars}</div><div class="links">{links}<a href="{base}/runs/{id}/canary">Canary and traffic</a></div>
<div id="run-facts" class="facts"></div></section>
<section id="gates" class="gates" hidden></section>
<section class="graph-box"><h2>Pipeline <small>click a group to unfold it, a step for its log</small></h2><div id="graph"></div></section>
<div class="split"><section class="steps"><h2>Steps</h2><table><thead><tr><th>Step</th><th>Status</th><th>Attempts</th><th>Duration</th></tr></thead><tbody id="steps"></tbody></table></section>
<section class="log"><h2>Log <span id="log-step"></span></h2><div id="log-reason" class="reason" hidden></div><pre id="log" class="log-pane">Select a step to see its log.</pre></section></div>
<section class="phases"><h2>Deployment</h2><ol id="phases"></ol></section>
<section class="plan"><h2>Plan <small>what the run was to do as it started</small></h2><table><thead><tr><th>Step</th><th>Waits for</th><th>Expected</th><th>Does</th></tr></thead><tbody id="plan"></tbody></table></section>"#,
        pipeline = escape(&run.pipeline),
        base = escape(&base),
        id = escape(&url_segment(&id)),
    );
    view.page(&headers, &base, "run", Some(&id), &format!("{} · {}", run.pipeline, id), &body)
}

async fn canary_page(
    State(view): State<RunView>,
    nested: Nested,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let base = view.base(nested.as_ref().map(|n| &n.0));
    let Some(run) = view.inner.history.get(&id).await else {
        return not_found(&view, &headers, &base, &id);
    };
    let body = format!(
        r#"<section class="run-head"><h1>Canary and traffic · {pipeline}</h1><div class="links"><a href="{base}/runs/{id}">Back to the run</a></div></section>
<section id="routes" class="routes"><h2>Traffic</h2><div id="route-state"></div><div id="weights"></div></section>
<section id="analyses"><h2>Analyses</h2><p id="no-analysis" class="muted">No analysis has reached a verdict yet.</p></section>"#,
        pipeline = escape(&run.pipeline),
        base = escape(&base),
        id = escape(&url_segment(&id)),
    );
    view.page(&headers, &base, "canary", Some(&id), &format!("Canary · {id}"), &body)
}

fn not_found(view: &RunView, headers: &HeaderMap, base: &str, id: &str) -> Response {
    let body = format!(
        r#"<h1>No such run</h1><p>The history has no run <code>{}</code>: it may be older than what it keeps.</p>"#,
        escape(id)
    );
    let mut response = view.page(headers, base, "missing", None, "No such run", &body);
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// The graph of a run's plan with the groups named by `open=` (repeatable) unfolded.
async fn graph_svg(State(view): State<RunView>, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    let Some(plan) = view.inner.history.plan(&id).await else {
        return api::refuse(StatusCode::NOT_FOUND, "the history has no plan of this run");
    };
    let open: BTreeSet<String> = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.strip_prefix("open="))
        .map(percent_decode)
        .collect();
    let drawing = graph::svg(&graph::layout(&plan, &open));
    let headers = [
        (header::CONTENT_TYPE, "image/svg+xml"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Opened on its own, the drawing runs nothing.
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'self'"),
    ];
    (headers, drawing).into_response()
}

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// `id` percent-encoded for a path segment.
fn url_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A query value decoded (`+` is a space, `%XX` a byte); invalid UTF-8 is replaced.
fn percent_decode(text: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            (other, ..) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_decode() {
        assert_eq!(super::percent_decode("deploy%5Bweb%5D"), "deploy[web]");
        assert_eq!(super::percent_decode("a+b%2Fc"), "a b/c");
        assert_eq!(super::percent_decode("100%"), "100%");
        assert_eq!(super::percent_decode("%zz"), "%zz");
    }
}
