//! Tests of the `atelier` binary that need no server: help texts, argument checks made before
//! contacting a server, and the messages for a missing or unreachable server.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `atelier args…` with no ATELIER_* variables, its data directory in `data_dir`, and an
/// empty stdin.
fn atelier(data_dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ATELIER_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("ATELIER_DATA_DIR", data_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run atelier: {err}"))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a failure with exit code 1 and `error: …` on stderr containing `needle`.
fn assert_fails_with(output: &Output, needle: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("error: "), "stderr: {err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
}

#[test]
fn every_command_has_help_with_an_example() {
    let dir = tempfile::tempdir().unwrap();
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["doctor"],
        &["project"],
        &["project", "add"],
        &["project", "list"],
        &["task"],
        &["task", "new"],
        &["task", "list"],
        &["task", "show"],
        &["task", "approve"],
        &["task", "answer"],
        &["task", "run"],
        &["task", "stop"],
        &["task", "resume"],
        &["task", "merge"],
        &["task", "logs"],
        &["signal"],
        &["signal", "plan-ready"],
        &["signal", "question"],
        &["signal", "verdict"],
        &["signal", "pr-done"],
        &["demo"],
        &["me"],
        &["me", "credentials"],
        &["me", "credentials", "set"],
        &["me", "credentials", "list"],
        &["me", "credentials", "delete"],
        &["me", "models"],
        &["me", "models", "set"],
        &["me", "models", "unset"],
        &["me", "models", "list"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let output = atelier(dir.path(), &args);
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert!(
            out.contains("Example"),
            "{args:?} help has no example:\n{out}"
        );
    }
}

#[test]
fn the_scripted_agent_is_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let output = atelier(dir.path(), &["--help"]);
    assert!(!String::from_utf8_lossy(&output.stdout).contains("scripted-agent"));
}

#[test]
fn the_token_is_never_shown_in_help() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_atelier"))
        .env("ATELIER_DATA_DIR", dir.path())
        .env("ATELIER_TOKEN", "very-secret-token")
        .arg("--help")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&output.stdout).contains("very-secret-token"));
}

#[test]
fn task_new_with_a_missing_body_file_names_it_before_any_server() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-request.md");
    let output = atelier(
        dir.path(),
        &[
            "task",
            "new",
            "--project",
            "p",
            "--title",
            "t",
            "--body-file",
            missing.to_str().unwrap(),
        ],
    );
    assert_fails_with(&output, "no-such-request.md");
    assert!(!stderr(&output).contains("server"), "{}", stderr(&output));
}

#[test]
fn task_new_without_a_request_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let output = atelier(
        dir.path(),
        &["task", "new", "--project", "p", "--title", "t"],
    );
    assert_fails_with(&output, "--body-file");
}

#[test]
fn signal_outside_an_agent_run_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let output = atelier(dir.path(), &["signal", "plan-ready"]);
    assert_fails_with(
        &output,
        "atelier signal runs inside an agent run: ATELIER_RUN_TOKEN is not set",
    );
}

#[test]
fn a_blocked_verdict_needs_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let output = atelier(dir.path(), &["signal", "verdict", "blocked"]);
    assert_fails_with(&output, "--reason");
}

#[test]
fn project_add_scripted_names_the_missing_scenario_file() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir(&scenarios).unwrap();
    std::fs::write(
        scenarios.join("plan.json"),
        r#"{"runs": [[{"do": "signal", "args": ["plan-ready"]}]]}"#,
    )
    .unwrap();
    let output = atelier(
        dir.path(),
        &[
            "project",
            "add",
            dir.path().to_str().unwrap(),
            "--scripted",
            scenarios.to_str().unwrap(),
        ],
    );
    assert_fails_with(&output, "implement.json");
}

#[test]
fn project_add_with_a_missing_path_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = atelier(dir.path(), &["project", "add", "/no/such/repo"]);
    assert_fails_with(&output, "/no/such/repo");
}

#[test]
fn without_a_server_the_error_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let output = atelier(dir.path(), &["task", "list"]);
    assert_fails_with(
        &output,
        "no Atelier server found: start one with `atelier serve` or set ATELIER_URL and ATELIER_TOKEN",
    );
}

#[test]
fn an_unreachable_server_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // Bind then drop: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let output = atelier(dir.path(), &["--url", &url, "--token", "t", "task", "list"]);
    assert_fails_with(
        &output,
        &format!("the Atelier server at {url} is not reachable"),
    );
}

#[test]
fn the_demo_runs_a_task_to_merged_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_atelier"))
        .env("TMPDIR", &tmp)
        .env("ATELIER_DATA_DIR", dir.path().join("unused"))
        .arg("demo")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{out}\nstderr:\n{}",
        stderr(&output)
    );
    assert!(out.contains("SIMULATED agents (scripted scenarios) — no model is called"));
    assert!(out.contains("approving it automatically"), "{out}");
    assert!(
        out.contains("merging the pull request as a human would"),
        "{out}"
    );
    assert!(out.contains("final state: done (merged)"), "{out}");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the demo left files behind"
    );
}
