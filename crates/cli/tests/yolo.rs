//! The `yolo` pipeline end to end through the real `atelier serve` with scripted agents: a task
//! created with `pipeline: yolo` starts at implement (no plan, no gate), its implementer's
//! `pr-done` publishes the pull request with no review, and a human's merge ends it; a turn that
//! ends without `pr-done` continues the session with a nudge. Unknown or not-yet-runnable
//! pipeline names are refused at creation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use serde_json::{Value, json};
use support::*;

const REQUEST: &str = "Please add a greeting.\n\n## To-Do List\n\n- [ ] Add greeting.txt\n";

/// The implementer's work: a file, its test, the to-do item checked, a commit.
fn work() -> Vec<Value> {
    vec![
        json!({"do": "write", "path": "greeting.txt", "content": "hello\n"}),
        json!({"do": "run", "command": "test \"$(cat greeting.txt)\" = hello && echo tests pass"}),
        json!({"do": "check", "item": "Add greeting.txt"}),
        json!({"do": "run", "command": "git add -A && git commit -qm 'Add greeting'"}),
    ]
}

/// Any plan, review or pr agent started for a yolo task would leave its run in the summary.
fn scenarios(implement: Value) -> Vec<(&'static str, Value)> {
    vec![
        ("plan", plan_scenario()),
        ("implement", implement),
        ("review", review_scenario()),
        ("pr", pr_scenario()),
    ]
}

#[tokio::test]
async fn a_yolo_task_publishes_what_its_implementer_signals_with_no_plan_or_review() {
    let mut steps = vec![json!({"do": "echo_input"})];
    steps.extend(work());
    steps.push(json!({"do": "signal", "args": ["pr-done"]}));
    let world = World::start(&scenarios(json!({"runs": [steps]})), &[]).await;

    let (status, body) = world
        .create_in_pipeline("Add a greeting", REQUEST, "yolo")
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["pipeline"], "yolo");
    assert_eq!(
        body["state"],
        json!({"state": "running", "stage": "implement"}),
        "a yolo task starts at implement"
    );
    let id = body["id"].as_i64().unwrap();

    let detail = world.wait_state(id, "awaiting_merge").await;
    assert_eq!(
        run_summary(&detail),
        pairs(&[("implement", "completed")]),
        "no plan, review or pr run"
    );
    assert_eq!(
        detail["runs"][0]["signal"],
        json!({"kind": "pr-done", "no_changes": false})
    );
    let doc = detail["doc"].as_str().unwrap();
    assert!(doc.contains("- [x] Add greeting.txt"), "{doc}");
    // The implementer was told it publishes, with no reviewer after it.
    let logs = world.logs(id).await;
    assert!(
        logs.iter().any(|e| e["event"]["type"] == "message"
            && e["event"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("This task runs the `yolo` pipeline"))),
        "the prompt names the yolo pipeline: {logs:#?}"
    );
    assert!(
        logs.iter().any(|e| e["event"]["type"] == "command_output"
            && e["event"]["output"]
                .as_str()
                .is_some_and(|t| t.contains("tests pass"))),
        "the implementer's test command ran: {logs:#?}"
    );

    // The branch is on the remote, and a human's merge ends the task.
    let branch = detail["task"]["branch"].as_str().unwrap().to_string();
    let pr = world.wait_until_pr(id).await;
    let remote_sha = world.repo.remote_branch_sha(&branch).unwrap();
    assert_eq!(pr["head_sha"].as_str().unwrap(), remote_sha);
    assert_eq!(world.repo.remote_log(&branch)[0], "Add greeting");
    let (status, body) = world.action(id, "merge", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let detail = world.wait_state(id, "done").await;
    assert_eq!(
        detail["task"]["state"],
        json!({"state": "done", "reason": "merged"})
    );
    assert_eq!(world.repo.remote_branch_sha("main").unwrap(), remote_sha);
    assert_eq!(run_summary(&detail), pairs(&[("implement", "completed")]));
}

#[tokio::test]
async fn a_yolo_implementer_that_ends_without_pr_done_is_nudged_to_signal() {
    let mut second = vec![json!({"do": "echo_input"})];
    second.push(json!({"do": "signal", "args": ["pr-done"]}));
    let implement = json!({"runs": [{"turns": [work(), second]}]});
    let world = World::start(&scenarios(implement), &[]).await;
    let (status, body) = world
        .create_in_pipeline("Add a greeting", REQUEST, "yolo")
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();

    let detail = world.wait_state(id, "awaiting_merge").await;
    assert_eq!(
        run_summary(&detail),
        pairs(&[("implement", "completed"), ("implement", "completed")]),
        "the nudge is a second implement run, and pr-done publishes with no review"
    );
    let runs = detail["runs"].as_array().unwrap();
    assert_eq!(
        runs[1]["session"], runs[0]["session"],
        "the nudge continues the session"
    );
    let logs = world.logs(id).await;
    assert!(
        logs.iter().any(|e| e["event"]["type"] == "message"
            && e["event"]["text"].as_str().is_some_and(
                |t| t.contains("your last turn ended without `atelier signal pr-done`")
            )),
        "the implementer read the nudge: {logs:#?}"
    );
    world.wait_until_pr(id).await;
}

#[tokio::test]
async fn an_unknown_pipeline_is_refused_at_creation() {
    let world = World::start(&full_pipeline(), &[]).await;

    let (status, body) = world.create_in_pipeline("Fast", REQUEST, "fast").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"],
        "cannot create the task: unknown pipeline `fast`: expected one of `standard`, `full`, \
         `yolo` (a project defines its own in its settings' `pipelines` or in \
         .atelier/pipelines.toml on its default branch)"
    );
    // Nothing was created.
    let tasks = world.server.get("/api/tasks").await.unwrap();
    assert_eq!(tasks, json!([]), "{tasks}");

    // A project's default pipeline is checked like a task's.
    let (status, body) = world
        .server
        .post(
            "/api/projects",
            &json!({"path": world.repo.path, "name": "other", "settings": {"default_pipeline": "fast"}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("default_pipeline: unknown pipeline `fast`"),
        "{body}"
    );

    // Without a name a task runs the project's default: standard.
    let id = world.new_task("Standard", true).await;
    let detail = world.detail(id).await;
    assert_eq!(detail["task"]["pipeline"], "standard");
}
