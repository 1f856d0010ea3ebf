//! [`Repo`]: one git repository's main work tree and the operations Atelier performs on it —
//! default-branch detection, fetch, worktrees and branches for tasks, push, ancestry checks, and
//! merging a branch into a remote branch without touching any work tree.
//!
//! Every command that talks to a remote (fetch, push, ls-remote, deleting a remote branch, the
//! push of a merge) runs under the repository's network deadline
//! ([`Repo::with_network_timeout`], [`Repo::DEFAULT_NETWORK_TIMEOUT`] unless set); a command
//! past it is killed and fails with [`GitError::TimedOut`]. Local commands run under
//! a deadline too (5 minutes, `cmd::LOCAL_LIMIT`: an agent can plant a named pipe where git
//! reads).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::GitError;
use crate::cmd::{self, CommandOptions, check_name};
use crate::confine::View;

/// What a command that talks to a remote does with it, which decides what it sees confined
/// ([`Repo::remote_target`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Asks it (`ls-remote`): the repository read-only.
    Read,
    /// Fetches from it: the repository's refs and objects written.
    Fetch,
    /// Pushes to it.
    Push,
}

/// Where a remote goes in the arguments of [`Repo::git_remote`].
const REMOTE: &str = "{remote}";

/// The remote's side of a confined push to a folder on this machine: no automatic gc.
const LOCAL_RECEIVE_PACK: &str = "--receive-pack=git -c receive.autogc=false receive-pack";

/// A git repository, identified by the canonical path of its main work tree, with the deadline
/// of its network commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    path: PathBuf,
    /// `<path>/.git`, a folder: the git folder every command names outright.
    git_dir: PathBuf,
    network_timeout: Duration,
}

impl Repo {
    /// The deadline of one network command unless [`Repo::with_network_timeout`] sets another.
    pub const DEFAULT_NETWORK_TIMEOUT: Duration = Duration::from_secs(60);

    /// The same repository whose network commands (fetch, push, ls-remote) are killed and fail
    /// with [`GitError::TimedOut`] after `limit`.
    #[must_use]
    pub fn with_network_timeout(mut self, limit: Duration) -> Repo {
        self.network_timeout = limit;
        self
    }

    /// The deadline of one network command.
    pub fn network_timeout(&self) -> Duration {
        self.network_timeout
    }

    /// Opens the repository containing `path` (the work tree root, a sub-folder, or a linked
    /// worktree) and resolves it to its main work tree, whose `.git` must be a folder. A
    /// missing path, a file, a folder outside any repository and a bare repository are all
    /// [`GitError::NotARepository`].
    ///
    /// A main work tree's root (what the engine stores for a project) is opened without asking
    /// git to find its repository: its `.git` folder is named outright, as in every later
    /// command. A `.git` folder holding a `commondir` file — which only a linked worktree's git
    /// folder has, and which would lead git to another repository's refs — is refused. Any
    /// other path is resolved by git's own discovery, which follows `.git` pointer files: give
    /// it only paths no agent can write.
    pub async fn open(path: &Path) -> Result<Repo, GitError> {
        let not_repo = |reason: String| GitError::NotARepository {
            path: path.to_path_buf(),
            reason,
        };
        let meta = match tokio::fs::metadata(path).await {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_repo("the folder does not exist".to_string()));
            }
            Err(err) => return Err(not_repo(format!("cannot read it: {err}"))),
        };
        if !meta.is_dir() {
            return Err(not_repo("it is not a folder".to_string()));
        }
        let main = if real_dir(&path.join(".git")).await {
            path.to_path_buf()
        } else {
            discover_main(path).await?
        };
        let canonical = tokio::fs::canonicalize(&main).await.map_err(|err| {
            not_repo(format!(
                "cannot resolve its work tree {}: {err}",
                main.display()
            ))
        })?;
        let git_dir = canonical.join(".git");
        if !real_dir(&git_dir).await {
            return Err(not_repo(format!(
                "the .git of its main work tree {} is not a folder (a separate git folder is \
                 not supported)",
                canonical.display()
            )));
        }
        if tokio::fs::symlink_metadata(git_dir.join("commondir"))
            .await
            .is_ok()
        {
            return Err(not_repo(format!(
                "{} has a `commondir` file, which only a linked worktree's git folder has; \
                 remove it",
                git_dir.display()
            )));
        }
        let repo = Repo {
            path: canonical,
            git_dir,
            network_timeout: Self::DEFAULT_NETWORK_TIMEOUT,
        };
        let checked = repo.git(["rev-parse", "--git-dir"]).await?;
        if !checked.success {
            return Err(not_repo(format!("git says: {}", checked.stderr.trim())));
        }
        Ok(repo)
    }

    /// This repository named to git outright ([`cmd::explicit_repo`]), with `extra`'s deadline
    /// and variables (which cannot replace the repository's).
    fn options(&self, extra: &CommandOptions) -> CommandOptions {
        let mut env = extra.env.clone();
        env.extend(cmd::explicit_repo(&self.git_dir, &self.git_dir, &self.path));
        CommandOptions {
            env,
            timeout: extra.timeout,
        }
    }

    /// `git <args…>` on this repository, whatever the exit status.
    async fn git<I, S>(&self, args: I) -> Result<cmd::Output, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.git_with(args, &CommandOptions::default()).await
    }

    /// [`Repo::git`]'s stdout when git succeeded, the failure otherwise.
    async fn git_ok<I, S>(&self, args: I) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.git(args).await?.ok()
    }

    /// [`Repo::git`] with `options`' variables and deadline.
    async fn git_with<I, S>(
        &self,
        args: I,
        options: &CommandOptions,
    ) -> Result<cmd::Output, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.git_seeing(args, options, &self.view()).await
    }

    /// [`Repo::git_with`] seeing `view` when the server's git is confined ([`crate::confine`]).
    async fn git_seeing<I, S>(
        &self,
        args: I,
        options: &CommandOptions,
        view: &View,
    ) -> Result<cmd::Output, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        cmd::run_in(&self.path, args, &self.options(options), Some(view)).await
    }

    /// What a command on this repository that only reads sees when confined: its `.git`
    /// folder, read-only.
    fn view(&self) -> View {
        View::reading(&self.git_dir)
    }

    /// What a command that writes refs or objects sees when confined: its `.git` folder,
    /// writable but for what agents cannot write either.
    fn write_view(&self) -> View {
        View::writing(&self.git_dir)
    }

    /// [`Repo::git_ok`] for a command that writes refs or objects ([`Repo::write_view`]).
    async fn git_writing_ok<I, S>(&self, args: I) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.git_seeing(args, &CommandOptions::default(), &self.write_view())
            .await?
            .ok()
    }

    /// Where a command that talks to `remote` (a configured remote's name, or a URL) goes, what
    /// it sees when confined, and whether it is a push to a folder on this machine. The URLs are
    /// git's own answer, from the repository's configuration, which no agent can write: a
    /// remote's (`git remote get-url --all`, `--push` for a push), or a URL's after `insteadOf`
    /// (`git ls-remote --get-url`). A remote over the network: the repository's view and the ssh
    /// folder. A folder on this machine is shown too, read-only to fetch from; a push goes to it
    /// by its path with the repository's `.git` read-only, so git writes nothing on this side (a
    /// remote-tracking ref and its reflog, which an agent could have linked into the remote's
    /// files; the next fetch brings the tracking ref up to date). A push to a remote with several
    /// URLs, one of them a folder, is refused.
    async fn remote_target(
        &self,
        remote: &str,
        purpose: Purpose,
    ) -> Result<(OsString, View, bool), GitError> {
        let push = purpose == Purpose::Push;
        let view = match purpose {
            Purpose::Read => self.view(),
            Purpose::Fetch | Purpose::Push => self.write_view(),
        };
        if !crate::confine::server_git_confined() {
            return Ok((remote.into(), view, false));
        }
        let mut args = vec!["remote", "get-url", "--all"];
        if push {
            args.push("--push");
        }
        args.extend(["--", remote]);
        let out = self.git(args).await?;
        let urls: Vec<String> = if out.success {
            out.stdout.lines().map(str::to_string).collect()
        } else if out.code == Some(2) {
            // Not a configured remote: a URL.
            let url = self
                .git_ok(["ls-remote", "--get-url", "--", remote])
                .await?;
            vec![url.trim().to_string()]
        } else {
            return Err(out.into_error());
        };
        let folders: Vec<PathBuf> = urls
            .iter()
            .filter_map(|url| crate::confine::local_remote(url, &self.path))
            .map(|folder| std::fs::canonicalize(&folder).unwrap_or(folder))
            .collect();
        if push && !folders.is_empty() {
            let ([folder], [_]) = (folders.as_slice(), urls.as_slice()) else {
                return Err(GitError::UnsupportedRemote {
                    remote: remote.to_string(),
                    reason: "it has several push URLs, one of them a folder on this machine; \
                             confined, Atelier pushes to such a remote only when it has one URL"
                        .to_string(),
                });
            };
            let view = View {
                writable: vec![folder.clone()],
                read_only: vec![self.git_dir.clone()],
                network: false,
            };
            return Ok((folder.clone().into_os_string(), view, true));
        }
        let mut view = View {
            network: folders.len() < urls.len(),
            ..view
        };
        for folder in &folders {
            view = view.with(folder, false);
        }
        Ok((remote.into(), view, false))
    }

    /// [`Repo::git_with`] for a command that talks to `remote` (a name or a URL), whose place
    /// in `args` is `{remote}` ([`REMOTE`]): it becomes where [`Repo::remote_target`] says,
    /// seen as it says.
    async fn git_remote(
        &self,
        args: &[&OsStr],
        remote: &str,
        purpose: Purpose,
        options: &CommandOptions,
    ) -> Result<cmd::Output, GitError> {
        let (target, view, local_push) = self.remote_target(remote, purpose).await?;
        let mut args: Vec<&OsStr> = args
            .iter()
            .map(|arg| {
                if *arg == OsStr::new(REMOTE) {
                    target.as_os_str()
                } else {
                    arg
                }
            })
            .collect();
        if local_push {
            // The remote's side runs in this sandbox too, and git does not pass it this side's
            // `-c gc.auto=0`: its detached gc would die with the sandbox, leaving its locks.
            args.insert(1, OsStr::new(LOCAL_RECEIVE_PACK));
        }
        self.git_seeing(args, options, &view).await
    }

    /// [`Repo::git_remote`]'s stdout when git succeeded, killed past `limit`.
    async fn git_network_ok(
        &self,
        args: &[&OsStr],
        remote: &str,
        purpose: Purpose,
        limit: Duration,
    ) -> Result<String, GitError> {
        let options = CommandOptions {
            env: Vec::new(),
            timeout: Some(limit),
        };
        self.git_remote(args, remote, purpose, &options).await?.ok()
    }

    /// The repository's git folder (`<path>/.git`), shared by its linked worktrees.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// The canonical path of the main work tree.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The repository's default branch name (e.g. `main`): the branch `refs/remotes/<remote>/HEAD`
    /// points to; else `main`, else `master` (as a local branch or a `<remote>/…` branch); else
    /// [`GitError::NoDefaultBranch`].
    pub async fn default_branch(&self, remote: &str) -> Result<String, GitError> {
        check_name("remote", remote)?;
        let head_ref = format!("refs/remotes/{remote}/HEAD");
        let out = self
            .git(["symbolic-ref", "--quiet", head_ref.as_str()])
            .await?;
        if out.success {
            let prefix = format!("refs/remotes/{remote}/");
            if let Some(branch) = out.stdout.trim().strip_prefix(&prefix)
                && !branch.is_empty()
            {
                return Ok(branch.to_string());
            }
        }
        for candidate in ["main", "master"] {
            if self
                .rev_parse(&format!("refs/heads/{candidate}"))
                .await?
                .is_some()
                || self
                    .rev_parse(&format!("refs/remotes/{remote}/{candidate}"))
                    .await?
                    .is_some()
            {
                return Ok(candidate.to_string());
            }
        }
        Err(GitError::NoDefaultBranch {
            path: self.path.clone(),
            remote: remote.to_string(),
        })
    }

    /// Whether a remote of that name is configured.
    pub async fn has_remote(&self, remote: &str) -> Result<bool, GitError> {
        check_name("remote", remote)?;
        let remotes = self.git_ok(["remote"]).await?;
        Ok(remotes.lines().any(|line| line.trim() == remote))
    }

    /// The URL `remote` is configured with (`git remote get-url`).
    pub async fn remote_url(&self, remote: &str) -> Result<String, GitError> {
        check_name("remote", remote)?;
        Ok(self
            .git_ok(["remote", "get-url", remote])
            .await?
            .trim()
            .to_string())
    }

    /// The commits `to` has that `from` has not, newest first, one line each: the short id and
    /// the subject (`git log --format='%h %s' from..to`).
    pub async fn commit_lines(&self, from: &str, to: &str) -> Result<String, GitError> {
        check_name("revision", from)?;
        check_name("revision", to)?;
        let range = format!("{from}..{to}");
        self.git_ok(["log", "--format=%h %s", range.as_str()]).await
    }

    /// `git fetch --prune <remote>`, under the network deadline.
    pub async fn fetch(&self, remote: &str) -> Result<(), GitError> {
        check_name("remote", remote)?;
        self.git_network_ok(
            &[
                "fetch",
                "--quiet",
                "--prune",
                "--no-recurse-submodules",
                // `FETCH_HEAD` sits in the `.git` folder agents can write: never opened for
                // writing (a symlink planted there would be written through).
                "--no-write-fetch-head",
                REMOTE,
            ]
            .map(OsStr::new),
            remote,
            Purpose::Fetch,
            self.network_timeout,
        )
        .await?;
        Ok(())
    }

    /// The object id `rev` names, or `None` when it does not resolve.
    pub async fn rev_parse(&self, rev: &str) -> Result<Option<String>, GitError> {
        check_name("revision", rev)?;
        let out = self.git(["rev-parse", "--verify", "--quiet", rev]).await?;
        if out.success {
            return Ok(Some(out.stdout.trim().to_string()));
        }
        if out.code == Some(1) || out.stderr.trim().is_empty() {
            return Ok(None);
        }
        Err(out.into_error())
    }

    /// The text of `path` (relative to the repository's root) as committed at `rev`, or `None`
    /// when `rev` has no such file (or `rev` does not resolve).
    pub async fn file_at(&self, rev: &str, path: &str) -> Result<Option<String>, GitError> {
        check_name("revision", rev)?;
        if path.starts_with('-') || path.contains(':') {
            return Err(GitError::InvalidName {
                what: "path",
                value: path.to_string(),
            });
        }
        let spec = format!("{rev}:{path}");
        let out = self.git(["cat-file", "blob", spec.as_str()]).await?;
        Ok(out.success.then_some(out.stdout))
    }

    /// The paths of the files under folder `dir` as committed at `rev` (relative to the
    /// repository's root; empty when there is no such folder or `rev` does not resolve).
    pub async fn files_at(&self, rev: &str, dir: &str) -> Result<Vec<String>, GitError> {
        check_name("revision", rev)?;
        let out = self
            .git(["ls-tree", "-r", "--name-only", "-z", rev, "--", dir])
            .await?;
        if !out.success {
            return Ok(Vec::new());
        }
        Ok(out
            .stdout
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// `git worktree add --no-track -b <branch> <dir> <base>`: a new branch cut from `base`,
    /// checked out in `dir` (give an absolute path; missing parent folders are created). Fails if
    /// the branch exists or `dir` is a non-empty folder.
    pub async fn add_worktree(&self, dir: &Path, branch: &str, base: &str) -> Result<(), GitError> {
        self.register_worktree(dir, branch, base).await?;
        self.populate_worktree(dir).await
    }

    /// The first half of [`Repo::add_worktree`]: records the worktree and its new branch
    /// (`git worktree add --no-checkout`) without writing its files. Git is not safe to run this
    /// twice at once in one repository: while it writes a record, another `worktree add` (or any
    /// command that looks at every worktree's branch) can read the half-written record and fail
    /// (`failed to read .git/worktrees/<name>/commondir`). [`Repo::populate_worktree`], the
    /// slow half, is.
    pub async fn register_worktree(
        &self,
        dir: &Path,
        branch: &str,
        base: &str,
    ) -> Result<(), GitError> {
        check_name("branch", branch)?;
        check_name("base revision", base)?;
        // Made here (empty, which git accepts), so that a confined git is shown this one folder
        // writable rather than the folder holding every task's worktree; named to git by its
        // canonical path (as git records a path it resolves itself), and removed again when git
        // fails.
        let made = tokio::fs::symlink_metadata(dir).await.is_err();
        let cannot = |what: &str, err: std::io::Error| GitError::NotATaskWorktree {
            worktree: dir.to_path_buf(),
            repo: self.path.clone(),
            reason: format!("cannot {what} its folder: {err}"),
        };
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|err| cannot("create", err))?;
        let canonical = tokio::fs::canonicalize(dir)
            .await
            .map_err(|err| cannot("resolve", err))?;
        let view = self
            .write_view()
            .with_worktree_records(&self.git_dir)
            .with(&canonical, true);
        let added = self
            .git_seeing(
                [
                    "worktree".as_ref(),
                    "add".as_ref(),
                    "--quiet".as_ref(),
                    "--no-checkout".as_ref(),
                    "--no-track".as_ref(),
                    "-b".as_ref(),
                    branch.as_ref(),
                    canonical.as_os_str(),
                    base.as_ref(),
                ],
                &CommandOptions::default(),
                &view,
            )
            .await
            .and_then(cmd::Output::ok);
        if let Err(err) = added {
            if made {
                // Only if still empty: never what someone else put there.
                let _ = tokio::fs::remove_dir(&canonical).await;
            }
            return Err(err);
        }
        // The entry's configuration file exists from the start, so that a sandbox can show it
        // read-only (an agent creating it would configure the server's git).
        let entry = crate::worktree_entry(&self.git_dir, &canonical).ok_or_else(|| {
            GitError::NotATaskWorktree {
                worktree: dir.to_path_buf(),
                repo: self.path.clone(),
                reason: "git recorded no entry leading back to it".to_string(),
            }
        })?;
        crate::seal_worktree_config(&entry).map_err(|err| GitError::NotATaskWorktree {
            worktree: dir.to_path_buf(),
            repo: self.path.clone(),
            reason: format!("cannot create its entry's config.worktree: {err}"),
        })?;
        Ok(())
    }

    /// The second half of [`Repo::add_worktree`]: checks out the files of the worktree
    /// [`Repo::register_worktree`] recorded at `dir` (`git reset --hard` in it: its index and
    /// files from its branch). Touches only that worktree's own state; runs through the
    /// worktree's own recipe ([`Repo::task_worktree`]).
    pub async fn populate_worktree(&self, dir: &Path) -> Result<(), GitError> {
        self.task_worktree(dir)?.reset_hard().await
    }

    /// Removes the linked worktree at `dir` even with local changes or a lock, then prunes
    /// stale worktree records (its own included). Succeeds when `dir` is already gone; a `dir`
    /// that is no worktree of this repository is refused ([`GitError::NotATaskWorktree`]).
    ///
    /// The server deletes the folder itself (never following a link inside it) rather than
    /// `git worktree remove`, which a confined git could only do shown the folder holding every
    /// task's worktree; the entry's lock (its agent can lock it) goes first, so the prune takes
    /// the entry.
    pub async fn remove_worktree(&self, dir: &Path) -> Result<(), GitError> {
        if tokio::fs::symlink_metadata(dir).await.is_ok() {
            let worktree = self.task_worktree(dir)?;
            let failed = |what: &str, err: std::io::Error| GitError::NotATaskWorktree {
                worktree: dir.to_path_buf(),
                repo: self.path.clone(),
                reason: format!("cannot {what}: {err}"),
            };
            match tokio::fs::remove_file(worktree.git_dir().join("locked")).await {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(failed("unlock its entry", err));
                }
                _ => {}
            }
            tokio::fs::remove_dir_all(dir)
                .await
                .map_err(|err| failed("delete its folder", err))?;
        }
        // Shown every other worktree's `.git` pointer, which is all a prune looks at: a
        // confined prune would otherwise take every other entry for stale.
        let mut view = self.write_view().with_worktree_records(&self.git_dir);
        for pointer in crate::worktree::recorded_worktree_pointers(&self.git_dir) {
            view = view.with(&pointer, false);
        }
        self.git_seeing(["worktree", "prune"], &CommandOptions::default(), &view)
            .await?
            .ok()?;
        Ok(())
    }

    /// The linked worktrees git has on record (the main work tree excluded), as recorded by
    /// `git worktree list`; a recorded worktree whose folder is gone is listed too.
    pub async fn linked_worktrees(&self) -> Result<Vec<PathBuf>, GitError> {
        let list = self
            .git_ok(["worktree", "list", "--porcelain", "-z"])
            .await?;
        let mut dirs: Vec<PathBuf> = list
            .split('\0')
            .filter_map(|field| field.strip_prefix("worktree "))
            .map(PathBuf::from)
            .collect();
        // The first record is the main work tree.
        if !dirs.is_empty() {
            dirs.remove(0);
        }
        Ok(dirs)
    }

    /// The local branches whose names start with `prefix` (e.g. `atelier/`), sorted.
    pub async fn branches_with_prefix(&self, prefix: &str) -> Result<Vec<String>, GitError> {
        check_name("branch prefix", prefix)?;
        let pattern = format!("refs/heads/{prefix}");
        let out = self
            .git_ok([
                "for-each-ref",
                "--format=%(refname)",
                "--sort=refname",
                pattern.as_str(),
            ])
            .await?;
        Ok(out
            .lines()
            .filter_map(|line| line.strip_prefix("refs/heads/"))
            .filter(|name| name.starts_with(prefix))
            .map(str::to_string)
            .collect())
    }

    /// Deletes the local branch; succeeds when it does not exist, refuses (like `git branch -D`)
    /// one checked out in a worktree. It deletes the ref with `git update-ref -d` rather than
    /// `git branch -D`, which rewrites `.git/config` (to drop the branch's section) even when
    /// there is none: agents' sandboxes show that file, and replacing it while one starts made
    /// bubblewrap fail to mount it.
    pub async fn delete_branch(&self, branch: &str) -> Result<(), GitError> {
        check_name("branch", branch)?;
        let reference = format!("refs/heads/{branch}");
        if self.rev_parse(&reference).await?.is_none() {
            return Ok(());
        }
        let list = self
            .git_ok(["worktree", "list", "--porcelain", "-z"])
            .await?;
        let checked_out = format!("branch {reference}");
        if list.split('\0').any(|field| field == checked_out) {
            return Err(GitError::BranchCheckedOut {
                branch: branch.to_string(),
            });
        }
        self.git_writing_ok(["update-ref", "-d", reference.as_str()])
            .await?;
        Ok(())
    }

    /// Pushes the local branch to the branch of the same name on `remote` (no force) and returns
    /// the pushed commit id. Under the network deadline.
    pub async fn push(&self, remote: &str, branch: &str) -> Result<String, GitError> {
        check_name("remote", remote)?;
        check_name("branch", branch)?;
        let sha = self.local_branch(branch).await?;
        let refspec = format!("{sha}:refs/heads/{branch}");
        self.push_refspec(remote, &refspec).await?;
        Ok(sha)
    }

    /// Pushes the local branch `branch` to `refs/heads/<branch>` of the repository at `url` (a URL,
    /// not a configured remote; nothing is written to any git config) with
    /// `--force-with-lease=refs/heads/<branch>:<expected>`: the remote branch must be at
    /// `expected`, or absent when `expected` is empty. Only that one ref is pushed. `options`
    /// carry the credentials for this process only and the deadline. Returns the pushed commit;
    /// a lease the remote refuses is [`GitError::PushRejected`].
    pub async fn push_url(
        &self,
        url: &str,
        branch: &str,
        expected: &str,
        options: &CommandOptions,
    ) -> Result<String, GitError> {
        check_name("url", url)?;
        check_name("branch", branch)?;
        if !expected.is_empty() {
            check_name("expected commit", expected)?;
        }
        let sha = self.local_branch(branch).await?;
        let lease = format!("--force-with-lease=refs/heads/{branch}:{expected}");
        let refspec = format!("{sha}:refs/heads/{branch}");
        let out = self
            .git_remote(
                &[
                    "push",
                    "--porcelain",
                    lease.as_str(),
                    REMOTE,
                    refspec.as_str(),
                ]
                .map(OsStr::new),
                url,
                Purpose::Push,
                options,
            )
            .await?;
        if out.success {
            return Ok(sha);
        }
        // `--porcelain`: a refused ref is a line `!<TAB><from>:<to><TAB>[rejected] (<reason>)`.
        if let Some(line) = out.stdout.lines().find(|line| line.starts_with('!')) {
            let reason = line.split('\t').nth(2).unwrap_or(line).trim().to_string();
            return Err(GitError::PushRejected {
                command: out.command,
                branch: branch.to_string(),
                reason,
            });
        }
        Err(out.into_error())
    }

    /// The commit `refs/heads/<branch>` points to in the repository at `url`
    /// (`git ls-remote`), or `None` when it has no such branch.
    pub async fn remote_branch_at_url(
        &self,
        url: &str,
        branch: &str,
        options: &CommandOptions,
    ) -> Result<Option<String>, GitError> {
        check_name("url", url)?;
        check_name("branch", branch)?;
        let refname = format!("refs/heads/{branch}");
        let out = self
            .git_remote(
                &["ls-remote", "--heads", REMOTE, refname.as_str()].map(OsStr::new),
                url,
                Purpose::Read,
                options,
            )
            .await?
            .ok()?;
        Ok(out.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            let sha = fields.next()?;
            (fields.next() == Some(refname.as_str())).then(|| sha.to_string())
        }))
    }

    /// Deletes `refs/heads/<branch>` in the repository at `url` (`git push <url> --delete`), with
    /// `options` as in [`Repo::push_url`].
    pub async fn delete_branch_at_url(
        &self,
        url: &str,
        branch: &str,
        options: &CommandOptions,
    ) -> Result<(), GitError> {
        check_name("url", url)?;
        check_name("branch", branch)?;
        let refname = format!("refs/heads/{branch}");
        self.git_remote(
            &["push", "--quiet", REMOTE, "--delete", refname.as_str()].map(OsStr::new),
            url,
            Purpose::Push,
            options,
        )
        .await?
        .ok()?;
        Ok(())
    }

    /// Fetches `refs/heads/<branch>` of the repository at `url` into the local ref `into`
    /// (`git fetch <url> +refs/heads/<branch>:<into>`, forced, no tags) and returns its commit.
    pub async fn fetch_url(
        &self,
        url: &str,
        branch: &str,
        into: &str,
        options: &CommandOptions,
    ) -> Result<String, GitError> {
        check_name("url", url)?;
        check_name("branch", branch)?;
        check_name("ref", into)?;
        let refspec = format!("+refs/heads/{branch}:{into}");
        self.git_remote(
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-recurse-submodules",
                "--no-write-fetch-head",
                REMOTE,
                refspec.as_str(),
            ]
            .map(OsStr::new),
            url,
            Purpose::Fetch,
            options,
        )
        .await?
        .ok()?;
        self.rev_parse(into)
            .await?
            .ok_or_else(|| GitError::UnknownRevision {
                path: self.path.clone(),
                rev: into.to_string(),
                hint: format!("the fetch of `{branch}` from {url} did not create it"),
            })
    }

    /// Whether `remote` has a branch named `branch` (`git ls-remote --heads`, asks the remote,
    /// under the network deadline).
    pub async fn remote_has_branch(&self, remote: &str, branch: &str) -> Result<bool, GitError> {
        check_name("remote", remote)?;
        check_name("branch", branch)?;
        let refname = format!("refs/heads/{branch}");
        let out = self
            .git_network_ok(
                &["ls-remote", "--heads", REMOTE, refname.as_str()].map(OsStr::new),
                remote,
                Purpose::Read,
                self.network_timeout,
            )
            .await?;
        Ok(out
            .lines()
            .any(|line| line.split_whitespace().nth(1) == Some(refname.as_str())))
    }

    /// Deletes `branch` on `remote` (`git push <remote> --delete`). Succeeds, returning false,
    /// when the remote has no such branch (already deleted, or never pushed). Each call to the
    /// remote is under the network deadline.
    pub async fn delete_remote_branch(&self, remote: &str, branch: &str) -> Result<bool, GitError> {
        if !self.remote_has_branch(remote, branch).await? {
            return Ok(false);
        }
        let refname = format!("refs/heads/{branch}");
        let pushed = self
            .git_network_ok(
                &["push", "--quiet", REMOTE, "--delete", refname.as_str()].map(OsStr::new),
                remote,
                Purpose::Push,
                self.network_timeout,
            )
            .await;
        match pushed {
            Ok(_) => Ok(true),
            // Someone else deleted it in between: the outcome is the one asked for.
            Err(err) => match self.remote_has_branch(remote, branch).await {
                Ok(false) => Ok(false),
                _ => Err(err),
            },
        }
    }

    /// Whether `ancestor` is reachable from `descendant` (a commit is its own ancestor).
    pub async fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool, GitError> {
        check_name("revision", ancestor)?;
        check_name("revision", descendant)?;
        let out = self
            .git(["merge-base", "--is-ancestor", ancestor, descendant])
            .await?;
        match out.code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(out.into_error()),
        }
    }

    /// How many commits `head` has that `base` does not (`git rev-list --count base..head`).
    pub async fn commits_ahead(&self, base: &str, head: &str) -> Result<u32, GitError> {
        check_name("revision", base)?;
        check_name("revision", head)?;
        let range = format!("{base}..{head}");
        let command = format!("git -C {} rev-list --count {range}", self.path.display());
        let out = self.git_ok(["rev-list", "--count", range.as_str()]).await?;
        out.trim().parse().map_err(|_| GitError::UnexpectedOutput {
            command,
            output: out.clone(),
            expected: "a commit count",
        })
    }

    /// Merges `head` (a local branch name, or any commit) into `<remote>/<target>` and pushes
    /// the result to `refs/heads/<target>` on the remote, without touching any work tree.
    ///
    /// After a fetch: if `head` is already contained in the target nothing is pushed; if the
    /// target is an ancestor of `head` the target is fast-forwarded to `head`; otherwise a merge
    /// commit (`message`, parents target then head) is built with `git merge-tree` and
    /// `git commit-tree` (which uses the repository's configured identity) and pushed. Conflicts
    /// are [`GitError::MergeConflict`]. Returns the target's new commit id. The fetch and the
    /// push are each under the network deadline.
    pub async fn merge_to_remote(
        &self,
        remote: &str,
        head: &str,
        target: &str,
        message: &str,
    ) -> Result<String, GitError> {
        check_name("remote", remote)?;
        check_name("branch", head)?;
        check_name("target branch", target)?;
        self.fetch(remote).await?;
        let target_sha = self
            .rev_parse(&format!("refs/remotes/{remote}/{target}"))
            .await?
            .ok_or_else(|| GitError::UnknownRevision {
                path: self.path.clone(),
                rev: format!("{remote}/{target}"),
                hint: format!("push a `{target}` branch to `{remote}` first"),
            })?;
        let head_sha = self.resolve_commit(head).await?;
        if self.is_ancestor(&head_sha, &target_sha).await? {
            return Ok(target_sha);
        }
        let new_sha = if self.is_ancestor(&target_sha, &head_sha).await? {
            head_sha
        } else {
            let tree = self
                .merge_tree(remote, head, target, &target_sha, &head_sha)
                .await?;
            self.git_writing_ok([
                "commit-tree",
                tree.as_str(),
                "-p",
                target_sha.as_str(),
                "-p",
                head_sha.as_str(),
                "-m",
                message,
            ])
            .await?
            .trim()
            .to_string()
        };
        let refspec = format!("{new_sha}:refs/heads/{target}");
        self.push_refspec(remote, &refspec).await?;
        Ok(new_sha)
    }

    /// `git push --quiet <remote> <refspec>` under the network deadline.
    async fn push_refspec(&self, remote: &str, refspec: &str) -> Result<(), GitError> {
        self.git_network_ok(
            &["push", "--quiet", REMOTE, refspec].map(OsStr::new),
            remote,
            Purpose::Push,
            self.network_timeout,
        )
        .await?;
        Ok(())
    }

    /// The tree of merging `head_sha` into `target_sha`, or the conflicting files.
    async fn merge_tree(
        &self,
        remote: &str,
        head: &str,
        target: &str,
        target_sha: &str,
        head_sha: &str,
    ) -> Result<String, GitError> {
        let out = self
            .git_seeing(
                [
                    "merge-tree",
                    "--write-tree",
                    "--name-only",
                    "--no-messages",
                    target_sha,
                    head_sha,
                ],
                &CommandOptions::default(),
                // It writes the merged tree's objects.
                &self.write_view(),
            )
            .await?;
        match out.code {
            Some(0) => {
                let tree = out.stdout.lines().next().unwrap_or_default().trim();
                if tree.is_empty() {
                    return Err(GitError::UnexpectedOutput {
                        command: out.command,
                        output: out.stdout,
                        expected: "a tree id on the first line",
                    });
                }
                Ok(tree.to_string())
            }
            Some(1) => {
                let mut files: Vec<String> = out
                    .stdout
                    .lines()
                    .skip(1)
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(str::to_string)
                    .collect();
                files.dedup();
                Err(GitError::MergeConflict {
                    remote: remote.to_string(),
                    head: head.to_string(),
                    target: target.to_string(),
                    files,
                })
            }
            _ => Err(out.into_error()),
        }
    }

    /// The commit a local branch points to.
    async fn local_branch(&self, branch: &str) -> Result<String, GitError> {
        self.rev_parse(&format!("refs/heads/{branch}"))
            .await?
            .ok_or_else(|| GitError::UnknownRevision {
                path: self.path.clone(),
                rev: branch.to_string(),
                hint: "there is no local branch of that name; create it or check the name"
                    .to_string(),
            })
    }

    /// A local branch name, else any revision, peeled to a commit id.
    async fn resolve_commit(&self, rev: &str) -> Result<String, GitError> {
        if let Some(sha) = self.rev_parse(&format!("refs/heads/{rev}")).await? {
            return Ok(sha);
        }
        self.rev_parse(&format!("{rev}^{{commit}}"))
            .await?
            .ok_or_else(|| GitError::UnknownRevision {
                path: self.path.clone(),
                rev: rev.to_string(),
                hint: "it is neither a local branch nor a commit; check the name".to_string(),
            })
    }
}

/// Whether `path` is a folder itself, not a link to one.
async fn real_dir(path: &Path) -> bool {
    tokio::fs::symlink_metadata(path)
        .await
        .is_ok_and(|meta| meta.is_dir())
}

/// The main work tree of the repository containing `path`, by git's own discovery: `path` is a
/// sub-folder or a linked worktree (whose `.git` pointer git follows).
async fn discover_main(path: &Path) -> Result<PathBuf, GitError> {
    let not_repo = |reason: String| GitError::NotARepository {
        path: path.to_path_buf(),
        reason,
    };
    let inside = cmd::run(path, ["rev-parse", "--is-inside-work-tree"]).await?;
    if !inside.success {
        let said = inside.stderr.trim();
        return Err(not_repo(if said.is_empty() {
            "git finds no repository there".to_string()
        } else {
            format!("git says: {said}")
        }));
    }
    if inside.stdout.trim() != "true" {
        let bare = cmd::run_ok(path, ["rev-parse", "--is-bare-repository"]).await?;
        return Err(not_repo(if bare.trim() == "true" {
            "it is a bare repository, which has no work tree".to_string()
        } else {
            "it is inside a repository's .git folder".to_string()
        }));
    }
    Ok(match main_worktree(path).await? {
        Some(main) => main,
        None => PathBuf::from(
            cmd::run_ok(path, ["rev-parse", "--show-toplevel"])
                .await?
                .trim_end_matches('\n'),
        ),
    })
}

/// How often `git worktree list` is tried while a linked worktree is being removed under it.
const WORKTREE_LIST_ATTEMPTS: u32 = 5;

/// The main work tree recorded by `git worktree list`, or `None` when the main repository is bare.
async fn main_worktree(path: &Path) -> Result<Option<PathBuf>, GitError> {
    // `worktree list` reads every linked worktree's entry; one being removed at that moment (a
    // finished task's, by another request) fails it with "Invalid path …/worktrees/<name>":
    // that entry is gone a moment later, so the listing is tried again.
    let mut attempt = 1;
    let list = loop {
        match cmd::run_ok(path, ["worktree", "list", "--porcelain", "-z"]).await {
            Err(GitError::Command { stderr, .. })
                if attempt < WORKTREE_LIST_ATTEMPTS && stderr.contains("/worktrees/") =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10 * u64::from(attempt))).await;
            }
            other => break other?,
        }
    };
    // Records are NUL-separated attribute lines, ended by an empty attribute; the first record
    // is the main worktree.
    let mut main = None;
    for field in list.split('\0') {
        if field.is_empty() {
            break;
        }
        if let Some(dir) = field.strip_prefix("worktree ") {
            main = Some(PathBuf::from(dir));
        } else if field == "bare" {
            return Ok(None);
        }
    }
    Ok(main)
}
