//! The JSON and event-stream API over a run history, and the gates' decisions.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use gantry_core::{Decision, Event, RunQuery, RunStatus};

use crate::auth::Action;
use crate::view::RunView;

/// How often a live run's new events are looked for.
const POLL: Duration = Duration::from_millis(100);
/// Events sent to a viewer per read of the history.
const BATCH: usize = 1_000;

/// The run list's query string.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ListParams {
    pipeline: Option<String>,
    status: Option<String>,
    env: Option<String>,
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: usize,
}

pub(crate) fn refuse(status: StatusCode, why: &str) -> Response {
    (status, Json(serde_json::json!({ "error": why }))).into_response()
}

pub(crate) async fn list(State(view): State<RunView>, Query(params): Query<ListParams>) -> Response {
    let mut query = RunQuery::new().page(params.offset, params.limit.min(500));
    if let Some(pipeline) = params.pipeline.filter(|p| !p.is_empty()) {
        query = query.pipeline(pipeline);
    }
    if let Some(env) = params.env.filter(|e| !e.is_empty()) {
        query = query.var("environment", env);
    }
    if let Some(status) = params.status.as_deref().filter(|s| !s.is_empty()) {
        let status = match status {
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            other => return refuse(StatusCode::BAD_REQUEST, &format!("unknown status `{other}`")),
        };
        query = query.status(status);
    }
    Json(view.inner.history.list(&query).await).into_response()
}

pub(crate) async fn summary(State(view): State<RunView>, Path(id): Path<String>) -> Response {
    match view.inner.history.get(&id).await {
        Some(run) => Json(run).into_response(),
        None => refuse(StatusCode::NOT_FOUND, "no such run"),
    }
}

pub(crate) async fn plan(State(view): State<RunView>, Path(id): Path<String>) -> Response {
    if view.inner.history.get(&id).await.is_none() {
        return refuse(StatusCode::NOT_FOUND, "no such run");
    }
    match view.inner.history.plan(&id).await {
        Some(plan) => Json(&*plan).into_response(),
        None => refuse(StatusCode::NOT_FOUND, "the history has no plan of this run"),
    }
}

pub(crate) async fn events(State(view): State<RunView>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    // Resume after the last event the viewer saw.
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        // A number past any run's end (`u64::MAX`) resumes after the end: nothing more.
        .map_or(0, |last| last.saturating_add(1));
    if view.inner.history.get(&id).await.is_none() {
        return refuse(StatusCode::NOT_FOUND, "no such run");
    }
    let stream = futures::stream::unfold((view, id, from, false), |(view, id, next, done)| async move {
        if done {
            return None;
        }
        loop {
            // Whether the run had ended is read before its events: an event recorded between the two reads is in
            // this batch or the next, never skipped by ending early.
            let ended = view.inner.history.get(&id).await.is_some_and(|run| run.status.is_some());
            let mut batch = view.inner.history.events(&id, next).await?;
            if batch.is_empty() {
                if ended {
                    return None;
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
            // At most a batch at a time in memory per viewer, however long the run.
            batch.truncate(BATCH);
            let finished = batch.iter().any(|e| matches!(e.event, Event::RunFinished { .. }));
            let sse: Vec<Result<SseEvent, Infallible>> = batch
                .iter()
                .enumerate()
                .map(|(i, event)| {
                    let data = serde_json::to_string(event).unwrap_or_default();
                    Ok(SseEvent::default().id((next + i).to_string()).data(data))
                })
                .collect();
            let after = next + batch.len();
            return Some((futures::stream::iter(sse), (view, id, after, finished)));
        }
    });
    use futures::StreamExt as _;
    Sse::new(stream.flatten()).keep_alive(KeepAlive::default()).into_response()
}

/// `?run=` of the gate list.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct GateParams {
    run: Option<String>,
}

/// The gates waiting for a decision (of one run with `?run=`), each with whether this viewer may decide it (the
/// authorizer asked as for an approval).
pub(crate) async fn gates(State(view): State<RunView>, Query(params): Query<GateParams>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let pending = view.inner.approvals.as_ref().map(|a| a.pending()).unwrap_or_default();
    let mut gates = Vec::new();
    for gate in pending.into_iter().filter(|g| params.run.as_deref().is_none_or(|run| g.run_id == run)) {
        let can_act = match &view.inner.authorizer {
            Some(authorizer) => {
                authorizer.authorize(&parts, &Action::Approve { gate: gate.id.clone() }).await.is_some()
            }
            None => false,
        };
        let mut value = serde_json::to_value(&gate).unwrap_or_default();
        value["can_act"] = can_act.into();
        gates.push(value);
    }
    Json(serde_json::json!({ "gates": gates, "read_only": view.inner.authorizer.is_none() })).into_response()
}

/// A decision from the page.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct DecideBody {
    gate: String,
    approve: bool,
    #[serde(default)]
    comment: Option<String>,
}

/// Approves or rejects a gate: refused without an authorizer, without a valid anti-forgery token, or when the
/// authorizer says no. The decision records who (the authorizer's answer), when, and `web`.
pub(crate) async fn decide(State(view): State<RunView>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(authorizer) = view.inner.authorizer.clone() else {
        return refuse(StatusCode::FORBIDDEN, "this view is read-only: the host gave it no authorizer");
    };
    if let Some(why) = view.inner.csrf.check(&parts.headers) {
        return refuse(StatusCode::FORBIDDEN, why);
    }
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "the request is over 64 KiB");
    };
    let body: DecideBody = match serde_json::from_slice(&bytes) {
        Ok(body) => body,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("the request is not a decision: {e}")),
    };
    let Some(approvals) = view.inner.approvals.as_ref() else {
        return refuse(StatusCode::NOT_FOUND, &format!("no gate `{}` waits for a decision", body.gate));
    };
    let action = if body.approve {
        Action::Approve { gate: body.gate.clone() }
    } else {
        Action::Reject { gate: body.gate.clone() }
    };
    let Some(who) = authorizer.authorize(&parts, &action).await else {
        return refuse(StatusCode::FORBIDDEN, "the authorizer refused this request");
    };
    let mut decision = if body.approve { Decision::approve(who, "web") } else { Decision::reject(who, "web") };
    if let Some(comment) = body.comment.filter(|c| !c.trim().is_empty()) {
        decision = decision.comment(comment);
    }
    match approvals.decide(&body.gate, decision) {
        Ok(()) => Json(serde_json::json!({ "decided": body.gate })).into_response(),
        Err(e) => refuse(StatusCode::CONFLICT, &e.to_string()),
    }
}
