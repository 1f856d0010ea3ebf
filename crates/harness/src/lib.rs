//! Agent adapters behind one `Harness` trait, the process primitives that own agent child
//! processes (explicit environment, own process group, kill every descendant), and the scripted
//! harness used by tests, benchmarks and the demo.
//!
//! A harness is (a) a command builder (with, where a CLI needs it, what to put into the agent's
//! home before the turn: `Harness::prepare`) and (b) a pure, synchronous decoder from its output
//! lines to Atelier's transcript events. The engine's run supervisor owns the child and drives both.

pub mod agent_cli;
pub mod claude;
pub mod codex;
pub mod opencode;
pub mod process;
mod role_settings;
pub mod scenario;
pub mod scripted;

/// The sandbox command lines, from the `sandbox` crate (the git crate confines the server's own
/// git with the same).
pub use sandbox;

use domain::{SessionMode, Stage, TranscriptEvent};
use std::path::PathBuf;

/// One turn to run: a fresh session or the resumption of `resume_session` with `prompt` as the
/// follow-up input.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnRequest {
    pub stage: Stage,
    /// How many runs of this stage finished before this one (0 for the first).
    pub iteration: u32,
    /// Turn number inside the run (0 for the first, +1 per resumption).
    pub turn: u32,
    /// The stage prompt, or the follow-up input when resuming.
    pub prompt: String,
    /// The task's worktree; the agent's working directory.
    pub workdir: PathBuf,
    /// The complete environment of the agent (the child starts from an empty environment).
    pub env: Vec<(String, String)>,
    pub model: Option<String>,
    pub effort: Option<String>,
    pub resume_session: Option<String>,
    /// Harness-specific role settings (e.g. `{"scenario": "/path/plan.json"}` for scripted).
    pub settings: serde_json::Value,
}

/// What a harness can do, so stages can check before relying on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    pub live_text: bool,
    pub interrupt: bool,
    pub resume: bool,
    pub subagents: bool,
}

/// How to ask a running agent to stop its turn gracefully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interrupt {
    /// Send this signal to the agent's process group (e.g. `libc::SIGINT`).
    Signal(i32),
    /// Write these bytes to the agent's stdin (protocol interrupt).
    Stdin(Vec<u8>),
}

/// Turns a harness's output lines into transcript events. Pure and synchronous.
pub trait Decoder: Send {
    /// Decodes one stdout line (without its newline) into zero or more events.
    fn line(&mut self, line: &str) -> Vec<TranscriptEvent>;
    /// How many lines could not be understood so far.
    fn unreadable_lines(&self) -> u64;
}

/// Errors raised before an agent process exists.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("harness configuration: {0}")]
    Config(String),
    #[error("unknown harness `{0}`: available harnesses are: {1}")]
    Unknown(String, String),
    #[error("cannot prepare the agent's home: {0}")]
    Prepare(String),
}

/// The `session` a role's settings ask for (`None` when they name none).
pub fn session_of(settings: &serde_json::Value) -> Result<Option<SessionMode>, HarnessError> {
    match settings.get("session") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|_| {
                HarnessError::Config(format!(
                    "`session` must be \"one-shot\" or \"long-lived\", not {value}"
                ))
            }),
    }
}

/// One agent CLI (or the scripted agent).
pub trait Harness: Send + Sync {
    fn name(&self) -> &'static str;
    fn capabilities(&self) -> Capabilities;
    /// The process to start for this turn.
    fn command(&self, req: &TurnRequest) -> Result<process::ProcessSpec, HarnessError>;
    /// Puts what the CLI needs on disk into the agent's home (`HOME` of `req.env`) before the
    /// turn's process starts; called after [`Harness::command`] accepted the request. Nothing by
    /// default. OpenCode's keeps it from installing a package from the npm registry at every
    /// start (see [`opencode::prepare_config_dir`]).
    fn prepare(&self, req: &TurnRequest) -> Result<(), HarnessError> {
        let _ = req;
        Ok(())
    }
    /// Whether this harness has a long-lived session mode (one process for all turns of a run,
    /// each input written to its stdin). A role asking for it on a harness without one is
    /// refused when the project is saved.
    fn long_lived(&self) -> bool {
        false
    }
    /// The bytes that hand `input` to a long-lived session's process as its next turn (written
    /// to its stdin); `None` for a harness without a long-lived mode.
    fn next_turn(&self, input: &str) -> Option<Vec<u8>> {
        let _ = input;
        None
    }
    /// Environment for a long-lived process started ahead of its run (warm standby) that turns
    /// off what the CLI would otherwise snapshot at boot and keep stale while it idles (Claude
    /// Code's git status, for one). The hand-off then gives the agent a fresh git status in its
    /// first message. Nothing by default.
    fn warm_env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Programs the process of [`Harness::command`] starts besides its own, whose folders a
    /// sandbox must show read-only too (the Codex bridge's `codex`). None by default.
    fn sandbox_programs(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// A fresh decoder for one process's output.
    fn decoder(&self) -> Box<dyn Decoder>;
    /// The graceful interrupt this harness understands.
    fn interrupt(&self) -> Interrupt;
    /// Checks a role's model and settings before anything starts (e.g. a model that does not
    /// belong to this harness is an error naming the harness and the model).
    fn check_role(
        &self,
        model: Option<&str>,
        settings: &serde_json::Value,
    ) -> Result<(), HarnessError> {
        let _ = (model, settings);
        Ok(())
    }
}

pub use process::{AgentProcess, ProcessSpec};
pub use scenario::{RunScript, Scenario, ScenarioError, Step};
pub use scripted::{AgentArgs, ScriptedDecoder, ScriptedHarness, run_agent};
