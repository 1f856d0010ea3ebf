//! Pipelines beyond `standard`, end to end through the real `atelier serve` with scripted agents:
//! the built-in `full` pipeline (plan → gate → implement ⇄ review → qa → refine → pr) with a
//! failed QA round whose findings reach the implementer through the doc, QA evidence kept as
//! attachments and linked from `evidence.md`, and a refiner's commit published without another
//! review; a project's own pipeline with two reviewers (from its settings); a pipeline from the
//! repository's `.atelier/pipelines.toml`; and an unknown pipeline name refused at creation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use serde_json::{Value, json};
use support::*;

/// The request of every task here.
const GREETING: &str = "Please add a greeting.\n";
/// What the QA agent finds in its first round (its `qa fail --reason`).
const QA_REASON: &str = "scenario 1: farewell.txt says `bye?`, expected `goodbye` (qa-0.txt)";
/// What the second reviewer finds in its first round.
const SECOND_REASON: &str = "farewell.txt lacks a trailing exclamation";

/// A shell command writing `content_command`'s output into the task's attachments folder (next
/// to the task doc, whose path the agent has in `$ATELIER_TASK_DOC`) as `name`.
fn evidence(name: &str, content_command: &str) -> Value {
    json!({"do": "run", "command": format!(
        "dir=\"$(dirname \"$ATELIER_TASK_DOC\")/attachments\" && mkdir -p \"$dir\" && \
         {{ {content_command}; }} > \"$dir/{name}\" && echo saved {name}"
    )})
}

/// Prints the doc's section `heading` (up to the end of the doc): what an agent reads of it.
fn show_section(heading: &str) -> Value {
    json!({"do": "run", "command": format!("sed -n '/^## {heading}/,$p' \"$ATELIER_TASK_DOC\"")})
}

/// The output of every command run `run` ran.
async fn command_outputs(world: &World, id: i64, run: &Value) -> Vec<String> {
    world
        .logs(id)
        .await
        .iter()
        .filter(|e| &e["run"] == run && e["event"]["type"] == "command_output")
        .map(|e| e["event"]["output"].as_str().unwrap_or("").to_string())
        .collect()
}

fn full_scenarios() -> Vec<(&'static str, Value)> {
    let implement = json!({"runs": [
        [
            {"do": "write", "path": "greeting.txt", "content": "hello\n"},
            {"do": "check", "item": "Add greeting.txt"},
            {"do": "write", "path": "farewell.txt", "content": "bye?\n"},
            {"do": "check", "item": "Add farewell.txt"},
            {"do": "run", "command": "git add -A && git commit -qm 'Add greeting and farewell'"}
        ],
        [
            // What the implementer reads first: the QA findings Atelier wrote into the doc.
            show_section("QA Findings"),
            {"do": "write", "path": "farewell.txt", "content": "goodbye\n"},
            {"do": "check", "item": "Add farewell.txt"},
            {"do": "run", "command": "git add -A && git commit -qm 'Fix farewell'"}
        ]
    ]});
    let review = json!({"runs": [[
        {"do": "run", "command": "cat greeting.txt farewell.txt"},
        {"do": "doc_section", "heading": "Review Findings", "body": "None.\n"},
        {"do": "signal", "args": ["verdict", "ready"]}
    ]]});
    let qa = json!({"runs": [
        [
            evidence("qa-0.txt", "cat farewell.txt"),
            {"do": "uncheck", "item": "Add farewell.txt"},
            // Cutting the corner: pass while an item is open. Refused; then the honest fail.
            {"do": "signal", "args": ["qa", "pass"]},
            {"do": "signal", "args": ["qa", "fail", "--reason", QA_REASON]}
        ],
        [
            evidence("qa-1.txt", "echo '$ cat farewell.txt' && cat farewell.txt"),
            {"do": "signal", "args": ["qa", "pass"]}
        ]
    ]});
    let refine = json!({"runs": [[
        {"do": "run", "command": "git diff --stat HEAD~2"},
        {"do": "write", "path": "GREETINGS.md", "content": "greeting.txt and farewell.txt say hello and goodbye.\n"},
        {"do": "run", "command": "git add -A && git commit -qm 'Refine: document the greeting files'"},
        {"do": "signal", "args": ["refine-done"]}
    ]]});
    vec![
        ("plan", plan_scenario()),
        ("implement", implement),
        ("review", review),
        ("qa", qa),
        ("refine", refine),
        ("pr", pr_scenario()),
    ]
}

#[tokio::test]
async fn a_full_task_goes_through_a_failed_qa_round_then_qa_refine_and_a_pull_request() {
    let world = World::start(&full_scenarios(), &[]).await;
    let (status, body) = world
        .create_in_pipeline("Add a greeting", GREETING, "full")
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["pipeline"], "full");
    let id = body["id"].as_i64().unwrap();
    world.wait_state(id, "plan_gate").await;
    let (status, body) = world.action(id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");

    let detail = world.wait_state(id, "awaiting_merge").await;
    assert_eq!(
        run_summary(&detail),
        pairs(&[
            ("plan", "completed"),
            ("implement", "completed"),
            ("review", "completed"),
            ("qa", "completed"),
            ("implement", "completed"),
            ("review", "completed"),
            ("qa", "completed"),
            ("refine", "completed"),
            ("pr", "completed"),
        ]),
        "a failed QA goes back to implement; the refiner's commit is not sent back to review"
    );
    let runs = detail["runs"].as_array().unwrap();
    assert_eq!(
        runs[3]["signal"],
        json!({"kind": "qa", "result": "fail", "reason": QA_REASON})
    );
    assert_eq!(runs[6]["signal"], json!({"kind": "qa", "result": "pass"}));
    assert_eq!(runs[7]["signal"], json!({"kind": "refine-done"}));
    assert_eq!(
        runs[8]["signal"],
        json!({"kind": "pr-done", "no_changes": false}),
        "the pr-done after the refiner's commit was accepted"
    );

    // The QA findings are in the doc, and the implementer's next run read them there.
    let doc = detail["doc"].as_str().unwrap();
    assert!(doc.contains("## QA Findings"), "{doc}");
    assert!(doc.contains(QA_REASON), "{doc}");
    assert!(doc.contains("- [x] Add farewell.txt"), "{doc}");
    let read = command_outputs(&world, id, &runs[4]["id"]).await;
    assert!(
        read.iter()
            .any(|out| out.starts_with("## QA Findings") && out.contains(QA_REASON)),
        "the second implement run saw the QA findings: {read:#?}"
    );

    // `qa pass` with the unchecked item was refused, and the QA agent read why.
    let refusals = world.failed_tool_outputs(id).await;
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    for part in [
        "`qa pass` refused",
        "1 unchecked item(s)",
        "- [ ] Add farewell.txt",
        "qa fail --reason",
    ] {
        assert!(
            refusals[0].contains(part),
            "{part:?} not in {}",
            refusals[0]
        );
    }

    // What is published is the refiner's commit, on top of the reviewed fix.
    let pr = world.wait_until_pr(id).await;
    let branch = detail["task"]["branch"].as_str().unwrap();
    assert_eq!(
        world.repo.remote_log(branch)[..3],
        [
            "Refine: document the greeting files",
            "Fix farewell",
            "Add greeting and farewell"
        ]
    );
    let reviewed = runs[5]["reviewed_commit"].as_str().unwrap();
    let head = world.repo.remote_branch_sha(branch).unwrap();
    assert_ne!(reviewed, head, "the refiner committed after the review");
    assert_eq!(
        runs[7]["reviewed_commit"],
        head.as_str(),
        "the refiner's head is what it vouched for"
    );
    assert_eq!(pr["head_sha"], head.as_str());

    // The QA evidence files are the task's attachments, linked from the evidence bundle.
    let attachments = world
        .server
        .get(&format!("/api/tasks/{id}/attachments"))
        .await
        .unwrap();
    let mut names: Vec<&str> = attachments
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["evidence.md", "qa-0.txt", "qa-1.txt"],
        "{attachments}"
    );
    let (status, qa1) = world
        .get_text(&format!("/api/tasks/{id}/attachments/qa-1.txt"))
        .await;
    assert_eq!(status, 200, "{qa1}");
    assert_eq!(qa1, "$ cat farewell.txt\ngoodbye\n");
    let (status, evidence) = world
        .get_text(&format!("/api/tasks/{id}/attachments/evidence.md"))
        .await;
    assert_eq!(status, 200, "{evidence}");
    let url = world.server.url().trim_end_matches('/').to_string();
    let links = format!(
        "## QA evidence\n\n- [`qa-0.txt`]({url}/api/tasks/{id}/attachments/qa-0.txt)\n\
         - [`qa-1.txt`]({url}/api/tasks/{id}/attachments/qa-1.txt)\n"
    );
    assert!(evidence.contains(&links), "{links:?} not in:\n{evidence}");
    // Both QA results are among the verdicts, each with the commit it tested.
    for result in ["**qa fail** on commit", "**qa pass** on commit"] {
        assert!(evidence.contains(result), "{result:?} not in:\n{evidence}");
    }
    for (stage, count) in [("qa", 2), ("refine", 1)] {
        let row = format!("\n| {stage} | {count} | ");
        assert!(evidence.contains(&row), "{row:?} not in:\n{evidence}");
    }
}

/// A project's own pipeline in its settings: plan gate, implement, a review by two scripted
/// reviewers told apart by their models, pr.
const TWO_REVIEWERS: &str = r#"
[pipeline.paired]
description = "two independent reviewers"

[[pipeline.paired.stage]]
kind = "plan"
gate = true
on = { plan-ready = "implement" }

[[pipeline.paired.stage]]
kind = "implement"
on = { done = "review" }

[[pipeline.paired.stage]]
kind = "review"
harness = "scripted"
model = "a"
max_rounds = 3
second_reviewer = { harness = "scripted", model = "b" }
on = { ready = "pr", needs-work = "implement" }

[[pipeline.paired.stage]]
kind = "pr"
on = { pr-done = "done" }
"#;

#[tokio::test]
async fn two_reviewers_from_the_project_settings_must_both_say_ready() {
    let implement = json!({"runs": [
        [
            {"do": "write", "path": "greeting.txt", "content": "hello\n"},
            {"do": "check", "item": "Add greeting.txt"},
            {"do": "write", "path": "farewell.txt", "content": "goodbye\n"},
            {"do": "check", "item": "Add farewell.txt"},
            {"do": "run", "command": "git add -A && git commit -qm 'Add greeting and farewell'"}
        ],
        [
            show_section("Review Verdicts"),
            {"do": "write", "path": "farewell.txt", "content": "goodbye!\n"},
            {"do": "run", "command": "git add -A && git commit -qm 'Exclaim farewell'"}
        ]
    ]});
    let ready = json!({"runs": [[{"do": "signal", "args": ["verdict", "ready"]}]]});
    let second = json!({"runs": [
        [{"do": "signal", "args": ["verdict", "needs-work", "--reason", SECOND_REASON]}],
        [{"do": "run", "command": "grep -q '!' farewell.txt"}, {"do": "signal", "args": ["verdict", "ready"]}]
    ]});
    let scenarios = [
        ("plan", plan_scenario()),
        ("implement", implement),
        ("review", ready),
        ("second_review", second),
        ("pr", pr_scenario()),
    ];
    let mut world = World::start_bare(&scenarios, &[], &[]).await;
    world.project = world
        .add_project(
            &world.repo.path.clone(),
            "app",
            json!({"pipelines": TWO_REVIEWERS}),
        )
        .await;
    let (status, body) = world
        .create_in_pipeline("Add a greeting", GREETING, "paired")
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["pipeline"], "paired");
    let id = body["id"].as_i64().unwrap();
    world.wait_state(id, "plan_gate").await;
    let (status, body) = world.action(id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");

    let detail = world.wait_state(id, "awaiting_merge").await;
    assert_eq!(
        run_summary(&detail),
        pairs(&[
            ("plan", "completed"),
            ("implement", "completed"),
            ("review", "completed"),
            ("second_review", "completed"),
            ("implement", "completed"),
            ("review", "completed"),
            ("second_review", "completed"),
            ("pr", "completed"),
        ]),
        "the second reviewer runs after the first even when it says ready, and its \
         needs-work goes back to implement"
    );
    // Each reviewer's verdicts are kept on its runs, with the model it ran with.
    let reviews: Vec<(&str, &str, Value)> = detail["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["stage"] == "review" || r["stage"] == "second_review")
        .map(|r| {
            (
                r["stage"].as_str().unwrap(),
                r["model"].as_str().unwrap_or("none"),
                r["signal"].clone(),
            )
        })
        .collect();
    let verdict = |v: &str| json!({"kind": "verdict", "verdict": v});
    assert_eq!(
        reviews,
        [
            ("review", "a", verdict("ready")),
            (
                "second_review",
                "b",
                json!({"kind": "verdict", "verdict": "needs-work", "reason": SECOND_REASON})
            ),
            ("review", "a", verdict("ready")),
            ("second_review", "b", verdict("ready")),
        ]
    );
    let runs = detail["runs"].as_array().unwrap();
    for run in &runs[2..4] {
        assert!(run["reviewed_commit"].is_string(), "{run}");
    }

    // Both verdicts went into the doc, and the implementer read them there.
    let first_commit = runs[2]["reviewed_commit"].as_str().unwrap();
    let expected = [
        "## Review Verdicts".to_string(),
        format!(
            "- First reviewer (scripted, a): `ready` (on {})",
            &first_commit[..12]
        ),
        format!(
            "- Second reviewer (scripted, b): `needs-work` (on {}): {SECOND_REASON}",
            &first_commit[..12]
        ),
    ];
    let read = command_outputs(&world, id, &runs[4]["id"]).await;
    let section = read
        .iter()
        .find(|out| out.starts_with("## Review Verdicts"))
        .unwrap_or_else(|| panic!("the implementer did not see the verdicts: {read:#?}"));
    for part in &expected {
        assert!(
            section.contains(part.as_str()),
            "{part:?} not in:\n{section}"
        );
    }

    // What is published is what both reviewers said ready on.
    let pr = world.wait_until_pr(id).await;
    assert_eq!(pr["head_sha"], runs[6]["reviewed_commit"]);
    assert_eq!(runs[5]["reviewed_commit"], runs[6]["reviewed_commit"]);
}

/// A pipeline of the repository's own: implement → review → pr, no plan.
const REPO_PIPELINES: &str = r#"
[pipeline.quick]
description = "no plan: implement, one review, pr"

[[pipeline.quick.stage]]
kind = "implement"
on = { done = "review" }

[[pipeline.quick.stage]]
kind = "review"
max_rounds = 2
on = { ready = "pr", needs-work = "implement" }

[[pipeline.quick.stage]]
kind = "pr"
on = { pr-done = "done" }
"#;

#[tokio::test]
async fn an_unknown_pipeline_is_refused_and_one_from_the_repository_runs() {
    let implement = json!({"runs": [[
        {"do": "write", "path": "greeting.txt", "content": "hello\n"},
        {"do": "run", "command": "git add -A && git commit -qm 'Add greeting'"}
    ]]});
    let ready = json!({"runs": [[{"do": "signal", "args": ["verdict", "ready"]}]]});
    let scenarios = [
        ("plan", plan_scenario()),
        ("implement", implement),
        ("review", ready),
        ("pr", pr_scenario()),
    ];
    let world = World::start(&scenarios, &[]).await;

    let (status, body) = world.create_in_pipeline("Fast", GREETING, "fast").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"],
        "cannot create the task: unknown pipeline `fast`: expected one of `standard`, `full`, \
         `yolo` (a project defines its own in its settings' `pipelines` or in \
         .atelier/pipelines.toml on its default branch)"
    );

    // The repository's default branch (as its remote has it) defines `quick`.
    std::fs::create_dir_all(world.repo.path.join(".atelier")).unwrap();
    testkit::commit_file(
        &world.repo.path,
        ".atelier/pipelines.toml",
        REPO_PIPELINES,
        "Add a pipeline",
    )
    .unwrap();
    world
        .repo
        .git(&["push", "--quiet", "origin", "main"])
        .unwrap();

    let (status, body) = world.create_in_pipeline("Fast", GREETING, "fast").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("expected one of `standard`, `full`, `yolo`, `quick`"),
        "{body}"
    );
    let tasks = world.server.get("/api/tasks").await.unwrap();
    assert_eq!(tasks, json!([]), "nothing was created: {tasks}");

    let (status, body) = world.create_in_pipeline("Quick", GREETING, "quick").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["pipeline"], "quick");
    assert_eq!(
        body["state"],
        json!({"state": "running", "stage": "implement"}),
        "the repository's pipeline starts at its first stage"
    );
    let id = body["id"].as_i64().unwrap();
    let detail = world.wait_state(id, "awaiting_merge").await;
    assert_eq!(
        run_summary(&detail),
        pairs(&[
            ("implement", "completed"),
            ("review", "completed"),
            ("pr", "completed"),
        ])
    );
}

/// The QA agent can look at a page the way a user would: headless Chromium runs inside its
/// sandbox and its screenshot becomes an attachment.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs Chromium: run scripts/test, which installs it (Debian: apt-get install chromium)"
)]
async fn the_qa_agent_screenshots_a_page_with_chromium_inside_its_sandbox() {
    let chromium = std::env::var("ATELIER_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let page = "data:text/html,<h1>Hello from QA</h1>";
    let qa = json!({"runs": [[
        {"do": "run", "command": format!(
            "dir=\"$(dirname \"$ATELIER_TASK_DOC\")/attachments\" && mkdir -p \"$dir\" && \
             {chromium} --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
             --window-size=800,600 --screenshot=\"$dir/qa-page.png\" '{page}' 2>&1 | tail -3 && \
             {chromium} --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
             --dump-dom '{page}' 2>/dev/null | tee \"$dir/qa-page.html\""
        )},
        {"do": "signal", "args": ["qa", "pass"]}
    ]]});
    let mut scenarios = full_scenarios();
    for (stage, scenario) in &mut scenarios {
        if *stage == "qa" {
            *scenario = qa.clone();
        }
    }
    let world = World::start(&scenarios, &[]).await;
    let (status, body) = world
        .create_in_pipeline("Add a greeting", GREETING, "full")
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();
    world.wait_state(id, "plan_gate").await;
    let (status, body) = world.action(id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");
    world.wait_state(id, "awaiting_merge").await;
    let (status, html) = world
        .get_text(&format!("/api/tasks/{id}/attachments/qa-page.html"))
        .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<h1>Hello from QA</h1>"), "{html}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let png = http
        .get(format!(
            "{}/api/tasks/{id}/attachments/qa-page.png",
            world.server.url().trim_end_matches('/')
        ))
        .bearer_auth(world.server.token())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {} bytes",
        png.len()
    );
}
