//! What an agent is given, and nothing more: one builder for the complete environment and the
//! sandbox mounts of every agent process — the runs of every harness and the project's setup
//! hook alike.
//!
//! An agent sees its task's worktree, the repository's git directory (to commit; what would
//! configure the server's git or tell it where a repository is, read-only: [`git_mounts`]), its
//! own home (`<homes_dir>/<task key>`, mode 0700, outside the data directory) and its task's doc
//! folder, writable; the `atelier` binary, the operator's git identity, the project's linked env files
//! and the paths the project's `sandbox` settings name, read-only. Nothing of the data directory
//! but its own doc folder is ever mounted, and a project setting that would show more is refused.

use crate::api::{ProjectSettings, SandboxSettings};
use crate::facade::EngineConfig;
use harness::sandbox::{Mounts, is_within};
use std::path::{Path, PathBuf};
use store::{RunRow, TaskRow};

/// Name of the environment variable that marks every process of a run (found again after a
/// crash of a server that ran without the sandbox).
pub(crate) const MARK_VAR: &str = "ATELIER_RUN_MARK";

/// Variables Atelier sets for every agent; a role's or the sandbox settings' `env` may not
/// replace them.
pub(crate) const RESERVED_ENV: [&str; 14] = [
    "PATH",
    "HOME",
    "LANG",
    "GIT_CONFIG_GLOBAL",
    "ATELIER_URL",
    "ATELIER_RUN_TOKEN",
    "ATELIER_TASK_ID",
    "ATELIER_RUN_ID",
    "ATELIER_STAGE",
    "ATELIER_TASK_DOC",
    "ATELIER_WORKTREE",
    "ATELIER_PORT",
    "ATELIER_PORT_COUNT",
    MARK_VAR,
];

/// Names the project's `sandbox.env` may not use: Atelier gives every agent and setup hook its
/// own `ATELIER_*` context (the hook's `ATELIER_REPO`, `ATELIER_BRANCH`… included).
const ATELIER_PREFIX: &str = "ATELIER_";

/// The system's programs, after the folder of the `atelier` binary (agents call `atelier signal`).
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The agents' `PATH`: the folder of the `atelier` binary, then the system's programs.
pub(crate) fn agent_path(config: &EngineConfig) -> String {
    let mut path = config
        .atelier_bin
        .parent()
        .map(|d| format!("{}:", d.display()))
        .unwrap_or_default();
    path.push_str(SYSTEM_PATH);
    path
}

/// Creates `dir` (and its parents) readable by the server's user only.
pub(crate) fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
}

/// The task's agent home: `<homes_dir>/<task key>`.
pub(crate) fn home_dir(config: &EngineConfig, key: &str) -> PathBuf {
    config.homes_dir.join(key)
}

/// Creates the task's agent home (and the homes folder), readable by the server's user only.
pub(crate) fn ensure_home(config: &EngineConfig, key: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let home = home_dir(config, key);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&home)
        .and_then(|()| std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("cannot create the agent's home {}: {e}", home.display()))?;
    Ok(home)
}

/// Writes codex's login file (a user's `auth.json` credential) into the agent's home as
/// `~/.codex/auth.json`, readable by the server's user only.
pub(crate) fn write_codex_auth(home: &Path, content: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = home.join(".codex");
    let path = dir.join("auth.json");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
        })
        .and_then(|mut file| file.write_all(content.as_bytes()))
        .map_err(|e| format!("cannot write codex's login file {}: {e}", path.display()))
}

/// The operator's git identity, so agents' commits are attributed (not a secret).
fn git_identity() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(Path::new(&home).join(".gitconfig")).filter(|p| p.is_file())
}

/// The variables every agent process starts with: `PATH`, `HOME`, `LANG`, the git identity,
/// the task's port block, then the project's `sandbox.env` without any `ATELIER_*` name (a
/// project stored before such names were refused cannot replace Atelier's own values, which the
/// settings check refuses today). The whole environment of the
/// project's setup hook (`ATELIER_TASK_KEY`, `ATELIER_BRANCH`, `ATELIER_WORKTREE` and
/// `ATELIER_REPO` are added by the workspace); a run's adds its own context ([`run_env`]).
pub(crate) fn hook_env(
    config: &EngineConfig,
    home: &Path,
    task_id: impl ToString,
    port: u16,
    settings: &ProjectSettings,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_string(), agent_path(config)),
        ("HOME".to_string(), home.display().to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
        ("ATELIER_TASK_ID".to_string(), task_id.to_string()),
        ("ATELIER_PORT".to_string(), port.to_string()),
        (
            "ATELIER_PORT_COUNT".to_string(),
            settings.port_block.to_string(),
        ),
    ];
    if let Some(gitconfig) = git_identity() {
        env.push((
            "GIT_CONFIG_GLOBAL".to_string(),
            gitconfig.display().to_string(),
        ));
    }
    env.extend(
        settings
            .sandbox
            .env
            .iter()
            .filter(|(name, _)| !name.starts_with("ATELIER_"))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    env
}

/// The complete environment of a run's agent: what it needs and nothing of the server's.
pub(crate) fn run_env(
    config: &EngineConfig,
    home: &Path,
    task: &TaskRow,
    run: &RunRow,
    token: &str,
    worktree: &str,
    settings: &ProjectSettings,
) -> Vec<(String, String)> {
    let mut env = hook_env(config, home, task.id, task.port, settings);
    env.extend([
        ("ATELIER_URL".to_string(), config.server_url.clone()),
        ("ATELIER_RUN_TOKEN".to_string(), token.to_string()),
        ("ATELIER_RUN_ID".to_string(), run.id.to_string()),
        ("ATELIER_STAGE".to_string(), run.stage.to_string()),
        ("ATELIER_TASK_DOC".to_string(), task.doc_path.clone()),
        ("ATELIER_WORKTREE".to_string(), worktree.to_string()),
        (MARK_VAR.to_string(), run.mark.clone()),
    ]);
    env
}

/// Where a task's agent may read and write.
pub(crate) struct TaskPaths<'a> {
    pub repo: &'a Path,
    pub worktree: &'a Path,
    pub home: &'a Path,
    /// The task's doc folder (`<data_dir>/tasks/<key>`), the one part of the data directory shown.
    pub doc_dir: Option<&'a Path>,
}

/// The sandbox mounts of one of the task's agents; an error when a path would show the data
/// directory or the agent homes beyond the task's own.
pub(crate) fn mounts(
    config: &EngineConfig,
    paths: &TaskPaths<'_>,
    settings: &ProjectSettings,
) -> Result<Mounts, String> {
    check_sandbox_paths(config, &settings.sandbox)?;
    let git = git_mounts(paths.repo, paths.worktree)?;
    let mut writable = vec![paths.worktree.to_path_buf(), paths.home.to_path_buf()];
    writable.extend(git.writable);
    writable.extend(paths.doc_dir.map(Path::to_path_buf));
    writable.extend(settings.sandbox.writable.iter().cloned());
    let mut read_only = vec![config.atelier_bin.clone()];
    read_only.extend(git.read_only);
    // A long-lived OpenCode session's agent is the `atelier` bridge, which starts `opencode
    // serve` itself: the sandbox shows that program too (a one-shot agent's own program is
    // mounted by the sandbox).
    if config.opencode_bin.is_absolute() {
        read_only.push(config.opencode_bin.clone());
    }
    read_only.extend(git_identity());
    read_only.extend(settings.env_files.iter().map(|f| paths.repo.join(f)));
    read_only.extend(settings.sandbox.read_only.iter().cloned());
    for path in writable.iter().chain(&read_only) {
        if is_within(&config.data_dir, path) {
            return Err(format!(
                "the sandbox would show the data directory: {} contains it; move the repository or the data directory apart",
                path.display()
            ));
        }
    }
    Ok(Mounts {
        read_only,
        writable,
    })
}

/// What of the repository's git folder `C` (`<repo>/.git`) an agent sees, so that it can commit
/// in its worktree and change nothing the server's own git (run as the server, seeing the whole
/// `.git`) would take as configuration or as a repository's location:
/// - writable: `C` itself (every ref deletion takes `C/packed-refs.lock` and renames it over
///   `C/packed-refs`, so the folder cannot be read-only), and the worktree's own entry
///   `C/worktrees/<name>` (its index, `HEAD`, rebase state);
/// - read-only over them: `C/config` and `C/config.worktree` (made empty when missing), `C/hooks`
///   (made when missing), `C/worktrees` (every other task's entry), the entry's `commondir`,
///   `gitdir` and `config.worktree` (made empty when missing), and the worktree's own `.git`
///   pointer file; `C/info` and `C/objects/info` (made when missing; refused when something
///   else is there), whose lists git reads line by line and quotes in its errors
///   (`objects/info/alternates` linked to a file would have the server's git print every line
///   of it), and which no commit, stash or rebase writes.
///
/// The server's git never follows a pointer or a `commondir` anyway (`git::TaskWorktree`,
/// `git::Repo`); these mounts keep the files it reads as they were made.
fn git_mounts(repo: &Path, worktree: &Path) -> Result<Mounts, String> {
    let common = repo.join(".git");
    let entry = worktree
        .file_name()
        .map(|name| common.join("worktrees").join(name));
    let mut mounts = Mounts {
        writable: vec![common.clone()],
        read_only: vec![
            common.join("config"),
            common.join("config.worktree"),
            common.join("hooks"),
            common.join("worktrees"),
            common.join("info"),
            common.join("objects/info"),
            worktree.join(".git"),
        ],
    };
    // Files and folders that must exist to be shown read-only: missing, an agent could create
    // them (a missing one is skipped by the sandbox).
    if common.is_dir() {
        for dir in ["hooks", "info", "objects/info"] {
            let dir = common.join(dir);
            match std::fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(format!(
                        "{} is not a folder (a link or a file put there in its place); remove it",
                        dir.display()
                    ));
                }
                Err(_) => std::fs::create_dir_all(&dir)
                    .map_err(|err| format!("cannot create {}: {err}", dir.display()))?,
            }
        }
        git::seal_worktree_config(&common)
            .map_err(|err| format!("cannot create {}/config.worktree: {err}", common.display()))?;
    }
    if let Some(entry) = entry {
        // A new task's entry does not exist yet when its setup hook's mounts are chosen; git
        // makes it (and its `config.worktree`) before the hook starts.
        if entry.is_dir() {
            git::seal_worktree_config(&entry).map_err(|err| {
                format!("cannot create {}/config.worktree: {err}", entry.display())
            })?;
        }
        mounts.read_only.extend(
            ["commondir", "gitdir", "config.worktree"]
                .iter()
                .map(|file| entry.join(file)),
        );
        mounts.writable.push(entry);
    }
    Ok(mounts)
}

/// Refuses project sandbox paths that are relative, the root, inside (or around) the data
/// directory or the agents' homes.
pub(crate) fn check_sandbox_paths(
    config: &EngineConfig,
    sandbox: &SandboxSettings,
) -> Result<(), String> {
    let named = sandbox
        .read_only
        .iter()
        .map(|p| ("read_only", p))
        .chain(sandbox.writable.iter().map(|p| ("writable", p)));
    for (list, path) in named {
        let shown = path.display();
        if !path.is_absolute() || path == Path::new("/") {
            return Err(format!(
                "sandbox.{list}: `{shown}` must be an absolute path below `/`"
            ));
        }
        for (what, dir) in [
            ("the data directory", &config.data_dir),
            ("the agents' homes", &config.homes_dir),
        ] {
            if is_within(path, dir) || is_within(dir, path) {
                return Err(format!(
                    "sandbox.{list}: `{shown}` would show {what} ({}) to agents; name a path outside it",
                    dir.display()
                ));
            }
        }
    }
    for name in sandbox.env.keys() {
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("sandbox.env: `{name}` is not a variable name"));
        }
        if RESERVED_ENV.contains(&name.as_str()) || name.starts_with(ATELIER_PREFIX) {
            return Err(format!(
                "sandbox.env: `{name}` is Atelier's (it sets `PATH`, `HOME`, `LANG`, \
                 `GIT_CONFIG_GLOBAL` and the `{ATELIER_PREFIX}*` variables of every agent and \
                 setup hook) and cannot be overridden"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

    use super::hook_env;
    use crate::api::ProjectSettings;
    use crate::facade::EngineConfig;
    use std::path::{Path, PathBuf};

    /// `.git/info` and `.git/objects/info` are shown read-only to agents: made when missing, and
    /// a link put in their place (git would follow it) stops the run, naming what to remove.
    #[test]
    fn the_lists_git_quotes_are_made_read_only_and_a_link_in_their_place_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("app");
        let worktree = dir.path().join("worktrees/1-task");
        std::fs::create_dir_all(repo.join(".git/objects")).unwrap();
        let mounts = super::git_mounts(&repo, &worktree).unwrap();
        for dir in ["info", "objects/info"] {
            let path = repo.join(".git").join(dir);
            assert!(path.is_dir(), "{dir} made");
            assert!(mounts.read_only.contains(&path), "{dir} read-only");
        }
        std::fs::remove_dir(repo.join(".git/info")).unwrap();
        std::os::unix::fs::symlink(dir.path(), repo.join(".git/info")).unwrap();
        let err = super::git_mounts(&repo, &worktree).unwrap_err();
        assert!(
            err.contains("is not a folder") && err.contains("remove it"),
            "{err}"
        );
    }

    #[test]
    fn a_stored_sandbox_env_cannot_replace_atelier_s_own_variables() {
        let config = EngineConfig::new(
            PathBuf::from("/data"),
            PathBuf::from("/bin/atelier"),
            "http://127.0.0.1:1".into(),
        );
        let mut settings = ProjectSettings::default();
        for name in [
            "ATELIER_PORT",
            "ATELIER_REPO",
            "ATELIER_BRANCH",
            "ATELIER_TASK_KEY",
        ] {
            settings.sandbox.env.insert(name.into(), "forged".into());
        }
        settings.sandbox.env.insert("MY_FLAG".into(), "1".into());
        let env = hook_env(&config, Path::new("/homes/3"), 3, 4100, &settings);
        assert!(env.iter().all(|(_, value)| value != "forged"), "{env:?}");
        assert!(env.contains(&("ATELIER_PORT".into(), "4100".into())));
        assert!(env.contains(&("MY_FLAG".into(), "1".into())));
    }
}
