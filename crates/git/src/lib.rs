//! Async wrapper around the `git` command-line tool, plus the runner for repository-configured
//! shell hooks. This crate (with the harness supervisor) is one of the only places that spawns
//! processes: every git call goes through one recipe (arguments only, never a shell; no terminal
//! prompts; stdin closed; a scrubbed `GIT_*` environment) and every failure names the command
//! and carries git's own stderr.

mod cmd;
mod error;
mod hook;
mod repo;

pub use error::GitError;
pub use hook::{HookOutput, run_hook, run_hook_in};
pub use repo::Repo;
