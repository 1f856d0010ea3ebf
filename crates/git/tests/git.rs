//! Integration tests for the git wrapper and the hook runner, on real repositories in temp
//! folders with a local bare repository as `origin` (never the network).

// Helpers outside `#[test]` functions panic on setup failures too.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use git::{CommandOptions, GitError, Repo, run_hook};

fn git_in(dir: &Path, args: &[&str]) -> String {
    testkit::git(dir, args).unwrap().trim().to_string()
}

fn init_repo(dir: &Path, branch: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    git_in(dir, &["init", "--quiet", "-b", branch]);
    configure(dir);
}

fn configure(dir: &Path) {
    testkit::set_identity(dir).unwrap();
}

fn commit(dir: &Path, file: &str, content: &str, message: &str) -> String {
    testkit::commit_file(dir, file, content, message).unwrap()
}

/// A work repository `work` with one commit on `main`, pushed to the bare `remote.git` as
/// `origin`, with `origin/HEAD` set.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    remote: PathBuf,
    work: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().canonicalize().expect("canonical tmp");
    let remote = root.join("remote.git");
    let work = root.join("work");
    git_in(
        &root,
        &["init", "--quiet", "--bare", "-b", "main", "remote.git"],
    );
    init_repo(&work, "main");
    commit(&work, "README", "hello\n", "initial");
    git_in(
        &work,
        &[
            "remote",
            "add",
            "origin",
            remote.to_str().expect("utf-8 path"),
        ],
    );
    git_in(&work, &["push", "--quiet", "origin", "main"]);
    git_in(&work, &["remote", "set-head", "origin", "--auto"]);
    Fixture {
        _tmp: tmp,
        root,
        remote,
        work,
    }
}

/// A second clone of the fixture's remote, as another engineer would have.
fn other_clone(fx: &Fixture) -> PathBuf {
    let other = fx.root.join("other");
    git_in(
        &fx.root,
        &[
            "clone",
            "--quiet",
            fx.remote.to_str().expect("utf-8 path"),
            "other",
        ],
    );
    configure(&other);
    other
}

fn remote_sha(fx: &Fixture, reference: &str) -> String {
    git_in(&fx.remote, &["rev-parse", reference])
}

#[tokio::test]
async fn open_resolves_the_main_work_tree_from_a_subfolder() {
    let fx = fixture();
    let sub = fx.work.join("nested/deeper");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let repo = Repo::open(&sub).await.expect("open");
    assert_eq!(repo.path(), fx.work.as_path());

    let wt = fx.root.join("linked");
    repo.add_worktree(&wt, "feature", "main")
        .await
        .expect("add");
    let via_linked = Repo::open(&wt).await.expect("open linked worktree");
    assert_eq!(via_linked.path(), fx.work.as_path());
}

#[tokio::test]
async fn open_rejects_missing_plain_file_and_bare_paths() {
    let fx = fixture();
    let plain = fx.root.join("plain");
    std::fs::create_dir_all(&plain).expect("mkdir");
    let file = fx.root.join("file.txt");
    std::fs::write(&file, "x").expect("write");
    let cases = [
        (fx.root.join("missing"), "does not exist"),
        (file, "not a folder"),
        (fx.remote.clone(), "bare repository"),
    ];
    for (path, why) in cases {
        let err = Repo::open(&path).await.expect_err("must fail");
        assert!(
            matches!(&err, GitError::NotARepository { path: p, .. } if *p == path),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(why), "{msg}");
        assert!(msg.contains("run `git init` there"), "{msg}");
    }
    // A folder outside any repository (temp folders are not inside one).
    let err = Repo::open(&plain).await.expect_err("plain folder");
    assert!(matches!(err, GitError::NotARepository { .. }), "{err:?}");
}

#[tokio::test]
async fn default_branch_follows_origin_head() {
    let fx = fixture();
    git_in(
        &fx.work,
        &["push", "--quiet", "origin", "main:refs/heads/trunk"],
    );
    git_in(&fx.remote, &["symbolic-ref", "HEAD", "refs/heads/trunk"]);
    git_in(&fx.work, &["remote", "set-head", "origin", "--auto"]);
    let repo = Repo::open(&fx.work).await.expect("open");
    assert_eq!(
        repo.default_branch("origin").await.expect("default"),
        "trunk"
    );
}

#[tokio::test]
async fn default_branch_falls_back_to_main_then_master() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let main_repo = tmp.path().join("with-main");
    init_repo(&main_repo, "main");
    commit(&main_repo, "a", "a", "a");
    let repo = Repo::open(&main_repo).await.expect("open");
    assert!(!repo.has_remote("origin").await.expect("remotes"));
    assert_eq!(
        repo.default_branch("origin").await.expect("default"),
        "main"
    );

    let master_repo = tmp.path().join("with-master");
    init_repo(&master_repo, "master");
    commit(&master_repo, "a", "a", "a");
    let repo = Repo::open(&master_repo).await.expect("open");
    assert_eq!(
        repo.default_branch("origin").await.expect("default"),
        "master"
    );

    let neither = tmp.path().join("with-trunk");
    init_repo(&neither, "trunk");
    commit(&neither, "a", "a", "a");
    let repo = Repo::open(&neither).await.expect("open");
    let err = repo.default_branch("origin").await.expect_err("no default");
    assert!(matches!(err, GitError::NoDefaultBranch { .. }), "{err:?}");
    assert!(
        err.to_string().contains("git remote set-head origin"),
        "{err}"
    );
}

#[tokio::test]
async fn rev_parse_and_remote_queries() {
    let fx = fixture();
    let repo = Repo::open(&fx.work).await.expect("open");
    let head = git_in(&fx.work, &["rev-parse", "HEAD"]);
    assert_eq!(
        repo.rev_parse("main").await.expect("rev"),
        Some(head.clone())
    );
    assert_eq!(
        repo.rev_parse("origin/main").await.expect("rev"),
        Some(head)
    );
    assert_eq!(repo.rev_parse("no-such-branch").await.expect("rev"), None);
    assert!(repo.has_remote("origin").await.expect("remotes"));
    assert!(!repo.has_remote("upstream").await.expect("remotes"));
    repo.fetch("origin").await.expect("fetch");
    let err = repo.fetch("upstream").await.expect_err("unknown remote");
    assert!(matches!(err, GitError::Command { .. }), "{err:?}");
    let err = repo.rev_parse("--all").await.expect_err("option-like");
    assert!(matches!(err, GitError::InvalidName { .. }), "{err:?}");
}

#[tokio::test]
async fn worktree_add_and_remove_are_clean_and_idempotent() {
    let fx = fixture();
    let repo = Repo::open(&fx.work).await.expect("open");
    let dir = fx.root.join("work-worktrees/1-task");
    repo.add_worktree(&dir, "atelier/1-task", "origin/main")
        .await
        .expect("add");
    assert_eq!(
        std::fs::read_to_string(dir.join("README")).expect("read"),
        "hello\n"
    );
    assert_eq!(
        git_in(&dir, &["symbolic-ref", "HEAD"]),
        "refs/heads/atelier/1-task"
    );
    // The new branch has no upstream: pushes are always explicit.
    let upstream = Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["config", "--get", "branch.atelier/1-task.merge"])
        .output()
        .expect("run git");
    assert_eq!(upstream.status.code(), Some(1), "{upstream:?}");

    let err = repo
        .add_worktree(&fx.root.join("elsewhere"), "atelier/1-task", "main")
        .await
        .expect_err("branch exists");
    assert!(matches!(err, GitError::Command { .. }), "{err:?}");

    // A branch checked out in a worktree is not deleted; deleting one never rewrites the
    // repository's config (agents' sandboxes show that file).
    let err = repo
        .delete_branch("atelier/1-task")
        .await
        .expect_err("checked out");
    assert!(matches!(err, GitError::BranchCheckedOut { .. }), "{err:?}");
    let config = std::fs::metadata(fx.work.join(".git/config")).expect("config");
    std::fs::write(dir.join("untracked.txt"), "x").expect("write");
    // Locked (as an agent can do to its own entry): removed all the same.
    std::fs::write(fx.work.join(".git/worktrees/1-task/locked"), "mine").expect("lock");
    repo.remove_worktree(&dir).await.expect("remove");
    assert!(!dir.exists());
    repo.remove_worktree(&dir).await.expect("remove again");
    repo.delete_branch("atelier/1-task").await.expect("delete");
    let after = std::fs::metadata(fx.work.join(".git/config")).expect("config");
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&after),
        std::os::unix::fs::MetadataExt::ino(&config),
        "the config file was replaced"
    );
    assert_eq!(
        repo.rev_parse("refs/heads/atelier/1-task")
            .await
            .expect("rev"),
        None
    );
    repo.delete_branch("atelier/1-task")
        .await
        .expect("delete again");
    assert!(!git_in(&fx.work, &["worktree", "list"]).contains("1-task"));
}

#[tokio::test]
async fn a_task_worktree_is_found_from_the_repositorys_records_only() {
    let fx = fixture();
    let repo = Repo::open(&fx.work).await.expect("open");
    let dir = fx.root.join("work-worktrees/7-task");
    repo.add_worktree(&dir, "atelier/7-task", "origin/main")
        .await
        .expect("add");
    // A linked worktree keeps its index (and its lock) in the main repository's git folder.
    let worktree = repo.task_worktree(&dir).expect("task worktree");
    let entry = fx.work.join(".git/worktrees/7-task");
    assert_eq!(worktree.git_dir(), entry.as_path());
    assert_eq!(worktree.index_lock(), entry.join("index.lock"));
    // Its configuration file exists from the start (a sandbox shows it read-only).
    assert_eq!(std::fs::read(entry.join("config.worktree")).unwrap(), b"");
    assert_eq!(worktree.branch().await.expect("branch"), "atelier/7-task");
    // Neither the main work tree nor a folder git has no entry for is a task worktree.
    for other in [fx.work.clone(), fx.root.clone()] {
        let err = repo.task_worktree(&other).expect_err("not a task worktree");
        assert!(matches!(err, GitError::NotATaskWorktree { .. }), "{err:?}");
    }
    // An entry whose `commondir` leads elsewhere is refused, not followed.
    let commondir = entry.join("commondir");
    let kept = std::fs::read_to_string(&commondir).unwrap();
    std::fs::write(&commondir, format!("{}\n", fx.remote.display())).unwrap();
    let err = repo.task_worktree(&dir).expect_err("commondir elsewhere");
    assert!(err.to_string().contains("commondir"), "{err}");
    std::fs::write(&commondir, kept).unwrap();
    // An entry whose `gitdir` names another folder does not lead back to this one.
    std::fs::write(entry.join("gitdir"), "/elsewhere/.git\n").unwrap();
    let err = repo.task_worktree(&dir).expect_err("gitdir elsewhere");
    assert!(matches!(err, GitError::NotATaskWorktree { .. }), "{err:?}");
}

/// What an agent can write in its worktree and its entry cannot make the server's git run a
/// command: a `.git` pointer to a git folder whose config names an fsmonitor, a submodule whose
/// filter `git status` would run, a `commondir` leading to a hostile configuration.
#[tokio::test]
async fn git_on_a_task_worktree_runs_nothing_an_agent_planted() {
    let fx = fixture();
    let repo = Repo::open(&fx.work).await.expect("open");
    let dir = fx.root.join("work-worktrees/8-task");
    repo.add_worktree(&dir, "atelier/8-task", "origin/main")
        .await
        .expect("add");
    commit(&dir, "new.txt", "new\n", "an agent's commit");
    std::fs::write(dir.join("untracked.txt"), "untracked\n").unwrap();
    let markers: Vec<PathBuf> = ["pointer", "submodule", "commondir"]
        .iter()
        .map(|name| fx.root.join(format!("ran-{name}")))
        .collect();
    testkit::hostile::plant_submodule(&dir, &markers[1]).unwrap();
    testkit::hostile::plant_pointer(&dir, &markers[0]).unwrap();

    let worktree = repo.task_worktree(&dir).expect("task worktree");
    assert_eq!(worktree.branch().await.expect("branch"), "atelier/8-task");
    let status = worktree.short_status().await.expect("status");
    assert!(status.contains("?? untracked.txt"), "{status}");
    let log = worktree.recent_commits(5).await.expect("log");
    assert!(log.contains("an agent's commit"), "{log}");
    let diff = git::work_tree_diff(&worktree, "origin/main", 1 << 20)
        .await
        .expect("diff");
    let paths: Vec<&str> = diff.files.iter().map(|f| f.path.as_str()).collect();
    assert!(
        paths.contains(&"new.txt") && paths.contains(&"untracked.txt"),
        "{paths:?}"
    );
    for marker in &markers {
        assert!(!marker.exists(), "{} was run", marker.display());
    }

    // The entry's `commondir` rewritten: the worktree is refused before git runs at all.
    let entry = worktree.git_dir().to_path_buf();
    std::fs::write(dir.join(".git"), format!("gitdir: {}\n", entry.display())).unwrap();
    testkit::hostile::plant_commondir(&dir, &markers[2]).unwrap();
    let err = repo.task_worktree(&dir).expect_err("commondir planted");
    assert!(matches!(err, GitError::NotATaskWorktree { .. }), "{err:?}");
    let status = worktree.short_status().await.expect("status");
    assert!(status.contains("untracked.txt"), "{status}");
    assert!(
        !markers[2].exists(),
        "the planted commondir's fsmonitor ran"
    );
}

/// An untracked named pipe in a worktree is never read (git would block on it), so the diff a
/// member opens answers at once (git does not list it; were one swapped in after the listing,
/// it would be listed unread).
#[tokio::test]
async fn the_diff_lists_an_untracked_named_pipe_without_reading_it() {
    let fx = fixture();
    let repo = Repo::open(&fx.work).await.expect("open");
    let dir = fx.root.join("work-worktrees/9-pipe");
    repo.add_worktree(&dir, "atelier/9-pipe", "origin/main")
        .await
        .expect("add");
    std::fs::write(dir.join("plain.txt"), "plain\n").unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(dir.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    let worktree = repo.task_worktree(&dir).expect("task worktree");
    let diff = tokio::time::timeout(
        Duration::from_secs(60),
        git::work_tree_diff(&worktree, "origin/main", 1 << 20),
    )
    .await
    .expect("the diff answered without blocking on the pipe")
    .expect("diff");
    let paths: Vec<&str> = diff.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["plain.txt"]);
    assert!(diff.patch.contains("+plain"), "{}", diff.patch);
}

/// `FETCH_HEAD` sits in the `.git` folder agents can write: a symlink planted there (to a
/// server file) is never written through by the server's fetches.
#[tokio::test]
async fn a_fetch_never_writes_through_a_planted_fetch_head() {
    let fx = fixture();
    let secret = fx.root.join("api-token");
    std::fs::write(&secret, "the server's token\n").unwrap();
    let fetch_head = fx.work.join(".git/FETCH_HEAD");
    let _ = std::fs::remove_file(&fetch_head);
    std::os::unix::fs::symlink(&secret, &fetch_head).unwrap();
    let repo = Repo::open(&fx.work).await.expect("open");
    repo.fetch("origin").await.expect("fetch");
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "the server's token\n",
        "the fetch wrote through the planted FETCH_HEAD"
    );
}

/// A `commondir` file written into the repository's own `.git` (which agents can write, for
/// `packed-refs`) would lead git to a configuration with hooks of the agent's choosing: the
/// server's git never follows it, and opening the repository refuses it.
#[tokio::test]
async fn a_commondir_planted_in_the_repositorys_git_folder_is_never_followed() {
    let fx = fixture();
    let repo = Repo::open(&fx.work).await.expect("open");
    let marker = fx.root.join("ran-main-commondir");
    testkit::hostile::plant_main_commondir(&fx.work, &fx.root.join("evil.git"), &marker).unwrap();
    // Ref updates: a new worktree's branch, a fetch, a branch deletion.
    let dir = fx.root.join("work-worktrees/9-task");
    repo.add_worktree(&dir, "atelier/9-task", "main")
        .await
        .expect("add");
    repo.fetch("origin").await.expect("fetch");
    repo.remove_worktree(&dir).await.expect("remove");
    repo.delete_branch("atelier/9-task").await.expect("delete");
    assert!(!marker.exists(), "the planted configuration's hook ran");
    let err = Repo::open(&fx.work).await.expect_err("commondir planted");
    assert!(err.to_string().contains("commondir"), "{err}");
}

#[tokio::test]
async fn linked_worktrees_and_branches_with_a_prefix_are_listed() {
    let fx = fixture();
    let repo = Repo::open(&fx.work).await.expect("open");
    assert_eq!(
        repo.linked_worktrees().await.expect("list"),
        Vec::<PathBuf>::new()
    );
    assert_eq!(
        repo.branches_with_prefix("atelier/").await.expect("list"),
        Vec::<String>::new()
    );
    let one = fx.root.join("work-worktrees/1-one");
    let two = fx.root.join("work-worktrees/2-two");
    repo.add_worktree(&two, "atelier/2-two", "main")
        .await
        .expect("add");
    repo.add_worktree(&one, "atelier/1-one", "main")
        .await
        .expect("add");
    git_in(&fx.work, &["branch", "other", "main"]);
    let mut listed = repo.linked_worktrees().await.expect("list");
    listed.sort();
    assert_eq!(listed, vec![one, two]);
    assert_eq!(
        repo.branches_with_prefix("atelier/").await.expect("list"),
        vec!["atelier/1-one".to_string(), "atelier/2-two".to_string()]
    );
}

#[tokio::test]
async fn push_publishes_the_branch_head() {
    let fx = fixture();
    let repo = Repo::open(&fx.work).await.expect("open");
    git_in(&fx.work, &["switch", "--quiet", "-c", "feature"]);
    let sha = commit(&fx.work, "feature.txt", "f", "feature");
    assert_eq!(repo.push("origin", "feature").await.expect("push"), sha);
    assert_eq!(remote_sha(&fx, "refs/heads/feature"), sha);
    let err = repo.push("origin", "missing").await.expect_err("no branch");
    assert!(matches!(err, GitError::UnknownRevision { .. }), "{err:?}");
}

/// Options that make `fake://remote` mean the fixture's bare remote, through `GIT_CONFIG_*`
/// variables given to that one process: a push or fetch to that URL only works when they reach
/// git.
fn insteadof_options(fx: &Fixture) -> CommandOptions {
    CommandOptions {
        env: vec![
            ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
            (
                "GIT_CONFIG_KEY_0".to_string(),
                format!("url.{}.insteadOf", fx.remote.display()),
            ),
            (
                "GIT_CONFIG_VALUE_0".to_string(),
                "fake://remote".to_string(),
            ),
        ],
        timeout: Some(Duration::from_secs(30)),
    }
}

#[tokio::test]
async fn push_url_leases_the_branch_with_env_given_to_that_process_only() {
    let fx = fixture();
    let repo = Repo::open(&fx.work).await.expect("open");
    let options = insteadof_options(&fx);
    git_in(&fx.work, &["switch", "--quiet", "-c", "feature"]);
    let first = commit(&fx.work, "feature.txt", "1", "one");

    // Without the variables the URL means nothing.
    let plain = CommandOptions::default();
    assert!(
        repo.push_url("fake://remote", "feature", "", &plain)
            .await
            .is_err()
    );
    assert_eq!(
        repo.push_url("fake://remote", "feature", "", &options)
            .await
            .expect("push"),
        first
    );
    assert_eq!(remote_sha(&fx, "refs/heads/feature"), first);
    assert_eq!(
        repo.remote_branch_at_url("fake://remote", "feature", &options)
            .await
            .expect("ls-remote"),
        Some(first.clone())
    );
    assert_eq!(
        repo.remote_branch_at_url("fake://remote", "nope", &options)
            .await
            .expect("ls-remote"),
        None
    );
    // Nothing was written to the repository's config.
    let config = std::fs::read_to_string(fx.work.join(".git/config")).expect("config");
    assert!(!config.contains("fake://remote"), "{config}");

    // The empty lease means "must not exist": refused now that it does.
    let second = commit(&fx.work, "feature.txt", "2", "two");
    let err = repo
        .push_url("fake://remote", "feature", "", &options)
        .await
        .expect_err("lease");
    assert!(matches!(err, GitError::PushRejected { .. }), "{err:?}");
    assert_eq!(remote_sha(&fx, "refs/heads/feature"), first);
    // The right lease moves it.
    assert_eq!(
        repo.push_url("fake://remote", "feature", &first, &options)
            .await
            .expect("push"),
        second
    );
    assert_eq!(remote_sha(&fx, "refs/heads/feature"), second);
    // A stale lease is refused.
    let third = commit(&fx.work, "feature.txt", "3", "three");
    let err = repo
        .push_url("fake://remote", "feature", &first, &options)
        .await
        .expect_err("stale lease");
    assert!(matches!(err, GitError::PushRejected { .. }), "{err:?}");
    assert_ne!(remote_sha(&fx, "refs/heads/feature"), third);

    let fetched = repo
        .fetch_url(
            "fake://remote",
            "main",
            "refs/remotes/mirror/main",
            &options,
        )
        .await
        .expect("fetch");
    assert_eq!(fetched, remote_sha(&fx, "refs/heads/main"));
}

#[tokio::test]
async fn a_network_command_past_its_deadline_is_killed() {
    let fx = fixture();
    let repo = Repo::open(&fx.work).await.expect("open");
    // A server that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let options = CommandOptions {
        env: vec![("GIT_CONFIG_VALUE_0".to_string(), "secret-value".to_string())],
        timeout: Some(Duration::from_millis(500)),
    };
    let started = Instant::now();
    let err = repo
        .remote_branch_at_url(&format!("http://{addr}/o/r.git"), "main", &options)
        .await
        .expect_err("hangs");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err, GitError::TimedOut { .. }), "{err:?}");
    let text = format!("{err} {options:?}");
    assert!(!text.contains("secret-value"), "{text}");
    held.abort();
}

#[tokio::test]
async fn ancestry_and_ahead_counts() {
    let fx = fixture();
    let repo = Repo::open(&fx.work).await.expect("open");
    let base = git_in(&fx.work, &["rev-parse", "HEAD"]);
    git_in(&fx.work, &["switch", "--quiet", "-c", "feature"]);
    commit(&fx.work, "one", "1", "one");
    let tip = commit(&fx.work, "two", "2", "two");
    assert!(repo.is_ancestor(&base, &tip).await.expect("ancestor"));
    assert!(!repo.is_ancestor(&tip, &base).await.expect("ancestor"));
    assert!(repo.is_ancestor(&tip, &tip).await.expect("ancestor"));
    assert_eq!(
        repo.commits_ahead("origin/main", "feature")
            .await
            .expect("ahead"),
        2
    );
    assert_eq!(
        repo.commits_ahead("feature", "origin/main")
            .await
            .expect("ahead"),
        0
    );
    let err = repo
        .is_ancestor("0000000000000000000000000000000000000001", &tip)
        .await
        .expect_err("unknown object");
    assert!(matches!(err, GitError::Command { .. }), "{err:?}");
}

#[tokio::test]
async fn merge_to_remote_fast_forwards() {
    let fx = fixture();
    let repo = Repo::open(&fx.work).await.expect("open");
    git_in(&fx.work, &["switch", "--quiet", "-c", "feature"]);
    let tip = commit(&fx.work, "feature.txt", "f", "feature");
    let merged = repo
        .merge_to_remote("origin", "feature", "main", "Merge feature")
        .await
        .expect("merge");
    assert_eq!(merged, tip);
    assert_eq!(remote_sha(&fx, "refs/heads/main"), tip);
    // Merging again is a no-op.
    let again = repo
        .merge_to_remote("origin", "feature", "main", "Merge feature")
        .await
        .expect("merge again");
    assert_eq!(again, tip);
    assert_eq!(remote_sha(&fx, "refs/heads/main"), tip);
}

#[tokio::test]
async fn merge_to_remote_builds_a_merge_commit_without_touching_the_work_tree() {
    let fx = fixture();
    let other = other_clone(&fx);
    let theirs = commit(&other, "other.txt", "o", "other change");
    git_in(&other, &["push", "--quiet", "origin", "main"]);

    let repo = Repo::open(&fx.work).await.expect("open");
    git_in(&fx.work, &["switch", "--quiet", "-c", "feature"]);
    let ours = commit(&fx.work, "feature.txt", "f", "feature");
    std::fs::write(fx.work.join("README"), "local edit, uncommitted\n").expect("write");

    let merged = repo
        .merge_to_remote("origin", "feature", "main", "Merge feature (test)")
        .await
        .expect("merge");
    assert_eq!(remote_sha(&fx, "refs/heads/main"), merged);
    assert_eq!(
        git_in(&fx.remote, &["rev-list", "--parents", "-n", "1", &merged]),
        format!("{merged} {theirs} {ours}")
    );
    assert_eq!(
        git_in(&fx.remote, &["log", "-1", "--format=%s", &merged]),
        "Merge feature (test)"
    );
    let files = git_in(&fx.remote, &["ls-tree", "--name-only", &merged]);
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        ["README", "feature.txt", "other.txt"]
    );
    // The work tree and its branch are untouched.
    assert_eq!(git_in(&fx.work, &["rev-parse", "HEAD"]), ours);
    assert_eq!(
        std::fs::read_to_string(fx.work.join("README")).expect("read"),
        "local edit, uncommitted\n"
    );
    assert_eq!(
        repo.rev_parse("origin/main").await.expect("rev"),
        Some(merged)
    );
}

#[tokio::test]
async fn merge_to_remote_reports_conflicts_and_pushes_nothing() {
    let fx = fixture();
    let other = other_clone(&fx);
    let theirs = commit(&other, "README", "theirs\n", "their readme");
    git_in(&other, &["push", "--quiet", "origin", "main"]);

    let repo = Repo::open(&fx.work).await.expect("open");
    git_in(&fx.work, &["switch", "--quiet", "-c", "feature"]);
    commit(&fx.work, "README", "ours\n", "our readme");
    let err = repo
        .merge_to_remote("origin", "feature", "main", "Merge feature")
        .await
        .expect_err("conflict");
    match &err {
        GitError::MergeConflict {
            files,
            head,
            target,
            ..
        } => {
            assert_eq!(files, &["README".to_string()]);
            assert_eq!(head, "feature");
            assert_eq!(target, "main");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("rebase `feature` onto `origin/main`"),
        "{err}"
    );
    assert_eq!(remote_sha(&fx, "refs/heads/main"), theirs);
}

fn path_env() -> Vec<(String, String)> {
    vec![(
        "PATH".to_string(),
        std::env::var("PATH").unwrap_or_default(),
    )]
}

#[tokio::test]
async fn run_hook_captures_output_with_exactly_the_given_env() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut env = path_env();
    env.push(("ATELIER_PORT".to_string(), "4100".to_string()));
    let out = run_hook(
        "echo \"port=$ATELIER_PORT home=[$HOME]\"; echo oops >&2; pwd",
        tmp.path(),
        &env,
        Duration::from_secs(30),
    )
    .await
    .expect("hook");
    let cwd = tmp.path().canonicalize().expect("canonical");
    assert_eq!(
        out,
        git::HookOutput {
            success: true,
            timed_out: false,
            exit_code: Some(0),
            output: format!("port=4100 home=[]\noops\n{}\n", cwd.display()),
        }
    );
}

#[tokio::test]
async fn run_hook_reports_failure() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = run_hook(
        "echo failing; exit 3",
        tmp.path(),
        &path_env(),
        Duration::from_secs(30),
    )
    .await
    .expect("hook");
    assert_eq!(
        out,
        git::HookOutput {
            success: false,
            timed_out: false,
            exit_code: Some(3),
            output: "failing\n".to_string(),
        }
    );
}

#[tokio::test]
async fn run_hook_times_out_fast_and_kills_the_group() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let out = run_hook(
        "sleep 30",
        tmp.path(),
        &path_env(),
        Duration::from_millis(300),
    )
    .await
    .expect("hook");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(out.timed_out && !out.success, "{out:?}");
    assert!(out.output.contains("was killed"), "{out:?}");

    // Background children hold the output pipe open. Had only the shell been killed, they
    // would outlive it and be reported (and killed) as left behind after the drain grace.
    let started = Instant::now();
    let out = run_hook(
        "echo started; (sleep 30; echo late) & sleep 30 & wait",
        tmp.path(),
        &path_env(),
        Duration::from_millis(300),
    )
    .await
    .expect("hook");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(out.timed_out, "{out:?}");
    assert!(out.output.starts_with("started\n"), "{out:?}");
    assert!(!out.output.contains("kept running"), "{out:?}");
    assert!(!out.output.contains("late"), "{out:?}");
}

#[tokio::test]
async fn run_hook_kills_processes_left_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let out = run_hook(
        "sleep 30 & echo done",
        tmp.path(),
        &path_env(),
        Duration::from_secs(60),
    )
    .await
    .expect("hook");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(out.success && !out.timed_out, "{out:?}");
    assert!(out.output.starts_with("done\n"), "{out:?}");
    assert!(out.output.contains("kept running"), "{out:?}");
}

#[tokio::test]
async fn run_hook_in_a_missing_folder_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("missing");
    let err = run_hook("true", &missing, &path_env(), Duration::from_secs(5))
        .await
        .expect_err("missing cwd");
    assert!(matches!(err, GitError::HookSpawn { .. }), "{err:?}");
    assert!(
        err.to_string().contains("check that the folder exists"),
        "{err}"
    );
}

/// Whether a process whose command line mentions `needle` is still alive (zombies excluded).
fn process_mentioning(needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let dir = entry.path();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let state = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        let zombie = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        !zombie && String::from_utf8_lossy(&cmdline).contains(needle)
    })
}

#[tokio::test]
async fn network_commands_to_a_remote_that_never_answers_time_out_and_are_killed() {
    let fx = fixture();
    let hung = testkit::HungRemote::start().expect("hung remote");
    git_in(&fx.work, &["remote", "add", "hung", hung.url()]);
    let limit = Duration::from_millis(1500);
    let repo = Repo::open(&fx.work)
        .await
        .expect("open")
        .with_network_timeout(limit);
    assert_eq!(repo.network_timeout(), limit);

    let started = Instant::now();
    let err = repo.fetch("hung").await.expect_err("a hung fetch fails");
    let took = started.elapsed();
    assert!(took >= limit, "failed before the deadline: {took:?} {err}");
    assert!(took < limit + Duration::from_secs(15), "took {took:?}");
    assert!(matches!(err, GitError::TimedOut { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message
            .contains("fetch --quiet --prune --no-recurse-submodules --no-write-fetch-head hung")
            && message.contains("timed out after 1.5 s")
            && message.contains("the remote may be unreachable"),
        "{message}"
    );
    assert!(hung.accepted() >= 1, "git never reached the remote");

    let started = Instant::now();
    let err = repo
        .push("hung", "main")
        .await
        .expect_err("a hung push fails");
    assert!(started.elapsed() < limit + Duration::from_secs(15));
    assert!(
        matches!(&err, GitError::TimedOut { command, .. } if command.contains("push --quiet hung")),
        "{err:?}"
    );
    let err = repo
        .delete_remote_branch("hung", "main")
        .await
        .expect_err("a hung ls-remote fails");
    assert!(
        matches!(&err, GitError::TimedOut { command, .. } if command.contains("ls-remote")),
        "{err:?}"
    );

    // Git and the transport helper it started (its command line names the URL) are gone.
    let url = hung.url().to_string();
    testkit::wait_until(
        "the hung git processes to end",
        Duration::from_secs(10),
        || {
            let url = url.clone();
            async move { (!process_mentioning(&url)).then_some(()) }
        },
    )
    .await
    .expect("no git process left behind");

    // The reachable remote still works under the short deadline.
    repo.fetch("origin").await.expect("fetch origin");
    assert!(repo.rev_parse("main").await.expect("rev").is_some());
}

#[tokio::test]
async fn the_default_network_timeout_is_a_minute() {
    let fx = fixture();
    let repo = Repo::open(&fx.work).await.expect("open");
    assert_eq!(repo.network_timeout(), Duration::from_secs(60));
    assert_eq!(Repo::DEFAULT_NETWORK_TIMEOUT, Duration::from_secs(60));
}

/// A branch's head, read from the repository's ref files (loose, then packed), is what `git
/// rev-parse` says; a missing branch is `None`; a ref that is a symbolic link, sits in a linked
/// folder or is a named pipe (what an agent could plant to make the server read elsewhere, or
/// hang) is no head at all; a worktree (whose `.git` is a pointer file) is not a repository.
#[tokio::test]
async fn branch_head_reads_loose_and_packed_refs_like_git() {
    let fx = fixture();
    let repo = Repo::open(&fx.work).await.expect("open");
    let dir = fx.root.join("work-worktrees/2-task");
    repo.add_worktree(&dir, "atelier/2-task", "origin/main")
        .await
        .expect("add");
    let first = commit(&dir, "a.txt", "a\n", "first on the task branch");
    let loose = git::branch_head(&fx.work, "atelier/2-task").await.unwrap();
    assert_eq!(loose.as_deref(), Some(first.as_str()));
    // A worktree's `.git` pointer (the agent's to rewrite) is not followed.
    assert!(git::branch_head(&dir, "atelier/2-task").await.is_err());
    assert_eq!(
        git::branch_head(&fx.work, "no-such-branch").await.unwrap(),
        None
    );
    git_in(&fx.work, &["pack-refs", "--all"]);
    let common = fx.work.join(".git");
    assert!(!common.join("refs/heads/atelier/2-task").exists(), "packed");
    assert_eq!(
        git::branch_head(&fx.work, "atelier/2-task").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        git::branch_head(&fx.work, "no-such-branch").await.unwrap(),
        None
    );
    // A loose ref newer than the packed one wins, as in git.
    let second = commit(&dir, "b.txt", "b\n", "second");
    assert_eq!(
        git::branch_head(&fx.work, "atelier/2-task").await.unwrap(),
        Some(second.clone())
    );
    // A symbolic link in place of a ref file: not followed.
    let elsewhere = fx.root.join("elsewhere");
    std::fs::write(&elsewhere, format!("{first}\n")).unwrap();
    let main_ref = common.join("refs/heads/main");
    let main_head = git_in(&fx.work, &["rev-parse", "refs/heads/main"]);
    std::fs::remove_file(&main_ref).ok();
    std::os::unix::fs::symlink(&elsewhere, &main_ref).unwrap();
    assert_eq!(git::branch_head(&fx.work, "main").await.unwrap(), None);
    // A named pipe in place of a ref file: not opened (it would block), git answers.
    let fifo = common.join("refs/heads/piped");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let answered =
        tokio::time::timeout(Duration::from_secs(10), git::branch_head(&fx.work, "piped"))
            .await
            .expect("no hang on a pipe");
    assert_eq!(answered.unwrap(), None);
    assert_ne!(main_head, "");
    assert!(matches!(
        git::branch_head(&fx.work, "-x").await,
        Err(GitError::InvalidName { .. })
    ));
}
