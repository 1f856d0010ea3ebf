//! The model simulator: an HTTP server that speaks the three streaming model APIs the agent
//! CLIs use — Anthropic Messages (Claude Code), OpenAI Responses (Codex) and OpenAI Chat
//! Completions (OpenCode) — and answers by playing the same [scenario
//! files](harness::scenario) as Atelier's scripted agent, so the engine's tests can drive the
//! real CLIs offline.
//!
//! Stateless per request, like the real APIs: the conversation in each request says which
//! scenario (`Atelier-Stage: <stage> #<iteration>` in the system prompt or a user message →
//! `<scenarios dir>/<stage>.json`, run `iteration`), which turn (user messages with typed text,
//! minus one) and which step (tool calls since the last of them). Consecutive `message` and
//! `thinking` steps become text and thinking blocks; the next action step becomes one tool call
//! in the vocabulary of the CLI (see [`vocab`]); the end of the turn is a final text. The one
//! piece of state counts how often `http_error`/`stall`/`garbage` steps have answered (see
//! [`play`]). Every request is recorded ([`recorder`]).

pub mod anthropic;
pub mod conversation;
pub mod openai_chat;
pub mod openai_responses;
pub mod play;
pub mod recorder;
mod server;
pub mod stream;
pub mod vocab;

pub use recorder::{REDACTED, RecordedRequest};
pub use server::{Options, Simulator};
