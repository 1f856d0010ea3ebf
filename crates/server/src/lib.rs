//! Atelier's HTTP API: the router table, bearer-token authentication, request extraction with JSON
//! errors, the mapping of engine errors to statuses, and the server loop with graceful shutdown.
//!
//! The handlers only translate between HTTP and `engine::Engine`; they reach it through the
//! crate-private `Backend` seam so routing, auth and error mapping are tested with a fake.

mod auth;
mod backend;
mod error;
mod extract;
mod openapi;
mod routes;
#[cfg(test)]
mod tests;
mod ui;

pub use error::ApiError;

use axum::Router;
use engine::Engine;
use std::future::Future;
use std::time::Duration;

/// How long open connections (e.g. `logs --follow` streams) may keep the server alive after the
/// shutdown signal before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Default largest request body: 2 MB (2,000,000 bytes).
pub const DEFAULT_MAX_BODY_BYTES: usize = 2_000_000;

/// Settings of the HTTP layer (`atelier serve` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    /// Largest request body accepted; a larger one is answered with 413.
    pub max_body_bytes: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// The whole HTTP API over `engine`. User routes require an API token or a session (the server's
/// `api-token` is the bootstrap administrator's token: see `engine::accounts`). Serve it with
/// [`serve`], which passes each connection's peer address (the login rate limit uses it).
pub fn app(engine: Engine, options: HttpOptions) -> Router {
    routes::router(engine, options)
}

/// The OpenAPI 3.1 document of the API (what `GET /api/openapi.json` serves), built from the
/// router's own route list.
pub fn openapi_document() -> serde_json::Value {
    routes::openapi_document::<Engine>()
}

/// Serves `app` on an already-bound `listener` until `shutdown` completes, then lets in-flight
/// requests finish for a short grace period.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    // Streams write small messages: Nagle's algorithm would hold them for the peer's delayed ACK
    // (~40 ms of live-stream lag).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
    });
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        // The receiver only goes away once `serve` returns; nothing to do then.
        let _ = stopping_tx.send(());
    });
    let grace_over = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result,
        () = grace_over => {
            tracing::warn!(
                grace_secs = SHUTDOWN_GRACE.as_secs(),
                "connections still open after the shutdown grace period; closing them"
            );
            Ok(())
        }
    }
}
