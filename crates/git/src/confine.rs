//! The server's own git, confined. Agents write their repository's shared `.git` folder (they
//! commit, and deleting a ref rewrites `packed-refs`), so they can plant a symbolic link where
//! the server's git later writes — a reflog under `logs/` that a fetch appends to, `packed-refs`
//! that deleting a branch replaces, a worktree entry's `index`. Git follows such links, and run
//! as the server it would append to or overwrite whatever they name: the data directory's
//! `api-token`, the database, a file in the server user's home.
//!
//! So once the engine has a working sandbox ([`confine_server_git`]), every git command on a
//! project's repository — a [`crate::Repo`]'s, a [`crate::TaskWorktree`]'s, the branch-head
//! fallback — starts inside the same bubblewrap sandbox as an agent, seeing the system read-only
//! and only what that command works on ([`View`]): the repository's `.git` writable and its work
//! tree read-only; a task's worktree when the command is about it; a remote that is a local
//! folder when the command talks to it; the server user's git configuration and ssh folder
//! read-only. A link planted by an agent then leads either into nothing (the data directory,
//! the homes and every other path do not exist inside) or to a file that agent could write
//! itself. Commands that name no repository (`git --version`, a path's discovery) stay as they
//! are.
//!
//! Process-wide, because a server has one sandbox: the engine sets it once at start, when
//! bubblewrap works; without it (`--sandbox=none`, or before any engine started) the server's
//! git runs unconfined, like its agents.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use sandbox::{Mounts, Sandbox};

static SERVER_SANDBOX: RwLock<Option<Sandbox>> = RwLock::new(None);

/// Starts every later git command on a project's repository inside `sandbox` (see the module
/// doc). Called by the engine at start when bubblewrap works.
pub fn confine_server_git(sandbox: Sandbox) {
    *SERVER_SANDBOX
        .write()
        .unwrap_or_else(PoisonError::into_inner) = Some(sandbox);
}

/// Whether the server's git commands on repositories are confined.
pub fn server_git_confined() -> bool {
    SERVER_SANDBOX
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .is_some()
}

/// What one confined git command sees besides the system: paths shown at the same place as
/// outside, writable or read-only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct View {
    pub writable: Vec<PathBuf>,
    pub read_only: Vec<PathBuf>,
}

impl View {
    /// A repository's commands: its `.git` folder writable, its work tree read-only.
    pub fn repository(work_tree: &Path, git_dir: &Path) -> View {
        View {
            writable: vec![git_dir.to_path_buf()],
            read_only: vec![work_tree.to_path_buf()],
        }
    }

    /// `path` added, writable or not.
    #[must_use]
    pub fn with(mut self, path: &Path, writable: bool) -> View {
        if writable {
            self.writable.push(path.to_path_buf());
        } else {
            self.read_only.push(path.to_path_buf());
        }
        self
    }
}

/// The program and arguments (ending with `--`, git follows) that run a command seeing `view`
/// from `cwd`, or `None` when the server's git is not confined.
pub(crate) fn wrapper(view: &View, cwd: &Path) -> Option<Vec<OsString>> {
    let guard = SERVER_SANDBOX
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let sandbox = guard.as_ref()?;
    let mut mounts = Mounts {
        writable: view.writable.clone(),
        read_only: view.read_only.clone(),
    };
    add_git_own_files(&mut mounts);
    let mut argv = vec![sandbox.program().as_os_str().to_owned()];
    argv.extend(sandbox.args(&mounts, cwd));
    Some(argv)
}

/// What git itself reads from the server user's home, read-only: its global configuration
/// (identity, settings the operator chose) and the ssh folder and agent socket a remote over ssh
/// needs. Nothing else of that home is shown.
fn add_git_own_files(mounts: &mut Mounts) {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(home) = var("HOME").map(PathBuf::from) {
        mounts.read_only.push(home.join(".gitconfig"));
        mounts.read_only.push(home.join(".ssh"));
        if var("XDG_CONFIG_HOME").is_none() {
            mounts.read_only.push(home.join(".config/git"));
        }
    }
    if let Some(config) = var("XDG_CONFIG_HOME") {
        mounts.read_only.push(Path::new(&config).join("git"));
    }
    if let Some(global) = var("GIT_CONFIG_GLOBAL") {
        mounts.read_only.push(PathBuf::from(global));
    }
    // A socket is connected to, which needs it writable.
    if let Some(socket) = var("SSH_AUTH_SOCK") {
        mounts.writable.push(PathBuf::from(socket));
    }
}

/// The folder a remote URL names when it is on this machine (`/srv/r.git`, `../r.git`,
/// `file:///srv/r.git`; a relative path from `base`), or `None` for a network URL
/// (`https://…`, `ssh://…`, `git@host:path`).
pub(crate) fn local_remote(url: &str, base: &Path) -> Option<PathBuf> {
    let path = if let Some(rest) = url.strip_prefix("file://") {
        PathBuf::from(rest)
    } else if url.contains("://") {
        return None;
    } else if url
        .split_once(':')
        .is_some_and(|(host, _)| !host.contains('/'))
    {
        // `host:path`, git's scp-like ssh form (a colon before any slash).
        return None;
    } else {
        base.join(url)
    };
    Some(path)
}

#[cfg(test)]
mod tests;
