//! Injected failures ([`FakeHub::fail_next`](crate::FakeHub::fail_next)): the first pending fault
//! that matches a request (method, path substring) answers it instead of the route, `times` times.

use crate::state::State;
use crate::{FaultKind, clock};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Takes one use of the first fault matching the request, if any.
pub(crate) fn take(state: &mut State, method: &Method, path: &str) -> Option<FaultKind> {
    let i = state.faults.iter().position(|f| {
        f.times > 0
            && path.contains(&f.path_contains)
            && f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
    })?;
    let fault = &mut state.faults[i];
    fault.times -= 1;
    let kind = fault.kind.clone();
    if fault.times == 0 {
        state.faults.remove(i);
    }
    Some(kind)
}

/// The answer of a fault; `None` for [`FaultKind::Hang`], which never answers.
pub(crate) fn response(kind: FaultKind) -> Option<Response> {
    let docs = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api";
    let header =
        |v: u64| HeaderValue::from_str(&v.to_string()).unwrap_or(HeaderValue::from_static("0"));
    Some(match kind {
        FaultKind::Status { code, body } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                status,
                [("content-type", "application/json; charset=utf-8")],
                body,
            )
                .into_response()
        }
        FaultKind::RateLimited { retry_after_secs } => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(
                    json!({"message": "API rate limit exceeded", "documentation_url": docs}),
                ),
            )
                .into_response();
            r.headers_mut()
                .insert("retry-after", header(retry_after_secs));
            r
        }
        FaultKind::SecondaryLimit { retry_after_secs } => {
            let mut r = (
                StatusCode::FORBIDDEN,
                axum::Json(json!({
                    "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
                    "documentation_url": format!("{docs}#about-secondary-rate-limits"),
                })),
            )
                .into_response();
            r.headers_mut()
                .insert("retry-after", header(retry_after_secs));
            r
        }
        FaultKind::PrimaryLimitExhausted { reset_in_secs } => {
            let mut r = (
                StatusCode::FORBIDDEN,
                axum::Json(json!({
                    "message": "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID.",
                    "documentation_url": docs,
                })),
            )
                .into_response();
            let h = r.headers_mut();
            h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            h.insert("x-ratelimit-used", HeaderValue::from_static("5000"));
            h.insert(
                "x-ratelimit-reset",
                header(clock::now_secs() + reset_in_secs),
            );
            r
        }
        FaultKind::Hang => return None,
    })
}
