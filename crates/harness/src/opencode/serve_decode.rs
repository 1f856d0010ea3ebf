//! The part of [`super::OpenCodeDecoder`] that reads a long-lived session: the lines the
//! [`super::bridge`] writes, which are `opencode serve`'s bus events for the run's session (as
//! the server sent them, `{"id", "type", "properties"}`) and the bridge's own `bridge.*` lines.
//!
//! | line | transcript |
//! |---|---|
//! | `bridge.session` (the session the bridge created or resumed, at boot) | `Session` (once) |
//! | `bridge.error` | `Error`; with `"turn": true` (a turn could not start) `TurnEnd { ok: false }` |
//! | `message.updated` of a user message | nothing (its parts are the prompt, not the agent's) |
//! | `message.part.delta` of an assistant text part | `Partial` (live typing) |
//! | `message.part.updated`: a text / reasoning part with `time.end` | `Message` / `Thinking` |
//! | `message.part.updated`: a tool part `completed` or `error` | as `run`'s `tool_use` |
//! | `message.part.updated`: a `step-finish` part | `Usage` (an early stop: `Error`) |
//! | `session.error` | remembered for the turn's end |
//! | `session.idle` | `TurnEnd` (failed with the remembered error, if any; failed and retryable when a prompt since the last idle got no assistant message: OpenCode dropped it) |
//! | `session.status` `retry` | `Status` (OpenCode retries a model request) |
//! | `permission.asked` / `question.asked` | `Error` (the bridge refused it: nobody answers) |
//!
//! Events of another session are ignored (the bridge forwards only its own), other types too.
//! A known event without the fields it needs is unreadable (`None`).

use super::decode::{FinishPart, ToolPart, describe_error, step_usage, str_at, tool_use};
use domain::TranscriptEvent;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;

/// Why a turn that went idle without an answer failed. OpenCode does so when the prompt never
/// ran (seen: a prompt sent while its instance was being disposed of ended at once, its log
/// saying "All fibers interrupted"): retried like an unreachable endpoint.
const UNANSWERED: &str =
    "OpenCode ended the turn without answering it: it dropped the prompt (no assistant message)";

/// What the serve events of one process need remembered.
#[derive(Debug, Default)]
pub(super) struct ServeState {
    /// The session the bridge announced; events of any other are ignored.
    session: Option<String>,
    /// Ids of user messages (whose parts are the prompt).
    user_messages: HashSet<String>,
    /// Ids of assistant text parts being generated (their deltas are live text).
    text_parts: HashSet<String>,
    /// The error of the current turn (`session.error`), told at its end.
    error: Option<(String, bool)>,
    /// Whether a prompt came since the last turn's end (a user message), and whether an answer
    /// to it started since (an assistant message or a part of one).
    prompted: bool,
    answered: bool,
}

impl ServeState {
    /// The transcript events of one serve (or bridge) line; `None` when it is unreadable.
    pub(super) fn event(&mut self, value: &Value) -> Option<Vec<TranscriptEvent>> {
        let kind = str_at(value, &["type"])?;
        if let Some(rest) = kind.strip_prefix("bridge.") {
            return self.bridge(rest, value);
        }
        let props = value.get("properties")?;
        if let (Some(ours), Some(theirs)) = (&self.session, str_at(props, &["sessionID"]))
            && ours != theirs
        {
            return Some(Vec::new());
        }
        let out = match kind {
            "message.updated" => {
                let info = props.get("info")?;
                let role = str_at(info, &["role"]);
                if role == Some("user") {
                    let id = str_at(info, &["id"])?.to_owned();
                    if self.user_messages.insert(id) {
                        // A new prompt: what the previous turn wrote late is not its answer.
                        self.prompted = true;
                        self.answered = false;
                    }
                } else if role == Some("assistant") {
                    self.answered = true;
                }
                Vec::new()
            }
            "message.part.updated" => self.part(props.get("part")?)?,
            "message.part.delta" => {
                let part = str_at(props, &["partID"])?;
                let delta = str_at(props, &["delta"])?;
                let text = str_at(props, &["field"]) == Some("text")
                    && self.text_parts.contains(part)
                    && !delta.is_empty();
                if text {
                    vec![TranscriptEvent::Partial {
                        text: delta.to_owned(),
                    }]
                } else {
                    Vec::new()
                }
            }
            "session.error" => {
                let error = props.get("error").cloned().unwrap_or(Value::Null);
                self.error = Some(describe_error(&error));
                Vec::new()
            }
            "session.idle" => {
                self.text_parts.clear();
                // A prompt that went idle unanswered was dropped; an idle with no prompt since
                // the last (OpenCode's abort of a session that is not busy) ends a turn as before.
                let dropped = std::mem::take(&mut self.prompted) && !self.answered;
                self.answered = false;
                let error = self
                    .error
                    .take()
                    .or_else(|| dropped.then(|| (UNANSWERED.to_string(), true)));
                vec![TranscriptEvent::TurnEnd {
                    ok: error.is_none(),
                    retryable: error.as_ref().is_some_and(|(_, r)| *r),
                    error: error.map(|(message, _)| message),
                }]
            }
            "session.status" if str_at(props, &["status", "type"]) == Some("retry") => {
                let status = &props["status"];
                let attempt = status.get("attempt").and_then(Value::as_u64).unwrap_or(0);
                let message = str_at(status, &["message"]).unwrap_or("no detail");
                vec![TranscriptEvent::Status {
                    text: format!(
                        "OpenCode retries the model request (attempt {attempt}): {message}"
                    ),
                }]
            }
            "permission.asked" => {
                let permission = str_at(props, &["permission"]).unwrap_or("unknown");
                let patterns = props
                    .get("patterns")
                    .map(Value::to_string)
                    .unwrap_or_default();
                vec![TranscriptEvent::Error {
                    message: format!(
                        "OpenCode asked for the `{permission}` permission {patterns}: the agent \
                         runs unattended, so it was refused"
                    ),
                }]
            }
            "question.asked" => vec![TranscriptEvent::Error {
                message: "OpenCode's question tool asked the user: nobody answers it, so it \
                          was refused (agents ask with `atelier signal question`)"
                    .into(),
            }],
            _ => Vec::new(),
        };
        Some(out)
    }

    fn bridge(&mut self, kind: &str, value: &Value) -> Option<Vec<TranscriptEvent>> {
        match kind {
            "session" => {
                self.session = Some(str_at(value, &["sessionID"])?.to_owned());
                Some(Vec::new())
            }
            "error" => {
                let message = str_at(value, &["message"])?.to_owned();
                if value.get("turn").and_then(Value::as_bool) == Some(true) {
                    Some(vec![TranscriptEvent::TurnEnd {
                        ok: false,
                        error: Some(message),
                        retryable: false,
                    }])
                } else {
                    Some(vec![TranscriptEvent::Error { message }])
                }
            }
            _ => Some(Vec::new()),
        }
    }

    /// A part that changed (`message.part.updated`).
    fn part(&mut self, part: &Value) -> Option<Vec<TranscriptEvent>> {
        let message = str_at(part, &["messageID"])?;
        if self.user_messages.contains(message) {
            return Some(Vec::new());
        }
        self.answered = true;
        let id = str_at(part, &["id"])?;
        let ended = part.pointer("/time/end").is_some_and(|t| !t.is_null());
        let synthetic = part.get("synthetic").and_then(Value::as_bool) == Some(true);
        let out = match str_at(part, &["type"])? {
            "text" if synthetic => Vec::new(),
            "text" if ended => {
                self.text_parts.remove(id);
                let text = str_at(part, &["text"])?;
                if text.trim().is_empty() {
                    Vec::new()
                } else {
                    vec![TranscriptEvent::Message {
                        text: text.to_owned(),
                    }]
                }
            }
            "text" => {
                self.text_parts.insert(id.to_owned());
                Vec::new()
            }
            "reasoning" if ended => {
                let text = str_at(part, &["text"])?;
                if text.trim().is_empty() {
                    Vec::new()
                } else {
                    vec![TranscriptEvent::Thinking {
                        text: text.to_owned(),
                    }]
                }
            }
            "tool" => match str_at(part, &["state", "status"])? {
                "completed" | "error" => tool_use(ToolPart::deserialize(part).ok()?),
                _ => Vec::new(),
            },
            "step-finish" => step_usage(FinishPart::deserialize(part).ok()?),
            _ => Vec::new(),
        };
        Some(out)
    }
}
