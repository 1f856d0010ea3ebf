//! The router table (every route of the server in one place) and the handlers, which only
//! translate between HTTP and the engine: they never touch the store or spawn processes.

use crate::HttpOptions;
use crate::auth::{ApiToken, RunToken, caller, require_api_token};
use crate::backend::Backend;
use crate::error::{ApiError, ErrorMessage};
use crate::extract::{BodyLimit, Json, OptionalJson, Query, TaskIdPath};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use domain::Stage;
use engine::api::{
    NewProject, NewTask, ProjectView, SignalRequest, StreamCursor, TaskDetail, TaskView,
};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

type ApiResult<T> = Result<T, ApiError>;

/// All routes. Everything above `route_layer` requires the API token; the signal route carries a
/// run token instead and `/healthz` is open. Bodies over `options.max_body_bytes` are refused
/// with 413, and error messages are redacted for callers other than the admin.
pub(crate) fn router<B: Backend>(backend: B, api_token: String, options: HttpOptions) -> Router {
    let token = ApiToken(Arc::from(api_token));
    Router::new()
        .route(
            "/api/projects",
            get(list_projects::<B>).post(add_project::<B>),
        )
        .route(
            "/api/projects/{project}/settings",
            axum::routing::put(update_project_settings::<B>),
        )
        .route("/api/tasks", get(list_tasks::<B>).post(create_task::<B>))
        .route(
            "/api/tasks/{id}",
            get(show_task::<B>).delete(delete_task::<B>),
        )
        .route("/api/tasks/{id}/approve", post(approve::<B>))
        .route("/api/tasks/{id}/answer", post(answer::<B>))
        .route("/api/tasks/{id}/run", post(run::<B>))
        .route("/api/tasks/{id}/stop", post(stop::<B>))
        .route("/api/tasks/{id}/resume", post(resume::<B>))
        .route("/api/tasks/{id}/merge", post(merge::<B>))
        .route("/api/tasks/{id}/logs", get(logs::<B>))
        .route("/api/tasks/{id}/stream", get(task_stream::<B>))
        .route("/api/stream", get(stream::<B>))
        .route("/api/status", get(status::<B>))
        .route_layer(middleware::from_fn_with_state(
            token.clone(),
            require_api_token,
        ))
        .route("/api/signal", post(signal::<B>))
        // Authenticated by the delivery's HMAC signature, not by a token.
        .route("/api/webhooks/github", post(github_webhook::<B>))
        .route("/healthz", get(healthz))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(Extension(BodyLimit(options.max_body_bytes)))
        .layer(middleware::from_fn_with_state(token, redact_errors))
        .layer(middleware::from_fn(log_request))
        .with_state(backend)
}

/// Error messages keep absolute server paths and raw command lines for the admin only: for any
/// other caller they are redacted (`<path>`, `<command>`) and the full message is logged.
async fn redact_errors(State(token): State<ApiToken>, req: Request, next: Next) -> Response {
    let caller = caller(req.headers(), &token);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut response = next.run(req).await;
    let Some(ErrorMessage(message)) = response.extensions_mut().remove::<ErrorMessage>() else {
        return response;
    };
    if caller.sees_error_details() {
        return response;
    }
    let redacted = crate::redact::redact(&message);
    if redacted == message {
        return response;
    }
    tracing::warn!(
        %method,
        %path,
        caller = caller.name(),
        error = %message,
        "error details withheld from the caller"
    );
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = json!({ "error": redacted }).to_string();
    Response::from_parts(parts, Body::from(body))
}

async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({ "status": "ok" }))
}

async fn status<B: Backend>(State(b): State<B>) -> axum::Json<engine::api::ServerStatus> {
    axum::Json(b.status())
}

async fn list_projects<B: Backend>(State(b): State<B>) -> ApiResult<axum::Json<Vec<ProjectView>>> {
    Ok(axum::Json(b.list_projects().await?))
}

async fn add_project<B: Backend>(
    State(b): State<B>,
    Json(req): Json<NewProject>,
) -> ApiResult<(StatusCode, axum::Json<ProjectView>)> {
    Ok((StatusCode::CREATED, axum::Json(b.add_project(req).await?)))
}

/// Replaces a project's settings (secrets shown redacted are kept).
async fn update_project_settings<B: Backend>(
    State(b): State<B>,
    axum::extract::Path(project): axum::extract::Path<String>,
    Json(settings): Json<engine::api::ProjectSettings>,
) -> ApiResult<axum::Json<ProjectView>> {
    Ok(axum::Json(
        b.update_project_settings(project, settings).await?,
    ))
}

#[derive(Deserialize)]
struct TaskFilter {
    project: Option<String>,
}

async fn list_tasks<B: Backend>(
    State(b): State<B>,
    Query(filter): Query<TaskFilter>,
) -> ApiResult<axum::Json<Vec<TaskView>>> {
    Ok(axum::Json(b.list_tasks(filter.project).await?))
}

async fn create_task<B: Backend>(
    State(b): State<B>,
    Json(req): Json<NewTask>,
) -> ApiResult<(StatusCode, axum::Json<TaskView>)> {
    Ok((StatusCode::CREATED, axum::Json(b.create_task(req).await?)))
}

async fn show_task<B: Backend>(
    State(b): State<B>,
    TaskIdPath(id): TaskIdPath,
) -> ApiResult<axum::Json<TaskDetail>> {
    Ok(axum::Json(b.task(id).await?))
}

async fn approve<B: Backend>(
    State(b): State<B>,
    TaskIdPath(id): TaskIdPath,
) -> ApiResult<axum::Json<TaskView>> {
    Ok(axum::Json(b.approve(id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    text: String,
}

async fn answer<B: Backend>(
    State(b): State<B>,
    TaskIdPath(id): TaskIdPath,
    Json(body): Json<AnswerBody>,
) -> ApiResult<axum::Json<TaskView>> {
    Ok(axum::Json(b.answer(id, body.text).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RunBody {
    #[serde(default)]
    stage: Option<Stage>,
}

async fn run<B: Backend>(
    State(b): State<B>,
    TaskIdPath(id): TaskIdPath,
    OptionalJson(body): OptionalJson<RunBody>,
) -> ApiResult<axum::Json<TaskView>> {
    Ok(axum::Json(b.run(id, body.stage).await?))
}

async fn stop<B: Backend>(
    State(b): State<B>,
    TaskIdPath(id): TaskIdPath,
) -> ApiResult<axum::Json<TaskView>> {
    Ok(axum::Json(b.stop(id).await?))
}

async fn resume<B: Backend>(
    State(b): State<B>,
    TaskIdPath(id): TaskIdPath,
) -> ApiResult<axum::Json<TaskView>> {
    Ok(axum::Json(b.resume(id).await?))
}

async fn delete_task<B: Backend>(
    State(b): State<B>,
    TaskIdPath(id): TaskIdPath,
) -> ApiResult<axum::Json<TaskView>> {
    Ok(axum::Json(b.delete(id).await?))
}

async fn merge<B: Backend>(
    State(b): State<B>,
    TaskIdPath(id): TaskIdPath,
) -> ApiResult<axum::Json<TaskView>> {
    Ok(axum::Json(b.merge(id).await?))
}

#[derive(Deserialize)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
}

/// The task's transcript as NDJSON: one `FollowItem` per line, streamed as the engine yields them.
async fn logs<B: Backend>(
    State(b): State<B>,
    TaskIdPath(id): TaskIdPath,
    Query(query): Query<LogsQuery>,
) -> ApiResult<Response> {
    let items = b.logs(id, query.follow).await?;
    // Whatever is ready goes out as one chunk: a fast agent is not one write per event.
    let lines = items.ready_chunks(256).map(|chunks| {
        let bytes = if chunks.len() == 1 {
            chunks.into_iter().next().unwrap_or_default()
        } else {
            Bytes::from(chunks.concat())
        };
        Ok::<_, std::convert::Infallible>(bytes)
    });
    let headers = [
        (header::CONTENT_TYPE, "application/x-ndjson"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    Ok((headers, Body::from_stream(lines)).into_response())
}

#[derive(Deserialize)]
struct StreamQuery {
    /// Where to resume, for clients that cannot set `Last-Event-ID`.
    after: Option<String>,
}

/// Where a stream resumes: the `Last-Event-ID` header, else `?after=`; a malformed one is a 400.
fn resume_point(
    headers: &axum::http::HeaderMap,
    query: &StreamQuery,
) -> ApiResult<Option<StreamCursor>> {
    let (source, text) = match headers.get("last-event-id") {
        Some(value) => (
            "the Last-Event-ID header",
            value.to_str().map_err(|_| {
                ApiError::bad_request("the Last-Event-ID header is not text: give an event id")
            })?,
        ),
        None => match query.after.as_deref() {
            Some(after) => ("the `after` query parameter", after),
            None => return Ok(None),
        },
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    StreamCursor::parse(text)
        .map(Some)
        .map_err(|message| ApiError::bad_request(format!("{source}: {message}")))
}

/// Server-Sent Events of everything (see `engine::Engine::stream`).
async fn stream<B: Backend>(
    State(b): State<B>,
    headers: axum::http::HeaderMap,
    Query(query): Query<StreamQuery>,
) -> ApiResult<Response> {
    let after = resume_point(&headers, &query)?;
    Ok(event_stream(b.stream(None, after).await?))
}

/// Server-Sent Events of one task.
async fn task_stream<B: Backend>(
    State(b): State<B>,
    TaskIdPath(id): TaskIdPath,
    headers: axum::http::HeaderMap,
    Query(query): Query<StreamQuery>,
) -> ApiResult<Response> {
    let after = resume_point(&headers, &query)?;
    Ok(event_stream(b.stream(Some(id), after).await?))
}

fn event_stream(chunks: futures::stream::BoxStream<'static, Bytes>) -> Response {
    // Whatever is ready goes out as one write.
    let body = chunks.ready_chunks(256).map(|chunks| {
        let bytes = if chunks.len() == 1 {
            chunks.into_iter().next().unwrap_or_default()
        } else {
            Bytes::from(chunks.concat())
        };
        Ok::<_, std::convert::Infallible>(bytes)
    });
    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ];
    (headers, Body::from_stream(body)).into_response()
}

/// An agent's signal, authenticated by its run token (which the engine checks).
async fn signal<B: Backend>(
    State(b): State<B>,
    RunToken(token): RunToken,
    Json(req): Json<SignalRequest>,
) -> ApiResult<axum::Json<Value>> {
    b.signal(token, req.task, req.signal).await?;
    Ok(axum::Json(json!({ "ok": true })))
}

/// A GitHub webhook delivery: the raw body and GitHub's headers go to the engine, which checks
/// the signature; 401 when it does not hold, 200 with what became of it otherwise.
async fn github_webhook<B: Backend>(
    State(b): State<B>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = engine::WebhookDelivery {
        event: header("x-github-event"),
        delivery: header("x-github-delivery"),
        signature: header("x-hub-signature-256"),
        body: &body,
    };
    let answer = match b.github_webhook(delivery)? {
        engine::WebhookOutcome::Accepted { tasks } => {
            json!({ "outcome": "accepted", "tasks": tasks })
        }
        engine::WebhookOutcome::Replayed => json!({ "outcome": "replayed" }),
        engine::WebhookOutcome::Ignored { event } => {
            json!({ "outcome": "ignored", "event": event })
        }
    };
    Ok(axum::Json(answer))
}

async fn no_route(req: Request) -> ApiError {
    ApiError::NoRoute {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
    }
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
    }
}

/// One debug line per request (method, path, status, time to the response head).
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}
