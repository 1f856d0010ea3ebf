//! The one recipe for running git: `git -C <dir> <args…>` with arguments (never a shell), stdin
//! closed, no terminal prompts, and the `GIT_*` variables that would redirect git to another
//! repository removed (Atelier may itself run inside a git hook). Failures carry the command
//! line and git's stderr. A repository's commands ([`crate::Repo`], [`crate::TaskWorktree`])
//! then name their repository outright ([`explicit_repo`]), so no file an agent can write
//! chooses which one git works on.
//!
//! Commands that talk to a remote run under a deadline ([`CommandOptions::timeout`]): in their
//! own process group, so a timeout kills git and the transport helpers it started
//! (`git-remote-http`, `ssh`), and the error says the remote may be unreachable. Local commands
//! run under [`LOCAL_LIMIT`] the same way: an agent can plant a named pipe where git reads. A network command may also be given environment variables for that one
//! process only (set after the scrub, never shown in the command line an error carries), such
//! as the header carrying a forge token.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::GitError;
use crate::confine::{self, View};
use crate::hook::GroupGuard;

/// Variables that point git at a different repository, index or object store than `-C` says.
const SCRUBBED_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_QUARANTINE_PATH",
];

/// The variables that name a repository to git outright — its git folder, common folder and
/// work tree — for [`CommandOptions::env`] (set after the scrub). With them git reads no `.git`
/// pointer file and no `commondir` file to find its configuration, so a folder an agent can
/// write cannot choose which configuration (and so which commands) the server's git runs.
pub(crate) fn explicit_repo(
    git_dir: &Path,
    common_dir: &Path,
    work_tree: &Path,
) -> Vec<(String, String)> {
    [
        ("GIT_DIR", git_dir),
        ("GIT_COMMON_DIR", common_dir),
        ("GIT_WORK_TREE", work_tree),
    ]
    .into_iter()
    .map(|(name, path)| (name.to_string(), path.to_string_lossy().into_owned()))
    .collect()
}

/// The deadline of a command that does not talk to a remote (and was given none): far above
/// what any local step takes, so only a blocked git reaches it.
pub const LOCAL_LIMIT: Duration = Duration::from_secs(300);

/// What one git invocation produced.
#[derive(Debug)]
pub(crate) struct Output {
    pub command: String,
    pub code: Option<i32>,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The error describing this (failed) invocation.
    pub fn into_error(self) -> GitError {
        GitError::Command {
            command: self.command,
            code: self.code,
            stderr: self.stderr,
        }
    }

    /// Stdout when git succeeded, the error otherwise.
    pub fn ok(self) -> Result<String, GitError> {
        if self.success {
            Ok(self.stdout)
        } else {
            Err(self.into_error())
        }
    }
}

/// Extra settings for one git command: variables given only to that process (such as
/// `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_0`/`GIT_CONFIG_VALUE_0` carrying an auth header) and a
/// deadline. The values may be secrets: `Debug` shows only the names, and neither names nor
/// values appear in error messages.
#[derive(Clone, Default)]
pub struct CommandOptions {
    /// Variables set for this one process, after the recipe's scrub of `GIT_*` redirections.
    pub env: Vec<(String, String)>,
    /// Kill git (and its helpers) and fail with [`GitError::TimedOut`] when it has not finished
    /// by then.
    pub timeout: Option<Duration>,
}

impl fmt::Debug for CommandOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("CommandOptions")
            .field("env", &names)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Runs `git -C <dir> <args…>` and returns its output whatever the exit status.
pub(crate) async fn run<I, S>(dir: &Path, args: I) -> Result<Output, GitError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_with(dir, args, &CommandOptions::default()).await
}

/// [`run`] with extra variables for this process and a deadline (past it, git and everything it
/// started are killed).
pub(crate) async fn run_with<I, S>(
    dir: &Path,
    args: I,
    options: &CommandOptions,
) -> Result<Output, GitError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_in(dir, args, options, None).await
}

/// [`run_with`] for a command on a repository: when the server's git is confined
/// ([`crate::confine`]), git starts inside the sandbox seeing only `view` besides the system.
/// The command line an error shows is git's own either way.
pub(crate) async fn run_in<I, S>(
    dir: &Path,
    args: I,
    options: &CommandOptions,
    view: Option<&View>,
) -> Result<Output, GitError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let command = describe(dir, &args);
    let wrapper = view.and_then(|view| confine::wrapper(view, dir));
    let mut cmd = match wrapper.as_deref() {
        Some([program, sandbox_args @ ..]) => {
            let mut cmd = tokio::process::Command::new(program);
            // No automatic gc: it detaches, and the sandbox's end would kill it halfway, leaving
            // its locks (`packed-refs.lock`) behind; and the sandbox shows no other worktree,
            // which a gc would take for deleted and prune.
            cmd.args(sandbox_args).args([
                "git",
                "-c",
                "gc.auto=0",
                "-c",
                "maintenance.auto=false",
                "-c",
                "gc.worktreePruneExpire=never",
            ]);
            cmd
        }
        _ => tokio::process::Command::new("git"),
    };
    cmd.arg("-C")
        .arg(dir)
        .args(&args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    // After the scrub, so nothing removed there can be put back by accident.
    for (name, value) in &options.env {
        cmd.env(name, value);
    }
    let spawn_error = |source| GitError::Spawn {
        command: command.clone(),
        source,
    };
    // Every command has a deadline: a local one too, since an agent can plant a named pipe
    // where git reads (its worktree entry's `HEAD` or `index`) and block it for good.
    let limit = options.timeout.unwrap_or(LOCAL_LIMIT);
    // Its own group, so the transport helpers git starts die with it.
    cmd.process_group(0);
    let child = cmd.spawn().map_err(spawn_error)?;
    // With `process_group(0)` the group id is git's pid. The guard kills the group if this
    // future is dropped (a caller's own deadline, a shutdown) before git ends.
    let mut group = GroupGuard::new(child.id());
    let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => {
            group.disarm();
            out.map_err(spawn_error)?
        }
        Err(_) => {
            // Dropping the wait killed git (`kill_on_drop`); now its helpers.
            group.kill().await;
            group.disarm();
            return Err(GitError::TimedOut { command, limit });
        }
    };
    Ok(Output {
        command,
        code: out.status.code(),
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs git and returns its stdout, or the failure as an error.
pub(crate) async fn run_ok<I, S>(dir: &Path, args: I) -> Result<String, GitError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(dir, args).await?.ok()
}

fn describe(dir: &Path, args: &[OsString]) -> String {
    let mut text = format!("git -C {}", dir.display());
    for arg in args {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Rejects names git would parse as options, and names with control characters.
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), GitError> {
    if value.is_empty() || value.starts_with('-') || value.chars().any(char::is_control) {
        return Err(GitError::InvalidName {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named pipe where git reads (here the repository's `HEAD`, as an agent could plant in
    /// its worktree entry) blocks git; the deadline kills it and says what may be wrong.
    #[tokio::test]
    async fn a_git_blocked_on_a_named_pipe_is_killed_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let init = run(dir.path(), ["init", "--quiet"]).await.unwrap();
        assert!(init.success, "{}", init.stderr);
        let head = dir.path().join(".git/HEAD");
        std::fs::remove_file(&head).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&head)
            .status()
            .unwrap();
        assert!(made.success());
        let options = CommandOptions {
            env: Vec::new(),
            timeout: Some(Duration::from_millis(500)),
        };
        let started = std::time::Instant::now();
        let err = run_with(dir.path(), ["status"], &options)
            .await
            .unwrap_err();
        assert!(
            matches!(err, GitError::TimedOut { .. }),
            "the blocked git was killed: {err}"
        );
        assert!(err.to_string().contains("named pipe"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "killed at its deadline, not later"
        );
        // Every command has one, the local ones included.
        assert!(LOCAL_LIMIT >= Duration::from_secs(60));
    }
}
