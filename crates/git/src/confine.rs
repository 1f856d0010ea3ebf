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
//! and only what that command works on ([`View`]): the repository's `.git`, writable but for
//! what agents cannot write either; a task's
//! worktree when the command is about it; a remote that is a local folder when the command talks
//! to it; the server user's git configuration files, and over the network its ssh folder,
//! read-only. A link planted by an agent then leads either into nothing (the data directory,
//! the homes and every other path do not exist inside) or to a file that agent could read or
//! write itself. Commands that name no repository (`git --version`, a path's discovery) stay as
//! they are.
//!
//! Process-wide, because a server has one sandbox: the engine sets it once at start, when
//! bubblewrap works; without it (`--sandbox=none`, or before any engine started) the server's
//! git runs unconfined, like its agents.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
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
/// outside, writable or read-only, and whether it talks to a remote over the network (then it
/// sees the server user's ssh folder and agent too).
///
/// Whatever a confined git can read, an agent may try to learn: a link it plants where git
/// reads a list (`packed-refs`, `shallow`) makes git quote a line of the file it leads to in an
/// error (the lists git quotes line by line, `objects/info/alternates` and `info/grafts`, are
/// read-only to agents). So a view holds what the agent of the task sees anyway — the
/// repository's `.git`, the task's worktree, the server user's git configuration files — plus
/// only what a command cannot work without: a local remote it talks to, and the ssh folder for a
/// remote over the network; the errors of those commands stay out of what agents read (the
/// engine logs them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct View {
    pub writable: Vec<PathBuf>,
    pub read_only: Vec<PathBuf>,
    pub network: bool,
}

/// What of a repository's `.git` no agent can write (its sandbox shows them read-only), and so
/// no confined server git either: a link an agent planted cannot lead git to write there (a
/// reflog line appended to `config` would break every later command). `worktrees` is writable
/// only to the commands that add and prune records ([`View::with_worktree_records`]).
const PROTECTED: [&str; 6] = [
    "config",
    "config.worktree",
    "hooks",
    "info",
    "objects/info",
    "worktrees",
];

impl View {
    /// A repository's commands that only read: its `.git` folder read-only, nothing of its work
    /// tree (no command on the repository reads it, and it may be an operator's checkout with
    /// files no agent sees).
    pub fn reading(git_dir: &Path) -> View {
        View {
            writable: Vec::new(),
            read_only: vec![git_dir.to_path_buf()],
            network: false,
        }
    }

    /// A repository's commands that write (refs, objects): its `.git` folder writable but for
    /// [`PROTECTED`], nothing of its work tree.
    pub fn writing(git_dir: &Path) -> View {
        View {
            writable: vec![git_dir.to_path_buf()],
            read_only: PROTECTED.iter().map(|p| git_dir.join(p)).collect(),
            network: false,
        }
    }

    /// The same with the repository's `worktrees` folder writable: `git worktree add` and
    /// `prune` write records there.
    #[must_use]
    pub fn with_worktree_records(self, git_dir: &Path) -> View {
        self.with(&git_dir.join("worktrees"), true)
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
    add_git_own_files(&mut mounts, view.network);
    let mut argv = vec![sandbox.program().as_os_str().to_owned()];
    argv.extend(sandbox.args(&mounts, cwd));
    Some(argv)
}

/// What git itself reads from the server user's home, read-only: its global configuration files
/// (identity, settings the operator chose; not the folder they sit in, which may hold
/// `credentials`), and for a command over the network the ssh folder and agent socket a remote
/// over ssh needs. Nothing else of that home is shown.
fn add_git_own_files(mounts: &mut Mounts, network: bool) {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let home = var("HOME").map(PathBuf::from);
    let xdg = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|home| home.join(".config")));
    if let Some(home) = &home {
        mounts.read_only.push(home.join(".gitconfig"));
    }
    if let Some(xdg) = xdg {
        for file in ["config", "attributes", "ignore"] {
            mounts.read_only.push(xdg.join("git").join(file));
        }
    }
    if let Some(global) = var("GIT_CONFIG_GLOBAL") {
        mounts.read_only.push(PathBuf::from(global));
    }
    if network {
        if let Some(home) = &home {
            mounts.read_only.push(home.join(".ssh"));
        }
        // A socket is connected to, which needs it writable.
        if let Some(socket) = var("SSH_AUTH_SOCK") {
            mounts.writable.push(PathBuf::from(socket));
        }
    }
}

/// The folder a remote URL names when it is on this machine (`/srv/r.git`, `../r.git`,
/// `file:///srv/r.git`; a relative path from `base`), or `None` for a network URL
/// (`https://…`, `ssh://…`, `git@host:path`).
pub(crate) fn local_remote(url: &str, base: &Path) -> Option<PathBuf> {
    let path = if let Some(rest) = url.strip_prefix("file://") {
        // As git reads it: an optional `localhost` host, then the path, percent-decoded.
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        PathBuf::from(std::ffi::OsString::from_vec(percent_decoded(rest)))
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

/// `text` with each `%XX` replaced by the byte it stands for.
fn percent_decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
