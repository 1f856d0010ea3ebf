//! The sample git repository of `atelier demo` and `atelier pipeline simulate` and its bare
//! "remote", made with the git CLI through the `git` crate's one recipe (`git::run`), plus the
//! read-only git queries the demo reports.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

const GREET: &str = "#!/bin/sh\n# Prints a greeting.\necho \"Hello, world!\"\n";
const README: &str =
    "# greeter\n\nA tiny script that greets.\n\n    sh greet.sh    # Hello, world!\n";

/// A repository with one commit on `main`, pushed to a bare remote that `origin` points at.
pub struct SampleRepo {
    pub path: PathBuf,
    pub remote: PathBuf,
}

pub async fn create(root: &Path) -> Result<SampleRepo> {
    let path = root.join("greeter");
    let remote = root.join("remote.git");
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::write(path.join("README.md"), README).context("cannot write the sample README")?;
    std::fs::write(path.join("greet.sh"), GREET).context("cannot write the sample script")?;

    git(&path, &["init", "-q", "-b", "main"]).await?;
    git(&path, &["config", "user.name", "Atelier Demo"]).await?;
    git(&path, &["config", "user.email", "demo@atelier.invalid"]).await?;
    git(&path, &["config", "commit.gpgsign", "false"]).await?;
    git(&path, &["add", "-A"]).await?;
    git(
        &path,
        &["commit", "-q", "-m", "A script that greets the world"],
    )
    .await?;

    let remote_str = remote
        .to_str()
        .context("the temporary directory path is not UTF-8")?;
    git(root, &["init", "-q", "--bare", "-b", "main", remote_str]).await?;
    git(&path, &["remote", "add", "origin", remote_str]).await?;
    git(&path, &["push", "-q", "-u", "origin", "main"]).await?;
    git(&path, &["remote", "set-head", "origin", "-a"]).await?;
    Ok(SampleRepo { path, remote })
}

/// The branches of the bare remote.
pub async fn remote_branches(remote: &Path) -> Result<Vec<String>> {
    let out = git(
        remote,
        &["for-each-ref", "--format=%(refname:short)", "refs/heads"],
    )
    .await?;
    Ok(out.lines().map(str::to_string).collect())
}

/// `git log --oneline` of `branch` on the remote, newest first.
pub async fn remote_log(remote: &Path, branch: &str, count: usize) -> Result<String> {
    git(remote, &["log", "--oneline", &format!("-{count}"), branch]).await
}

/// Runs `git -C dir args…` through the git crate's recipe; a failure carries git's stderr.
/// Commits `files` (paths relative to the repository's root, with their contents) on the
/// sample's `main` and pushes it: what a team does to change its repository's policy files.
pub async fn commit_files(sample: &SampleRepo, files: &[(String, Vec<u8>)]) -> Result<()> {
    for (path, bytes) in files {
        let full = sample.path.join(path);
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&full, bytes).with_context(|| format!("cannot write {}", full.display()))?;
    }
    git(&sample.path, &["add", "-A"]).await?;
    git(&sample.path, &["commit", "-q", "-m", "Add the pipelines"]).await?;
    git(&sample.path, &["push", "-q", "origin", "main"]).await?;
    Ok(())
}

async fn git(dir: &Path, args: &[&str]) -> Result<String> {
    Ok(git::run(dir, args).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sample_repo_is_pushed_with_a_remote_head() {
        let root = tempfile::tempdir().unwrap();
        let repo = create(root.path()).await.unwrap();
        assert_eq!(
            remote_branches(&repo.remote).await.unwrap(),
            vec!["main".to_string()]
        );
        let head = git(&repo.path, &["symbolic-ref", "refs/remotes/origin/HEAD"])
            .await
            .unwrap();
        assert_eq!(head.trim(), "refs/remotes/origin/main");
    }
}
