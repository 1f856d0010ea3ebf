//! The server's own git, confined (`git::confine_server_git`), against the links an agent can
//! plant in the repository's shared `.git` folder. Each attack is first shown to work on this
//! machine's git run unconfined (the control), then shown to leave the server's file untouched,
//! and its secret out of every error, when the same operation runs through the `git` crate
//! confined. Needs a working bubblewrap (`scripts/test` installs it); every test in this binary
//! runs confined.

// Helpers outside `#[test]` functions panic on setup failures too.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use git::Repo;

const SECRET: &str = "SECRET-api-token-0123456789";

fn confine() {
    let sandbox = sandbox::Sandbox::probe(Path::new("bwrap"))
        .unwrap_or_else(|e| panic!("these tests need a working bubblewrap: {e}"));
    git::confine_server_git(sandbox);
    assert!(git::server_git_confined());
}

/// A project (`app`, pushed to the bare `remote.git`) and, beside it, a stand-in for the
/// server's data directory holding an `api-token`: what no agent may reach, even through the
/// server's own git.
struct Scene {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    app: PathBuf,
    remote: PathBuf,
    token: PathBuf,
}

fn scene() -> Scene {
    confine();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let sample = testkit::sample_repo(&root).unwrap();
    let data = root.join("data");
    std::fs::create_dir(&data).unwrap();
    let token = data.join("api-token");
    std::fs::write(&token, format!("{SECRET}\n")).unwrap();
    Scene {
        _tmp: tmp,
        root,
        app: sample.path,
        remote: sample.remote,
        token,
    }
}

/// The scene's repository opened, with a task's worktree `worktrees/t1` on `atelier/t1` (made
/// confined) and its entry in `.git/worktrees`.
async fn with_worktree(scene: &Scene) -> (Repo, PathBuf, PathBuf) {
    let repo = Repo::open(&scene.app).await.unwrap();
    let worktree = scene.root.join("worktrees/t1");
    repo.add_worktree(&worktree, "atelier/t1", "main")
        .await
        .unwrap();
    let entry = git::worktree_entry(repo.git_dir(), &worktree.canonicalize().unwrap()).unwrap();
    (repo, worktree, entry)
}

/// What tells a file was not written: its inode (a rename over it changes it), size, modified
/// time and bytes.
#[derive(Debug, PartialEq, Eq)]
struct Untouched {
    inode: u64,
    len: u64,
    modified: i64,
    modified_ns: i64,
    bytes: Vec<u8>,
}

fn snapshot(path: &Path) -> Untouched {
    let meta = std::fs::metadata(path).unwrap();
    Untouched {
        inode: meta.ino(),
        len: meta.len(),
        modified: meta.mtime(),
        modified_ns: meta.mtime_nsec(),
        bytes: std::fs::read(path).unwrap(),
    }
}

/// Replaces `link` (a file in the `.git` folder) with a symbolic link to `target`, as an agent
/// with that folder writable can.
fn plant(link: &Path, target: &Path) {
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// A new commit on the remote's `main`, pushed from another clone: the next fetch moves
/// `origin/main` and appends to its reflog.
fn advance_remote_main(scene: &Scene, file: &str) {
    let other = scene.root.join(format!("other-{file}"));
    testkit::git(
        &scene.root,
        &[
            "clone",
            "--quiet",
            scene.remote.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    )
    .unwrap();
    testkit::set_identity(&other).unwrap();
    testkit::commit_file(&other, file, "more\n", "More").unwrap();
    testkit::git(&other, &["push", "--quiet", "origin", "main"]).unwrap();
}

/// A fetch appends to `origin/main`'s reflog. Planted as a link to the api-token, the server's
/// fetch would append a line to it; confined, the token is untouched.
#[tokio::test]
async fn a_fetch_does_not_append_through_a_planted_reflog_link() {
    let scene = scene();
    let reflog = scene.app.join(".git/logs/refs/remotes/origin/main");
    plant(&reflog, &scene.token);
    let before = snapshot(&scene.token);

    advance_remote_main(&scene, "one.txt");
    let repo = Repo::open(&scene.app).await.unwrap();
    if let Err(err) = repo.fetch("origin").await {
        assert!(!err.to_string().contains(SECRET), "{err}");
    }
    assert_eq!(snapshot(&scene.token), before, "the token was written");

    // The control: this git, unconfined, appends through the link.
    advance_remote_main(&scene, "two.txt");
    testkit::git(&scene.app, &["fetch", "--quiet", "origin"]).unwrap();
    let after = std::fs::read_to_string(&scene.token).unwrap();
    assert!(
        after.starts_with(SECRET) && after.lines().count() > 1,
        "unconfined git appends through the link (the attack is real here): {after:?}"
    );
}

/// Deleting a packed branch rewrites `packed-refs`. Planted as a link to a server file that
/// reads as packed refs (one the server's git wrote through the same link earlier), the deletion
/// would replace that file; confined, it is untouched.
#[tokio::test]
async fn a_branch_deletion_does_not_replace_a_file_through_a_planted_packed_refs_link() {
    let scene = scene();
    let git_dir = scene.app.join(".git");
    for branch in ["atelier/t1", "atelier/t2"] {
        testkit::git(&scene.app, &["branch", branch]).unwrap();
    }
    testkit::git(&scene.app, &["pack-refs", "--all"]).unwrap();
    let target = scene.token.with_file_name("server-file");
    std::fs::copy(git_dir.join("packed-refs"), &target).unwrap();
    plant(&git_dir.join("packed-refs"), &target);
    let before = snapshot(&target);

    let repo = Repo::open(&scene.app).await.unwrap();
    repo.delete_branch("atelier/t1").await.unwrap();
    assert_eq!(snapshot(&target), before, "the server file was replaced");

    // The control: unconfined, the deletion rewrites the file the link names.
    testkit::git(&scene.app, &["update-ref", "-d", "refs/heads/atelier/t2"]).unwrap();
    assert_ne!(
        snapshot(&target),
        before,
        "unconfined git writes through the link"
    );
    assert!(
        !std::fs::read_to_string(&target)
            .unwrap()
            .contains("refs/heads/atelier/t2")
    );
}

/// `packed-refs` linked to the api-token makes git read the token as refs, and its error quotes
/// the line: a secret in a message. `objects/info/alternates` linked to a file makes git quote
/// every line of it — here a secret in the project's own checkout (its main work tree), which no
/// agent sees. Confined, neither is there to read.
#[tokio::test]
async fn no_error_quotes_a_secret_read_through_a_planted_link() {
    let scene = scene();
    plant(&scene.app.join(".git/packed-refs"), &scene.token);
    let checkout_secret = scene.app.join(".env");
    std::fs::write(
        &checkout_secret,
        format!("KEY=1\n{SECRET}-in-the-checkout\n"),
    )
    .unwrap();
    plant(
        &scene.app.join(".git/objects/info/alternates"),
        &checkout_secret,
    );

    let repo = Repo::open(&scene.app).await.unwrap();
    let results = [
        repo.rev_parse("refs/heads/nope").await.map(|_| ()),
        repo.branches_with_prefix("atelier/").await.map(|_| ()),
        repo.delete_branch("atelier/nope").await,
        repo.fetch("origin").await,
        repo.file_at("HEAD", "README.md").await.map(|_| ()),
        git::branch_head(&scene.app, "main").await.map(|_| ()),
    ];
    for result in results {
        if let Err(err) = result {
            assert!(!err.to_string().contains(SECRET), "{err}");
        }
    }

    // The controls: unconfined, git quotes the token, and the checkout's secret.
    let out = std::process::Command::new("git")
        .args(["-C", scene.app.to_str().unwrap(), "for-each-ref"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(SECRET),
        "unconfined git quotes what it read through the link: {out:?}"
    );
    std::fs::remove_file(scene.app.join(".git/packed-refs")).unwrap();
    let out = std::process::Command::new("git")
        .args(["-C", scene.app.to_str().unwrap(), "cat-file", "-t", "HEAD"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("{SECRET}-in-the-checkout")),
        "unconfined git quotes every line of the alternates' file: {out:?}"
    );
}

/// A new task's branch gets a reflog; planted ahead as a link to the api-token (task keys are
/// predictable), creating the worktree would append to it; confined, the token is untouched.
#[tokio::test]
async fn a_new_worktree_does_not_append_through_a_planted_branch_reflog() {
    let scene = scene();
    let logs = scene.app.join(".git/logs/refs/heads/atelier");
    plant(&logs.join("t7"), &scene.token);
    plant(&logs.join("t8"), &scene.token);
    let before = snapshot(&scene.token);

    let repo = Repo::open(&scene.app).await.unwrap();
    let worktrees = scene.root.join("worktrees");
    if let Err(err) = repo
        .add_worktree(&worktrees.join("t7"), "atelier/t7", "main")
        .await
    {
        assert!(!err.to_string().contains(SECRET), "{err}");
    }
    assert_eq!(snapshot(&scene.token), before, "the token was written");

    // The control.
    testkit::git(
        &scene.app,
        &[
            "worktree",
            "add",
            "--quiet",
            "-b",
            "atelier/t8",
            worktrees.join("t8").to_str().unwrap(),
            "main",
        ],
    )
    .unwrap();
    assert_ne!(
        snapshot(&scene.token),
        before,
        "unconfined git appends through the link"
    );
}

/// A worktree's entry (`.git/worktrees/<name>`) is its agent's to write; its `index` linked to a
/// server file would be replaced by the server's `reset --hard` there. Confined, it is untouched.
#[tokio::test]
async fn a_reset_in_a_worktree_does_not_replace_a_file_through_its_index_link() {
    let scene = scene();
    let (repo, worktree, entry) = with_worktree(&scene).await;
    let target = scene.token.with_file_name("server-index");
    std::fs::copy(entry.join("index"), &target).unwrap();
    plant(&entry.join("index"), &target);
    let before = snapshot(&target);

    if let Err(err) = repo.populate_worktree(&worktree).await {
        assert!(!err.to_string().contains(SECRET), "{err}");
    }
    assert_eq!(snapshot(&target), before, "the server file was replaced");

    // The control.
    std::fs::write(worktree.join("README.md"), "changed\n").unwrap();
    testkit::git(&worktree, &["reset", "--hard", "--quiet"]).unwrap();
    assert_ne!(
        snapshot(&target),
        before,
        "unconfined git writes through the link"
    );
}

/// Confined, the server's git still does all of a task's work: a worktree, a commit there (as
/// its agent would), pushing to a remote that is a folder on this machine, merging into it,
/// fetching, and removing the worktree and its branch.
#[tokio::test]
async fn a_task_s_whole_git_life_works_confined() {
    let scene = scene();
    let (repo, worktree, _) = with_worktree(&scene).await;
    let task = repo.task_worktree(&worktree).unwrap();
    assert_eq!(task.branch().await.unwrap(), "atelier/t1");
    testkit::commit_file(&worktree, "feature.txt", "new\n", "Add a feature").unwrap();
    assert_eq!(repo.commits_ahead("main", "atelier/t1").await.unwrap(), 1);
    assert!(task.short_status().await.unwrap().is_empty());
    let diff = git::work_tree_diff(&task, "main", 1 << 20).await.unwrap();
    assert_eq!(diff.files.len(), 1, "{diff:?}");

    let pushed = repo.push("origin", "atelier/t1").await.unwrap();
    assert!(
        repo.remote_has_branch("origin", "atelier/t1")
            .await
            .unwrap()
    );
    advance_remote_main(&scene, "other.txt");
    let merged = repo
        .merge_to_remote("origin", "atelier/t1", "main", "Merge t1")
        .await
        .unwrap();
    assert!(repo.is_ancestor(&pushed, &merged).await.unwrap());
    let url = format!("file://{}", scene.remote.display());
    let options = git::CommandOptions::default();
    assert_eq!(
        repo.remote_branch_at_url(&url, "main", &options)
            .await
            .unwrap(),
        Some(merged.clone())
    );

    assert!(
        repo.delete_remote_branch("origin", "atelier/t1")
            .await
            .unwrap()
    );
    repo.remove_worktree(&worktree).await.unwrap();
    assert!(!worktree.exists());
    repo.delete_branch("atelier/t1").await.unwrap();
    assert_eq!(repo.rev_parse("refs/heads/atelier/t1").await.unwrap(), None);
    repo.fetch("origin").await.unwrap();
    assert_eq!(
        repo.rev_parse("refs/remotes/origin/main").await.unwrap(),
        Some(merged)
    );
}

/// A confined git sees no worktree but the one a command is about; removing one task's worktree
/// (which prunes stale records) keeps every other task's record.
#[tokio::test]
async fn removing_one_worktree_confined_keeps_the_others() {
    let scene = scene();
    let repo = Repo::open(&scene.app).await.unwrap();
    let worktrees = scene.root.join("worktrees");
    for key in ["t1", "t2", "t3"] {
        repo.add_worktree(&worktrees.join(key), &format!("atelier/{key}"), "main")
            .await
            .unwrap();
    }
    repo.remove_worktree(&worktrees.join("t2")).await.unwrap();
    // Gone by hand, as after a crash: its record is stale and pruned.
    std::fs::remove_dir_all(worktrees.join("t3")).unwrap();
    repo.remove_worktree(&worktrees.join("t3")).await.unwrap();
    let listed = repo.linked_worktrees().await.unwrap();
    assert_eq!(listed, vec![worktrees.join("t1")]);
    let task = repo.task_worktree(&worktrees.join("t1")).unwrap();
    assert_eq!(task.branch().await.unwrap(), "atelier/t1");
}

/// A push to a remote that is a folder here shows that folder writable; a remote-tracking ref's
/// reflog linked into it (its `config`) would be appended to by the push. The push goes to the
/// folder by its path with the repository's `.git` read-only: nothing is written on this side.
#[tokio::test]
async fn a_push_to_a_local_remote_writes_nothing_through_a_planted_reflog() {
    let scene = scene();
    for branch in ["atelier/t1", "atelier/t2"] {
        testkit::git(&scene.app, &["branch", branch]).unwrap();
    }
    let remote_config = scene.remote.join("config");
    let logs = scene.app.join(".git/logs/refs/remotes/origin/atelier");
    plant(&logs.join("t1"), &remote_config);
    plant(&logs.join("t2"), &remote_config);
    let before = snapshot(&remote_config);

    let repo = Repo::open(&scene.app).await.unwrap();
    let pushed = repo.push("origin", "atelier/t1").await.unwrap();
    assert_eq!(
        snapshot(&remote_config),
        before,
        "the remote's config was written"
    );
    let on_remote = testkit::git(&scene.remote, &["rev-parse", "refs/heads/atelier/t1"]).unwrap();
    assert_eq!(on_remote.trim(), pushed, "the branch was pushed");
    // A fetch writes the tracking ref's reflog; the link leads into the remote, read-only to it
    // (the fetch fails on it, which is all it can do).
    let _ = repo.fetch("origin").await;
    assert!(
        repo.delete_remote_branch("origin", "atelier/t1")
            .await
            .unwrap()
    );
    assert_eq!(
        snapshot(&remote_config),
        before,
        "the remote's config was written"
    );

    // The control: unconfined, the push by the remote's name appends to the remote's config.
    testkit::git(&scene.app, &["push", "--quiet", "origin", "atelier/t2"]).unwrap();
    assert_ne!(
        snapshot(&remote_config),
        before,
        "unconfined git appends through the link"
    );
}

/// The folder of worktrees may be reached through a symbolic link (a data disk): the worktree is
/// recorded at its real path, as unconfined git records it, and found again. A worktree git
/// could not add leaves no folder behind.
#[tokio::test]
async fn worktrees_through_a_linked_folder_and_failed_ones_leave_nothing() {
    let scene = scene();
    let repo = Repo::open(&scene.app).await.unwrap();
    let real = scene.root.join("disk/worktrees");
    std::fs::create_dir_all(&real).unwrap();
    let linked = scene.root.join("worktrees");
    std::os::unix::fs::symlink(&real, &linked).unwrap();
    repo.add_worktree(&linked.join("t1"), "atelier/t1", "main")
        .await
        .unwrap();
    let task = repo.task_worktree(&linked.join("t1")).unwrap();
    assert_eq!(task.path(), real.join("t1"));
    assert!(real.join("t1/README.md").is_file());

    let err = repo
        .add_worktree(&linked.join("t2"), "atelier/t2", "no-such-base")
        .await
        .unwrap_err();
    assert!(!real.join("t2").exists(), "left behind after: {err}");
    repo.remove_worktree(&linked.join("t1")).await.unwrap();
    assert!(!real.join("t1").exists());
    assert!(repo.linked_worktrees().await.unwrap().is_empty());
}

/// What agents cannot write in `.git` (its `config`, a worktree entry's `gitdir`), the server's
/// confined git cannot write either: a link planted to it is not written through (a reflog line
/// appended to `config` would break every later command of the project).
#[tokio::test]
async fn a_planted_link_cannot_lead_the_server_s_git_into_what_agents_cannot_write() {
    let scene = scene();
    let (repo, worktree, entry) = with_worktree(&scene).await;
    let config = scene.app.join(".git/config");
    plant(
        &scene.app.join(".git/logs/refs/remotes/origin/main"),
        &config,
    );
    plant(&entry.join("logs/HEAD"), &entry.join("gitdir"));
    let (config_before, gitdir_before) = (snapshot(&config), snapshot(&entry.join("gitdir")));

    advance_remote_main(&scene, "one.txt");
    let _ = repo.fetch("origin").await;
    let _ = repo.populate_worktree(&worktree).await;
    assert_eq!(snapshot(&config), config_before, "the config was written");
    assert_eq!(
        snapshot(&entry.join("gitdir")),
        gitdir_before,
        "the entry's gitdir was written"
    );
    assert!(
        repo.rev_parse("HEAD").await.unwrap().is_some(),
        "still a repository"
    );

    // The control.
    advance_remote_main(&scene, "two.txt");
    let _ = testkit::git(&scene.app, &["fetch", "--quiet", "origin"]);
    assert_ne!(
        snapshot(&config),
        config_before,
        "unconfined git appends to config"
    );
}

/// A push to a remote with several push URLs, one of them a folder here, cannot go to the
/// folder by its path alone: it is refused, saying why, and nothing is pushed.
#[tokio::test]
async fn a_push_to_several_urls_one_of_them_a_folder_is_refused() {
    let scene = scene();
    let second = scene.root.join("second.git");
    testkit::git(
        &scene.root,
        &["init", "--quiet", "--bare", second.to_str().unwrap()],
    )
    .unwrap();
    for url in [&scene.remote, &second] {
        testkit::git(
            &scene.app,
            &[
                "remote",
                "set-url",
                "--add",
                "--push",
                "origin",
                url.to_str().unwrap(),
            ],
        )
        .unwrap();
    }
    testkit::git(&scene.app, &["branch", "atelier/t1"]).unwrap();
    let repo = Repo::open(&scene.app).await.unwrap();
    let err = repo.push("origin", "atelier/t1").await.unwrap_err();
    assert!(
        matches!(err, git::GitError::UnsupportedRemote { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("several push URLs"), "{err}");
    assert!(
        !repo
            .remote_has_branch("origin", "atelier/t1")
            .await
            .unwrap()
    );
}
