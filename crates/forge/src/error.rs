//! The forge crate's error type: what could not be published, checked or merged, and what to do.

use std::path::PathBuf;

/// Why a forge operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// The branch adds nothing to its base, so there is no pull request to open.
    #[error(
        "branch `{branch}` has no commits ahead of `{remote}/{base}`: there is nothing to submit; \
         commit the changes on `{branch}` first"
    )]
    NothingToSubmit {
        branch: String,
        base: String,
        remote: String,
    },

    /// The repository has no such remote.
    #[error("repository {} has no remote `{remote}`: add one with `git remote add {remote} <url>`", repo.display())]
    NoRemote { repo: PathBuf, remote: String },

    /// The base branch does not exist on the remote.
    #[error(
        "`{remote}/{base}` does not exist in {}: push the `{base}` branch to `{remote}` or fix the \
         project's default branch",
        repo.display()
    )]
    MissingBase {
        repo: PathBuf,
        remote: String,
        base: String,
    },

    /// The branch to publish does not exist locally.
    #[error("there is no local branch `{branch}` in {}: create the task's workspace first", repo.display())]
    MissingBranch { repo: PathBuf, branch: String },

    /// The caller's existing pull request belongs to another branch.
    #[error(
        "the existing pull request {url} is for branch `{existing}`, not `{branch}`: pass the pull \
         request of this branch, or none"
    )]
    PullRequestMismatch {
        url: String,
        existing: String,
        branch: String,
    },

    /// A git operation failed (its message names the command and git's output).
    #[error(transparent)]
    Git(#[from] git::GitError),
}
