//! The web UI: server-rendered HTML pages (maud) over the same `Backend` as the JSON API, with
//! one embedded stylesheet and one small script for live updates (Server-Sent Events) and for
//! actions, which the script makes against the JSON API with the session's CSRF token. Pages
//! render fully without script (read-only). Agent- and user-written text is escaped, markdown
//! is rendered then sanitized (`markdown`), and every response carries a strict
//! Content-Security-Policy (no inline script or style), frame denial and `nosniff`.
//!
//! Pages: `/setup` and `/login` (`login`), `/` the inbox (`inbox`), `/projects` and a project's
//! board (`board`), its settings (`settings`), a task (`task`, with its transcript in
//! `transcript`; `/tasks/{id}/events` pages through earlier events and `/tasks/{id}/changes`
//! shows the diff, for readers without script), `/admin` (`admin`) and `/me` (`me`).

mod admin;
pub(crate) mod assets;
mod board;
mod inbox;
mod layout;
mod login;
mod markdown;
mod me;
mod settings;
mod task;
mod transcript;
mod viewer;

#[cfg(test)]
mod tests;

use crate::backend::Backend;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use engine::EngineError;
use maud::html;

/// The UI's routes (pages, fragments and assets), to be merged into the API's router.
pub(crate) fn router<B: Backend>() -> Router<B> {
    Router::new()
        .route("/", get(inbox::page::<B>))
        .route(
            "/login",
            get(login::login_page::<B>).post(login::login::<B>),
        )
        .route(
            "/setup",
            get(login::setup_page::<B>).post(login::setup::<B>),
        )
        .route("/projects", get(board::projects::<B>))
        .route("/projects/{project}", get(board::board::<B>))
        .route("/projects/{project}/settings", get(settings::page::<B>))
        .route("/preview", axum::routing::post(preview::<B>))
        .route("/tasks/{id}", get(task::page::<B>))
        .route("/tasks/{id}/transcript", get(transcript::fragment::<B>))
        .route("/tasks/{id}/events", get(transcript::page::<B>))
        .route("/tasks/{id}/diff", get(task::diff::<B>))
        .route("/tasks/{id}/changes", get(task::changes::<B>))
        .route("/admin", get(admin::page::<B>))
        .route("/me", get(me::page::<B>))
        .route("/assets/{name}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon))
}

/// The Content-Security-Policy of every response: only this origin's own script, style,
/// images and connections; no inline script or style, no plugins, no framing, forms post here.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every response (pages and API alike).
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    // A route that set its own policy keeps it (a download's is stricter: `sandbox`).
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// `stream` (an SSE route) resuming after the newest activity now: read before a page's data,
/// so whatever changes after the read reaches the page.
pub(crate) fn stream_after_now<B: Backend>(backend: &B, stream: &str) -> engine::Result<String> {
    let join = if stream.contains('?') { '&' } else { '?' };
    Ok(format!("{stream}{join}after={}", backend.stream_head()?))
}

/// The stream of everything without the agents' transcripts: what a board follows (its cards
/// change with tasks, runs and pull requests, never with an agent's output).
pub(crate) const CHANGES_STREAM: &str = "/api/stream?transcript=false";

/// An engine error as a page's status and message: internal details are logged, not shown, and
/// server paths and command lines are shown whole only to an administrator (`admin`).
pub(crate) fn failure(err: EngineError, admin: bool) -> (StatusCode, String) {
    let error = crate::error::ApiError::Engine(err);
    let status = error.status();
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %error, "a page failed");
        return (
            status,
            "something went wrong on the server; the log has the details".into(),
        );
    }
    let message = error.to_string();
    if admin {
        return (status, message);
    }
    (status, engine::redact::redact(&message))
}

/// An error page (404 for what the viewer may not see, exactly like what does not exist).
pub(crate) fn error_page<B>(viewer: &viewer::Viewer<B>, err: EngineError) -> Response {
    let (status, message) = failure(err, viewer.who.admin);
    let title = if status == StatusCode::NOT_FOUND {
        "Not found"
    } else {
        "Error"
    };
    let body = html! {
        section.narrow {
            h1 { (title) }
            p.error role="alert" { (message) }
            p { a href="/" { "Back to the inbox" } }
        }
    };
    let page = layout::Page {
        title,
        stream: None,
        section: layout::Section::None,
    };
    (status, layout::shell(Some(viewer), page, body)).into_response()
}

/// `POST /preview`: markdown (the body, plain text) rendered and sanitized as the task page
/// would show it, for the new-task dialog's preview. Session and CSRF token required.
async fn preview<B: Backend>(
    viewer: viewer::Viewer<B>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    let echoed = headers
        .get(crate::auth::CSRF_HEADER)
        .and_then(|v| v.to_str().ok());
    if viewer.csrf.is_empty() || echoed != Some(viewer.csrf.as_str()) {
        return (StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token").into_response();
    }
    markdown::render(&body).into_response()
}
