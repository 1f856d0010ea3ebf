//! Git on a task's linked worktree, as the server: the one recipe for every git command the
//! server runs with a task's worktree as its directory (the hand-off's status, the diff the UI
//! shows, the checkout of a new worktree) and the place that says where the worktree's own git
//! folder is (its `index.lock`).
//!
//! An agent writes its worktree — the `.git` pointer file at its top included — and, unless the
//! sandbox binds them read-only, its entry in the repository's git folder
//! (`.git/worktrees/<name>/`, with the `commondir` and `gitdir` files). Git run the usual way
//! (`git -C <worktree> …`) follows that pointer and that `commondir` to a git folder and a
//! configuration of the agent's choosing, and runs what the configuration names
//! (`core.fsmonitor`, filters, hooks) as the server. So a [`TaskWorktree`] is located from the
//! repository's side — its entry is `<repo>/.git/worktrees/<name>`, accepted only when the
//! entry's `gitdir` leads back to the worktree and its `commondir` to the repository — and
//! every command names it outright (`GIT_DIR`, `GIT_COMMON_DIR`, `GIT_WORK_TREE`, after the
//! recipe's scrub), so git reads no pointer and takes its configuration from the repository's
//! own folder only. On top, each command runs with `core.fsmonitor=false`,
//! `core.hooksPath=/dev/null`, `submodule.recurse=false` and `diff.ignoreSubmodules=all`, and
//! the commands that look at the work tree with `--ignore-submodules=all` (a submodule's own
//! configuration is in the worktree: `git status` would run its filters) and the diffs with
//! `--no-ext-diff --no-textconv`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::GitError;
use crate::cmd::{self, CommandOptions};
use crate::confine::View;
use crate::repo::Repo;

/// Settings every command on a task's worktree runs with, whatever the configuration says.
const OVERRIDES: [(&str, &str); 4] = [
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("submodule.recurse", "false"),
    ("diff.ignoreSubmodules", "all"),
];

/// Largest `gitdir`/`commondir` file read (each is one path).
const MAX_RECORD_BYTES: u64 = 4096;

/// The files of a worktree's entry that say where it is and how git is configured there:
/// read-only to its agent, and so to the server's confined git working in it.
const ENTRY_RECORDS: [&str; 3] = ["commondir", "gitdir", "config.worktree"];

/// A task's linked worktree and its entry in the repository's git folder, located without
/// reading anything inside the worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskWorktree {
    work_tree: PathBuf,
    /// `<common>/worktrees/<name>`.
    git_dir: PathBuf,
    /// The repository's `.git` folder.
    common_dir: PathBuf,
}

impl Repo {
    /// The linked worktree at `dir` of this repository ([`TaskWorktree::find`]).
    pub fn task_worktree(&self, dir: &Path) -> Result<TaskWorktree, GitError> {
        TaskWorktree::find(self.path(), dir)
    }
}

impl TaskWorktree {
    /// The linked worktree at `dir` of the repository whose main work tree is `repo` (its
    /// `.git` a folder), as git has it on record there: the entry `.git/worktrees/<name>` (by
    /// default `<name>` is the folder's name; otherwise the entry whose `gitdir` names
    /// `<dir>/.git`), whose `gitdir` leads back to `dir` and whose `commondir` leads to the
    /// repository. Nothing in `dir` is read, and no process is started.
    pub fn find(repo: &Path, dir: &Path) -> Result<TaskWorktree, GitError> {
        let refuse = |reason: String| GitError::NotATaskWorktree {
            worktree: dir.to_path_buf(),
            repo: repo.to_path_buf(),
            reason,
        };
        let work_tree = std::fs::canonicalize(dir)
            .map_err(|err| refuse(format!("cannot resolve the folder: {err}")))?;
        let common_dir = std::fs::canonicalize(repo)
            .map(|repo| repo.join(".git"))
            .ok()
            .filter(|common| std::fs::symlink_metadata(common).is_ok_and(|m| m.is_dir()))
            .ok_or_else(|| refuse("the repository has no .git folder".to_string()))?;
        let git_dir = worktree_entry(&common_dir, &work_tree)
            .ok_or_else(|| refuse("no entry in .git/worktrees leads back to it".to_string()))?;
        let commondir = crate::refs::read_capped(&git_dir.join("commondir"), MAX_RECORD_BYTES)
            .ok_or_else(|| refuse("its entry has no readable commondir file".to_string()))?;
        let leads_home = std::fs::canonicalize(git_dir.join(commondir.trim_end_matches('\n')))
            .is_ok_and(|common| common == common_dir);
        if !leads_home {
            return Err(refuse(format!(
                "the commondir file of {} does not lead to the repository",
                git_dir.display()
            )));
        }
        Ok(TaskWorktree {
            work_tree,
            git_dir,
            common_dir,
        })
    }
}

/// The `.git` pointer files of the linked worktrees the repository whose git folder is `common`
/// has on record (what each entry's `gitdir`, a regular file of at most 4 KiB, names), whether
/// they still exist or not. A confined `git worktree prune` is shown those that exist: it prunes
/// every entry whose pointer it cannot see.
pub(crate) fn recorded_worktree_pointers(common: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(common.join("worktrees")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| recorded_pointer(&entry.path()))
        .collect()
}

/// The `.git` pointer an entry's `gitdir` record names (a regular file of at most 4 KiB): a
/// relative record (`worktree.useRelativePaths`) resolved against the entry, `.` and `..`
/// resolved without touching the disk.
fn recorded_pointer(entry: &Path) -> Option<PathBuf> {
    let text = crate::refs::read_capped(&entry.join("gitdir"), MAX_RECORD_BYTES)?;
    Some(sandbox::lexical(&entry.join(text.trim_end_matches('\n'))))
}

/// The entry of the worktree at `work_tree` (a canonical path) in the repository whose git
/// folder is `common`: `<common>/worktrees/<folder name>` when its `gitdir` names
/// `<work_tree>/.git`, else the first entry whose `gitdir` does. Reads only the entries' `gitdir`
/// files (regular files, not links, at most 4 KiB).
pub fn worktree_entry(common: &Path, work_tree: &Path) -> Option<PathBuf> {
    let wanted = work_tree.join(".git");
    let leads_back =
        |entry: &Path| recorded_pointer(entry).is_some_and(|pointer| pointer == wanted);
    let entries = common.join("worktrees");
    if let Some(name) = work_tree.file_name() {
        let named = entries.join(name);
        if leads_back(&named) {
            return Some(named);
        }
    }
    std::fs::read_dir(&entries)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|entry| leads_back(entry))
}

/// Makes sure `<git_dir>/config.worktree` exists (empty when it did not), so that the file a
/// `extensions.worktreeConfig` repository reads as configuration can be shown read-only to an
/// agent rather than be created by it. An existing file (or link) is left as it is.
pub fn seal_worktree_config(git_dir: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(git_dir.join("config.worktree"))
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

impl TaskWorktree {
    /// The worktree's folder (canonical).
    pub fn path(&self) -> &Path {
        &self.work_tree
    }

    /// The worktree's own git folder, `<repo>/.git/worktrees/<name>`.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// Where git keeps the worktree's index lock (`<git folder>/index.lock`), found without
    /// asking git (which would follow the worktree's `.git` pointer).
    pub fn index_lock(&self) -> PathBuf {
        self.git_dir.join("index.lock")
    }

    /// `git <args…>` on this worktree, named outright and with [`OVERRIDES`], whatever the exit
    /// status.
    pub(crate) async fn git<I, S>(&self, args: I) -> Result<cmd::Output, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        // Confined, it sees the worktree and the repository's `.git` (its entry is inside),
        // read-only: every command but `reset_hard` only reads.
        let view = View::reading(&self.common_dir).with(&self.work_tree, false);
        self.run(args, &view).await
    }

    /// `args` on this worktree, named outright and with [`OVERRIDES`], seeing `view` when
    /// confined.
    async fn run<I, S>(&self, args: I, view: &View) -> Result<cmd::Output, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut env = cmd::explicit_repo(&self.git_dir, &self.common_dir, &self.work_tree);
        env.push(("GIT_CONFIG_COUNT".into(), OVERRIDES.len().to_string()));
        for (i, (key, value)) in OVERRIDES.iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{i}"), (*key).to_string()));
            env.push((format!("GIT_CONFIG_VALUE_{i}"), (*value).to_string()));
        }
        let options = CommandOptions { env, timeout: None };
        cmd::run_in(&self.work_tree, args, &options, Some(view)).await
    }

    /// [`TaskWorktree::git`]'s stdout when git succeeded, the failure otherwise.
    pub(crate) async fn git_ok<I, S>(&self, args: I) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.git(args).await?.ok()
    }

    /// The branch checked out (`git rev-parse --abbrev-ref HEAD`; `HEAD` when detached).
    pub async fn branch(&self) -> Result<String, GitError> {
        Ok(self
            .git_ok(["rev-parse", "--abbrev-ref", "HEAD"])
            .await?
            .trim()
            .to_string())
    }

    /// `git status --short` (submodules ignored), without taking the index lock.
    pub async fn short_status(&self) -> Result<String, GitError> {
        Ok(self
            .git_ok([
                "--no-optional-locks",
                "status",
                "--short",
                "--ignore-submodules=all",
            ])
            .await?
            .trim_end()
            .to_string())
    }

    /// The last `count` commits, one line each (`git log --oneline -n <count>`).
    pub async fn recent_commits(&self, count: u32) -> Result<String, GitError> {
        let count = count.to_string();
        Ok(self
            .git_ok([
                "--no-optional-locks",
                "log",
                "--oneline",
                "-n",
                count.as_str(),
            ])
            .await?
            .trim_end()
            .to_string())
    }

    /// Checks out the worktree's files and index from its branch (`git reset --hard`), right
    /// after [`Repo::register_worktree`].
    pub async fn reset_hard(&self) -> Result<(), GitError> {
        // Confined, it writes the worktree and its own entry; the rest of `.git` as a writing
        // repository command sees it, and the entry's records read-only, as its agent sees them.
        let mut view = View::writing(&self.common_dir)
            .with(&self.work_tree, true)
            .with(&self.git_dir, true);
        for file in ENTRY_RECORDS {
            view = view.with(&self.git_dir.join(file), false);
        }
        self.run(
            ["reset", "--hard", "--quiet", "--no-recurse-submodules"],
            &view,
        )
        .await?
        .ok()?;
        Ok(())
    }
}
