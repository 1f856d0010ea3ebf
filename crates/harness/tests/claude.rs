//! Decoding of Claude Code's `stream-json` output: recordings of real runs of Claude Code
//! 2.1.330 against a fake model, each compared whole against its reviewed `insta` snapshot
//! (`snapshots/claude/<name>.snap`, see `support`), and hand-written lines for the cases the
//! recordings do not cover.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use domain::TranscriptEvent;
use harness::Harness;
use harness::claude::ClaudeHarness;
use serde_json::json;

/// Decodes the recording `fixtures/claude/<name>.jsonl` and compares it with its snapshot.
fn check_snapshot(name: &str) -> Vec<TranscriptEvent> {
    support::check_recording(&ClaudeHarness::new("claude"), "claude", name).events
}

fn turn_end(events: &[TranscriptEvent]) -> (bool, Option<String>, bool) {
    match events.last() {
        Some(TranscriptEvent::TurnEnd {
            ok,
            error,
            retryable,
        }) => (*ok, error.clone(), *retryable),
        other => panic!("the last event is not a turn end: {other:?}"),
    }
}

/// Checks that the `Partial` pieces right before each `Message` are exactly its text (what a
/// follower folds into it), and that no partial piece is left without its message; returns
/// how many there were.
fn partials_fold_into_messages(events: &[TranscriptEvent]) -> usize {
    let (mut typed, mut count) = (String::new(), 0);
    for event in events {
        match event {
            TranscriptEvent::Partial { text } => {
                typed.push_str(text);
                count += 1;
            }
            TranscriptEvent::Message { text } => {
                assert!(
                    typed.is_empty() || typed == *text,
                    "typed {typed:?}, message {text:?}"
                );
                typed.clear();
            }
            _ => assert!(
                typed.is_empty(),
                "partial text {typed:?} without its message"
            ),
        }
    }
    count
}

#[test]
fn decodes_a_normal_run_with_partial_messages() {
    let events = check_snapshot("run1-partial");
    // The text was typed live (partial pieces), then came whole: one message.
    assert!(partials_fold_into_messages(&events) > 0);
    let messages: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, TranscriptEvent::Message { .. }))
        .collect();
    assert_eq!(
        messages,
        [&TranscriptEvent::Message {
            text: "done".into()
        }]
    );
    assert_eq!(turn_end(&events), (true, None, false));
}

#[test]
fn decodes_a_resumed_run() {
    let events = check_snapshot("resume");
    // The session's cumulative cost is 0.0018; this turn's share is 0.00045.
    let usage = events
        .iter()
        .find_map(|e| match e {
            TranscriptEvent::Usage {
                input_tokens,
                output_tokens,
                cost_usd,
                cumulative: false,
            } => Some((*input_tokens, *output_tokens, *cost_usd)),
            _ => None,
        })
        .unwrap();
    assert_eq!((usage.0, usage.1), (100, 10));
    assert!((usage.2 - 0.00045).abs() < 1e-12, "{usage:?}");
    assert_eq!(turn_end(&events), (true, None, false));
}

#[test]
fn decodes_a_sigint_abort_as_an_interrupted_turn() {
    let events = check_snapshot("abort-sigint");
    assert_eq!(
        turn_end(&events),
        (
            false,
            Some("the turn was interrupted (aborted_tools)".into()),
            false
        )
    );
}

#[test]
fn decodes_a_sigterm_abort_without_a_turn_end() {
    let events = check_snapshot("abort-sigterm");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, TranscriptEvent::TurnEnd { .. })),
        "SIGTERM leaves no result line: the supervisor reports the exit"
    );
}

#[test]
fn decodes_a_dead_endpoint_as_a_retryable_failure() {
    let events = check_snapshot("dead-port");
    let (ok, error, retryable) = turn_end(&events);
    assert!(!ok);
    assert!(retryable);
    assert!(error.unwrap().contains("ECONNREFUSED"));
}

#[test]
fn decodes_a_long_lived_process_turn_by_turn() {
    let events = check_snapshot("streamin-interrupt");
    let ends: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, TranscriptEvent::TurnEnd { .. }))
        .collect();
    assert_eq!(ends.len(), 3);
    let sessions = events
        .iter()
        .filter(|e| matches!(e, TranscriptEvent::Session { .. }))
        .count();
    assert_eq!(sessions, 1, "the session is announced once per process");
    partials_fold_into_messages(&events);
}

/// Recorded by `crates/cli/tests/recordings.rs` (`UPDATE_RECORDINGS=1`) from the long-lived
/// command this harness builds (`session = "long-lived"`): the prompt and then a follow-up
/// written to one process's stdin, which was then closed.
#[test]
fn decodes_the_live_atelier_long_lived_session() {
    let events = check_snapshot("atelier-long-lived");
    let ends: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, TranscriptEvent::TurnEnd { .. }))
        .collect();
    assert_eq!(ends.len(), 2, "two turns of one process");
    let sessions = events
        .iter()
        .filter(|e| matches!(e, TranscriptEvent::Session { .. }))
        .count();
    assert_eq!(sessions, 1, "the session is announced once per process");
    assert!(events.contains(&TranscriptEvent::FileChange {
        path: "hello.txt".into(),
        kind: "add".into()
    }));
    assert!(partials_fold_into_messages(&events) > 0);
    assert_eq!(turn_end(&events), (true, None, false));
}

/// Recorded by `crates/cli/tests/recordings.rs` (`UPDATE_RECORDINGS=1`) from the command this harness builds (implement stage).
#[test]
fn decodes_the_live_atelier_run() {
    let events = check_snapshot("atelier-run");
    assert!(events.contains(&TranscriptEvent::FileChange {
        path: "hello.txt".into(),
        kind: "add".into()
    }));
    assert_eq!(turn_end(&events), (true, None, false));
}

/// Recorded by `crates/cli/tests/recordings.rs` (`UPDATE_RECORDINGS=1`): SIGINT sent to the process group during a `Bash` call.
#[test]
fn decodes_the_live_atelier_interrupt() {
    let events = check_snapshot("atelier-interrupt");
    assert_eq!(
        turn_end(&events),
        (
            false,
            Some("the turn was interrupted (aborted_tools)".into()),
            false
        )
    );
}

fn decode(lines: &[&str]) -> (Vec<TranscriptEvent>, u64) {
    let mut d = ClaudeHarness::new("claude").decoder();
    let events = lines.iter().flat_map(|l| d.line(l)).collect();
    (events, d.unreadable_lines())
}

#[test]
fn reports_unreadable_lines_and_ignores_unknown_events() {
    let long = "y".repeat(300);
    let (events, unreadable) = decode(&[
        "",
        "Warning: something on stdout",
        r#"{"type":"stream_event","event":{"type":"content_block_delta"}}"#,
        r#"{"type":"control_response","response":{}}"#,
        r#"{"type":"something_new","x":1}"#,
        r#"{"type":"system","subtype":"hook_started"}"#,
        "[1,2]",
        r#"{"no_type":true}"#,
        long.as_str(),
    ]);
    assert_eq!(
        events,
        vec![
            TranscriptEvent::Error {
                message: "unreadable agent output: Warning: something on stdout".into()
            },
            TranscriptEvent::Error {
                message: "unreadable agent output: [1,2]".into()
            },
            TranscriptEvent::Error {
                message: r#"unreadable agent output: {"no_type":true}"#.into()
            },
            TranscriptEvent::Error {
                message: format!("unreadable agent output: {}", "y".repeat(200))
            },
        ]
    );
    assert_eq!(unreadable, 4);
}

#[test]
fn decodes_thinking_files_commands_rate_limits_and_retries() {
    let (events, unreadable) = decode(&[
        r#"{"type":"system","subtype":"init","cwd":"/w/tree","session_id":"s-1"}"#,
        r#"{"type":"system","subtype":"init","cwd":"/w/tree","session_id":"s-1"}"#,
        r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":2,"retry_delay_ms":500,"error_status":529,"error":"overloaded"}"#,
        r#"{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"hmm"},{"type":"redacted_thinking","data":"x"},{"type":"text","text":""},{"type":"tool_use","id":"t1","name":"Write","input":{"file_path":"/w/tree/src/a.rs","content":"x"}}]}}"#,
        r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"File created"}]},"tool_use_result":{"type":"create","filePath":"/w/tree/src/a.rs"}}"#,
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t2","name":"Edit","input":{"file_path":"/elsewhere/b.rs"}}]}}"#,
        r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t2","content":[{"type":"text","text":"edited"},{"type":"image","source":{}}]}]}}"#,
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t3","name":"Bash","input":{"command":"false"}}]}}"#,
        r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t3","content":"Exit code 1\nboom","is_error":true}]}}"#,
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t4","name":"Bash","input":{"command":"serve","run_in_background":true}}]}}"#,
        r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t4","content":"running"},{"type":"text","text":"ignored"}]}}"#,
        r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"unknown","content":"orphan","is_error":true}]}}"#,
        r#"{"type":"user","message":{"content":"a plain string prompt"}}"#,
        r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed_warning","resetsAt":1700000000},"uuid":"u","session_id":"s-1"}"#,
    ]);
    assert_eq!(unreadable, 0);
    assert_eq!(
        events,
        vec![
            TranscriptEvent::Session { id: "s-1".into() },
            TranscriptEvent::Error {
                message: "API request failed (overloaded, HTTP 529); retry 1 of 2 in 500 ms".into()
            },
            TranscriptEvent::Thinking { text: "hmm".into() },
            TranscriptEvent::ToolCall {
                id: Some("t1".into()),
                name: "Write".into(),
                input: json!({"file_path": "/w/tree/src/a.rs", "content": "x"}),
            },
            TranscriptEvent::ToolResult {
                id: Some("t1".into()),
                output: "File created".into(),
                is_error: false,
            },
            TranscriptEvent::FileChange {
                path: "src/a.rs".into(),
                kind: "add".into()
            },
            TranscriptEvent::ToolCall {
                id: Some("t2".into()),
                name: "Edit".into(),
                input: json!({"file_path": "/elsewhere/b.rs"}),
            },
            TranscriptEvent::ToolResult {
                id: Some("t2".into()),
                output: "edited\n[image]".into(),
                is_error: false,
            },
            TranscriptEvent::FileChange {
                path: "/elsewhere/b.rs".into(),
                kind: "modify".into()
            },
            TranscriptEvent::ToolCall {
                id: Some("t3".into()),
                name: "Bash".into(),
                input: json!({"command": "false"}),
            },
            TranscriptEvent::CommandOutput {
                command: "false".into(),
                output: "Exit code 1\nboom".into(),
                exit_code: Some(1),
            },
            TranscriptEvent::ToolCall {
                id: Some("t4".into()),
                name: "Bash".into(),
                input: json!({"command": "serve", "run_in_background": true}),
            },
            TranscriptEvent::CommandOutput {
                command: "serve".into(),
                output: "running".into(),
                exit_code: None,
            },
            TranscriptEvent::ToolResult {
                id: Some("unknown".into()),
                output: "orphan".into(),
                is_error: true,
            },
            TranscriptEvent::RateLimit {
                detail: json!({"status": "allowed_warning", "resetsAt": 1700000000}),
            },
        ]
    );
}

/// The turn end of a failed `result`, after an optional API error message.
fn failed_turn(api_message: Option<&str>, result: serde_json::Value) -> (Option<String>, bool) {
    let mut lines = Vec::new();
    if let Some(m) = api_message {
        lines.push(m.to_string());
    }
    lines.push(result.to_string());
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (events, _) = decode(&refs);
    let (ok, error, retryable) = turn_end(&events);
    assert!(!ok);
    (error, retryable)
}

#[test]
fn classifies_failed_turns() {
    let api_message = |error: &str, status: &str| {
        format!(
            r#"{{"type":"assistant","message":{{"model":"<synthetic>","content":[{{"type":"text","text":"API Error"}}]}},"is_api_error_message":true,"error":"{error}","api_error_status":{status}}}"#
        )
    };
    let api_result = |text: &str| {
        json!({"type": "result", "subtype": "success", "is_error": true, "result": text,
               "terminal_reason": "api_error"})
    };
    // Infrastructure: retried later.
    let overloaded = api_message("overloaded", "529");
    assert_eq!(
        failed_turn(Some(&overloaded), api_result("API Error: 529 overloaded")),
        (Some("API Error: 529 overloaded (api_error)".into()), true)
    );
    let limited = api_message("rate_limit", "null");
    assert!(failed_turn(Some(&limited), api_result("API Error: slow down")).1);
    assert!(failed_turn(None, api_result("API Error: 503 Service Unavailable")).1);
    assert!(failed_turn(None, api_result("API Error: Request timed out")).1);
    // Configuration: not retried.
    let auth = api_message("authentication_failed", "401");
    assert!(!failed_turn(Some(&auth), api_result("API Error: 401 invalid x-api-key")).1);
    let unknown_model = api_message("model_not_found", "null");
    assert!(!failed_turn(Some(&unknown_model), api_result("API Error: no such model")).1);
    assert!(!failed_turn(None, api_result("Invalid API key · Please run /login")).1);
    // Not an API failure at all.
    assert_eq!(
        failed_turn(
            None,
            json!({"type": "result", "subtype": "error_max_turns", "is_error": true,
                   "terminal_reason": "max_turns", "errors": ["[ede_diagnostic] x", "limit 3"]})
        ),
        (
            Some("the agent reached its maximum number of turns: limit 3 (max_turns)".into()),
            false
        )
    );
    assert_eq!(
        failed_turn(
            None,
            json!({"type": "result", "subtype": "success", "is_error": true})
        ),
        (Some("the agent reported an error".into()), false)
    );
}
