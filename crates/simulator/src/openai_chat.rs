//! The OpenAI Chat Completions API as OpenCode uses it (through `@ai-sdk/openai-compatible`):
//! `POST /v1/chat/completions`, streamed as `data:` chunks (role, `reasoning_content` and
//! `content` deltas, one `tool_calls` delta with the arguments in pieces, a chunk with the
//! `finish_reason`, a usage-only chunk, `[DONE]`), or one JSON completion when `stream` is false.
//! Errors use the OpenAI shape of [`crate::openai_responses::error`].

use crate::conversation::{Conversation, OfferedTool, ToolKind, str_of, texts};
use crate::play::{Answer, Part, Tail};
use crate::stream::{Chunk, Out, Render, now, pieces};
use crate::vocab::ToolCall;
use serde_json::{Value, json};

/// Reads a Chat Completions request.
pub fn conversation(body: &Value, body_len: usize) -> Conversation {
    let mut conv = Conversation {
        model: str_of(body, "model").map(str::to_string),
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        body_len,
        ..Conversation::default()
    };
    for message in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let content = message.get("content").unwrap_or(&Value::Null);
        match str_of(message, "role") {
            Some("system" | "developer") => {
                for text in texts(content) {
                    conv.push_system(text);
                }
            }
            Some("user") => conv.push_user(&texts(content), false),
            Some("assistant") => {
                let calls = message
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
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
        .filter_map(|t| {
            let name = t
                .get("function")
                .and_then(|f| str_of(f, "name"))
                .or_else(|| str_of(t, "name"))?;
            Some(OfferedTool {
                name: name.to_string(),
                kind: ToolKind::Json,
            })
        })
        .collect();
    conv
}

/// Renders `answer` (with its tool call already in OpenCode's vocabulary).
pub fn render(answer: &Answer, call: Option<&ToolCall>, r: &Render) -> Out {
    let id = r.ids.make("chatcmpl-");
    let created = now();
    let usage = json!({"prompt_tokens": r.input_tokens, "completion_tokens": r.output_tokens,
        "total_tokens": r.input_tokens + r.output_tokens});
    let text: Vec<&str> = answer
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let thinking: Vec<&str> = answer
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::Thinking(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let tool = call.map(|c| {
        json!({"id": r.ids.make("call_"), "type": "function",
        "function": {"name": c.name, "arguments": c.input.to_json().to_string()}})
    });
    let finish = if call.is_some() { "tool_calls" } else { "stop" };
    if !r.stream {
        let mut message = json!({"role": "assistant",
            "content": if text.is_empty() { Value::Null } else { json!(text.join("\n\n")) }});
        if !thinking.is_empty() {
            message["reasoning_content"] = json!(thinking.join("\n\n"));
        }
        if let Some(tool) = &tool {
            message["tool_calls"] = json!([tool]);
        }
        let completion = json!({"id": id, "object": "chat.completion", "created": created,
            "model": r.model, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage});
        return Out::whole(&completion, answer);
    }

    let mut out = Out::sse(answer.pacing);
    let chunk = |out: &mut Out, delta: Value, finish: Value| {
        out.data(
            &json!({"id": id, "object": "chat.completion.chunk", "created": created,
            "model": r.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        );
    };
    chunk(
        &mut out,
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    );
    let mut said = false;
    for part in &answer.parts {
        match part {
            Part::Pause(pause) => out.push(Chunk::Pause(*pause)),
            Part::Thinking(t) => {
                for piece in pieces(t) {
                    chunk(&mut out, json!({"reasoning_content": piece}), Value::Null);
                }
            }
            Part::Text(t) => {
                if said {
                    chunk(&mut out, json!({"content": "\n\n"}), Value::Null);
                }
                said = true;
                for piece in pieces(t) {
                    chunk(&mut out, json!({"content": piece}), Value::Null);
                }
            }
        }
    }
    match (&answer.tail, &tool) {
        (Tail::Hang, _) => return out.ended_by(Chunk::Hang),
        (Tail::Cut, _) => return out.ended_by(Chunk::Cut),
        (_, Some(tool)) => {
            let mut first = tool.clone();
            first["function"]["arguments"] = json!("");
            first["index"] = json!(0);
            chunk(&mut out, json!({"tool_calls": [first]}), Value::Null);
            let args = tool["function"]["arguments"].as_str().unwrap_or_default();
            for piece in pieces(args) {
                chunk(
                    &mut out,
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    Value::Null,
                );
            }
        }
        (_, None) => {}
    }
    chunk(&mut out, json!({}), json!(finish));
    out.data(
        &json!({"id": id, "object": "chat.completion.chunk", "created": created,
        "model": r.model, "choices": [], "usage": usage}),
    );
    out.paced("data: [DONE]\n\n".into());
    out
}
