//! People on a shared server, end to end against the real `atelier serve`: the server's
//! api-token is the bootstrap administrator's; accounts, API tokens (shown once, revocable),
//! password logins with a limit on failures, session cookies with their CSRF and same-origin
//! rules, project membership (a non-member gets 404 for the project and its tasks, exactly like
//! something that does not exist) and the audit trail.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::people::Session;
use support::*;
use testkit::ApiClient;

/// Creates `login` (a member, with a password) and an API token of theirs; returns a client
/// carrying that token.
async fn user_with_token(world: &World, login: &str) -> ApiClient {
    let admin = world.server.client();
    let (status, body) = admin
        .post(
            "/api/users",
            &json!({"login": login, "password": format!("{login}-long-password")}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["admin"], false);
    assert!(body.get("password_hash").is_none(), "{body}");
    // The user makes their own token: sign in, then create it with the session.
    let session = Session::login(world, login, &format!("{login}-long-password")).await;
    let (status, token) = session
        .send(
            Method::POST,
            "/api/tokens",
            Some(json!({"name": "laptop"})),
            true,
            None,
        )
        .await;
    assert_eq!(status, 201, "{token}");
    admin.with_token(token["token"].as_str().unwrap())
}

#[tokio::test]
async fn members_see_their_projects_and_nothing_else() {
    let world = World::start(&full_pipeline(), &[]).await;
    let admin = world.server.client();
    let other = world.add_repo("other");
    world.add_project(&other, "other", json!({})).await;
    let id = world.new_task_in("other", "Secret work", true, 0).await;
    let ann = user_with_token(&world, "ann").await;

    // Not a member of anything yet: nothing listed, everything "not found".
    assert_eq!(ann.get("/api/projects").await.unwrap(), json!([]));
    assert_eq!(ann.get("/api/tasks").await.unwrap(), json!([]));
    let (status, body) = ann
        .request(Method::GET, &format!("/api/tasks/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, 404, "{body}");
    let (missing, missing_body) = ann
        .request(Method::GET, "/api/tasks/999999", None)
        .await
        .unwrap();
    assert_eq!(missing, 404);
    assert_eq!(
        body["code"], missing_body["code"],
        "a task one may not see answers like one that does not exist"
    );
    for action in ["approve", "stop", "resume", "merge"] {
        let (status, _) = ann
            .post(&format!("/api/tasks/{id}/{action}"), &json!({}))
            .await
            .unwrap();
        assert_eq!(status, 404, "{action}");
    }
    let (status, _) = ann
        .post(
            "/api/tasks",
            &json!({"project": "other", "title": "x", "body": "y"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 404, "creating a task in a project one may not see");
    let (status, _) = ann
        .post("/api/projects", &json!({"path": other}))
        .await
        .unwrap();
    assert_eq!(status, 403, "only administrators add projects");
    let (status, _) = ann.request(Method::GET, "/api/users", None).await.unwrap();
    assert_eq!(status, 403);
    let (status, _) = ann.request(Method::GET, "/api/audit", None).await.unwrap();
    assert_eq!(status, 403);

    // A member of `other`: its project and its tasks, not `app`'s.
    people::add_member(&world, "other", "ann", "member").await;
    let projects = ann.get("/api/projects").await.unwrap();
    let names: Vec<&str> = projects
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other"]);
    let detail = ann.get(&format!("/api/tasks/{id}")).await.unwrap();
    assert_eq!(detail["task"]["title"], "Secret work");
    let (status, body) = ann
        .post(
            "/api/tasks",
            &json!({"project": "other", "title": "Mine", "body": "Do it."}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    // Settings are for the project's owners.
    let (status, _) = ann
        .request(
            Method::PUT,
            "/api/projects/other/settings",
            Some(&json!({"slots": 2})),
        )
        .await
        .unwrap();
    assert_eq!(status, 403);
    // The administrator still sees everything.
    let all = admin.get("/api/projects").await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn tokens_are_shown_once_and_revoking_one_takes_effect_at_once() {
    let world = World::start(&full_pipeline(), &[]).await;
    let ann = user_with_token(&world, "ann").await;
    let me = ann.get("/api/me").await.unwrap();
    assert_eq!(me["login"], "ann");
    let tokens = ann.get("/api/tokens").await.unwrap();
    let listed = tokens.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].get("token").is_none(),
        "a token's secret is shown once, never listed: {tokens}"
    );
    let id = listed[0]["id"].as_i64().unwrap();
    let (status, body) = ann
        .request(Method::DELETE, &format!("/api/tokens/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = ann.request(Method::GET, "/api/me", None).await.unwrap();
    assert_eq!(
        status, 401,
        "a revoked token fails on the next request: {body}"
    );
    // The database holds no token or password in clear.
    let db = world.db();
    let hashes: Vec<String> = db
        .prepare("SELECT hash FROM api_tokens")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(hashes.iter().all(|h| h.len() == 64), "{hashes:?}");
    let password: String = db
        .query_row(
            "SELECT password_hash FROM users WHERE login = 'ann'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(password.starts_with("$argon2id$"), "{password}");
}

#[tokio::test]
async fn sessions_need_their_csrf_token_refuse_other_sites_and_end_at_logout() {
    let world = World::start(&full_pipeline(), &[]).await;
    user_with_token(&world, "ann").await;
    let session = Session::login(&world, "ann", "ann-long-password").await;
    let (status, body) = session
        .send(Method::GET, "/api/me", None, false, None)
        .await;
    assert_eq!(status, 200, "a read needs no CSRF token: {body}");
    let new_token = Some(json!({"name": "x"}));
    let (status, body) = session
        .send(Method::POST, "/api/tokens", new_token.clone(), false, None)
        .await;
    assert_eq!(status, 403, "a change without the CSRF token: {body}");
    assert_eq!(body["code"], "forbidden");
    let (status, body) = session
        .send(
            Method::POST,
            "/api/tokens",
            new_token.clone(),
            true,
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(status, 403, "a cross-site request: {body}");
    let (status, body) = session
        .send(
            Method::POST,
            "/api/tokens",
            new_token.clone(),
            true,
            Some(world.server.url()),
        )
        .await;
    assert_eq!(status, 201, "same origin with the CSRF token: {body}");
    let (status, _) = session
        .send(Method::POST, "/api/logout", None, true, None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = session
        .send(Method::GET, "/api/me", None, false, None)
        .await;
    assert_eq!(status, 401, "the session ended server-side");
}

#[tokio::test]
async fn failed_logins_are_limited_even_in_parallel() {
    let world = World::start(&full_pipeline(), &[]).await;
    user_with_token(&world, "ann").await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/api/login", world.server.url());
    let attempts = (0..100).map(|i| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.post(&url)
                .json(&json!({"login": "ann", "password": format!("wrong-password-{i}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    let wrong = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(wrong + limited, 100, "{statuses:?}");
    assert!(limited >= 90, "at most a handful are checked: {statuses:?}");
    // Even the right password is refused while the limit holds.
    let status = http
        .post(&url)
        .json(&json!({"login": "ann", "password": "ann-long-password"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 429);
}

#[tokio::test]
async fn the_audit_trail_says_who_did_what_and_how() {
    let world = World::start(&full_pipeline(), &["--merge-poll-ms", "200"]).await;
    let id = world.new_task("Audited", true).await;
    world.wait_state(id, "plan_gate").await;
    let (status, body) = world.action(id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let ann = user_with_token(&world, "ann").await;
    ann.get("/api/me").await.unwrap();
    let audit = world.server.get("/api/audit").await.unwrap();
    let lines: Vec<(String, String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["actor"].as_str().unwrap().to_string(),
                l["via"].as_str().unwrap().to_string(),
                l["action"].as_str().unwrap().to_string(),
                l["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let has = |actor: &str, via: &str, action: &str, target: &str| {
        lines
            .iter()
            .any(|l| l.0 == actor && l.1 == via && l.2 == action && l.3 == target)
    };
    let api = "token server api-token";
    assert!(has("admin", api, "project.add", "app"), "{lines:#?}");
    assert!(
        has("admin", api, "task.create", &format!("task {id}")),
        "{lines:#?}"
    );
    assert!(
        has("admin", api, "task.approve", &format!("task {id}")),
        "{lines:#?}"
    );
    assert!(has("admin", api, "user.create", "ann"), "{lines:#?}");
    assert!(has("ann", "password", "session.login", "ann"), "{lines:#?}");
    assert!(
        has("ann", "session", "token.create", "laptop"),
        "{lines:#?}"
    );
    assert!(
        audit
            .as_array()
            .unwrap()
            .windows(2)
            .all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64()),
        "newest first"
    );
}

/// Runs the `atelier` CLI with only `env` (no ATELIER_* variables of the test's own).
fn atelier(args: &[&str], env: &[(&str, &std::path::Path)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_atelier"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ATELIER_") {
            cmd.env_remove(key);
        }
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.args(args).output().unwrap()
}

#[tokio::test]
async fn the_cli_signs_in_once_and_keeps_a_private_token() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::start(&full_pipeline(), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "ann-long-password\n").unwrap();
    let config = dir.path().join("config");
    let nowhere = dir.path().join("no-data-dir");
    let url = world.server.url().to_string();

    // The administrator (the server's data dir has its token) creates the account.
    let created = atelier(
        &[
            "admin",
            "create-user",
            "ann",
            "--password-file",
            password.to_str().unwrap(),
        ],
        &[("ATELIER_DATA_DIR", world.data.as_path())],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    // Ann signs in from "another machine": no server.json, only the URL.
    let env = [
        ("XDG_CONFIG_HOME", config.as_path()),
        ("ATELIER_DATA_DIR", nowhere.as_path()),
    ];
    let login = atelier(
        &[
            "login",
            "--url",
            &url,
            "--user",
            "ann",
            "--password-file",
            password.to_str().unwrap(),
        ],
        &env,
    );
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let file = config.join("atelier/login.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let saved: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(
        saved["token"].as_str().unwrap().starts_with("atk_"),
        "{saved}"
    );
    assert!(!String::from_utf8_lossy(&login.stdout).contains(saved["token"].as_str().unwrap()));

    let listed = atelier(&["--json", "token", "list"], &env);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let tokens: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(tokens.as_array().unwrap().len(), 1, "{tokens}");
    let users = atelier(&["admin", "users"], &env);
    assert!(!users.status.success(), "a member is not an administrator");
    assert!(
        String::from_utf8_lossy(&users.stderr).contains("administrator"),
        "{}",
        String::from_utf8_lossy(&users.stderr)
    );
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not the password").unwrap();
    let refused = atelier(
        &[
            "login",
            "--url",
            &url,
            "--user",
            "ann",
            "--password-file",
            wrong.to_str().unwrap(),
        ],
        &env,
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("wrong login or password"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[tokio::test]
async fn a_non_technical_owners_task_passes_the_plan_gate_by_itself() {
    // The planner shows what it was told.
    let mut stages = full_pipeline();
    let mut plan = plan_scenario();
    plan["runs"][0]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"do": "echo_input"}));
    stages[0] = ("plan", plan);
    let world = World::start(&stages, &[]).await;
    people::create_user(&world, "pat", false).await;
    people::add_member(&world, "app", "pat", "member").await;
    let session = Session::login(&world, "pat", "pat-long-password").await;
    let (status, task) = session
        .send(
            Method::POST,
            "/api/tasks",
            Some(json!({"project": "app", "title": "A product request", "body": "Make it nicer.", "technical": true})),
            true,
            None,
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_i64().unwrap();
    let detail = world.wait_state(id, "awaiting_merge").await;
    let stages: Vec<&str> = detail["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["stage"].as_str().unwrap())
        .collect();
    assert!(
        stages.contains(&"implement"),
        "no human approved the plan: {stages:?}"
    );
}

#[tokio::test]
async fn a_members_stream_of_everything_shows_their_projects_only() {
    let world = World::start(&full_pipeline(), &[]).await;
    let other = world.add_repo("other");
    world.add_project(&other, "other", json!({})).await;
    let hidden = world.new_task_in("other", "Not for ann", true, 0).await;
    let shown = world.new_task("For ann", true).await;
    world.wait_state(hidden, "plan_gate").await;
    world.wait_state(shown, "plan_gate").await;
    let ann = user_with_token(&world, "ann").await;
    people::add_member(&world, "app", "ann", "member").await;
    // From the very start: the whole backlog, then the `caught-up` marker.
    let token = ann.token();
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/api/stream?after=0", world.server.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    use futures::StreamExt;
    while !text.contains("event: caught-up") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), body.next())
            .await
            .expect("the backlog arrives")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let tasks: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|d| d["task"].as_i64())
        .collect();
    assert!(tasks.contains(&shown), "ann's project's task is streamed");
    assert!(
        !tasks.contains(&hidden),
        "nothing of a project ann is not a member of"
    );
}

#[tokio::test]
async fn removing_a_member_hides_the_project_again() {
    let world = World::start(&full_pipeline(), &[]).await;
    let ann = user_with_token(&world, "ann").await;
    let admin = world.server.client();
    people::add_member(&world, "app", "ann", "owner").await;
    let members = ann.get("/api/projects/app/members").await.unwrap();
    assert_eq!(members, json!([{"login": "ann", "role": "owner"}]));
    let (status, body) = admin
        .request(Method::DELETE, "/api/projects/app/members/ann", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = ann
        .request(Method::GET, "/api/projects/app/members", None)
        .await
        .unwrap();
    assert_eq!(status, 404, "no longer a member: the project is not found");
    let (status, _) = admin
        .request(Method::DELETE, "/api/projects/app/members/ann", None)
        .await
        .unwrap();
    assert_eq!(status, 404, "removing twice: not a member");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let world = World::start(&full_pipeline(), &[]).await;
    let ann = user_with_token(&world, "ann").await;
    // A token made to expire in a day works today…
    let (status, fresh) = ann
        .post(
            "/api/tokens",
            &json!({"name": "short", "expires_in_days": 1}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{fresh}");
    assert!(fresh["expires_at"].as_i64().unwrap() > 0);
    let short = ann.with_token(fresh["token"].as_str().unwrap());
    assert_eq!(short.get("/api/me").await.unwrap()["login"], "ann");
    // …and not once its time is past.
    world
        .db()
        .execute(
            "UPDATE api_tokens SET expires_at = 1 WHERE name = 'short'",
            [],
        )
        .unwrap();
    let (status, body) = short.request(Method::GET, "/api/me", None).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "unauthorized");
}

#[tokio::test]
async fn a_disabled_account_is_locked_out_at_once_and_back_when_enabled() {
    let world = World::start(&full_pipeline(), &[]).await;
    let ann = user_with_token(&world, "ann").await;
    let session = Session::login(&world, "ann", "ann-long-password").await;
    let admin = world.server.client();
    let set = |disabled: bool| {
        let admin = admin.clone();
        async move {
            admin
                .request(
                    Method::PUT,
                    "/api/users/ann",
                    Some(&json!({"disabled": disabled})),
                )
                .await
                .unwrap()
        }
    };
    let (status, body) = set(true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["disabled"], true);
    let (status, _) = ann.request(Method::GET, "/api/me", None).await.unwrap();
    assert_eq!(status, 401, "its token stops working");
    let (status, _) = session
        .send(Method::GET, "/api/me", None, false, None)
        .await;
    assert_eq!(status, 401, "its session ended");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let login = http
        .post(format!("{}/api/login", world.server.url()))
        .json(&json!({"login": "ann", "password": "ann-long-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 401, "it cannot sign in");
    let (status, _) = set(false).await;
    assert_eq!(status, 200);
    assert_eq!(ann.get("/api/me").await.unwrap()["login"], "ann");
    // An administrator cannot lock themselves out.
    let (status, body) = admin
        .request(
            Method::PUT,
            "/api/users/admin",
            Some(&json!({"disabled": true})),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
}

/// An administrator's page lists every account's tokens (never a secret) and revokes anyone's,
/// effective at once: the token is refused on its next request and the stream it opened ends.
/// The audit trail on the same page says who revoked which token of whom, and when. Nobody
/// else may list everyone's tokens.
/// The row of token `id` in the admin page's token table.
fn token_row(page: &str, id: i64) -> &str {
    page.split("<tr")
        .find(|row| row.contains(&format!(r#"data-token="{id}""#)))
        .and_then(|row| row.split("</tr>").next())
        .unwrap_or_else(|| panic!("token {id}'s row on the admin page: {page}"))
}

#[tokio::test]
async fn an_administrator_lists_every_token_and_revokes_anyones_at_once() {
    let world = World::start(&full_pipeline(), &[]).await;
    let ann = user_with_token(&world, "ann").await;
    let secret = support::people::token_of(&world, "ann", "stream").await;
    let mut stream = support::sse::SseText::open(&world, "/api/stream", &secret).await;
    assert!(stream.read_until(0, |t| t.contains("event: ready")).await);
    let (status, body) = ann
        .request(Method::GET, "/api/tokens/all", None)
        .await
        .unwrap();
    assert_eq!(
        status, 403,
        "a member may not list everyone's tokens: {body}"
    );

    // A second administrator, signed in as the web UI is.
    support::people::create_user(&world, "root", true).await;
    support::people::update_user(&world, "root", json!({"admin": true})).await;
    let root = Session::of(&world, "root").await;
    let (status, all) = root
        .send(Method::GET, "/api/tokens/all", None, false, None)
        .await;
    assert_eq!(status, 200, "{all}");
    let listed = all.as_array().unwrap();
    let of = |owner: &str, name: &str| {
        listed
            .iter()
            .find(|t| t["owner"] == owner && t["name"] == name)
            .unwrap_or_else(|| panic!("{owner}'s token {name}: {all}"))
            .clone()
    };
    of("admin", "server api-token");
    of("ann", "laptop");
    let target = of("ann", "stream");
    assert!(
        !all.to_string().contains(&secret) && listed.iter().all(|t| t.get("token").is_none()),
        "no secret is listed: {all}"
    );
    let id = target["id"].as_i64().unwrap();
    let page = root.page("/admin").await;
    let row = token_row(&page, id);
    assert!(
        row.contains("<td>stream</td><td>ann</td>")
            && row.contains(&format!(r#"data-action="/api/tokens/{id}""#))
            && row.contains(">Revoke</button>"),
        "{row}"
    );
    assert!(!page.contains(&secret), "no secret on the page");

    // Revoked the way the page's button does it: the session with its CSRF token.
    let (status, body) = root
        .send(
            Method::DELETE,
            &format!("/api/tokens/{id}"),
            None,
            true,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    stream.read_to_end().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let refused = http
        .get(format!("{}/api/me", world.server.url()))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        401,
        "the revoked token is refused at once"
    );
    assert_eq!(
        ann.get("/api/me").await.unwrap()["login"],
        "ann",
        "ann's other token still works"
    );

    // The audit trail on the page: when, who, how, what, on what — with whose token it was.
    let (_, page) = root.send(Method::GET, "/admin", None, false, None).await;
    let page = page.as_str().unwrap();
    let audit = &page[page.find(r#"<table id="audit">"#).unwrap()..];
    let line = audit
        .split("<tr>")
        .find(|row| row.contains("token.revoke"))
        .unwrap_or_else(|| panic!("the revocation in the audit trail: {audit}"));
    assert!(
        line.contains("<td>root</td><td>session</td>")
            && line.contains(r#"<span class="muted">of ann</span>"#)
            && line.contains("<td>stream</td>"),
        "{line}"
    );
    let when = line
        .split(r#"data-ms=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|ms| ms.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("a time on the line: {line}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((now - 60_000..=now).contains(&when), "{when} vs {now}");
    let (status, revoked) = root
        .send(Method::GET, "/api/tokens/all", None, false, None)
        .await;
    assert_eq!(status, 200);
    assert!(
        revoked
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id && t["revoked"] == true),
        "{revoked}"
    );

    // Ann's account disabled: her tokens are refused, and listed (API and page) as such.
    support::people::update_user(&world, "ann", json!({"disabled": true})).await;
    let (_, all) = root
        .send(Method::GET, "/api/tokens/all", None, false, None)
        .await;
    let laptop = all
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["owner"] == "ann" && t["name"] == "laptop")
        .unwrap_or_else(|| panic!("ann's laptop token: {all}"));
    assert_eq!(
        (
            &laptop["owner_disabled"],
            &laptop["expired"],
            &laptop["revoked"]
        ),
        (&json!(true), &json!(false), &json!(false)),
        "{laptop}"
    );
    let laptop_id = laptop["id"].as_i64().unwrap();
    let page = root.page("/admin").await;
    let row = token_row(&page, laptop_id);
    assert!(
        row.contains(r#"<span class="muted">owner disabled</span>"#) && !row.contains(">live<"),
        "{row}"
    );
    let root_token = all
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["owner"] == "admin")
        .unwrap();
    assert_eq!(root_token["owner_disabled"], false, "{root_token}");
}

/// Administrators are made and unmade on the admin page; nobody demotes or disables
/// themselves, so the administrator acting always remains — the last one cannot be removed.
#[tokio::test]
async fn the_last_administrator_cannot_be_demoted_or_disabled() {
    let world = World::start(&full_pipeline(), &[]).await;
    support::people::create_user(&world, "root", true).await;
    support::people::update_user(&world, "root", json!({"admin": true})).await;
    let root = Session::of(&world, "root").await;
    let (_, page) = root.send(Method::GET, "/admin", None, false, None).await;
    let page = page.as_str().unwrap();
    let row = |login: &str| {
        page.split("<tr")
            .find(|row| row.contains(&format!(r#"data-user="{login}""#)))
            .and_then(|row| row.split("</tr>").next())
            .unwrap_or_else(|| panic!("{login}'s row: {page}"))
            .to_string()
    };
    assert!(
        row("admin").contains(r#"name="admin" value="false""#)
            && row("admin").contains("Remove administrator"),
        "another administrator can be demoted: {}",
        row("admin")
    );
    assert!(
        !row("root").contains("<form"),
        "no button changes one's own role or access: {}",
        row("root")
    );
    // root demotes the bootstrap administrator: root is now the only one.
    let (status, body) = root
        .send(
            Method::PUT,
            "/api/users/admin",
            Some(json!({"admin": false})),
            true,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for change in [json!({"admin": false}), json!({"disabled": true})] {
        let (status, body) = root
            .send(Method::PUT, "/api/users/root", Some(change), true, None)
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("cannot disable or demote yourself"),
            "{body}"
        );
    }
    let (_, users) = root
        .send(Method::GET, "/api/users", None, false, None)
        .await;
    let admins: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["admin"] == true && u["disabled"] == false)
        .map(|u| u["login"].as_str().unwrap())
        .collect();
    assert_eq!(admins, ["root"], "{users}");
}

/// An administrator reads and changes the instance's prompts from the command line: a text with
/// an unknown variable is refused with the server's reason (its line), a good one is in force
/// until reset; a name that is not a prompt is refused before any request; a member may not.
/// `atelier token list --all` shows every account's tokens with their owners.
#[tokio::test]
async fn an_administrator_edits_the_prompts_and_lists_every_token_from_the_cli() {
    let world = World::start(&full_pipeline(), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let admin = [("ATELIER_DATA_DIR", world.data.as_path())];
    let run = |args: &[&str]| {
        let out = atelier(args, &admin);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let row = |listing: &str, file: &str| {
        listing
            .lines()
            .find(|l| l.starts_with(&format!("{file} ")))
            .unwrap_or_else(|| panic!("no row for {file}: {listing}"))
            .to_string()
    };

    let (ok, listing, err) = run(&["prompt", "list"]);
    assert!(ok, "{err}");
    let plan = row(&listing, "plan.md");
    assert!(
        plan.contains("built-in") && plan.contains("{{title}}"),
        "{plan}"
    );
    let (_, builtin, _) = run(&["prompt", "show", "plan.md"]);

    let bad = dir.path().join("bad.md");
    std::fs::write(&bad, "Plan it.\nThen {{nonsense}}.\n").unwrap();
    let (ok, _, err) = run(&["prompt", "set", "plan.md", "--from", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("line 2") && err.contains("{{nonsense}}"),
        "{err}"
    );

    let good = dir.path().join("good.md");
    std::fs::write(&good, "Plan {{title}} with care.\n").unwrap();
    let (ok, out, err) = run(&["prompt", "set", "plan.md", "--from", good.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out, "prompt plan.md: overridden\n");
    let (_, listing, _) = run(&["prompt", "list"]);
    assert!(row(&listing, "plan.md").contains("overridden"), "{listing}");
    let (_, shown, _) = run(&["prompt", "show", "plan.md"]);
    assert_eq!(shown, "Plan {{title}} with care.\n");
    let (_, json, _) = run(&["--json", "prompt", "show", "plan.md"]);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["overridden"], true, "{json}");

    let (ok, out, err) = run(&["prompt", "reset", "plan.md"]);
    assert!(ok, "{err}");
    assert_eq!(out, "prompt plan.md: back to its built-in text\n");
    assert_eq!(run(&["prompt", "show", "plan.md"]).1, builtin);

    for name in ["nope.md", "../tokens"] {
        let (ok, _, err) = run(&["prompt", "show", name]);
        assert!(!ok && err.contains("there is no prompt"), "{name}: {err}");
    }
    let (ok, _, err) = run(&["prompt", "reset", "../tokens"]);
    assert!(!ok && err.contains("there is no prompt"), "{err}");

    // A member may neither read nor change them.
    let member = user_with_token(&world, "mia").await;
    let url = world.server.url().to_string();
    let as_member = |args: &[&str]| {
        let mut all = vec!["--url", url.as_str(), "--token", member.token()];
        all.extend_from_slice(args);
        atelier(&all, &[])
    };
    let refused = as_member(&["prompt", "list"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("administrator"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let refused = as_member(&["token", "list", "--all"]);
    assert!(!refused.status.success());

    // Every account's tokens, with their owners.
    let (ok, out, err) = run(&["token", "list", "--all"]);
    assert!(ok, "{err}");
    let laptop = out
        .lines()
        .find(|l| l.contains("laptop"))
        .unwrap_or_else(|| panic!("mia's token: {out}"));
    assert!(
        laptop.contains("mia") && laptop.ends_with("live"),
        "{laptop}"
    );
}
