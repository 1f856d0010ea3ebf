//! The pure decoder of a long-lived Codex session's output: what the bridge writes (see
//! [`super::bridge::wire`]), i.e. `codex app-server`'s notifications (JSON-RPC, camelCase) and
//! the bridge's own `atelier/*` lines, into transcript events.
//!
//! | line | transcript |
//! |---|---|
//! | `atelier/session` | `Session` (the thread id, what `thread/resume` takes) |
//! | `item/agentMessage/delta` | `Partial` (live text; the `Message` that follows has it whole) |
//! | `item/completed` `agentMessage` / `reasoning` | `Message` / `Thinking` |
//! | `item/started` `commandExecution` | `ToolCall` `shell` `{command}` |
//! | `item/completed` `commandExecution` | `CommandOutput` |
//! | `item/completed` `fileChange` | one `FileChange` per change (`Error` when it failed or was declined) |
//! | `mcpToolCall`, `dynamicToolCall` started / completed | `ToolCall` / `ToolResult` |
//! | `webSearch` | `ToolCall` `web_search` |
//! | `turn/plan/updated` | `ToolCall` `todo_list` |
//! | `error`, `atelier/error` | `Error` (not fatal: the turn's end comes next) |
//! | `thread/tokenUsage/updated` | kept; its totals become `Usage` at the turn's end |
//! | `turn/completed` | `Usage` + `TurnEnd` (`ok` when `completed`; `failed` and `interrupted` carry the reason) |
//! | `atelier/turnFailed` | `TurnEnd { ok: false }` (the turn never started) |
//!
//! A completed tool-like item whose start was not seen gets its `ToolCall` first. Every other
//! notification (and item type) is ignored. Known notifications missing their fields are
//! unreadable (`None`, counted by the caller). Like `exec`, the thread's token totals are
//! running totals (`Usage { cumulative }`).

use super::bridge::wire;
use super::decode::is_retryable;
use domain::TranscriptEvent;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashSet;

/// The state of one long-lived session's decoding.
#[derive(Debug, Default)]
pub struct AppServerDecoder {
    /// Items whose `item/started` was decoded and whose `item/completed` was not yet.
    started: HashSet<String>,
    /// The thread's latest token totals (input, output).
    usage: Option<(u64, u64)>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(rename = "item")]
    value: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenUsage {
    token_usage: TokenTotals,
}

#[derive(Deserialize)]
struct TokenTotals {
    total: Tokens,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tokens {
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Deserialize)]
struct TurnCompleted {
    turn: Turn,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Turn {
    status: String,
    #[serde(default)]
    error: Option<TurnError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TurnError {
    message: String,
    #[serde(default)]
    additional_details: Option<String>,
    #[serde(default)]
    codex_error_info: Option<Value>,
}

#[derive(Deserialize)]
struct ErrorNotification {
    error: TurnError,
}

#[derive(Deserialize)]
struct Message {
    message: String,
}

/// The item types of `item/*` notifications (the item's `id` is read separately).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum ThreadItem {
    AgentMessage {
        text: String,
    },
    Reasoning {
        #[serde(default)]
        summary: Vec<String>,
        #[serde(default)]
        content: Vec<String>,
    },
    #[serde(rename_all = "camelCase")]
    CommandExecution {
        command: String,
        #[serde(default)]
        aggregated_output: Option<String>,
        #[serde(default)]
        exit_code: Option<i32>,
    },
    FileChange {
        changes: Vec<Change>,
        #[serde(default)]
        status: String,
    },
    McpToolCall {
        server: String,
        tool: String,
        #[serde(default)]
        arguments: Value,
        #[serde(default)]
        result: Option<McpResult>,
        #[serde(default)]
        error: Option<Message>,
        #[serde(default)]
        status: String,
    },
    #[serde(rename_all = "camelCase")]
    DynamicToolCall {
        tool: String,
        #[serde(default)]
        arguments: Value,
        #[serde(default)]
        content_items: Option<Vec<Value>>,
        #[serde(default)]
        success: Option<bool>,
    },
    WebSearch {
        #[serde(default)]
        query: String,
        #[serde(default)]
        action: Option<Value>,
    },
    /// `userMessage`, `collabAgentToolCall`, `imageView`, `contextCompaction` … and item types
    /// of newer versions.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Change {
    path: String,
    kind: ChangeKind,
}

#[derive(Deserialize)]
struct ChangeKind {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct McpResult {
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    structured_content: Option<Value>,
}

/// Where in an item's life a notification is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Started,
    Completed,
}

impl AppServerDecoder {
    /// The events of one notification (`method` and `params`); `None` when a known notification
    /// is missing its fields.
    pub fn event(&mut self, method: &str, params: &Value) -> Option<Vec<TranscriptEvent>> {
        Some(match method {
            wire::SESSION => {
                let id = params.get("threadId")?.as_str()?.to_owned();
                vec![TranscriptEvent::Session { id }]
            }
            wire::TURN_FAILED => {
                let message = Message::deserialize(params).ok()?.message;
                vec![TranscriptEvent::TurnEnd {
                    ok: false,
                    retryable: is_retryable(&message),
                    error: Some(message),
                }]
            }
            wire::ERROR => {
                let message = Message::deserialize(params).ok()?.message;
                vec![TranscriptEvent::Error { message }]
            }
            "error" => {
                let error = ErrorNotification::deserialize(params).ok()?.error;
                vec![TranscriptEvent::Error {
                    message: error_text(&error),
                }]
            }
            "item/agentMessage/delta" => {
                let delta = params.get("delta")?.as_str()?;
                if delta.is_empty() {
                    Vec::new()
                } else {
                    vec![TranscriptEvent::Partial { text: delta.into() }]
                }
            }
            "item/started" => self.item(&Item::deserialize(params).ok()?.value, Phase::Started)?,
            "item/completed" => {
                self.item(&Item::deserialize(params).ok()?.value, Phase::Completed)?
            }
            "turn/plan/updated" => {
                let plan = params.get("plan")?;
                vec![TranscriptEvent::ToolCall {
                    id: None,
                    name: "todo_list".into(),
                    input: json!({ "items": plan }),
                }]
            }
            "thread/tokenUsage/updated" => {
                let total = TokenUsage::deserialize(params).ok()?.token_usage.total;
                self.usage = Some((total.input_tokens, total.output_tokens));
                Vec::new()
            }
            "turn/completed" => self.turn_end(TurnCompleted::deserialize(params).ok()?.turn),
            _ => Vec::new(),
        })
    }

    fn turn_end(&mut self, turn: Turn) -> Vec<TranscriptEvent> {
        self.started.clear();
        let mut events = Vec::new();
        if let Some((input_tokens, output_tokens)) = self.usage {
            // The thread's running totals (a resumed thread's include its earlier turns).
            events.push(TranscriptEvent::Usage {
                input_tokens,
                output_tokens,
                cost_usd: 0.0,
                cumulative: true,
            });
        }
        let end = match turn.status.as_str() {
            "completed" => TranscriptEvent::TurnEnd {
                ok: true,
                error: None,
                retryable: false,
            },
            "interrupted" => TranscriptEvent::TurnEnd {
                ok: false,
                error: Some("the turn was interrupted".into()),
                retryable: false,
            },
            status => {
                let (error, retryable) = match &turn.error {
                    Some(error) => (error_text(error), retryable(error)),
                    None => (format!("the turn ended {status}"), false),
                };
                TranscriptEvent::TurnEnd {
                    ok: false,
                    error: Some(error),
                    retryable,
                }
            }
        };
        events.push(end);
        events
    }

    fn item(&mut self, value: &Value, phase: Phase) -> Option<Vec<TranscriptEvent>> {
        let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
        let item = ThreadItem::deserialize(value).ok()?;
        let Some(call) = tool_call(&item, id.clone()) else {
            return Some(if phase == Phase::Completed {
                plain_item(item)
            } else {
                Vec::new()
            });
        };
        let key = id.clone().unwrap_or_default();
        let mut events = Vec::new();
        match phase {
            Phase::Started => {
                self.started.insert(key);
                events.push(call);
            }
            Phase::Completed => {
                if !self.started.remove(&key) {
                    events.push(call);
                }
                events.extend(tool_outcome(item, id));
            }
        }
        Some(events)
    }
}

/// A turn error's text: its message, and Codex's details when it gives any.
fn error_text(error: &TurnError) -> String {
    match error.additional_details.as_deref().map(str::trim) {
        Some(details) if !details.is_empty() && details != error.message => {
            format!("{} ({details})", error.message)
        }
        _ => error.message.clone(),
    }
}

/// Kinds of `codexErrorInfo` that are infrastructure failures, worth retrying with backoff.
const RETRYABLE_KINDS: [&str; 8] = [
    "httpConnectionFailed",
    "responseStreamConnectionFailed",
    "responseStreamDisconnected",
    "serverOverloaded",
    "internalServerError",
    "rateLimitExceeded",
    "usageLimitExceeded",
    "policyCapacityUnavailable",
];

/// Whether a failed turn is an infrastructure failure: by Codex's own error kind, or (as for
/// `exec`) by its message.
fn retryable(error: &TurnError) -> bool {
    let kind = match &error.codex_error_info {
        Some(Value::String(kind)) => Some(kind.as_str()),
        Some(Value::Object(map)) => map.keys().next().map(String::as_str),
        _ => None,
    };
    kind.is_some_and(|k| RETRYABLE_KINDS.contains(&k)) || is_retryable(&error_text(error))
}

/// The `ToolCall` of a tool-like item (`None` for the others).
fn tool_call(item: &ThreadItem, id: Option<String>) -> Option<TranscriptEvent> {
    let (name, input) = match item {
        ThreadItem::CommandExecution { command, .. } => {
            ("shell".into(), json!({ "command": command }))
        }
        ThreadItem::McpToolCall {
            server,
            tool,
            arguments,
            ..
        } => (format!("mcp__{server}__{tool}"), arguments.clone()),
        ThreadItem::DynamicToolCall {
            tool, arguments, ..
        } => (tool.clone(), arguments.clone()),
        ThreadItem::WebSearch { query, action } => {
            let mut input = json!({ "query": query });
            if let Some(action) = action {
                input["action"] = action.clone();
            }
            ("web_search".into(), input)
        }
        _ => return None,
    };
    Some(TranscriptEvent::ToolCall { id, name, input })
}

/// What a completed tool-like item produced.
fn tool_outcome(item: ThreadItem, id: Option<String>) -> Vec<TranscriptEvent> {
    match item {
        ThreadItem::CommandExecution {
            command,
            aggregated_output,
            exit_code,
        } => vec![TranscriptEvent::CommandOutput {
            command,
            output: aggregated_output.unwrap_or_default(),
            exit_code,
        }],
        ThreadItem::McpToolCall {
            result,
            error,
            status,
            ..
        } => {
            let (output, is_error) = match (error, result) {
                (Some(error), _) => (error.message, true),
                (None, Some(result)) => (mcp_text(result), status == "failed"),
                (None, None) => (String::new(), status == "failed"),
            };
            vec![TranscriptEvent::ToolResult {
                id,
                output,
                is_error,
            }]
        }
        ThreadItem::DynamicToolCall {
            content_items,
            success,
            ..
        } => {
            let output = content_items
                .unwrap_or_default()
                .iter()
                .map(|item| match item.get("text").and_then(Value::as_str) {
                    Some(text) => text.to_owned(),
                    None => item.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            vec![TranscriptEvent::ToolResult {
                id,
                output,
                is_error: success == Some(false),
            }]
        }
        _ => Vec::new(),
    }
}

/// Events of completed items that are not tool calls.
fn plain_item(item: ThreadItem) -> Vec<TranscriptEvent> {
    match item {
        ThreadItem::AgentMessage { text } => vec![TranscriptEvent::Message { text }],
        ThreadItem::Reasoning { summary, content } => {
            let text = summary
                .into_iter()
                .chain(content)
                .filter(|t| !t.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n\n");
            if text.is_empty() {
                Vec::new()
            } else {
                vec![TranscriptEvent::Thinking { text }]
            }
        }
        ThreadItem::FileChange { changes, status }
            if status == "failed" || status == "declined" =>
        {
            let paths: Vec<String> = changes.into_iter().map(|c| c.path).collect();
            vec![TranscriptEvent::Error {
                message: format!("file change {status}: {}", paths.join(", ")),
            }]
        }
        ThreadItem::FileChange { changes, .. } => changes
            .into_iter()
            .map(|c| TranscriptEvent::FileChange {
                path: c.path,
                kind: c.kind.kind,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The text of an MCP result: its text blocks, other blocks as JSON, or the structured content.
fn mcp_text(result: McpResult) -> String {
    let blocks: Vec<String> = result
        .content
        .iter()
        .map(|block| match block.get("text").and_then(Value::as_str) {
            Some(text) if block.get("type").and_then(Value::as_str) == Some("text") => {
                text.to_owned()
            }
            _ => block.to_string(),
        })
        .collect();
    match (blocks.is_empty(), result.structured_content) {
        (true, Some(structured)) if !structured.is_null() => structured.to_string(),
        _ => blocks.join("\n"),
    }
}
