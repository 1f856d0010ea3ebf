//! Who is calling. User routes take an API token (`Authorization: Bearer atk_…`, or the server's
//! legacy `api-token`, which is the bootstrap administrator's) or a browser session cookie; the
//! engine checks either against the store. A request made with the cookie that changes anything
//! must echo the session's CSRF token in `X-CSRF-Token`, and a foreign `Origin` is refused, so
//! another site cannot make a signed-in browser act. The signal route takes the caller's run
//! token and hands it to the engine, which checks it against the run. No token works in
//! another's place.

use crate::backend::Backend;
use crate::error::ApiError;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use engine::{Identity, Via};

/// The name of the browser session cookie.
pub(crate) const SESSION_COOKIE: &str = "atelier_session";
/// The header a cookie-authenticated state-changing request echoes the CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Marks a response to a request made by an administrator (for the redaction layer).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdminCaller;

/// Middleware of every user route: authenticates the request (token or session, with the CSRF
/// rules for sessions) and hands the identity to the handler, or answers 401/403.
pub(crate) async fn authenticate<B: Backend>(
    State(backend): State<B>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let who = identify(&backend, req.headers(), req.method())?;
    let admin = who.admin;
    req.extensions_mut().insert(who);
    let mut response = next.run(req).await;
    if admin {
        response.extensions_mut().insert(AdminCaller);
    }
    Ok(response)
}

fn identify<B: Backend>(
    backend: &B,
    headers: &HeaderMap,
    method: &Method,
) -> Result<Identity, ApiError> {
    if headers.contains_key(AUTHORIZATION) {
        let token = bearer(headers, "API token")?;
        return Ok(backend.authenticate_token(token)?);
    }
    let Some(secret) = cookie(headers, SESSION_COOKIE) else {
        return Err(ApiError::unauthorized(
            "not signed in: send `Authorization: Bearer <API token>` (`atelier login`, or the \
             server's <data-dir>/api-token) or sign in with POST /api/login",
        ));
    };
    let who = backend.authenticate_session(secret)?;
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        check_same_origin(headers)?;
        let Via::Session { csrf, .. } = &who.via else {
            return Err(ApiError::unauthorized("not a session"));
        };
        let echoed = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !constant_time_eq(echoed.as_bytes(), csrf.as_bytes()) {
            return Err(ApiError::Engine(engine::EngineError::Forbidden(
                "missing or wrong X-CSRF-Token: a request made with the session cookie must echo \
                 the csrf token the login answered"
                    .into(),
            )));
        }
    }
    Ok(who)
}

/// A cookie-carried request from another site is refused: its `Origin`, when present, must be
/// this server (`http(s)://<Host>`).
pub(crate) fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let same = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| !host.is_empty() && rest.eq_ignore_ascii_case(host));
    if same {
        Ok(())
    } else {
        Err(ApiError::Engine(engine::EngineError::Forbidden(format!(
            "cross-site request refused: Origin {origin} is not this server"
        ))))
    }
}

/// The `Set-Cookie` value of a new browser session (`Secure` behind an HTTPS proxy that says so
/// with `X-Forwarded-Proto: https`).
pub(crate) fn session_cookie(secret: &str, headers: &HeaderMap) -> Option<HeaderValue> {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        engine::SESSION_LIFETIME_SECS,
        if https { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// The engine acting for the authenticated caller: the only way user routes reach it.
pub(crate) struct Acting<B>(pub B);

impl<B: Backend> FromRequestParts<B> for Acting<B> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &B) -> Result<Self, Self::Rejection> {
        let who = parts
            .extensions
            .get::<Identity>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("not authenticated"))?;
        Ok(Acting(state.acting_as(who)))
    }
}

/// The bearer token of an agent's run (checked by the engine, not here).
pub(crate) struct RunToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RunToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        bearer(&parts.headers, "run token").map(|token| RunToken(token.to_string()))
    }
}

/// The token of an `Authorization: Bearer <token>` header; `what` names the expected token in
/// the error.
fn bearer<'h>(headers: &'h HeaderMap, what: &str) -> Result<&'h str, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(ApiError::unauthorized(format!(
            "missing Authorization header: send `Authorization: Bearer <{what}>`"
        )));
    };
    let value = value.to_str().unwrap_or_default();
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::unauthorized(format!(
            "malformed Authorization header: expected `Bearer <{what}>`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn bearer_tokens_are_parsed() {
        let auth = |v| headers(&[("authorization", v)]);
        assert_eq!(bearer(&auth("Bearer abc"), "t").ok(), Some("abc"));
        assert_eq!(bearer(&auth("bearer  abc "), "t").ok(), Some("abc"));
        assert!(bearer(&auth("Basic abc"), "t").is_err());
        assert!(bearer(&auth("Bearer "), "t").is_err());
        assert!(bearer(&HeaderMap::new(), "t").is_err());
    }

    #[test]
    fn cookies_are_found_by_name() {
        let h = headers(&[("cookie", "a=1; atelier_session=s3cret"), ("cookie", "b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("s3cret"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(
            cookie(&headers(&[("cookie", "atelier_session=")]), SESSION_COOKIE),
            None
        );
    }

    #[test]
    fn only_this_servers_origin_passes() {
        let ok = headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert!(check_same_origin(&ok).is_ok());
        let foreign = headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert!(check_same_origin(&foreign).is_err());
        let none = headers(&[("host", "127.0.0.1:8080")]);
        assert!(check_same_origin(&none).is_ok());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
