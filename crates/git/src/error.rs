//! The git crate's error type. Every message says which command or path failed, what git
//! said, and what the user can do about it.

use std::path::PathBuf;
use std::time::Duration;

/// Why a git operation or a hook could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The path is missing, not a folder, a bare repository, or not inside a git repository.
    #[error(
        "{} is not a git work tree ({reason}): run `git init` there or give the repository's folder",
        path.display()
    )]
    NotARepository { path: PathBuf, reason: String },

    /// A task's worktree whose record in the repository's git folder is missing or does not
    /// lead back to it (its `gitdir` names another folder, its `commondir` another repository).
    #[error(
        "{} is not a linked worktree of {} that git has on record ({reason}); remove the task's \
         workspace and create the task again",
        worktree.display(),
        repo.display()
    )]
    NotATaskWorktree {
        worktree: PathBuf,
        repo: PathBuf,
        reason: String,
    },

    /// A remote the confined server git cannot talk to safely.
    #[error("cannot use the remote `{remote}`: {reason}")]
    UnsupportedRemote { remote: String, reason: String },

    /// Neither `<remote>/HEAD` nor a `main`/`master` branch exists.
    #[error(
        "cannot tell the default branch of {}: `{remote}/HEAD` is not set and there is no `main` or \
         `master` branch; run `git remote set-head {remote} --auto` or create a `main` branch",
        path.display()
    )]
    NoDefaultBranch { path: PathBuf, remote: String },

    /// A revision or branch the operation needs does not exist.
    #[error("`{rev}` does not resolve to a commit in {}: {hint}", path.display())]
    UnknownRevision {
        path: PathBuf,
        rev: String,
        hint: String,
    },

    /// A name given to git would be read as an option or is otherwise unusable.
    #[error(
        "invalid {what} `{value}`: it must be non-empty, must not start with `-` and must not contain control characters"
    )]
    InvalidName { what: &'static str, value: String },

    /// The git program could not be started at all.
    #[error("could not run `{command}`: {source}; check that git is installed and on PATH")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    /// Git ran and reported failure.
    #[error("`{command}` failed ({}): {}", exit_label(*code), stderr_label(stderr))]
    Command {
        command: String,
        code: Option<i32>,
        stderr: String,
    },

    /// A command ran past its deadline and was killed (one that talks to a remote: the remote
    /// may be unreachable; a local one: something in the repository blocked git's reads).
    #[error(
        "`{command}` timed out after {} and was killed: the remote may be unreachable (check \
         its URL and the network), or a file in the repository blocks git (a named pipe where \
         a file should be)",
        seconds_label(*limit)
    )]
    TimedOut { command: String, limit: Duration },

    /// The remote refused to move the branch because it no longer points where we expected
    /// (`--force-with-lease`).
    #[error(
        "`{command}` was rejected: the remote branch `{branch}` is not at the expected commit \
         ({reason}); someone else pushed to it — fetch it and look before pushing again"
    )]
    PushRejected {
        command: String,
        branch: String,
        reason: String,
    },

    /// A branch to delete is checked out in a worktree.
    #[error(
        "cannot delete branch `{branch}`: a worktree has it checked out; remove the worktree first"
    )]
    BranchCheckedOut { branch: String },

    /// Git printed something we could not interpret.
    #[error("`{command}` printed unexpected output {output:?}: {expected}")]
    UnexpectedOutput {
        command: String,
        output: String,
        expected: &'static str,
    },

    /// The branch cannot be merged into the target without resolving conflicts.
    #[error(
        "merging `{head}` into `{remote}/{target}` conflicts in {}: rebase `{head}` onto \
         `{remote}/{target}`, resolve the conflicts and push again",
        conflict_list(files)
    )]
    MergeConflict {
        remote: String,
        head: String,
        target: String,
        files: Vec<String>,
    },

    /// The hook's shell could not be started (missing working directory, no `/bin/sh`, …).
    #[error("could not start hook `{command}` in {}: {source}; check that the folder exists", cwd.display())]
    HookSpawn {
        command: String,
        cwd: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Waiting on a running hook failed.
    #[error("lost track of hook `{command}` after {elapsed:?}: {source}")]
    HookWait {
        command: String,
        elapsed: Duration,
        #[source]
        source: std::io::Error,
    },
}

fn exit_label(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_string(),
    }
}

fn seconds_label(limit: Duration) -> String {
    if limit.subsec_millis() == 0 {
        format!("{} s", limit.as_secs())
    } else {
        format!("{:.1} s", limit.as_secs_f64())
    }
}

fn stderr_label(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        "git printed no error message".to_string()
    } else {
        trimmed.to_string()
    }
}

fn conflict_list(files: &[String]) -> String {
    if files.is_empty() {
        "unknown files".to_string()
    } else {
        files.join(", ")
    }
}
