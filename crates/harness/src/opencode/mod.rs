//! The OpenCode harness: one `opencode run --format json` process per turn (`--session` for a
//! follow-up), decoded by [`OpenCodeDecoder`]; or, for a role with `session = "long-lived"`, one
//! process per run: the [`bridge`] (`atelier opencode-bridge`, a hidden command of the `atelier`
//! binary) runs `opencode serve` on loopback, takes each turn as a stdin line and writes the
//! server's events for its session to stdout, decoded by the same [`OpenCodeDecoder`].
//!
//! What the command always carries, and why (see `docs/harnesses.md` of the harness lab; checked
//! against OpenCode 1.18.33):
//! - The prompt goes through **stdin**, not as an argument: `run` re-quotes every argument that
//!   contains a space (the model would see `"fix the bug"` with the quotes), and one argument is
//!   limited to 128 KiB. A non-terminal stdin is read to its end and used as the message as is.
//! - `--thinking`: without it `run` drops reasoning parts from its JSON output.
//! - `--print-logs --log-level ERROR`: OpenCode's JSON `error` event often only says
//!   "Unexpected server error"; the cause (e.g. `ProviderModelNotFoundError`) is logged, and
//!   this puts it in the stderr tail the engine keeps.
//! - `--model provider/model` (`atelier/<model>` for a role's `base_url`), `--variant <effort>`
//!   when the role sets one (OpenCode ignores a variant the model does not define).
//!
//! The configuration travels in `OPENCODE_CONFIG_CONTENT` (merged over any config in the task's
//! `HOME`): Atelier's `atelier` provider entry for `base_url`, the model, `edit` and `bash`
//! allowed without asking (`run` rejects every permission it would have to ask for), `task`
//! denied in the implement stage (no sub-agent delegation: OpenCode then does not even offer the
//! tool), no autoupdate, no sharing, no snapshot tracking (OpenCode's undo: a `git add` of the
//! whole worktree into a repository of its own before and after every step, ~4 `git` processes
//! ahead of each model request; turning it off halved a warmed-up bridge's prompt → model
//! request, 0.6 → 0.25 s median under load). The `OPENCODE_DISABLE_*` variables keep it offline apart from
//! the model, and so does what [`Harness::prepare`] puts into the task's home before each turn:
//! without it OpenCode installs `@opencode-ai/plugin` from the npm registry at every start
//! (`home`). `run` ignores SIGINT, so the graceful interrupt is SIGTERM; the engine then kills
//! every descendant (OpenCode leaves its tools running).

pub mod bridge;
mod decode;
mod home;
mod serve_decode;
mod settings;

pub use bridge::{BridgeArgs, run_bridge};
pub use decode::{OpenCodeDecoder, is_retryable};
pub use home::{PLUGIN_PACKAGE, global_config_dir, prepare_config_dir};
pub use settings::{OpenCodeSettings, check_model, model_ref};

use crate::process::ProcessSpec;
use crate::{Capabilities, Decoder, Harness, HarnessError, Interrupt, TurnRequest};
use domain::{SessionMode, Stage};
use serde_json::{Map, Value, json};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The name of the provider entry Atelier adds when a role sets `base_url`.
pub const PROVIDER_ID: &str = "atelier";

/// Variables that keep OpenCode from reaching anything but the model; a role's `settings.env`
/// may override them.
pub const QUIET_ENV: [(&str, &str); 4] = [
    ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
    ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
    ("OPENCODE_DISABLE_SHARE", "1"),
    ("OPENCODE_DISABLE_LSP_DOWNLOAD", "1"),
];

/// The variable that carries the configuration built by [`opencode_config`].
pub const CONFIG_ENV: &str = "OPENCODE_CONFIG_CONTENT";

/// The hidden `atelier` command that runs the bridge of a long-lived session.
pub const BRIDGE_COMMAND: &str = "opencode-bridge";

/// The harness that runs the native `opencode` binary in `run --format json` mode, or through
/// the bridge in `serve` mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCodeHarness {
    bin: PathBuf,
    /// The `atelier` binary whose [`BRIDGE_COMMAND`] runs a long-lived session.
    bridge: PathBuf,
}

impl OpenCodeHarness {
    /// `bin` is the native binary inside the npm package:
    /// `node_modules/opencode-linux-x64/bin/opencode` (the same file as
    /// `node_modules/opencode-ai/bin/opencode.exe`). Long-lived sessions run `atelier` from the
    /// agent's `PATH` until [`OpenCodeHarness::with_bridge`] names it.
    pub fn new(bin: impl Into<PathBuf>) -> OpenCodeHarness {
        OpenCodeHarness {
            bin: bin.into(),
            bridge: PathBuf::from("atelier"),
        }
    }

    /// The `atelier` binary that bridges a long-lived session (the server's own).
    pub fn with_bridge(mut self, atelier: impl Into<PathBuf>) -> OpenCodeHarness {
        self.bridge = atelier.into();
        self
    }

    /// The binary this harness starts.
    pub fn bin(&self) -> &Path {
        &self.bin
    }
}

impl Harness for OpenCodeHarness {
    fn name(&self) -> &'static str {
        "opencode"
    }

    /// `run --format json` reports whole parts only (no text deltas) and cannot be interrupted
    /// gracefully; OpenCode delegates to sub-agents with its `task` tool.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            live_text: false,
            interrupt: false,
            resume: true,
            subagents: true,
        }
    }

    /// `opencode run --format json … [--session <id>]` in the worktree, the prompt on stdin, with
    /// the request's environment plus [`QUIET_ENV`], the role's `settings.env` and the
    /// configuration in [`CONFIG_ENV`].
    fn command(&self, req: &TurnRequest) -> Result<ProcessSpec, HarnessError> {
        let settings = OpenCodeSettings::parse(&req.settings)?;
        let model = check_model(req.model.as_deref(), &settings)?;
        if settings.session == SessionMode::LongLived {
            return self.long_lived_command(req, model, &settings);
        }
        if req.prompt.trim().is_empty() {
            return Err(HarnessError::Config(format!(
                "the opencode harness got an empty prompt for the {} stage",
                req.stage
            )));
        }
        let config = opencode_config(model, req.stage, &settings);
        let env = agent_env(&req.env, &settings, &config)?;
        let mut args: Vec<String> = [
            "run",
            "--format",
            "json",
            "--thinking",
            "--print-logs",
            "--log-level",
            "ERROR",
            "--model",
        ]
        .map(String::from)
        .to_vec();
        args.push(model_ref(model, &settings));
        args.extend(variant_and_session(req)?);

        Ok(ProcessSpec {
            program: self.bin.clone(),
            args: args.into_iter().map(OsString::from).collect(),
            cwd: req.workdir.clone(),
            env,
            stdin: Some(req.prompt.as_bytes().to_vec()),
            stdin_open: false,
        })
    }

    /// Gives OpenCode's global config folder in the task's home (or under the role's
    /// `XDG_CONFIG_HOME`) the `node_modules` folder and lock that stop its plugin install
    /// ([`prepare_config_dir`]).
    fn prepare(&self, req: &TurnRequest) -> Result<(), HarnessError> {
        let settings = OpenCodeSettings::parse(&req.settings)?;
        let mut env = req.env.clone();
        env.extend(settings.env);
        let (base, below) = global_config_dir(&env).ok_or_else(|| {
            HarnessError::Prepare(
                "the opencode agent needs an absolute HOME (or XDG_CONFIG_HOME) in its \
                 environment"
                    .into(),
            )
        })?;
        prepare_config_dir(&base, below).map(drop).map_err(|err| {
            HarnessError::Prepare(format!(
                "OpenCode's config folder under {}: {err}",
                base.display()
            ))
        })
    }

    /// The bridge of a long-lived session (`--session`/`next_turn`): see [`bridge`].
    fn long_lived(&self) -> bool {
        true
    }

    fn next_turn(&self, input: &str) -> Option<Vec<u8>> {
        Some(bridge::turn_line(input))
    }

    /// Nothing: OpenCode's system prompt holds no git status and no file tree (its `<env>`
    /// block names the working directory, whether it is a git repository, the platform and the
    /// date), and it reads the instruction files (`AGENTS.md` …) at each model request, so a warm
    /// process sees the previous run's work; the hand-off's git status is in its first message.
    /// What it does read once, at boot, is its configuration (the worktree's `opencode.json` and
    /// `.opencode/` folder included): the bridge has OpenCode read it again before a turn when
    /// it changed ([`bridge`]).
    fn warm_env(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// One decoder for both modes: `run --format json` events and the bridge's (`serve`'s
    /// events, dotted types) do not share a type name.
    fn decoder(&self) -> Box<dyn Decoder> {
        Box::new(OpenCodeDecoder::default())
    }

    /// `run` ignores SIGINT; SIGTERM ends it (without a final event), and the engine then kills
    /// the tool processes OpenCode leaves behind. The bridge takes SIGTERM as a stop: it aborts
    /// the session's turn through the API (OpenCode then ends its tools) and shuts the server
    /// down.
    fn interrupt(&self) -> Interrupt {
        Interrupt::Signal(libc::SIGTERM)
    }

    fn check_role(
        &self,
        model: Option<&str>,
        settings: &serde_json::Value,
    ) -> Result<(), HarnessError> {
        let settings = OpenCodeSettings::parse(settings)?;
        check_model(model, &settings)?;
        Ok(())
    }
}

impl OpenCodeHarness {
    /// `atelier opencode-bridge --opencode <bin> --model <ref> [--variant <effort>] [--session
    /// <id>]` in the worktree, with the same environment as a one-shot turn (its configuration
    /// also denies OpenCode's `question` tool, which `serve` offers and `run` does not: nobody
    /// would answer it); the prompt is the first stdin line (none for a warm start), and stdin
    /// stays open for the run's later turns.
    fn long_lived_command(
        &self,
        req: &TurnRequest,
        model: &str,
        settings: &OpenCodeSettings,
    ) -> Result<ProcessSpec, HarnessError> {
        let mut config = opencode_config(model, req.stage, settings);
        config["permission"]["question"] = "deny".into();
        let env = agent_env(&req.env, settings, &config)?;
        let mut args: Vec<OsString> = vec![
            BRIDGE_COMMAND.into(),
            "--opencode".into(),
            self.bin.clone().into(),
            "--model".into(),
            model_ref(model, settings).into(),
        ];
        args.extend(variant_and_session(req)?.into_iter().map(OsString::from));
        let stdin = if req.prompt.trim().is_empty() {
            Vec::new()
        } else {
            bridge::turn_line(&req.prompt)
        };
        Ok(ProcessSpec {
            program: self.bridge.clone(),
            args,
            cwd: req.workdir.clone(),
            env,
            stdin: Some(stdin),
            stdin_open: true,
        })
    }
}

/// `--variant <effort>` and `--session <id>`, when the request has them.
fn variant_and_session(req: &TurnRequest) -> Result<Vec<String>, HarnessError> {
    let mut args = Vec::new();
    if let Some(effort) = &req.effort {
        if effort.trim().is_empty() || effort.starts_with('-') {
            return Err(HarnessError::Config(format!(
                "the opencode role has the `effort` `{effort}`; remove it or use a model \
                 variant such as high or max"
            )));
        }
        args.extend(["--variant".to_string(), effort.clone()]);
    }
    if let Some(session) = &req.resume_session {
        if session.is_empty() || session.starts_with('-') {
            return Err(HarnessError::Config(format!(
                "`{session}` is not an opencode session id to resume"
            )));
        }
        args.extend(["--session".to_string(), session.clone()]);
    }
    Ok(args)
}

/// The OpenCode configuration of one turn for the role's `model` (already checked).
pub fn opencode_config(model: &str, stage: Stage, settings: &OpenCodeSettings) -> Value {
    let model_ref = model_ref(model, settings);
    let mut permission = Map::new();
    permission.insert("edit".into(), "allow".into());
    permission.insert("bash".into(), "allow".into());
    if stage == Stage::Implement {
        permission.insert("task".into(), "deny".into());
    }
    let mut config = Map::new();
    if let Some(base_url) = &settings.base_url {
        let mut options = Map::new();
        options.insert("baseURL".into(), base_url.as_str().into());
        if let Some(name) = &settings.api_key_env {
            options.insert("apiKey".into(), format!("{{env:{name}}}").into());
        } else if let Some(key) = &settings.api_key {
            options.insert("apiKey".into(), key.as_str().into());
        }
        config.insert(
            "provider".into(),
            json!({
                PROVIDER_ID: {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": "Atelier",
                    "options": options,
                    "models": { model: { "name": model, "tool_call": true } },
                }
            }),
        );
        // Title generation uses the small model: keep it on the same server.
        config.insert("small_model".into(), model_ref.as_str().into());
    }
    config.insert("model".into(), model_ref.into());
    config.insert("permission".into(), permission.into());
    config.insert("autoupdate".into(), false.into());
    config.insert("share".into(), "disabled".into());
    // No snapshot tracking: OpenCode would otherwise copy the worktree into a git repository
    // of its own in the home (`git add` of every file, `write-tree`) at the start and the end
    // of every step, before its model request; it serves only OpenCode's own undo/revert,
    // which an unattended run never uses (Atelier reads file changes from the tools' results).
    config.insert("snapshot".into(), false.into());
    config.into()
}

/// The request's environment, then [`QUIET_ENV`], the role's `settings.env` and the
/// configuration (same name: replaced in place). Needs an absolute `HOME` (OpenCode keeps its
/// sessions under it) and, with `api_key_env`, that variable.
fn agent_env(
    base: &[(String, String)],
    settings: &OpenCodeSettings,
    config: &Value,
) -> Result<Vec<(String, String)>, HarnessError> {
    let mut env = base.to_vec();
    let mut set = |name: &str, value: &str| match env.iter_mut().find(|(k, _)| k == name) {
        Some(entry) => value.clone_into(&mut entry.1),
        None => env.push((name.to_string(), value.to_string())),
    };
    for (name, value) in QUIET_ENV {
        set(name, value);
    }
    for (name, value) in &settings.env {
        set(name, value);
    }
    set(CONFIG_ENV, &config.to_string());

    let home = env
        .iter()
        .find(|(k, _)| k == "HOME")
        .map(|(_, v)| v.as_str());
    if !home.is_some_and(|h| Path::new(h).is_absolute()) {
        return Err(HarnessError::Config(
            "the opencode agent needs an absolute HOME in its environment (OpenCode keeps its \
             sessions under $HOME/.local/share/opencode)"
                .into(),
        ));
    }
    if let Some(key) = &settings.api_key_env
        && !env.iter().any(|(k, v)| k == key && !v.is_empty())
    {
        return Err(HarnessError::Config(format!(
            "the opencode provider at `base_url` reads its API key from {key}, which is not in \
             the agent's environment: set it in the role's settings `env`, or give the key as \
             `api_key`, or remove `api_key_env` for a server without authentication"
        )));
    }
    Ok(env)
}
