//! The router table (every route of the server in one place) and the handlers, which only
//! translate between HTTP and the engine: they never touch the store or spawn processes.

use crate::HttpOptions;
use crate::auth::{Acting, AdminCaller, RunToken, SESSION_COOKIE, authenticate};
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
    AuditEntryView, LoginRequest, MemberRequest, NewProject, NewTask, NewTokenRequest,
    NewTokenView, NewUser, ProjectView, SignalRequest, StreamCursor, TaskDetail, TaskView,
    TokenView, UserView,
};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Instant;

type ApiResult<T> = Result<T, ApiError>;

/// All routes. Everything above `route_layer` requires a signed-in user (an API token or a
/// session cookie with its CSRF rules); the handlers reach the engine acting for that user. The
/// signal route carries a run token instead, the webhook route a signature, the login route a
/// password, and `/healthz` is open. Bodies over `options.max_body_bytes` are refused with 413,
/// and error messages are redacted for callers other than an administrator.
pub(crate) fn router<B: Backend>(backend: B, options: HttpOptions) -> Router {
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
        .route("/api/me", get(me::<B>))
        .route("/api/logout", post(logout::<B>))
        .route("/api/users", get(list_users::<B>).post(create_user::<B>))
        .route("/api/tokens", get(list_tokens::<B>).post(create_token::<B>))
        .route(
            "/api/tokens/{token}",
            axum::routing::delete(revoke_token::<B>),
        )
        .route(
            "/api/projects/{project}/members/{login}",
            axum::routing::put(set_member::<B>),
        )
        .route("/api/audit", get(audit::<B>))
        .route_layer(middleware::from_fn_with_state(
            backend.clone(),
            authenticate::<B>,
        ))
        .route("/api/login", post(login::<B>))
        .route("/api/signal", post(signal::<B>))
        // Authenticated by the delivery's HMAC signature, not by a token.
        .route("/api/webhooks/github", post(github_webhook::<B>))
        .route("/healthz", get(healthz))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(Extension(BodyLimit(options.max_body_bytes)))
        .layer(middleware::from_fn(redact_errors))
        .layer(middleware::from_fn(log_request))
        .with_state(backend)
}

/// Error messages keep absolute server paths and raw command lines for the admin only: for any
/// other caller they are redacted (`<path>`, `<command>`) and the full message is logged.
async fn redact_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut response = next.run(req).await;
    let Some(ErrorMessage(message, code)) = response.extensions_mut().remove::<ErrorMessage>()
    else {
        return response;
    };
    if response.extensions().get::<AdminCaller>().is_some() {
        return response;
    }
    let redacted = crate::redact::redact(&message);
    if redacted == message {
        return response;
    }
    tracing::warn!(
        %method,
        %path,
        error = %message,
        "error details withheld from the caller"
    );
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = json!({ "error": redacted, "code": code }).to_string();
    Response::from_parts(parts, Body::from(body))
}

async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({ "status": "ok" }))
}

async fn status<B: Backend>(State(b): State<B>) -> axum::Json<engine::api::ServerStatus> {
    axum::Json(b.status())
}

async fn list_projects<B: Backend>(
    Acting(b): Acting<B>,
) -> ApiResult<axum::Json<Vec<ProjectView>>> {
    Ok(axum::Json(b.list_projects().await?))
}

async fn add_project<B: Backend>(
    Acting(b): Acting<B>,
    Json(req): Json<NewProject>,
) -> ApiResult<(StatusCode, axum::Json<ProjectView>)> {
    Ok((StatusCode::CREATED, axum::Json(b.add_project(req).await?)))
}

/// Replaces a project's settings (secrets shown redacted are kept).
async fn update_project_settings<B: Backend>(
    Acting(b): Acting<B>,
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
    Acting(b): Acting<B>,
    Query(filter): Query<TaskFilter>,
) -> ApiResult<axum::Json<Vec<TaskView>>> {
    Ok(axum::Json(b.list_tasks(filter.project).await?))
}

async fn create_task<B: Backend>(
    Acting(b): Acting<B>,
    Json(req): Json<NewTask>,
) -> ApiResult<(StatusCode, axum::Json<TaskView>)> {
    Ok((StatusCode::CREATED, axum::Json(b.create_task(req).await?)))
}

async fn show_task<B: Backend>(
    Acting(b): Acting<B>,
    TaskIdPath(id): TaskIdPath,
) -> ApiResult<axum::Json<TaskDetail>> {
    Ok(axum::Json(b.task(id).await?))
}

async fn approve<B: Backend>(
    Acting(b): Acting<B>,
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
    Acting(b): Acting<B>,
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
    Acting(b): Acting<B>,
    TaskIdPath(id): TaskIdPath,
    OptionalJson(body): OptionalJson<RunBody>,
) -> ApiResult<axum::Json<TaskView>> {
    Ok(axum::Json(b.run(id, body.stage).await?))
}

async fn stop<B: Backend>(
    Acting(b): Acting<B>,
    TaskIdPath(id): TaskIdPath,
) -> ApiResult<axum::Json<TaskView>> {
    Ok(axum::Json(b.stop(id).await?))
}

async fn resume<B: Backend>(
    Acting(b): Acting<B>,
    TaskIdPath(id): TaskIdPath,
) -> ApiResult<axum::Json<TaskView>> {
    Ok(axum::Json(b.resume(id).await?))
}

async fn delete_task<B: Backend>(
    Acting(b): Acting<B>,
    TaskIdPath(id): TaskIdPath,
) -> ApiResult<axum::Json<TaskView>> {
    Ok(axum::Json(b.delete(id).await?))
}

async fn merge<B: Backend>(
    Acting(b): Acting<B>,
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
    Acting(b): Acting<B>,
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
    Acting(b): Acting<B>,
    headers: axum::http::HeaderMap,
    Query(query): Query<StreamQuery>,
) -> ApiResult<Response> {
    let after = resume_point(&headers, &query)?;
    Ok(event_stream(b.stream(None, after).await?))
}

/// Server-Sent Events of one task.
async fn task_stream<B: Backend>(
    Acting(b): Acting<B>,
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

async fn me<B: Backend>(Acting(b): Acting<B>) -> ApiResult<axum::Json<UserView>> {
    Ok(axum::Json(b.me()?))
}

/// Signs in with a password: the session secret goes into an HttpOnly, SameSite=Lax cookie
/// (`Secure` when the request came over HTTPS), the body carries the CSRF token.
async fn login<B: Backend>(
    State(b): State<B>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Response> {
    let session = b.login(req.login, req.password, peer.ip()).await?;
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        session.session,
        engine::SESSION_LIFETIME_SECS,
        if https { "; Secure" } else { "" }
    );
    let mut response = axum::Json(&session).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Ends the session: revoked server-side, and the cookie cleared.
async fn logout<B: Backend>(Acting(b): Acting<B>) -> ApiResult<Response> {
    b.logout()?;
    let mut response = axum::Json(json!({ "ok": true })).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        header::HeaderValue::from_static(
            "atelier_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
        ),
    );
    Ok(response)
}

async fn list_users<B: Backend>(Acting(b): Acting<B>) -> ApiResult<axum::Json<Vec<UserView>>> {
    Ok(axum::Json(b.list_users()?))
}

async fn create_user<B: Backend>(
    Acting(b): Acting<B>,
    Json(req): Json<NewUser>,
) -> ApiResult<(StatusCode, axum::Json<UserView>)> {
    Ok((StatusCode::CREATED, axum::Json(b.create_user(req).await?)))
}

async fn list_tokens<B: Backend>(Acting(b): Acting<B>) -> ApiResult<axum::Json<Vec<TokenView>>> {
    Ok(axum::Json(b.list_tokens()?))
}

async fn create_token<B: Backend>(
    Acting(b): Acting<B>,
    Json(req): Json<NewTokenRequest>,
) -> ApiResult<(StatusCode, axum::Json<NewTokenView>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(b.create_token(req.name, req.expires_in_days)?),
    ))
}

async fn revoke_token<B: Backend>(
    Acting(b): Acting<B>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let id: i64 = token
        .parse()
        .map_err(|_| ApiError::bad_request(format!("`{token}` is not a token id")))?;
    b.revoke_token(id)?;
    Ok(axum::Json(json!({ "ok": true })))
}

async fn set_member<B: Backend>(
    Acting(b): Acting<B>,
    axum::extract::Path((project, login)): axum::extract::Path<(String, String)>,
    Json(req): Json<MemberRequest>,
) -> ApiResult<axum::Json<Value>> {
    b.set_member(project, login, req.role)?;
    Ok(axum::Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct AuditQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

async fn audit<B: Backend>(
    Acting(b): Acting<B>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<axum::Json<Vec<AuditEntryView>>> {
    Ok(axum::Json(b.audit_log(q.before, q.limit.unwrap_or(100))?))
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
