//! The router table (every route of the server in one place) and the handlers, which only
//! translate between HTTP and the engine: they never touch the store or spawn processes.

use crate::HttpOptions;
use crate::auth::{Acting, AdminCaller, RunToken, authenticate};
use crate::backend::Backend;
use crate::error::{ApiError, ErrorMessage};
use crate::extract::{BodyLimit, Json, OptionalJson, Query, RawBody, TaskIdPath, TaskItemPath};
use crate::openapi::{Auth, Content, Operation, schema};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Extension, Router};
use bytes::Bytes;
use domain::{Stage, TaskId};
use engine::api::{
    AttachmentUpload, AttachmentView, AuditEntryView, CredentialView, CredentialsRequest,
    DEFAULT_PAGE_LIMIT, DocUpdate, FollowItem, LoginRequest, MAX_PAGE_LIMIT, MemberRequest,
    MemberView, NewProject, NewSessionView, NewTask, NewTokenRequest, NewTokenView, NewUser, Page,
    PageRequest, PlanChangesRequest, ProjectSettings, ProjectView, PromptUpdate, PromptView,
    SignalRequest, StreamCursor, TaskDetail, TaskView, TokenView, UserModels, UserUpdate, UserView,
};
use futures::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Instant;

type ApiResult<T> = Result<T, ApiError>;

/// One route: what the OpenAPI document says of it and its handler. The router and the document
/// are both built from [`routes`], so a route cannot exist without being documented.
pub(crate) struct Route<B> {
    pub op: Operation,
    pub handler: MethodRouter<B>,
}

fn route<B>(op: Operation, handler: MethodRouter<B>) -> Route<B> {
    Route { op, handler }
}

/// A JSON response of `T`.
fn json_of<T: schemars::JsonSchema>() -> Content {
    Content::Json(schema::<T>)
}

fn limit_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "integer", "minimum": 1, "maximum": MAX_PAGE_LIMIT, "default": DEFAULT_PAGE_LIMIT,
    })
}

fn after_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "integer", "format": "int64", "minimum": 0})
}

const LIMIT_DOC: &str = "Items per page: 1 to 500 (default 100).";
const AFTER_DOC: &str =
    "Exclusive cursor: only items with a larger id (lists are in ascending id order).";
const LINK_DOC: &str = "`<…>; rel=\"next\"`: the next page, when there is one.";

/// Every route of the server, one entry each (method, path, documentation, handler). Routes
/// whose `auth` is [`Auth::ApiToken`] are put behind the API-token middleware by [`router`].
pub(crate) fn routes<B: Backend>() -> Vec<Route<B>> {
    use axum::http::Method;
    vec![
        route(
            Operation::new(
                Method::GET,
                "/api/projects",
                "listProjects",
                "List projects",
            )
            .query("limit", LIMIT_DOC, limit_schema)
            .query("after", AFTER_DOC, after_schema)
            .ok(200, "A page of projects.", json_of::<Vec<ProjectView>>())
            .header("Link", LINK_DOC)
            .errors(&[400]),
            get(list_projects::<B>),
        ),
        route(
            Operation::new(Method::POST, "/api/projects", "addProject", "Add a project")
                .body(schema::<NewProject>)
                .ok(201, "The project.", json_of::<ProjectView>())
                .errors(&[400, 409, 413, 415]),
            post(add_project::<B>),
        ),
        route(
            Operation::new(
                Method::PUT,
                "/api/projects/{project}/settings",
                "updateProjectSettings",
                "Replace a project's settings (secrets shown redacted are kept)",
            )
            .body(schema::<ProjectSettings>)
            .ok(200, "The project.", json_of::<ProjectView>())
            .errors(&[400, 404, 409, 413, 415]),
            put(update_project_settings::<B>),
        ),
        route(
            Operation::new(Method::GET, "/api/tasks", "listTasks", "List tasks")
                .query(
                    "project",
                    "Only the tasks of this project (name or id).",
                    schema::<String>,
                )
                .query("limit", LIMIT_DOC, limit_schema)
                .query("after", AFTER_DOC, after_schema)
                .ok(200, "A page of tasks.", json_of::<Vec<TaskView>>())
                .header("Link", LINK_DOC)
                .errors(&[400, 404]),
            get(list_tasks::<B>),
        ),
        route(
            Operation::new(Method::POST, "/api/tasks", "createTask", "Create a task")
                .body(schema::<NewTask>)
                .ok(201, "The task.", json_of::<TaskView>())
                .errors(&[400, 404, 409, 413, 415]),
            post(create_task::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/tasks/{id}",
                "showTask",
                "A task in detail",
            )
            .ok(
                200,
                "The task, its runs, pull request and doc.",
                json_of::<TaskDetail>(),
            )
            .errors(&[400, 404]),
            get(show_task::<B>),
        ),
        route(
            Operation::new(
                Method::DELETE,
                "/api/tasks/{id}",
                "deleteTask",
                "Delete a task (its worktree and branch)",
            )
            .ok(200, "The task as it was.", json_of::<TaskView>())
            .errors(&[400, 404, 409]),
            delete(delete_task::<B>),
        ),
        route(
            Operation::new(
                Method::POST,
                "/api/tasks/{id}/approve",
                "approveTask",
                "Approve the plan",
            )
            .ok(200, "The task.", json_of::<TaskView>())
            .errors(&[400, 404, 409]),
            post(approve::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/prompts",
                "listPrompts",
                "The instance's stage prompts and plan template, with their overrides (administrators)",
            )
            .ok(200, "The prompts.", json_of::<Vec<PromptView>>())
            .errors(&[403]),
            get(list_prompts::<B>),
        ),
        route(
            Operation::new(
                Method::PUT,
                "/api/prompts/{file}",
                "setPrompt",
                "Override a prompt (checked like at load: an unknown variable is a 400 naming its line)",
            )
            .body(schema::<PromptUpdate>)
            .ok(200, "The prompt in force.", json_of::<PromptView>())
            .errors(&[400, 403, 413, 415]),
            put(set_prompt::<B>),
        ),
        route(
            Operation::new(
                Method::DELETE,
                "/api/prompts/{file}",
                "resetPrompt",
                "Remove a prompt's override (the built-in text is used again)",
            )
            .ok(200, "The prompt in force.", json_of::<PromptView>())
            .errors(&[403, 404]),
            delete(reset_prompt::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/tasks/{id}/attachments",
                "listAttachments",
                "The task's attachments (files people attached and evidence agents stored)",
            )
            .ok(200, "The attachments, by name.", json_of::<Vec<AttachmentView>>())
            .errors(&[400, 404, 409]),
            get(list_attachments::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/tasks/{id}/attachments/{name}",
                "getAttachment",
                "Download an attachment (always as a download, never rendered)",
            )
            .ok(200, "The file.", Content::Binary)
            .errors(&[400, 404, 409]),
            get(get_attachment::<B>),
        ),
        route(
            Operation::new(
                Method::PUT,
                "/api/tasks/{id}/attachments/{name}",
                "addAttachment",
                "Attach a file to the task (replaces one of the same name)",
            )
            .body(schema::<AttachmentUpload>)
            .ok(200, "The attachment.", json_of::<AttachmentView>())
            .errors(&[400, 404, 413, 415]),
            put(add_attachment::<B>),
        ),
        route(
            Operation::new(
                Method::PUT,
                "/api/tasks/{id}/doc",
                "editTaskDoc",
                "Replace the task doc (its owner, the project's owners, administrators; not while an agent works)",
            )
            .body(schema::<DocUpdate>)
            .ok(200, "Done.", json_of::<Value>())
            .errors(&[400, 403, 404, 409, 413, 415]),
            put(edit_doc::<B>),
        ),
        route(
            Operation::new(
                Method::POST,
                "/api/tasks/{id}/request-changes",
                "requestPlanChanges",
                "Send the plan back to the planner with feedback",
            )
            .body(schema::<PlanChangesRequest>)
            .ok(200, "The task.", json_of::<TaskView>())
            .errors(&[400, 404, 409, 413, 415]),
            post(request_changes::<B>),
        ),
        route(
            Operation::new(
                Method::POST,
                "/api/tasks/{id}/answer",
                "answerTask",
                "Answer the agent's question",
            )
            .body(schema::<AnswerBody>)
            .ok(200, "The task.", json_of::<TaskView>())
            .errors(&[400, 404, 409, 413, 415]),
            post(answer::<B>),
        ),
        route(
            Operation::new(
                Method::POST,
                "/api/tasks/{id}/run",
                "runTask",
                "Run a stage again (default: the task's current stage)",
            )
            .optional_body(schema::<RunBody>)
            .ok(200, "The task.", json_of::<TaskView>())
            .errors(&[400, 404, 409, 413]),
            post(run::<B>),
        ),
        route(
            Operation::new(
                Method::POST,
                "/api/tasks/{id}/stop",
                "stopTask",
                "Stop the task's agent",
            )
            .ok(200, "The task.", json_of::<TaskView>())
            .errors(&[400, 404, 409]),
            post(stop::<B>),
        ),
        route(
            Operation::new(
                Method::POST,
                "/api/tasks/{id}/resume",
                "resumeTask",
                "Resume a stopped, blocked or closed task",
            )
            .ok(200, "The task.", json_of::<TaskView>())
            .errors(&[400, 404, 409]),
            post(resume::<B>),
        ),
        route(
            Operation::new(
                Method::POST,
                "/api/tasks/{id}/merge",
                "mergeTask",
                "Merge the task's pull request",
            )
            .ok(200, "The task.", json_of::<TaskView>())
            .errors(&[400, 404, 409]),
            post(merge::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/tasks/{id}/logs",
                "taskLogs",
                "The task's transcript as NDJSON (with `follow`, live until no agent runs)",
            )
            .query("follow", "Keep streaming live events.", schema::<bool>)
            .ok(
                200,
                "One `FollowItem` per line.",
                Content::Ndjson(schema::<FollowItem>),
            )
            .errors(&[400, 404]),
            get(logs::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/status",
                "serverStatus",
                "How this server runs agents",
            )
            .ok(
                200,
                "The server's status.",
                json_of::<engine::api::ServerStatus>(),
            ),
            get(status::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/tasks/{id}/stream",
                "taskStream",
                "Server-Sent Events of one task (resume with Last-Event-ID or ?after=)",
            )
            .query(
                "after",
                "Resume strictly after this event id.",
                schema::<String>,
            )
            .ok(200, "The task's live stream.", Content::EventStream)
            .errors(&[400, 404]),
            get(task_stream::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/stream",
                "stream",
                "Server-Sent Events of everything the caller may see",
            )
            .query(
                "after",
                "Resume strictly after this event id.",
                schema::<String>,
            )
            .query(
                "transcript",
                "`false`: no `transcript` events (the agents' output), only the changes of tasks, \
                 runs, pull requests and projects (a board).",
                schema::<bool>,
            )
            .ok(200, "The live stream.", Content::EventStream)
            .errors(&[400]),
            get(stream::<B>),
        ),
        route(
            Operation::new(
                Method::POST,
                "/api/login",
                "login",
                "Sign in with a password",
            )
            .auth(Auth::None)
            .body(schema::<LoginRequest>)
            .ok(
                200,
                "The session: its secret is in the Set-Cookie header.",
                json_of::<NewSessionView>(),
            )
            .errors(&[400, 401, 413, 415, 429]),
            post(login::<B>),
        ),
        route(
            Operation::new(Method::POST, "/api/logout", "logout", "End the session").ok(
                200,
                "Signed out.",
                json_of::<Value>(),
            ),
            post(logout::<B>),
        ),
        route(
            Operation::new(Method::GET, "/api/me", "me", "The caller's account")
                .ok(200, "The account.", json_of::<UserView>())
                .errors(&[404]),
            get(me::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/me/credentials",
                "listCredentials",
                "The caller's agent credentials (names only)",
            )
            .ok(
                200,
                "Per harness: the names set and when (never the values).",
                json_of::<Vec<CredentialView>>(),
            ),
            get(list_credentials::<B>),
        ),
        route(
            Operation::new(
                Method::PUT,
                "/api/me/credentials/{harness}",
                "setCredentials",
                "Set the caller's credentials for a harness (write-only)",
            )
            .body(schema::<CredentialsRequest>)
            .ok(
                200,
                "What is now set (names only).",
                json_of::<CredentialView>(),
            )
            .errors(&[400, 413, 415]),
            put(set_credentials::<B>),
        ),
        route(
            Operation::new(
                Method::DELETE,
                "/api/me/credentials/{harness}",
                "deleteCredentials",
                "Remove the caller's credentials for a harness",
            )
            .ok(200, "Removed.", json_of::<Value>())
            .errors(&[400, 404]),
            delete(delete_credentials::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/me/models",
                "userModels",
                "The caller's models per stage",
            )
            .ok(200, "The models.", json_of::<UserModels>()),
            get(user_models::<B>),
        ),
        route(
            Operation::new(
                Method::PUT,
                "/api/me/models",
                "setUserModels",
                "Set the caller's models per stage (overriding projects' roles for their tasks)",
            )
            .body(schema::<UserModels>)
            .ok(200, "The models.", json_of::<UserModels>())
            .errors(&[400, 413, 415]),
            put(set_user_models::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/users",
                "listUsers",
                "Every account (administrators)",
            )
            .ok(200, "The accounts.", json_of::<Vec<UserView>>())
            .errors(&[403]),
            get(list_users::<B>),
        ),
        route(
            Operation::new(
                Method::POST,
                "/api/users",
                "createUser",
                "Create an account (administrators)",
            )
            .body(schema::<NewUser>)
            .ok(201, "The account.", json_of::<UserView>())
            .errors(&[400, 403, 409, 413, 415]),
            post(create_user::<B>),
        ),
        route(
            Operation::new(
                Method::PUT,
                "/api/users/{login}",
                "updateUser",
                "Change an account: administrator, technical, disabled (administrators)",
            )
            .body(schema::<UserUpdate>)
            .ok(200, "The account.", json_of::<UserView>())
            .errors(&[400, 403, 404, 413, 415]),
            put(update_user::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/tokens",
                "listTokens",
                "The caller's API tokens",
            )
            .ok(
                200,
                "The tokens (never their secrets).",
                json_of::<Vec<TokenView>>(),
            ),
            get(list_tokens::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/tokens/all",
                "listAllTokens",
                "Every account's API tokens, with their owners (administrators)",
            )
            .ok(
                200,
                "The tokens (never their secrets).",
                json_of::<Vec<TokenView>>(),
            )
            .errors(&[403]),
            get(list_all_tokens::<B>),
        ),
        route(
            Operation::new(
                Method::POST,
                "/api/tokens",
                "createToken",
                "Create an API token (shown once)",
            )
            .body(schema::<NewTokenRequest>)
            .ok(
                201,
                "The token, with its secret.",
                json_of::<NewTokenView>(),
            )
            .errors(&[400, 413, 415]),
            post(create_token::<B>),
        ),
        route(
            Operation::new(
                Method::DELETE,
                "/api/tokens/{token}",
                "revokeToken",
                "Revoke an API token",
            )
            .ok(200, "Revoked.", json_of::<Value>())
            .errors(&[400, 404]),
            delete(revoke_token::<B>),
        ),
        route(
            Operation::new(
                Method::PUT,
                "/api/projects/{project}/members/{login}",
                "setMember",
                "Make a user an owner or member of a project",
            )
            .body(schema::<MemberRequest>)
            .ok(200, "Done.", json_of::<Value>())
            .errors(&[400, 403, 404, 413, 415]),
            put(set_member::<B>),
        ),
        route(
            Operation::new(
                Method::DELETE,
                "/api/projects/{project}/members/{login}",
                "removeMember",
                "Remove a user from a project",
            )
            .ok(200, "Done.", json_of::<Value>())
            .errors(&[403, 404]),
            delete(remove_member::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/projects/{project}/members",
                "listMembers",
                "A project's members and their roles",
            )
            .ok(200, "The members.", json_of::<Vec<MemberView>>())
            .errors(&[404]),
            get(list_members::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/audit",
                "audit",
                "The audit trail (administrators)",
            )
            .query("before", "Only lines with a smaller id.", after_schema)
            .query("limit", LIMIT_DOC, limit_schema)
            .ok(
                200,
                "Audit lines, newest first.",
                json_of::<Vec<AuditEntryView>>(),
            )
            .errors(&[400, 403]),
            get(audit::<B>),
        ),
        route(
            Operation::new(Method::POST, "/api/signal", "signal", "An agent's signal")
                .auth(Auth::RunToken)
                .body(schema::<SignalRequest>)
                .ok(200, "The signal was taken.", json_of::<SignalAnswer>())
                .errors(&[400, 404, 409, 413, 415]),
            post(signal::<B>),
        ),
        route(
            Operation::new(
                Method::POST,
                "/api/webhooks/github",
                "githubWebhook",
                "A GitHub webhook delivery",
            )
            .auth(Auth::Signature)
            .body(schema::<Value>)
            .ok(
                200,
                "What became of the delivery.",
                json_of::<WebhookAnswer>(),
            )
            .errors(&[400, 413]),
            post(github_webhook::<B>),
        ),
        route(
            Operation::new(
                Method::GET,
                "/api/openapi.json",
                "openapi",
                "This document (OpenAPI 3.1)",
            )
            .auth(Auth::None)
            .ok(200, "The OpenAPI document.", json_of::<Value>()),
            get(openapi_json),
        ),
        route(
            Operation::new(Method::GET, "/healthz", "healthz", "Liveness")
                .auth(Auth::None)
                .ok(200, "The server is up.", json_of::<Health>()),
            get(healthz),
        ),
    ]
}

/// The OpenAPI document of [`routes`], served as is.
#[derive(Clone)]
struct OpenApiJson(Bytes);

/// The OpenAPI 3.1 document of the server's routes.
pub(crate) fn openapi_document<B: Backend>() -> Value {
    let ops: Vec<Operation> = routes::<B>().into_iter().map(|r| r.op).collect();
    crate::openapi::document(&ops)
}

/// All routes. Those of [`Auth::ApiToken`] require a signed-in user (an API token, or a session
/// cookie with its CSRF rules) and reach the engine acting for that user; the signal route
/// carries a run token instead, the webhook a signature, the login a password, and `/healthz`
/// and the document are open. Bodies over `options.max_body_bytes` are refused with 413, and
/// error messages are redacted for callers other than an administrator.
pub(crate) fn router<B: Backend>(backend: B, options: HttpOptions) -> Router {
    let routes = routes::<B>();
    let ops: Vec<Operation> = routes.iter().map(|r| r.op.clone()).collect();
    let document = OpenApiJson(Bytes::from(crate::openapi::document(&ops).to_string()));
    let mut admin = Router::new();
    let mut open = Router::new();
    for Route { op, handler } in routes {
        if op.auth == Auth::ApiToken {
            admin = admin.route(op.path, handler);
        } else {
            open = open.route(op.path, handler);
        }
    }
    admin
        .route_layer(middleware::from_fn_with_state(
            backend.clone(),
            authenticate::<B>,
        ))
        .merge(open)
        .merge(crate::ui::router::<B>())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(Extension(BodyLimit(options.max_body_bytes)))
        .layer(Extension(document))
        .layer(middleware::from_fn(redact_errors))
        .layer(middleware::from_fn(log_request))
        .layer(middleware::from_fn(crate::ui::security_headers))
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
    let redacted = engine::redact::redact(&message);
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

/// The body of `/healthz`.
#[derive(Serialize, JsonSchema)]
struct Health {
    /// Always `ok`.
    status: String,
}

async fn healthz() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
    })
}

async fn openapi_json(Extension(OpenApiJson(document)): Extension<OpenApiJson>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document).into_response()
}

async fn status<B: Backend>(Acting(b): Acting<B>) -> axum::Json<engine::api::ServerStatus> {
    axum::Json(b.status().await)
}

/// `?limit=&after=` of a list.
#[derive(Deserialize)]
struct PageQuery {
    limit: Option<String>,
    after: Option<String>,
}

impl PageQuery {
    fn parse(&self) -> ApiResult<PageRequest> {
        let limit = match self.limit.as_deref() {
            None => DEFAULT_PAGE_LIMIT,
            Some(raw) => match raw.trim().parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid limit `{raw}`: expected an integer from 1 to {MAX_PAGE_LIMIT} \
                         (default {DEFAULT_PAGE_LIMIT})"
                    )));
                }
            },
        };
        let after = match self.after.as_deref() {
            None => None,
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(n) if n >= 0 => Some(n),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid after `{raw}`: expected an id (an integer of 0 or more); the \
                         next page's is in the `Link` header of the previous one"
                    )));
                }
            },
        };
        Ok(PageRequest { after, limit })
    }
}

/// A page as a plain JSON array, with `Link: <path?…&limit=&after=>; rel="next"` when another
/// page follows. `filters` are the other query parameters to carry over.
fn page_response<T: Serialize>(
    path: &str,
    filters: &[(&str, &str)],
    limit: u32,
    page: Page<T>,
) -> Response {
    let mut response = axum::Json(page.items).into_response();
    if let Some(next) = page.next {
        let mut query = String::new();
        for (name, value) in filters {
            query.push_str(&format!("{name}={}&", query_escape(value)));
        }
        let link = format!("<{path}?{query}limit={limit}&after={next}>; rel=\"next\"");
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn query_escape(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn list_projects<B: Backend>(
    Acting(b): Acting<B>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Response> {
    let page = query.parse()?;
    let projects = b.list_projects(page).await?;
    Ok(page_response("/api/projects", &[], page.limit, projects))
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
    Json(settings): Json<ProjectSettings>,
) -> ApiResult<axum::Json<ProjectView>> {
    Ok(axum::Json(
        b.update_project_settings(project, settings).await?,
    ))
}

#[derive(Deserialize)]
struct TaskFilter {
    project: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

async fn list_tasks<B: Backend>(
    Acting(b): Acting<B>,
    Query(filter): Query<TaskFilter>,
) -> ApiResult<Response> {
    let page = PageQuery {
        limit: filter.limit,
        after: filter.after,
    }
    .parse()?;
    let tasks = b.list_tasks(filter.project.clone(), page).await?;
    let filters: Vec<(&str, &str)> = filter
        .project
        .as_deref()
        .map(|p| ("project", p))
        .into_iter()
        .collect();
    Ok(page_response("/api/tasks", &filters, page.limit, tasks))
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

async fn list_prompts<B: Backend>(Acting(b): Acting<B>) -> ApiResult<axum::Json<Vec<PromptView>>> {
    Ok(axum::Json(b.prompts()?))
}

async fn set_prompt<B: Backend>(
    Acting(b): Acting<B>,
    axum::extract::Path(file): axum::extract::Path<String>,
    Json(body): Json<PromptUpdate>,
) -> ApiResult<axum::Json<PromptView>> {
    Ok(axum::Json(b.set_prompt(file, Some(body.text))?))
}

async fn reset_prompt<B: Backend>(
    Acting(b): Acting<B>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> ApiResult<axum::Json<PromptView>> {
    Ok(axum::Json(b.set_prompt(file, None)?))
}

async fn list_attachments<B: Backend>(
    Acting(b): Acting<B>,
    TaskIdPath(id): TaskIdPath,
) -> ApiResult<axum::Json<Vec<AttachmentView>>> {
    Ok(axum::Json(b.attachments(id)?))
}

async fn get_attachment<B: Backend>(
    Acting(b): Acting<B>,
    TaskItemPath(id, name): TaskItemPath,
) -> ApiResult<Response> {
    let bytes = b.attachment(id, name.clone())?;
    // The name was checked by the engine (letters, digits, `._-`): safe in the header as is.
    // Agents write attachments: never let a browser render one (no sniffing, a download, and
    // a sandbox in case it is opened anyway).
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'".to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn add_attachment<B: Backend>(
    Acting(b): Acting<B>,
    TaskItemPath(id, name): TaskItemPath,
    Json(body): Json<AttachmentUpload>,
) -> ApiResult<axum::Json<AttachmentView>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body.content_base64.trim())
        .map_err(|err| ApiError::bad_request(format!("content_base64 is not base64: {err}")))?;
    Ok(axum::Json(b.add_attachment(id, name, bytes)?))
}

async fn edit_doc<B: Backend>(
    Acting(b): Acting<B>,
    TaskIdPath(id): TaskIdPath,
    Json(body): Json<DocUpdate>,
) -> ApiResult<axum::Json<Value>> {
    b.edit_doc(id, body.doc).await?;
    Ok(axum::Json(json!({ "ok": true })))
}

async fn request_changes<B: Backend>(
    Acting(b): Acting<B>,
    TaskIdPath(id): TaskIdPath,
    Json(body): Json<PlanChangesRequest>,
) -> ApiResult<axum::Json<TaskView>> {
    Ok(axum::Json(b.request_plan_changes(id, body.feedback).await?))
}

/// The body of `POST /api/tasks/{id}/answer`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    /// The answer to the agent's question.
    text: String,
}

async fn answer<B: Backend>(
    Acting(b): Acting<B>,
    TaskIdPath(id): TaskIdPath,
    Json(body): Json<AnswerBody>,
) -> ApiResult<axum::Json<TaskView>> {
    Ok(axum::Json(b.answer(id, body.text).await?))
}

/// The body of `POST /api/tasks/{id}/run` (optional).
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RunBody {
    /// The stage to run (default: the task's current one).
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

/// An agent's signal, authenticated by its run token (which the engine checks).
async fn signal<B: Backend>(
    State(b): State<B>,
    RunToken(token): RunToken,
    Json(req): Json<SignalRequest>,
) -> ApiResult<axum::Json<SignalAnswer>> {
    b.signal(token, req.task, req.signal).await?;
    Ok(axum::Json(SignalAnswer { ok: true }))
}

/// The answer to a signal.
#[derive(Serialize, JsonSchema)]
struct SignalAnswer {
    /// Always `true`.
    ok: bool,
}

/// What became of a webhook delivery.
#[derive(Serialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum WebhookAnswer {
    /// Checked and taken; these tasks are being synced.
    Accepted { tasks: Vec<TaskId> },
    /// The delivery id was accepted before: nothing done again.
    Replayed,
    /// An event Atelier does not follow.
    Ignored { event: String },
}

/// A GitHub webhook delivery: the raw body and GitHub's headers go to the engine, which checks
/// the signature; 401 when it does not hold, 200 with what became of it otherwise.
async fn github_webhook<B: Backend>(
    State(b): State<B>,
    headers: axum::http::HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<axum::Json<WebhookAnswer>> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = engine::WebhookDelivery {
        event: header("x-github-event"),
        delivery: header("x-github-delivery"),
        signature: header("x-hub-signature-256"),
        body: &body,
    };
    let answer = match b.github_webhook(delivery)? {
        engine::WebhookOutcome::Accepted { tasks } => WebhookAnswer::Accepted { tasks },
        engine::WebhookOutcome::Replayed => WebhookAnswer::Replayed,
        engine::WebhookOutcome::Ignored { event } => WebhookAnswer::Ignored { event },
    };
    Ok(axum::Json(answer))
}

#[derive(Deserialize)]
struct StreamQuery {
    /// Where to resume, for clients that cannot set `Last-Event-ID`.
    after: Option<String>,
    /// `false`: without the agents' transcripts (the stream of everything only).
    transcript: Option<bool>,
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
    let transcripts = query.transcript.unwrap_or(true);
    Ok(event_stream(b.stream(None, after, transcripts).await?))
}

/// Server-Sent Events of one task.
async fn task_stream<B: Backend>(
    Acting(b): Acting<B>,
    TaskIdPath(id): TaskIdPath,
    headers: axum::http::HeaderMap,
    Query(query): Query<StreamQuery>,
) -> ApiResult<Response> {
    let after = resume_point(&headers, &query)?;
    Ok(event_stream(b.stream(Some(id), after, true).await?))
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
    let mut response = axum::Json(&session).into_response();
    if let Some(cookie) = crate::auth::session_cookie(&session.session, &headers) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
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

async fn update_user<B: Backend>(
    Acting(b): Acting<B>,
    axum::extract::Path(login): axum::extract::Path<String>,
    Json(update): Json<UserUpdate>,
) -> ApiResult<axum::Json<UserView>> {
    Ok(axum::Json(b.update_user(login, update)?))
}

async fn list_tokens<B: Backend>(Acting(b): Acting<B>) -> ApiResult<axum::Json<Vec<TokenView>>> {
    Ok(axum::Json(b.list_tokens()?))
}

async fn list_all_tokens<B: Backend>(
    Acting(b): Acting<B>,
) -> ApiResult<axum::Json<Vec<TokenView>>> {
    Ok(axum::Json(b.list_all_tokens()?))
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

async fn list_credentials<B: Backend>(
    Acting(b): Acting<B>,
) -> ApiResult<axum::Json<Vec<CredentialView>>> {
    Ok(axum::Json(b.list_credentials()?))
}

async fn set_credentials<B: Backend>(
    Acting(b): Acting<B>,
    axum::extract::Path(harness): axum::extract::Path<String>,
    Json(req): Json<CredentialsRequest>,
) -> ApiResult<axum::Json<CredentialView>> {
    Ok(axum::Json(b.set_credentials(harness, req)?))
}

async fn delete_credentials<B: Backend>(
    Acting(b): Acting<B>,
    axum::extract::Path(harness): axum::extract::Path<String>,
) -> ApiResult<axum::Json<Value>> {
    b.delete_credentials(harness)?;
    Ok(axum::Json(json!({ "ok": true })))
}

async fn user_models<B: Backend>(Acting(b): Acting<B>) -> ApiResult<axum::Json<UserModels>> {
    Ok(axum::Json(b.user_models()?))
}

async fn set_user_models<B: Backend>(
    Acting(b): Acting<B>,
    Json(req): Json<UserModels>,
) -> ApiResult<axum::Json<UserModels>> {
    Ok(axum::Json(b.set_user_models(req)?))
}

async fn set_member<B: Backend>(
    Acting(b): Acting<B>,
    axum::extract::Path((project, login)): axum::extract::Path<(String, String)>,
    Json(req): Json<MemberRequest>,
) -> ApiResult<axum::Json<Value>> {
    b.set_member(project, login, req.role)?;
    Ok(axum::Json(json!({ "ok": true })))
}

async fn remove_member<B: Backend>(
    Acting(b): Acting<B>,
    axum::extract::Path((project, login)): axum::extract::Path<(String, String)>,
) -> ApiResult<axum::Json<Value>> {
    b.remove_member(project, login)?;
    Ok(axum::Json(json!({ "ok": true })))
}

async fn list_members<B: Backend>(
    Acting(b): Acting<B>,
    axum::extract::Path(project): axum::extract::Path<String>,
) -> ApiResult<axum::Json<Vec<MemberView>>> {
    Ok(axum::Json(b.members(project)?))
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
