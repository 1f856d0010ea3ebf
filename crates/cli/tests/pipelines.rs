//! `atelier pipeline check` and `list`, end to end with the real binary and no server: each
//! broken file under `fixtures/pipelines/` is refused with `file:line: reason` and a non-zero
//! exit, and the built-ins re-expressed in TOML read back exactly as the built-ins.

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
    let cases: [(&str, usize, &str); 16] = [
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
    ] {
        let output = atelier(args);
        assert!(output.status.success());
        let stdout = text(&output.stdout);
        assert!(stdout.contains("Examples:"), "{args:?}:\n{stdout}");
        assert!(stdout.contains("atelier pipeline"), "{args:?}:\n{stdout}");
    }
}
