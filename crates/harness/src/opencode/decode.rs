//! The pure decoder of `opencode run --format json` output (one JSON event per line, each with
//! `type`, `timestamp`, `sessionID` and, except `error`, the finished `part`) into transcript
//! events. `run` reports a part only once it is finished: there are no text deltas, and a tool
//! appears once, when it has completed or failed.
//!
//! | OpenCode event | transcript |
//! |---|---|
//! | first event with a `sessionID` | `Session` (the id `--session` takes), once |
//! | `step_start` | nothing |
//! | `text` / `reasoning` (only with `--thinking`) | `Message` / `Thinking` (blank ones dropped) |
//! | `tool_use` | `ToolCall` + `ToolResult` (`is_error` for status `error`), then for `bash` a `CommandOutput`, for `write`/`edit`/`apply_patch` one `FileChange` per file |
//! | `step_finish` | `Usage`; with reason `stop` also `TurnEnd { ok: true }`; other final reasons (`length`, `content-filter` …) an `Error` |
//! | `error` | `TurnEnd { ok: false, error, retryable }` |
//!
//! Unknown event types are ignored; lines that are not JSON objects, or known events missing
//! their fields, become an `Error` and are counted. A run that dies (signal, crash) ends without
//! a final event. Tokens: OpenCode splits cache reads/writes out of `input` and reasoning out of
//! `output`; `Usage` reports them included (OpenAI usage semantics, as the other harnesses do).
//! File change kinds: `add`, `modify`, `delete` (a moved file is a delete plus an add).
//!
//! The same decoder reads a long-lived session's bridge (`opencode serve`'s events, whose types
//! are dotted: `message.part.updated` …): see `serve_decode`.

use crate::Decoder;
use domain::TranscriptEvent;
use serde::Deserialize;
use serde_json::Value;

/// Decodes one `opencode run --format json` process's stdout.
#[derive(Debug, Default)]
pub struct OpenCodeDecoder {
    unreadable: u64,
    session_announced: bool,
    /// What a long-lived session's events need remembered between lines.
    serve: super::serve_decode::ServeState,
}

/// The events of `run --format json` (the envelope's `sessionID` is read separately).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum RunEvent {
    StepStart {},
    Text {
        part: TextPart,
    },
    Reasoning {
        part: TextPart,
    },
    ToolUse {
        part: ToolPart,
    },
    StepFinish {
        part: FinishPart,
    },
    Error {
        error: Value,
    },
    /// `done` (newer versions) and other event types.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct TextPart {
    text: String,
}

#[derive(Deserialize)]
pub(super) struct ToolPart {
    tool: String,
    #[serde(rename = "callID", default)]
    call_id: Option<String>,
    state: ToolState,
}

#[derive(Deserialize)]
struct ToolState {
    status: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    metadata: Value,
}

#[derive(Deserialize)]
pub(super) struct FinishPart {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    tokens: Tokens,
    #[serde(default)]
    cost: f64,
}

#[derive(Deserialize, Default)]
struct Tokens {
    #[serde(default)]
    input: u64,
    #[serde(default)]
    output: u64,
    #[serde(default)]
    reasoning: u64,
    #[serde(default)]
    cache: Cache,
}

#[derive(Deserialize, Default)]
struct Cache {
    #[serde(default)]
    read: u64,
    #[serde(default)]
    write: u64,
}

impl Decoder for OpenCodeDecoder {
    fn line(&mut self, line: &str) -> Vec<TranscriptEvent> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return Vec::new();
        }
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            return self.unreadable(line);
        };
        let mut out = Vec::new();
        if !self.session_announced
            && let Some(id) = value.get("sessionID").and_then(Value::as_str)
            && !id.is_empty()
        {
            self.session_announced = true;
            out.push(TranscriptEvent::Session { id: id.to_owned() });
        }
        let dotted = value
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.contains('.'));
        if dotted {
            match self.serve.event(&value) {
                Some(events) => out.extend(events),
                None => out.extend(self.unreadable(line)),
            }
            return out;
        }
        match RunEvent::deserialize(&value) {
            Ok(event) => out.extend(decode(event)),
            Err(_) => out.extend(self.unreadable(line)),
        }
        out
    }

    fn unreadable_lines(&self) -> u64 {
        self.unreadable
    }
}

impl OpenCodeDecoder {
    fn unreadable(&mut self, line: &str) -> Vec<TranscriptEvent> {
        self.unreadable += 1;
        let start: String = line.chars().take(200).collect();
        vec![TranscriptEvent::Error {
            message: format!("unreadable agent output: {start}"),
        }]
    }
}

fn decode(event: RunEvent) -> Vec<TranscriptEvent> {
    match event {
        RunEvent::StepStart {} | RunEvent::Other => Vec::new(),
        RunEvent::Text { part } if !part.text.trim().is_empty() => {
            vec![TranscriptEvent::Message { text: part.text }]
        }
        RunEvent::Reasoning { part } if !part.text.trim().is_empty() => {
            vec![TranscriptEvent::Thinking { text: part.text }]
        }
        RunEvent::Text { .. } | RunEvent::Reasoning { .. } => Vec::new(),
        RunEvent::ToolUse { part } => tool_use(part),
        RunEvent::StepFinish { part } => step_finish(part),
        RunEvent::Error { error } => {
            let (message, retryable) = describe_error(&error);
            vec![TranscriptEvent::TurnEnd {
                ok: false,
                error: Some(message),
                retryable,
            }]
        }
    }
}

pub(super) fn tool_use(part: ToolPart) -> Vec<TranscriptEvent> {
    let ToolPart {
        tool,
        call_id,
        state,
    } = part;
    let failed = state.status == "error";
    let output = if failed {
        state.error.or(state.output)
    } else {
        state.output.or(state.error)
    }
    .unwrap_or_default();
    let mut out = vec![
        TranscriptEvent::ToolCall {
            id: call_id.clone(),
            name: tool.clone(),
            input: state.input.clone(),
        },
        TranscriptEvent::ToolResult {
            id: call_id,
            output: output.clone(),
            is_error: failed,
        },
    ];
    if failed {
        return out;
    }
    let input_path = || {
        str_at(&state.input, &["filePath"])
            .or_else(|| str_at(&state.metadata, &["filepath"]))
            .map(str::to_owned)
    };
    match tool.as_str() {
        "bash" => out.push(TranscriptEvent::CommandOutput {
            command: str_at(&state.input, &["command"])
                .unwrap_or_default()
                .to_owned(),
            output,
            exit_code: state
                .metadata
                .get("exit")
                .and_then(Value::as_i64)
                .and_then(|code| i32::try_from(code).ok()),
        }),
        "write" => out.extend(input_path().map(|path| {
            let existed = state.metadata.get("exists").and_then(Value::as_bool);
            TranscriptEvent::FileChange {
                path,
                kind: if existed == Some(false) {
                    "add"
                } else {
                    "modify"
                }
                .into(),
            }
        })),
        "edit" => out.extend(input_path().map(|path| TranscriptEvent::FileChange {
            path,
            kind: "modify".into(),
        })),
        "apply_patch" => out.extend(patch_changes(&state.metadata)),
        _ => {}
    }
    out
}

/// The files of an `apply_patch` result (`metadata.files[]` with `filePath`, `type` and, for a
/// move, `movePath`).
fn patch_changes(metadata: &Value) -> Vec<TranscriptEvent> {
    let change = |path: &str, kind: &str| TranscriptEvent::FileChange {
        path: path.to_owned(),
        kind: kind.to_owned(),
    };
    let files = metadata.get("files").and_then(Value::as_array);
    let mut out = Vec::new();
    for file in files.into_iter().flatten() {
        let Some(path) = str_at(file, &["filePath"]) else {
            continue;
        };
        match (str_at(file, &["type"]), str_at(file, &["movePath"])) {
            (Some("add"), _) => out.push(change(path, "add")),
            (Some("delete"), _) => out.push(change(path, "delete")),
            (Some("move"), Some(to)) => {
                out.push(change(path, "delete"));
                out.push(change(to, "add"));
            }
            _ => out.push(change(path, "modify")),
        }
    }
    out
}

fn step_finish(part: FinishPart) -> Vec<TranscriptEvent> {
    let stop = part.reason.as_deref() == Some("stop");
    let mut out = step_usage(part);
    if stop {
        out.push(TranscriptEvent::TurnEnd {
            ok: true,
            error: None,
            retryable: false,
        });
    }
    out
}

/// A finished step's `Usage`, and an `Error` when the model stopped early (a turn's end is
/// told separately: `stop` in `run`'s output, the session going idle in `serve`'s).
pub(super) fn step_usage(part: FinishPart) -> Vec<TranscriptEvent> {
    let tokens = part.tokens;
    let mut out = vec![TranscriptEvent::Usage {
        input_tokens: tokens
            .input
            .saturating_add(tokens.cache.read)
            .saturating_add(tokens.cache.write),
        output_tokens: tokens.output.saturating_add(tokens.reasoning),
        cost_usd: part.cost,
        cumulative: false,
    }];
    match part.reason.as_deref() {
        None | Some("" | "stop" | "tool-calls" | "unknown") => {}
        Some(reason) => out.push(TranscriptEvent::Error {
            message: format!("the model stopped its turn early (finish reason `{reason}`)"),
        }),
    }
    out
}

/// The message of an `error` event's `error` (`{name, data: {message, statusCode?,
/// isRetryable?}}`, or another shape) and whether retrying later may succeed.
pub(super) fn describe_error(error: &Value) -> (String, bool) {
    let name = str_at(error, &["name"]);
    let message = str_at(error, &["data", "message"])
        .or_else(|| str_at(error, &["message"]))
        .or_else(|| error.as_str());
    let status = error
        .pointer("/data/statusCode")
        .or_else(|| error.get("statusCode"))
        .and_then(Value::as_u64);
    let mut text = match (name, message) {
        (Some(name), Some(message)) if name != message => format!("{name}: {message}"),
        (_, Some(message)) => message.to_owned(),
        (Some(name), None) => name.to_owned(),
        (None, None) => error.to_string(),
    };
    if let Some(status) = status {
        text.push_str(&format!(" (HTTP {status})"));
    }
    let flagged = error.pointer("/data/isRetryable").and_then(Value::as_bool) == Some(true);
    let status_retryable = status.is_some_and(|s| s == 429 || (500..600).contains(&s));
    let retryable = flagged || status_retryable || is_retryable(&text);
    (text, retryable)
}

/// Phrases of infrastructure failures worth retrying later (lower case).
const RETRYABLE_PHRASES: [&str; 13] = [
    "econnrefused",
    "connection refused",
    "cannot connect to api",
    "unable to connect",
    "econnreset",
    "socket hang up",
    "timed out",
    "overloaded",
    "rate limit",
    "too many requests",
    "internal server error",
    "bad gateway",
    "service unavailable",
];

/// Whether an error message describes a failure that may go away by itself (connection refused,
/// rate limit, overload, HTTP 429 or 5xx).
pub fn is_retryable(message: &str) -> bool {
    let lower = message.to_lowercase();
    RETRYABLE_PHRASES.iter().any(|p| lower.contains(p))
        || ["http ", "status ", "status: ", "status code "]
            .iter()
            .any(|prefix| {
                lower.match_indices(prefix).any(|(at, word)| {
                    let digits: String = lower[at + word.len()..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    digits.len() == 3 && (digits == "429" || digits.starts_with('5'))
                })
            })
}

/// The string at `path` (object keys) inside `value`.
pub(super) fn str_at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
}
