//! [`GitHubForge`]: pull requests on github.com or a GitHub Enterprise Server, behind the
//! [`Forge`] trait. The task branch is pushed with git (the token given only to that git
//! process, through its environment) and the pull request is found or opened through the REST
//! API, so a retried publish never opens a second one. Atelier follows the pull request (state,
//! mergeability, checks and why they failed, comments) and answers comments; it never merges
//! on GitHub — a human does, and Atelier notices.
//!
//! Modules: `config` (what to reach and how), `auth` (token or App installation tokens),
//! `client` (HTTP with deadlines, retries, rate limits and ETags), `models` (the REST subset),
//! `push` (publishing), `checks` (CI state and failures), `logs` (job log trimming),
//! `comments` (reading, acknowledging, replying), `remote_url` (parsing remotes), `time`.

mod auth;
mod checks;
mod client;
mod comments;
mod config;
mod logs;
mod models;
mod push;
mod remote_url;
mod time;

use std::fmt;
use std::path::Path;

use reqwest::Method;

pub use config::{GitHubAuth, GitHubConfig};
pub use remote_url::parse_github_remote;
pub(crate) use time::{format_epoch, now_epoch};

use crate::{
    Check, CheckFailure, Checks, Comment, Forge, ForgeError, Mergeable, PrState, PublishRequest,
    PullRequest,
};
use client::{Client, encode_path};

/// A repository on GitHub as a forge.
pub struct GitHubForge {
    config: GitHubConfig,
    client: Client,
}

impl fmt::Debug for GitHubForge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubForge")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GitHubForge {
    /// A forge for `config`. Fails when the App's private key is unusable or the HTTP client
    /// cannot be built; nothing is sent to GitHub yet.
    pub fn new(config: GitHubConfig) -> Result<GitHubForge, ForgeError> {
        let client = Client::new(&config)?;
        Ok(GitHubForge { config, client })
    }

    /// The configuration this forge was made with.
    pub fn config(&self) -> &GitHubConfig {
        &self.config
    }

    /// `/repos/{owner}/{repo}` followed by `rest`.
    fn repo_path(&self, rest: &str) -> String {
        format!(
            "/repos/{}/{}{rest}",
            encode_path(&self.config.owner, false),
            encode_path(&self.config.repo, false)
        )
    }

    /// `GET /repos/{o}/{r}/pulls/{n}`.
    async fn pull(&self, pr: &PullRequest) -> Result<models::Pull, ForgeError> {
        let number = number(pr)?;
        let path = self.repo_path(&format!("/pulls/{number}"));
        self.client.get(&format!("GET {path}"), &path).await
    }
}

/// The GitHub number of a pull request record.
fn number(pr: &PullRequest) -> Result<u64, ForgeError> {
    pr.number.ok_or_else(|| ForgeError::NoNumber {
        url: pr.url.clone(),
    })
}

/// A pull request as GitHub reports it, in the forge's terms.
pub(crate) fn pr_state(pull: &models::Pull) -> PrState {
    let merged = pull.is_merged();
    let mergeable = if pull.mergeable_state.as_deref() == Some("dirty") {
        Mergeable::Conflicting
    } else {
        match pull.mergeable {
            Some(true) => Mergeable::Yes,
            Some(false) => Mergeable::Conflicting,
            None => Mergeable::Unknown,
        }
    };
    PrState {
        open: pull.state == "open" && !merged,
        merged,
        head_sha: pull.head.sha.clone(),
        mergeable,
    }
}

#[async_trait::async_trait]
impl Forge for GitHubForge {
    fn name(&self) -> &'static str {
        "github"
    }

    async fn publish(&self, req: &PublishRequest) -> Result<PullRequest, ForgeError> {
        push::publish(self, req).await
    }

    async fn is_merged(&self, _repo: &Path, pr: &PullRequest) -> Result<bool, ForgeError> {
        Ok(self.pull(pr).await?.is_merged())
    }

    async fn merge(&self, _repo: &Path, pr: &PullRequest) -> Result<(), ForgeError> {
        Err(ForgeError::Unsupported(format!(
            "Atelier does not merge on GitHub: merge the pull request on GitHub ({}); Atelier \
             notices the merge",
            pr.url
        )))
    }

    async fn delete_branch(
        &self,
        repo: &Path,
        _remote: &str,
        branch: &str,
    ) -> Result<bool, ForgeError> {
        let path = self.repo_path(&format!("/git/refs/heads/{}", encode_path(branch, true)));
        let call = format!("DELETE {path}");
        let resp = self
            .client
            .call(&call, Method::DELETE, &self.client.url(&path), None)
            .await?;
        match resp.status {
            200..=299 => Ok(true),
            // "Reference does not exist" — or, for a 404, a token GitHub does not let see it:
            // git, with the same token, tells which, and deletes it in the second case.
            404 | 422 => push::delete_branch_with_git(self, repo, branch).await,
            _ => Err(resp.into_error(&call)),
        }
    }

    async fn pr_state(&self, _repo: &Path, pr: &PullRequest) -> Result<PrState, ForgeError> {
        Ok(pr_state(&self.pull(pr).await?))
    }

    async fn checks(
        &self,
        _repo: &Path,
        pr: &PullRequest,
        head_sha: &str,
    ) -> Result<Checks, ForgeError> {
        checks::checks(self, &pr.base, head_sha).await
    }

    async fn check_failures(
        &self,
        pr: &PullRequest,
        failed: &[Check],
    ) -> Result<Vec<CheckFailure>, ForgeError> {
        checks::failures(self, pr, failed).await
    }

    async fn comments(&self, pr: &PullRequest) -> Result<Vec<Comment>, ForgeError> {
        comments::all(self, number(pr)?).await
    }

    async fn acknowledge(&self, pr: &PullRequest, comment: &Comment) -> Result<(), ForgeError> {
        comments::acknowledge(self, pr, comment).await
    }

    async fn reply(
        &self,
        pr: &PullRequest,
        comment: &Comment,
        key: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        comments::reply(self, number(pr)?, comment, key, body).await
    }

    async fn fetch_base(
        &self,
        repo: &Path,
        remote: &str,
        base: &str,
    ) -> Result<String, ForgeError> {
        push::fetch_base(self, repo, remote, base).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(
        state: &str,
        merged: Option<bool>,
        mergeable: Option<bool>,
        ms: Option<&str>,
    ) -> models::Pull {
        serde_json::from_value(serde_json::json!({
            "number": 3,
            "html_url": "https://github.com/o/r/pull/3",
            "state": state,
            "merged": merged,
            "mergeable": mergeable,
            "mergeable_state": ms,
            "title": "t",
            "body": null,
            "head": {"ref": "atelier/1-x", "sha": "abc"},
            "base": {"ref": "main", "sha": "def"},
        }))
        .unwrap()
    }

    #[test]
    fn pull_request_states_map_onto_the_forges_terms() {
        let open = pr_state(&pull("open", Some(false), Some(true), Some("clean")));
        assert_eq!(
            open,
            PrState {
                open: true,
                merged: false,
                head_sha: "abc".to_string(),
                mergeable: Mergeable::Yes
            }
        );
        assert_eq!(
            pr_state(&pull("open", None, Some(false), Some("dirty"))).mergeable,
            Mergeable::Conflicting
        );
        assert_eq!(
            pr_state(&pull("open", None, None, Some("dirty"))).mergeable,
            Mergeable::Conflicting
        );
        assert_eq!(
            pr_state(&pull("open", None, None, Some("unknown"))).mergeable,
            Mergeable::Unknown
        );
        let merged = pr_state(&pull("closed", Some(true), None, None));
        assert!(merged.merged && !merged.open);
        let closed = pr_state(&pull("closed", Some(false), None, None));
        assert!(!closed.merged && !closed.open);
    }
}
