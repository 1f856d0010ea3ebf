//! The guards, end to end: scripted agents that each try to cut a corner against the real
//! `atelier serve`, and what stops them — a refused signal the agent reads in its own tool
//! output, a refused API call, a nudge, a block.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use serde_json::{Value, json};
use support::*;

fn verdicts(detail: &Value) -> Vec<String> {
    detail["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["stage"] == "review")
        .map(|r| {
            r["signal"]["verdict"]
                .as_str()
                .unwrap_or("none")
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn ready_with_an_unchecked_item_is_refused_and_the_reviewer_reads_why() {
    let implement = json!({"runs": [
        [
            {"do": "write", "path": "greeting.txt", "content": "hello\n"},
            {"do": "write", "path": "farewell.txt", "content": "goodbye\n"},
            {"do": "check", "item": "Add greeting.txt"},
            {"do": "run", "command": "git add -A && git commit -qm 'Add greeting and farewell'"}
        ],
        [
            {"do": "check", "item": "Add farewell.txt"}
        ]
    ]});
    // Round 0 cuts the corner: ready although farewell is unchecked. Refused, it says
    // needs-work, as the refusal tells it to. Round 1 says ready with everything checked.
    let review = json!({"runs": [
        [
            {"do": "signal", "args": ["verdict", "ready"]},
            {"do": "signal", "args": ["verdict", "needs-work", "--reason", "farewell is not checked"]}
        ],
        [
            {"do": "signal", "args": ["verdict", "ready"]}
        ]
    ]});
    let scenarios = [
        ("plan", plan_scenario()),
        ("implement", implement),
        ("review", review),
        ("pr", pr_scenario()),
    ];
    let world = World::start(&scenarios, &[]).await;
    let id = world.new_task("Ready too early", false).await;
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
        ]),
        "the refused ready did not lead to the pr stage"
    );
    assert_eq!(verdicts(&detail), ["needs-work", "ready"]);

    // The reviewer's own tool output carries the refusal, naming the unchecked item.
    let refusals = world.failed_tool_outputs(id).await;
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    let refusal = &refusals[0];
    for part in [
        "`verdict ready` refused",
        "1 unchecked item(s)",
        "- [ ] Add farewell.txt",
        "needs-work",
    ] {
        assert!(refusal.contains(part), "{part:?} not in {refusal}");
    }
    assert!(!refusal.contains("Add greeting.txt"), "{refusal}");
}

#[tokio::test]
async fn a_user_cannot_start_review_or_pr_out_of_order() {
    let world = World::start(&full_pipeline(), &[]).await;
    let id = world.new_task("Review first", true).await;
    let detail = world.wait_state(id, "plan_gate").await;
    let actions = detail["actions"].as_array().unwrap();
    for refused in ["review", "pr"] {
        assert!(
            !actions.contains(&json!({"action": "run", "stage": refused})),
            "{refused} is not offered at the plan gate: {actions:?}"
        );
    }
    assert!(actions.contains(&json!({"action": "run", "stage": "implement"})));

    let (status, body) = world.action(id, "run", json!({"stage": "review"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"],
        "review cannot start yet: no implement run has completed, so there is nothing to \
         review; run the implement stage first"
    );
    let (status, body) = world.action(id, "run", json!({"stage": "pr"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"],
        "the pr stage cannot start yet: no review has given a verdict yet; a pull request is \
         opened only after a reviewer says `ready` (run the review stage)"
    );
    // Nothing started, nothing changed.
    let detail = world.detail(id).await;
    assert_eq!(detail["task"]["state"], json!({"state": "plan_gate"}));
    assert_eq!(run_summary(&detail), pairs(&[("plan", "completed")]));

    // In order, the same pipeline goes through.
    let (status, body) = world.action(id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");
    world.wait_state(id, "awaiting_merge").await;
}

#[tokio::test]
async fn an_implementer_that_does_nothing_is_nudged_once_then_blocked_and_never_reviewed() {
    // It says what it was told, and does nothing else: no commit, no checked item.
    let idle = json!({"runs": [[{"do": "echo_input"}]]});
    let scenarios = [
        ("plan", plan_scenario()),
        ("implement", idle),
        (
            "review",
            json!({"runs": [[{"do": "signal", "args": ["verdict", "ready"]}]]}),
        ),
    ];
    let world = World::start(&scenarios, &[]).await;
    let id = world.new_task("Do nothing", false).await;
    let detail = world.wait_state(id, "blocked").await;
    assert_eq!(
        run_summary(&detail),
        pairs(&[
            ("plan", "completed"),
            ("implement", "completed"),
            ("implement", "completed"),
        ]),
        "the reviewer never started"
    );
    let state = &detail["task"]["state"];
    assert_eq!(state["stage"], "implement", "{state}");
    assert_eq!(state["reason"]["code"], "no_progress", "{state}");
    let why = state["reason"]["detail"].as_str().unwrap();
    assert!(
        why.contains("no new commit on the task branch") && why.contains("made none again"),
        "{why}"
    );
    // The nudge continued the same session, and the implementer read it.
    let runs = detail["runs"].as_array().unwrap();
    assert_eq!(runs[1]["session"], runs[2]["session"]);
    let nudged = runs[2]["id"].clone();
    let logs = world.logs(id).await;
    assert!(
        logs.iter().any(|e| e["run"] == nudged
            && e["event"]["type"] == "message"
            && e["event"]["text"].as_str().unwrap_or("").starts_with(
                "Atelier guard: your last turn ended with no new commit on the task branch"
            )),
        "the nudged turn received the nudge: {logs:#?}"
    );
}

#[tokio::test]
async fn a_commit_after_the_ready_verdict_goes_back_to_review_before_a_pull_request() {
    // The first pr run slips a commit in after the review, then says pr-done: refused, and the
    // task goes back to review; the second pr run publishes what the reviewer saw.
    let sneaky_pr = json!({"runs": [
        [
            {"do": "write", "path": "extra.txt", "content": "unreviewed\n"},
            {"do": "run", "command": "git add -A && git commit -qm 'Unreviewed extra'"},
            {"do": "signal", "args": ["pr-done"]}
        ],
        [
            {"do": "signal", "args": ["pr-done"]}
        ]
    ]});
    let ready = json!({"runs": [[{"do": "signal", "args": ["verdict", "ready"]}]]});
    let implement = json!({"runs": [[
        {"do": "write", "path": "greeting.txt", "content": "hello\n"},
        {"do": "check", "item": "Add greeting.txt"},
        {"do": "write", "path": "farewell.txt", "content": "goodbye\n"},
        {"do": "check", "item": "Add farewell.txt"},
        {"do": "run", "command": "git add -A && git commit -qm 'Add greeting and farewell'"}
    ]]});
    let scenarios = [
        ("plan", plan_scenario()),
        ("implement", implement),
        ("review", ready),
        ("pr", sneaky_pr),
    ];
    let world = World::start(&scenarios, &[]).await;
    let id = world.new_task("Commit after review", false).await;
    let detail = world.wait_state(id, "awaiting_merge").await;
    assert_eq!(
        run_summary(&detail),
        pairs(&[
            ("plan", "completed"),
            ("implement", "completed"),
            ("review", "completed"),
            ("pr", "completed"),
            ("review", "completed"),
            ("pr", "completed"),
        ])
    );
    let runs = detail["runs"].as_array().unwrap();
    assert_eq!(
        runs[3]["signal"],
        Value::Null,
        "the first pr-done was refused"
    );
    let first = runs[2]["reviewed_commit"].as_str().unwrap();
    let second = runs[4]["reviewed_commit"].as_str().unwrap();
    assert_ne!(first, second, "the second review saw the new commit");
    // What was published is what the second review saw.
    let pr = world.wait_until_pr(id).await;
    assert_eq!(pr["head_sha"], second);
    let branch = detail["task"]["branch"].as_str().unwrap();
    assert_eq!(world.repo.remote_log(branch)[0], "Unreviewed extra");

    let refusals = world.failed_tool_outputs(id).await;
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    let refusal = &refusals[0];
    assert!(
        refusal.contains("`pr-done` refused: the task branch's head")
            && refusal.contains(&first[..12])
            && refusal.contains("goes back to review"),
        "{refusal}"
    );
}

#[tokio::test]
async fn a_looping_agent_is_interrupted_and_nudged_then_blocked() {
    // The implementer runs the same failing test over and over, then would wait forever: only
    // the guard ends its turns. The nudged turn reads the nudge, then loops again.
    let same_call = json!({"do": "tool", "name": "shell", "input": {"command": "cargo test"}, "output": "1 failed"});
    let mut first = vec![json!({"do": "message", "text": "Let me run the tests."})];
    first.extend(std::iter::repeat_n(same_call.clone(), 6));
    first.push(json!({"do": "hang"}));
    let mut second = vec![json!({"do": "echo_input"})];
    second.extend(std::iter::repeat_n(same_call, 6));
    second.push(json!({"do": "hang"}));
    let looping = json!({"runs": [{"turns": [first, second]}]});
    let scenarios = [("plan", plan_scenario()), ("implement", looping)];
    let world = World::start(&scenarios, &["--stop-grace-ms", "300"]).await;
    let id = world.new_task("Loop forever", false).await;
    let detail = world.wait_state(id, "blocked").await;
    assert_eq!(
        run_summary(&detail),
        pairs(&[
            ("plan", "completed"),
            ("implement", "failed"),
            ("implement", "failed"),
        ])
    );
    let state = &detail["task"]["state"];
    assert_eq!(state["stage"], "implement", "{state}");
    assert_eq!(state["reason"]["code"], "looping", "{state}");
    let why = state["reason"]["detail"].as_str().unwrap();
    assert!(
        why.starts_with("the agent called `shell` with the same input 5 times in a row"),
        "{why}"
    );
    let runs = detail["runs"].as_array().unwrap();
    assert!(
        runs[1]["reason"]
            .as_str()
            .unwrap()
            .contains("5 times in a row"),
        "{}",
        runs[1]
    );
    assert_eq!(
        runs[1]["session"], runs[2]["session"],
        "the nudge continued the session"
    );
    // The nudged turn read why it was interrupted.
    let logs = world.logs(id).await;
    let nudged = runs[2]["id"].clone();
    assert!(
        logs.iter().any(|e| e["run"] == nudged
            && e["event"]["type"] == "message"
            && e["event"]["text"]
                .as_str()
                .unwrap_or("")
                .starts_with("Atelier guard: you made the same tool call")),
        "{logs:#?}"
    );
}
