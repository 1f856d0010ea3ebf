//! The Codex CLI harness: one `codex exec --json` process per turn (`codex exec resume` for a
//! follow-up), decoded by [`CodexDecoder`]; or, for a role with `session = "long-lived"`, one
//! `codex app-server` for every turn of a run, driven by the [`bridge`] (the hidden `atelier
//! codex-bridge` program: the prompt and each later input are stdin lines, see
//! [`bridge::wire`]), whose output the same decoder reads ([`app_server`]).
//!
//! What the command always carries, and why (see `docs/harnesses.md` of the harness lab):
//! - `--dangerously-bypass-approvals-and-sandbox`: nobody answers approvals headlessly, and
//!   Codex's own sandbox cannot write in a container; Atelier sandboxes the agent itself.
//! - `--disable plugins -c analytics.enabled=false`: no outside traffic (which otherwise costs
//!   ~10 s per run when the hosts do not answer).
//! - `--disable unbounded_connection_retries` and, for Atelier's provider entry, bounded
//!   `request_max_retries`/`stream_max_retries`: a dead endpoint would otherwise retry forever.
//! - `--skip-git-repo-check`, and `--` before the positional arguments so that a prompt starting
//!   with `-` stays a prompt.
//!
//! `codex app-server` takes the same `-c` overrides and `--disable` flags (model, effort,
//! provider, retries, no plugins or analytics); approvals and Codex's sandbox are turned off per
//! thread instead (`approvalPolicy: "never"`, `sandbox: "danger-full-access"`), and the
//! prompt never is an argument.
//!
//! Codex keeps its state (sessions, needed to resume) in `$CODEX_HOME`, which defaults to
//! `$HOME/.codex` and is created by Codex when missing. `CODEX_HOME` itself is not set: Codex
//! refuses to start when it points at a directory that does not exist, and `HOME` is already
//! the task's own. The prompt is an argument, with stdin `/dev/null` (`exec` reads any
//! non-terminal stdin); a prompt too long for one argument (or exactly `-`) goes through stdin
//! instead, as `-`.

mod app_server;
pub mod bridge;
mod decode;
mod settings;

pub use decode::{CodexDecoder, is_retryable};
pub use settings::{
    CodexSettings, DEFAULT_API_KEY_ENV, DEFAULT_MAX_RETRIES, check_model, toml_string,
};

use crate::process::ProcessSpec;
use crate::{Capabilities, Decoder, Harness, HarnessError, Interrupt, TurnRequest};
use domain::{SessionMode, Stage};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The name of the provider entry Atelier adds when a role sets `base_url`.
pub const PROVIDER_ID: &str = "atelier";

/// Prompts longer than this (bytes) go through stdin: Linux limits one argument to 128 KiB.
pub const PROMPT_ARG_LIMIT: usize = 100 * 1024;

/// The harness that runs the native `codex` binary in `exec --json` mode, or `app-server` behind
/// the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodexHarness {
    bin: PathBuf,
    /// The `atelier` binary, which runs the bridge of long-lived sessions.
    atelier: PathBuf,
}

impl CodexHarness {
    /// `bin` is the native binary inside the npm package, e.g.
    /// `node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex` (the
    /// package's node wrapper only forwards signals). Long-lived sessions run the bridge as
    /// `atelier` from the agent's `PATH` unless [`CodexHarness::with_bridge`] names it.
    pub fn new(bin: impl Into<PathBuf>) -> CodexHarness {
        CodexHarness {
            bin: bin.into(),
            atelier: PathBuf::from("atelier"),
        }
    }

    /// The `atelier` binary that runs the bridge (`atelier codex-bridge`) of long-lived sessions.
    pub fn with_bridge(mut self, atelier: impl Into<PathBuf>) -> CodexHarness {
        self.atelier = atelier.into();
        self
    }

    /// The binary this harness starts.
    pub fn bin(&self) -> &Path {
        &self.bin
    }
}

impl Harness for CodexHarness {
    fn name(&self) -> &'static str {
        "codex"
    }

    /// `exec --json` reports whole messages only (no text deltas; the long-lived mode's
    /// app-server streams them) and no subagents.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            live_text: false,
            interrupt: true,
            resume: true,
            subagents: false,
        }
    }

    /// `codex exec [resume] --json … -- [<thread id>] <prompt>` in the worktree, with the
    /// request's environment plus the role's `settings.env`; for a long-lived role, `atelier
    /// codex-bridge <config>` running `codex app-server …` with the prompt as its first stdin
    /// line.
    fn command(&self, req: &TurnRequest) -> Result<ProcessSpec, HarnessError> {
        let model = check_model(req.model.as_deref())?;
        let settings = CodexSettings::parse(&req.settings)?;
        let env = agent_env(&req.env, &settings)?;
        if let Some(thread) = &req.resume_session
            && (thread.is_empty() || thread.starts_with('-'))
        {
            return Err(HarnessError::Config(format!(
                "`{thread}` is not a codex thread id to resume"
            )));
        }
        let options = options(req, model, &settings)?;
        if settings.session == SessionMode::LongLived {
            let mut args = vec!["app-server".to_string()];
            args.extend(options);
            let config = bridge::BridgeConfig {
                codex: self.bin.clone(),
                args,
                resume: req.resume_session.clone(),
            };
            return Ok(ProcessSpec {
                program: self.atelier.clone(),
                args: vec![bridge::SUBCOMMAND.into(), config.to_arg().into()],
                cwd: req.workdir.clone(),
                env,
                stdin: Some(bridge::wire::turn_line(&req.prompt)),
                stdin_open: true,
            });
        }

        let mut args = vec!["exec".to_string()];
        if req.resume_session.is_some() {
            args.push("resume".into());
        }
        args.extend(
            [
                "--json",
                "--dangerously-bypass-approvals-and-sandbox",
                "--skip-git-repo-check",
            ]
            .map(String::from),
        );
        args.extend(options);
        args.push("--".into());
        if let Some(thread) = &req.resume_session {
            args.push(thread.clone());
        }
        let stdin = if req.prompt.len() > PROMPT_ARG_LIMIT || req.prompt == "-" {
            args.push("-".into());
            Some(req.prompt.as_bytes().to_vec())
        } else {
            args.push(req.prompt.clone());
            None
        };

        Ok(ProcessSpec {
            program: self.bin.clone(),
            args: args.into_iter().map(OsString::from).collect(),
            cwd: req.workdir.clone(),
            env,
            stdin,
            stdin_open: false,
        })
    }

    fn long_lived(&self) -> bool {
        true
    }

    /// The bridge (the `atelier` binary, shown to every agent) starts `codex` itself.
    fn sandbox_programs(&self) -> Vec<PathBuf> {
        vec![self.bin.clone()]
    }

    fn next_turn(&self, input: &str) -> Option<Vec<u8>> {
        Some(bridge::wire::turn_line(input))
    }

    /// Nothing: Codex puts no snapshot of the repository into its context at boot (its
    /// environment context — working directory, shell, date, time zone — is built per turn, and
    /// it sends no git status), and what it reads when a thread starts (`AGENTS.md`, the
    /// project's configuration) it reads at the first turn, when the bridge starts the thread.
    fn warm_env(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::new(CodexDecoder::default())
    }

    /// SIGINT makes Codex stop its turn and kill its tool tree (SIGTERM leaves the tool's
    /// children running); it then exits 1 without a final event.
    fn interrupt(&self) -> Interrupt {
        Interrupt::Signal(libc::SIGINT)
    }

    fn check_role(
        &self,
        model: Option<&str>,
        settings: &serde_json::Value,
    ) -> Result<(), HarnessError> {
        check_model(model)?;
        CodexSettings::parse(settings)?;
        Ok(())
    }
}

/// The options both modes give Codex: no plugins or analytics, bounded retries, the model and
/// effort, no sub-agents for the implementer, and the provider of `base_url`.
fn options(
    req: &TurnRequest,
    model: &str,
    settings: &CodexSettings,
) -> Result<Vec<String>, HarnessError> {
    let mut args: Vec<String> = [
        "--disable",
        "plugins",
        "-c",
        "analytics.enabled=false",
        "--disable",
        "unbounded_connection_retries",
    ]
    .map(String::from)
    .into();
    if settings.session == SessionMode::LongLived {
        // `app-server` has no `-m`.
        args.extend(config_arg("model", &toml_string(model)));
    } else {
        args.extend(["-m".to_string(), model.to_string()]);
    }
    if req.stage == Stage::Implement {
        // The implementer never delegates: no sub-agent tools (both generations of them).
        args.extend(["--disable", "multi_agent", "--disable", "multi_agent_v2"].map(String::from));
    }
    if let Some(effort) = &req.effort {
        if effort.trim().is_empty() {
            return Err(HarnessError::Config(
                "the codex role has an empty `effort`; remove it or use e.g. medium or high".into(),
            ));
        }
        args.extend(config_arg("model_reasoning_effort", &toml_string(effort)));
    }
    if let Some(base_url) = &settings.base_url {
        args.extend(provider_args(base_url, settings));
    }
    Ok(args)
}

/// `-c key=value` as two arguments (`value` is already TOML).
fn config_arg(key: &str, value: &str) -> [String; 2] {
    ["-c".to_string(), format!("{key}={value}")]
}

/// The `-c` overrides that define Atelier's provider entry for `base_url` and select it.
fn provider_args(base_url: &str, settings: &CodexSettings) -> Vec<String> {
    let entry = |field: &str| format!("model_providers.{PROVIDER_ID}.{field}");
    let retries = settings.max_retries().to_string();
    [
        ("model_provider".to_string(), toml_string(PROVIDER_ID)),
        (entry("name"), toml_string(PROVIDER_ID)),
        (entry("base_url"), toml_string(base_url)),
        (entry("env_key"), toml_string(settings.api_key_env())),
        (entry("wire_api"), toml_string("responses")),
        (entry("request_max_retries"), retries.clone()),
        (entry("stream_max_retries"), retries),
    ]
    .iter()
    .flat_map(|(key, value)| config_arg(key, value))
    .collect()
}

/// The request's environment with the role's `settings.env` on top (same name: replaced in
/// place). Needs an absolute `HOME` (Codex's state lives in `$HOME/.codex`) and, with
/// `base_url`, the provider's key variable.
fn agent_env(
    base: &[(String, String)],
    settings: &CodexSettings,
) -> Result<Vec<(String, String)>, HarnessError> {
    let mut env = base.to_vec();
    for (name, value) in &settings.env {
        match env.iter_mut().find(|(k, _)| k == name) {
            Some(entry) => entry.1.clone_from(value),
            None => env.push((name.clone(), value.clone())),
        }
    }
    let home = env
        .iter()
        .find(|(k, _)| k == "HOME")
        .map(|(_, v)| v.as_str());
    if !home.is_some_and(|h| Path::new(h).is_absolute()) {
        return Err(HarnessError::Config(
            "the codex agent needs an absolute HOME in its environment (Codex keeps its \
             sessions in $HOME/.codex)"
                .into(),
        ));
    }
    if settings.base_url.is_some() {
        let key = settings.api_key_env();
        if !env.iter().any(|(k, v)| k == key && !v.is_empty()) {
            return Err(HarnessError::Config(format!(
                "the codex provider at `base_url` reads its API key from {key}, which is not \
                 in the agent's environment: set it in the role's settings `env` (any \
                 placeholder for a server without authentication), or name another variable \
                 with `api_key_env`"
            )));
        }
    }
    Ok(env)
}
