//! `CodexHarness`'s decoder offline: recorded `codex exec --json` streams and a long-lived
//! session's bridge output (compared whole with their `insta` snapshots in `snapshots/codex/`,
//! see `support`), every item kind and app-server notification, unreadable lines, and which
//! failures are retryable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use domain::TranscriptEvent;
use harness::Harness;
use harness::codex::{CodexHarness, is_retryable};
use serde_json::{Value, json};

/// Recorded streams: the harness lab's samples (`codex-exec-*`) and this crate's live runs
/// through `CodexHarness` (`atelier-*`, recorded by `crates/cli/tests/recordings.rs`;
/// `atelier-long-lived` is two turns of one `codex app-server` behind `atelier codex-bridge`).
const STREAMS: [&str; 13] = [
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
    "atelier-long-lived",
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

/// A long-lived session's line: a notification of the bridge's stdout.
fn note(method: &str, params: Value) -> String {
    json!({"method": method, "params": params}).to_string()
}

fn item(phase: &str, item: Value) -> String {
    note(
        &format!("item/{phase}"),
        json!({"item": item, "threadId": "t-1", "turnId": "u-1"}),
    )
}

#[test]
fn decodes_every_app_server_notification_of_a_long_lived_session() {
    let usage = |input: u64, output: u64| {
        note(
            "thread/tokenUsage/updated",
            json!({"threadId": "t-1", "turnId": "u-1", "tokenUsage": {
                "total": {"totalTokens": input + output, "inputTokens": input, "cachedInputTokens": 0, "outputTokens": output, "reasoningOutputTokens": 0},
                "last": {"totalTokens": 1, "inputTokens": 1, "cachedInputTokens": 0, "outputTokens": 0, "reasoningOutputTokens": 0}}}),
        )
    };
    let shell = |status: &str, output: Value, code: Value| {
        json!({"type": "commandExecution", "id": "call_1", "command": "/bin/bash -lc ls", "cwd": "/w",
               "commandActions": [], "status": status, "aggregatedOutput": output, "exitCode": code})
    };
    let turn = |status: &str, error: Value| {
        note(
            "turn/completed",
            json!({"threadId": "t-1", "turn": {"id": "u-1", "items": [], "status": status, "error": error}}),
        )
    };
    let lines = [
        note(
            "atelier/session",
            json!({"threadId": "t-1", "resumed": false}),
        ),
        note(
            "turn/started",
            json!({"threadId": "t-1", "turn": {"id": "u-1", "items": [], "status": "inProgress"}}),
        ),
        item(
            "started",
            json!({"type": "userMessage", "id": "m-0", "content": []}),
        ),
        item(
            "completed",
            json!({"type": "reasoning", "id": "r-1", "summary": ["**Plan**"], "content": ["first"]}),
        ),
        item("completed", json!({"type": "reasoning", "id": "r-2"})),
        note(
            "turn/plan/updated",
            json!({"threadId": "t-1", "turnId": "u-1", "plan": [{"step": "a", "status": "pending"}]}),
        ),
        item("started", shell("inProgress", Value::Null, Value::Null)),
        note(
            "item/commandExecution/outputDelta",
            json!({"itemId": "call_1", "delta": "a\n"}),
        ),
        item("completed", shell("completed", json!("a\n"), json!(0))),
        item(
            "started",
            json!({"type": "fileChange", "id": "call_2", "status": "inProgress",
            "changes": [{"path": "/w/a.rs", "kind": {"type": "update", "move_path": null}, "diff": "-x\n+y\n"}]}),
        ),
        item(
            "completed",
            json!({"type": "fileChange", "id": "call_2", "status": "completed",
            "changes": [{"path": "/w/a.rs", "kind": {"type": "update", "move_path": null}, "diff": "-x\n+y\n"},
                        {"path": "/w/b.rs", "kind": {"type": "delete"}, "diff": ""}]}),
        ),
        item(
            "completed",
            json!({"type": "fileChange", "id": "call_3", "status": "declined",
            "changes": [{"path": "/w/c.rs", "kind": {"type": "add"}, "diff": "z"}]}),
        ),
        item(
            "started",
            json!({"type": "mcpToolCall", "id": "call_4", "server": "docs", "tool": "search",
            "arguments": {"q": "x"}, "status": "inProgress"}),
        ),
        item(
            "completed",
            json!({"type": "mcpToolCall", "id": "call_4", "server": "docs", "tool": "search",
            "arguments": {"q": "x"}, "status": "completed", "result": {"content": [{"type": "text", "text": "found"}]}}),
        ),
        item(
            "completed",
            json!({"type": "mcpToolCall", "id": "call_5", "server": "docs", "tool": "get",
            "arguments": null, "status": "failed", "error": {"message": "no such doc"}}),
        ),
        item(
            "completed",
            json!({"type": "dynamicToolCall", "id": "call_6", "tool": "lookup", "arguments": {"k": 1},
            "status": "completed", "success": false, "contentItems": [{"type": "inputText", "text": "nope"}]}),
        ),
        item(
            "completed",
            json!({"type": "webSearch", "id": "ws_7", "query": "rust 2024", "action": {"type": "search"}}),
        ),
        item(
            "completed",
            json!({"type": "collabAgentToolCall", "id": "c-8", "tool": "spawnAgent", "status": "completed",
            "senderThreadId": "t-1", "receiverThreadIds": [], "agentsStates": {}}),
        ),
        note(
            "error",
            json!({"threadId": "t-1", "turnId": "u-1", "willRetry": true,
            "error": {"message": "Reconnecting... 1/2", "additionalDetails": "stream closed"}}),
        ),
        note(
            "atelier/error",
            json!({"message": "Codex asked `item/tool/call`: refused"}),
        ),
        item(
            "started",
            json!({"type": "agentMessage", "id": "msg_9", "text": ""}),
        ),
        note(
            "item/agentMessage/delta",
            json!({"threadId": "t-1", "turnId": "u-1", "itemId": "msg_9", "delta": "Do"}),
        ),
        note(
            "item/agentMessage/delta",
            json!({"threadId": "t-1", "turnId": "u-1", "itemId": "msg_9", "delta": ""}),
        ),
        note(
            "item/agentMessage/delta",
            json!({"threadId": "t-1", "turnId": "u-1", "itemId": "msg_9", "delta": "ne."}),
        ),
        item(
            "completed",
            json!({"type": "agentMessage", "id": "msg_9", "text": "Done."}),
        ),
        usage(1200, 345),
        note("thread/newInALaterVersion", json!({"x": 1})),
        turn("completed", Value::Null),
        // Turn 2 of the same process: interrupted (its usage is the thread's running total).
        usage(2000, 400),
        turn("interrupted", Value::Null),
        // Turn 3: a dead endpoint, by Codex's error kind; turn 4: a bad key; turn 5 never started.
        turn(
            "failed",
            json!({"message": "Connection failed: error sending request",
            "codexErrorInfo": {"httpConnectionFailed": {"httpStatusCode": null}}}),
        ),
        turn(
            "failed",
            json!({"message": "unexpected status 401 Unauthorized", "codexErrorInfo": "unauthorized"}),
        ),
        turn(
            "failed",
            json!({"message": "exceeded retry limit", "codexErrorInfo": "serverOverloaded"}),
        ),
        note(
            "atelier/turnFailed",
            json!({"message": "Codex did not start the turn: thread not found"}),
        ),
        // A server request on the bridge's stdout is not the transcript's.
        json!({"id": 7, "method": "item/tool/requestUserInput", "params": {}}).to_string(),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let call = |id: Option<&str>, name: &str, input: Value| TranscriptEvent::ToolCall {
        id: id.map(Into::into),
        name: name.into(),
        input,
    };
    let result = |id: &str, output: &str, is_error: bool| TranscriptEvent::ToolResult {
        id: Some(id.into()),
        output: output.into(),
        is_error,
    };
    let end = |ok: bool, error: Option<&str>, retryable: bool| TranscriptEvent::TurnEnd {
        ok,
        error: error.map(Into::into),
        retryable,
    };
    let usage = |input_tokens, output_tokens| TranscriptEvent::Usage {
        input_tokens,
        output_tokens,
        cost_usd: 0.0,
        cumulative: true,
    };
    assert_eq!(
        decode_all(&lines),
        Snapshot {
            events: vec![
                TranscriptEvent::Session { id: "t-1".into() },
                TranscriptEvent::Thinking {
                    text: "**Plan**\n\nfirst".into()
                },
                call(
                    None,
                    "todo_list",
                    json!({"items": [{"step": "a", "status": "pending"}]})
                ),
                call(
                    Some("call_1"),
                    "shell",
                    json!({"command": "/bin/bash -lc ls"})
                ),
                TranscriptEvent::CommandOutput {
                    command: "/bin/bash -lc ls".into(),
                    output: "a\n".into(),
                    exit_code: Some(0)
                },
                TranscriptEvent::FileChange {
                    path: "/w/a.rs".into(),
                    kind: "update".into()
                },
                TranscriptEvent::FileChange {
                    path: "/w/b.rs".into(),
                    kind: "delete".into()
                },
                TranscriptEvent::Error {
                    message: "file change declined: /w/c.rs".into()
                },
                call(Some("call_4"), "mcp__docs__search", json!({"q": "x"})),
                result("call_4", "found", false),
                call(Some("call_5"), "mcp__docs__get", Value::Null),
                result("call_5", "no such doc", true),
                call(Some("call_6"), "lookup", json!({"k": 1})),
                result("call_6", "nope", true),
                call(
                    Some("ws_7"),
                    "web_search",
                    json!({"query": "rust 2024", "action": {"type": "search"}})
                ),
                TranscriptEvent::Error {
                    message: "Reconnecting... 1/2 (stream closed)".into()
                },
                TranscriptEvent::Error {
                    message: "Codex asked `item/tool/call`: refused".into()
                },
                TranscriptEvent::Partial { text: "Do".into() },
                TranscriptEvent::Partial { text: "ne.".into() },
                TranscriptEvent::Message {
                    text: "Done.".into()
                },
                usage(1200, 345),
                end(true, None, false),
                usage(2000, 400),
                end(false, Some("the turn was interrupted"), false),
                usage(2000, 400),
                end(
                    false,
                    Some("Connection failed: error sending request"),
                    true
                ),
                usage(2000, 400),
                end(false, Some("unexpected status 401 Unauthorized"), false),
                usage(2000, 400),
                end(false, Some("exceeded retry limit"), true),
                end(
                    false,
                    Some("Codex did not start the turn: thread not found"),
                    false
                ),
            ],
            unreadable_lines: 0,
        }
    );
}

#[test]
fn counts_app_server_notifications_without_their_fields_as_unreadable() {
    let lines = [
        note("atelier/session", json!({})),
        note(
            "item/completed",
            json!({"item": {"type": "agentMessage", "id": "m"}}),
        ),
        note("turn/completed", json!({"threadId": "t"})),
        note("item/agentMessage/delta", json!({"delta": 3})),
        note("thread/tokenUsage/updated", json!({"tokenUsage": {}})),
        // Unknown notifications and item types are fine.
        note("skills/changed", json!({})),
        item("completed", json!({"type": "imageGeneration", "id": "g"})),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let decoded = decode_all(&lines);
    assert_eq!(decoded.unreadable_lines, 5, "{:?}", decoded.events);
    assert_eq!(decoded.events.len(), 5);
}
