//! What must hold for agents to run, checked in one place: whether the agent CLIs that roles
//! name can start, and — for `atelier doctor` — the sandbox, the data directory's permissions,
//! git, and whether each project's remote answers.
//!
//! The CLI check is asked at three moments, with the same words: when a project's settings are
//! added or replaced (a CLI that cannot start is a 400 naming the CLI, its pinned install
//! command and the `atelier serve` flag that names its executable), when the server starts (it
//! refuses to start while a stored project's role needs such a CLI), and by `atelier doctor`
//! (`Engine::status`). A CLI is asked `<cli> --version` from the agents' `PATH` with an explicit
//! environment, under [`VERSION_LIMIT`]. The scripted harness runs no outside CLI.

use crate::api::{Check, ProjectSettings};
use crate::confine;
use crate::error::EngineError;
use crate::facade::EngineConfig;
use harness::agent_cli::{AGENT_CLIS, AgentCli};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// How long a CLI may take to print its version (OpenCode takes about a second).
pub(crate) const VERSION_LIMIT: Duration = Duration::from_secs(10);

/// The executable the engine runs for `cli`.
pub(crate) fn bin<'a>(config: &'a EngineConfig, cli: &AgentCli) -> &'a Path {
    match cli.harness {
        "claude-code" => &config.claude_bin,
        "codex" => &config.codex_bin,
        _ => &config.opencode_bin,
    }
}

/// The CLIs `settings`' roles need, each once, in [`AGENT_CLIS`] order.
pub(crate) fn needed(settings: &ProjectSettings) -> Vec<&'static AgentCli> {
    AGENT_CLIS
        .iter()
        .filter(|cli| settings.roles.values().any(|r| r.harness == cli.harness))
        .collect()
}

/// Asks `cli` its version (a fresh answer); the error says which CLI cannot start, why, and
/// how to install it and name it ([`AgentCli::cannot_start`]).
pub(crate) async fn version(config: &EngineConfig, cli: &AgentCli) -> Result<String, String> {
    let bin = bin(config, cli);
    // A home of its own: a CLI may write its state there even for `--version`.
    let home = config.homes_dir.join(".cli-check");
    let cwd = confine::ensure_dir(&home)
        .map(|()| home.clone())
        .unwrap_or_else(|_| PathBuf::from("/"));
    let env = vec![
        ("PATH".to_string(), confine::agent_path(config)),
        ("HOME".to_string(), home.display().to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
    ];
    let answer = harness::process::version_of(bin, &env, &cwd, VERSION_LIMIT)
        .await
        .map_err(|why| cli.cannot_start(bin, &why));
    if let Ok(version) = &answer {
        lock_started().insert(bin.to_path_buf(), version.clone());
    }
    answer
}

/// Executables that answered a version check in this process: a project added again does not
/// ask again (OpenCode takes a second to answer). Only successes are kept.
fn lock_started() -> std::sync::MutexGuard<'static, HashMap<PathBuf, String>> {
    static STARTED: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    STARTED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Fails with every CLI of `clis` that cannot start (checked at once), each with what to do.
pub(crate) async fn require(
    config: &EngineConfig,
    clis: &[&'static AgentCli],
) -> Result<(), EngineError> {
    let checks = clis.iter().map(|cli| async move {
        if lock_started().contains_key(bin(config, cli)) {
            return Ok(());
        }
        let version = version(config, cli).await?;
        tracing::info!(cli = cli.harness, %version, bin = %bin(config, cli).display(), "agent CLI starts");
        Ok(())
    });
    let problems: Vec<String> = futures::future::join_all(checks)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::InvalidInput(problems.join("; ")))
    }
}

/// Warns when the default role's CLI (Claude Code) cannot start: a project added without roles
/// would be refused until it is installed.
pub(crate) async fn warn_about_default(config: &EngineConfig) {
    let default = crate::settings::default_role().harness;
    if let Some(cli) = AgentCli::of(&default)
        && let Err(problem) = version(config, cli).await
    {
        tracing::warn!("{problem}; projects added without roles use it");
    }
}

/// The check of every agent CLI: its version, or why it cannot start — a failure when a role of
/// `used` needs it, a warning for the default role's (Claude Code).
pub(crate) async fn cli_checks(config: &EngineConfig, used: &[&'static AgentCli]) -> Vec<Check> {
    let default = crate::settings::default_role().harness;
    let default = default.as_str();
    let checks = AGENT_CLIS.iter().map(|cli| async move {
        let name = format!("{} CLI", cli.harness);
        let bin = bin(config, cli).display().to_string();
        match version(config, cli).await {
            Ok(version) => Check::ok(name, format!("{version} (`{bin}`)")),
            Err(problem) => {
                if used.iter().any(|u| u.harness == cli.harness) {
                    Check::failed(name, problem)
                } else if cli.harness == default {
                    Check::warning(
                        name,
                        format!("{problem}; projects added without roles use it"),
                    )
                } else {
                    Check::ok(
                        name,
                        format!(
                            "not installed (`{bin}`); no role uses it (to use it: `{}`, then \
                             `atelier serve {} PATH`)",
                            cli.install_command(),
                            cli.flag
                        ),
                    )
                }
            }
        }
    });
    futures::future::join_all(checks).await
}

/// The data directory is private to the server's user (mode 0700).
pub(crate) fn data_dir_check(dir: &Path) -> Check {
    use std::os::unix::fs::PermissionsExt;
    let name = "data directory".to_string();
    match std::fs::metadata(dir) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                Check::ok(name, format!("{} (mode {mode:o})", dir.display()))
            } else {
                Check::failed(
                    name,
                    format!(
                        "{} is mode {mode:o}: others can read it; restart the server (it makes \
                         the directory 0700) or `chmod 700` it",
                        dir.display()
                    ),
                )
            }
        }
        Err(e) => Check::failed(name, format!("{}: {e}", dir.display())),
    }
}

/// git answers its version.
pub(crate) async fn git_check(dir: &Path) -> Check {
    match git::run(dir, ["--version"]).await {
        Ok(version) => Check::ok("git".into(), version.trim().to_string()),
        Err(e) => Check::failed(
            "git".into(),
            format!("{e}: install git (Debian: apt-get install git)"),
        ),
    }
}

/// The project's remote answers (`git ls-remote` of its default branch, under the forge
/// deadline). A GitHub project's remote needs the forge's credentials: its reachability shows
/// in its pull requests' syncs instead.
pub(crate) async fn forge_check(
    config: &EngineConfig,
    name: &str,
    path: &Path,
    default_branch: &str,
    settings: &ProjectSettings,
) -> Check {
    let check_name = format!("forge of {name}");
    if matches!(settings.forge, crate::api::ForgeSettings::Github(_)) {
        return Check::ok(
            check_name,
            "GitHub (checked by its pull requests' syncs, not here)".into(),
        );
    }
    let repo = match git::Repo::open(path).await {
        Ok(repo) => repo.with_network_timeout(config.forge_timeout),
        Err(e) => return Check::failed(check_name, e.to_string()),
    };
    match repo
        .remote_has_branch(&settings.remote, default_branch)
        .await
    {
        Ok(true) => Check::ok(check_name, format!("remote `{}` answers", settings.remote)),
        Ok(false) => Check::failed(
            check_name,
            format!(
                "remote `{}` answers but has no branch `{default_branch}`",
                settings.remote
            ),
        ),
        Err(e) => Check::failed(check_name, e.to_string()),
    }
}
