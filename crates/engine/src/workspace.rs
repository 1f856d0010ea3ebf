//! Task workspaces: everything a task needs on disk before an agent can run. It owns the task's
//! doc archive (`<data_dir>/tasks/<key>/task.md`, its `attachments/` folder and `setup.log`),
//! the git worktree on the task's own branch (`<repo>-worktrees/<key>`, a sibling of the
//! repository, cut from the default branch), the env files linked into it and the project's setup
//! hook. Creation is all-or-nothing: any failure undoes what was made, so a task never points at
//! a half-built workspace, and nothing existing is ever overwritten.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use git::GitError;

/// How many lines of a failed hook's output an error carries.
const TAIL_LINES: usize = 40;
/// How many bytes of a failed hook's output an error carries at most.
const TAIL_BYTES: usize = 4000;
/// Longest task key accepted (`<id>-<slug>` is far shorter).
const MAX_KEY: usize = 100;

/// What [`create`] needs to build a task's workspace.
#[derive(Debug)]
pub struct WorkspaceSpec<'a> {
    pub repo: &'a git::Repo,
    /// What git needs serialized in `repo` (its fetch and worktree records).
    pub lock: &'a crate::repo_lock::RepoLock,
    /// The remote whose default branch the task is cut from (e.g. `origin`).
    pub remote: &'a str,
    /// Atelier's data folder; task docs live in `<data_dir>/tasks/<key>/`.
    pub data_dir: &'a Path,
    /// `<id>-<slug>` from [`domain::slug::task_key`]; must match `[a-z0-9-]+`.
    pub key: &'a str,
    /// `atelier/<key>` from [`domain::slug::branch_name`].
    pub branch: &'a str,
    pub title: &'a str,
    /// The original request, kept verbatim in the doc.
    pub body: &'a str,
    /// Repository-relative files to symlink into the worktree (absolute paths and `..` are
    /// rejected; missing files are skipped with a note in the setup log).
    pub env_files: &'a [String],
    /// Shell command run in the worktree after checkout.
    pub setup_hook: Option<&'a str>,
    pub setup_timeout: Duration,
    /// The hook's whole environment (give `PATH`); `ATELIER_TASK_KEY`, `ATELIER_BRANCH`,
    /// `ATELIER_WORKTREE` and `ATELIER_REPO` are set by the workspace (replacing any given).
    pub hook_env: Vec<(String, String)>,
    /// The sandbox the hook runs in and what it may see (the worktree is its working directory);
    /// `None` runs it unconfined.
    pub hook_sandbox: Option<(harness::sandbox::Sandbox, harness::sandbox::Mounts)>,
}

/// A created task workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub key: String,
    /// `<data_dir>/tasks/<key>/task.md`.
    pub doc_path: PathBuf,
    /// `<data_dir>/tasks/<key>/attachments`.
    pub attachments_dir: PathBuf,
    pub worktree: PathBuf,
    pub branch: String,
    /// The ref the branch was cut from, e.g. `origin/main` (or `main` without a remote).
    pub base: String,
    /// `<data_dir>/tasks/<key>/setup.log` when a hook ran or setup left notes.
    pub setup_log: Option<PathBuf>,
}

/// Why a workspace could not be created or removed.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error(
        "invalid task key `{key}`: it must be 1 to 100 characters of a-z, 0-9 and `-`, not starting \
         with `-`; build it with domain::slug::task_key"
    )]
    InvalidKey { key: String },

    #[error(
        "invalid task branch `{branch}`: it must be `/`-separated parts of a-z, 0-9 and `-` (like \
         `atelier/<key>`); build it with domain::slug::branch_name"
    )]
    InvalidBranch { branch: String },

    #[error(
        "env file `{file}` cannot be linked: {reason}; list env files as paths relative to the \
         repository root that stay inside it"
    )]
    UnsafeEnvFile { file: String, reason: &'static str },

    #[error(
        "the worktree folder {} already exists: remove the task's old workspace first (Atelier \
         never overwrites a folder)",
        path.display()
    )]
    WorktreeExists { path: PathBuf },

    #[error(
        "branch `{branch}` already exists in {}: delete it or remove the task's old workspace first \
         (Atelier never reuses a branch)",
        repo.display()
    )]
    BranchExists { branch: String, repo: PathBuf },

    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{context}: {source}")]
    Git {
        context: String,
        #[source]
        source: GitError,
    },

    #[error(
        "setup hook `{command}` failed ({}); fix the project's setup hook; its output ends with:\n{tail}",
        exit_label(*exit_code)
    )]
    HookFailed {
        command: String,
        exit_code: Option<i32>,
        tail: String,
    },

    #[error(
        "setup hook `{command}` did not finish within {timeout:?} and was killed; raise the \
         project's setup timeout or make the hook faster; its output ends with:\n{tail}"
    )]
    HookTimedOut {
        command: String,
        timeout: Duration,
        tail: String,
    },

    #[error(
        "{cause}; undoing the partial workspace also failed ({problems}): remove those by hand"
    )]
    RollbackFailed {
        cause: Box<WorkspaceError>,
        problems: String,
    },
}

fn exit_label(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_string(),
    }
}

fn git_err(context: impl Into<String>) -> impl FnOnce(GitError) -> WorkspaceError {
    let context = context.into();
    move |source| WorkspaceError::Git { context, source }
}

/// The worktree folder of a task: `<repo parent>/<repo folder name>-worktrees/<key>`.
pub fn worktree_dir(repo: &Path, key: &str) -> PathBuf {
    worktrees_root(repo).join(key)
}

/// The folder holding a repository's task worktrees: `<repo parent>/<repo folder name>-worktrees`.
pub fn worktrees_root(repo: &Path) -> PathBuf {
    let parent = repo.parent().unwrap_or(repo);
    let name = repo
        .file_name()
        .map_or_else(|| "repo".into(), |n| n.to_string_lossy());
    parent.join(format!("{name}-worktrees"))
}

/// The prefix of every task branch ([`domain::slug::branch_name`]).
pub const BRANCH_PREFIX: &str = "atelier/";

/// The initial task doc: the title, then the original request verbatim.
pub fn seed_doc(title: &str, body: &str) -> String {
    format!("# {title}\n\n## Original Request\n\n{body}\n")
}

/// Builds the task's workspace: the doc archive, the worktree on a new branch cut from the
/// remote's default branch (or the local one without a remote-tracking branch), linked env
/// files and the setup hook. Any failure undoes all of it and returns the error. An existing
/// worktree folder or branch is an error; an existing doc folder is reused as is.
pub async fn create(spec: WorkspaceSpec<'_>) -> Result<Workspace, WorkspaceError> {
    validate_key(spec.key)?;
    validate_branch(spec.branch)?;
    let env_files = spec
        .env_files
        .iter()
        .map(|file| check_env_file(file))
        .collect::<Result<Vec<_>, _>>()?;

    let worktree = worktree_dir(spec.repo.path(), spec.key);
    if tokio::fs::symlink_metadata(&worktree).await.is_ok() {
        return Err(WorkspaceError::WorktreeExists { path: worktree });
    }
    let branch_ref = format!("refs/heads/{}", spec.branch);
    let branch_exists = spec
        .repo
        .rev_parse(&branch_ref)
        .await
        .map_err(git_err(format!(
            "could not check for branch `{}`",
            spec.branch
        )))?;
    if branch_exists.is_some() {
        return Err(WorkspaceError::BranchExists {
            branch: spec.branch.to_string(),
            repo: spec.repo.path().to_path_buf(),
        });
    }

    let mut made = Made::default();
    match build(&spec, &env_files, &worktree, &mut made).await {
        Ok(workspace) => Ok(workspace),
        Err(cause) => Err(rollback(spec.repo, spec.lock, made, cause).await),
    }
}

/// Removes a task's worktree folder and local branch (the doc archive stays). Idempotent: a
/// worktree or branch that is already gone is fine. The worktree goes under the repository's
/// lock (its `prune` must not meet an add in flight).
pub async fn remove(
    repo: &git::Repo,
    lock: &crate::repo_lock::RepoLock,
    worktree: &Path,
    branch: &str,
) -> Result<(), WorkspaceError> {
    let records = lock.records().await;
    repo.remove_worktree(worktree)
        .await
        .map_err(git_err(format!(
            "could not remove the worktree {}",
            worktree.display()
        )))?;
    drop(records);
    repo.delete_branch(branch)
        .await
        .map_err(git_err(format!("could not delete branch `{branch}`")))?;
    Ok(())
}

/// Removes a workspace whose task row could not be written: worktree, branch and doc folder.
/// Failures are logged (startup recovery removes whatever is left).
pub async fn discard(repo: &git::Repo, lock: &crate::repo_lock::RepoLock, ws: &Workspace) {
    if let Err(err) = remove(repo, lock, &ws.worktree, &ws.branch).await {
        tracing::error!(key = %ws.key, error = %err, "cannot roll back a task workspace");
    }
    if let Some(dir) = ws.doc_path.parent()
        && let Err(err) = tokio::fs::remove_dir_all(dir).await
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::error!(key = %ws.key, dir = %dir.display(), error = %err, "cannot remove a task's doc folder");
    }
}

/// The task keys and branches that task rows own: everything else under Atelier's names is a
/// leftover.
#[derive(Debug, Default)]
pub struct Owned {
    pub keys: std::collections::BTreeSet<String>,
    pub branches: std::collections::BTreeSet<String>,
}

/// Whether a folder name has the shape of a task key (`<id>-<slug>`), so a leftover folder is
/// only ever one Atelier could have made.
fn looks_like_key(name: &str) -> bool {
    validate_key(name).is_ok()
        && name
            .split_once('-')
            .is_some_and(|(id, _)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the workspaces of `repo` that no task owns — left by a crash between making a task's
/// workspace and writing its row: worktrees under `<repo>-worktrees/` whose key no task has,
/// and `atelier/*` branches no task has. Logs each removal; a failure is logged and skipped.
/// Returns what was removed.
pub async fn remove_leftover_workspaces(repo: &git::Repo, owned: &Owned) -> Vec<String> {
    let mut removed = Vec::new();
    let root = worktrees_root(repo.path());
    let is_leftover = |dir: &Path| {
        dir.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|key| looks_like_key(key) && !owned.keys.contains(key))
    };
    // Worktrees git has on record, then folders it does not know (a record pruned by hand).
    let mut registered: Vec<PathBuf> = Vec::new();
    match repo.linked_worktrees().await {
        Ok(dirs) => registered.extend(
            dirs.into_iter()
                .filter(|dir| dir.parent() == Some(root.as_path()) && is_leftover(dir)),
        ),
        Err(err) => {
            tracing::warn!(repo = %repo.path().display(), error = %err, "cannot list worktrees to find leftovers");
            return removed;
        }
    }
    let mut unregistered: Vec<PathBuf> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let dir = entry.path();
            if is_leftover(&dir) && !registered.contains(&dir) {
                unregistered.push(dir);
            }
        }
    }
    for dir in registered {
        match repo.remove_worktree(&dir).await {
            Ok(()) => {
                tracing::warn!(worktree = %dir.display(), "removed a leftover worktree that no task owns");
                removed.push(format!("worktree {}", dir.display()));
            }
            Err(err) => {
                tracing::warn!(worktree = %dir.display(), error = %err, "cannot remove a leftover worktree; remove it by hand");
            }
        }
    }
    for dir in unregistered {
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {
                tracing::warn!(folder = %dir.display(), "removed a leftover worktree folder that no task owns");
                removed.push(format!("folder {}", dir.display()));
            }
            Err(err) => {
                tracing::warn!(folder = %dir.display(), error = %err, "cannot remove a leftover worktree folder; remove it by hand");
            }
        }
    }
    match repo.branches_with_prefix(BRANCH_PREFIX).await {
        Ok(branches) => {
            for branch in branches {
                if owned.branches.contains(&branch) {
                    continue;
                }
                match repo.delete_branch(&branch).await {
                    Ok(()) => {
                        tracing::warn!(repo = %repo.path().display(), %branch, "deleted a leftover branch that no task owns");
                        removed.push(format!("branch {branch}"));
                    }
                    Err(err) => {
                        tracing::warn!(repo = %repo.path().display(), %branch, error = %err, "cannot delete a leftover branch; delete it by hand");
                    }
                }
            }
        }
        Err(err) => {
            tracing::warn!(repo = %repo.path().display(), error = %err, "cannot list branches to find leftovers");
        }
    }
    removed
}

/// Removes the task folders in `parents` (the doc archive `<data_dir>/tasks/` and the agents'
/// homes) whose key no task owns (deleting a task removes them, so any such folder is a crash's
/// leftover). Logs each removal and returns what was removed.
pub async fn remove_leftover_folders(parents: &[PathBuf], owned: &Owned) -> Vec<String> {
    let mut removed = Vec::new();
    for parent in parents {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let leftover = entry
                .file_name()
                .to_str()
                .is_some_and(|key| looks_like_key(key) && !owned.keys.contains(key));
            if !leftover || !dir.is_dir() {
                continue;
            }
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {
                    tracing::warn!(dir = %dir.display(), "removed a leftover task folder that no task owns");
                    removed.push(format!("folder {}", dir.display()));
                }
                Err(err) => {
                    tracing::warn!(dir = %dir.display(), error = %err, "cannot remove a leftover task folder; remove it by hand");
                }
            }
        }
    }
    removed
}

/// Before a run starts in `worktree`: removes `index.lock` from the worktree's git folder when
/// its writer is gone. A `git` killed mid-commit (with its agent) leaves the lock behind and
/// every later git command in the worktree fails on it. One agent runs per task at a time, so at
/// run start the only possible writer is a process working in the worktree; the lock is removed
/// only when there is none (the `/proc` scan runs only when a lock exists). Never fails: a
/// problem is logged and the run goes on. The lock's path is found from the repository's
/// records (`git::TaskWorktree`), never through the worktree's `.git` pointer, which its agent
/// could point at any file named `index.lock` for the server to remove.
pub async fn clear_stale_index_lock(repo: &Path, worktree: &Path) {
    let lock = match git::TaskWorktree::find(repo, worktree) {
        Ok(located) => located.index_lock(),
        Err(err) => {
            tracing::warn!(worktree = %worktree.display(), error = %err, "cannot find the worktree's index.lock path");
            return;
        }
    };
    if tokio::fs::symlink_metadata(&lock).await.is_err() {
        return;
    }
    // A scan of every process: on the blocking pool, not on an async worker.
    let dir = worktree.to_path_buf();
    let writers = tokio::task::spawn_blocking(move || harness::process::processes_in(&dir))
        .await
        .unwrap_or_default();
    if !writers.is_empty() {
        tracing::warn!(lock = %lock.display(), ?writers, "index.lock exists and processes still work in the worktree; leaving it");
        return;
    }
    match tokio::fs::remove_file(&lock).await {
        Ok(()) => {
            tracing::warn!(lock = %lock.display(), "removed a stale index.lock whose writer is gone");
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(lock = %lock.display(), error = %err, "cannot remove a stale index.lock");
        }
    }
}

/// What [`build`] has made so far, for [`rollback`].
#[derive(Debug, Default)]
struct Made {
    /// Doc-side files and folders created, in creation order.
    paths: Vec<PathBuf>,
    /// The worktree folder, once `git worktree add` was attempted.
    worktree: Option<PathBuf>,
    /// The branch, once `git worktree add` was attempted (it did not exist before).
    branch: Option<String>,
}

async fn build(
    spec: &WorkspaceSpec<'_>,
    env_files: &[PathBuf],
    worktree: &Path,
    made: &mut Made,
) -> Result<Workspace, WorkspaceError> {
    let repo = spec.repo;
    let mut notes: Vec<String> = Vec::new();

    // 1. The doc archive, first: it is the task's record even before anything else exists.
    let tasks_dir = spec.data_dir.join("tasks");
    tokio::fs::create_dir_all(&tasks_dir)
        .await
        .map_err(|source| WorkspaceError::Io {
            action: "create the task docs folder",
            path: tasks_dir.clone(),
            source,
        })?;
    let doc_dir = tasks_dir.join(spec.key);
    if create_dir(&doc_dir, "create the task's doc folder").await? {
        made.paths.push(doc_dir.clone());
    }
    let doc_path = doc_dir.join("task.md");
    if create_file(&doc_path, &seed_doc(spec.title, spec.body)).await? {
        made.paths.push(doc_path.clone());
    }
    let attachments_dir = doc_dir.join("attachments");
    if create_dir(&attachments_dir, "create the task's attachments folder").await? {
        made.paths.push(attachments_dir.clone());
    }

    // 2. The base: the remote's default branch when we have it, else the local one.
    let has_remote = repo.has_remote(spec.remote).await.map_err(git_err(format!(
        "could not list the remotes of {}",
        repo.path().display()
    )))?;
    if has_remote && let Err(err) = spec.lock.fetch(repo, spec.remote).await {
        // Git's own message stays in the server's log: the notes go to `setup.log`, which the
        // task's agent reads, and git can be made (through a link an agent planted in `.git`)
        // to quote in it a line of a file the agent may not see.
        tracing::warn!(remote = spec.remote, error = %err, "fetching for a new task's workspace failed");
        notes.push(format!(
            "fetching `{}` failed, the branch is cut from what was fetched before (git's message \
             is in the server's log)",
            spec.remote
        ));
    }
    let default = repo
        .default_branch(spec.remote)
        .await
        .map_err(git_err("could not choose the branch to cut the task from"))?;
    let remote_ref = format!("refs/remotes/{}/{default}", spec.remote);
    let on_remote = repo.rev_parse(&remote_ref).await.map_err(git_err(format!(
        "could not resolve `{}/{default}`",
        spec.remote
    )))?;
    let (base_ref, base) = match on_remote {
        Some(_) => (remote_ref, format!("{}/{default}", spec.remote)),
        None => (format!("refs/heads/{default}"), default.clone()),
    };

    // 3. The worktree on its new branch (neither existed: `create` checked).
    made.worktree = Some(worktree.to_path_buf());
    made.branch = Some(spec.branch.to_string());
    // Recorded under the repository's lock (git cannot write two records at once), checked out
    // beside the other creations (the slow half: every file of the repository).
    let records = spec.lock.records().await;
    let registered = repo
        .register_worktree(worktree, spec.branch, &base_ref)
        .await;
    drop(records);
    let added = match registered {
        Ok(()) => repo.populate_worktree(worktree).await,
        Err(err) => Err(err),
    };
    added.map_err(git_err(format!(
        "could not create the worktree {} on branch `{}` from `{base}`",
        worktree.display(),
        spec.branch
    )))?;

    // 4. Env files, as symlinks to the repository's copies.
    for file in env_files {
        link_env_file(repo.path(), worktree, file, &mut notes).await?;
    }

    // 5. The setup hook, with its output kept beside the doc.
    let setup_log = doc_dir.join("setup.log");
    let mut log = String::new();
    for note in &notes {
        log.push_str(&format!("[atelier] {note}\n"));
    }
    let hook_result = match spec.setup_hook {
        Some(command) => {
            log.push_str(&format!("[atelier] running setup hook: {command}\n"));
            let env = hook_env(spec, worktree);
            let wrapper = match &spec.hook_sandbox {
                Some((sandbox, mounts)) => std::iter::once(sandbox.program().into())
                    .chain(sandbox.args(mounts, worktree))
                    .collect(),
                None => Vec::new(),
            };
            let out = git::run_hook_in(&wrapper, command, worktree, &env, spec.setup_timeout)
                .await
                .map_err(git_err("could not run the setup hook"))?;
            log.push_str(&out.output);
            if !out.output.is_empty() && !out.output.ends_with('\n') {
                log.push('\n');
            }
            log.push_str(&if out.timed_out {
                format!(
                    "[atelier] setup hook timed out after {:?}\n",
                    spec.setup_timeout
                )
            } else {
                format!(
                    "[atelier] setup hook ended: {}\n",
                    exit_label(out.exit_code)
                )
            });
            Some((command, out))
        }
        None => None,
    };
    let setup_log = if log.is_empty() {
        None
    } else {
        made.paths.push(setup_log.clone());
        tokio::fs::write(&setup_log, &log)
            .await
            .map_err(|source| WorkspaceError::Io {
                action: "write the setup log",
                path: setup_log.clone(),
                source,
            })?;
        Some(setup_log)
    };
    if let Some((command, out)) = hook_result
        && !out.success
    {
        let tail = tail(&out.output);
        return Err(if out.timed_out {
            WorkspaceError::HookTimedOut {
                command: command.to_string(),
                timeout: spec.setup_timeout,
                tail,
            }
        } else {
            WorkspaceError::HookFailed {
                command: command.to_string(),
                exit_code: out.exit_code,
                tail,
            }
        });
    }

    Ok(Workspace {
        key: spec.key.to_string(),
        doc_path,
        attachments_dir,
        worktree: worktree.to_path_buf(),
        branch: spec.branch.to_string(),
        base,
        setup_log,
    })
}

/// Undoes what [`build`] made, returning the original error (with any cleanup failure added).
async fn rollback(
    repo: &git::Repo,
    lock: &crate::repo_lock::RepoLock,
    made: Made,
    cause: WorkspaceError,
) -> WorkspaceError {
    let mut problems = Vec::new();
    if let Some(worktree) = &made.worktree {
        let records = lock.records().await;
        if let Err(err) = repo.remove_worktree(worktree).await {
            problems.push(format!("worktree {}: {err}", worktree.display()));
        }
        drop(records);
    }
    if let Some(branch) = &made.branch
        && let Err(err) = repo.delete_branch(branch).await
    {
        problems.push(format!("branch `{branch}`: {err}"));
    }
    for path in made.paths.iter().rev() {
        let removed = match tokio::fs::symlink_metadata(path).await {
            Ok(meta) if meta.is_dir() => tokio::fs::remove_dir_all(path).await,
            Ok(_) => tokio::fs::remove_file(path).await,
            Err(err) => Err(err),
        };
        if let Err(err) = removed
            && err.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("{}: {err}", path.display()));
        }
    }
    if problems.is_empty() {
        cause
    } else {
        WorkspaceError::RollbackFailed {
            cause: Box::new(cause),
            problems: problems.join("; "),
        }
    }
}

/// Creates a folder; `Ok(false)` when it already existed.
async fn create_dir(path: &Path, action: &'static str) -> Result<bool, WorkspaceError> {
    match tokio::fs::create_dir(path).await {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(source) => Err(WorkspaceError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes a new file; `Ok(false)` (and no write) when it already existed.
async fn create_file(path: &Path, content: &str) -> Result<bool, WorkspaceError> {
    use tokio::io::AsyncWriteExt;
    let io_err = |source| WorkspaceError::Io {
        action: "write the task doc",
        path: path.to_path_buf(),
        source,
    };
    let mut file = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await
    {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(err) => return Err(io_err(err)),
    };
    file.write_all(content.as_bytes()).await.map_err(io_err)?;
    file.flush().await.map_err(io_err)?;
    Ok(true)
}

/// Symlinks `<repo>/<file>` to `<worktree>/<file>`; a missing source or an existing target is
/// skipped with a note.
async fn link_env_file(
    repo: &Path,
    worktree: &Path,
    file: &Path,
    notes: &mut Vec<String>,
) -> Result<(), WorkspaceError> {
    let source = repo.join(file);
    let target = worktree.join(file);
    if tokio::fs::symlink_metadata(&source).await.is_err() {
        notes.push(format!(
            "env file `{}` does not exist in the repository; skipped",
            file.display()
        ));
        return Ok(());
    }
    if tokio::fs::symlink_metadata(&target).await.is_ok() {
        notes.push(format!(
            "env file `{}` already exists in the worktree (tracked by git?); left as is",
            file.display()
        ));
        return Ok(());
    }
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|source| WorkspaceError::Io {
                action: "create the folder for an env file",
                path: parent.to_path_buf(),
                source,
            })?;
    }
    tokio::fs::symlink(&source, &target)
        .await
        .map_err(|source_err| WorkspaceError::Io {
            action: "link the env file",
            path: target.clone(),
            source: source_err,
        })?;
    notes.push(format!("linked env file `{}`", file.display()));
    Ok(())
}

/// The hook's environment: the caller's, with the workspace's own variables set whatever the
/// caller gave for them.
fn hook_env(spec: &WorkspaceSpec<'_>, worktree: &Path) -> Vec<(String, String)> {
    let mut env = spec.hook_env.clone();
    let extra = [
        ("ATELIER_TASK_KEY", spec.key.to_string()),
        ("ATELIER_BRANCH", spec.branch.to_string()),
        ("ATELIER_WORKTREE", worktree.display().to_string()),
        ("ATELIER_REPO", spec.repo.path().display().to_string()),
    ];
    env.retain(|(key, _)| !extra.iter().any(|(name, _)| key == name));
    env.extend(extra.map(|(name, value)| (name.to_string(), value)));
    env
}

/// The last lines of a hook's output, bounded in size.
fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    let mut text = lines[start..].join("\n");
    if text.len() > TAIL_BYTES {
        let mut cut = text.len() - TAIL_BYTES;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text = format!("…{}", &text[cut..]);
    }
    if text.trim().is_empty() {
        "(no output)".to_string()
    } else {
        text
    }
}

fn validate_key(key: &str) -> Result<(), WorkspaceError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY
        && !key.starts_with('-')
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(WorkspaceError::InvalidKey {
            key: key.to_string(),
        })
    }
}

fn validate_branch(branch: &str) -> Result<(), WorkspaceError> {
    let ok = branch.len() <= MAX_KEY + 20
        && branch.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('-')
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(WorkspaceError::InvalidBranch {
            branch: branch.to_string(),
        })
    }
}

/// A repository-relative env file path that cannot leave the repository.
fn check_env_file(file: &str) -> Result<PathBuf, WorkspaceError> {
    let unsafe_file = |reason| WorkspaceError::UnsafeEnvFile {
        file: file.to_string(),
        reason,
    };
    if file.is_empty() {
        return Err(unsafe_file("the path is empty"));
    }
    let mut clean = PathBuf::new();
    for component in Path::new(file).components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_file("the path contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_file("the path is absolute"));
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(unsafe_file("the path names the repository itself"));
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::TaskId;
    use domain::slug::{branch_name, task_key};

    fn git_in(dir: &Path, args: &[&str]) -> String {
        testkit::git(dir, args).unwrap().trim().to_string()
    }

    fn configure(dir: &Path) {
        testkit::set_identity(dir).unwrap();
    }

    fn commit(dir: &Path, file: &str, content: &str, message: &str) -> String {
        testkit::commit_file(dir, file, content, message).unwrap()
    }

    /// `work` on `main` with `.env` untracked (and ignored), pushed to a bare `origin` whose
    /// `main` is one commit ahead of the local `main`.
    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        work: PathBuf,
        data: PathBuf,
        remote_main: String,
        repo: git::Repo,
        lock: crate::repo_lock::RepoLock,
    }

    async fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().canonicalize().expect("canonical");
        let remote = root.join("remote.git");
        let work = root.join("work");
        git_in(
            &root,
            &["init", "--quiet", "--bare", "-b", "main", "remote.git"],
        );
        std::fs::create_dir_all(&work).expect("mkdir");
        git_in(&work, &["init", "--quiet", "-b", "main"]);
        configure(&work);
        commit(&work, ".gitignore", ".env\n", "ignore env");
        git_in(
            &work,
            &["remote", "add", "origin", remote.to_str().expect("utf-8")],
        );
        git_in(&work, &["push", "--quiet", "origin", "main"]);
        git_in(&work, &["remote", "set-head", "origin", "--auto"]);
        std::fs::write(work.join(".env"), "SECRET=1\n").expect("write env");

        git_in(
            &root,
            &["clone", "--quiet", remote.to_str().expect("utf-8"), "other"],
        );
        let other = root.join("other");
        configure(&other);
        let remote_main = commit(&other, "upstream.txt", "new upstream work\n", "upstream");
        git_in(&other, &["push", "--quiet", "origin", "main"]);

        let repo = git::Repo::open(&work).await.expect("open");
        Fixture {
            _tmp: tmp,
            data: root.join("data"),
            root,
            work,
            remote_main,
            repo,
            lock: crate::repo_lock::RepoLock::default(),
        }
    }

    fn spec<'a>(fx: &'a Fixture, key: &'a str, branch: &'a str) -> WorkspaceSpec<'a> {
        WorkspaceSpec {
            repo: &fx.repo,
            lock: &fx.lock,
            remote: "origin",
            data_dir: &fx.data,
            key,
            branch,
            title: "Add login",
            body: "Please add a login page.\n\nWith `code` and $VARS.",
            env_files: &[],
            setup_hook: None,
            setup_timeout: Duration::from_secs(60),
            hook_env: vec![
                (
                    "PATH".to_string(),
                    std::env::var("PATH").unwrap_or_default(),
                ),
                ("ATELIER_PORT".to_string(), "4100".to_string()),
            ],
            hook_sandbox: None,
        }
    }

    async fn assert_nothing_left(fx: &Fixture, key: &str, branch: &str) {
        assert!(
            !worktree_dir(&fx.work, key).exists(),
            "worktree folder left behind"
        );
        assert_eq!(
            fx.repo
                .rev_parse(&format!("refs/heads/{branch}"))
                .await
                .expect("rev-parse"),
            None,
            "branch left behind"
        );
        assert!(
            !fx.data.join("tasks").join(key).exists(),
            "doc folder left behind"
        );
        assert!(!git_in(&fx.work, &["worktree", "list"]).contains(key));
    }

    #[tokio::test]
    async fn the_hook_gets_the_workspace_s_own_variables_whatever_it_was_given() {
        let fx = fixture().await;
        let mut spec = spec(&fx, "1-add-login", "atelier/1-add-login");
        for name in ["ATELIER_TASK_KEY", "ATELIER_BRANCH", "ATELIER_REPO"] {
            spec.hook_env.push((name.to_string(), "forged".to_string()));
        }
        let env = hook_env(&spec, Path::new("/wt/1-add-login"));
        let value = |name: &str| {
            let values: Vec<&str> = env
                .iter()
                .filter(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
                .collect();
            assert_eq!(values.len(), 1, "{name}: {env:?}");
            values[0].to_string()
        };
        assert_eq!(value("ATELIER_TASK_KEY"), "1-add-login");
        assert_eq!(value("ATELIER_BRANCH"), "atelier/1-add-login");
        assert_eq!(value("ATELIER_REPO"), fx.work.display().to_string());
        assert_eq!(value("ATELIER_PORT"), "4100");
    }

    #[tokio::test]
    async fn create_builds_the_whole_workspace() {
        let fx = fixture().await;
        let env_files = vec![".env".to_string(), "config/missing.env".to_string()];
        let mut spec = spec(&fx, "1-add-login", "atelier/1-add-login");
        spec.env_files = &env_files;
        spec.setup_hook =
            Some("echo \"port=$ATELIER_PORT key=$ATELIER_TASK_KEY\"; cat .env; echo warn >&2");
        let ws = create(spec).await.expect("create");

        let doc_dir = fx.data.join("tasks/1-add-login");
        let worktree = fx.root.join("work-worktrees/1-add-login");
        assert_eq!(
            ws,
            Workspace {
                key: "1-add-login".to_string(),
                doc_path: doc_dir.join("task.md"),
                attachments_dir: doc_dir.join("attachments"),
                worktree: worktree.clone(),
                branch: "atelier/1-add-login".to_string(),
                base: "origin/main".to_string(),
                setup_log: Some(doc_dir.join("setup.log")),
            }
        );
        assert_eq!(
            std::fs::read_to_string(&ws.doc_path).expect("doc"),
            "# Add login\n\n## Original Request\n\nPlease add a login page.\n\nWith `code` and $VARS.\n"
        );
        assert!(ws.attachments_dir.is_dir());
        // Cut from origin/main (ahead of the local main), on its own branch.
        assert_eq!(git_in(&worktree, &["rev-parse", "HEAD"]), fx.remote_main);
        assert_eq!(
            git_in(&worktree, &["symbolic-ref", "HEAD"]),
            "refs/heads/atelier/1-add-login"
        );
        assert_eq!(
            std::fs::read_link(worktree.join(".env")).expect("symlink"),
            fx.work.join(".env")
        );
        assert_eq!(git_in(&worktree, &["status", "--porcelain"]), "");
        let log = std::fs::read_to_string(doc_dir.join("setup.log")).expect("log");
        assert_eq!(
            log,
            "[atelier] linked env file `.env`\n\
             [atelier] env file `config/missing.env` does not exist in the repository; skipped\n\
             [atelier] running setup hook: echo \"port=$ATELIER_PORT key=$ATELIER_TASK_KEY\"; cat .env; echo warn >&2\n\
             port=4100 key=1-add-login\nSECRET=1\nwarn\n\
             [atelier] setup hook ended: exit code 0\n"
        );
    }

    #[tokio::test]
    async fn create_without_remote_uses_the_local_default_branch_and_no_log() {
        let fx = fixture().await;
        git_in(&fx.work, &["remote", "remove", "origin"]);
        let local_main = git_in(&fx.work, &["rev-parse", "main"]);
        let ws = create(spec(&fx, "2-local", "atelier/2-local"))
            .await
            .expect("create");
        assert_eq!(ws.base, "main");
        assert_eq!(ws.setup_log, None);
        assert_eq!(git_in(&ws.worktree, &["rev-parse", "HEAD"]), local_main);
    }

    #[tokio::test]
    async fn failing_hook_rolls_everything_back() {
        let fx = fixture().await;
        let env_files = vec![".env".to_string()];
        let mut spec = spec(&fx, "3-fails", "atelier/3-fails");
        spec.env_files = &env_files;
        spec.setup_hook = Some("echo installing; echo 'npm ERR! broken' >&2; exit 7");
        let err = create(spec).await.expect_err("hook fails");
        match &err {
            WorkspaceError::HookFailed {
                exit_code, tail, ..
            } => {
                assert_eq!(*exit_code, Some(7));
                assert_eq!(tail, "installing\nnpm ERR! broken");
            }
            other => panic!("expected HookFailed, got {other:?}"),
        }
        assert!(err.to_string().contains("exit code 7"), "{err}");
        assert_nothing_left(&fx, "3-fails", "atelier/3-fails").await;
        assert!(
            fx.work.join(".env").exists(),
            "the repository's env file is untouched"
        );
    }

    #[tokio::test]
    async fn hook_timeout_rolls_everything_back() {
        let fx = fixture().await;
        let mut spec = spec(&fx, "4-slow", "atelier/4-slow");
        spec.setup_hook = Some("echo starting; sleep 30");
        spec.setup_timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let err = create(spec).await.expect_err("hook times out");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        match &err {
            WorkspaceError::HookTimedOut { tail, timeout, .. } => {
                assert_eq!(*timeout, Duration::from_millis(300));
                assert!(tail.starts_with("starting\n"), "{tail}");
            }
            other => panic!("expected HookTimedOut, got {other:?}"),
        }
        assert_nothing_left(&fx, "4-slow", "atelier/4-slow").await;
    }

    #[tokio::test]
    async fn env_files_outside_the_repository_are_rejected() {
        let fx = fixture().await;
        for bad in [
            "../secret.env",
            "config/../../secret.env",
            "/etc/passwd",
            "",
        ] {
            let env_files = vec![".env".to_string(), bad.to_string()];
            let mut spec = spec(&fx, "5-env", "atelier/5-env");
            spec.env_files = &env_files;
            let err = create(spec).await.expect_err("unsafe env file");
            assert!(
                matches!(&err, WorkspaceError::UnsafeEnvFile { file, .. } if file == bad),
                "{err:?}"
            );
            assert_nothing_left(&fx, "5-env", "atelier/5-env").await;
        }
        assert_eq!(
            check_env_file("./config/./dev.env").expect("safe"),
            PathBuf::from("config/dev.env")
        );
    }

    #[tokio::test]
    async fn existing_worktree_or_branch_is_never_overwritten() {
        let fx = fixture().await;
        let first = create(spec(&fx, "6-twice", "atelier/6-twice"))
            .await
            .expect("create");
        std::fs::write(&first.doc_path, "# edited plan\n").expect("edit doc");

        let err = create(spec(&fx, "6-twice", "atelier/6-twice"))
            .await
            .expect_err("worktree exists");
        assert!(
            matches!(err, WorkspaceError::WorktreeExists { .. }),
            "{err:?}"
        );

        // Worktree gone but branch still there.
        fx.repo
            .remove_worktree(&first.worktree)
            .await
            .expect("remove worktree");
        let err = create(spec(&fx, "6-twice", "atelier/6-twice"))
            .await
            .expect_err("branch exists");
        assert!(
            matches!(err, WorkspaceError::BranchExists { .. }),
            "{err:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&first.doc_path).expect("doc"),
            "# edited plan\n",
            "the existing doc is untouched"
        );

        // Once the branch is gone too, the existing doc folder is reused, not overwritten, and
        // a failed re-creation leaves it in place.
        fx.repo
            .delete_branch("atelier/6-twice")
            .await
            .expect("delete");
        let mut failing = spec(&fx, "6-twice", "atelier/6-twice");
        failing.setup_hook = Some("exit 1");
        create(failing).await.expect_err("hook fails");
        assert_eq!(
            std::fs::read_to_string(&first.doc_path).expect("doc"),
            "# edited plan\n"
        );
        assert!(first.attachments_dir.is_dir());
        assert!(!first.worktree.exists());
        let again = create(spec(&fx, "6-twice", "atelier/6-twice"))
            .await
            .expect("recreate");
        assert_eq!(again, first);
        assert_eq!(
            std::fs::read_to_string(&first.doc_path).expect("doc"),
            "# edited plan\n"
        );
    }

    #[tokio::test]
    async fn remove_is_idempotent_and_keeps_the_doc() {
        let fx = fixture().await;
        let env_files = vec![".env".to_string()];
        let mut spec = spec(&fx, "7-gone", "atelier/7-gone");
        spec.env_files = &env_files;
        let ws = create(spec).await.expect("create");
        std::fs::write(ws.worktree.join("scratch.txt"), "uncommitted").expect("write");
        remove(&fx.repo, &fx.lock, &ws.worktree, &ws.branch)
            .await
            .expect("remove");
        assert!(!ws.worktree.exists());
        assert_eq!(
            fx.repo
                .rev_parse("refs/heads/atelier/7-gone")
                .await
                .expect("rev"),
            None
        );
        assert!(ws.doc_path.exists(), "the doc outlives the worktree");
        assert!(
            fx.work.join(".env").exists(),
            "the linked env file is untouched"
        );
        remove(&fx.repo, &fx.lock, &ws.worktree, &ws.branch)
            .await
            .expect("remove again");
    }

    #[tokio::test]
    async fn hostile_titles_make_safe_names_and_never_run() {
        let fx = fixture().await;
        let titles = [
            "$(touch pwned)",
            "`touch pwned`; touch pwned",
            "\"quoted\" 'title' && touch pwned",
            "a/b\\c/../../etc",
            "..",
            "Ünïcødé café ☕ 日本語",
        ];
        let worktrees_root = fx.root.join("work-worktrees");
        for (i, title) in titles.into_iter().enumerate() {
            let id = TaskId(100 + i as i64);
            let key = task_key(id, title);
            let branch = branch_name(id, title);
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{key}"
            );
            let mut spec = spec(&fx, &key, &branch);
            spec.title = title;
            spec.body = title;
            spec.setup_hook = Some("echo \"$ATELIER_TASK_KEY\"");
            let ws = create(spec).await.expect("create");
            assert_eq!(ws.worktree.parent(), Some(worktrees_root.as_path()));
            assert_eq!(
                ws.doc_path.parent().and_then(Path::parent),
                Some(fx.data.join("tasks").as_path())
            );
            assert_eq!(
                std::fs::read_to_string(&ws.doc_path).expect("doc"),
                seed_doc(title, title)
            );
            assert_eq!(
                git_in(
                    &fx.work,
                    &["rev-parse", "--verify", &format!("refs/heads/{branch}")]
                ),
                git_in(&ws.worktree, &["rev-parse", "HEAD"])
            );
        }
        assert_eq!(find_named(&fx.root, "pwned"), Vec::<PathBuf>::new());
    }

    /// Every path under `dir` (symlinks not followed) whose file name is `name`.
    fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(current) = stack.pop() {
            for entry in std::fs::read_dir(&current).expect("read dir") {
                let entry = entry.expect("entry");
                let path = entry.path();
                if entry.file_name() == name {
                    found.push(path.clone());
                }
                if entry.file_type().expect("file type").is_dir() {
                    stack.push(path);
                }
            }
        }
        found
    }

    #[tokio::test]
    async fn invalid_keys_and_branches_are_rejected_before_anything_is_made() {
        let fx = fixture().await;
        for key in ["", "../x", "A-b", "-x", "x/y", "x y", "$(id)"] {
            let err = create(spec(&fx, key, "atelier/ok"))
                .await
                .expect_err("bad key");
            assert!(
                matches!(err, WorkspaceError::InvalidKey { .. }),
                "{key}: {err:?}"
            );
        }
        for branch in [
            "",
            "atelier/",
            "/x",
            "atelier//x",
            "atelier/-x",
            "atelier/X",
            "a..b",
            "atelier/x.lock",
        ] {
            let err = create(spec(&fx, "8-ok", branch))
                .await
                .expect_err("bad branch");
            assert!(
                matches!(err, WorkspaceError::InvalidBranch { .. }),
                "{branch}: {err:?}"
            );
        }
        assert!(!fx.data.exists());
        assert!(!fx.root.join("work-worktrees").exists());
    }

    #[test]
    fn names_and_seed_doc() {
        assert_eq!(
            worktree_dir(Path::new("/srv/repos/shop"), "7-fix-it"),
            PathBuf::from("/srv/repos/shop-worktrees/7-fix-it")
        );
        assert_eq!(
            seed_doc("Fix it", "line one\n\nline \"two\" $(x)"),
            "# Fix it\n\n## Original Request\n\nline one\n\nline \"two\" $(x)\n"
        );
        assert_eq!(tail(""), "(no output)");
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let kept = tail(&long);
        assert!(
            kept.starts_with("line 60\n") && kept.ends_with("line 99"),
            "{kept}"
        );
    }

    #[tokio::test]
    async fn leftovers_no_task_owns_are_removed_and_owned_ones_kept() {
        let fx = fixture().await;
        let kept = create(spec(&fx, "1-kept", "atelier/1-kept")).await.unwrap();
        create(spec(&fx, "2-stray", "atelier/2-stray"))
            .await
            .unwrap();
        // A worktree folder git no longer knows of, a folder not shaped like a key, a stray
        // branch and a stray agent home.
        let unknown = worktree_dir(&fx.work, "3-unknown");
        std::fs::create_dir_all(&unknown).unwrap();
        let foreign = worktree_dir(&fx.work, "notes");
        std::fs::create_dir_all(&foreign).unwrap();
        git_in(&fx.work, &["branch", "atelier/4-branch-only", "main"]);
        std::fs::create_dir_all(fx.data.join("homes/2-stray")).unwrap();
        let owned = Owned {
            keys: ["1-kept".to_string()].into(),
            branches: ["atelier/1-kept".to_string()].into(),
        };

        let mut removed = remove_leftover_workspaces(&fx.repo, &owned).await;
        removed.extend(
            remove_leftover_folders(&[fx.data.join("tasks"), fx.data.join("homes")], &owned).await,
        );
        let wt = |key: &str| worktree_dir(&fx.work, key).display().to_string();
        let data = |rel: &str| fx.data.join(rel).display().to_string();
        assert_eq!(
            removed,
            vec![
                format!("worktree {}", wt("2-stray")),
                format!("folder {}", wt("3-unknown")),
                "branch atelier/2-stray".to_string(),
                "branch atelier/4-branch-only".to_string(),
                format!("folder {}", data("tasks/2-stray")),
                format!("folder {}", data("homes/2-stray")),
            ]
        );
        assert!(kept.worktree.is_dir() && kept.doc_path.is_file());
        assert!(
            foreign.is_dir(),
            "a folder Atelier could not have made stays"
        );
        assert_eq!(
            fx.repo.branches_with_prefix(BRANCH_PREFIX).await.unwrap(),
            vec!["atelier/1-kept".to_string()]
        );
        assert_nothing_left(&fx, "2-stray", "atelier/2-stray").await;
        // Nothing more to do the second time.
        assert_eq!(
            remove_leftover_workspaces(&fx.repo, &owned).await,
            Vec::<String>::new()
        );
        assert_eq!(
            remove_leftover_folders(&[fx.data.join("tasks"), fx.data.join("homes")], &owned).await,
            Vec::<String>::new()
        );
    }

    #[tokio::test]
    async fn a_stale_index_lock_is_removed_only_when_nobody_works_in_the_worktree() {
        let fx = fixture().await;
        let ws = create(spec(&fx, "1-lock", "atelier/1-lock")).await.unwrap();
        let lock = fx.work.join(".git/worktrees/1-lock/index.lock");
        // No lock: nothing to do.
        clear_stale_index_lock(fx.repo.path(), &ws.worktree).await;
        assert!(!lock.exists());

        std::fs::write(&lock, "").unwrap();
        let mut writer = std::process::Command::new("sleep")
            .arg("300")
            .current_dir(ws.worktree.join("."))
            .spawn()
            .unwrap();
        let alive = testkit::wait_until(
            "the writer to run in the worktree",
            Duration::from_secs(10),
            || {
                let found = harness::process::processes_in(&ws.worktree);
                let pid = writer.id();
                async move { found.contains(&pid).then_some(()) }
            },
        )
        .await;
        alive.unwrap();
        clear_stale_index_lock(fx.repo.path(), &ws.worktree).await;
        assert!(
            lock.exists(),
            "a live process in the worktree may own the lock"
        );

        writer.kill().unwrap();
        writer.wait().unwrap();
        clear_stale_index_lock(fx.repo.path(), &ws.worktree).await;
        assert!(!lock.exists(), "the writer is gone: the lock is stale");

        // A `.git` pointer the agent rewrote to a folder with an `index.lock` of its choosing
        // is not followed: the server removes only the worktree's own lock.
        let decoy = fx.work.parent().unwrap().join("decoy");
        std::fs::create_dir_all(&decoy).unwrap();
        std::fs::write(decoy.join("index.lock"), "not a lock").unwrap();
        std::fs::write(
            ws.worktree.join(".git"),
            format!("gitdir: {}\n", decoy.display()),
        )
        .unwrap();
        std::fs::write(&lock, "").unwrap();
        clear_stale_index_lock(fx.repo.path(), &ws.worktree).await;
        assert!(!lock.exists(), "the worktree's own stale lock is removed");
        assert!(decoy.join("index.lock").exists(), "the decoy was removed");
    }
}
