//! A project's `sandbox` settings end to end: a writable path (a package cache) an agent writes
//! to, a read-only one (a toolchain) it reads and cannot change, and `sandbox.env` in the agent's
//! environment; paths inside (or around) the data directory or the agents' homes and variables
//! Atelier sets itself are refused with a 400 that says why, both when the project is added and
//! when its settings change — and an owner who is not an administrator is not told where the
//! server keeps its data.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;
use support::*;

/// The contents of the read-only toolchain's file.
const TOOLCHAIN_TEXT: &str = "toolchain v1";

/// Project settings: the world's scripted roles and `sandbox`.
fn settings_with(world: &World, sandbox: Value) -> Value {
    json!({"roles": world.roles(&world.scenarios), "sandbox": sandbox})
}

/// `POST /api/projects` of `path` as the administrator: status and body.
async fn add(world: &World, path: &Path, name: &str, sandbox: Value) -> (u16, Value) {
    world
        .server
        .post(
            "/api/projects",
            &json!({"path": path, "name": name, "settings": settings_with(world, sandbox)}),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn project_sandbox_paths_and_env_reach_the_agent_as_set() {
    let scratch = tempfile::tempdir().unwrap();
    let cache = scratch.path().join("cache");
    let toolchain = scratch.path().join("toolchain");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::create_dir_all(&toolchain).unwrap();
    std::fs::write(toolchain.join("version.txt"), TOOLCHAIN_TEXT).unwrap();
    let (c, t) = (cache.display(), toolchain.display());
    // Each result lands in the worktree, read from outside once the plan is ready.
    let plan = json!({"runs": [[
        {"do": "run", "command": format!("echo from-agent > {c}/entry.txt; echo $? > wrote-cache.rc")},
        {"do": "run", "command": format!("cat {t}/version.txt > read-toolchain.txt")},
        {"do": "run", "command": format!(
            "echo changed > {t}/version.txt 2>/dev/null; echo $? > change-toolchain.rc; \
             echo new > {t}/new.txt 2>/dev/null; echo $? > add-toolchain.rc")},
        {"do": "run", "command": "printf '%s' \"$PROJECT_CACHE_KEY\" > env.txt"},
        {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Nothing\n"},
        {"do": "signal", "args": ["plan-ready"]}
    ]]});
    let mut world = World::start_bare(&[("plan", plan)], &[], &[]).await;
    let sandbox = json!({
        "read_only": [toolchain],
        "writable": [cache],
        "env": {"PROJECT_CACHE_KEY": "key with spaces=1"}
    });
    let path = world.repo.path.clone();
    let (status, body) = add(&world, &path, "app", sandbox).await;
    assert_eq!(status, 201, "{body}");
    world.project = "app".into();
    let id = world.new_task("Use the cache", true).await;
    let detail = world.wait_state(id, "plan_gate").await;
    let worktree = world.worktree(&detail);
    let read = |name: &str| std::fs::read_to_string(worktree.join(name)).unwrap();

    assert_eq!(read("wrote-cache.rc").trim(), "0");
    assert_eq!(
        std::fs::read_to_string(cache.join("entry.txt")).unwrap(),
        "from-agent\n",
        "the writable path is the real folder, seen from outside"
    );
    assert_eq!(read("read-toolchain.txt"), TOOLCHAIN_TEXT);
    assert_ne!(read("change-toolchain.rc").trim(), "0");
    assert_ne!(read("add-toolchain.rc").trim(), "0");
    assert_eq!(
        std::fs::read_to_string(toolchain.join("version.txt")).unwrap(),
        TOOLCHAIN_TEXT
    );
    assert!(!toolchain.join("new.txt").exists());
    assert_eq!(read("env.txt"), "key with spaces=1");
}

#[tokio::test]
async fn sandbox_settings_that_would_show_the_data_directory_or_replace_atelier_variables_are_refused()
 {
    let world = World::start(&[("plan", plan_scenario())], &[]).await;
    let data = world.data.clone();
    let homes = world.homes();
    let other = world.add_repo("other");
    let data_text = data.display().to_string();
    let homes_text = homes.display().to_string();

    // Paths: inside, equal to or around the data directory or the homes, relative, the root.
    let refused_paths = [
        ("writable", data.join("tasks"), "the data directory"),
        ("read_only", data.clone(), "the data directory"),
        ("writable", homes.join("some-task"), "the agents' homes"),
        (
            "read_only",
            data.parent().unwrap().to_path_buf(),
            "the data directory",
        ),
        ("read_only", "relative/path".into(), "absolute path"),
        ("writable", "/".into(), "absolute path"),
    ];
    for (list, path, why) in &refused_paths {
        let (status, body) = add(&world, &other, "other", json!({*list: [path]})).await;
        assert_refused(status, &body, &[&format!("sandbox.{list}"), why]);
    }
    // Variables Atelier sets itself, and names that are no variable names.
    for name in [
        "PATH",
        "HOME",
        "ATELIER_RUN_TOKEN",
        "ATELIER_REPO",
        "ATELIER_ANYTHING",
        "1X",
        "A-B",
    ] {
        let (status, body) = add(&world, &other, "other", json!({"env": {name: "x"}})).await;
        assert_refused(status, &body, &[&format!("sandbox.env: `{name}`")]);
    }
    // Nothing was added by the refused requests.
    let projects = world.server.get("/api/projects").await.unwrap();
    assert_eq!(projects.as_array().unwrap().len(), 1, "{projects}");

    // The administrator sees which server path is in the way.
    let (status, body) = add(
        &world,
        &other,
        "other",
        json!({"writable": [data.join("x")]}),
    )
    .await;
    assert_refused(status, &body, &[&data_text]);

    // Settings updates are checked the same way, for the administrator and for an owner who is
    // not one — who learns why, but not where the server keeps its data or homes.
    people::create_user(&world, "olga", true).await;
    people::add_member(&world, "app", "olga", "owner").await;
    let olga = world
        .server
        .client()
        .with_token(&people::token_of(&world, "olga", "settings").await);
    let admin = world.server.client();
    for (list, path, why) in [
        ("writable", data.join("tasks"), "the data directory"),
        ("read_only", homes.join("x"), "the agents' homes"),
    ] {
        let settings = settings_with(&world, json!({list: [path]}));
        for (who, client) in [("admin", admin), ("owner", &olga)] {
            let (status, body) = client
                .request(Method::PUT, "/api/projects/app/settings", Some(&settings))
                .await
                .unwrap();
            let error = assert_refused(status, &body, &[&format!("sandbox.{list}"), why]);
            let shows_server_paths = error.contains(&data_text) || error.contains(&homes_text);
            assert_eq!(shows_server_paths, who == "admin", "{who}: {error}");
        }
    }
    let (status, body) = olga
        .request(
            Method::PUT,
            "/api/projects/app/settings",
            Some(&settings_with(
                &world,
                json!({"env": {"HOME": "/elsewhere"}}),
            )),
        )
        .await
        .unwrap();
    assert_refused(status, &body, &["sandbox.env: `HOME`"]);
    // The settings are unchanged.
    let projects = admin.get("/api/projects").await.unwrap();
    assert_eq!(
        projects[0]["settings"]["sandbox"],
        json!({"read_only": [gates()]})
    );
}
