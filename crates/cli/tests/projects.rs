//! Project settings after `project add`: replaced through the API (`PUT
//! /api/projects/{project}/settings`, `atelier project set`), validated as when the project was
//! added, with secrets write-only — a value shown redacted keeps the stored one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::*;

async fn put_settings(world: &World, project: &str, settings: &Value) -> (u16, Value) {
    world
        .server
        .client()
        .request(
            Method::PUT,
            &format!("/api/projects/{project}/settings"),
            Some(settings),
        )
        .await
        .unwrap()
}

async fn project_view(world: &World, name: &str) -> Value {
    let projects = world.server.get("/api/projects").await.unwrap();
    projects
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap()
}

fn stored_settings(world: &World, name: &str) -> Value {
    let json: String = world
        .db()
        .query_row(
            "SELECT settings FROM projects WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .unwrap();
    serde_json::from_str(&json).unwrap()
}

#[tokio::test]
async fn settings_are_replaced_validated_and_secrets_stay_write_only() {
    let world = World::start(&full_pipeline(), &[]).await;
    let path = world.add_repo("creds");
    let mut roles = world.roles(&world.scenarios);
    roles["plan"]["env"] = json!({"API_KEY": "sk-canary-123"});
    let (status, body) = world
        .server
        .post(
            "/api/projects",
            &json!({"path": path, "name": "creds", "settings": {"roles": roles, "sandbox": gated_sandbox()}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let sealed_before = stored_settings(&world, "creds")["roles"]["plan"]["env"]["API_KEY"].clone();
    assert!(sealed_before.as_str().unwrap().starts_with("sealed:v1:"));

    // What the API shows, with one change: the redacted credential is kept as stored.
    let mut settings = project_view(&world, "creds").await["settings"].clone();
    assert_eq!(settings["roles"]["plan"]["env"]["API_KEY"], "(redacted)");
    settings["max_review_rounds"] = json!(5);
    let (status, body) = put_settings(&world, "creds", &settings).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settings"]["max_review_rounds"], 5);
    assert_eq!(
        body["settings"]["roles"]["plan"]["env"]["API_KEY"],
        "(redacted)"
    );
    let stored = stored_settings(&world, "creds");
    assert_eq!(stored["max_review_rounds"], 5);
    assert_eq!(stored["roles"]["plan"]["env"]["API_KEY"], sealed_before);

    // A new value replaces it, sealed; it is never shown.
    settings["roles"]["plan"]["env"]["API_KEY"] = json!("sk-canary-456");
    let (status, body) = put_settings(&world, "creds", &settings).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains("sk-canary"), "{body}");
    let sealed_after = stored_settings(&world, "creds")["roles"]["plan"]["env"]["API_KEY"].clone();
    assert_ne!(sealed_after, sealed_before);
    assert!(sealed_after.as_str().unwrap().starts_with("sealed:v1:"));

    // Invalid settings change nothing and say why.
    let mut bad = settings.clone();
    bad["slots"] = json!(0);
    let (status, body) = put_settings(&world, "creds", &bad).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("slots"), "{body}");
    let mut unknown_secret = project_view(&world, "creds").await["settings"].clone();
    unknown_secret["roles"]["review"]["env"] = json!({"OTHER": "(redacted)"});
    let (status, body) = put_settings(&world, "creds", &unknown_secret).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("roles.review.env.OTHER"),
        "{body}"
    );
    assert_eq!(
        stored_settings(&world, "creds")["roles"]["plan"]["env"]["API_KEY"],
        sealed_after
    );
    assert_eq!(stored_settings(&world, "creds")["slots"], 4);

    let (status, body) = put_settings(&world, "nope", &settings).await;
    assert_eq!(status, 404, "{body}");
}

/// Codex in every stage.
fn codex_roles() -> Value {
    let role = json!({"harness": "codex", "model": "gpt-5.5"});
    json!({"plan": role, "implement": role, "review": role, "pr": role})
}

#[tokio::test]
async fn a_role_whose_cli_cannot_start_is_refused_with_what_to_do() {
    let tools = tempfile::tempdir().unwrap();
    let codex = fake_agent_cli(tools.path(), "codex", "codex-cli 0.169.0");
    let mut world = World::start(
        &[],
        &[
            "--claude-bin",
            "/nonexistent/claude",
            "--codex-bin",
            codex.to_str().unwrap(),
        ],
    )
    .await;

    // As a new user adds a project: the default roles (Claude Code), which is not installed.
    let (status, body) = world
        .server
        .post(
            "/api/projects",
            &json!({"path": world.add_repo("fresh"), "name": "fresh"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"],
        "the Claude Code CLI (`/nonexistent/claude`, harness `claude-code`) cannot start: No \
         such file or directory (os error 2). Install it with `npm install -g \
         @anthropic-ai/claude-code@2.1.330` and give its path to the server with `atelier serve \
         --claude-bin PATH` (or ATELIER_CLAUDE_BIN=PATH)",
        "{body}"
    );

    // Roles on a CLI that starts are accepted; replacing them by the missing one is refused.
    let (status, body) = world
        .server
        .post(
            "/api/projects",
            &json!({"path": world.add_repo("coded"), "name": "coded",
                    "settings": {"roles": codex_roles()}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let mut roles = codex_roles();
    roles["review"] = json!({"harness": "claude-code", "model": "sonnet"});
    let (status, body) = put_settings(&world, "coded", &json!({"roles": roles})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("the Claude Code CLI (`/nonexistent/claude`"),
        "{body}"
    );
    let names: Vec<Value> = world
        .server
        .get("/api/projects")
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, [json!("app"), json!("coded")]);

    // A server whose stored project needs a CLI that cannot start refuses to start, saying so.
    world.server.stop().await.unwrap();
    let err = testkit::ServerProcess::start(
        std::path::Path::new(BIN),
        &world.data,
        &["--codex-bin", "/nonexistent/codex"],
        &[],
    )
    .await
    .expect_err("the server refuses to start")
    .to_string();
    assert!(
        err.contains(
            "project `coded`: the Codex CLI (`/nonexistent/codex`, harness `codex`) cannot start: \
             No such file or directory (os error 2). Install it with `npm install -g \
             @openai/codex@0.169.0` and give its path to the server with `atelier serve \
             --codex-bin PATH` (or ATELIER_CODEX_BIN=PATH)"
        ),
        "{err}"
    );
}
