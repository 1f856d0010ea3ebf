//! The demo's sample git repository and its bare "remote", made with the git CLI (this is demo
//! scaffolding, not the product's git layer), plus the read-only git queries the demo reports.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const GREET: &str = "#!/bin/sh\n# Prints a greeting.\necho \"Hello, world!\"\n";
const README: &str =
    "# greeter\n\nA tiny script that greets.\n\n    sh greet.sh    # Hello, world!\n";

/// A repository with one commit on `main`, pushed to a bare remote that `origin` points at.
pub struct SampleRepo {
    pub path: PathBuf,
    pub remote: PathBuf,
}

pub fn create(root: &Path) -> Result<SampleRepo> {
    let path = root.join("greeter");
    let remote = root.join("remote.git");
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::write(path.join("README.md"), README).context("cannot write the sample README")?;
    std::fs::write(path.join("greet.sh"), GREET).context("cannot write the sample script")?;

    git(&path, &["init", "-q", "-b", "main"])?;
    git(&path, &["config", "user.name", "Atelier Demo"])?;
    git(&path, &["config", "user.email", "demo@atelier.invalid"])?;
    git(&path, &["config", "commit.gpgsign", "false"])?;
    git(&path, &["add", "-A"])?;
    git(
        &path,
        &["commit", "-q", "-m", "A script that greets the world"],
    )?;

    let remote_str = remote
        .to_str()
        .context("the temporary directory path is not UTF-8")?;
    git(root, &["init", "-q", "--bare", "-b", "main", remote_str])?;
    git(&path, &["remote", "add", "origin", remote_str])?;
    git(&path, &["push", "-q", "-u", "origin", "main"])?;
    git(&path, &["remote", "set-head", "origin", "-a"])?;
    Ok(SampleRepo { path, remote })
}

/// The branches of the bare remote.
pub fn remote_branches(remote: &Path) -> Result<Vec<String>> {
    let out = git(
        remote,
        &["for-each-ref", "--format=%(refname:short)", "refs/heads"],
    )?;
    Ok(out.lines().map(str::to_string).collect())
}

/// `git log --oneline` of `branch` on the remote, newest first.
pub fn remote_log(remote: &Path, branch: &str, count: usize) -> Result<String> {
    git(remote, &["log", "--oneline", &format!("-{count}"), branch])
}

/// Runs `git -C dir args…`; a failure carries git's stderr.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .context("cannot run git: is it installed and on PATH?")?;
    if !output.status.success() {
        bail!(
            "`git {}` in {} failed: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_repo_is_pushed_with_a_remote_head() {
        let root = tempfile::tempdir().unwrap();
        let repo = create(root.path()).unwrap();
        assert_eq!(
            remote_branches(&repo.remote).unwrap(),
            vec!["main".to_string()]
        );
        let head = git(&repo.path, &["symbolic-ref", "refs/remotes/origin/HEAD"]).unwrap();
        assert_eq!(head.trim(), "refs/remotes/origin/main");
    }
}
