//! `CodexHarness`'s decoder offline: recorded `codex exec --json` streams (compared whole with
//! their `insta` snapshots in `snapshots/codex/`, see `support`), every item kind, unreadable
//! lines, and which failures are retryable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use domain::TranscriptEvent;
use harness::Harness;
use harness::codex::{CodexHarness, is_retryable};
use serde_json::{Value, json};

/// Recorded streams: the harness lab's samples (`codex-exec-*`) and this crate's live runs
/// through `CodexHarness` (`atelier-*`, recorded by `crates/cli/tests/recordings.rs`).
const STREAMS: [&str; 12] = [
    "codex-exec-run1",
    "codex-exec-resume",
    "codex-exec-abort-sigterm",
    "codex-exec-dead-port",
    "atelier-run",
    "atelier-resume",
    "atelier-abort-sigint",
    "atelier-dead-port",
    "atelier-http-429",
    "atelier-http-500",
    "atelier-http-503",
    "atelier-http-401",
];

/// A hand-written stream's decoding.
#[derive(Debug, PartialEq)]
struct Snapshot {
    events: Vec<TranscriptEvent>,
    unreadable_lines: u64,
}

fn decode_all(lines: &[&str]) -> Snapshot {
    let mut decoder = CodexHarness::new("codex").decoder();
    let events = lines.iter().flat_map(|l| decoder.line(l)).collect();
    Snapshot {
        events,
        unreadable_lines: decoder.unreadable_lines(),
    }
}

#[test]
fn decodes_recorded_streams() {
    for name in STREAMS {
        support::check_recording(&CodexHarness::new("codex"), "codex", name);
    }
}

#[test]
fn decodes_every_item_kind() {
    let lines = [
        r#"{"type":"thread.started","thread_id":"t-1"}"#,
        r#"{"type":"turn.started"}"#,
        r#"{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"**Plan** first"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_1","type":"reasoning","text":""}}"#,
        r#"{"type":"item.started","item":{"id":"item_2","type":"todo_list","items":[{"text":"a","completed":false}]}}"#,
        r#"{"type":"item.updated","item":{"id":"item_2","type":"todo_list","items":[{"text":"a","completed":true}]}}"#,
        r#"{"type":"item.started","item":{"id":"item_3","type":"mcp_tool_call","server":"docs","tool":"search","arguments":{"q":"x"},"result":null,"error":null,"status":"in_progress"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_3","type":"mcp_tool_call","server":"docs","tool":"search","arguments":{"q":"x"},"result":{"content":[{"type":"text","text":"found"},{"type":"image","data":"AA","mimeType":"image/png"}],"structured_content":null},"error":null,"status":"completed"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_4","type":"mcp_tool_call","server":"docs","tool":"get","arguments":null,"result":null,"error":{"message":"no such doc"},"status":"failed"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_5","type":"mcp_tool_call","server":"db","tool":"q","arguments":{},"result":{"content":[],"structured_content":{"rows":1}},"status":"completed"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_6","type":"web_search","query":"rust 2024","action":{"type":"search"}}}"#,
        r#"{"type":"item.completed","item":{"id":"item_7","type":"command_execution","command":"rm -rf /","aggregated_output":"","exit_code":null,"status":"declined"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_8","type":"file_change","changes":[{"path":"a.rs","kind":"update"},{"path":"b.rs","kind":"delete"}],"status":"completed"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_9","type":"file_change","changes":[{"path":"c.rs","kind":"add"}],"status":"failed"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_10","type":"error","message":"model warning"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_11","type":"collab_tool_call","tool":"spawn"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_2","type":"todo_list","items":[{"text":"a","completed":true}]}}"#,
        r#"{"type":"thread.title","title":"new in a later version"}"#,
        r#"{"type":"turn.completed","usage":{"input_tokens":1200,"cached_input_tokens":200,"output_tokens":345}}"#,
    ];
    let call = |id: &str, name: &str, input: Value| TranscriptEvent::ToolCall {
        id: Some(id.into()),
        name: name.into(),
        input,
    };
    let result = |id: &str, output: &str, is_error: bool| TranscriptEvent::ToolResult {
        id: Some(id.into()),
        output: output.into(),
        is_error,
    };
    let change = |path: &str, kind: &str| TranscriptEvent::FileChange {
        path: path.into(),
        kind: kind.into(),
    };
    let todo = |done: bool| json!({"items": [{"text": "a", "completed": done}]});
    let image = r#"{"data":"AA","mimeType":"image/png","type":"image"}"#;
    assert_eq!(
        decode_all(&lines),
        Snapshot {
            events: vec![
                TranscriptEvent::Session { id: "t-1".into() },
                TranscriptEvent::Thinking {
                    text: "**Plan** first".into()
                },
                call("item_2", "todo_list", todo(false)),
                call("item_2", "todo_list", todo(true)),
                call("item_3", "mcp__docs__search", json!({"q": "x"})),
                result("item_3", &format!("found\n{image}"), false),
                call("item_4", "mcp__docs__get", Value::Null),
                result("item_4", "no such doc", true),
                call("item_5", "mcp__db__q", json!({})),
                result("item_5", r#"{"rows":1}"#, false),
                call(
                    "item_6",
                    "web_search",
                    json!({"query": "rust 2024", "action": {"type": "search"}})
                ),
                call("item_7", "shell", json!({"command": "rm -rf /"})),
                TranscriptEvent::CommandOutput {
                    command: "rm -rf /".into(),
                    output: String::new(),
                    exit_code: None
                },
                change("a.rs", "update"),
                change("b.rs", "delete"),
                TranscriptEvent::Error {
                    message: "file change failed: c.rs".into()
                },
                TranscriptEvent::Error {
                    message: "model warning".into()
                },
                TranscriptEvent::Usage {
                    input_tokens: 1200,
                    output_tokens: 345,
                    cost_usd: 0.0,
                    cumulative: true,
                },
                TranscriptEvent::TurnEnd {
                    ok: true,
                    error: None,
                    retryable: false
                },
            ],
            unreadable_lines: 0,
        }
    );
}

#[test]
fn counts_unreadable_lines() {
    let long = "y".repeat(300);
    let lines = [
        "",
        "  ",
        "WARNING: not json",
        "[1,2]",
        r#"{"no_type":1}"#,
        r#"{"type":"thread.started"}"#,
        r#"{"type":"item.completed","item":{"id":"i","type":"command_execution"}}"#,
        long.as_str(),
        "{\"type\":\"error\",\"message\":\"Reconnecting... 1/2\"}\r",
        r#"{"type":"turn.failed","error":{"message":"Missing environment variable: `K`."}}"#,
    ];
    let unreadable = |start: &str| TranscriptEvent::Error {
        message: format!("unreadable agent output: {start}"),
    };
    assert_eq!(
        decode_all(&lines),
        Snapshot {
            events: vec![
                unreadable("WARNING: not json"),
                unreadable("[1,2]"),
                unreadable(r#"{"no_type":1}"#),
                unreadable(r#"{"type":"thread.started"}"#),
                unreadable(lines[6]),
                unreadable(&"y".repeat(200)),
                TranscriptEvent::Error {
                    message: "Reconnecting... 1/2".into()
                },
                TranscriptEvent::TurnEnd {
                    ok: false,
                    error: Some("Missing environment variable: `K`.".into()),
                    retryable: false
                },
            ],
            unreadable_lines: 6,
        }
    );
}

#[test]
fn classifies_infrastructure_failures_as_retryable() {
    for message in [
        "Connection failed: error sending request",
        "stream disconnected before completion: idle timeout waiting for SSE",
        "exceeded retry limit, last status: 429 Too Many Requests",
        "unexpected status 503 Service Unavailable: x, url: http://h/v1/responses",
        "unexpected status 529 <unknown status code>: overloaded_error",
        "We’re currently experiencing high demand, which may cause temporary errors.",
        "Selected model is at capacity. Please try a different model.",
        "You've hit your usage limit. Try again at 3:00 PM.",
        "error trying to connect: tcp connect error: Connection refused (os error 111)",
    ] {
        assert!(is_retryable(message), "{message}");
    }
    for message in [
        "unexpected status 401 Unauthorized: fake failure 401, url: http://127.0.0.1:5000/v1",
        r#"{"error": {"message": "fake failure 400", "type": "invalid_request_error"}}"#,
        "Missing environment variable: `ATELIER_CODEX_API_KEY`.",
        "Quota exceeded. Check your plan and billing details.",
        "Codex ran out of room in the model's context window.",
        "wrote 500 lines; status 42",
    ] {
        assert!(!is_retryable(message), "{message}");
    }
}
