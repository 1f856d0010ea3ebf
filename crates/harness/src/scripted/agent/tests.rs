//! The scripted agent played in-process: stdin, stdout, the workdir and the `atelier` binary are
//! all injected. The "binary" is `/bin/sh`, so `<exe> signal …` runs the `signal` script in the
//! workdir (no freshly written executable, hence no "text file busy" races between tests).

use super::*;
use crate::Decoder;
use crate::scripted::ScriptedDecoder;
use TranscriptEvent as E;
use serde_json::json;
use tempfile::TempDir;

const SIGNAL_SCRIPT: &str = r#"case "$1" in
  bad) echo "unknown signal: $1" >&2; exit 2 ;;
esac
echo "recorded: $*"
"#;

const DOC: &str = "# Task\n\n## To-Do List\n\n- [ ] add parser\n- [x] add tests\n";

struct Played {
    events: Vec<TranscriptEvent>,
    stdout: String,
    stderr: String,
    code: i32,
}

fn fixture(scenario: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scenario.json"), scenario).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("signal"), SIGNAL_SCRIPT).unwrap();
    std::fs::write(work.join("task.md"), DOC).unwrap();
    dir
}

fn play_raw(
    dir: &TempDir,
    iteration: u32,
    turn: u32,
    session: Option<&str>,
    input: &str,
) -> Played {
    let args = AgentArgs {
        scenario: dir.path().join("scenario.json"),
        iteration,
        turn,
        session: session.map(str::to_string),
    };
    let env = AgentEnv {
        input: input.to_string(),
        workdir: dir.path().join("work"),
        task_doc: Some("task.md".into()),
        exe: Ok("/bin/sh".into()),
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = play(&args, &env, &mut out, &mut err);
    let stdout = String::from_utf8(out).unwrap();
    let events = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Played {
        events,
        stdout,
        stderr: String::from_utf8(err).unwrap(),
        code,
    }
}

/// Plays turn `turn` of run 0 with session `s-1`; every output line must be an event.
fn play_turn(dir: &TempDir, turn: u32, input: &str) -> (Vec<TranscriptEvent>, i32) {
    let played = play_raw(dir, 0, turn, Some("s-1"), input);
    assert_eq!(
        played.events.len(),
        played.stdout.lines().count(),
        "{}",
        played.stdout
    );
    (played.events, played.code)
}

fn session() -> E {
    E::Session { id: "s-1".into() }
}

fn call(n: u32, name: &str, input: serde_json::Value) -> E {
    E::ToolCall {
        id: Some(format!("call-0-{n}")),
        name: name.into(),
        input,
    }
}

fn result(n: u32, output: &str, is_error: bool) -> E {
    E::ToolResult {
        id: Some(format!("call-0-{n}")),
        output: output.into(),
        is_error,
    }
}

fn change(path: &str, kind: &str) -> E {
    E::FileChange {
        path: path.into(),
        kind: kind.into(),
    }
}

fn usage(input_tokens: u64, output_tokens: u64) -> E {
    E::Usage {
        input_tokens,
        output_tokens,
        cost_usd: (input_tokens * 3 + output_tokens * 15) as f64 / 1_000_000.0,
        cumulative: false,
    }
}

fn end_ok() -> E {
    E::TurnEnd {
        ok: true,
        error: None,
        retryable: false,
    }
}

fn end_failed(error: &str) -> E {
    E::TurnEnd {
        ok: false,
        error: Some(error.into()),
        retryable: false,
    }
}

fn message(text: &str) -> E {
    E::Message { text: text.into() }
}

fn error(message: &str) -> E {
    E::Error {
        message: message.into(),
    }
}

#[test]
fn plays_every_ordinary_step() {
    let dir = fixture(
        r#"{"runs": [[
        {"do": "message", "text": "hello"},
        {"do": "thinking", "text": "hmm"},
        {"do": "tool", "name": "search", "input": {"q": "x"}, "output": "found"},
        {"do": "write", "path": "src/a.txt", "content": "one\n"},
        {"do": "append", "path": "src/a.txt", "content": "two\n"},
        {"do": "run", "command": "cat src/a.txt; echo oops >&2; exit 3"},
        {"do": "check", "item": "parser"},
        {"do": "uncheck", "item": "tests"},
        {"do": "doc_append", "text": "appended"},
        {"do": "doc_section", "heading": "Review Findings", "body": "- none"},
        {"do": "signal", "args": ["plan-ready"]},
        {"do": "echo_input"}
    ]]}"#,
    );
    let (events, code) = play_turn(&dir, 0, "the prompt");
    let command = "cat src/a.txt; echo oops >&2; exit 3";
    assert_eq!(
        events,
        vec![
            session(),
            message("hello"),
            E::Thinking { text: "hmm".into() },
            call(1, "search", json!({"q": "x"})),
            result(1, "found", false),
            call(2, "write", json!({"path": "src/a.txt", "content": "one\n"})),
            change("src/a.txt", "add"),
            call(
                3,
                "append",
                json!({"path": "src/a.txt", "content": "two\n"})
            ),
            change("src/a.txt", "modify"),
            call(4, "shell", json!({ "command": command })),
            E::CommandOutput {
                command: command.into(),
                output: "one\ntwo\noops\n".into(),
                exit_code: Some(3),
            },
            call(5, "edit", json!({"check": "parser", "path": "task.md"})),
            change("task.md", "modify"),
            call(6, "edit", json!({"uncheck": "tests", "path": "task.md"})),
            change("task.md", "modify"),
            call(7, "edit", json!({"append": "appended", "path": "task.md"})),
            change("task.md", "modify"),
            call(
                8,
                "edit",
                json!({"section": "Review Findings", "body": "- none", "path": "task.md"})
            ),
            change("task.md", "modify"),
            call(9, "shell", json!({"command": "atelier signal plan-ready"})),
            result(9, "recorded: plan-ready\n", false),
            message("the prompt"),
            usage(52, 140),
            end_ok(),
        ]
    );
    assert_eq!(code, 0);
    let work = dir.path().join("work");
    assert_eq!(
        std::fs::read_to_string(work.join("src/a.txt")).unwrap(),
        "one\ntwo\n"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("task.md")).unwrap(),
        "# Task\n\n## To-Do List\n\n- [x] add parser\n- [ ] add tests\nappended\n\n## Review Findings\n\n- none\n"
    );
}

#[test]
fn recoverable_errors_do_not_end_the_turn() {
    let dir = fixture(
        r#"{"runs": [[
        {"do": "check", "item": "nothing like this"},
        {"do": "signal", "args": ["bad", "it's"]},
        {"do": "message", "text": "still here"}
    ]]}"#,
    );
    let (events, code) = play_turn(&dir, 0, "");
    assert_eq!(
        events,
        vec![
            session(),
            call(
                1,
                "edit",
                json!({"check": "nothing like this", "path": "task.md"})
            ),
            error("no unchecked to-do item containing `nothing like this`"),
            call(
                2,
                "shell",
                json!({"command": r"atelier signal bad 'it'\''s'"})
            ),
            result(2, "unknown signal: bad\n", true),
            error("signal rejected (exit code 2): unknown signal: bad"),
            message("still here"),
            usage(50, 50),
            end_ok(),
        ]
    );
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("work/task.md")).unwrap(),
        DOC
    );
}

#[test]
fn refuses_writes_outside_the_workdir() {
    let dir = fixture(
        r#"{"runs": [
        [{"do": "write", "path": "../escape.txt", "content": "x"}, {"do": "message", "text": "never"}],
        [{"do": "append", "path": "/tmp/abs.txt", "content": "x"}]
    ]}"#,
    );
    let refused = |path: &str| {
        format!(
            "refusing to write `{path}`: paths must be relative to the working directory, without `..`"
        )
    };
    let played = play_raw(&dir, 0, 0, Some("s-1"), "");
    assert_eq!(
        played.events,
        vec![
            session(),
            call(1, "write", json!({"path": "../escape.txt", "content": "x"})),
            error(&refused("../escape.txt")),
            usage(50, 30),
            end_failed(&refused("../escape.txt")),
        ]
    );
    assert_eq!(played.code, EXIT_FAILED);
    assert!(!dir.path().join("escape.txt").exists());

    let played = play_raw(&dir, 1, 0, Some("s-1"), "");
    assert_eq!(played.events[2], error(&refused("/tmp/abs.txt")));
    assert_eq!(played.code, EXIT_FAILED);
}

#[test]
fn a_question_ends_the_turn_and_the_answer_resumes_it() {
    let dir = fixture(
        r#"{"runs": [{"turns": [
        [{"do": "message", "text": "asking"}, {"do": "question", "text": "Which DB?"}, {"do": "message", "text": "never"}],
        [{"do": "echo_input"}]
    ]}]}"#,
    );
    let (events, code) = play_turn(&dir, 0, "plan it");
    assert_eq!(
        events,
        vec![
            session(),
            message("asking"),
            call(
                1,
                "shell",
                json!({"command": "atelier signal question 'Which DB?'"})
            ),
            result(1, "recorded: question Which DB?\n", false),
            usage(51, 40),
            end_ok(),
        ]
    );
    assert_eq!(code, 0);

    let played = play_raw(&dir, 3, 1, Some("s-1"), "Postgres");
    assert_eq!(
        played.events,
        vec![session(), message("Postgres"), usage(52, 30), end_ok()]
    );
    assert_eq!(played.code, 0);
}

#[test]
fn unplayable_scenarios_fail_with_exit_code_2() {
    let dir = fixture(r#"{"runs": [[{"do": "hang"}]]}"#);
    let path = dir.path().join("scenario.json");
    std::fs::write(&path, r#"{"runs": [[{"do": "dance"}]]}"#).unwrap();
    let played = play_raw(&dir, 0, 0, Some("s-1"), "");
    let E::Error { message } = &played.events[1] else {
        panic!("{:?}", played.events)
    };
    assert!(
        message.starts_with(&format!("invalid scenario file {}", path.display())),
        "{message}"
    );
    assert_eq!(
        played.events,
        vec![session(), error(message), end_failed(message)]
    );
    assert_eq!(played.code, EXIT_SCENARIO);
}

#[test]
fn a_fresh_session_gets_a_random_id() {
    let dir = fixture(r#"{"runs": [[{"do": "message", "text": "x"}]]}"#);
    let ids: Vec<String> = (0..2)
        .map(|_| match &play_raw(&dir, 0, 0, None, "").events[0] {
            E::Session { id } => id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    for id in &ids {
        let hex = id.strip_prefix("scripted-").unwrap();
        assert_eq!(hex.len(), 16, "{id}");
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn crash_exits_at_once_with_stderr() {
    let dir = fixture(
        r#"{"runs": [[
        {"do": "message", "text": "before"},
        {"do": "crash", "code": 7, "stderr": "boom\n"},
        {"do": "message", "text": "after"}
    ]]}"#,
    );
    let played = play_raw(&dir, 0, 0, Some("s-1"), "");
    assert_eq!(played.events, vec![session(), message("before")]);
    assert_eq!(played.stderr, "boom\n");
    assert_eq!(played.code, 7);
}

#[test]
fn fail_ends_the_turn_as_failed() {
    let dir = fixture(r#"{"runs": [[{"do": "fail", "error": "nope"}, {"do": "hang"}]]}"#);
    let (events, code) = play_turn(&dir, 0, "");
    assert_eq!(events, vec![session(), usage(50, 30), end_failed("nope")]);
    assert_eq!(code, EXIT_FAILED);
}

#[test]
fn garbage_is_unreadable_to_the_decoder() {
    let dir = fixture(r#"{"runs": [[{"do": "garbage", "lines": 2}]]}"#);
    let played = play_raw(&dir, 0, 0, Some("s-1"), "");
    let mut decoder = ScriptedDecoder::default();
    let decoded: Vec<TranscriptEvent> = played
        .stdout
        .lines()
        .flat_map(|l| decoder.line(l))
        .collect();
    assert_eq!(
        decoded,
        vec![
            session(),
            error("unreadable agent output: garbage line 1: this is not JSON {"),
            error("unreadable agent output: garbage line 2: this is not JSON {"),
            usage(50, 30),
            end_ok(),
        ]
    );
    assert_eq!(decoder.unreadable_lines(), 2);
}

#[test]
fn bursts_fast_and_paced() {
    let dir = fixture(
        r#"{"runs": [[
        {"do": "burst", "count": 3},
        {"do": "sleep", "ms": 1},
        {"do": "burst", "count": 2, "per_second": 1000}
    ]]}"#,
    );
    let (events, code) = play_turn(&dir, 0, "");
    assert_eq!(
        events,
        vec![
            session(),
            message("burst 1"),
            message("burst 2"),
            message("burst 3"),
            message("burst 1"),
            message("burst 2"),
            usage(50, 50),
            end_ok(),
        ]
    );
    assert_eq!(code, 0);
}

#[test]
fn spawn_starts_a_detached_background_process() {
    let dir = fixture(r#"{"runs": [[{"do": "spawn", "command": "exec sleep 300"}]]}"#);
    let (events, code) = play_turn(&dir, 0, "");
    assert_eq!(code, 0);
    let E::ToolResult { output, .. } = &events[2] else {
        panic!("{events:?}")
    };
    let pid: u32 = output
        .strip_prefix("started in the background (pid ")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        events,
        vec![
            session(),
            call(
                1,
                "shell",
                json!({"command": "exec sleep 300", "background": true})
            ),
            result(1, output, false),
            usage(50, 30),
            end_ok(),
        ]
    );
    let stat = crate::process::read_stat(pid).unwrap();
    assert_eq!(stat.session, pid as i32, "leads its own session");
    assert_eq!(crate::process::kill_tree(pid), 1);
}

#[test]
fn quotes_shell_words_for_display() {
    assert_eq!(shell_quote("plan-ready"), "plan-ready");
    assert_eq!(shell_quote("--reason=x"), "--reason=x");
    assert_eq!(shell_quote(""), "''");
    assert_eq!(shell_quote("a b"), "'a b'");
    assert_eq!(shell_quote("it's"), r"'it'\''s'");
}
