//! The UI's static assets (one stylesheet, one script), embedded in the binary and served under
//! names carrying a hash of their content, so a browser may cache them forever and a new release
//! is fetched at once.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// One embedded file.
pub(crate) struct Asset {
    /// The served name (`app-<hash>.css`).
    pub name: String,
    content_type: &'static str,
    body: &'static str,
}

impl Asset {
    fn new(stem: &str, ext: &str, content_type: &'static str, body: &'static str) -> Asset {
        let hash = hex::encode(&Sha256::digest(body.as_bytes())[..6]);
        Asset {
            name: format!("{stem}-{hash}.{ext}"),
            content_type,
            body,
        }
    }

    /// The URL the pages link to.
    pub fn url(&self) -> String {
        format!("/assets/{}", self.name)
    }
}

pub(crate) static CSS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "app",
        "css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    )
});
pub(crate) static JS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "app",
        "js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    )
});
pub(crate) static ICON: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "icon",
        "svg",
        "image/svg+xml",
        include_str!("assets/icon.svg"),
    )
});

/// `GET /assets/{name}`: an embedded asset by its hashed name, cached for a year; any other
/// name is a 404 (an old page asking for a previous release's file reloads instead).
/// `/favicon.ico`, which browsers ask for on their own whatever the page links: the icon, so
/// no page load logs a 404.
pub(crate) async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, ICON.content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        ICON.body,
    )
        .into_response()
}

pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    for asset in [&*CSS, &*JS, &*ICON] {
        if asset.name == name {
            return (
                [
                    (header::CONTENT_TYPE, asset.content_type),
                    (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                ],
                asset.body,
            )
                .into_response();
        }
    }
    (StatusCode::NOT_FOUND, "no such asset").into_response()
}
