//! End to end through the real `atelier serve` with scripted agents (real child processes that
//! edit the worktree and signal with the real binary): the happy path with a needs-work round,
//! caps, questions, stop and conflicts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn full_pipeline_with_a_needs_work_round_reaches_done() {
    let world = World::start(&full_pipeline(), &["--merge-poll-ms", "200"]).await;
    let id = world.new_task("Add greeting & farewell", true).await;

    // plan → gate: the doc holds the plan the planner wrote.
    let detail = world.wait_state(id, "plan_gate").await;
    let doc = detail["doc"].as_str().unwrap();
    assert!(
        doc.contains("## Original Request\n\nPlease add a greeting."),
        "{doc}"
    );
    assert!(doc.contains("- [ ] Add greeting.txt"), "{doc}");
    let worktree = world.worktree(&detail);
    let branch = detail["task"]["branch"].as_str().unwrap().to_string();
    assert_eq!(branch, format!("atelier/{id}-add-greeting-farewell"));

    // approve → implement ⇄ review (one needs-work round) → pr → awaiting merge.
    let (status, body) = world.action(id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let detail = world.wait_state(id, "awaiting_merge").await;
    assert_eq!(
        run_summary(&detail),
        pairs(&[
            ("plan", "completed"),
            ("implement", "completed"),
            ("review", "completed"),
            ("implement", "completed"),
            ("review", "completed"),
            ("pr", "completed"),
        ])
    );
    let verdicts: Vec<_> = detail["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["stage"] == "review")
        .map(|r| r["signal"]["verdict"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(verdicts, ["needs-work", "ready"]);
    let doc = detail["doc"].as_str().unwrap();
    assert!(
        doc.contains("- [x] Add greeting.txt") && doc.contains("- [x] Add farewell.txt"),
        "{doc}"
    );
    assert_eq!(
        std::fs::read_to_string(worktree.join("farewell.txt")).unwrap(),
        "goodbye\n"
    );
    assert_eq!(detail["task"]["review_rounds"], 1);
    // Every run recorded the scripted agent's session and usage.
    for run in detail["runs"].as_array().unwrap() {
        assert!(
            run["session"].as_str().unwrap().starts_with("scripted-"),
            "{run}"
        );
        assert!(run["output_tokens"].as_u64().unwrap() > 0, "{run}");
    }

    // The branch arrived on the remote with the agents' commits.
    let pr = world.wait_until_pr(id).await;
    let remote_sha = world
        .repo
        .remote_branch_sha(&branch)
        .expect("branch on the remote");
    assert_eq!(pr["head_sha"].as_str().unwrap(), remote_sha);
    let log = world.repo.remote_log(&branch);
    assert_eq!(
        &log[..3],
        [
            "Fix farewell",
            "Add greeting and farewell",
            "Initial commit"
        ]
    );

    // A human merges → done, and the worktree and local branch are gone.
    let (status, body) = world.action(id, "merge", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let detail = world.wait_state(id, "done").await;
    assert_eq!(
        detail["task"]["state"],
        json!({"state": "done", "reason": "merged"})
    );
    // main had not moved: the merge is a fast-forward to the branch head.
    assert_eq!(world.repo.remote_branch_sha("main").unwrap(), remote_sha);
    let server = &world.server;
    testkit::wait_until("the workspace to be removed", DEADLINE, || async move {
        let detail = server.get(&format!("/api/tasks/{id}")).await.ok()?;
        detail["task"]["worktree"].is_null().then_some(())
    })
    .await
    .unwrap();
    assert!(!worktree.exists());
    let key = detail["task"]["key"].as_str().unwrap();
    assert!(
        !world.homes().join(key).exists(),
        "the agents' home folder is removed"
    );
    assert!(
        world.data.join("tasks").join(key).join("task.md").exists(),
        "the task doc is kept"
    );
    assert!(!world.repo.branches().contains(&branch));
    assert_eq!(
        world.detail(id).await["task"]["worktree"],
        serde_json::Value::Null
    );
    // The transcript holds the agents' messages, tool calls and command output.
    let logs = world.logs(id).await;
    for kind in [
        "session",
        "thinking",
        "message",
        "tool_call",
        "command_output",
        "file_change",
        "usage",
        "turn_end",
        "status",
    ] {
        assert!(
            logs.iter()
                .any(|e| e["item"] == "event" && e["event"]["type"] == kind),
            "no {kind} event in {logs:#?}"
        );
    }
    assert_eq!(logs.last().unwrap()["item"], "end");
}

#[tokio::test]
async fn merged_elsewhere_is_detected_by_the_local_forge() {
    let world = World::start(&full_pipeline(), &["--merge-poll-ms", "100"]).await;
    let id = world.new_task("Merged by hand", false).await;
    // A non-technical owner passes the plan gate automatically.
    let detail = world.wait_state(id, "awaiting_merge").await;
    let branch = detail["task"]["branch"].as_str().unwrap().to_string();
    world.wait_until_pr(id).await;
    world.repo.git(&["fetch", "-q", "origin"]).unwrap();
    world
        .repo
        .git(&["merge", "-q", "--no-edit", &format!("origin/{branch}")])
        .unwrap();
    world.repo.git(&["push", "-q", "origin", "main"]).unwrap();
    let detail = world.wait_state(id, "done").await;
    assert_eq!(detail["pull_request"]["merged"], true);
}

#[tokio::test]
async fn a_reviewer_that_always_says_needs_work_blocks_at_the_cap() {
    let always_needs_work = json!({"runs": [[
        {"do": "signal", "args": ["verdict", "needs-work", "--reason", "never good enough"]}
    ]]});
    let scenarios = [
        ("plan", plan_scenario()),
        ("implement", committing_implement_scenario()),
        ("review", always_needs_work),
    ];
    let world = World::start(&scenarios, &[]).await;
    let id = world.new_task("Never good enough", false).await;
    let detail = world.wait_state(id, "blocked").await;
    assert_eq!(
        detail["task"]["state"],
        json!({"state": "blocked", "stage": "implement", "reason": {"code": "max_iterations", "detail": "review did not pass after 3 rounds (cap 3)"}})
    );
    assert_eq!(
        run_summary(&detail),
        pairs(&[
            ("plan", "completed"),
            ("implement", "completed"),
            ("review", "completed"),
            ("implement", "completed"),
            ("review", "completed"),
            ("implement", "completed"),
            ("review", "completed"),
        ])
    );
    // Resume grants a fresh budget and continues at implement.
    let (status, body) = world.action(id, "resume", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["state"],
        json!({"state": "running", "stage": "implement"})
    );
    world.wait_state(id, "blocked").await;
}

#[tokio::test]
async fn the_total_run_cap_blocks_the_task() {
    let always_needs_work = json!({"runs": [[
        {"do": "signal", "args": ["verdict", "needs-work", "--reason", "again"]}
    ]]});
    let scenarios = [
        ("plan", plan_scenario()),
        ("implement", committing_implement_scenario()),
        ("review", always_needs_work),
    ];
    let world = World::start(&[], &[]).await;
    write_scenarios(&world.scenarios, &scenarios);
    let project = world
        .add_project_from_scratch(
            "capped",
            json!({"max_review_rounds": 100, "max_total_runs": 4}),
        )
        .await;
    let id = world.new_task_in(&project, "Run cap", false, 0).await;
    let detail = world.wait_state(id, "blocked").await;
    assert_eq!(detail["task"]["state"]["reason"]["code"], "max_iterations");
    assert_eq!(detail["runs"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_question_pauses_the_run_and_the_answer_resumes_the_same_session() {
    let asking_plan = json!({"runs": [{"turns": [
        [
            {"do": "message", "text": "One product question first."},
            {"do": "question", "text": "Should the greeting be formal?"}
        ],
        [
            {"do": "echo_input"},
            {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Add greeting.txt\n"},
            {"do": "signal", "args": ["plan-ready"]}
        ]
    ]}]});
    let world = World::start(&[("plan", asking_plan)], &[]).await;
    let id = world.new_task("Ask first", true).await;
    let detail = world.wait_state(id, "needs_input").await;
    assert_eq!(
        detail["task"]["state"],
        json!({"state": "needs_input", "stage": "plan", "question": "Should the greeting be formal?"})
    );
    let run = &detail["runs"][0];
    assert_eq!(run["status"], "needs_input");
    let session = run["session"].as_str().unwrap().to_string();

    let (status, body) = world
        .action(id, "answer", json!({"text": "Yes, formal please."}))
        .await;
    assert_eq!(status, 200, "{body}");
    let detail = world.wait_state(id, "plan_gate").await;
    let runs = detail["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "the answer resumes the same run: {runs:#?}");
    assert_eq!(runs[0]["turns"], 2);
    assert_eq!(runs[0]["session"], session.as_str());
    let logs = world.logs(id).await;
    assert!(
        logs.iter().any(|e| e["event"]["type"] == "message"
            && e["event"]["text"]
                .as_str()
                .unwrap_or("")
                .contains("Yes, formal please.")),
        "the resumed turn received the answer: {logs:#?}"
    );
    // An answer when nothing is asked is refused.
    let (status, body) = world.action(id, "answer", json!({"text": "again"})).await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test]
async fn stop_kills_every_process_never_chains_and_a_second_start_conflicts() {
    let busy_plan = json!({"runs": [[
        {"do": "spawn", "command": "sleep 600"},
        {"do": "message", "text": "working"},
        {"do": "hang"}
    ]]});
    let world = World::start(&[("plan", busy_plan)], &["--stop-grace-ms", "300"]).await;
    let id = world.new_task("Stop me", true).await;
    world.wait_run(id, "plan", "running").await;
    let mark = world.run_mark(id).await;
    testkit::wait_until("the agent's background tool to start", DEADLINE, || {
        let n = processes_of_run(&mark).len();
        async move { (n >= 2).then_some(()) }
    })
    .await
    .unwrap();

    // A second start while the agent runs is a conflict.
    let (status, body) = world.action(id, "run", json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("already running"),
        "{body}"
    );

    let (status, body) = world.action(id, "stop", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let detail = world.wait_run(id, "plan", "stopped").await;
    assert_eq!(detail["reason"], "stopped by a user");
    // Killing the sandbox ends its PID namespace; the kernel takes its processes down right
    // after (not necessarily before the run is recorded stopped, under load).
    testkit::wait_until(
        "no process of the stopped run survives",
        std::time::Duration::from_secs(5),
        || {
            let left = processes_of_run(&mark);
            async move { left.is_empty().then_some(()) }
        },
    )
    .await
    .unwrap();
    let detail = world.detail(id).await;
    assert_eq!(
        detail["task"]["state"],
        json!({"state": "stopped", "stage": "plan"})
    );
    assert_eq!(
        run_summary(&detail),
        pairs(&[("plan", "stopped")]),
        "a stopped run never chains"
    );

    // Resume starts a new run of the same stage.
    let (status, body) = world.action(id, "resume", json!({})).await;
    assert_eq!(status, 200, "{body}");
    world.wait_run(id, "plan", "running").await;
    let (status, _) = world.action(id, "stop", json!({})).await;
    assert_eq!(status, 200);
    let detail = world.detail(id).await;
    assert_eq!(
        detail["task"]["state"],
        json!({"state": "stopped", "stage": "plan"})
    );
}

#[tokio::test]
async fn unconfined_stop_kills_every_process_a_double_forked_one_included() {
    // `spawn` starts a tool in a session of its own; the subshell of the `run` ends at once, so
    // its `setsid sleep` is nobody's descendant through its parents: only the agent, the run's
    // subreaper, adopts it. The stop walks the agent's tree, never the host's process table.
    let busy_plan = json!({"runs": [[
        {"do": "spawn", "command": "sleep 600"},
        {"do": "run", "command": "(setsid sleep 601 </dev/null >/dev/null 2>&1 &); echo detached"},
        {"do": "message", "text": "working"},
        {"do": "hang"}
    ]]});
    let world = World::start(
        &[("plan", busy_plan)],
        &["--sandbox", "none", "--stop-grace-ms", "300"],
    )
    .await;
    let id = world.new_task("Stop me unconfined", true).await;
    world.wait_run(id, "plan", "running").await;
    let mark = world.run_mark(id).await;
    testkit::wait_until("the agent and its two sleeps", DEADLINE, || {
        let n = processes_of_run(&mark).len();
        async move { (n >= 3).then_some(()) }
    })
    .await
    .unwrap();
    let (status, body) = world.action(id, "stop", json!({})).await;
    assert_eq!(status, 200, "{body}");
    world.wait_run(id, "plan", "stopped").await;
    testkit::wait_until("no process of the stopped run survives", DEADLINE, || {
        let left = processes_of_run(&mark);
        async move { left.is_empty().then_some(()) }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_unconfined_run_that_ends_leaves_no_background_process_of_its_group() {
    // The tool's shell ends at once; its `sleep` stays in the agent's process group and would
    // outlive the run (re-parented to the host's init when the agent ends) if nothing killed it.
    let plan = json!({"runs": [[
        {"do": "run", "command": "sleep 602 </dev/null >/dev/null 2>&1 & echo $! > leftover.pid"},
        {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Something\n"},
        {"do": "signal", "args": ["plan-ready"]}
    ]]});
    let world = World::start(&[("plan", plan)], &["--sandbox", "none"]).await;
    let id = world.new_task("Leftover", true).await;
    let detail = world.wait_state(id, "plan_gate").await;
    let pid_file = world.worktree(&detail).join("leftover.pid");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    testkit::wait_until(
        "the run's background sleep to end with it",
        DEADLINE,
        || {
            // Gone, or a zombie waiting for the host's init to reap it.
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|r| !r.trim_start().starts_with('Z'))
            });
            async move { (!alive).then_some(()) }
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn the_per_project_cap_queues_runs_by_priority_then_age() {
    let release = release_file("release");
    let waiting_plan =
        json!({"runs": [[wait_for_file(&release), {"do": "signal", "args": ["plan-ready"]}]]});
    let world = World::start(&[("plan", waiting_plan)], &[]).await;
    let capped = world
        .add_project_from_scratch("capped", json!({"slots": 1}))
        .await;
    let first = world.new_task_in(&capped, "First", true, 0).await;
    world.wait_run(first, "plan", "running").await;
    let low = world.new_task_in(&capped, "Low priority", true, 0).await;
    let high = world.new_task_in(&capped, "High priority", true, 5).await;
    // The project's one slot is taken: both wait, while another project still runs at once.
    world.wait_run(low, "plan", "queued").await;
    world.wait_run(high, "plan", "queued").await;
    let other = world.new_task("Other project", true).await;
    world.wait_run(other, "plan", "running").await;
    std::fs::write(&release, "go").unwrap();
    for id in [first, low, high, other] {
        world.wait_state(id, "plan_gate").await;
    }
    // The higher priority started first although it was created later.
    let started = |id: i64| {
        let db = world.db();
        db.query_row(
            "SELECT spawned_us FROM runs WHERE task_id = ?1",
            [id],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    assert!(started(high) < started(low), "priority first, then age");
}

#[tokio::test]
async fn requested_plan_changes_continue_the_planner_session_with_the_feedback() {
    // Plan iteration 0 writes a first plan; iteration 1 is the revision, played as the
    // session's second turn (its first turn is never played: the session continues).
    let revising_plan = json!({"runs": [
        [
            {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Add greeting.txt\n- [ ] Add farewell.txt\n"},
            {"do": "signal", "args": ["plan-ready"]}
        ],
        {"turns": [
            [{"do": "fail", "error": "the revision must continue the session"}],
            [
                {"do": "echo_input"},
                {"do": "doc_section", "heading": "Overview", "body": "Revised: greeting first."},
                {"do": "signal", "args": ["plan-ready"]}
            ]
        ]}
    ]});
    let mut scenarios = full_pipeline();
    scenarios[0] = ("plan", revising_plan);
    let world = World::start(&scenarios, &[]).await;
    let id = world.new_task("Revise the plan", true).await;
    let detail = world.wait_state(id, "plan_gate").await;
    let session = detail["runs"][0]["session"].as_str().unwrap().to_string();
    assert_eq!(detail["runs"][0]["harness"], "scripted", "{detail}");
    assert!(
        detail["actions"]
            .as_array()
            .unwrap()
            .contains(&json!({"action": "request_plan_changes"})),
        "{detail}"
    );

    // Empty feedback is refused, nothing changes.
    let (status, body) = world
        .action(id, "request-changes", json!({"feedback": "  "}))
        .await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = world
        .action(
            id,
            "request-changes",
            json!({"feedback": "Please do the greeting first."}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], json!({"state": "running", "stage": "plan"}));
    let detail = world.wait_state(id, "plan_gate").await;
    assert_eq!(
        run_summary(&detail),
        pairs(&[("plan", "completed"), ("plan", "completed")])
    );
    let revision = &detail["runs"][1];
    assert_eq!(revision["session"], session.as_str(), "{revision}");
    assert_eq!(revision["iteration"], 1, "{revision}");
    assert!(
        detail["doc"]
            .as_str()
            .unwrap()
            .contains("Revised: greeting first."),
        "{detail}"
    );
    let logs = world.logs(id).await;
    assert!(
        logs.iter().any(|e| e["run"] == revision["id"]
            && e["event"]["type"] == "message"
            && e["event"]["text"]
                .as_str()
                .unwrap_or("")
                .contains("Please do the greeting first.")),
        "the revision received the feedback: {logs:#?}"
    );
    let audit = world.db();
    let actions: Vec<String> = audit
        .prepare("SELECT action FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        actions.contains(&"task.request_changes".to_string()),
        "{actions:?}"
    );

    // Approving the revised plan carries on with the implementer.
    let (status, body) = world.action(id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");
    world.wait_state(id, "awaiting_merge").await;
}
