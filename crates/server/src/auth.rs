//! Bearer-token authentication. Admin routes require the server's API token (compared in constant
//! time); the signal route takes the caller's run token and hands it to the engine, which checks
//! it against the run. Neither token works in the other's place.

use crate::error::ApiError;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The server's API token, shared by the admin-route middleware.
#[derive(Clone)]
pub(crate) struct ApiToken(pub Arc<str>);

impl ApiToken {
    /// Constant-time comparison (the length of the token is not secret).
    fn matches(&self, presented: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// Middleware of every admin route: `Authorization: Bearer <api token>` or 401.
pub(crate) async fn require_api_token(
    State(token): State<ApiToken>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = bearer(req.headers(), "API token")?;
    if !token.matches(presented) {
        return Err(ApiError::unauthorized(
            "invalid API token: use the token in <data-dir>/api-token of the server (ATELIER_TOKEN)",
        ));
    }
    Ok(next.run(req).await)
}

/// Who is calling, as far as error details are concerned. Today the API token is the one
/// administrator; any other bearer token (an agent's run token, or a wrong one) and no token at
/// all are untrusted. When accounts arrive, resolving a caller to `Admin` is the one place to
/// change ([`caller`]); the redaction layer only asks [`Caller::sees_error_details`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    Admin,
    /// A bearer token that is not the API token (run tokens of agents).
    OtherToken,
    Anonymous,
}

impl Caller {
    /// Whether error messages may show absolute server paths and raw command lines.
    pub(crate) fn sees_error_details(self) -> bool {
        matches!(self, Caller::Admin)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Caller::Admin => "admin",
            Caller::OtherToken => "run token",
            Caller::Anonymous => "anonymous",
        }
    }
}

/// The caller of a request, from its `Authorization` header.
pub(crate) fn caller(headers: &HeaderMap, token: &ApiToken) -> Caller {
    match bearer(headers, "token") {
        Ok(presented) if token.matches(presented) => Caller::Admin,
        Ok(_) => Caller::OtherToken,
        Err(_) => Caller::Anonymous,
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

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        map
    }

    #[test]
    fn bearer_tokens_are_parsed() {
        assert_eq!(bearer(&headers("Bearer abc"), "t").ok(), Some("abc"));
        assert_eq!(bearer(&headers("bearer  abc "), "t").ok(), Some("abc"));
        assert!(bearer(&headers("Basic abc"), "t").is_err());
        assert!(bearer(&headers("Bearer "), "t").is_err());
        assert!(bearer(&HeaderMap::new(), "t").is_err());
    }

    #[test]
    fn tokens_compare_exactly() {
        let token = ApiToken(Arc::from("secret"));
        assert!(token.matches("secret"));
        assert!(!token.matches("secreT"));
        assert!(!token.matches("secret2"));
        assert!(!token.matches(""));
    }
}
