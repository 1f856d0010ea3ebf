//! The evidence bundle end to end: a task with scripted agents on the local forge — an
//! implementer that runs the project's test script (failing, then passing), a reviewer that says
//! needs-work once and then ready, a QA file attached — reaches a pull request, and the bundle
//! kept as `evidence.md` in the task's attachments carries the plan summary, the to-do list as
//! checked, both verdicts with the commits they were given on, the test command with its exit
//! code, the attachment's link and the runs and usage per stage.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::*;

/// The project's test script: passes once farewell.txt says goodbye.
const TEST_SCRIPT: &str = "#!/bin/sh\ngrep -q goodbye farewell.txt\n";

fn scenarios() -> Vec<(&'static str, Value)> {
    vec![
        ("plan", plan_scenario()),
        (
            "implement",
            json!({"runs": [
                [
                    {"do": "write", "path": "test.sh", "content": TEST_SCRIPT},
                    {"do": "write", "path": "greeting.txt", "content": "hello\n"},
                    {"do": "check", "item": "Add greeting.txt"},
                    {"do": "write", "path": "farewell.txt", "content": "bye?\n"},
                    {"do": "check", "item": "Add farewell.txt"},
                    {"do": "run", "command": "sh test.sh"},
                    {"do": "run", "command": "git add -A && git commit -qm 'Add greeting and farewell'"}
                ],
                [
                    {"do": "write", "path": "farewell.txt", "content": "goodbye\n"},
                    {"do": "check", "item": "Add farewell.txt"},
                    {"do": "run", "command": "sh test.sh"},
                    {"do": "run", "command": "git add -A && git commit -qm 'Fix farewell'"}
                ]
            ]}),
        ),
        ("review", review_scenario()),
        ("pr", pr_scenario()),
    ]
}

#[tokio::test]
async fn the_evidence_bundle_is_kept_in_the_attachments_when_the_pull_request_opens() {
    let world = World::start(&scenarios(), &[]).await;
    let id = world.new_task("Add a greeting", true).await;
    world.wait_state(id, "plan_gate").await;
    // QA evidence a person (or an agent) attached to the task.
    let (status, body) = world
        .server
        .client()
        .request(
            Method::PUT,
            &format!("/api/tasks/{id}/attachments/qa-log.txt"),
            Some(&json!({"content_base64": "b2sK"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = world.action(id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let pr = world.wait_until_pr(id).await;

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!(
        "{}/api/tasks/{id}/attachments/evidence.md",
        world.server.url()
    );
    let response = http
        .get(&url)
        .bearer_auth(world.server.token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let evidence = response.text().await.unwrap();

    // The commits each verdict was given on, as recorded: the first round's, then the fix,
    // which is what the pull request publishes.
    let reviewed: Vec<String> = world
        .db()
        .prepare(
            "SELECT reviewed_commit FROM runs WHERE task_id = ?1 AND stage = 'review' ORDER BY id",
        )
        .unwrap()
        .query_map([id], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(reviewed.len(), 2, "{reviewed:?}");
    assert_ne!(reviewed[0], reviewed[1]);
    assert_eq!(pr["head_sha"], reviewed[1].as_str());

    let expected = [
        format!("Atelier task #{id}: Add a greeting\n"),
        "## Plan summary\n\nAdd greeting and farewell files.\n".to_string(),
        "## To-do list\n\n2 of 2 done.\n\n- [x] Add greeting.txt\n- [x] Add farewell.txt\n"
            .to_string(),
        format!(
            "## Review verdicts\n\n\
             - review round 1 by `scripted`: **needs-work** on commit `{}` — reason: `farewell is wrong`\n\
             - review round 2 by `scripted`: **ready** on commit `{}`\n",
            &reviewed[0][..7],
            &reviewed[1][..7]
        ),
        "## Test commands\n\n- ✓ `sh test.sh` — exit 0 (implement)\n".to_string(),
        format!(
            "## QA evidence\n\n- [`qa-log.txt`]({}/api/tasks/{id}/attachments/qa-log.txt)\n",
            world.server.url().trim_end_matches('/')
        ),
        "| Stage | Runs | Tokens in | Tokens out | Cost | Wall time |\n".to_string(),
    ];
    for part in &expected {
        assert!(
            evidence.contains(part.as_str()),
            "evidence.md lacks {part:?}:\n{evidence}"
        );
    }
    for (stage, runs) in [("plan", 1), ("implement", 2), ("review", 2), ("pr", 1)] {
        let prefix = format!("\n| {stage} | {runs} | ");
        assert!(
            evidence.contains(&prefix),
            "evidence.md lacks the {stage} usage row {prefix:?}:\n{evidence}"
        );
    }
    assert!(evidence.contains("\n| **total** | 6 | "), "{evidence}");
    // Commands that are not checks are left out.
    for other in ["git add", "cat farewell.txt", "git status"] {
        assert!(!evidence.contains(other), "{other} is listed:\n{evidence}");
    }
}
