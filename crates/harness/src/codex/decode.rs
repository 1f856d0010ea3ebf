//! The pure decoder of Codex's output into transcript events: `codex exec --json` (one JSON
//! event per line, a `type` each; the table below) and, for a long-lived session, the bridge's
//! lines (JSON-RPC notifications, a `method` each: [`super::app_server`]). One decoder serves
//! both modes, telling them apart by each line's shape.
//!
//! | Codex event | transcript |
//! |---|---|
//! | `thread.started` | `Session` (the thread id is what `exec resume` takes) |
//! | `item.completed` `agent_message` / `reasoning` | `Message` / `Thinking` |
//! | `item.started` `command_execution` | `ToolCall` `shell` `{command}` |
//! | `item.completed` `command_execution` | `CommandOutput` |
//! | `item.completed` `file_change` | one `FileChange` per change (`Error` when it failed) |
//! | `mcp_tool_call` started / completed | `ToolCall` `mcp__<server>__<tool>` / `ToolResult` |
//! | `web_search`, `todo_list` (started, updated) | `ToolCall` `web_search` / `todo_list` |
//! | `error` item, top-level `error` | `Error` (not fatal: the turn's end comes next) |
//! | `turn.completed` | `Usage` + `TurnEnd { ok: true }` |
//! | `turn.failed` | `TurnEnd { ok: false, error, retryable }` |
//!
//! A completed tool-like item whose start was not seen gets its `ToolCall` first. `turn.started`
//! and unknown event or item types are ignored; lines that are not JSON, or known events missing
//! their fields, become an `Error` and are counted. A signal abort ends the output without a
//! final event. Token counts: Codex's `input_tokens` already includes `cached_input_tokens`
//! (OpenAI usage semantics, checked against a server reporting cached tokens).

use super::app_server::AppServerDecoder;
use crate::Decoder;
use domain::TranscriptEvent;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashSet;

/// Decodes one Codex process's stdout (`codex exec --json`, or the long-lived bridge's).
#[derive(Debug, Default)]
pub struct CodexDecoder {
    unreadable: u64,
    /// Items whose `item.started` was decoded and whose `item.completed` was not yet.
    started: HashSet<String>,
    /// The long-lived session's state.
    app: AppServerDecoder,
}

/// Top-level events of `codex exec --json`.
#[derive(Deserialize)]
#[serde(tag = "type")]
enum ExecEvent {
    #[serde(rename = "thread.started")]
    ThreadStarted { thread_id: String },
    #[serde(rename = "turn.completed")]
    TurnCompleted {
        #[serde(default)]
        usage: Usage,
    },
    #[serde(rename = "turn.failed")]
    TurnFailed { error: Message },
    #[serde(rename = "item.started")]
    ItemStarted { item: Value },
    #[serde(rename = "item.updated")]
    ItemUpdated { item: Value },
    #[serde(rename = "item.completed")]
    ItemCompleted { item: Value },
    #[serde(rename = "error")]
    Error { message: String },
    /// `turn.started` and event types of newer versions.
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

#[derive(Deserialize)]
struct Message {
    message: String,
}

/// The item types of `item.*` events (the item's `id` is read separately).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Item {
    AgentMessage {
        text: String,
    },
    Reasoning {
        text: String,
    },
    CommandExecution {
        command: String,
        #[serde(default)]
        aggregated_output: String,
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
    WebSearch {
        #[serde(default)]
        query: String,
        #[serde(default)]
        action: Option<Value>,
    },
    TodoList {
        items: Value,
    },
    Error {
        message: String,
    },
    /// `collab_tool_call` and item types of newer versions.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Change {
    path: String,
    kind: String,
}

#[derive(Deserialize)]
struct McpResult {
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    structured_content: Option<Value>,
}

/// Where in an item's life an `item.*` event is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Started,
    Updated,
    Completed,
}

impl Decoder for CodexDecoder {
    fn line(&mut self, line: &str) -> Vec<TranscriptEvent> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return Vec::new();
        }
        let decoded = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|value| self.event(&value));
        match decoded {
            Some(events) => events,
            None => {
                self.unreadable += 1;
                let start: String = line.chars().take(200).collect();
                vec![TranscriptEvent::Error {
                    message: format!("unreadable agent output: {start}"),
                }]
            }
        }
    }

    fn unreadable_lines(&self) -> u64 {
        self.unreadable
    }
}

impl CodexDecoder {
    /// The events of one parsed line; `None` when it is not a well-formed Codex event.
    fn event(&mut self, value: &Value) -> Option<Vec<TranscriptEvent>> {
        if let Some(method) = value.get("method").and_then(Value::as_str) {
            // A server request (it has an id) is the bridge's to answer, not the transcript's.
            if value.get("id").is_some() {
                return Some(Vec::new());
            }
            let params = value.get("params").unwrap_or(&Value::Null);
            return self.app.event(method, params);
        }
        Some(match ExecEvent::deserialize(value).ok()? {
            ExecEvent::ThreadStarted { thread_id } => {
                vec![TranscriptEvent::Session { id: thread_id }]
            }
            ExecEvent::TurnCompleted { usage } => vec![
                // Codex reports the thread's running totals (a resumed turn includes the
                // earlier turns), so the run's usage is set from it, not added to.
                TranscriptEvent::Usage {
                    input_tokens: usage.input_tokens,
                    output_tokens: usage.output_tokens,
                    cost_usd: 0.0,
                    cumulative: true,
                },
                TranscriptEvent::TurnEnd {
                    ok: true,
                    error: None,
                    retryable: false,
                },
            ],
            ExecEvent::TurnFailed { error } => vec![TranscriptEvent::TurnEnd {
                ok: false,
                retryable: is_retryable(&error.message),
                error: Some(error.message),
            }],
            ExecEvent::Error { message } => vec![TranscriptEvent::Error { message }],
            ExecEvent::ItemStarted { item } => self.item(&item, Phase::Started)?,
            ExecEvent::ItemUpdated { item } => self.item(&item, Phase::Updated)?,
            ExecEvent::ItemCompleted { item } => self.item(&item, Phase::Completed)?,
            ExecEvent::Other => Vec::new(),
        })
    }

    fn item(&mut self, value: &Value, phase: Phase) -> Option<Vec<TranscriptEvent>> {
        let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
        let item = Item::deserialize(value).ok()?;
        let Some(call) = tool_call(&item, id.clone()) else {
            return Some(plain_item(item, phase));
        };
        let key = id.clone().unwrap_or_default();
        let mut events = Vec::new();
        match phase {
            Phase::Started => {
                self.started.insert(key);
                events.push(call);
            }
            // Only a plan's updates are new calls; other tools do not report progress in exec.
            Phase::Updated => {
                if matches!(item, Item::TodoList { .. }) {
                    self.started.insert(key);
                    events.push(call);
                }
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

/// The `ToolCall` of a tool-like item (`None` for the others).
fn tool_call(item: &Item, id: Option<String>) -> Option<TranscriptEvent> {
    let (name, input) = match item {
        Item::CommandExecution { command, .. } => ("shell".into(), json!({ "command": command })),
        Item::McpToolCall {
            server,
            tool,
            arguments,
            ..
        } => (format!("mcp__{server}__{tool}"), arguments.clone()),
        Item::WebSearch { query, action } => {
            let mut input = json!({ "query": query });
            if let Some(action) = action {
                input["action"] = action.clone();
            }
            ("web_search".into(), input)
        }
        Item::TodoList { items } => ("todo_list".into(), json!({ "items": items })),
        _ => return None,
    };
    Some(TranscriptEvent::ToolCall { id, name, input })
}

/// What a completed tool-like item produced.
fn tool_outcome(item: Item, id: Option<String>) -> Vec<TranscriptEvent> {
    match item {
        Item::CommandExecution {
            command,
            aggregated_output,
            exit_code,
        } => vec![TranscriptEvent::CommandOutput {
            command,
            output: aggregated_output,
            exit_code,
        }],
        Item::McpToolCall {
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
        _ => Vec::new(),
    }
}

/// Events of items that are not tool calls.
fn plain_item(item: Item, phase: Phase) -> Vec<TranscriptEvent> {
    if phase != Phase::Completed {
        return Vec::new();
    }
    match item {
        Item::AgentMessage { text } => vec![TranscriptEvent::Message { text }],
        Item::Reasoning { text } if !text.trim().is_empty() => {
            vec![TranscriptEvent::Thinking { text }]
        }
        Item::FileChange { changes, status } if status == "failed" => {
            let paths: Vec<String> = changes.into_iter().map(|c| c.path).collect();
            vec![TranscriptEvent::Error {
                message: format!("file change failed: {}", paths.join(", ")),
            }]
        }
        Item::FileChange { changes, .. } => changes
            .into_iter()
            .map(|c| TranscriptEvent::FileChange {
                path: c.path,
                kind: c.kind,
            })
            .collect(),
        Item::Error { message } => vec![TranscriptEvent::Error { message }],
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

/// Phrases of Codex's infrastructure failures (lower case): network, overload, rate limits.
const RETRYABLE_PHRASES: [&str; 19] = [
    "connection failed",
    "connection refused",
    "connection reset",
    "error sending request",
    "stream disconnected",
    "stream closed",
    "timed out",
    "timeout",
    "too many requests",
    "rate limit",
    "usage limit",
    "overloaded",
    "at capacity",
    "high demand",
    "internal server error",
    "bad gateway",
    "service unavailable",
    "gateway timeout",
    "temporarily unavailable",
];

/// Whether a failed turn's message is an infrastructure failure worth retrying with backoff:
/// connection failures, dropped streams, timeouts, HTTP 429 and 5xx (`status 503 …`, `last
/// status: 429 …`), overload and rate/usage limits. Configuration errors (a missing key
/// variable, 401, 400, an exhausted quota) are not.
pub fn is_retryable(message: &str) -> bool {
    let lower = message.to_lowercase();
    RETRYABLE_PHRASES.iter().any(|p| lower.contains(p))
        || lower.match_indices("status").any(|(at, word)| {
            let rest = lower[at + word.len()..].trim_start_matches([':', ' ', '=']);
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.len() == 3 && (digits == "429" || digits.starts_with('5'))
        })
}
