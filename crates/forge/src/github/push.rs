//! Publishing: pushing the task branch with git and finding or opening its pull request.
//!
//! The push goes to the configured clone URL (never a configured remote), with the token handed
//! to that one git process as an `http.extraHeader` through `GIT_CONFIG_COUNT`/`KEY_0`/`VALUE_0`
//! in its environment: never in its arguments (visible in `/proc/*/cmdline`), never in a git
//! config file, never logged. It is a `--force-with-lease` on exactly the commit Atelier last
//! pushed (or on the branch not existing), so a branch someone else moved is not overwritten; a
//! lease refused because the remote already holds our commit (a retry after a crash) is
//! success. The pull request is looked up by head branch before one is opened, so a crash
//! between GitHub creating it and Atelier recording it never makes a second.

use std::path::Path;

use base64::Engine as _;
use git::{CommandOptions, GitError, Repo};
use reqwest::Method;
use serde_json::json;

use super::client::encode_path;
use super::{GitHubForge, models};
use crate::{ForgeError, PublishRequest, PullRequest};

/// The environment that gives one git process the token, and the deadline of that process.
pub(crate) fn git_auth_options(token: &str, timeout: std::time::Duration) -> CommandOptions {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    CommandOptions {
        env: vec![
            ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
            (
                "GIT_CONFIG_KEY_0".to_string(),
                "http.extraHeader".to_string(),
            ),
            (
                "GIT_CONFIG_VALUE_0".to_string(),
                format!("Authorization: Basic {basic}"),
            ),
            // Should someone trace git's HTTP traffic, keep the header out of the trace.
            ("GIT_TRACE_REDACT".to_string(), "1".to_string()),
        ],
        timeout: Some(timeout),
    }
}

async fn git_options(forge: &GitHubForge) -> Result<CommandOptions, ForgeError> {
    let token = forge.client.token().await?;
    Ok(git_auth_options(&token, forge.config.call_timeout))
}

pub(super) async fn publish(
    forge: &GitHubForge,
    req: &PublishRequest,
) -> Result<PullRequest, ForgeError> {
    if let Some(existing) = &req.existing
        && existing.branch != req.branch
    {
        return Err(ForgeError::PullRequestMismatch {
            url: existing.url.clone(),
            existing: existing.branch.clone(),
            branch: req.branch.clone(),
        });
    }
    let repo = Repo::open(&req.repo).await?;
    let local = repo
        .rev_parse(&format!("refs/heads/{}", req.branch))
        .await?
        .ok_or_else(|| ForgeError::MissingBranch {
            repo: repo.path().to_path_buf(),
            branch: req.branch.clone(),
        })?;
    let options = git_options(forge).await?;
    let expected = req
        .existing
        .as_ref()
        .map(|pr| pr.head_sha.clone())
        .unwrap_or_default();
    let url = &forge.config.clone_url;
    match repo.push_url(url, &req.branch, &expected, &options).await {
        Ok(_) => {}
        Err(GitError::PushRejected { .. }) => {
            let found = repo
                .remote_branch_at_url(url, &req.branch, &options)
                .await?;
            if found.as_deref() != Some(local.as_str()) {
                return Err(ForgeError::BranchMoved {
                    branch: req.branch.clone(),
                    expected,
                    found,
                });
            }
            tracing::info!(branch = %req.branch, "GitHub already has the branch at our commit");
        }
        Err(err) => return Err(err.into()),
    }
    let pull = find_or_open(forge, req).await?;
    Ok(PullRequest {
        url: pull.html_url,
        number: Some(pull.number),
        branch: req.branch.clone(),
        base: req.base.clone(),
        head_sha: local,
        remote: req.remote.clone(),
    })
}

/// The pull requests (any state) whose head is `branch` of this repository, newest first.
async fn pulls_for(forge: &GitHubForge, branch: &str) -> Result<Vec<models::Pull>, ForgeError> {
    let head = format!("{}:{branch}", forge.config.owner);
    let path = forge.repo_path(&format!(
        "/pulls?head={}&state=all",
        encode_path(&head, false)
    ));
    let call = format!("GET {}", forge.repo_path("/pulls"));
    let mut pulls: Vec<models::Pull> = forge
        .client
        .get_all(&call, &path, |page: Vec<models::Pull>| page)
        .await?;
    pulls.retain(|p| p.head.name == branch);
    pulls.sort_by_key(|p| std::cmp::Reverse(p.number));
    Ok(pulls)
}

/// The open pull request of the branch (updated to the request's title, body and base), a
/// closed unmerged one reopened, or a new one.
async fn find_or_open(
    forge: &GitHubForge,
    req: &PublishRequest,
) -> Result<models::Pull, ForgeError> {
    let pulls = pulls_for(forge, &req.branch).await?;
    if let Some(open) = pulls.iter().find(|p| p.state == "open") {
        return update(forge, req, open, false).await;
    }
    if let Some(closed) = pulls.iter().find(|p| p.state == "closed" && !p.is_merged()) {
        return update(forge, req, closed, true).await;
    }
    let path = forge.repo_path("/pulls");
    let call = format!("POST {path}");
    let body = json!({
        "title": req.title,
        "body": req.body,
        "head": req.branch,
        "base": req.base,
    });
    let resp = forge
        .client
        .call(&call, Method::POST, &forge.client.url(&path), Some(&body))
        .await?;
    if resp.is_success() {
        return resp.json(&call);
    }
    if resp.status == 422 {
        let message = resp.error_message();
        if message.contains("already exists") {
            // Someone (or an earlier attempt) opened it meanwhile.
            if let Some(open) = pulls_for(forge, &req.branch)
                .await?
                .into_iter()
                .find(|p| p.state == "open")
            {
                return Ok(open);
            }
        }
        if message.contains("No commits between") {
            return Err(ForgeError::NothingToSubmit {
                branch: req.branch.clone(),
                base: req.base.clone(),
                remote: req.remote.clone(),
            });
        }
    }
    Err(resp.into_error(&call))
}

/// Brings `pull` in line with the request (and reopens it when `reopen`); unchanged pull
/// requests are left alone.
async fn update(
    forge: &GitHubForge,
    req: &PublishRequest,
    pull: &models::Pull,
    reopen: bool,
) -> Result<models::Pull, ForgeError> {
    let mut changes = serde_json::Map::new();
    if pull.title != req.title {
        changes.insert("title".to_string(), json!(req.title));
    }
    if pull.body.as_deref().unwrap_or("") != req.body {
        changes.insert("body".to_string(), json!(req.body));
    }
    if pull.base.name != req.base {
        changes.insert("base".to_string(), json!(req.base));
    }
    if reopen {
        changes.insert("state".to_string(), json!("open"));
    }
    if changes.is_empty() {
        return Ok(pull.clone());
    }
    let path = forge.repo_path(&format!("/pulls/{}", pull.number));
    let call = format!("PATCH {path}");
    forge
        .client
        .send(
            &call,
            Method::PATCH,
            &path,
            &serde_json::Value::Object(changes),
        )
        .await
}

/// Deletes the branch over git when the remote still has it; whether it had it.
pub(super) async fn delete_branch_with_git(
    forge: &GitHubForge,
    repo: &Path,
    branch: &str,
) -> Result<bool, ForgeError> {
    let repo = Repo::open(repo).await?;
    let options = git_options(forge).await?;
    let url = &forge.config.clone_url;
    if repo
        .remote_branch_at_url(url, branch, &options)
        .await?
        .is_none()
    {
        return Ok(false);
    }
    repo.delete_branch_at_url(url, branch, &options).await?;
    Ok(true)
}

pub(super) async fn fetch_base(
    forge: &GitHubForge,
    repo: &Path,
    remote: &str,
    base: &str,
) -> Result<String, ForgeError> {
    let repo = Repo::open(repo).await?;
    let options = git_options(forge).await?;
    let into = format!("refs/remotes/{remote}/{base}");
    Ok(repo
        .fetch_url(&forge.config.clone_url, base, &into, &options)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_in_an_environment_header_only() {
        let options = git_auth_options("ghs_abc", std::time::Duration::from_secs(3));
        let value = options
            .env
            .iter()
            .find(|(name, _)| name == "GIT_CONFIG_VALUE_0")
            .map(|(_, v)| v.clone())
            .unwrap();
        // base64("x-access-token:ghs_abc")
        assert_eq!(
            value,
            "Authorization: Basic eC1hY2Nlc3MtdG9rZW46Z2hzX2FiYw=="
        );
        assert!(!format!("{options:?}").contains("Basic"));
    }
}
