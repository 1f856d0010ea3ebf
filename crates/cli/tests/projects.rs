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
