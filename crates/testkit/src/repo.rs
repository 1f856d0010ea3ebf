//! A sample project as a user would have it: a git repository on `main` with two committed files
//! and a bare `origin` it has been pushed to, so pushes, pull requests and merges can be checked
//! on the remote without any network.

use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A sample repository (`path`) and its bare remote (`remote`, configured as `origin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRepo {
    /// The work tree: `<dir>/app`, on branch `main`.
    pub path: PathBuf,
    /// The bare remote: `<dir>/remote.git`.
    pub remote: PathBuf,
}

/// Creates `<dir>/app` (branch `main`, a local identity, `README.md` and `src/lib.txt` committed
/// as "Initial commit") and a bare `<dir>/remote.git`, adds it as `origin`, pushes `main` and sets
/// `origin/HEAD`, so default-branch detection works as on a real clone.
pub fn sample_repo(dir: &Path) -> anyhow::Result<SampleRepo> {
    let path = dir.join("app");
    let remote = dir.join("remote.git");
    std::fs::create_dir_all(path.join("src"))
        .with_context(|| format!("creating {}", path.display()))?;

    git(
        dir,
        &[
            "init",
            "--quiet",
            "--bare",
            "-b",
            "main",
            path_str(&remote)?,
        ],
    )?;
    git(&path, &["init", "--quiet", "-b", "main"])?;
    set_identity(&path)?;

    std::fs::write(
        path.join("README.md"),
        "# Sample app\n\nA repository for Atelier's tests.\n",
    )
    .context("writing README.md")?;
    std::fs::write(path.join("src/lib.txt"), "one\ntwo\nthree\n").context("writing src/lib.txt")?;
    git(&path, &["add", "README.md", "src/lib.txt"])?;
    git(&path, &["commit", "--quiet", "-m", "Initial commit"])?;

    git(&path, &["remote", "add", "origin", path_str(&remote)?])?;
    git(&path, &["push", "--quiet", "-u", "origin", "main"])?;
    git(&path, &["remote", "set-head", "origin", "-a"])?;
    Ok(SampleRepo { path, remote })
}

impl SampleRepo {
    /// The commit `branch` points to on the remote, if the remote has that branch.
    pub fn remote_branch_sha(&self, branch: &str) -> Option<String> {
        let refname = format!("refs/heads/{branch}");
        let out = self
            .remote_git(&["rev-parse", "--verify", "--quiet", &refname])
            .ok()?;
        Some(out.trim().to_string())
    }

    /// Commit subjects of `branch` on the remote, newest first; empty if the branch is absent.
    pub fn remote_log(&self, branch: &str) -> Vec<String> {
        let refname = format!("refs/heads/{branch}");
        match self.remote_git(&["log", "--format=%s", &refname, "--"]) {
            Ok(out) => out.lines().map(str::to_string).collect(),
            Err(_) => vec![],
        }
    }

    /// Local branches of the work tree, sorted (`main`, then task branches such as
    /// `atelier/1-fix-it`).
    pub fn branches(&self) -> Vec<String> {
        list_branches(&self.path)
    }

    /// Branches on the remote, sorted.
    pub fn remote_branches(&self) -> Vec<String> {
        list_branches(&self.remote)
    }

    /// Runs git in the work tree and returns its stdout (for checks the helpers above lack).
    pub fn git(&self, args: &[&str]) -> anyhow::Result<String> {
        git(&self.path, args)
    }

    fn remote_git(&self, args: &[&str]) -> anyhow::Result<String> {
        git(&self.remote, args)
    }
}

fn list_branches(repo: &Path) -> Vec<String> {
    match git(
        repo,
        &[
            "for-each-ref",
            "--format=%(refname:short)",
            "--sort=refname",
            "refs/heads",
        ],
    ) {
        Ok(out) => out.lines().map(str::to_string).collect(),
        Err(_) => vec![],
    }
}

/// Runs `git -C <dir> <args>` with the user's and the system's git configuration ignored (so a
/// developer's hooks, signing or aliases never change a test), and returns stdout.
///
/// Fails with the command line and git's stderr when git exits non-zero.
pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        // A test may itself run inside a git hook; these would point git at another repository.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "running git {} in {} (is git installed?)",
                args.join(" "),
                dir.display()
            )
        })?;
    check(dir, args, output)
}

/// Sets the local identity tests commit with (and turns commit signing off).
pub fn set_identity(dir: &Path) -> anyhow::Result<()> {
    git(dir, &["config", "user.name", "Atelier Test"])?;
    git(dir, &["config", "user.email", "test@atelier.invalid"])?;
    git(dir, &["config", "commit.gpgsign", "false"])?;
    Ok(())
}

/// Writes `file` with `content`, commits it with `message` and returns the new commit's sha.
pub fn commit_file(dir: &Path, file: &str, content: &str, message: &str) -> anyhow::Result<String> {
    std::fs::write(dir.join(file), content).with_context(|| format!("writing {file}"))?;
    git(dir, &["add", "--", file])?;
    git(dir, &["commit", "--quiet", "-m", message])?;
    Ok(git(dir, &["rev-parse", "HEAD"])?.trim().to_string())
}

fn check(dir: &Path, args: &[&str], output: Output) -> anyhow::Result<String> {
    if !output.status.success() {
        anyhow::bail!(
            "git {} in {} failed ({}): {}",
            args.join(" "),
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout)
        .with_context(|| format!("git {} printed non-UTF-8", args.join(" ")))
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("path {} is not UTF-8", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_repo_is_pushed_to_its_bare_origin() {
        let dir = tempfile::tempdir().unwrap();
        let repo = sample_repo(dir.path()).unwrap();
        assert_eq!(
            repo,
            SampleRepo {
                path: dir.path().join("app"),
                remote: dir.path().join("remote.git")
            }
        );

        let head = repo.git(&["rev-parse", "HEAD"]).unwrap();
        assert_eq!(
            repo.remote_branch_sha("main"),
            Some(head.trim().to_string())
        );
        assert_eq!(repo.remote_log("main"), vec!["Initial commit".to_string()]);
        assert_eq!(repo.branches(), vec!["main".to_string()]);
        assert_eq!(repo.remote_branches(), vec!["main".to_string()]);
        assert_eq!(
            repo.git(&["symbolic-ref", "refs/remotes/origin/HEAD"])
                .unwrap()
                .trim(),
            "refs/remotes/origin/main"
        );
        assert_eq!(
            repo.git(&["status", "--porcelain"]).unwrap(),
            "",
            "the work tree is clean"
        );
        assert_eq!(
            std::fs::read_to_string(repo.path.join("src/lib.txt")).unwrap(),
            "one\ntwo\nthree\n"
        );
        assert_eq!(
            repo.git(&["config", "user.name"]).unwrap().trim(),
            "Atelier Test"
        );
    }

    #[test]
    fn remote_helpers_follow_pushes_and_report_missing_branches() {
        let dir = tempfile::tempdir().unwrap();
        let repo = sample_repo(dir.path()).unwrap();
        assert_eq!(repo.remote_branch_sha("atelier/1-fix"), None);
        assert_eq!(repo.remote_log("atelier/1-fix"), Vec::<String>::new());

        repo.git(&["switch", "--quiet", "-c", "atelier/1-fix"])
            .unwrap();
        std::fs::write(repo.path.join("src/lib.txt"), "one\ntwo\nthree\nfour\n").unwrap();
        repo.git(&["commit", "--quiet", "-am", "Add four"]).unwrap();
        repo.git(&["push", "--quiet", "origin", "atelier/1-fix"])
            .unwrap();

        let head = repo.git(&["rev-parse", "HEAD"]).unwrap();
        assert_eq!(
            repo.remote_branch_sha("atelier/1-fix"),
            Some(head.trim().to_string())
        );
        assert_eq!(
            repo.remote_log("atelier/1-fix"),
            vec!["Add four".to_string(), "Initial commit".to_string()]
        );
        assert_eq!(
            repo.branches(),
            vec!["atelier/1-fix".to_string(), "main".to_string()]
        );
        assert_eq!(
            repo.remote_branches(),
            vec!["atelier/1-fix".to_string(), "main".to_string()]
        );
    }

    #[test]
    fn git_failures_name_the_command_and_carry_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let err = git(dir.path(), &["rev-parse", "--verify", "no-such-ref"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("git rev-parse --verify no-such-ref"), "{msg}");
        assert!(
            msg.contains("not a git repository") || msg.contains("fatal"),
            "{msg}"
        );
    }
}
