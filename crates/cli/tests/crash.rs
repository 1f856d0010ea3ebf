//! Crash safety: `kill -9` the server during implement, during review, between "review ready"
//! and the pr stage, and during pr; restart; each task finishes in the right state with no
//! duplicated push or pull-request record and no run left running.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use serde_json::{Value, json};
use support::*;

/// Scenarios where `stage` waits for a release file at the point the server is killed.
fn waiting_pipeline(stage: &str) -> Vec<(&'static str, Value)> {
    let release = release_file(&format!("release-{stage}"));
    let wait = wait_for_file(&release);
    let plan = plan_scenario();
    let implement = if stage == "implement" {
        json!({"runs": [[
            {"do": "write", "path": "greeting.txt", "content": "hello\n"},
            wait,
            {"do": "check", "item": "Add greeting.txt"},
            {"do": "check", "item": "Add farewell.txt"},
            {"do": "write", "path": "farewell.txt", "content": "goodbye\n"},
            {"do": "run", "command": "git add -A && git commit -qm 'Greeting and farewell'"}
        ]]})
    } else {
        json!({"runs": [[
            {"do": "write", "path": "greeting.txt", "content": "hello\n"},
            {"do": "write", "path": "farewell.txt", "content": "goodbye\n"},
            {"do": "check", "item": "Add greeting.txt"},
            {"do": "check", "item": "Add farewell.txt"},
            {"do": "run", "command": "git add -A && git commit -qm 'Greeting and farewell'"}
        ]]})
    };
    let review = if stage == "review" {
        json!({"runs": [[wait, {"do": "signal", "args": ["verdict", "ready"]}]]})
    } else {
        json!({"runs": [[{"do": "signal", "args": ["verdict", "ready"]}]]})
    };
    let pr = if stage == "pr" {
        // Signals first, then is killed before its turn ends: the restarted run signals again.
        json!({"runs": [[{"do": "signal", "args": ["pr-done"]}, wait]]})
    } else {
        pr_scenario()
    };
    vec![
        ("plan", plan),
        ("implement", implement),
        ("review", review),
        ("pr", pr),
    ]
}

/// Runs one task to `stage`, kills the server while the stage's agent waits, restarts it,
/// releases the agent, and checks the task ends awaiting merge with exactly one PR.
async fn crash_during(stage: &str) {
    let scenarios = waiting_pipeline(stage);
    let mut world = World::start(&scenarios, &[]).await;
    let release = release_file(&format!("release-{stage}"));
    let id = world
        .new_task(&format!("Crash during {stage}"), false)
        .await;
    world.wait_run(id, stage, "running").await;
    let first_mark = world.run_mark(id).await;
    // The agent is alive and waiting (the run is recorded as running just before its process
    // has exec'd, so wait for the process rather than assume it).
    testkit::wait_until("the agent's processes to appear", DEADLINE, || {
        let alive = processes_of_run(&first_mark);
        async move { (!alive.is_empty()).then_some(()) }
    })
    .await
    .unwrap();

    world.server.kill9().await.unwrap();
    world.restart(&[], &[]).await;
    // Recovery killed the orphaned agent of the dead server and restarted the stage.
    testkit::wait_until("the orphaned agent to be gone", DEADLINE, || {
        let left = processes_of_run(&first_mark);
        async move { left.is_empty().then_some(()) }
    })
    .await
    .unwrap();
    let interrupted = world.wait_run(id, stage, "interrupted").await;
    assert_eq!(
        interrupted["reason"],
        "the server stopped while this run was live"
    );
    world.wait_run(id, stage, "running").await;

    std::fs::write(&release, "go").unwrap();
    let detail = world.wait_state(id, "awaiting_merge").await;
    assert_final(&world, id, &detail, stage).await;
}

async fn assert_final(world: &World, id: i64, detail: &Value, stage: &str) {
    let runs = run_summary(detail);
    assert!(
        runs.iter()
            .all(|(_, status)| status != "running" && status != "queued"),
        "no run is left running: {runs:?}"
    );
    let interrupted: Vec<_> = runs.iter().filter(|(_, s)| s == "interrupted").collect();
    assert!(interrupted.iter().all(|(s, _)| s == stage), "{runs:?}");
    let completed: Vec<&str> = runs
        .iter()
        .filter(|(_, s)| s == "completed")
        .map(|(stage, _)| stage.as_str())
        .collect();
    assert_eq!(
        completed,
        ["plan", "implement", "review", "pr"],
        "each stage completed once"
    );

    let pr = world.wait_until_pr(id).await;
    let branch = detail["task"]["branch"].as_str().unwrap();
    assert_eq!(
        world.repo.remote_branch_sha(branch).unwrap(),
        pr["head_sha"].as_str().unwrap()
    );
    let db = world.db();
    let prs: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM pull_requests WHERE task_id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(prs, 1, "one pull-request record");
    let opened: Vec<(String, i64)> = db
        .prepare("SELECT outcome, attempts FROM outbox WHERE task_id = ?1 AND kind = 'open_pr'")
        .unwrap()
        .query_map([id], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                r.get(1)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(opened.len(), 1, "one push-and-open intent: {opened:?}");
    assert!(opened[0].0.starts_with("opened"), "{opened:?}");
    assert_eq!(opened[0].1, 1, "pushed once");
}

#[tokio::test]
async fn kill9_during_implement_restarts_implement() {
    crash_during("implement").await;
}

#[tokio::test]
async fn kill9_during_review_restarts_review() {
    crash_during("review").await;
}

#[tokio::test]
async fn kill9_during_pr_after_its_signal_opens_one_pull_request() {
    crash_during("pr").await;
}

/// With one slot, a higher-priority task takes the slot freed by task A's review, so A's pr run
/// is committed as queued but not started when the server dies.
#[tokio::test]
async fn kill9_between_review_ready_and_the_pr_stage_keeps_the_queued_run() {
    let release_review = release_file("release-review");
    let release_b = release_file("release-b");
    let scenarios = waiting_pipeline("review");
    let mut world = World::start(&scenarios, &["--slots", "1"]).await;
    // Project B: its planner waits for release-b.
    let b_scenarios = world.dir.path().join("b-scenarios");
    write_scenarios(
        &b_scenarios,
        &[(
            "plan",
            json!({"runs": [[wait_for_file(&release_b), {"do": "signal", "args": ["plan-ready"]}]]}),
        )],
    );
    let b_dir = world.dir.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let b_repo = testkit::sample_repo(&b_dir).unwrap();
    let (status, body) = world
        .server
        .post(
            "/api/projects",
            &json!({"path": b_repo.path, "name": "b", "settings": {"roles": world.roles(&b_scenarios), "sandbox": gated_sandbox()}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");

    let a = world.new_task("Task A", false).await;
    world.wait_run(a, "review", "running").await;
    let b = world.new_task_in("b", "Task B", true, 10).await;
    // B waits in the queue while A's reviewer holds the only slot.
    world.wait_run(b, "plan", "queued").await;
    std::fs::write(&release_review, "go").unwrap();
    world.wait_run(b, "plan", "running").await;
    let queued_pr = world.wait_run(a, "pr", "queued").await;
    assert_eq!(
        world.detail(a).await["task"]["state"],
        json!({"state": "running", "stage": "pr"})
    );

    world.server.kill9().await.unwrap();
    world.restart(&["--slots", "1"], &[]).await;
    std::fs::write(&release_b, "go").unwrap();
    world.wait_state(b, "plan_gate").await;
    let detail = world.wait_state(a, "awaiting_merge").await;
    // The queued pr run survived the crash and ran (it was never started twice).
    let pr_run = detail["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["stage"] == "pr")
        .unwrap()
        .clone();
    assert_eq!(pr_run["id"], queued_pr["id"]);
    assert_eq!(pr_run["status"], "completed");
    assert_eq!(pr_run["turns"], 1);
    assert_final(&world, a, &detail, "none").await;
}

/// The push of the pull request hangs in the remote's pre-receive hook when the server is
/// killed: the intent was attempted but has no outcome. After the restart it is replayed, and
/// still exactly one pull-request record exists.
#[tokio::test]
async fn kill9_during_the_push_replays_the_intent_once() {
    let mut world = World::start(&full_pipeline(), &[]).await;
    // In the remote's folder: the hook runs in the server's confined git, which sees the remote
    // it pushes to and the system, nothing else.
    let release = world.repo.remote.join("release-push");
    let hook = world.repo.remote.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ncat >/dev/null\nwhile [ ! -e '{}' ]; do sleep 0.02; done\n",
            release.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let id = world.new_task("Slow push", false).await;
    world.wait_state(id, "awaiting_checks").await;
    let db = world.db();
    testkit::wait_until("the push to be attempted", DEADLINE, || {
        let attempts: i64 = db
            .query_row(
                "SELECT attempts FROM outbox WHERE task_id = ?1 AND kind = 'open_pr'",
                [id],
                |r| r.get(0),
            )
            .unwrap_or(0);
        async move { (attempts == 1).then_some(()) }
    })
    .await
    .unwrap();
    world.server.kill9().await.unwrap();
    let pending: Option<String> = db
        .query_row(
            "SELECT outcome FROM outbox WHERE task_id = ?1 AND kind = 'open_pr'",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, None, "no outcome was recorded before the crash");
    world.restart(&[], &[]).await;
    std::fs::write(&release, "go").unwrap();
    let pr = world.wait_until_pr(id).await;
    let (outcome, attempts): (String, i64) = db
        .query_row(
            "SELECT outcome, attempts FROM outbox WHERE task_id = ?1 AND kind = 'open_pr'",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(outcome.starts_with("opened"), "{outcome}");
    assert_eq!(attempts, 2, "replayed once after the restart");
    let prs: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM pull_requests WHERE task_id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(prs, 1);
    let branch = world.detail(id).await["task"]["branch"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        world.repo.remote_branch_sha(&branch).unwrap(),
        pr["head_sha"].as_str().unwrap()
    );
    // The local forge has no checks: the sync after the publish makes it await its merge.
    world.wait_state(id, "awaiting_merge").await;
}

/// The server dies while the planner works on the user's answer: the replacement run continues
/// the same session and gets the answer again — it is not lost, and the question is not asked
/// twice.
#[tokio::test]
async fn kill9_during_the_answered_turn_keeps_the_answer_and_the_session() {
    let release = release_file("release-answer");
    let plan = json!({"runs": [{"turns": [
        [{"do": "question", "text": "Formal?"}],
        [
            wait_for_file(&release),
            {"do": "echo_input"},
            {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Greet formally\n"},
            {"do": "signal", "args": ["plan-ready"]}
        ]
    ]}]});
    let mut world = World::start(&[("plan", plan)], &[]).await;
    let id = world.new_task("Crash in the answer", true).await;
    world.wait_state(id, "needs_input").await;
    let (status, body) = world
        .action(id, "answer", json!({"text": "Yes, formal."}))
        .await;
    assert_eq!(status, 200, "{body}");
    world.wait_run(id, "plan", "running").await;
    let session = world.detail(id).await["runs"][0]["session"]
        .as_str()
        .unwrap()
        .to_string();
    world.server.kill9().await.unwrap();
    world.restart(&[], &[]).await;
    world.wait_run(id, "plan", "interrupted").await;
    std::fs::write(&release, "go").unwrap();
    let detail = world.wait_state(id, "plan_gate").await;
    let runs = detail["runs"].as_array().unwrap();
    assert_eq!(
        run_summary(&detail),
        pairs(&[("plan", "interrupted"), ("plan", "completed")])
    );
    assert_eq!(
        runs[1]["session"],
        session.as_str(),
        "the replacement continued the session"
    );
    let logs = world.logs(id).await;
    let echoed = logs.iter().any(|e| {
        e["run"] == runs[1]["id"]
            && e["event"]["type"] == "message"
            && e["event"]["text"]
                .as_str()
                .unwrap_or("")
                .contains("Yes, formal.")
    });
    assert!(
        echoed,
        "the answer was delivered to the replacement: {logs:#?}"
    );
}

/// Names in a folder, sorted (none when the folder does not exist).
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The `atelier/*` branches of a repository, sorted.
fn task_branches(repo: &std::path::Path) -> Vec<String> {
    let out = testkit::git(
        repo,
        &[
            "for-each-ref",
            "--format=%(refname:short)",
            "--sort=refname",
            "refs/heads/atelier/",
        ],
    )
    .unwrap();
    out.lines().map(str::to_string).collect()
}

/// The server dies (a crash point aborts it) right after a task's workspace is made and before
/// its row is written. After the restart the leftover worktree, branch and doc folder are gone,
/// and a task with the same title is created on a fresh id with nothing stray beside it.
#[tokio::test]
async fn kill9_between_the_worktree_and_the_task_row_leaves_nothing_behind() {
    let title = "Crash while creating";
    let mut world = World::start_with_env(
        &[("plan", plan_scenario())],
        &[],
        &[("ATELIER_CRASH_AT", "after-worktree")],
    )
    .await;
    let sent = world
        .server
        .post(
            "/api/tasks",
            &json!({"project": "app", "title": title, "body": "Please add a greeting.\n"}),
        )
        .await;
    assert!(sent.is_err(), "the server died mid-request: {sent:?}");
    let status = world.server.kill9().await.unwrap();
    assert!(!status.success(), "the server crashed: {status}");
    let worktrees = world.dir.path().join("app-worktrees");
    let tasks_dir = world.data.join("tasks");
    // What the crash left: a workspace that no task row owns.
    assert_eq!(names_in(&worktrees), ["1-crash-while-creating"]);
    assert_eq!(
        task_branches(&world.repo.path),
        ["atelier/1-crash-while-creating"]
    );
    assert_eq!(names_in(&tasks_dir), ["1-crash-while-creating"]);

    world.restart(&[], &[]).await;
    assert_eq!(names_in(&worktrees), Vec::<String>::new());
    assert_eq!(task_branches(&world.repo.path), Vec::<String>::new());
    assert_eq!(names_in(&tasks_dir), Vec::<String>::new());
    let logs = world.server.logs();
    assert!(
        logs.contains("removed a leftover worktree that no task owns")
            && logs.contains("deleted a leftover branch that no task owns")
            && logs.contains("removed a leftover task folder that no task owns"),
        "each removal is logged:\n{logs}"
    );

    let id = world.new_task(title, true).await;
    assert_eq!(id, 2, "the crashed creation's id is not handed out again");
    let detail = world.wait_state(id, "plan_gate").await;
    assert_eq!(detail["task"]["title"], title);
    assert_eq!(names_in(&worktrees), ["2-crash-while-creating"]);
    assert_eq!(
        task_branches(&world.repo.path),
        ["atelier/2-crash-while-creating"]
    );
    assert_eq!(names_in(&tasks_dir), ["2-crash-while-creating"]);
}
