//! Decodes Claude Code's `--output-format stream-json --verbose` lines into transcript events.
//!
//! Pure and synchronous. What becomes what:
//! - `system/init` → `Session` (the first one only; a process announces its session once per
//!   turn and the id never changes);
//! - `assistant` blocks: `text` → `Message`, `thinking` → `Thinking`, `tool_use` → `ToolCall`;
//!   the synthetic message Claude Code writes when the API fails (`is_api_error_message`) →
//!   `Error`;
//! - `user` tool results → `ToolResult`, except a `Bash` result, which becomes `CommandOutput`
//!   (paired with the command of its call, like the scripted agent's shell steps), and a
//!   successful `Write`/`Edit`/`MultiEdit`/`NotebookEdit`, which adds a `FileChange`;
//! - `system/api_retry` → `Error` (the turn goes on);
//! - `rate_limit_event` → `RateLimit` with its `rate_limit_info`;
//! - `result` → `Usage` then `TurnEnd`.
//!
//! Lines of sub-agents (`parent_tool_use_id` set) are decoded like the main agent's, so their
//! tool calls show in the run's transcript.
//!
//! - `stream_event` text deltas (`--include-partial-messages`) of the main agent → `Partial`:
//!   live typing for followers. Every block they stream is repeated whole in the `assistant`
//!   line Claude Code writes as soon as the block is complete (even when the turn is interrupted
//!   mid-block), so the `Message` that follows carries the whole text and readers fold the
//!   partial pieces into it. Other deltas (tool input JSON, thinking) are not decoded: the
//!   `assistant` line carries them whole.
//!
//! The same lines come out in both session modes: a long-lived process
//! (`--input-format stream-json`) writes a `system/init` and a `result` per turn, so one decoder
//! serves all the turns of its run (the session is announced once).
//! Other event types (`system/status`, `system/task_*`, `control_response`, …) carry nothing
//! for the transcript and are ignored; lines that are not JSON objects with a `type` are
//! reported as unreadable.
//!
//! Usage is the turn's own: `total_cost_usd` and `modelUsage` are cumulative over the session
//! (a resumed session starts from the previous turns' totals), so the per-turn
//! `model_usage_since_last_result` is used when present, `usage`/`total_cost_usd` otherwise.

use crate::Decoder;
use domain::TranscriptEvent;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Tools whose successful result means a file was written.
const FILE_TOOLS: [&str; 4] = ["Write", "Edit", "MultiEdit", "NotebookEdit"];

/// Typed API failures (`api_error` of a result or an API error message) worth retrying later.
const TRANSIENT_API_ERRORS: [&str; 6] = [
    "connection_failed",
    "stream_idle_timeout",
    "no_response",
    "computer_slept",
    "usage_limit_reached",
    "network_edge_blocked",
];

/// Error categories (`error` of an API error message) worth retrying later.
const TRANSIENT_ERROR_KINDS: [&str; 3] = ["rate_limit", "overloaded", "server_error"];

/// Decoder state of one Claude Code process.
#[derive(Debug, Default)]
pub struct ClaudeDecoder {
    unreadable: u64,
    session_announced: bool,
    /// The session's working directory (from `system/init`), to show file paths relative to it.
    cwd: Option<String>,
    /// Tool calls waiting for their result: id → (tool name, input).
    calls: HashMap<String, (String, Value)>,
    /// The last API error message of the turn: (`error`, `api_error`, `api_error_status`).
    api_error: Option<(Option<String>, Option<String>, Option<u64>)>,
}

impl Decoder for ClaudeDecoder {
    fn line(&mut self, line: &str) -> Vec<TranscriptEvent> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return Vec::new();
        }
        let parsed = serde_json::from_str::<Value>(line).ok();
        let Some((kind, event)) = parsed.as_ref().and_then(|v| {
            let obj = v.as_object()?;
            Some((obj.get("type")?.as_str()?, obj))
        }) else {
            self.unreadable += 1;
            let start: String = line.chars().take(200).collect();
            return vec![TranscriptEvent::Error {
                message: format!("unreadable agent output: {start}"),
            }];
        };
        match kind {
            "system" => self.system(event),
            "assistant" => self.assistant(event),
            "user" => self.user(event),
            "result" => self.result(event),
            "stream_event" => partial(event).into_iter().collect(),
            "rate_limit_event" => vec![TranscriptEvent::RateLimit {
                detail: event
                    .get("rate_limit_info")
                    .cloned()
                    .unwrap_or_else(|| Value::Object(event.clone())),
            }],
            _ => Vec::new(),
        }
    }

    fn unreadable_lines(&self) -> u64 {
        self.unreadable
    }
}

/// The text delta of a main-agent `stream_event`, as a `Partial`.
fn partial(event: &Map<String, Value>) -> Option<TranscriptEvent> {
    if event
        .get("parent_tool_use_id")
        .is_some_and(|p| !p.is_null())
    {
        return None;
    }
    let inner = event.get("event")?;
    if inner.get("type")?.as_str()? != "content_block_delta" {
        return None;
    }
    let delta = inner.get("delta")?;
    if delta.get("type")?.as_str()? != "text_delta" {
        return None;
    }
    let text = delta.get("text")?.as_str()?;
    (!text.is_empty()).then(|| TranscriptEvent::Partial {
        text: text.to_string(),
    })
}

fn str_of<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

fn u64_of(obj: &Map<String, Value>, key: &str) -> u64 {
    obj.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// The blocks of `event.message.content` (a plain string content has none).
fn content(event: &Map<String, Value>) -> &[Value] {
    event
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

impl ClaudeDecoder {
    fn system(&mut self, event: &Map<String, Value>) -> Vec<TranscriptEvent> {
        match str_of(event, "subtype") {
            Some("init") => {
                if let Some(cwd) = str_of(event, "cwd") {
                    self.cwd = Some(cwd.to_string());
                }
                match str_of(event, "session_id") {
                    Some(id) if !self.session_announced => {
                        self.session_announced = true;
                        vec![TranscriptEvent::Session { id: id.to_string() }]
                    }
                    _ => Vec::new(),
                }
            }
            Some("api_retry") => {
                let error = str_of(event, "error").unwrap_or("unknown error");
                let status = event
                    .get("error_status")
                    .and_then(Value::as_u64)
                    .map_or_else(String::new, |s| format!(", HTTP {s}"));
                vec![TranscriptEvent::Error {
                    message: format!(
                        "API request failed ({error}{status}); retry {} of {} in {} ms",
                        u64_of(event, "attempt"),
                        u64_of(event, "max_retries"),
                        u64_of(event, "retry_delay_ms"),
                    ),
                }]
            }
            _ => Vec::new(),
        }
    }

    fn assistant(&mut self, event: &Map<String, Value>) -> Vec<TranscriptEvent> {
        let api_error = event.get("is_api_error_message").and_then(Value::as_bool) == Some(true);
        if api_error {
            self.api_error = Some((
                str_of(event, "error").map(str::to_string),
                str_of(event, "api_error").map(str::to_string),
                event.get("api_error_status").and_then(Value::as_u64),
            ));
        }
        let mut out = Vec::new();
        for block in content(event) {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                    if text.is_empty() {
                        continue;
                    }
                    out.push(if api_error {
                        TranscriptEvent::Error {
                            message: text.to_string(),
                        }
                    } else {
                        TranscriptEvent::Message {
                            text: text.to_string(),
                        }
                    });
                }
                Some("thinking") => {
                    let text = block.get("thinking").and_then(Value::as_str).unwrap_or("");
                    if !text.is_empty() {
                        out.push(TranscriptEvent::Thinking {
                            text: text.to_string(),
                        });
                    }
                }
                Some("tool_use") => {
                    let id = block.get("id").and_then(Value::as_str).map(str::to_string);
                    let name = block.get("name").and_then(Value::as_str).unwrap_or("?");
                    let input = block.get("input").cloned().unwrap_or(Value::Null);
                    if let Some(id) = &id {
                        self.calls
                            .insert(id.clone(), (name.to_string(), input.clone()));
                    }
                    out.push(TranscriptEvent::ToolCall {
                        id,
                        name: name.to_string(),
                        input,
                    });
                }
                _ => {}
            }
        }
        out
    }

    fn user(&mut self, event: &Map<String, Value>) -> Vec<TranscriptEvent> {
        let mut out = Vec::new();
        let details = event.get("tool_use_result");
        for block in content(event) {
            if block.get("type").and_then(Value::as_str) != Some("tool_result") {
                continue;
            }
            let id = block
                .get("tool_use_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            let output = result_text(block.get("content"));
            let is_error = block.get("is_error").and_then(Value::as_bool) == Some(true);
            let call = id.as_ref().and_then(|id| self.calls.remove(id));
            match call {
                Some((name, input)) if name == "Bash" => {
                    let command = input.get("command").and_then(Value::as_str).unwrap_or("");
                    out.push(TranscriptEvent::CommandOutput {
                        command: command.to_string(),
                        exit_code: exit_code(&output, is_error, &input, details),
                        output,
                    });
                }
                Some((name, input)) if !is_error && FILE_TOOLS.contains(&name.as_str()) => {
                    let change = self.file_change(&name, &input, details);
                    out.push(TranscriptEvent::ToolResult {
                        id,
                        output,
                        is_error,
                    });
                    out.extend(change);
                }
                _ => out.push(TranscriptEvent::ToolResult {
                    id,
                    output,
                    is_error,
                }),
            }
        }
        out
    }

    /// The file a successful write tool changed, relative to the session's directory when
    /// inside it.
    fn file_change(
        &self,
        name: &str,
        input: &Value,
        details: Option<&Value>,
    ) -> Option<TranscriptEvent> {
        let path = input
            .get("file_path")
            .or_else(|| input.get("notebook_path"))
            .or_else(|| details.and_then(|d| d.get("filePath")))
            .and_then(Value::as_str)?;
        let kind = match details.and_then(|d| d.get("type")).and_then(Value::as_str) {
            Some("create") if name == "Write" => "add",
            _ => "modify",
        };
        let relative = self
            .cwd
            .as_deref()
            .and_then(|cwd| {
                path.strip_prefix(cwd.trim_end_matches('/'))?
                    .strip_prefix('/')
            })
            .filter(|rel| !rel.is_empty());
        Some(TranscriptEvent::FileChange {
            path: relative.unwrap_or(path).to_string(),
            kind: kind.to_string(),
        })
    }

    fn result(&mut self, event: &Map<String, Value>) -> Vec<TranscriptEvent> {
        let usage = turn_usage(event);
        let is_error = event.get("is_error").and_then(Value::as_bool) == Some(true);
        let ok = !is_error && str_of(event, "subtype") == Some("success");
        let api_error = self.api_error.take();
        let end = if ok {
            TranscriptEvent::TurnEnd {
                ok: true,
                error: None,
                retryable: false,
            }
        } else {
            TranscriptEvent::TurnEnd {
                ok: false,
                error: Some(failure_text(event)),
                retryable: retryable(event, api_error.as_ref()),
            }
        };
        vec![usage, end]
    }
}

/// The text of a tool result: a string, or the text blocks of a block list joined by newlines
/// (images are shown as `[image]`).
fn result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => b.get("text").and_then(Value::as_str).map(str::to_string),
                Some("image") => Some("[image]".to_string()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The exit code of a Bash tool result: 0 for a successful foreground command, the `Exit code N`
/// Claude Code reports for a failed one, unknown for a background, interrupted or refused one.
fn exit_code(output: &str, is_error: bool, input: &Value, details: Option<&Value>) -> Option<i32> {
    let flag = |v: Option<&Value>, key: &str| {
        v.and_then(|v| v.get(key)).and_then(Value::as_bool) == Some(true)
    };
    let background = flag(Some(input), "run_in_background")
        || details.is_some_and(|d| d.get("backgroundTaskId").is_some());
    if background || flag(details, "interrupted") {
        return None;
    }
    if !is_error {
        return Some(0);
    }
    let first = output.lines().next()?;
    first.strip_prefix("Exit code ")?.trim().parse().ok()
}

/// `Usage` of the turn that just ended (see the module doc for why not `total_cost_usd` when
/// the per-turn figures exist).
fn turn_usage(event: &Map<String, Value>) -> TranscriptEvent {
    if let Some(models) = event
        .get("model_usage_since_last_result")
        .and_then(Value::as_object)
    {
        let (mut input, mut output, mut cost) = (0, 0, 0.0);
        for m in models.values().filter_map(Value::as_object) {
            input += u64_of(m, "inputTokens")
                + u64_of(m, "cacheReadInputTokens")
                + u64_of(m, "cacheCreationInputTokens");
            output += u64_of(m, "outputTokens");
            cost += m.get("costUSD").and_then(Value::as_f64).unwrap_or(0.0);
        }
        return TranscriptEvent::Usage {
            input_tokens: input,
            output_tokens: output,
            cost_usd: cost,
            cumulative: false,
        };
    }
    let empty = Map::new();
    let usage = event
        .get("usage")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    TranscriptEvent::Usage {
        input_tokens: u64_of(usage, "input_tokens")
            + u64_of(usage, "cache_read_input_tokens")
            + u64_of(usage, "cache_creation_input_tokens"),
        output_tokens: u64_of(usage, "output_tokens"),
        cost_usd: event
            .get("total_cost_usd")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
        cumulative: false,
    }
}

/// Why a turn failed, in words: the result text when there is one, else what its subtype and
/// terminal reason say.
fn failure_text(event: &Map<String, Value>) -> String {
    let reason = str_of(event, "terminal_reason").filter(|r| *r != "completed");
    let text = str_of(event, "result").map(str::trim).unwrap_or("");
    let mut out = if !text.is_empty() {
        text.to_string()
    } else if reason.is_some_and(|r| r.starts_with("aborted")) {
        "the turn was interrupted".to_string()
    } else {
        match str_of(event, "subtype") {
            Some("error_max_turns") => "the agent reached its maximum number of turns".into(),
            Some("error_max_budget_usd") => "the agent reached its spending limit".into(),
            Some("error_during_execution") => "the turn failed during execution".into(),
            Some("success") | None => "the agent reported an error".into(),
            Some(other) => format!("the turn ended with `{other}`"),
        }
    };
    // `[ede_diagnostic] …` entries are Claude Code's internal diagnostics, not reasons.
    let errors: Vec<&str> = event
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|e| !e.starts_with("[ede_diagnostic]") && !e.trim().is_empty())
        .collect();
    if !errors.is_empty() {
        out = format!("{out}: {}", errors.join("; "));
    }
    if let Some(reason) = reason {
        out = format!("{out} ({reason})");
    }
    out
}

/// Whether a failed turn failed for infrastructure reasons (rate limit, overload, 5xx, network)
/// and is worth running again later, rather than because of the task or the configuration.
fn retryable(
    event: &Map<String, Value>,
    api_error: Option<&(Option<String>, Option<String>, Option<u64>)>,
) -> bool {
    let status = event
        .get("api_error_status")
        .and_then(Value::as_u64)
        .or_else(|| api_error.and_then(|e| e.2));
    if let Some(status) = status {
        return status == 408 || status == 429 || status >= 500;
    }
    let typed = str_of(event, "api_error").or_else(|| api_error.and_then(|e| e.1.as_deref()));
    if let Some(typed) = typed {
        return TRANSIENT_API_ERRORS.contains(&typed);
    }
    if let Some(kind) = api_error
        .and_then(|e| e.0.as_deref())
        .filter(|k| *k != "unknown")
    {
        return TRANSIENT_ERROR_KINDS.contains(&kind);
    }
    let text = str_of(event, "result").unwrap_or("");
    let api_failure =
        str_of(event, "terminal_reason") == Some("api_error") || text.starts_with("API Error");
    api_failure && !looks_permanent(text)
}

/// An API error text that names an authentication, permission, billing or request problem.
fn looks_permanent(text: &str) -> bool {
    let text = text.to_lowercase();
    if [
        "429",
        "rate limit",
        "overloaded",
        "connection",
        "timeout",
        "timed out",
    ]
    .iter()
    .any(|w| text.contains(w))
        || has_5xx(&text)
    {
        return false;
    }
    [
        "401",
        "403",
        "404",
        "authentication",
        "api key",
        "permission",
        "billing",
        "credit",
        "invalid",
        "not found",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// Whether `text` contains a 5xx status code as a word of its own.
fn has_5xx(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.windows(3).enumerate().any(|(i, w)| {
        w[0] == b'5'
            && w[1].is_ascii_digit()
            && w[2].is_ascii_digit()
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
            && bytes.get(i + 3).is_none_or(|b| !b.is_ascii_alphanumeric())
    })
}
