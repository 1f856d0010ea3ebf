//! Per-user agent credentials and models, end to end: the real `atelier serve`, the real Claude
//! Code CLI and the model simulator. Two members of one project set different keys (one through
//! `atelier me credentials set`, one through the API) and different models; their tasks run side
//! by side, each agent with its owner's key in its environment and its owner's model at the
//! simulator; the keys appear in no API answer, log, transcript or task doc. A member without
//! credentials gets a run that fails before it starts, saying where to set them. Without the CLI
//! the test fails when `CI` is set, and is skipped with a message otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use simulator::Simulator;
use std::time::Duration;
use support::*;
use testkit::ApiClient;

const ANN_KEY: &str = "sk-ant-canary-ann-4f1c9e";
const BOB_KEY: &str = "sk-ant-canary-bob-7d20ab";

/// Creates `login` as a member of `project`, signs in and makes an API token of theirs.
async fn member(world: &World, project: &str, login: &str) -> (ApiClient, String) {
    people::create_user(world, login, true).await;
    people::add_member(world, project, login, "member").await;
    let token = people::token_of(world, login, "laptop").await;
    (world.server.client().with_token(&token), token)
}

/// Runs `atelier` with the given token against the world's server.
fn atelier(world: &World, token: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(["--url", world.server.url(), "--token", token])
        .args(args)
        .env_remove("ATELIER_URL")
        .env_remove("ATELIER_TOKEN")
        .output()
        .unwrap()
}

async fn new_task(client: &ApiClient, project: &str, title: &str) -> i64 {
    let (status, body) = client
        .post(
            "/api/tasks",
            &json!({"project": project, "title": title, "body": "Say hello.\n", "technical": true}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn each_owner_s_runs_use_their_own_credentials_and_models_and_never_show_them() {
    let (flag, cli) = agent_cli("claude-code");
    // The plan step records the hash of the key its agent was given (never the key itself).
    let plan = json!({"runs": [[
        {"do": "run", "command": "printf %s \"$ANTHROPIC_API_KEY\" | sha256sum | cut -c1-64 > key.sha"},
        {"do": "signal", "args": ["plan-ready"]},
        {"do": "message", "text": "Planned."}
    ]]});
    let world = World::start_with_env(&[], &[flag, cli.to_str().unwrap()], &[]).await;
    let sim_scenarios = world.dir.path().join("sim-scenarios");
    write_scenarios(&sim_scenarios, &[("plan", plan)]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::start(listener, sim_scenarios).await;

    // The project's role points at the simulator but carries no key: people bring their own.
    let mut role = simulated_role("claude-code", &sim.url());
    role["env"]
        .as_object_mut()
        .unwrap()
        .remove("ANTHROPIC_API_KEY");
    let roles: serde_json::Map<String, Value> = ["plan", "implement", "review", "pr"]
        .iter()
        .map(|s| (s.to_string(), role.clone()))
        .collect();
    let path = world.add_repo("creds");
    let (status, body) = world
        .server
        .post(
            "/api/projects",
            &json!({"path": path, "name": "creds", "settings": {"roles": roles}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");

    let (ann, ann_token) = member(&world, "creds", "ann").await;
    let (bob, _) = member(&world, "creds", "bob").await;
    let (carol, _) = member(&world, "creds", "carol").await;

    // Ann uses the CLI: the key from a file, her model for the plan stage.
    let key_file = world.dir.path().join("ann-key");
    std::fs::write(&key_file, format!("{ANN_KEY}\n")).unwrap();
    let out = atelier(
        &world,
        &ann_token,
        &[
            "me",
            "credentials",
            "set",
            "claude-code",
            "--env",
            &format!("ANTHROPIC_API_KEY=@{}", key_file.display()),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = atelier(
        &world,
        &ann_token,
        &[
            "me",
            "credentials",
            "set",
            "claude-code",
            "--env",
            &format!("ANTHROPIC_API_KEY={ANN_KEY}"),
        ],
    );
    assert!(
        !out.status.success(),
        "a value on the command line is refused"
    );
    let out = atelier(
        &world,
        &ann_token,
        &["me", "models", "set", "plan", "claude-opus-4-5"],
    );
    assert!(out.status.success(), "{out:?}");
    let out = atelier(&world, &ann_token, &["me", "credentials", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("claude-code") && listed.contains("ANTHROPIC_API_KEY"),
        "{listed}"
    );
    // Bob uses the API.
    let (status, body) = bob
        .request(
            Method::PUT,
            "/api/me/credentials/claude-code",
            Some(&json!({"env": {"ANTHROPIC_API_KEY": BOB_KEY}})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["names"], json!(["ANTHROPIC_API_KEY"]));
    let (status, body) = bob
        .request(
            Method::PUT,
            "/api/me/models",
            Some(&json!({"models": {"plan": {"model": "claude-haiku-4-5"}}})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = bob
        .request(
            Method::PUT,
            "/api/me/credentials/claude-code",
            Some(&json!({"env": {"PATH": "/tmp"}})),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "only the harness's variables: {body}");

    let ann_task = new_task(&ann, "creds", "Ann's greeting").await;
    let bob_task = new_task(&bob, "creds", "Bob's greeting").await;
    let carol_task = new_task(&carol, "creds", "Carol's greeting").await;
    let deadline = Duration::from_secs(120);
    let ann_detail = world.wait_state_for(ann_task, "plan_gate", deadline).await;
    let bob_detail = world.wait_state_for(bob_task, "plan_gate", deadline).await;

    // Each agent had its owner's key.
    for (detail, key) in [(&ann_detail, ANN_KEY), (&bob_detail, BOB_KEY)] {
        let seen = std::fs::read_to_string(world.worktree(detail).join("key.sha")).unwrap();
        assert_eq!(seen.trim(), sha256_hex(key), "{detail:#}");
    }
    // Each owner's model reached the simulator.
    let requests = sim.requests();
    for (title, model) in [
        ("Ann's greeting", "claude-opus-4-5"),
        ("Bob's greeting", "claude-haiku-4-5"),
    ] {
        let models: Vec<&str> = requests
            .iter()
            .filter(|r| r.body.to_string().contains(title))
            .filter_map(|r| r.model())
            .collect();
        assert!(!models.is_empty(), "no request for {title}");
        assert!(models.iter().all(|m| *m == model), "{title}: {models:?}");
    }
    // …and the run records the harness and the model it was given.
    for (detail, model) in [
        (&ann_detail, "claude-opus-4-5"),
        (&bob_detail, "claude-haiku-4-5"),
    ] {
        let run = &detail["runs"][0];
        assert_eq!(
            (run["harness"].as_str(), run["model"].as_str()),
            (Some("claude-code"), Some(model)),
            "{run}"
        );
    }

    // Carol has none: her run fails before it starts, saying which and where.
    let detail = world.wait_state(carol_task, "blocked").await;
    let reason = detail["task"]["state"]["reason"]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for part in [
        "carol",
        "claude-code",
        "ANTHROPIC_API_KEY",
        "atelier me credentials set claude-code",
        "PUT /api/me/credentials/claude-code",
    ] {
        assert!(reason.contains(part), "{part} missing from: {reason}");
    }
    // The keys are nowhere to be read back.
    let admin = world.server.client();
    let mut seen = Vec::new();
    for (client, path) in [
        (&ann, format!("/api/tasks/{ann_task}")),
        (&bob, format!("/api/tasks/{bob_task}")),
        (admin, format!("/api/tasks/{ann_task}")),
        (admin, format!("/api/tasks/{bob_task}")),
        (&ann, "/api/me/credentials".to_string()),
        (&bob, "/api/me/credentials".to_string()),
        (&ann, "/api/projects".to_string()),
        (admin, "/api/projects".to_string()),
        (admin, "/api/audit".to_string()),
        (&ann, "/api/tasks".to_string()),
    ] {
        seen.push(client.get(&path).await.unwrap().to_string());
    }
    for id in [ann_task, bob_task, carol_task] {
        seen.push(json!(world.logs(id).await).to_string());
        let detail = world.detail(id).await;
        let doc = detail["task"]["doc_path"].as_str().unwrap();
        seen.push(std::fs::read_to_string(doc).unwrap_or_default());
    }
    seen.push(world.server.logs());
    seen.push(
        String::from_utf8_lossy(
            &atelier(&world, &ann_token, &["me", "credentials", "list"]).stdout,
        )
        .into_owned(),
    );
    for text in &seen {
        for key in [ANN_KEY, BOB_KEY] {
            assert!(!text.contains(key), "the key {key} was shown: {text}");
        }
    }
    // Nor in the database file, which holds them sealed.
    let db = std::fs::read(world.data.join("atelier.db")).unwrap();
    for key in [ANN_KEY, BOB_KEY] {
        assert!(
            !db.windows(key.len()).any(|w| w == key.as_bytes()),
            "{key} stored in the clear"
        );
    }
}
