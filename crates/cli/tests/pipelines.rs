//! `atelier pipeline check` and `list`, end to end with the real binary and no server: each
//! broken file under `fixtures/pipelines/` is refused with `file:line: reason` and a non-zero
//! exit, and the built-ins re-expressed in TOML read back exactly as the built-ins. And
//! `atelier pipeline simulate`: one task through `yolo` or `standard` with scripted agents in a
//! scratch repository (its own embedded server on loopback), `full` refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipelines")
}

/// Runs `atelier <args>` in the fixtures folder, so files are named as given.
fn atelier(args: &[&str]) -> Output {
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    Command::new(env!("CARGO_BIN_EXE_atelier"))
        .args(args)
        .current_dir(fixtures())
        // No server is needed: point everything that could find one at nothing.
        .env("ATELIER_DATA_DIR", data.path())
        .env_remove("ATELIER_URL")
        .env_remove("ATELIER_TOKEN")
        .output()
        .unwrap_or_else(|e| panic!("cannot run atelier: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn each_broken_file_is_refused_with_its_file_line_and_reason() {
    let cases: [(&str, usize, &str); 17] = [
        (
            "unknown-kind.toml",
            13,
            "unknown stage kind `reveiw`: expected one of plan, implement, review, qa, refine, pr",
        ),
        (
            "unknown-signal.toml",
            15,
            "stage `review` (review) has no signal `approved`: a review stage ends with `ready` \
             or `needs-work`",
        ),
        (
            "unknown-target.toml",
            15,
            "signal `ready` of stage `review` leads to `qa`, which is not a stage of this \
             pipeline",
        ),
        (
            "missing-signal.toml",
            12,
            "stage `review` (review) does not say where `needs-work` leads",
        ),
        (
            "unknown-harness.toml",
            10,
            "unknown harness `claude`: expected one of claude-code, codex, opencode, scripted \
             (did you mean `claude-code`?)",
        ),
        (
            "unknown-variable.toml",
            10,
            "prompt template prompts/unknown-variable.md, line 2: unknown variable \
             `{{ticket_url}}`",
        ),
        (
            "unreachable.toml",
            21,
            "stage `qa` is never reached from the first stage `plan`",
        ),
        (
            "loop-without-cap.toml",
            14,
            "the loop implement → review → implement has no cap: set `max_rounds`",
        ),
        (
            "no-end.toml",
            1,
            "pipeline `p` never reaches `done` from its first stage",
        ),
        (
            "duplicate-stage.toml",
            17,
            "a second stage named `review` (the first is on line 12)",
        ),
        (
            "two-of-a-kind.toml",
            14,
            "a second review stage (`second`; the first, `review`, is on line 7): a pipeline runs \
             at most one stage of each kind",
        ),
        (
            "same-reviewers.toml",
            17,
            "the second reviewer of stage `review` uses the same harness and model as the first \
             (codex, gpt-5)",
        ),
        ("toml-syntax.toml", 5, "string values must be quoted"),
        (
            "unknown-field.toml",
            14,
            "unknown field `max_round`, expected one of",
        ),
        (
            "pr-not-ending.toml",
            19,
            "`pr-done` of pr stage `pr` leads to `review`: a pr stage ends the pipeline",
        ),
        (
            "done-outside-pr.toml",
            10,
            "signal `done` of stage `implement` leads to `done`, but only a pr stage ends a \
             pipeline",
        ),
        ("missing.toml", 1, "cannot read the file"),
    ];
    for (file, line, reason) in cases {
        let output = atelier(&["pipeline", "check", file]);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{file} passed: {stderr}");
        let expected = format!("{file}:{line}: {reason}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&expected),
            "{file}: expected `{expected}`, got:\n{stderr}"
        );
        // One problem per file, then the summary.
        assert_eq!(stderr.lines().count(), 2, "{file}:\n{stderr}");
        assert!(text(&output.stdout).is_empty(), "{file}");
    }
}

#[test]
fn the_builtins_in_toml_and_a_complete_file_pass() {
    let output = atelier(&["pipeline", "check", "builtins.toml", "complete.toml"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "ok: standard, full, yolo (builtins.toml)\nok: careful (complete.toml)\n"
    );
    assert_eq!(text(&output.stderr), "");
}

#[test]
fn the_builtins_in_toml_read_back_as_the_builtins() {
    let output = atelier(&["pipeline", "list", "--file", "builtins.toml", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"));
    let from_file: Vec<serde_json::Value> = json["files"]
        .as_array()
        .map(|files| files.iter().map(|f| f["pipeline"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(serde_json::Value::Array(from_file), json["builtin"]);
}

#[test]
fn a_name_defined_twice_is_refused_at_the_second_file() {
    let output = atelier(&["pipeline", "check", "builtins.toml", "./builtins.toml"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(
            "./builtins.toml:4: pipeline `standard` is also defined at builtins.toml:4: rename \
             one of them\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: 3 problems in the pipeline definitions"),
        "{stderr}"
    );
}

#[test]
fn list_shows_stages_signals_caps_gates_and_roles() {
    let output = atelier(&["pipeline", "list", "--file", "complete.toml"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for expected in [
        "standard: plan → human gate → implement ⇄ review → pr (today's pipeline)\n",
        "  1. plan       plan-ready → human gate → implement\n",
        "  3. review     ready → pr · needs-work → implement  [max 3 rounds]\n",
        "  1. implement  pr-done → pr  [max 5 runs]\n",
        "From complete.toml:\n",
        "careful: two independent reviewers, then QA\n",
        "  at most 30 runs in all\n",
        "build (implement)  done → review  [timeout 3600 s; codex gpt-5 prompt prompts/implement.md]",
        "[max 3 rounds; claude-code opus; second reviewer codex gpt-5 effort high]",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
}

#[test]
fn help_explains_with_examples() {
    for args in [
        &["pipeline", "--help"][..],
        &["pipeline", "check", "--help"],
        &["pipeline", "list", "--help"],
        &["pipeline", "simulate", "--help"],
    ] {
        let output = atelier(args);
        assert!(output.status.success());
        let stdout = text(&output.stdout);
        assert!(stdout.contains("Examples:"), "{args:?}:\n{stdout}");
        assert!(stdout.contains("atelier pipeline"), "{args:?}:\n{stdout}");
    }
}

/// Writes each `(stage, scenario)` as `<dir>/<stage>.json`.
fn scenario_dir(scenarios: &[(&str, serde_json::Value)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (stage, scenario) in scenarios {
        std::fs::write(
            dir.path().join(format!("{stage}.json")),
            scenario.to_string(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    dir
}

fn simulate(pipeline: &str, scenarios: &Path) -> Output {
    let dir = scenarios
        .to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path"));
    atelier(&[
        "pipeline",
        "simulate",
        "--pipeline",
        pipeline,
        "--scenarios",
        dir,
        "--timeout-secs",
        "90",
    ])
}

fn pr_done_scenario() -> serde_json::Value {
    serde_json::json!({"runs": [[{"do": "signal", "args": ["pr-done"]}]]})
}

#[test]
fn simulate_yolo_walks_one_implement_run_to_done() {
    let implement = serde_json::json!({"runs": [[
        {"do": "write", "path": "hello.txt", "content": "hello\n"},
        {"do": "run", "command": "git add -A && git commit -qm 'Add hello.txt'"},
        {"do": "signal", "args": ["pr-done"]}
    ]]});
    let dir = scenario_dir(&[("implement", implement), ("pr", pr_done_scenario())]);
    let output = simulate("yolo", dir.path());
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("  1. implement (iteration 0, run ")
            && stdout.contains(": completed, signal pr-done"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches(". implement (iteration").count(),
        1,
        "{stdout}"
    );
    assert!(!stdout.contains(". pr (iteration"), "no pr run: {stdout}");
    assert!(stdout.contains("  → done\n"), "{stdout}");
    assert!(stdout.contains("guards fired: 0\n"), "{stdout}");
    assert!(stdout.contains("final state: done"), "{stdout}");
}

#[test]
fn simulate_standard_names_the_to_do_guard_when_ready_comes_too_early() {
    let plan = serde_json::json!({"runs": [[
        {"do": "doc_section", "heading": "Overview", "body": "Add greeting and farewell files."},
        {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Add greeting.txt\n- [ ] Add farewell.txt\n"},
        {"do": "signal", "args": ["plan-ready"]}
    ]]});
    let implement = serde_json::json!({"runs": [
        [
            {"do": "write", "path": "greeting.txt", "content": "hello\n"},
            {"do": "write", "path": "farewell.txt", "content": "goodbye\n"},
            {"do": "check", "item": "Add greeting.txt"},
            {"do": "run", "command": "git add -A && git commit -qm 'Add greeting and farewell'"}
        ],
        [{"do": "check", "item": "Add farewell.txt"}]
    ]});
    // Round 0 says ready with farewell unchecked: refused, it says needs-work; round 1 is ready.
    let review = serde_json::json!({"runs": [
        [
            {"do": "signal", "args": ["verdict", "ready"]},
            {"do": "signal", "args": ["verdict", "needs-work", "--reason", "farewell is not checked"]}
        ],
        [{"do": "signal", "args": ["verdict", "ready"]}]
    ]});
    let dir = scenario_dir(&[
        ("plan", plan),
        ("implement", implement),
        ("review", review),
        ("pr", pr_done_scenario()),
    ]);
    let output = simulate("standard", dir.path());
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("guards fired: 1\n"), "{stdout}");
    assert!(
        stdout.contains("  - to-do guard in run ")
            && stdout.contains(
                "`verdict ready` refused: the task doc's to-do list still has 1 unchecked item(s)"
            ),
        "{stdout}"
    );
    assert!(stdout.contains("- [ ] Add farewell.txt"), "{stdout}");
    assert!(
        stdout.contains("signal verdict needs-work (farewell is not checked)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("plan gate: approved automatically"),
        "{stdout}"
    );
    assert!(stdout.contains("final state: done"), "{stdout}");
}

#[test]
fn simulate_needs_a_scenario_for_every_stage_the_pipeline_runs() {
    // Only the standard stages' scenarios: `full` also runs qa and refine.
    let dir = scenario_dir(&[
        ("plan", pr_done_scenario()),
        ("implement", pr_done_scenario()),
        ("review", pr_done_scenario()),
        ("pr", pr_done_scenario()),
    ]);
    let output = simulate("full", dir.path());
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("qa.json does not exist"), "{stderr}");
    assert!(text(&output.stdout).is_empty(), "nothing was simulated");

    // A file's pipeline runs its own stages: its second reviewer needs a scenario too.
    let scenarios = dir
        .path()
        .to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path"));
    let output = atelier(&[
        "pipeline",
        "simulate",
        "--pipeline",
        "careful",
        "--file",
        "complete.toml",
        "--scenarios",
        scenarios,
    ]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("second_review.json does not exist"),
        "{stderr}"
    );
}
