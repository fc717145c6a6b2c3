//! The JSON and event-stream API over a run history.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use gantry_core::{Event, RunHistory, RunQuery, RunStatus};

/// How often a live run's new events are looked for.
const POLL: Duration = Duration::from_millis(100);

/// The run view over a history.
#[derive(Clone)]
pub struct RunView {
    history: Arc<dyn RunHistory>,
}

impl std::fmt::Debug for RunView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunView").finish_non_exhaustive()
    }
}

/// The run list's query string.
#[derive(Debug, Default, serde::Deserialize)]
struct ListParams {
    pipeline: Option<String>,
    status: Option<String>,
    env: Option<String>,
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: usize,
}

impl RunView {
    /// A view of `history`.
    pub fn new(history: Arc<dyn RunHistory>) -> Self {
        Self { history }
    }

    /// The routes, to mount under any prefix.
    pub fn router(self) -> axum::Router {
        axum::Router::new()
            .route("/api/runs", axum::routing::get(list))
            .route("/api/runs/{id}", axum::routing::get(summary))
            .route("/api/runs/{id}/events", axum::routing::get(events))
            .with_state(self)
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, Json(serde_json::json!({ "error": why }))).into_response()
}

async fn list(State(view): State<RunView>, Query(params): Query<ListParams>) -> Response {
    let mut query = RunQuery::new().page(params.offset, params.limit.min(500));
    if let Some(pipeline) = params.pipeline {
        query = query.pipeline(pipeline);
    }
    if let Some(env) = params.env {
        query = query.var("environment", env);
    }
    if let Some(status) = params.status.as_deref() {
        let status = match status {
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            other => return refuse(StatusCode::BAD_REQUEST, &format!("unknown status `{other}`")),
        };
        query = query.status(status);
    }
    Json(view.history.list(&query).await).into_response()
}

async fn summary(State(view): State<RunView>, Path(id): Path<String>) -> Response {
    match view.history.get(&id).await {
        Some(run) => Json(run).into_response(),
        None => refuse(StatusCode::NOT_FOUND, "no such run"),
    }
}

async fn events(State(view): State<RunView>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    // Resume after the last event the viewer saw.
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |last| last + 1);
    if view.history.get(&id).await.is_none() {
        return refuse(StatusCode::NOT_FOUND, "no such run");
    }
    let stream = futures::stream::unfold((view, id, from, false), |(view, id, next, done)| async move {
        if done {
            return None;
        }
        loop {
            let batch = view.history.events(&id, next).await?;
            if batch.is_empty() {
                tokio::time::sleep(POLL).await;
                continue;
            }
            let finished = batch.iter().any(|e| matches!(e, Event::RunFinished { .. }));
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
