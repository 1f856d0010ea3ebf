//! Request extractors whose rejections are `ApiError`s: a bad JSON body, query string or path id
//! gives a JSON error naming the problem instead of axum's plain-text rejection, and a body over
//! the server's limit a 413 naming the limit and how to raise it.

use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use domain::TaskId;
use serde::de::DeserializeOwned;

/// The largest request body the server accepts, as a request extension (set by the router next
/// to axum's `DefaultBodyLimit`, so the 413 can name it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub usize);

/// The 413 of a body over the limit.
fn too_large(limit: Option<BodyLimit>) -> ApiError {
    let limit = limit.map_or(crate::DEFAULT_MAX_BODY_BYTES, |l| l.0);
    ApiError::BadRequest {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "request body is larger than the {} limit ({limit} bytes, max_body_bytes): send less, \
             or raise the limit with `atelier serve --max-body-bytes N` (ATELIER_MAX_BODY_BYTES)",
            human_bytes(limit)
        ),
    }
}

/// `2 MB`, `512 kB`, `900 bytes` (decimal units, as the limit is set in bytes).
fn human_bytes(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 100_000 == 0 => {
            let tenths = n / 100_000;
            if tenths % 10 == 0 {
                format!("{} MB", tenths / 10)
            } else {
                format!("{}.{} MB", tenths / 10, tenths % 10)
            }
        }
        n if n >= 1_000 && n % 1_000 == 0 => format!("{} kB", n / 1_000),
        n => format!("{n} bytes"),
    }
}

/// A JSON body (requires `Content-Type: application/json`).
pub(crate) struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(too_large(limit))
            }
            Err(rejection) => {
                let status = match rejection {
                    JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    _ => StatusCode::BAD_REQUEST,
                };
                Err(ApiError::BadRequest {
                    status,
                    message: rejection.body_text(),
                })
            }
        }
    }
}

/// A JSON body that may be absent: an empty body gives `T::default()`. The content type is not
/// checked, so `curl -X POST` with no body works.
pub(crate) struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large(limit)
            } else {
                ApiError::bad_request(rejection.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalJson)
            .map_err(|err| ApiError::bad_request(format!("invalid JSON body: {err}")))
    }
}

/// The raw body, whatever its content type (a webhook's, whose signature covers its bytes);
/// one over the limit is the same JSON 413 as everywhere else.
pub(crate) struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large(limit)
                } else {
                    ApiError::bad_request(rejection.body_text())
                }
            })
    }
}

/// A query string.
pub(crate) struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// The `{id}` path segment of a task route.
pub(crate) struct TaskIdPath(pub TaskId);

impl<S: Send + Sync> FromRequestParts<S> for TaskIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        parse_task_id(&raw).map(TaskIdPath)
    }
}

/// `/api/tasks/{id}/…/{name}`: a task id and a name, with JSON errors.
pub(crate) struct TaskItemPath(pub TaskId, pub String);

impl<S: Send + Sync> FromRequestParts<S> for TaskItemPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path((id, name)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        Ok(TaskItemPath(parse_task_id(&id)?, name))
    }
}

fn parse_task_id(raw: &str) -> Result<TaskId, ApiError> {
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(TaskId(id)),
        _ => Err(ApiError::bad_request(format!(
            "invalid task id `{raw}` in the path: expected a positive integer such as /api/tasks/12"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_shown_in_decimal_units() {
        assert_eq!(human_bytes(2_000_000), "2 MB");
        assert_eq!(human_bytes(2_500_000), "2.5 MB");
        assert_eq!(human_bytes(4_000), "4 kB");
        assert_eq!(human_bytes(2_000_001), "2000001 bytes");
    }

    #[test]
    fn task_ids_are_positive_integers() {
        assert_eq!(parse_task_id("12").ok().map(|id| id.0), Some(12));
        for bad in ["0", "-3", "abc", "1.5", ""] {
            assert!(parse_task_id(bad).is_err(), "{bad} should be rejected");
        }
    }
}
