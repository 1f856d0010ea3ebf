//! Normalized transcript events: what every harness's output is decoded into.

use serde::{Deserialize, Serialize};

/// One normalized event of a run. Stored with a per-run monotonic `seq` and streamed live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TranscriptEvent {
    /// The harness session id (announced once per turn by harnesses that have one).
    Session {
        id: String,
    },
    Message {
        text: String,
    },
    /// A piece of assistant text while it is being generated (live typing), for followers.
    /// Partial: the `Message` that follows carries the whole text and replaces every partial
    /// piece before it (readers fold them into it; nothing counts a partial as a message).
    Partial {
        text: String,
    },
    Thinking {
        text: String,
    },
    ToolCall {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        name: String,
        #[serde(default)]
        input: serde_json::Value,
    },
    ToolResult {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        output: String,
        #[serde(default)]
        is_error: bool,
    },
    CommandOutput {
        command: String,
        output: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
    FileChange {
        path: String,
        kind: String,
    },
    Usage {
        #[serde(default)]
        input_tokens: u64,
        #[serde(default)]
        output_tokens: u64,
        #[serde(default)]
        cost_usd: f64,
        /// The counters are the session's running totals so far (some harnesses report usage
        /// so after a resume), not this turn's own: the run's totals are set, not added to.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cumulative: bool,
    },
    Error {
        message: String,
    },
    /// End of the agent's turn as the harness reports it. `ok == false` carries the reason;
    /// `retryable` marks infrastructure failures (rate limit, 5xx, network) that are retried
    /// with backoff instead of counting against the task.
    TurnEnd {
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        retryable: bool,
    },
    /// Subscription or rate-limit windows as the harness reports them (shape is harness's own).
    RateLimit {
        detail: serde_json::Value,
    },
    /// Written by Atelier itself (run started, signal received, run ended …).
    Status {
        text: String,
    },
}

/// How a run's turns reach a harness's agent (a role's `session` setting).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SessionMode {
    /// One process per turn: a follow-up (an answer) starts a new process resuming the session.
    #[default]
    OneShot,
    /// One process for every turn of a run: it stays alive while the run waits for an answer,
    /// and the answer is written to its stdin (Claude Code's `--input-format stream-json`).
    LongLived,
}
