//! The Anthropic Messages API as Claude Code uses it: `POST /v1/messages?beta=true`, streamed
//! as SSE (`message_start`, `content_block_start/delta/stop` for text, thinking and tool_use with
//! `input_json_delta`, `message_delta` with the stop reason and usage, `message_stop`), or one
//! JSON message when `stream` is false; plus the error shape.

use crate::conversation::{Conversation, OfferedTool, ToolKind, str_of, texts};
use crate::play::{Answer, Part, Tail};
use crate::stream::{Chunk, Out, Render, pieces};
use crate::vocab::ToolCall;
use serde_json::{Value, json};

/// Reads a Messages request.
pub fn conversation(body: &Value, body_len: usize) -> Conversation {
    let mut conv = Conversation {
        model: str_of(body, "model").map(str::to_string),
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        body_len,
        ..Conversation::default()
    };
    if let Some(system) = body.get("system") {
        for text in texts(system) {
            conv.push_system(text);
        }
    }
    for message in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let content = message.get("content").unwrap_or(&Value::Null);
        match str_of(message, "role") {
            Some("user") => {
                let has_result = content.as_array().is_some_and(|parts| {
                    parts
                        .iter()
                        .any(|p| str_of(p, "type") == Some("tool_result"))
                });
                let parts: Vec<&str> = match content {
                    Value::Array(parts) => parts
                        .iter()
                        .filter(|p| str_of(p, "type").is_none_or(|t| t == "text"))
                        .filter_map(|p| str_of(p, "text"))
                        .collect(),
                    other => texts(other),
                };
                conv.push_user(&parts, has_result);
            }
            Some("assistant") => {
                let calls = content.as_array().map_or(0, |parts| {
                    parts
                        .iter()
                        .filter(|p| str_of(p, "type") == Some("tool_use"))
                        .count()
                });
                conv.push_calls(calls);
            }
            _ => {}
        }
    }
    conv.tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| str_of(t, "name"))
        .map(|name| OfferedTool {
            name: name.to_string(),
            kind: ToolKind::Json,
        })
        .collect();
    conv
}

/// Renders `answer` (with its tool call already in Claude Code's vocabulary).
pub fn render(answer: &Answer, call: Option<&ToolCall>, r: &Render) -> Out {
    let id = r.ids.make("msg_");
    let mut blocks = Vec::new();
    for part in &answer.parts {
        match part {
            Part::Text(text) => blocks.push(json!({"type": "text", "text": text})),
            Part::Thinking(text) => {
                blocks.push(json!({"type": "thinking", "thinking": text, "signature": SIGNATURE}))
            }
            Part::Pause(_) => {}
        }
    }
    let tool_block = call.map(|c| {
        json!({"type": "tool_use", "id": r.ids.make("toolu_"), "name": c.name, "input": c.input.to_json()})
    });
    let stop = if call.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    let usage = json!({
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    });
    if !r.stream {
        let message = json!({
            "id": id, "type": "message", "role": "assistant", "model": r.model,
            "content": blocks.iter().chain(tool_block.iter()).collect::<Vec<_>>(),
            "stop_reason": stop, "stop_sequence": null, "usage": usage,
        });
        return Out::whole(&message, answer);
    }

    let mut out = Out::sse(answer.pacing);
    let mut start_usage = usage.clone();
    start_usage["output_tokens"] = json!(1);
    out.event(
        "message_start",
        &json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": r.model, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
    );
    out.event("ping", &json!({"type": "ping"}));
    let mut index = 0;
    for part in &answer.parts {
        match part {
            Part::Pause(pause) => out.push(Chunk::Pause(*pause)),
            Part::Text(text) => {
                block(
                    &mut out,
                    index,
                    json!({"type": "text", "text": ""}),
                    |out| {
                        for piece in pieces(text) {
                            delta(out, index, json!({"type": "text_delta", "text": piece}));
                        }
                    },
                );
                index += 1;
            }
            Part::Thinking(text) => {
                let start = json!({"type": "thinking", "thinking": "", "signature": ""});
                block(&mut out, index, start, |out| {
                    for piece in pieces(text) {
                        delta(
                            out,
                            index,
                            json!({"type": "thinking_delta", "thinking": piece}),
                        );
                    }
                    delta(
                        out,
                        index,
                        json!({"type": "signature_delta", "signature": SIGNATURE}),
                    );
                });
                index += 1;
            }
        }
    }
    match (&answer.tail, tool_block) {
        (Tail::Hang, _) => return out.ended_by(Chunk::Hang),
        (Tail::Cut, _) => return out.ended_by(Chunk::Cut),
        (_, Some(tool)) => {
            let mut start = tool.clone();
            start["input"] = json!({});
            block(&mut out, index, start, |out| {
                for piece in pieces(&tool["input"].to_string()) {
                    delta(
                        out,
                        index,
                        json!({"type": "input_json_delta", "partial_json": piece}),
                    );
                }
            });
        }
        (_, None) => {}
    }
    out.event(
        "message_delta",
        &json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": r.output_tokens}}),
    );
    out.event("message_stop", &json!({"type": "message_stop"}));
    out
}

/// The signature sent with thinking blocks (Claude Code sends it back; nobody checks it).
const SIGNATURE: &str = "atelier-simulator";

fn block(out: &mut Out, index: usize, start: Value, deltas: impl FnOnce(&mut Out)) {
    out.event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": index, "content_block": start}),
    );
    deltas(out);
    out.event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": index}),
    );
}

fn delta(out: &mut Out, index: usize, delta: Value) {
    out.event(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": index, "delta": delta}),
    );
}

/// The error body for `status`.
pub fn error(status: u16, message: &str, request_id: &str) -> Value {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id})
}
