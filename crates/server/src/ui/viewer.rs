//! Who is looking at a page: the browser session behind the request's cookie. A page request
//! without a valid session is sent to the sign-in page (or to first-run setup while no account
//! has a password yet) and comes back to where it was going afterwards.

use crate::auth::{SESSION_COOKIE, cookie};
use crate::backend::Backend;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use engine::{Identity, Via};

/// The signed-in person and the engine acting for them.
pub(crate) struct Viewer<B> {
    pub backend: B,
    pub who: Identity,
    /// The session's CSRF token, echoed by the page's script in `X-CSRF-Token`.
    pub csrf: String,
}

impl<B: Backend> FromRequestParts<B> for Viewer<B> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, backend: &B) -> Result<Self, Response> {
        let session = cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|secret| backend.authenticate_session(secret).ok());
        let Some(who) = session else {
            if backend.setup_needed() {
                return Err(Redirect::to("/setup").into_response());
            }
            let wanted = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            return Err(Redirect::to(&format!("/login?next={}", encode(wanted))).into_response());
        };
        let csrf = match &who.via {
            Via::Session { csrf, .. } => csrf.clone(),
            Via::Token { .. } => String::new(),
        };
        Ok(Viewer {
            backend: backend.acting_as(who.clone()),
            who,
            csrf,
        })
    }
}

/// `text` percent-encoded for a query value.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A `next` target that stays on this site: a path, never `//host` or a scheme.
pub(crate) fn local_target(next: Option<&str>) -> &str {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path
        }
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::{encode, local_target};

    #[test]
    fn next_targets_stay_on_this_site() {
        assert_eq!(local_target(Some("/tasks/3")), "/tasks/3");
        assert_eq!(local_target(Some("//evil.example/x")), "/");
        assert_eq!(local_target(Some("https://evil.example")), "/");
        assert_eq!(local_target(Some("/\\evil.example")), "/");
        assert_eq!(local_target(None), "/");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("/tasks/3?x=1&y"), "/tasks/3%3Fx%3D1%26y");
    }
}
