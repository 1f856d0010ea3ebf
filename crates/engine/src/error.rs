//! The engine's error type: each variant maps to one HTTP status in the server.

/// Why an engine request failed. Messages name the input and what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409: collides with live work (e.g. a second agent for a task).
    #[error("{0}")]
    Conflict(String),
    /// 400: the input itself is wrong.
    #[error("{0}")]
    InvalidInput(String),
    /// 409: the request makes no sense in the task's current state.
    #[error("{0}")]
    InvalidState(String),
    /// 401: no, wrong, expired or foreign credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// 429: too many attempts (failed logins); wait and retry.
    #[error("{0}")]
    TooManyRequests(String),
    /// 500: logged with details, shown as a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<domain::Rejection> for EngineError {
    fn from(rejection: domain::Rejection) -> Self {
        match rejection {
            domain::Rejection::Conflict(msg) => EngineError::Conflict(msg),
            domain::Rejection::InvalidState(msg) => EngineError::InvalidState(msg),
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl From<store::StoreError> for EngineError {
    fn from(err: store::StoreError) -> Self {
        EngineError::Internal(err.to_string())
    }
}
