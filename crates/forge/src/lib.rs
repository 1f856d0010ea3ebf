//! Where pull requests live. The [`Forge`] trait is the engine's only view of a forge: publish a
//! task branch as a pull request (idempotently), ask whether it was merged, merge it, and delete
//! the pushed task branch. Each
//! forge (the embedded [`LocalForge`] now, GitHub and others later) is one implementation; the
//! engine never talks to a forge any other way.

mod error;
mod local;

use std::path::{Path, PathBuf};

pub use error::ForgeError;
pub use local::LocalForge;

/// A forge that hosts pull requests for a repository's remote.
#[async_trait::async_trait]
pub trait Forge: Send + Sync {
    /// A short stable name (`"local"`, `"github"`), used in settings and logs.
    fn name(&self) -> &'static str;

    /// Push the branch and open the pull request, or verify the one that exists (idempotent:
    /// calling twice never creates a second PR).
    async fn publish(&self, req: &PublishRequest) -> Result<PullRequest, ForgeError>;

    /// Whether the pull request's head is now part of its base branch on the remote.
    async fn is_merged(&self, repo: &Path, pr: &PullRequest) -> Result<bool, ForgeError>;

    /// Merge the pull request into its base branch.
    async fn merge(&self, repo: &Path, pr: &PullRequest) -> Result<(), ForgeError>;

    /// Delete the task branch `branch` from `remote` (the pushed branch behind a pull request).
    /// Idempotent: a branch that is already gone, or was never pushed, is fine. Returns whether
    /// a branch was deleted.
    async fn delete_branch(
        &self,
        repo: &Path,
        remote: &str,
        branch: &str,
    ) -> Result<bool, ForgeError>;
}

/// What to publish: a task branch of the repository at `repo`, to be merged into `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// The repository's main work tree.
    pub repo: PathBuf,
    /// The remote to push to (e.g. `origin`).
    pub remote: String,
    /// The local branch to publish (e.g. `atelier/7-fix-login`).
    pub branch: String,
    /// The branch the pull request targets (e.g. `main`).
    pub base: String,
    pub title: String,
    pub body: String,
    /// The pull request already opened for this branch, if the caller knows of one.
    pub existing: Option<PullRequest>,
}

/// A pull request as Atelier records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// Where a human finds it (`local:<branch>` for the local forge).
    pub url: String,
    pub branch: String,
    pub base: String,
    /// The commit last pushed for it.
    pub head_sha: String,
    pub remote: String,
}
