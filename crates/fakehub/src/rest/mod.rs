//! The HTTP front: the REST routes under `/api/v3`, the job-log "blob storage", and git smart
//! HTTP as the fallback. One middleware wraps everything, in this order: record the request,
//! apply a pending fault, check the token (REST), then on the way out add `ETag`/`304`, the
//! rate-limit headers and `x-github-request-id`.

// Handlers fail with a ready GitHub-shaped response, the way axum handlers do.
#![allow(clippy::result_large_err)]

mod checks;
mod comments;
mod pulls;
mod repos;

use crate::auth;
use crate::state::Hub;
use crate::{RecordedRequest, faults, git_http};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) type Shared = State<Arc<Hub>>;
/// A handler's answer; errors are GitHub-shaped JSON responses too.
pub(crate) type Reply = Result<Response, Response>;
pub(crate) type Query = axum::extract::Query<HashMap<String, String>>;

const DOCS: &str = "https://docs.github.com/rest";
const RATE_LIMIT: u32 = 5000;

pub(crate) fn router(hub: Arc<Hub>) -> Router {
    let r = "/repos/{owner}/{repo}";
    let api = Router::new()
        .route(r, get(repos::get_repo))
        .route(&format!("{r}/pulls"), get(pulls::list).post(pulls::create))
        .route(
            &format!("{r}/pulls/{{number}}"),
            get(pulls::get).patch(pulls::update),
        )
        .route(
            &format!("{r}/commits/{{git_ref}}/check-runs"),
            get(checks::list_runs),
        )
        .route(
            &format!("{r}/commits/{{git_ref}}/status"),
            get(checks::combined_status),
        )
        .route(
            &format!("{r}/check-runs/{{id}}/annotations"),
            get(checks::annotations),
        )
        .route(&format!("{r}/actions/jobs/{{id}}"), get(checks::job))
        .route(
            &format!("{r}/actions/jobs/{{id}}/logs"),
            get(checks::job_logs),
        )
        .route(
            &format!("{r}/branches/{{branch}}/protection/required_status_checks"),
            get(repos::required_checks),
        )
        .route(
            &format!("{r}/issues/{{number}}/comments"),
            get(comments::list_issue).post(comments::create_issue),
        )
        .route(
            &format!("{r}/issues/comments/{{id}}"),
            patch(comments::edit_issue),
        )
        .route(
            &format!("{r}/issues/comments/{{id}}/reactions"),
            post(comments::react_issue),
        )
        .route(
            &format!("{r}/pulls/{{number}}/comments"),
            get(comments::list_review),
        )
        .route(
            &format!("{r}/pulls/{{number}}/comments/{{id}}/replies"),
            post(comments::reply),
        )
        .route(
            &format!("{r}/pulls/comments/{{id}}/reactions"),
            post(comments::react_review),
        )
        .route(
            &format!("{r}/pulls/{{number}}/reviews"),
            get(comments::list_reviews),
        )
        .route(
            "/app/installations/{id}/access_tokens",
            post(repos::access_token),
        );
    Router::new()
        .nest("/api/v3", api)
        .route("/_fakehub/job-logs/{id}", get(checks::raw_log))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(hub.clone(), front))
        .with_state(hub)
}

/// Git smart HTTP for `/{owner}/{repo}.git/…`, else GitHub's 404.
async fn fallback(State(hub): Shared, req: Request) -> Response {
    if git_http::is_git_path(req.uri().path()) {
        return git_http::serve(hub, req).await;
    }
    not_found()
}

/// The middleware every request goes through (see the module doc).
async fn front(State(hub): Shared, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let credentials = auth::parse(authorization.as_deref());
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
    let (index, fault) = hub.with(|s| {
        s.requests.push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            query,
            auth: credentials.clone(),
            status: None,
        });
        (s.requests.len() - 1, faults::take(s, &method, &path))
    });
    let is_api = path.starts_with("/api/v3/");
    let mut response = match fault.map(faults::response) {
        Some(Some(response)) => response,
        Some(None) => std::future::pending().await,
        None if is_api && !path.starts_with("/api/v3/app/") => {
            match hub.with(|s| auth::rest_caller(s, &credentials)) {
                Some(caller) => {
                    req.extensions_mut().insert(caller);
                    next.run(req).await
                }
                None => error(StatusCode::UNAUTHORIZED, "Bad credentials"),
            }
        }
        None => next.run(req).await,
    };
    if is_api && method == Method::GET && response.status() == StatusCode::OK {
        response = with_etag(response, if_none_match.as_ref()).await;
    }
    let counted = is_api && response.status() != StatusCode::NOT_MODIFIED;
    let (used, reset) = hub.with(|s| {
        s.requests[index].status = Some(response.status().as_u16());
        if counted {
            s.rate_used += 1;
        }
        (s.rate_used, s.rate_reset)
    });
    let h = response.headers_mut();
    let mut put = |name: &'static str, value: String| {
        if !h.contains_key(name)
            && let Ok(v) = HeaderValue::from_str(&value)
        {
            h.insert(name, v);
        }
    };
    put("x-ratelimit-limit", RATE_LIMIT.to_string());
    put(
        "x-ratelimit-remaining",
        RATE_LIMIT.saturating_sub(used).to_string(),
    );
    put("x-ratelimit-reset", reset.to_string());
    put("x-ratelimit-used", used.to_string());
    put("x-ratelimit-resource", "core".into());
    put("x-github-request-id", format!("FAKE:{index:08X}"));
    response
}

/// Adds a strong ETag (a hash of the body); answers `304` with no body when it matches.
async fn with_etag(response: Response, if_none_match: Option<&HeaderValue>) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "body").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(Sha256::digest(&bytes)));
    let matches = if_none_match
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag || t.trim() == "*")
        });
    if let Ok(v) = HeaderValue::from_str(&etag) {
        parts.headers.insert(header::ETAG, v);
    }
    if matches {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

pub(crate) fn respond(status: StatusCode, value: Value) -> Response {
    (status, axum::Json(value)).into_response()
}

/// A page of a list with its `Link` header.
pub(crate) fn ok_paged(headers: HeaderMap, page: Vec<Value>) -> Reply {
    Ok((headers, respond(StatusCode::OK, Value::Array(page))).into_response())
}

pub(crate) fn ok(value: Value) -> Reply {
    Ok(respond(StatusCode::OK, value))
}

/// `{"message": …, "documentation_url": …}` with `status`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    respond(
        status,
        json!({"message": message, "documentation_url": DOCS}),
    )
}

pub(crate) fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

/// 422 "Validation Failed" with GitHub's `errors` list.
pub(crate) fn validation_failed(errors: Value) -> Response {
    respond(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"message": "Validation Failed", "errors": errors, "documentation_url": DOCS}),
    )
}

/// A JSON request body, or GitHub's 400.
pub(crate) fn body_json(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "Problems parsing JSON"))
}

/// A page of `items` (`per_page`, default 30, max 100; `page` from 1) and its `Link` header.
pub(crate) fn paginate<T: Clone>(
    items: &[T],
    q: &HashMap<String, String>,
    url: &str,
) -> (Vec<T>, HeaderMap) {
    let per_page = q
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<T> = items
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let mut kept: Vec<(String, String)> = q
        .iter()
        .filter(|(k, _)| k.as_str() != "page" && k.as_str() != "per_page")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    kept.sort();
    let extra: String = kept.iter().map(|(k, v)| format!("&{k}={v}")).collect();
    let link =
        |p: usize, rel: &str| format!("<{url}?per_page={per_page}&page={p}{extra}>; rel=\"{rel}\"");
    let mut links = Vec::new();
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
        links.push(link(page - 1, "prev"));
    }
    let mut headers = HeaderMap::new();
    if !links.is_empty()
        && let Ok(v) = HeaderValue::from_str(&links.join(", "))
    {
        headers.insert(header::LINK, v);
    }
    (slice, headers)
}

/// 404 unless `owner/repo` exists.
pub(crate) fn need_repo(hub: &Hub, owner: &str, repo: &str) -> Result<(), Response> {
    if hub.with(|s| s.find_repo(owner, repo).is_some()) {
        Ok(())
    } else {
        Err(not_found())
    }
}
