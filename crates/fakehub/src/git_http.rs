//! Git smart HTTP: `/{owner}/{repo}.git/…` served by `git http-backend` as a CGI, behind HTTP
//! Basic auth whose password must be a personal or installation token (fetch and push alike).
//! After a push, moved branches update the PRs (see [`crate::refs`]).

use crate::state::Hub;
use crate::{Auth, auth, refs};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// `owner` and `repo` of a `/{owner}/{repo}.git/…` path.
fn split(path: &str) -> Option<(&str, &str)> {
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let owner = parts.next()?;
    let repo = parts.next()?.strip_suffix(".git")?;
    (!owner.is_empty() && !repo.is_empty()).then_some((owner, repo))
}

pub(crate) fn is_git_path(path: &str) -> bool {
    split(path).is_some()
}

fn plain(status: StatusCode, text: &str) -> Response {
    (status, text.to_string()).into_response()
}

pub(crate) async fn serve(hub: Arc<Hub>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let Some((owner, repo)) = split(&path) else {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    };
    let (owner, repo) = (owner.to_string(), repo.to_string());
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match auth::parse(authorization) {
        Auth::Basic { password, .. } => hub.with(|s| auth::token_caller(s, &password)),
        _ => None,
    };
    let Some(caller) = caller else {
        let mut r = plain(
            StatusCode::UNAUTHORIZED,
            "Invalid username or token. Password authentication is not supported for Git operations.\n",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"GitHub\""),
        );
        return r;
    };
    if hub.with(|s| s.find_repo(&owner, &repo).is_none()) {
        return plain(StatusCode::NOT_FOUND, "Repository not found.\n");
    }
    let is_push = path.ends_with("/git-receive-pack");
    let bare = hub.bare_path(&owner, &repo);
    let before = if is_push {
        Some(refs::snapshot(&hub, &bare).await)
    } else {
        None
    };
    let response = match cgi(&hub, req, &path, &caller.login).await {
        Ok(r) => r,
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    if let Some(before) = before {
        refs::moved(&hub, &owner, &repo, &before, &caller.login).await;
    }
    response
}

/// Runs `git http-backend` for the request; its CGI output becomes the response.
async fn cgi(hub: &Hub, req: Request, path: &str, user: &str) -> Result<Response, String> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| format!("reading the request: {e}"))?;
    let header = |name: &header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .envs(hub.git_env())
        .env("GIT_PROJECT_ROOT", hub.repos_dir())
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", path)
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header(&header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let encoding = header(&header::CONTENT_ENCODING);
    if !encoding.is_empty() {
        cmd.env("HTTP_CONTENT_ENCODING", encoding);
    }
    if let Some(protocol) = parts
        .headers
        .get("git-protocol")
        .and_then(|v| v.to_str().ok())
    {
        cmd.env("GIT_PROTOCOL", protocol);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting git http-backend: {e}"))?;
    let stdin = child.stdin.take();
    let writer = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&body).await;
        }
    });
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("running git http-backend: {e}"))?;
    let _ = writer.await;
    parse_cgi(&out.stdout).ok_or_else(|| {
        format!(
            "git http-backend answered no CGI headers: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// CGI output (headers, blank line, body) → a response; `Status:` sets the status.
fn parse_cgi(out: &[u8]) -> Option<Response> {
    let (head_len, sep) = find(out, b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| find(out, b"\n\n").map(|i| (i, 2)))?;
    let head = String::from_utf8_lossy(&out[..head_len]);
    let mut response = Response::new(Body::from(out[head_len + sep..].to_vec()));
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next()?.parse().ok()?;
            *response.status_mut() = StatusCode::from_u16(code).ok()?;
        } else if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(n, v);
        }
    }
    Some(response)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
