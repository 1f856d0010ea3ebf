//! Async wrapper around the `git` command-line tool, plus the runner for repository-configured
//! shell hooks. This crate (with the harness supervisor) is one of the only places that spawns
//! processes: every git call goes through one recipe (arguments only, never a shell; no terminal
//! prompts; stdin closed; a scrubbed `GIT_*` environment) and every failure names the command
//! and carries git's own stderr. Once the engine has a working sandbox, every command on a
//! project's repository runs inside it, seeing only what it works on (`confine`).

mod cmd;
mod confine;
mod diff;
mod error;
mod hook;
mod refs;
mod repo;
mod worktree;

pub use cmd::CommandOptions;
pub use confine::{confine_server_git, server_git_confined};
pub use diff::{DiffFile, DiffStatus, WorkTreeDiff, work_tree_diff};
pub use error::GitError;
pub use hook::{HookOutput, run_hook, run_hook_in};
pub use refs::branch_head;
pub use repo::Repo;
pub use worktree::{TaskWorktree, seal_worktree_config, worktree_entry};

use std::ffi::OsStr;
use std::path::Path;

/// Runs `git -C <dir> <args…>` through the same recipe as every other call and returns its
/// stdout, or the failure (command line and git's stderr). For scaffolding that needs commands
/// the typed API has no use for, such as the demo's sample repository; product code adds a
/// typed function instead.
pub async fn run<I, S>(dir: &Path, args: I) -> Result<String, GitError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    cmd::run_ok(dir, args).await
}
