//! The HTTP error type: every failure of a route becomes a status and a JSON body
//! `{"error": "<message>", "code": "<code>"}`, where the code is stable and machine-readable
//! (`not_found`, `conflict`, `invalid_state`, `invalid_input`, `unauthorized`, `forbidden`,
//! `too_many_requests`, `internal`,
//! `bad_request`, `payload_too_large`, `unsupported_media_type`, `no_route`,
//! `method_not_allowed`) and the message is for people. Internal errors are logged in full and shown as a generic message.
//! The message also rides along as an [`ErrorMessage`] response extension, so the router's
//! redaction layer can replace it for callers that may not see server details.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::EngineError;
use serde_json::json;

/// The message and code of an error response, for the redaction layer
/// (`routes::redact_errors`).
#[derive(Debug, Clone)]
pub(crate) struct ErrorMessage(pub String, pub &'static str);

/// Why a request failed, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// What the engine refused or failed to do.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The request itself could not be read (bad JSON, bad path or query).
    #[error("{message}")]
    BadRequest { status: StatusCode, message: String },
    /// No route has this path.
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },
    /// The route exists but not with this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
}

impl ApiError {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// A 401 with `message` (the request carried no token or the wrong one).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::Engine(EngineError::Unauthorized(message.into()))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Engine(err) => match err {
                EngineError::NotFound(_) => StatusCode::NOT_FOUND,
                EngineError::Conflict(_) | EngineError::InvalidState(_) => StatusCode::CONFLICT,
                EngineError::InvalidInput(_) => StatusCode::BAD_REQUEST,
                EngineError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
                EngineError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
                EngineError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::BadRequest { status, .. } => *status,
            ApiError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The stable, machine-readable code of this error (`code` in the JSON body).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Engine(err) => match err {
                EngineError::NotFound(_) => "not_found",
                EngineError::Conflict(_) => "conflict",
                EngineError::InvalidState(_) => "invalid_state",
                EngineError::InvalidInput(_) => "invalid_input",
                EngineError::Unauthorized(_) => "unauthorized",
                EngineError::Forbidden(_) => "forbidden",
                EngineError::TooManyRequests(_) => "too_many_requests",
                EngineError::Internal(_) => "internal",
            },
            ApiError::BadRequest { status, .. } => match *status {
                StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                _ => "bad_request",
            },
            ApiError::NoRoute { .. } => "no_route",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
        }
    }

    /// The message the client sees: never internal details.
    pub(crate) fn public_message(&self) -> String {
        match self {
            ApiError::Engine(EngineError::Internal(_)) => {
                "internal server error: see the server log for details".to_string()
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Engine(EngineError::Internal(detail)) = &self {
            tracing::error!(%detail, "request failed with an internal error");
        }
        let message = self.public_message();
        let code = self.code();
        let mut response =
            (status, Json(json!({ "error": message, "code": code }))).into_response();
        response
            .extensions_mut()
            .insert(ErrorMessage(message, code));
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_their_status() {
        let cases = [
            (EngineError::NotFound("x".into()), StatusCode::NOT_FOUND),
            (EngineError::Conflict("x".into()), StatusCode::CONFLICT),
            (
                EngineError::InvalidInput("x".into()),
                StatusCode::BAD_REQUEST,
            ),
            (EngineError::InvalidState("x".into()), StatusCode::CONFLICT),
            (
                EngineError::Unauthorized("x".into()),
                StatusCode::UNAUTHORIZED,
            ),
            (
                EngineError::Internal("x".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        let codes = [
            "not_found",
            "conflict",
            "invalid_input",
            "invalid_state",
            "unauthorized",
            "internal",
        ];
        for ((err, status), code) in cases.into_iter().zip(codes) {
            let err = ApiError::from(err);
            assert_eq!(err.status(), status);
            assert_eq!(err.code(), code);
        }
    }

    #[test]
    fn internal_details_are_not_shown() {
        let err = ApiError::from(EngineError::Internal("disk /secret/path full".into()));
        assert!(!err.public_message().contains("secret"));
    }
}
