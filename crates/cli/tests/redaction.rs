//! What a project member who is not an administrator sees of the server: a task blocked with a
//! reason naming a server path (a missing `bwrap` at `/nonexistent/bwrap`) shows it as `<path>`
//! to the member — in the task's view and list, its runs, its transcript's end, the live stream,
//! the task page and the inbox of the web UI — and whole to an administrator; the member sees no
//! worktree, doc or project path either. The member's live stream, open before the run fails,
//! carries the failure without the path, and `/api/status` shows the member the sandbox problem
//! and the checks without the server's paths.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use serde_json::{Value, json};
use support::people::{add_member, create_user, sign_in, token_of, update_user};
use support::sse::SseText;
use support::*;

/// The server path in the block reason.
const BWRAP: &str = "/nonexistent/bwrap";

/// How a request is authenticated.
enum As<'a> {
    Token(&'a str),
    Session(&'a str),
}

/// `GET path` as text, `200` required.
async fn text_of(world: &World, path: &str, who: &As<'_>) -> String {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let request = http.get(format!("{}{path}", world.server.url()));
    let request = match who {
        As::Token(token) => request.bearer_auth(token),
        As::Session(cookie) => request.header("cookie", *cookie),
    };
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.text().await.unwrap()
}

/// The task's live stream up to its `caught-up` message.
async fn stream_of(world: &World, id: i64, token: &str) -> String {
    let mut sse = SseText::open(world, &format!("/api/tasks/{id}/stream"), token).await;
    assert!(
        sse.read_until(0, |text| text.contains("event: caught-up"))
            .await
    );
    sse.text
}

#[tokio::test]
async fn a_members_views_of_a_blocked_task_hide_server_paths_the_admins_show_them() {
    let plan = json!({"runs": [[{"do": "signal", "args": ["plan-ready"]}]]});
    let world = World::start_with_env(&[("plan", plan)], &[], &[("ATELIER_BWRAP", BWRAP)]).await;
    create_user(&world, "mo", true).await;
    add_member(&world, "app", "mo", "member").await;
    let mo = token_of(&world, "mo", "views").await;
    create_user(&world, "ada", true).await;
    update_user(&world, "ada", json!({"admin": true})).await;
    // The member follows every task live from before the run fails.
    let mut live = SseText::open(&world, "/api/stream", &mo).await;
    assert!(
        live.read_until(0, |text| text.contains("event: ready"))
            .await
    );
    let id = world.new_task("No bwrap", true).await;
    let failed = |text: &str| text.contains(r#""status":"failed""#) && text.contains("run_failed");
    assert!(live.read_until(0, failed).await, "{}", live.text);
    let admin_detail = world.wait_state(id, "blocked").await;
    let server_paths = [
        BWRAP.to_string(),
        world.dir.path().display().to_string(),
        world.homes().display().to_string(),
    ];
    let admin = As::Token(world.server.token());
    let member = As::Token(&mo);

    // The administrator sees the detail whole.
    let admin_reason = admin_detail["task"]["state"]["reason"]["detail"]
        .as_str()
        .unwrap();
    assert!(
        admin_reason.contains(&format!("`{BWRAP}`")),
        "{admin_reason}"
    );
    assert!(
        admin_detail["runs"][0]["reason"]
            .as_str()
            .unwrap()
            .contains(BWRAP)
    );
    assert!(
        admin_detail["task"]["worktree"]
            .as_str()
            .unwrap()
            .starts_with('/')
    );
    assert!(
        admin_detail["task"]["doc_path"]
            .as_str()
            .unwrap()
            .starts_with('/')
    );
    assert!(
        text_of(&world, &format!("/api/tasks/{id}/logs"), &admin)
            .await
            .contains(BWRAP)
    );
    assert!(
        stream_of(&world, id, world.server.token())
            .await
            .contains(BWRAP)
    );

    // The member sees why, without the server's paths.
    let detail: Value =
        serde_json::from_str(&text_of(&world, &format!("/api/tasks/{id}"), &member).await).unwrap();
    let reason = &detail["task"]["state"]["reason"];
    assert_eq!(reason["code"], "run_failed");
    let text = reason["detail"].as_str().unwrap();
    assert!(text.contains("`<path>`"), "{text}");
    assert!(text.contains("apt-get install bubblewrap"), "{text}");
    assert!(
        detail["runs"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("apt-get install")
    );
    assert_eq!(detail["task"]["worktree"], "<path>");
    assert_eq!(detail["task"]["doc_path"], "<path>");
    let projects = text_of(&world, "/api/projects", &member).await;
    let projects: Value = serde_json::from_str(&projects).unwrap();
    assert_eq!(projects[0]["path"], "<path>");
    let tasks: Value = serde_json::from_str(&text_of(&world, "/api/tasks", &member).await).unwrap();
    assert_eq!(tasks[0]["state"], detail["task"]["state"]);
    assert_eq!(tasks[0]["worktree"], "<path>");

    // Nowhere in the member's answers, streams or pages.
    assert!(live.text.contains("<path>"), "{}", live.text);

    // The server's status: the member learns that the sandbox is not ready, not where it is.
    let status = text_of(&world, "/api/status", &member).await;
    let status: Value = serde_json::from_str(&status).unwrap();
    let problem = status["sandbox"]["problem"].as_str().unwrap();
    assert!(problem.contains("<path>"), "{problem}");
    let admin_status = text_of(&world, "/api/status", &admin).await;
    assert!(admin_status.contains(BWRAP), "{admin_status}");
    let data_dir = world.dir.path().display().to_string();
    assert!(admin_status.contains(&data_dir), "{admin_status}");

    let (cookie, _) = sign_in(&world, "mo").await;
    let (admin_cookie, _) = sign_in(&world, "ada").await;
    let task_page = format!("/tasks/{id}");
    let seen = [
        ("detail", serde_json::to_string(&detail).unwrap()),
        ("list", serde_json::to_string(&tasks).unwrap()),
        (
            "logs",
            text_of(&world, &format!("/api/tasks/{id}/logs"), &member).await,
        ),
        ("stream", stream_of(&world, id, &mo).await),
        ("live stream", live.text.clone()),
        ("status", serde_json::to_string(&status).unwrap()),
        (
            "task page",
            text_of(&world, &task_page, &As::Session(&cookie)).await,
        ),
        ("inbox", text_of(&world, "/", &As::Session(&cookie)).await),
    ];
    for (what, text) in &seen {
        for path in &server_paths {
            assert!(!text.contains(path.as_str()), "{what} shows {path}: {text}");
        }
    }
    let (_, logs) = &seen[2];
    assert!(logs.contains("run_failed"), "{logs}");
    let (_, stream) = &seen[3];
    assert!(stream.contains("run_failed"), "{stream}");
    let (_, page) = &seen[6];
    assert!(page.contains("apt-get install bubblewrap"), "{page}");
    // An administrator's page shows it whole.
    let admin_page = text_of(&world, &task_page, &As::Session(&admin_cookie)).await;
    assert!(admin_page.contains(BWRAP), "{admin_page}");
}
