//! [`LocalForge`]: the embedded default forge. A "pull request" is just the task branch pushed to
//! the repository's own remote, identified by `local:<branch>`; it is merged when its head is
//! contained in the base branch on the remote, whoever merged it. Because the pull request is a
//! pure function of the branch, publishing is idempotent by construction. Every git command that
//! talks to the remote runs under the forge's network deadline (`git::Repo`'s).

use std::path::Path;
use std::time::Duration;

use git::Repo;

use crate::{
    Check, CheckFailure, Checks, Comment, Forge, ForgeError, Mergeable, PrState, PublishRequest,
    PullRequest,
};

/// The embedded forge: pull requests are branches on the repository's remote.
#[derive(Debug, Clone, Copy)]
pub struct LocalForge {
    network_timeout: Duration,
}

impl Default for LocalForge {
    fn default() -> Self {
        LocalForge::new()
    }
}

impl LocalForge {
    /// A local forge whose git network commands have [`Repo::DEFAULT_NETWORK_TIMEOUT`].
    pub fn new() -> LocalForge {
        LocalForge {
            network_timeout: Repo::DEFAULT_NETWORK_TIMEOUT,
        }
    }

    /// The same forge whose git network commands (fetch, push, ls-remote) are killed and fail
    /// after `limit`, saying the remote may be unreachable.
    #[must_use]
    pub fn with_network_timeout(self, limit: Duration) -> LocalForge {
        LocalForge {
            network_timeout: limit,
        }
    }

    async fn open(&self, path: &Path) -> Result<Repo, ForgeError> {
        Ok(Repo::open(path)
            .await?
            .with_network_timeout(self.network_timeout))
    }
}

#[async_trait::async_trait]
impl Forge for LocalForge {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn publish(&self, req: &PublishRequest) -> Result<PullRequest, ForgeError> {
        if let Some(existing) = &req.existing
            && existing.branch != req.branch
        {
            return Err(ForgeError::PullRequestMismatch {
                url: existing.url.clone(),
                existing: existing.branch.clone(),
                branch: req.branch.clone(),
            });
        }
        let repo = self.open(&req.repo).await?;
        let base_sha = fetch_base(&repo, &req.remote, &req.base).await?;
        let head_ref = format!("refs/heads/{}", req.branch);
        if repo.rev_parse(&head_ref).await?.is_none() {
            return Err(ForgeError::MissingBranch {
                repo: repo.path().to_path_buf(),
                branch: req.branch.clone(),
            });
        }
        // An existing pull request is verified and updated even when its branch is already
        // contained in the base (it may have been merged meanwhile).
        if req.existing.is_none() && repo.commits_ahead(&base_sha, &head_ref).await? == 0 {
            return Err(ForgeError::NothingToSubmit {
                branch: req.branch.clone(),
                base: req.base.clone(),
                remote: req.remote.clone(),
            });
        }
        let head_sha = repo.push(&req.remote, &req.branch).await?;
        let url = match &req.existing {
            Some(existing) => existing.url.clone(),
            None => format!("local:{}", req.branch),
        };
        Ok(PullRequest {
            url,
            number: None,
            branch: req.branch.clone(),
            base: req.base.clone(),
            head_sha,
            remote: req.remote.clone(),
        })
    }

    async fn is_merged(&self, repo: &Path, pr: &PullRequest) -> Result<bool, ForgeError> {
        let repo = self.open(repo).await?;
        let base_sha = fetch_base(&repo, &pr.remote, &pr.base).await?;
        Ok(repo.is_ancestor(&pr.head_sha, &base_sha).await?)
    }

    async fn merge(&self, repo: &Path, pr: &PullRequest) -> Result<(), ForgeError> {
        let repo = self.open(repo).await?;
        fetch_base(&repo, &pr.remote, &pr.base).await?;
        // Like a hosted forge, merge what the remote branch holds; fall back to the recorded head
        // when the branch was deleted from the remote.
        let remote_branch = format!("refs/remotes/{}/{}", pr.remote, pr.branch);
        let head = if repo.rev_parse(&remote_branch).await?.is_some() {
            remote_branch
        } else {
            pr.head_sha.clone()
        };
        let message = format!("Merge {} (Atelier)", pr.branch);
        repo.merge_to_remote(&pr.remote, &head, &pr.base, &message)
            .await?;
        Ok(())
    }

    async fn delete_branch(
        &self,
        repo: &Path,
        remote: &str,
        branch: &str,
    ) -> Result<bool, ForgeError> {
        let repo = self.open(repo).await?;
        // Without the remote nothing can have been pushed there.
        if !repo.has_remote(remote).await? {
            return Ok(false);
        }
        Ok(repo.delete_remote_branch(remote, branch).await?)
    }

    /// Open until merged; the local forge has no conflicts of its own to report (a merge that
    /// conflicts fails when it is made).
    async fn pr_state(&self, repo: &Path, pr: &PullRequest) -> Result<PrState, ForgeError> {
        let merged = self.is_merged(repo, pr).await?;
        Ok(PrState {
            open: !merged,
            merged,
            head_sha: pr.head_sha.clone(),
            mergeable: Mergeable::Yes,
        })
    }

    /// The local forge runs no CI: no checks, which counts as passed.
    async fn checks(
        &self,
        _repo: &Path,
        _pr: &PullRequest,
        head_sha: &str,
    ) -> Result<Checks, ForgeError> {
        Ok(Checks {
            head_sha: head_sha.to_string(),
            checks: Vec::new(),
            required: None,
        })
    }

    async fn check_failures(
        &self,
        _pr: &PullRequest,
        _failed: &[Check],
    ) -> Result<Vec<CheckFailure>, ForgeError> {
        Ok(Vec::new())
    }

    /// Nobody comments on a local pull request.
    async fn comments(&self, _pr: &PullRequest) -> Result<Vec<Comment>, ForgeError> {
        Ok(Vec::new())
    }

    async fn acknowledge(&self, _pr: &PullRequest, _comment: &Comment) -> Result<(), ForgeError> {
        Ok(())
    }

    async fn reply(
        &self,
        _pr: &PullRequest,
        _comment: &Comment,
        _key: &str,
        _body: &str,
    ) -> Result<(), ForgeError> {
        Ok(())
    }

    async fn fetch_base(
        &self,
        repo: &Path,
        remote: &str,
        base: &str,
    ) -> Result<String, ForgeError> {
        let repo = self.open(repo).await?;
        fetch_base(&repo, remote, base).await
    }
}

/// Fetches `remote` and returns the commit of `<remote>/<base>`.
async fn fetch_base(repo: &Repo, remote: &str, base: &str) -> Result<String, ForgeError> {
    if !repo.has_remote(remote).await? {
        return Err(ForgeError::NoRemote {
            repo: repo.path().to_path_buf(),
            remote: remote.to_string(),
        });
    }
    repo.fetch(remote).await?;
    repo.rev_parse(&format!("refs/remotes/{remote}/{base}"))
        .await?
        .ok_or_else(|| ForgeError::MissingBase {
            repo: repo.path().to_path_buf(),
            remote: remote.to_string(),
            base: base.to_string(),
        })
}
