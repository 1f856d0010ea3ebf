//! The Claude Code harness: one `claude -p … --output-format stream-json` process per turn, or
//! (role `session = "long-lived"`) one `--input-format stream-json` process for every turn of a
//! run: the prompt is its first stdin line, each later input (an answer) another
//! (`{"type":"user","message":{"role":"user","content":"…"}}`), and closing stdin ends it.
//!
//! A new session gets a fresh `--session-id` (a UUID v4 chosen here); a resumed one is continued
//! with `--resume <id>`, which keeps the history. Permissions are bypassed (the agent runs
//! unattended in its own worktree), which Claude Code refuses as root unless `IS_SANDBOX=1`.
//! The prompt goes after `--` so that a follow-up input starting with `-` is never read as a
//! flag. A graceful stop is SIGINT: the tool in flight is killed and the turn ends with a
//! `result` of subtype `error_during_execution`, and the session can be resumed afterwards.
//!
//! The child's environment is the engine's explicit allow-list, the settings that keep Claude
//! Code quiet and bounded (no non-essential traffic, no auto-updater, bounded API retries), its
//! configuration directory inside the agent's `HOME`, and the role's own `settings.env` (how an
//! operator passes `ANTHROPIC_BASE_URL` / `ANTHROPIC_API_KEY` today). Nothing else of the
//! server's environment reaches it. The output is decoded by [`ClaudeDecoder`].

mod decode;

pub use decode::ClaudeDecoder;

use crate::process::ProcessSpec;
use crate::{Capabilities, Decoder, Harness, HarnessError, Interrupt, TurnRequest};
use domain::{SessionMode, Stage};
use std::path::PathBuf;

/// API retries Claude Code makes before a turn fails, unless the role sets `max_retries` (its
/// own default takes minutes on a dead endpoint).
pub const DEFAULT_MAX_RETRIES: u64 = 2;

/// Model aliases the pinned Claude Code (2.1.330) understands, besides full `claude-…` names.
/// Each may carry the `[1m]` (long context) suffix.
const MODEL_ALIASES: [&str; 7] = [
    "sonnet", "opus", "haiku", "fable", "best", "opusplan", "default",
];

/// Effort levels accepted by `--effort`.
const EFFORTS: [&str; 5] = ["low", "medium", "high", "xhigh", "max"];

/// Tools the implementer may not use: delegating to sub-agents (`Task` in older builds, `Agent`
/// in newer ones) would hide its work from the transcript and escape the one-turn budget.
const IMPLEMENTER_DISALLOWED_TOOLS: &str = "Task,Agent";

/// An empty MCP configuration, used with `--strict-mcp-config` so that no MCP server configured
/// anywhere on the machine is started.
const NO_MCP_SERVERS: &str = r#"{"mcpServers":{}}"#;

/// The harness that runs the `claude` binary (the native executable of
/// `@anthropic-ai/claude-code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaudeHarness {
    bin: PathBuf,
}

impl ClaudeHarness {
    /// `bin` is the `claude` executable.
    pub fn new(bin: impl Into<PathBuf>) -> ClaudeHarness {
        ClaudeHarness { bin: bin.into() }
    }
}

impl Harness for ClaudeHarness {
    fn name(&self) -> &'static str {
        "claude-code"
    }

    /// Live text comes from `--include-partial-messages` (the process streams while a block is
    /// generated; the transcript gets each block whole, see [`ClaudeDecoder`]).
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            live_text: true,
            interrupt: true,
            resume: true,
            subagents: true,
        }
    }

    fn command(&self, req: &TurnRequest) -> Result<ProcessSpec, HarnessError> {
        let settings = RoleSettings::parse(&req.settings)?;
        let model = checked_model(req.model.as_deref())?;
        let home = req
            .env
            .iter()
            .find(|(k, _)| k == "HOME")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                HarnessError::Config(
                    "the agent environment has no HOME: claude-code keeps its configuration and \
                     sessions there"
                        .into(),
                )
            })?;
        let task_doc = req
            .env
            .iter()
            .find(|(k, _)| k == "ATELIER_TASK_DOC")
            .map(|(_, v)| v.as_str());

        let long_lived = settings.session == SessionMode::LongLived;
        let mut args: Vec<String> = vec!["-p".into()];
        if long_lived {
            args.extend(["--input-format".into(), "stream-json".into()]);
        }
        args.extend([
            "--output-format".into(),
            "stream-json".into(),
            "--verbose".into(),
            "--include-partial-messages".into(),
            "--model".into(),
            model.into(),
            "--permission-mode".into(),
            "bypassPermissions".into(),
            "--append-system-prompt".into(),
            system_prompt(task_doc),
            "--mcp-config".into(),
            NO_MCP_SERVERS.into(),
            "--strict-mcp-config".into(),
        ]);
        if let Some(effort) = req.effort.as_deref() {
            if !EFFORTS.contains(&effort) {
                return Err(HarnessError::Config(format!(
                    "effort `{effort}` is not understood by claude-code: use one of {}",
                    EFFORTS.join(", ")
                )));
            }
            args.extend(["--effort".into(), effort.into()]);
        }
        match &req.resume_session {
            Some(id) => args.extend(["--resume".into(), id.clone()]),
            None => args.extend(["--session-id".into(), new_session_id()]),
        }
        if req.stage == Stage::Implement {
            args.extend([
                "--disallowedTools".into(),
                IMPLEMENTER_DISALLOWED_TOOLS.into(),
            ]);
        }
        // One-shot: the prompt is the argument after `--`. Long-lived: it is the first line
        // on stdin, which stays open for the run's next turns.
        let stdin = if long_lived {
            Some(user_turn(&req.prompt))
        } else {
            args.extend(["--".into(), req.prompt.clone()]);
            None
        };

        let mut env = req.env.clone();
        let max_retries = settings.max_retries.unwrap_or(DEFAULT_MAX_RETRIES);
        for (name, value) in [
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_string()),
            ("CLAUDE_CODE_MAX_RETRIES", max_retries.to_string()),
            ("DISABLE_AUTOUPDATER", "1".to_string()),
            ("IS_SANDBOX", "1".to_string()),
            ("CLAUDE_CONFIG_DIR", format!("{home}/.claude")),
        ] {
            set_var(&mut env, name, value);
        }
        for (name, value) in settings.env {
            set_var(&mut env, &name, value);
        }

        Ok(ProcessSpec {
            program: self.bin.clone(),
            args: args.into_iter().map(Into::into).collect(),
            cwd: req.workdir.clone(),
            env,
            stdin,
            stdin_open: long_lived,
        })
    }

    fn long_lived(&self) -> bool {
        true
    }

    fn next_turn(&self, input: &str) -> Option<Vec<u8>> {
        Some(user_turn(input))
    }

    /// Claude Code puts the repository's git status into its system prompt once, at boot (and
    /// it would be stale by the hand-off): this turns that section off, together with its
    /// built-in commit and PR instructions.
    fn warm_env(&self) -> Vec<(String, String)> {
        vec![(NO_GIT_SNAPSHOT.0.into(), NO_GIT_SNAPSHOT.1.into())]
    }

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::new(ClaudeDecoder::default())
    }

    fn interrupt(&self) -> Interrupt {
        Interrupt::Signal(libc::SIGINT)
    }

    fn check_role(
        &self,
        model: Option<&str>,
        settings: &serde_json::Value,
    ) -> Result<(), HarnessError> {
        checked_model(model)?;
        RoleSettings::parse(settings)?;
        Ok(())
    }
}

/// What this harness reads from a role's settings; other keys (harness, model, timeout …)
/// belong to the engine and are ignored.
#[derive(Debug, Default)]
struct RoleSettings {
    /// `max_retries`: API retries per request (`CLAUDE_CODE_MAX_RETRIES`).
    max_retries: Option<u64>,
    /// `env`: extra variables for the agent, e.g. `ANTHROPIC_BASE_URL`, `ANTHROPIC_API_KEY`.
    env: Vec<(String, String)>,
    /// `session`: one process per turn (default) or one for the whole run.
    session: SessionMode,
}

impl RoleSettings {
    fn parse(settings: &serde_json::Value) -> Result<RoleSettings, HarnessError> {
        let bad = |msg: String| Err(HarnessError::Config(msg));
        let mut out = RoleSettings::default();
        let map = match settings {
            serde_json::Value::Null => return Ok(out),
            serde_json::Value::Object(map) => map,
            other => return bad(format!("the role settings must be an object, not {other}")),
        };
        out.session = crate::session_of(settings)?.unwrap_or_default();
        match map.get("max_retries") {
            None | Some(serde_json::Value::Null) => {}
            Some(value) => match value.as_u64() {
                Some(n) => out.max_retries = Some(n),
                None => {
                    return bad(format!(
                        "`max_retries` must be a whole number of retries (e.g. 2), not {value}"
                    ));
                }
            },
        }
        match map.get("env") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(vars)) => {
                for (name, value) in vars {
                    let serde_json::Value::String(value) = value else {
                        return bad(format!(
                            "`env.{name}` must be a string (e.g. \"{name}\": \"value\"), not \
                             {value}"
                        ));
                    };
                    if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                        return bad(format!("`env` has an invalid variable name `{name}`"));
                    }
                    if name.starts_with("ATELIER_") {
                        return bad(format!(
                            "`env.{name}`: ATELIER_* variables are set by Atelier itself"
                        ));
                    }
                    out.env.push((name.clone(), value.clone()));
                }
                // Deterministic whatever the map's order.
                out.env.sort();
            }
            Some(other) => {
                return bad(format!(
                    "`env` must be an object of strings (e.g. {{\"ANTHROPIC_BASE_URL\": \
                     \"http://…\"}}), not {other}"
                ));
            }
        }
        Ok(out)
    }
}

/// The model, if it is one Claude Code can run.
fn checked_model(model: Option<&str>) -> Result<&str, HarnessError> {
    let model = model.map(str::trim).unwrap_or_default();
    if model.is_empty() {
        return Err(HarnessError::Config(
            "the claude-code harness needs a model: set a claude-… model or sonnet/opus/haiku"
                .into(),
        ));
    }
    let base = model.strip_suffix("[1m]").unwrap_or(model);
    let full_name = base
        .strip_prefix("claude-")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
    if full_name || MODEL_ALIASES.contains(&base) {
        Ok(model)
    } else {
        Err(HarnessError::Config(format!(
            "model `{model}` does not belong to the claude-code harness: use a claude-… model or \
             sonnet/opus/haiku"
        )))
    }
}

/// The short context appended to Claude Code's own system prompt; the stage prompt itself is
/// the user message.
fn system_prompt(task_doc: Option<&str>) -> String {
    let mut text = String::from(
        "You run unattended under Atelier, a coding-agent orchestrator: nobody answers \
         interactive prompts.",
    );
    if let Some(doc) = task_doc.filter(|d| !d.is_empty()) {
        text.push_str(&format!(" The task doc is {doc}."));
    }
    text.push_str(" Signal Atelier with `atelier signal …` (see `atelier signal --help`).");
    text
}

/// The variable that turns Claude Code's boot-time git status (and git instructions) off.
pub const NO_GIT_SNAPSHOT: (&str, &str) = ("CLAUDE_CODE_DISABLE_GIT_INSTRUCTIONS", "1");

/// One user turn of `--input-format stream-json`: a JSON line with the message as plain text
/// (the shape Claude Code 2.1.330 reads; `session_id` empty, the process's own is used).
fn user_turn(text: &str) -> Vec<u8> {
    let mut line = serde_json::json!({
        "type": "user",
        "message": {"role": "user", "content": text},
        "parent_tool_use_id": null,
        "session_id": "",
    })
    .to_string()
    .into_bytes();
    line.push(b'\n');
    line
}

/// Sets `name` in `env`, replacing an earlier value in place.
fn set_var(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == name) {
        Some(entry) => entry.1 = value,
        None => env.push((name.to_string(), value)),
    }
}

/// A random (version 4) UUID, the form `--session-id` requires.
fn new_session_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
