//! The README's five-minute tour with the real `atelier` CLI against a real server: every command
//! a user types, found through the server's `server.json` in the data dir.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use support::*;

fn atelier(data: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ATELIER_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("ATELIER_DATA_DIR", data)
        .args(args)
        .output()
        .unwrap()
}

fn ok(data: &Path, args: &[&str]) -> String {
    let out = atelier(data, args);
    assert!(
        out.status.success(),
        "atelier {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(data: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(data, &all)).unwrap()
}

#[tokio::test]
async fn the_five_minute_tour_works_from_the_command_line() {
    let world = World::start(&full_pipeline(), &["--merge-poll-ms", "200"]).await;
    let data = world.data.clone();
    let repo = world.add_repo("tour");
    let scenarios = world.scenarios.to_str().unwrap().to_string();

    let project = json(
        &data,
        &[
            "project",
            "add",
            repo.to_str().unwrap(),
            "--name",
            "web",
            "--scripted",
            &scenarios,
        ],
    );
    assert_eq!(project["name"], "web");
    let listed = json(&data, &["project", "list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "web")
    );

    let request = world.dir.path().join("request.md");
    std::fs::write(&request, "Please add a greeting.\n").unwrap();
    let task = json(
        &data,
        &[
            "task",
            "new",
            "--project",
            "web",
            "--title",
            "Fix login",
            "--body-file",
            request.to_str().unwrap(),
        ],
    );
    let id = task["id"].as_i64().unwrap().to_string();

    // Follow until the agents stop at the plan gate: backlog first, then live, then the end.
    let logs = ok(&data, &["task", "logs", &id, "--follow"]);
    assert!(logs.contains("plan"), "{logs}");
    assert!(
        logs.to_lowercase().contains("waiting for approval") || logs.contains("plan_gate"),
        "{logs}"
    );
    let shown = ok(&data, &["task", "show", &id]);
    assert!(
        shown.contains("approve"),
        "task show says what to do next: {shown}"
    );

    ok(&data, &["task", "approve", &id]);
    let raw = ok(&data, &["--json", "task", "logs", &id, "--follow"]);
    let last: Value = serde_json::from_str(raw.lines().last().unwrap()).unwrap();
    assert_eq!(last["item"], "end");
    assert_eq!(last["state"]["state"], "awaiting_merge");
    let items: Vec<Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut seqs = std::collections::BTreeMap::<i64, Vec<i64>>::new();
    for item in items.iter().filter(|i| i["item"] == "event") {
        seqs.entry(item["run"].as_i64().unwrap())
            .or_default()
            .push(item["seq"].as_i64().unwrap());
    }
    for (run, seq) in &seqs {
        let want: Vec<i64> = (1..=seq.len() as i64).collect();
        assert_eq!(seq, &want, "run {run}: every event once, in order, no gaps");
    }
    assert_eq!(
        seqs.len(),
        6,
        "six runs: plan, implement, review, implement, review, pr"
    );

    world.wait_until_pr(id.parse().unwrap()).await;
    let merged = json(&data, &["task", "merge", &id]);
    assert_eq!(merged["state"]["state"], "done");
    let tasks = json(&data, &["task", "list", "--project", "web"]);
    assert_eq!(tasks[0]["state"]["reason"], "merged");

    // Delete: refused while an agent runs, then everything goes.
    let hang = world.dir.path().join("hang");
    write_scenarios(
        &hang,
        &[("plan", serde_json::json!({"runs": [[{"do": "hang"}]]}))],
    );
    let repo = world.add_repo("deleting");
    ok(
        &data,
        &[
            "project",
            "add",
            repo.to_str().unwrap(),
            "--name",
            "deleting",
            "--scripted",
            hang.to_str().unwrap(),
        ],
    );
    let task = json(
        &data,
        &[
            "task",
            "new",
            "--project",
            "deleting",
            "--title",
            "Doomed",
            "--body-file",
            request.to_str().unwrap(),
        ],
    );
    let doomed = task["id"].as_i64().unwrap();
    world.wait_run(doomed, "plan", "running").await;
    let refused = atelier(&data, &["task", "delete", &doomed.to_string()]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("stop it"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    ok(&data, &["task", "stop", &doomed.to_string()]);
    world.wait_run(doomed, "plan", "stopped").await;
    let worktree = std::path::PathBuf::from(task["worktree"].as_str().unwrap());
    let doc = std::path::PathBuf::from(task["doc_path"].as_str().unwrap());
    assert!(worktree.exists() && doc.exists());
    ok(&data, &["task", "delete", &doomed.to_string()]);
    assert!(!worktree.exists() && !doc.exists());
    assert!(
        !testkit::git(&repo, &["branch", "--list"])
            .unwrap()
            .contains("atelier/")
    );
    let gone = atelier(&data, &["task", "show", &doomed.to_string()]);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("no task"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
}
