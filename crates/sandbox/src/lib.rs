//! The agent sandbox: every agent process (and the project's setup hook) runs inside a
//! bubblewrap (`bwrap`) sandbox that sees only what its run needs.
//!
//! What the sandbox is made of, in the order bubblewrap applies it:
//! - its own PID namespace with `--die-with-parent`: when the run's process ends (or is killed),
//!   the namespace's init ends and the kernel kills every process left in it — a `setsid`,
//!   `env -i` or double-forked escapee included — so stopping a run needs no tree walk;
//! - `--new-session` (no terminal to inject keystrokes into) and its own IPC namespace;
//! - `--cap-drop ALL`: a server running as root would otherwise hand its agents root's
//!   capabilities inside (bubblewrap keeps them for a privileged caller), and with them ways out
//!   (`mount`, `open_by_handle_at`, device nodes);
//! - the system read-only (`/usr`, `/etc`, `/bin`, `/sbin`, `/lib*`), a fresh `/proc` and `/dev`,
//!   a private `/tmp` and `/var/tmp`;
//! - then the run's own [`Mounts`], parents before children: the worktree, the repository's git
//!   directory, the task's agent home and doc folder writable; the agent CLI's install, the
//!   `atelier` binary, whatever the project names and the git files the server's own git would
//!   honour (chosen by the engine's `confine`) read-only, a child mounted over its parent.
//!
//! Everything else — the data directory, other tasks' worktrees and homes, other projects, the
//! server user's home — does not exist inside. The network is shared (agents reach their model
//! API, and `atelier signal` reaches the server over loopback with the run's own token).
//!
//! The same sandbox, with other mounts, confines the server's own git commands on a project's
//! repository (the `git` crate's `confine`): an agent can plant symbolic links in the shared
//! `.git`, and git run as the server would follow them to the server's files.
//!
//! This crate only builds command lines (and probes once that bubblewrap works); processes are
//! started by the `harness` crate's process primitives (agents) and by the `git` crate (its
//! commands and the setup hook), each with the sandbox's argv in front.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// What to tell an operator whose machine has no usable bubblewrap.
pub const INSTALL_HINT: &str = "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; \
     Fedora: `dnf install bubblewrap`), or run agents unconfined knowingly with `--sandbox=none` \
     (ATELIER_SANDBOX=none)";

/// Why no sandbox can be built on this machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "bubblewrap (`{bwrap}`) was not found, and agents run only inside its sandbox: {INSTALL_HINT}"
    )]
    Missing { bwrap: String },
    #[error(
        "bubblewrap (`{bwrap}`) cannot create a sandbox on this machine ({detail}); agents run only \
         inside its sandbox: allow unprivileged user namespaces, or {INSTALL_HINT}"
    )]
    Unusable { bwrap: String, detail: String },
}

/// Paths a run may see besides the system, each at the same path as outside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    pub read_only: Vec<PathBuf>,
    pub writable: Vec<PathBuf>,
}

impl Mounts {
    /// The parent folder of `program` (its canonical location and, when `program` is a symlink,
    /// the link's folder too), read-only: an agent CLI's install, the `atelier` binary.
    pub fn add_program(&mut self, program: &Path) {
        if let Some(dir) = program.parent().filter(|d| d.is_absolute()) {
            self.read_only.push(dir.to_path_buf());
        }
        if let Ok(real) = std::fs::canonicalize(program)
            && let Some(dir) = real.parent()
        {
            self.read_only.push(dir.to_path_buf());
        }
    }
}

/// A bubblewrap that was found and could build a sandbox on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    bwrap: PathBuf,
}

/// Top-level system folders shown read-only (a symlink, as with a merged `/usr`, is recreated as
/// the same symlink).
const SYSTEM_DIRS: [&str; 8] = [
    "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

impl Sandbox {
    /// Finds `bwrap` (a bare name is looked up on `PATH`) and starts one empty sandbox with the
    /// same namespaces and system mounts as a run's, so a machine where it cannot work is found
    /// at server start, not at the first run.
    pub fn probe(bwrap: &Path) -> Result<Sandbox, SandboxError> {
        let shown = bwrap.display().to_string();
        let program = find_program(bwrap).ok_or_else(|| SandboxError::Missing {
            bwrap: shown.clone(),
        })?;
        let sandbox = Sandbox { bwrap: program };
        let mut args = sandbox.args(&Mounts::default(), Path::new("/"));
        args.push("true".into());
        let output = std::process::Command::new(&sandbox.bwrap)
            .args(&args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| SandboxError::Unusable {
                bwrap: shown.clone(),
                detail: e.to_string(),
            })?;
        if output.status.success() {
            Ok(sandbox)
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
            Err(SandboxError::Unusable {
                bwrap: shown,
                detail: if stderr.is_empty() {
                    format!("it exited with {}", output.status)
                } else {
                    stderr
                },
            })
        }
    }

    /// The bubblewrap executable.
    pub fn program(&self) -> &Path {
        &self.bwrap
    }

    /// bubblewrap's arguments for a sandbox with `mounts`, working directory `cwd`, ending with
    /// `--`: the command to run follows. Mounts that do not exist are left out (bubblewrap would
    /// refuse them), duplicates are mounted once, writable wins over read-only for the same path,
    /// and parents are mounted before their children.
    pub fn args(&self, mounts: &Mounts, cwd: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = [
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-ipc",
            "--new-session",
            // bubblewrap started by root keeps root's capabilities unless told otherwise; with
            // them an agent could make device nodes and mount the host's disks.
            "--cap-drop",
            "ALL",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        for dir in SYSTEM_DIRS {
            let path = Path::new(dir);
            match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(path) {
                        args.extend(["--symlink".into(), target.into(), dir.into()]);
                    }
                }
                Ok(meta) if meta.is_dir() => {
                    args.extend(["--ro-bind".into(), dir.into(), dir.into()]);
                }
                _ => {}
            }
        }
        for (flag, dir) in [
            ("--proc", "/proc"),
            ("--dev", "/dev"),
            ("--tmpfs", "/tmp"),
            ("--tmpfs", "/var/tmp"),
        ] {
            args.extend([flag.into(), dir.into()]);
        }
        for (source, dest, writable) in ordered(mounts) {
            let flag = if writable { "--bind" } else { "--ro-bind" };
            args.extend([flag.into(), source.into(), dest.into()]);
        }
        args.extend(["--chdir".into(), cwd.into(), "--".into()]);
        args
    }
}

/// The mounts in the order to apply them, as `(source, destination, writable)`: each path is
/// shown at the path it was named by (absolute, `..` resolved, so a path that runs through a
/// symlinked folder — `.tools -> /elsewhere/.tools` — still leads to it inside) and mounted from
/// its canonical location. Existing paths only, each destination once (writable if it is named
/// writable at all), shallower destinations first so a child is mounted over its parent.
fn ordered(mounts: &Mounts) -> Vec<(PathBuf, PathBuf, bool)> {
    let mut all: Vec<(PathBuf, PathBuf, bool)> = Vec::new();
    let named = mounts
        .writable
        .iter()
        .map(|p| (p, true))
        .chain(mounts.read_only.iter().map(|p| (p, false)));
    for (path, writable) in named {
        let Some(source) = std::fs::canonicalize(path)
            .ok()
            .filter(|p| p != Path::new("/"))
        else {
            continue;
        };
        let dest = lexical(&std::path::absolute(path).unwrap_or_else(|_| path.clone()));
        if dest == Path::new("/") {
            continue;
        }
        match all.iter_mut().find(|(_, d, _)| *d == dest) {
            Some(existing) => existing.2 |= writable,
            None => all.push((source, dest, writable)),
        }
    }
    all.sort_by_key(|(_, dest, _)| (dest.components().count(), dest.clone()));
    all
}

/// `program` itself when it names a path, else the first executable of that name on `PATH`.
fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return is_executable(program).then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `path` is `dir` or lies inside it, comparing normalized absolute paths (so `..`
/// cannot hide a way in). Both are canonicalized when they exist.
pub fn is_within(path: &Path, dir: &Path) -> bool {
    let normalize = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| lexical(p));
    normalize(path).starts_with(normalize(dir))
}

/// `path` with `.` and `..` resolved without touching the disk.
pub fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests;
