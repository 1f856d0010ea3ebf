//! The OpenAI Responses API as Codex uses it: `POST /v1/responses`, streamed as SSE
//! (`response.created`, `response.in_progress`, `response.output_item.added/done` around
//! messages with `output_text.delta`, reasoning summaries, `function_call` items with argument
//! deltas and `custom_tool_call` items with input deltas, then `response.completed` with usage),
//! or one JSON response when `stream` is false; plus the OpenAI error shape.

use crate::conversation::{Conversation, OfferedTool, ToolKind, str_of, texts};
use crate::play::{Answer, Part, Tail};
use crate::stream::{Chunk, Out, Render, now, pieces};
use crate::vocab::{ToolCall, ToolInput};
use serde_json::{Value, json};

/// Reads a Responses request.
pub fn conversation(body: &Value, body_len: usize) -> Conversation {
    let mut conv = Conversation {
        model: str_of(body, "model").map(str::to_string),
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        body_len,
        ..Conversation::default()
    };
    if let Some(instructions) = str_of(body, "instructions") {
        conv.push_system(instructions);
    }
    match body.get("input") {
        Some(Value::String(text)) => conv.push_user(&[text], false),
        Some(Value::Array(items)) => {
            for item in items {
                match (
                    str_of(item, "type").unwrap_or("message"),
                    str_of(item, "role"),
                ) {
                    ("message", Some("system" | "developer")) => {
                        for text in texts(item.get("content").unwrap_or(&Value::Null)) {
                            conv.push_system(text);
                        }
                    }
                    ("message", Some("user")) => {
                        conv.push_user(&texts(item.get("content").unwrap_or(&Value::Null)), false);
                    }
                    ("function_call" | "custom_tool_call" | "local_shell_call", _) => {
                        conv.push_calls(1);
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    conv.tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            let kind = str_of(t, "type").unwrap_or("function");
            let name = str_of(t, "name").unwrap_or(kind);
            OfferedTool {
                name: name.to_string(),
                kind: if kind == "custom" {
                    ToolKind::Freeform
                } else {
                    ToolKind::Json
                },
            }
        })
        .collect();
    conv
}

/// Renders `answer` (with its tool call already in Codex's vocabulary).
pub fn render(answer: &Answer, call: Option<&ToolCall>, r: &Render) -> Out {
    let ids = r.ids;
    let usage = json!({
        "input_tokens": r.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": r.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": r.input_tokens + r.output_tokens,
    });
    let base = json!({"id": ids.make("resp_"), "object": "response", "created_at": now(),
        "model": r.model, "status": "in_progress", "output": []});
    let mut items = Vec::new();
    for part in &answer.parts {
        match part {
            Part::Text(text) => items.push(json!({"type": "message", "id": ids.make("msg_"),
                "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]})),
            Part::Thinking(text) => items.push(json!({"type": "reasoning", "id": ids.make("rs_"),
                "summary": [{"type": "summary_text", "text": text}]})),
            Part::Pause(_) => items.push(Value::Null),
        }
    }
    let tool_item = call.map(|c| match &c.input {
        ToolInput::Text(input) => json!({"type": "custom_tool_call", "id": ids.make("ctc_"),
            "status": "completed", "call_id": ids.make("call_"), "name": c.name, "input": input}),
        ToolInput::Json(args) => json!({"type": "function_call", "id": ids.make("fc_"),
            "status": "completed", "call_id": ids.make("call_"), "name": c.name,
            "arguments": args.to_string()}),
    });
    let output: Vec<&Value> = items
        .iter()
        .filter(|i| !i.is_null())
        .chain(tool_item.iter())
        .collect();
    let mut done = base.clone();
    done["status"] = json!("completed");
    done["output"] = json!(output);
    done["usage"] = usage;
    if !r.stream {
        return Out::whole(&done, answer);
    }

    let mut sse = Sse {
        out: Out::sse(answer.pacing),
        seq: 0,
    };
    sse.ev("response.created", json!({"response": base}));
    sse.ev("response.in_progress", json!({"response": base}));
    let mut index = 0;
    for (part, item) in answer.parts.iter().zip(&items) {
        match part {
            Part::Pause(pause) => sse.out.push(Chunk::Pause(*pause)),
            Part::Text(text) => {
                sse.message(index, item, text);
                index += 1;
            }
            Part::Thinking(text) => {
                sse.reasoning(index, item, text);
                index += 1;
            }
        }
    }
    match (&answer.tail, &tool_item) {
        (Tail::Hang, _) => return sse.out.ended_by(Chunk::Hang),
        (Tail::Cut, _) => return sse.out.ended_by(Chunk::Cut),
        (_, Some(item)) => sse.tool(index, item),
        (_, None) => {}
    }
    sse.ev("response.completed", json!({"response": done}));
    sse.out
}

/// The SSE writer with the `sequence_number` every event carries.
struct Sse {
    out: Out,
    seq: u64,
}

impl Sse {
    fn ev(&mut self, name: &str, mut data: Value) {
        data["type"] = json!(name);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        self.out.event(name, &data);
    }

    fn message(&mut self, index: usize, item: &Value, text: &str) {
        let id = &item["id"];
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        added["content"] = json!([]);
        let at = json!({"output_index": index, "item_id": id, "content_index": 0});
        self.ev(
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
        );
        self.ev(
            "response.content_part.added",
            with(
                &at,
                "part",
                json!({"type": "output_text", "text": "", "annotations": []}),
            ),
        );
        for piece in pieces(text) {
            self.ev(
                "response.output_text.delta",
                with(&at, "delta", json!(piece)),
            );
        }
        self.ev("response.output_text.done", with(&at, "text", json!(text)));
        self.ev(
            "response.content_part.done",
            with(&at, "part", item["content"][0].clone()),
        );
        self.ev(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }

    fn reasoning(&mut self, index: usize, item: &Value, text: &str) {
        let mut added = item.clone();
        added["summary"] = json!([]);
        let at = json!({"output_index": index, "item_id": item["id"], "summary_index": 0});
        self.ev(
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
        );
        self.ev(
            "response.reasoning_summary_part.added",
            with(&at, "part", json!({"type": "summary_text", "text": ""})),
        );
        for piece in pieces(text) {
            self.ev(
                "response.reasoning_summary_text.delta",
                with(&at, "delta", json!(piece)),
            );
        }
        self.ev(
            "response.reasoning_summary_text.done",
            with(&at, "text", json!(text)),
        );
        self.ev(
            "response.reasoning_summary_part.done",
            with(&at, "part", item["summary"][0].clone()),
        );
        self.ev(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }

    fn tool(&mut self, index: usize, item: &Value) {
        let at = json!({"output_index": index, "item_id": item["id"]});
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        let (event, field) = if item["type"] == "custom_tool_call" {
            added["input"] = json!("");
            ("response.custom_tool_call_input", "input")
        } else {
            added["arguments"] = json!("");
            ("response.function_call_arguments", "arguments")
        };
        self.ev(
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
        );
        let whole = item[field].as_str().unwrap_or_default();
        for piece in pieces(whole) {
            self.ev(&format!("{event}.delta"), with(&at, "delta", json!(piece)));
        }
        self.ev(&format!("{event}.done"), with(&at, field, json!(whole)));
        self.ev(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }
}

/// `base` with one more field.
fn with(base: &Value, key: &str, value: Value) -> Value {
    let mut out = base.clone();
    out[key] = value;
    out
}

/// The OpenAI error body for `status` (Responses and Chat Completions alike).
pub fn error(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        400 => ("invalid_request_error", Value::Null),
        401 => ("invalid_request_error", json!("invalid_api_key")),
        404 => ("invalid_request_error", json!("model_not_found")),
        429 => ("requests", json!("rate_limit_exceeded")),
        503 | 529 => ("server_error", json!("server_is_overloaded")),
        _ => ("server_error", Value::Null),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}
