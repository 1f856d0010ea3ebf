//! Named crash points for the end-to-end crash tests. When the server's environment has
//! `ATELIER_CRASH_AT=<name>`, the process aborts at the point of that name (no destructors, no
//! cleanup: what a `kill -9` at that instant would leave behind). Without the variable a crash
//! point does nothing. Points today:
//!
//! - `after-worktree`: task creation, after the task's workspace (doc folder, worktree, branch)
//!   was made and before its row is written.
//! - `after-publish`: the forge opened (or updated) the pull request and Atelier has not
//!   recorded it yet.
//! - `after-reply`: the forge posted a reply to a comment and Atelier has not recorded it yet.

/// The environment variable naming the crash point to die at.
pub(crate) const CRASH_VAR: &str = "ATELIER_CRASH_AT";

/// Aborts the process when `ATELIER_CRASH_AT` names this point.
pub(crate) fn point(name: &str) {
    if std::env::var_os(CRASH_VAR).is_some_and(|at| at == name) {
        tracing::error!(point = name, "{CRASH_VAR} is set: crashing on purpose");
        std::process::abort();
    }
}
