//! The forge crate's error type: what could not be published, checked or merged, and what to do.

use std::path::PathBuf;
use std::time::Duration;

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

    /// GitHub answered a call with an error status. `message` is GitHub's own message (never a
    /// credential).
    #[error("GitHub refused `{call}` (HTTP {status}): {message}{}", github_hint(*status))]
    GitHub {
        call: String,
        status: u16,
        message: String,
    },

    /// GitHub's rate limit stops the call until `retry_at` (seconds since the Unix epoch), later
    /// than Atelier is willing to wait in one call.
    #[error(
        "GitHub's rate limit stops `{call}` until {} (in {}s): retry after that",
        crate::github::format_epoch(*retry_at),
        retry_at.saturating_sub(crate::github::now_epoch())
    )]
    RateLimited { call: String, retry_at: u64 },

    /// A call to GitHub did not answer within its deadline, on every attempt.
    #[error(
        "`{call}` did not answer within {after:?} ({attempts} attempts): check that GitHub (or the \
         GitHub Enterprise server) is reachable, then retry"
    )]
    Timeout {
        call: String,
        after: Duration,
        attempts: u32,
    },

    /// The connection to GitHub failed (DNS, refused, TLS …), on every attempt.
    #[error("`{call}` could not reach GitHub: {message}; check the API URL and the network")]
    Unreachable { call: String, message: String },

    /// GitHub answered something Atelier could not read.
    #[error("`{call}` returned a response Atelier cannot read: {message}")]
    BadResponse { call: String, message: String },

    /// The GitHub credentials could not be used (a malformed App key, an installation token
    /// GitHub refuses …).
    #[error("GitHub authentication failed: {0}")]
    Auth(String),

    /// The forge does not do this; the message says what to do instead.
    #[error("{0}")]
    Unsupported(String),

    /// The pull request record lacks the forge's number (it was not made by this forge).
    #[error(
        "the pull request {url} has no GitHub number: it was not opened on GitHub; publish the \
         task again to open one"
    )]
    NoNumber { url: String },

    /// The remote branch is not where Atelier last pushed it: someone else pushed to it.
    #[error(
        "the branch `{branch}` on GitHub is at {} but Atelier expected {}: someone else pushed \
         to it; fetch it, look at what changed and publish again",
        found.as_deref().unwrap_or("nothing (it was deleted)"),
        if expected.is_empty() { "no branch" } else { expected.as_str() }
    )]
    BranchMoved {
        branch: String,
        expected: String,
        found: Option<String>,
    },

    /// A git operation failed (its message names the command and git's output).
    #[error(transparent)]
    Git(#[from] git::GitError),
}

fn github_hint(status: u16) -> &'static str {
    match status {
        401 => "; check that the token (or the GitHub App's key) is valid and not expired",
        403 => "; check that the token or the GitHub App has access to the repository",
        404 => "; check the owner, the repository and that the token can see it",
        422 => "; GitHub could not process the request",
        _ => "",
    }
}
