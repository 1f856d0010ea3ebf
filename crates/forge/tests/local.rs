//! The local forge against real repositories in temp folders, with a bare repository as `origin`.

// Helpers outside `#[test]` functions panic on setup failures too.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use forge::{Forge, ForgeError, LocalForge, PublishRequest, PullRequest};

fn git_in(dir: &Path, args: &[&str]) -> String {
    testkit::git(dir, args).unwrap().trim().to_string()
}

fn configure(dir: &Path) {
    testkit::set_identity(dir).unwrap();
}

fn commit(dir: &Path, file: &str, content: &str, message: &str) -> String {
    testkit::commit_file(dir, file, content, message).unwrap()
}

const BRANCH: &str = "atelier/1-add-feature";

/// `work` (on `main`, pushed to the bare `remote.git` as `origin`) plus a task branch with one
/// commit, checked out in a linked worktree like Atelier's.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    remote: PathBuf,
    work: PathBuf,
    task: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().canonicalize().expect("canonical tmp");
    let remote = root.join("remote.git");
    let work = root.join("work");
    let task = root.join("work-worktrees/1-add-feature");
    git_in(
        &root,
        &["init", "--quiet", "--bare", "-b", "main", "remote.git"],
    );
    std::fs::create_dir_all(&work).expect("mkdir");
    git_in(&work, &["init", "--quiet", "-b", "main"]);
    configure(&work);
    commit(&work, "README", "hello\n", "initial");
    git_in(
        &work,
        &["remote", "add", "origin", remote.to_str().expect("utf-8")],
    );
    git_in(&work, &["push", "--quiet", "origin", "main"]);
    git_in(&work, &["remote", "set-head", "origin", "--auto"]);
    git_in(
        &work,
        &[
            "worktree",
            "add",
            "--quiet",
            "-b",
            BRANCH,
            task.to_str().expect("utf-8"),
            "origin/main",
        ],
    );
    Fixture {
        _tmp: tmp,
        root,
        remote,
        work,
        task,
    }
}

fn request(fx: &Fixture, existing: Option<PullRequest>) -> PublishRequest {
    PublishRequest {
        repo: fx.work.clone(),
        remote: "origin".to_string(),
        branch: BRANCH.to_string(),
        base: "main".to_string(),
        title: "Add feature".to_string(),
        body: "Adds the feature.".to_string(),
        existing,
    }
}

fn remote_refs(fx: &Fixture) -> String {
    git_in(
        &fx.remote,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    )
}

#[tokio::test]
async fn publish_pushes_the_branch() {
    let fx = fixture();
    let sha = commit(&fx.task, "feature.txt", "f\n", "add feature");
    let pr = LocalForge::new()
        .publish(&request(&fx, None))
        .await
        .expect("publish");
    assert_eq!(
        pr,
        PullRequest {
            url: format!("local:{BRANCH}"),
            number: None,
            branch: BRANCH.to_string(),
            base: "main".to_string(),
            head_sha: sha.clone(),
            remote: "origin".to_string(),
        }
    );
    assert_eq!(
        git_in(&fx.remote, &["rev-parse", &format!("refs/heads/{BRANCH}")]),
        sha
    );
    assert_eq!(LocalForge::new().name(), "local");
}

#[tokio::test]
async fn publish_twice_is_idempotent_and_updates_the_head() {
    let fx = fixture();
    commit(&fx.task, "feature.txt", "f\n", "add feature");
    let first = LocalForge::new()
        .publish(&request(&fx, None))
        .await
        .expect("publish");
    let refs_after_first = remote_refs(&fx);
    let second = LocalForge::new()
        .publish(&request(&fx, None))
        .await
        .expect("publish again");
    assert_eq!(second, first);
    assert_eq!(remote_refs(&fx), refs_after_first);

    let newer = commit(&fx.task, "feature.txt", "f2\n", "refine feature");
    let updated = LocalForge::new()
        .publish(&request(&fx, Some(first.clone())))
        .await
        .expect("publish update");
    assert_eq!(
        updated,
        PullRequest {
            head_sha: newer.clone(),
            ..first
        }
    );
    assert_eq!(
        git_in(&fx.remote, &["rev-parse", &format!("refs/heads/{BRANCH}")]),
        newer
    );
    let branches = git_in(
        &fx.remote,
        &["for-each-ref", "--format=%(refname)", "refs/heads"],
    );
    assert_eq!(
        branches.lines().collect::<Vec<_>>(),
        [format!("refs/heads/{BRANCH}").as_str(), "refs/heads/main"]
    );
}

#[tokio::test]
async fn publish_without_commits_is_nothing_to_submit() {
    let fx = fixture();
    let err = LocalForge::new()
        .publish(&request(&fx, None))
        .await
        .expect_err("nothing");
    assert!(
        matches!(&err, ForgeError::NothingToSubmit { branch, base, remote }
            if branch == BRANCH && base == "main" && remote == "origin"),
        "{err:?}"
    );
    assert!(err.to_string().contains("nothing to submit"), "{err}");
    assert!(!remote_refs(&fx).contains(BRANCH), "nothing was pushed");
}

#[tokio::test]
async fn publish_rejects_bad_inputs() {
    let fx = fixture();
    commit(&fx.task, "feature.txt", "f\n", "add feature");
    let mut foreign = LocalForge::new()
        .publish(&request(&fx, None))
        .await
        .expect("publish");
    foreign.branch = "atelier/2-other".to_string();
    let err = LocalForge::new()
        .publish(&request(&fx, Some(foreign)))
        .await
        .expect_err("mismatch");
    assert!(
        matches!(err, ForgeError::PullRequestMismatch { .. }),
        "{err:?}"
    );

    let mut no_remote = request(&fx, None);
    no_remote.remote = "upstream".to_string();
    let err = LocalForge::new()
        .publish(&no_remote)
        .await
        .expect_err("no remote");
    assert!(matches!(err, ForgeError::NoRemote { .. }), "{err:?}");

    let mut no_base = request(&fx, None);
    no_base.base = "develop".to_string();
    let err = LocalForge::new()
        .publish(&no_base)
        .await
        .expect_err("no base");
    assert!(matches!(err, ForgeError::MissingBase { .. }), "{err:?}");

    let mut no_branch = request(&fx, None);
    no_branch.branch = "atelier/9-missing".to_string();
    let err = LocalForge::new()
        .publish(&no_branch)
        .await
        .expect_err("no branch");
    assert!(matches!(err, ForgeError::MissingBranch { .. }), "{err:?}");
}

#[tokio::test]
async fn merge_makes_is_merged_true() {
    let fx = fixture();
    let sha = commit(&fx.task, "feature.txt", "f\n", "add feature");
    let pr = LocalForge::new()
        .publish(&request(&fx, None))
        .await
        .expect("publish");
    assert!(
        !LocalForge::new()
            .is_merged(&fx.work, &pr)
            .await
            .expect("is_merged")
    );
    LocalForge::new().merge(&fx.work, &pr).await.expect("merge");
    assert!(
        LocalForge::new()
            .is_merged(&fx.work, &pr)
            .await
            .expect("is_merged")
    );
    assert_eq!(git_in(&fx.remote, &["rev-parse", "refs/heads/main"]), sha);
    // Merging again changes nothing.
    LocalForge::new()
        .merge(&fx.work, &pr)
        .await
        .expect("merge again");
    assert_eq!(git_in(&fx.remote, &["rev-parse", "refs/heads/main"]), sha);
}

#[tokio::test]
async fn merge_after_main_moved_creates_a_merge_commit() {
    let fx = fixture();
    commit(&fx.task, "feature.txt", "f\n", "add feature");
    let pr = LocalForge::new()
        .publish(&request(&fx, None))
        .await
        .expect("publish");
    commit(&fx.work, "other.txt", "o\n", "other work");
    git_in(&fx.work, &["push", "--quiet", "origin", "main"]);
    LocalForge::new().merge(&fx.work, &pr).await.expect("merge");
    assert!(
        LocalForge::new()
            .is_merged(&fx.work, &pr)
            .await
            .expect("is_merged")
    );
    assert_eq!(
        git_in(&fx.remote, &["log", "-1", "--format=%s", "refs/heads/main"]),
        format!("Merge {BRANCH} (Atelier)")
    );
}

#[tokio::test]
async fn is_merged_sees_a_merge_done_elsewhere() {
    let fx = fixture();
    commit(&fx.task, "feature.txt", "f\n", "add feature");
    let pr = LocalForge::new()
        .publish(&request(&fx, None))
        .await
        .expect("publish");
    assert!(
        !LocalForge::new()
            .is_merged(&fx.work, &pr)
            .await
            .expect("is_merged")
    );

    git_in(
        &fx.root,
        &[
            "clone",
            "--quiet",
            fx.remote.to_str().expect("utf-8"),
            "other",
        ],
    );
    let other = fx.root.join("other");
    configure(&other);
    git_in(
        &other,
        &[
            "merge",
            "--quiet",
            "--no-ff",
            "-m",
            "merged by a human",
            &format!("origin/{BRANCH}"),
        ],
    );
    git_in(&other, &["push", "--quiet", "origin", "main"]);

    assert!(
        LocalForge::new()
            .is_merged(&fx.work, &pr)
            .await
            .expect("is_merged")
    );
}

#[tokio::test]
async fn delete_branch_removes_the_pushed_branch_and_is_idempotent() {
    let fx = fixture();
    commit(&fx.task, "feature.txt", "f\n", "add feature");
    LocalForge::new()
        .publish(&request(&fx, None))
        .await
        .expect("publish");
    let heads = |fx: &Fixture| {
        git_in(
            &fx.remote,
            &["for-each-ref", "--format=%(refname)", "refs/heads"],
        )
    };
    assert!(heads(&fx).contains(BRANCH));

    let deleted = LocalForge::new()
        .delete_branch(&fx.work, "origin", BRANCH)
        .await
        .expect("delete");
    assert!(deleted);
    assert_eq!(heads(&fx), "refs/heads/main");

    // Already gone, and a remote that does not exist: nothing to do, no error.
    let again = LocalForge::new()
        .delete_branch(&fx.work, "origin", BRANCH)
        .await
        .expect("delete again");
    assert!(!again);
    let no_remote = LocalForge::new()
        .delete_branch(&fx.work, "upstream", BRANCH)
        .await
        .expect("no such remote");
    assert!(!no_remote);
    // The local branch is not the forge's business.
    assert!(!git_in(&fx.work, &["branch", "--list", BRANCH]).is_empty());
}
