//! Forge-touching user actions end to end through the real `atelier serve` and a real bare
//! remote: concurrent merges and deletes of one task, a crash while merging, deleting a task's
//! pushed branch, a hung remote that must not hold up another task's pull request, and the
//! request body limit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;
use support::*;

const COMMIT: &str = "Add a greeting";

/// Plan → implement (one commit, every to-do item checked) → review ready → pr, with no
/// needs-work round.
fn quick_pipeline() -> Vec<(&'static str, Value)> {
    vec![
        ("plan", plan_scenario()),
        (
            "implement",
            json!({"runs": [[
                {"do": "write", "path": "greeting.txt", "content": "hello\n"},
                {"do": "check", "item": "Add greeting.txt"},
                {"do": "check", "item": "Add farewell.txt"},
                {"do": "run", "command": format!("git add -A && git commit -qm '{COMMIT}'")}
            ]]}),
        ),
        (
            "review",
            json!({"runs": [[{"do": "signal", "args": ["verdict", "ready"]}]]}),
        ),
        ("pr", pr_scenario()),
    ]
}

/// Makes every push to the bare `remote` wait until `release` exists (a `pre-receive` hook),
/// so a merge stays in flight for as long as the test needs. `release` must lie in the remote's
/// folder: the hook runs in the server's confined git, which sees the remote it pushes to and the
/// system, nothing else.
fn hold_pushes(remote: &Path, release: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let hook = remote.join("hooks").join("pre-receive");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ncat >/dev/null\nwhile [ ! -e '{}' ]; do sleep 0.02; done\n",
            release.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A non-technical task run to awaiting merge with its branch pushed; returns its id.
async fn task_awaiting_merge(world: &World, project: &str, title: &str) -> i64 {
    let id = world.new_task_in(project, title, false, 0).await;
    world.wait_state(id, "awaiting_merge").await;
    world.wait_until_pr(id).await;
    id
}

async fn delete(world: &World, id: i64) -> (u16, Value) {
    world
        .server
        .client()
        .request(Method::DELETE, &format!("/api/tasks/{id}"), None)
        .await
        .unwrap()
}

fn error_of(body: &Value) -> String {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"))
        .to_string()
}

/// Git's own words, which a refusal must never pass on.
fn assert_no_git_output(message: &str) {
    for raw in [
        "fatal:",
        "error:",
        "stderr",
        "`git ",
        "exit code",
        "rejected",
    ] {
        assert!(!message.contains(raw), "raw git output in {message:?}");
    }
}

/// How many commits on the remote's main carry the task's change.
fn landed(world: &World) -> usize {
    world
        .repo
        .remote_log("main")
        .iter()
        .filter(|subject| subject.as_str() == COMMIT)
        .count()
}

#[tokio::test]
async fn concurrent_merges_and_a_delete_merge_exactly_once() {
    let world = World::start(&quick_pipeline(), &[]).await;
    let id = task_awaiting_merge(&world, &world.project, "Add a greeting").await;
    let release = world.repo.remote.join("release-merge");
    hold_pushes(&world.repo.remote, &release);

    // The first merge is committed as `merging` before the forge is touched, and is held there
    // by the remote; a second merge and a delete then arrive together.
    let client = world.server.client().clone();
    let first = tokio::spawn(async move {
        client
            .post(&format!("/api/tasks/{id}/merge"), &json!({}))
            .await
            .unwrap()
    });
    world.wait_state(id, "merging").await;
    let ((merge_status, merge_body), (delete_status, delete_body)) =
        tokio::join!(world.action(id, "merge", json!({})), delete(&world, id));
    assert_eq!(merge_status, 409, "{merge_body}");
    let message = error_of(&merge_body);
    assert!(
        message.contains(&format!("cannot merge task {id}"))
            && message.contains("already being merged"),
        "{message}"
    );
    assert_no_git_output(&message);
    assert_eq!(delete_status, 409, "{delete_body}");
    let message = error_of(&delete_body);
    assert!(
        message.contains(&format!("cannot delete task {id}")) && message.contains("being merged"),
        "{message}"
    );
    assert_no_git_output(&message);

    std::fs::write(&release, "").unwrap();
    let (status, body) = first.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], json!({"state": "done", "reason": "merged"}));
    let detail = world.wait_state(id, "done").await;
    assert_eq!(detail["pull_request"]["merged"], true);

    // Afterwards: a clear refusal, still no git output; the change is on main exactly once.
    let (status, body) = world.action(id, "merge", json!({})).await;
    assert_eq!(status, 409, "{body}");
    let message = error_of(&body);
    assert!(message.contains("already merged"), "{message}");
    assert_no_git_output(&message);
    assert_eq!(landed(&world), 1, "{:?}", world.repo.remote_log("main"));
}

#[tokio::test]
async fn a_crash_while_merging_is_finished_after_the_restart() {
    let mut world = World::start(&quick_pipeline(), &[]).await;
    let id = task_awaiting_merge(&world, &world.project, "Add a greeting").await;
    let release = world.repo.remote.join("release-merge");
    hold_pushes(&world.repo.remote, &release);

    let client = world.server.client().clone();
    // The request dies with the server; its answer does not matter.
    let merge = tokio::spawn(async move {
        client
            .post(&format!("/api/tasks/{id}/merge"), &json!({}))
            .await
    });
    world.wait_state(id, "merging").await;
    world.server.kill9().await.unwrap();
    let _ = merge.await;
    std::fs::write(&release, "").unwrap();

    // Recovery asks the forge and finishes the merge the dead server had started.
    world.restart(&[], &[]).await;
    let detail = world.wait_state(id, "done").await;
    assert_eq!(
        detail["task"]["state"],
        json!({"state": "done", "reason": "merged"})
    );
    assert_eq!(detail["pull_request"]["merged"], true);
    assert_eq!(landed(&world), 1, "{:?}", world.repo.remote_log("main"));
    let outcomes: Vec<String> = world
        .db()
        .prepare("SELECT outcome FROM outbox WHERE task_id = ?1 AND kind = 'merge_pr'")
        .unwrap()
        .query_map([id], |r| r.get::<_, Option<String>>(0))
        .unwrap()
        .map(|r| r.unwrap().unwrap_or_default())
        .collect();
    assert_eq!(outcomes, ["merged"], "one merge intent, finished once");
}

#[tokio::test]
async fn deleting_a_task_deletes_its_remote_branch_unless_the_project_keeps_it() {
    let world = World::start(&quick_pipeline(), &[]).await;
    let id = task_awaiting_merge(&world, &world.project, "Add a greeting").await;
    let branch = world.detail(id).await["task"]["branch"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(world.repo.remote_branches().contains(&branch));
    let (status, body) = delete(&world, id).await;
    assert_eq!(status, 200, "{body}");
    let left: Vec<String> = world
        .repo
        .remote_branches()
        .into_iter()
        .filter(|b| b.starts_with("atelier/"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    assert!(!world.repo.branches().contains(&branch));

    // A project that keeps remote branches.
    let dir = world.dir.path().join("kept");
    std::fs::create_dir_all(&dir).unwrap();
    let kept_repo = testkit::sample_repo(&dir).unwrap();
    let kept = world
        .add_project(
            &kept_repo.path,
            "kept",
            json!({"keep_remote_branch_on_delete": true}),
        )
        .await;
    let id = task_awaiting_merge(&world, &kept, "Keep my branch").await;
    let branch = world.detail(id).await["task"]["branch"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = delete(&world, id).await;
    assert_eq!(status, 200, "{body}");
    assert!(kept_repo.remote_branches().contains(&branch));
    assert!(!kept_repo.branches().contains(&branch));
}

#[tokio::test]
async fn a_hung_remote_does_not_hold_up_another_tasks_pull_request() {
    let world = World::start(&quick_pipeline(), &["--forge-timeout-secs", "15"]).await;
    let other = world.add_project_from_scratch("other", json!({})).await;
    // Technical owners: both wait at the plan gate, so the test decides who reaches pr when.
    let a = world
        .new_task_in(&world.project, "Push to a hung remote", true, 0)
        .await;
    let b = world
        .new_task_in(&other, "Push to a working remote", true, 0)
        .await;
    world.wait_state(a, "plan_gate").await;
    world.wait_state(b, "plan_gate").await;

    // A's remote now accepts connections and never answers.
    let hung = testkit::HungRemote::start().unwrap();
    testkit::git(
        &world.repo.path,
        &["remote", "set-url", "origin", hung.url()],
    )
    .unwrap();
    let (status, body) = world.action(a, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");
    testkit::wait_until(
        "A's pull request to reach the hung remote",
        DEADLINE,
        || async { (hung.accepted() > 0).then_some(()) },
    )
    .await
    .unwrap_or_else(|err| panic!("{err}\nserver logs:\n{}", world.server.logs()));

    // While A's fetch and push hang, B goes all the way to an opened pull request.
    let (status, body) = world.action(b, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");
    world.wait_state(b, "awaiting_merge").await;
    let pr = world.wait_until_pr(b).await;
    assert!(pr["url"].as_str().unwrap().starts_with("local:"), "{pr}");
    let open_pr = |task: i64| -> Vec<Option<String>> {
        world
            .db()
            .prepare("SELECT outcome FROM outbox WHERE task_id = ?1 AND kind = 'open_pr'")
            .unwrap()
            .query_map([task], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let a_now = world.detail(a).await;
    assert_eq!(open_pr(a), [None], "A's push is still in flight: {a_now:#}");
    assert!(a_now["pull_request"].is_null(), "{a_now:#}");

    // Then A's git call hits its deadline: a failed attempt, recorded with the reason.
    let detail = world
        .wait_state_for(a, "blocked", DEADLINE + std::time::Duration::from_secs(15))
        .await;
    let reason = &detail["task"]["state"]["reason"];
    assert_eq!(reason["code"], "forge", "{detail:#}");
    let text = reason["detail"].as_str().unwrap();
    assert!(
        text.contains("timed out after 15 s") && text.contains("the remote may be unreachable"),
        "{text}"
    );
    let outcome = open_pr(a).pop().flatten().unwrap();
    assert!(
        outcome.starts_with("failed: could not publish"),
        "{outcome}"
    );
    assert!(outcome.contains("timed out after 15 s"), "{outcome}");
}

#[tokio::test]
async fn an_intent_of_an_unknown_kind_is_recorded_as_failed_not_retried() {
    let mut world = World::start(&quick_pipeline(), &[]).await;
    let id = world.new_task("Wait at the gate", true).await;
    world.wait_state(id, "plan_gate").await;
    // As a newer version might have left it.
    world
        .db()
        .execute(
            "INSERT INTO outbox (task_id, kind, idem_key, created_at) VALUES (?1, 'launch_rocket', 'launch_rocket:1', 0)",
            [id],
        )
        .unwrap();
    world.server.stop().await.unwrap();
    world.restart(&[], &[]).await;
    let db = world.db();
    let (attempts, outcome) = testkit::wait_until(
        "the unknown intent's outcome",
        DEADLINE,
        || async {
            db.query_row(
                "SELECT attempts, outcome FROM outbox WHERE kind = 'launch_rocket' AND done_at IS NOT NULL",
                [],
                |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)),
            )
            .ok()
        },
    )
    .await
    .unwrap();
    assert_eq!(attempts, 1);
    assert!(
        outcome.starts_with("failed: unknown intent kind `launch_rocket`"),
        "{outcome}"
    );
    // The task itself is untouched.
    assert_eq!(
        world.detail(id).await["task"]["state"]["state"],
        "plan_gate"
    );
}

#[tokio::test]
async fn request_bodies_over_the_server_limit_are_a_413_naming_it() {
    let world = World::start(&quick_pipeline(), &["--max-body-bytes", "4000"]).await;
    let request = |body: String| json!({"project": world.project, "title": "Big", "body": body});
    let (status, body) = world
        .server
        .post("/api/tasks", &request("x".repeat(4000)))
        .await
        .unwrap();
    assert_eq!(status, 413, "{body}");
    let message = error_of(&body);
    assert!(
        message.contains("larger than the 4 kB limit (4000 bytes, max_body_bytes)")
            && message.contains("--max-body-bytes"),
        "{message}"
    );
    let (status, body) = world
        .server
        .post("/api/tasks", &request("x".repeat(3000)))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
}
