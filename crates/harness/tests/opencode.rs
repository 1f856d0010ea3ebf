//! `OpenCodeHarness`'s decoder offline: recorded `opencode run --format json` streams (compared
//! whole with their `insta` snapshots in `snapshots/opencode/`, see `support`), every event kind,
//! error events, unreadable lines and the retryable classification.
//! The command builder and role checks are in `opencode_command.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use domain::TranscriptEvent;
use harness::Harness;
use harness::opencode::{OpenCodeHarness, is_retryable};
use serde_json::{Value, json};

/// Recorded streams: the harness lab's samples (`opencode-*`) and this crate's live runs through
/// `OpenCodeHarness` (`atelier-*`, recorded by `crates/cli/tests/recordings.rs`), with how many turn ends each has
/// (a process stopped by a signal prints none).
const STREAMS: [(&str, usize); 10] = [
    ("opencode-run1", 1),
    ("opencode-resume", 1),
    ("opencode-dead-port", 1),
    ("atelier-run", 1),
    ("atelier-resume", 1),
    ("atelier-abort-sigterm", 0),
    ("atelier-dead-port", 1),
    ("atelier-http-429", 1),
    ("atelier-http-401", 1),
    // Two turns of one long-lived process: the bridge's `opencode serve` events.
    ("atelier-long-lived", 2),
];

/// A hand-written stream's decoding.
#[derive(Debug, PartialEq)]
struct Snapshot {
    events: Vec<TranscriptEvent>,
    unreadable_lines: u64,
}

fn decode_all(lines: &[&str]) -> Snapshot {
    let mut decoder = OpenCodeHarness::new("opencode").decoder();
    let events = lines.iter().flat_map(|l| decoder.line(l)).collect();
    Snapshot {
        events,
        unreadable_lines: decoder.unreadable_lines(),
    }
}

#[test]
fn decodes_recorded_streams() {
    for (name, turn_ends) in STREAMS {
        let got = support::check_recording(&OpenCodeHarness::new("opencode"), "opencode", name);
        let ends = got
            .events
            .iter()
            .filter(|e| matches!(e, TranscriptEvent::TurnEnd { .. }))
            .count();
        assert_eq!(ends, turn_ends, "{name}: turn ends");
    }
}

/// One `run --format json` line of session `ses_1` with `part` (shapes as OpenCode 1.18.33
/// prints them, trimmed).
fn event(kind: &str, part: Value) -> String {
    json!({"type": kind, "timestamp": 1, "sessionID": "ses_1", "part": part}).to_string()
}

fn tool(name: &str, state: Value) -> String {
    event(
        "tool_use",
        json!({"type": "tool", "tool": name, "callID": format!("call_{name}"), "state": state}),
    )
}

#[test]
fn decodes_every_event_kind() {
    let lines = [
        event("step_start", json!({"type": "step-start"})),
        event(
            "reasoning",
            json!({"type": "reasoning", "text": "**Plan** first"}),
        ),
        event("reasoning", json!({"type": "reasoning", "text": " "})),
        event("text", json!({"type": "text", "text": "Looking."})),
        event("text", json!({"type": "text", "text": ""})),
        tool(
            "bash",
            json!({"status": "completed", "input": {"command": "false", "description": "fail"},
                   "output": "", "metadata": {"output": "", "exit": 1}}),
        ),
        tool(
            "bash",
            json!({"status": "completed", "input": {"command": "sleep 9"},
                   "output": "killed", "metadata": {"exit": null}}),
        ),
        tool(
            "bash",
            json!({"status": "error", "input": {"command": "rm -rf /"},
                   "error": "The user rejected permission to use this specific tool call."}),
        ),
        tool(
            "write",
            json!({"status": "completed", "input": {"filePath": "/w/a.txt", "content": "x"},
                   "output": "Wrote file successfully.", "metadata": {"filepath": "/w/a.txt", "exists": true}}),
        ),
        tool(
            "edit",
            json!({"status": "completed",
                   "input": {"filePath": "/w/b.rs", "oldString": "a", "newString": "b"},
                   "output": "Edit applied successfully.", "metadata": {"diff": "…"}}),
        ),
        tool(
            "edit",
            json!({"status": "error", "input": {"filePath": "/w/c.rs", "oldString": "zz", "newString": "y"},
                   "error": "oldString not found in content"}),
        ),
        tool(
            "apply_patch",
            json!({"status": "completed", "input": {"patchText": "*** Begin Patch…"},
            "output": "Success. Updated the following files:\nA n.rs\nM m.rs\nD d.rs\nM t.rs",
            "metadata": {"files": [
                {"filePath": "/w/n.rs", "relativePath": "n.rs", "type": "add"},
                {"filePath": "/w/m.rs", "relativePath": "m.rs", "type": "update"},
                {"filePath": "/w/d.rs", "relativePath": "d.rs", "type": "delete"},
                {"filePath": "/w/f.rs", "relativePath": "t.rs", "type": "move", "movePath": "/w/t.rs"}
            ]}}),
        ),
        tool(
            "task",
            json!({"status": "completed",
                   "input": {"description": "explore", "prompt": "look", "subagent_type": "explore"},
                   "output": "found it"}),
        ),
        event(
            "step_finish",
            json!({"type": "step-finish", "reason": "tool-calls", "cost": 0.25,
                   "tokens": {"total": 170, "input": 100, "output": 10, "reasoning": 5,
                              "cache": {"read": 40, "write": 15}}}),
        ),
        event(
            "step_finish",
            json!({"type": "step-finish", "reason": "length", "tokens": {"input": 1, "output": 2}}),
        ),
        json!({"type": "done", "timestamp": 2, "sessionID": "ses_1", "reason": "idle"}).to_string(),
        event(
            "step_finish",
            json!({"type": "step-finish", "reason": "stop", "cost": 0,
                   "tokens": {"total": 110, "input": 100, "output": 10, "reasoning": 0,
                              "cache": {"write": 0, "read": 0}}}),
        ),
    ];
    let got = decode_all(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    let call = |name: &str, input: Value| TranscriptEvent::ToolCall {
        id: Some(format!("call_{name}")),
        name: name.into(),
        input,
    };
    let result = |name: &str, output: &str, is_error: bool| TranscriptEvent::ToolResult {
        id: Some(format!("call_{name}")),
        output: output.into(),
        is_error,
    };
    let change = |path: &str, kind: &str| TranscriptEvent::FileChange {
        path: path.into(),
        kind: kind.into(),
    };
    let rejected = "The user rejected permission to use this specific tool call.";
    assert_eq!(
        got.events,
        vec![
            TranscriptEvent::Session { id: "ses_1".into() },
            TranscriptEvent::Thinking {
                text: "**Plan** first".into()
            },
            TranscriptEvent::Message {
                text: "Looking.".into()
            },
            call("bash", json!({"command": "false", "description": "fail"})),
            result("bash", "", false),
            TranscriptEvent::CommandOutput {
                command: "false".into(),
                output: String::new(),
                exit_code: Some(1)
            },
            call("bash", json!({"command": "sleep 9"})),
            result("bash", "killed", false),
            TranscriptEvent::CommandOutput {
                command: "sleep 9".into(),
                output: "killed".into(),
                exit_code: None
            },
            call("bash", json!({"command": "rm -rf /"})),
            result("bash", rejected, true),
            call("write", json!({"filePath": "/w/a.txt", "content": "x"})),
            result("write", "Wrote file successfully.", false),
            change("/w/a.txt", "modify"),
            call(
                "edit",
                json!({"filePath": "/w/b.rs", "oldString": "a", "newString": "b"})
            ),
            result("edit", "Edit applied successfully.", false),
            change("/w/b.rs", "modify"),
            call(
                "edit",
                json!({"filePath": "/w/c.rs", "oldString": "zz", "newString": "y"})
            ),
            result("edit", "oldString not found in content", true),
            call("apply_patch", json!({"patchText": "*** Begin Patch…"})),
            result(
                "apply_patch",
                "Success. Updated the following files:\nA n.rs\nM m.rs\nD d.rs\nM t.rs",
                false
            ),
            change("/w/n.rs", "add"),
            change("/w/m.rs", "modify"),
            change("/w/d.rs", "delete"),
            change("/w/f.rs", "delete"),
            change("/w/t.rs", "add"),
            call(
                "task",
                json!({"description": "explore", "prompt": "look", "subagent_type": "explore"})
            ),
            result("task", "found it", false),
            TranscriptEvent::Usage {
                input_tokens: 155,
                output_tokens: 15,
                cost_usd: 0.25,
                cumulative: false,
            },
            TranscriptEvent::Usage {
                input_tokens: 1,
                output_tokens: 2,
                cost_usd: 0.0,
                cumulative: false,
            },
            TranscriptEvent::Error {
                message: "the model stopped its turn early (finish reason `length`)".into()
            },
            TranscriptEvent::Usage {
                input_tokens: 100,
                output_tokens: 10,
                cost_usd: 0.0,
                cumulative: false,
            },
            TranscriptEvent::TurnEnd {
                ok: true,
                error: None,
                retryable: false
            },
        ]
    );
    assert_eq!(got.unreadable_lines, 0);
}

#[test]
fn decodes_error_events() {
    let error = |error: Value| {
        let line = json!({"type": "error", "timestamp": 1, "sessionID": "ses_e", "error": error});
        let mut events = decode_all(&[&line.to_string()]).events;
        assert_eq!(
            events.remove(0),
            TranscriptEvent::Session { id: "ses_e".into() }
        );
        events
    };
    let end = |error: &str, retryable: bool| {
        vec![TranscriptEvent::TurnEnd {
            ok: false,
            error: Some(error.into()),
            retryable,
        }]
    };
    assert_eq!(
        error(
            json!({"name": "APIError", "data": {"message": "Too Many Requests",
                     "statusCode": 429, "isRetryable": true}})
        ),
        end("APIError: Too Many Requests (HTTP 429)", true)
    );
    assert_eq!(
        error(
            json!({"name": "APIError", "data": {"message": "Internal error", "statusCode": 500}})
        ),
        end("APIError: Internal error (HTTP 500)", true)
    );
    assert_eq!(
        error(json!({"name": "APIError", "data": {"message": "Overloaded"}})),
        end("APIError: Overloaded", true)
    );
    assert_eq!(
        error(
            json!({"name": "APIError", "data": {"message": "Unauthorized",
                     "statusCode": 401, "isRetryable": false}})
        ),
        end("APIError: Unauthorized (HTTP 401)", false)
    );
    assert_eq!(
        error(
            json!({"name": "ProviderAuthError", "data": {"providerID": "anthropic",
                     "message": "missing key"}})
        ),
        end("ProviderAuthError: missing key", false)
    );
    assert_eq!(
        error(
            json!({"name": "UnknownError", "data": {"message": "Unexpected server error. Check server logs for details.", "ref": "err_1"}})
        ),
        end(
            "UnknownError: Unexpected server error. Check server logs for details.",
            false
        )
    );
    assert_eq!(
        error(json!({"name": "MessageAbortedError"})),
        end("MessageAbortedError", false)
    );
    assert_eq!(error(json!("boom")), end("boom", false));
    assert_eq!(
        error(json!({"message": "connect ECONNREFUSED 127.0.0.1:9"})),
        end("connect ECONNREFUSED 127.0.0.1:9", true)
    );
    assert_eq!(error(json!({"code": 7})), end(r#"{"code":7}"#, false));
}

/// One `opencode serve` event as the bridge forwards it.
fn serve(kind: &str, properties: Value) -> String {
    json!({"id": "evt_1", "type": kind, "properties": properties}).to_string()
}

#[test]
fn decodes_a_long_lived_sessions_events() {
    let part = |p: Value| {
        serve(
            "message.part.updated",
            json!({"sessionID": "ses_1", "part": p}),
        )
    };
    let lines = [
        json!({"type": "bridge.session", "sessionID": "ses_1"}).to_string(),
        // The prompt's own part is the user's, not the agent's.
        serve(
            "message.updated",
            json!({"sessionID": "ses_1", "info": {"id": "msg_u", "role": "user"}}),
        ),
        part(json!({"id": "prt_u", "messageID": "msg_u", "type": "text", "text": "Do it."})),
        part(json!({"id": "prt_t", "messageID": "msg_a", "type": "text", "text": "", "time": {"start": 1}})),
        serve(
            "message.part.delta",
            json!({"sessionID": "ses_1", "messageID": "msg_a", "partID": "prt_t", "field": "text", "delta": "Do"}),
        ),
        serve(
            "message.part.delta",
            json!({"sessionID": "ses_1", "messageID": "msg_a", "partID": "prt_t", "field": "text", "delta": "ne."}),
        ),
        part(json!({"id": "prt_t", "messageID": "msg_a", "type": "text", "text": "Done.", "time": {"start": 1, "end": 2}})),
        part(json!({"id": "prt_r", "messageID": "msg_a", "type": "reasoning", "text": "Hm.", "time": {"start": 1, "end": 2}})),
        // A running tool is told once it has finished.
        part(json!({"id": "prt_b", "messageID": "msg_a", "type": "tool", "tool": "bash", "callID": "call_1",
                    "state": {"status": "running", "input": {"command": "ls"}}})),
        part(json!({"id": "prt_b", "messageID": "msg_a", "type": "tool", "tool": "bash", "callID": "call_1",
                    "state": {"status": "completed", "input": {"command": "ls"}, "output": "a\n", "metadata": {"exit": 0}}})),
        part(json!({"id": "prt_f", "messageID": "msg_a", "type": "step-finish", "reason": "stop",
                    "tokens": {"input": 10, "output": 2, "reasoning": 1, "cache": {"read": 5, "write": 0}}, "cost": 0.5})),
        // Another session's events are not this run's.
        serve("session.idle", json!({"sessionID": "ses_other"})),
        serve(
            "session.status",
            json!({"sessionID": "ses_1", "status": {"type": "retry", "attempt": 2, "message": "overloaded", "next": 5}}),
        ),
        serve("session.idle", json!({"sessionID": "ses_1"})),
        // Turn 2: refused permission, then an error ends it at idle.
        serve(
            "permission.asked",
            json!({"sessionID": "ses_1", "id": "per_1", "permission": "external_directory", "patterns": ["/etc/*"]}),
        ),
        serve(
            "session.error",
            json!({"sessionID": "ses_1", "error": {"name": "APIError", "data": {"message": "Bad Gateway", "statusCode": 502}}}),
        ),
        serve("session.idle", json!({"sessionID": "ses_1"})),
        json!({"type": "bridge.error", "message": "OpenCode did not take the turn: HTTP 400", "turn": true}).to_string(),
        serve("message.part.updated", json!({"sessionID": "ses_1"})),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let got = decode_all(&lines);
    let usage = TranscriptEvent::Usage {
        input_tokens: 15,
        output_tokens: 3,
        cost_usd: 0.5,
        cumulative: false,
    };
    assert_eq!(
        got,
        Snapshot {
            events: vec![
                TranscriptEvent::Session { id: "ses_1".into() },
                TranscriptEvent::Partial { text: "Do".into() },
                TranscriptEvent::Partial { text: "ne.".into() },
                TranscriptEvent::Message {
                    text: "Done.".into()
                },
                TranscriptEvent::Thinking { text: "Hm.".into() },
                TranscriptEvent::ToolCall {
                    id: Some("call_1".into()),
                    name: "bash".into(),
                    input: json!({"command": "ls"}),
                },
                TranscriptEvent::ToolResult {
                    id: Some("call_1".into()),
                    output: "a\n".into(),
                    is_error: false,
                },
                TranscriptEvent::CommandOutput {
                    command: "ls".into(),
                    output: "a\n".into(),
                    exit_code: Some(0),
                },
                usage,
                TranscriptEvent::Status {
                    text: "OpenCode retries the model request (attempt 2): overloaded".into(),
                },
                TranscriptEvent::TurnEnd {
                    ok: true,
                    error: None,
                    retryable: false,
                },
                TranscriptEvent::Error {
                    message:
                        "OpenCode asked for the `external_directory` permission [\"/etc/*\"]: \
                              the agent runs unattended, so it was refused"
                            .into(),
                },
                TranscriptEvent::TurnEnd {
                    ok: false,
                    error: Some("APIError: Bad Gateway (HTTP 502)".into()),
                    retryable: true,
                },
                TranscriptEvent::TurnEnd {
                    ok: false,
                    error: Some("OpenCode did not take the turn: HTTP 400".into()),
                    retryable: false,
                },
                TranscriptEvent::Error {
                    message: format!(
                        "unreadable agent output: {}",
                        serve("message.part.updated", json!({"sessionID": "ses_1"}))
                    ),
                },
            ],
            unreadable_lines: 1,
        }
    );
}

/// A turn OpenCode ends without running it (its prompt recorded, the session busy then idle,
/// no assistant message: seen when the prompt came while its instance was being disposed of)
/// fails, retryable, instead of passing as a turn that did nothing; the next turn that answers
/// ends well again.
#[test]
fn a_turn_that_went_idle_without_an_answer_failed_and_is_retried() {
    let user = |id: &str| {
        serve(
            "message.updated",
            json!({"sessionID": "ses_1", "info": {"id": id, "role": "user"}}),
        )
    };
    let busy = serve(
        "session.status",
        json!({"sessionID": "ses_1", "status": {"type": "busy"}}),
    );
    let idle = serve("session.idle", json!({"sessionID": "ses_1"}));
    let lines = [
        json!({"type": "bridge.session", "sessionID": "ses_1"}).to_string(),
        user("msg_u1"),
        serve(
            "message.part.updated",
            json!({"sessionID": "ses_1", "part": {"id": "prt_u", "messageID": "msg_u1", "type": "text", "text": "Do it."}}),
        ),
        busy.clone(),
        idle.clone(),
        user("msg_u2"),
        busy,
        serve(
            "message.updated",
            json!({"sessionID": "ses_1", "info": {"id": "msg_a", "role": "assistant"}}),
        ),
        idle.clone(),
        // An idle with no prompt since (OpenCode's abort of a session that is not busy) ends a
        // turn as before, not as a dropped prompt.
        idle,
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let got = decode_all(&lines);
    let ends: Vec<&TranscriptEvent> = got
        .events
        .iter()
        .filter(|e| matches!(e, TranscriptEvent::TurnEnd { .. }))
        .collect();
    assert_eq!(
        ends,
        [
            &TranscriptEvent::TurnEnd {
                ok: false,
                error: Some(
                    "OpenCode ended the turn without answering it: it dropped the prompt (no \
                     assistant message)"
                        .into()
                ),
                retryable: true,
            },
            &TranscriptEvent::TurnEnd {
                ok: true,
                error: None,
                retryable: false,
            },
            &TranscriptEvent::TurnEnd {
                ok: true,
                error: None,
                retryable: false,
            },
        ]
    );
}

#[test]
fn counts_unreadable_lines() {
    let long = "y".repeat(300);
    let session = event("step_start", json!({"type": "step-start"}));
    let crlf = format!("{}\r", event("text", json!({"type": "text", "text": "hi"})));
    let lines = [
        "",
        "  ",
        "not json",
        session.as_str(),
        r#"{"type":"text","sessionID":"ses_2","part":{"type":"text"}}"#,
        r#"{"type":"tool_use","part":{"tool":"bash"}}"#,
        r#"{"type":"step_finish"}"#,
        "[1,2]",
        r#"{"no":"type"}"#,
        r#"{"type":"session.updated","properties":{}}"#,
        long.as_str(),
        crlf.as_str(),
    ];
    let got = decode_all(&lines);
    let unreadable = |start: &str| TranscriptEvent::Error {
        message: format!("unreadable agent output: {start}"),
    };
    assert_eq!(
        got.events,
        vec![
            unreadable("not json"),
            TranscriptEvent::Session { id: "ses_1".into() },
            unreadable(r#"{"type":"text","sessionID":"ses_2","part":{"type":"text"}}"#),
            unreadable(r#"{"type":"tool_use","part":{"tool":"bash"}}"#),
            unreadable(r#"{"type":"step_finish"}"#),
            unreadable("[1,2]"),
            unreadable(r#"{"no":"type"}"#),
            unreadable(&"y".repeat(200)),
            TranscriptEvent::Message { text: "hi".into() },
        ]
    );
    assert_eq!(got.unreadable_lines, 7);
}

#[test]
fn classifies_infrastructure_failures_as_retryable() {
    for message in [
        "Cannot connect to API: Unable to connect. Is the computer able to access the url?",
        "connect ECONNREFUSED 127.0.0.1:18099",
        "Connection refused",
        "Overloaded",
        "Rate limit exceeded",
        "Too Many Requests",
        "request failed with status 503",
        "HTTP 502 from upstream",
        "status code 429",
        "socket hang up",
        "The operation timed out.",
    ] {
        assert!(is_retryable(message), "{message}");
    }
    for message in [
        "Unauthorized",
        "HTTP 401",
        "status 404",
        "Model not found: nosuch/model.",
        "ProviderAuthError: missing key",
        "context length 5000 exceeded",
    ] {
        assert!(!is_retryable(message), "{message}");
    }
}
