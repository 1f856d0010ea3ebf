//! The web UI's routes against the fake backend: pages need a session, every response carries
//! the security headers, assets are served under their hashed names, hostile text is escaped or
//! sanitized, sign-in refuses other sites, and the preview needs the CSRF token.

use crate::tests::{ADMIN_SESSION, Fake, HOSTILE, SESSION, SESSION_CSRF, app};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use tower::ServiceExt;

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn call(method: Method, uri: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let peer: std::net::SocketAddr = ([127, 0, 0, 1], 40000).into();
    let res = app(&Fake::default())
        .layer(axum::extract::connect_info::MockConnectInfo(peer))
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 22)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn session() -> String {
    format!("atelier_session={SESSION}")
}

async fn page(uri: &str) -> Answer {
    call(Method::GET, uri, &[("cookie", &session())], "").await
}

#[tokio::test]
async fn page_errors_show_server_paths_to_an_administrator_only() {
    // A page (HTML, escaped) and two fragments (text).
    for uri in ["/tasks/422", "/tasks/422/diff", "/tasks/422/transcript"] {
        let member = page(uri).await;
        assert_eq!(member.status, StatusCode::CONFLICT, "{uri}");
        assert!(member.body.contains("command&gt;`") || member.body.contains("`<command>`"));
        assert!(!member.body.contains("/srv"), "{uri}: {}", member.body);
        let admin_cookie = format!("atelier_session={ADMIN_SESSION}");
        let admin = call(Method::GET, uri, &[("cookie", &admin_cookie)], "").await;
        assert_eq!(admin.status, StatusCode::CONFLICT, "{uri}");
        assert!(
            admin
                .body
                .contains("fatal: cannot lock /srv/data/atelier.db"),
            "{uri}"
        );
        assert!(
            admin.body.contains("git push --force"),
            "{uri}: {}",
            admin.body
        );
    }
}

#[tokio::test]
async fn pages_without_a_session_go_to_sign_in_and_come_back() {
    for (uri, next) in [
        ("/", "/"),
        ("/tasks/7", "/tasks/7"),
        ("/projects/demo?x=1", "/projects/demo%3Fx%3D1"),
    ] {
        let answer = call(Method::GET, uri, &[], "").await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(
            answer.headers[header::LOCATION],
            format!("/login?next={next}").as_str()
        );
        let wrong = call(
            Method::GET,
            uri,
            &[("cookie", "atelier_session=ats_forged")],
            "",
        )
        .await;
        assert_eq!(
            wrong.status,
            StatusCode::SEE_OTHER,
            "{uri} with a forged session"
        );
    }
    let login = call(Method::GET, "/login?next=%2Ftasks%2F7", &[], "").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login
            .body
            .contains(r#"<form id="login" method="post" action="/login">"#),
        "{}",
        login.body
    );
    assert!(
        login.body.contains(r#"name="next" value="/tasks/7""#),
        "{}",
        login.body
    );
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    for uri in ["/login", "/", "/healthz", "/api/openapi.json", "/nowhere"] {
        let answer = call(Method::GET, uri, &[], "").await;
        let csp = answer.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{uri}: {csp}"
        );
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{uri}: {csp}"
        );
        assert_eq!(answer.headers[header::X_FRAME_OPTIONS], "DENY", "{uri}");
        assert_eq!(
            answer.headers[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff",
            "{uri}"
        );
    }
}

#[tokio::test]
async fn pages_have_no_inline_script_or_style() {
    let answer = page("/tasks/7").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let html = answer.body.to_ascii_lowercase();
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the one external script: {html}"
    );
    assert!(html.contains(r#"<script src="/assets/app-"#), "{html}");
    assert!(
        !html.contains("style=") && !html.contains("<style"),
        "{html}"
    );
    assert!(html.contains(&format!(
        r#"<meta name="csrf-token" content="{SESSION_CSRF}">"#
    )));
    assert!(
        html.contains(r#"data-stream="/api/tasks/7/stream?after=42""#),
        "{html}"
    );
}

#[tokio::test]
async fn assets_are_served_under_their_content_hash_and_cached_for_good() {
    let html = page("/").await.body;
    let mut found = 0;
    for (marker, kind) in [
        (r#"href="/assets/app-"#, "text/css"),
        (r#"src="/assets/app-"#, "text/javascript"),
    ] {
        let start = html.find(marker).unwrap() + marker.len() - "/assets/app-".len();
        let url = &html[start..start + html[start..].find('"').unwrap()];
        let answer = call(Method::GET, url, &[], "").await;
        assert_eq!(answer.status, StatusCode::OK, "{url}");
        assert!(
            answer.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(
            answer.headers[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        found += 1;
    }
    assert_eq!(found, 2);
    let stale = call(Method::GET, "/assets/app-000000000000.css", &[], "").await;
    assert_eq!(stale.status, StatusCode::NOT_FOUND);
    // Browsers ask for /favicon.ico on their own: it is the icon, not a 404 in their console.
    let favicon = call(Method::GET, "/favicon.ico", &[], "").await;
    assert_eq!(favicon.status, StatusCode::OK);
    assert_eq!(favicon.headers[header::CONTENT_TYPE], "image/svg+xml");
}

/// Fails if a tag an attacker planted reached `html` (lower-cased) as markup. Escaped text
/// cannot contain `<`, so every `<…>` left is a real tag.
fn assert_no_hostile_tag(html: &str, path: &str) {
    let tags: Vec<&str> = html
        .split('<')
        .skip(1)
        .map(|rest| &rest[..rest.find('>').unwrap_or(rest.len())])
        .collect();
    for tag in &tags {
        let bad = (tag.starts_with("script") && !tag.contains("src=\"/assets/app-"))
            || tag.starts_with("iframe")
            || tag.contains(" onerror")
            || tag.contains(" onclick")
            || tag.contains("javascript:");
        assert!(!bad, "a hostile tag reached {path}: <{tag}>");
    }
}

/// The hostile task's diff (file names and lines) and transcript (message, thought, tool call
/// and output) on the pages and fragments that show them: text, never markup.
#[tokio::test]
async fn hostile_diffs_and_transcripts_are_escaped_on_every_page_showing_them() {
    for path in [
        "/tasks/666/changes",
        "/tasks/666/diff",
        "/tasks/666/events",
        "/tasks/666/events?before=1-3",
        "/tasks/666/transcript?before=1-3",
    ] {
        let answer = page(path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
        let html = answer.body.to_ascii_lowercase();
        assert_no_hostile_tag(&html, path);
        assert!(
            html.contains("&lt;script&gt;"),
            "{path} shows the hostile text as text: {html}"
        );
    }
}

#[tokio::test]
async fn hostile_titles_docs_and_questions_are_escaped_or_sanitized() {
    let answer = page("/tasks/666").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let html = answer.body.to_ascii_lowercase();
    assert_no_hostile_tag(&html, "/tasks/666");
    assert!(
        html.contains("&lt;script&gt;"),
        "the title is shown as text: {html}"
    );
    assert!(HOSTILE.contains("<script>"));
    // The pull request's own title (not the task's), as text.
    assert!(
        html.contains(r#"<p class="pr-title" id="pr-title">the pr: &lt;script&gt;"#),
        "the pull request's title is shown as text: {html}"
    );
    // The pull request's checks: each with its state, a web address linked, nothing else.
    assert!(
        html.contains(r#"<a href="https://ci.example/runs/7" rel="noopener noreferrer">lint</a>"#),
        "a check with a web address is linked: {html}"
    );
    assert!(
        html.contains(r#"<span class="badge" data-checks="failed">ci failed</span>"#),
        "the checks' overall state shows: {html}"
    );
    assert!(html.contains("(not required)"), "{html}");
}

#[tokio::test]
async fn a_board_card_shows_its_pull_request_and_ci_state() {
    let answer = page("/projects/demo").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let card = answer
        .body
        .split("<article")
        .find(|card| card.contains(r#"data-task="2""#))
        .unwrap_or_else(|| panic!("task 2 is on the board: {}", answer.body));
    assert!(
        card.contains(r#"href="https://forge.example/pr/2""#),
        "{card}"
    );
    assert!(
        card.contains(r#"<span class="badge" data-checks="failed">CI failed</span>"#),
        "{card}"
    );
}

#[tokio::test]
async fn a_task_the_viewer_may_not_see_is_a_not_found_page() {
    let answer = page("/tasks/404").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.body.contains("Not found"), "{}", answer.body);
    let admin = page("/admin").await;
    assert_eq!(
        admin.status,
        StatusCode::NOT_FOUND,
        "a member has no admin page"
    );
}

#[tokio::test]
async fn signing_in_from_another_site_is_refused() {
    let answer = call(
        Method::POST,
        "/login",
        &[
            ("origin", "http://evil.example"),
            ("host", "atelier.test"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "login=ann&password=whatever-long",
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert!(!answer.headers.contains_key(header::SET_COOKIE));
}

#[tokio::test]
async fn the_markdown_preview_needs_the_csrf_token_and_sanitizes() {
    let cookie = session();
    let refused = call(Method::POST, "/preview", &[("cookie", &cookie)], "**hi**").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let shown = call(
        Method::POST,
        "/preview",
        &[("cookie", &cookie), ("x-csrf-token", SESSION_CSRF)],
        &format!("**hi** {HOSTILE}"),
    )
    .await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(shown.body.contains("<strong>hi</strong>"), "{}", shown.body);
    assert!(
        !shown.body.contains("<script") && !shown.body.contains("onerror"),
        "{}",
        shown.body
    );
}
