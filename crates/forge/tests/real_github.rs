//! The GitHub forge against the real GitHub (or a GitHub Enterprise Server), opt-in: it runs only
//! with `ATELIER_REAL_GITHUB_TOKEN` (a token with the permissions of `docs/github.md`) and
//! `ATELIER_REAL_GITHUB_REPO=owner/name` (a scratch repository: the test pushes a branch there
//! and opens a pull request) set; `ATELIER_REAL_GITHUB_API_URL` points it at an Enterprise
//! Server (`https://HOST/api/v3`). It is `#[ignore]`d, so every ordinary run (`scripts/test`,
//! CI) reports it as skipped, with the reason, instead of passing without having talked to
//! GitHub; `--ignored` (`--run-ignored all` under nextest) runs it. Run that way without the
//! variables it prints `skipped: …` and returns — and fails under `CI=true`, like the real-CLI
//! tests (`agent_cli` in `crates/cli/tests/support`), so a CI job that asked for it cannot pass
//! without it.
//!
//! What it does: clones the repository, commits an empty commit on a scratch branch
//! `atelier/real-test-<random>`, publishes it as a pull request (twice: the second publish must
//! find the same one), reads its state, checks and comments, then closes the pull request and
//! deletes the branch — also when a step fails.
//!
//! Run: `ATELIER_REAL_GITHUB_TOKEN=$(cat token) ATELIER_REAL_GITHUB_REPO=me/scratch cargo test -p
//! forge --test real_github -- --ignored --nocapture`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a panic is a failure

use base64::Engine as _;
use forge::{Forge, GitHubAuth, GitHubConfig, GitHubForge, PublishRequest, PullRequest};
use std::path::Path;
use std::process::Command;

const TOKEN_VAR: &str = "ATELIER_REAL_GITHUB_TOKEN";
const REPO_VAR: &str = "ATELIER_REAL_GITHUB_REPO";
const API_VAR: &str = "ATELIER_REAL_GITHUB_API_URL";

/// `(token, owner/name, API URL if not github.com)`; a missing variable fails the test, which
/// runs only when asked for (`--ignored`).
fn target() -> (String, String, Option<String>) {
    let token = std::env::var(TOKEN_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty());
    let repo = std::env::var(REPO_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty());
    match (token, repo) {
        (Some(token), Some(repo)) => (
            token.trim().to_string(),
            repo.trim().to_string(),
            std::env::var(API_VAR).ok().filter(|v| !v.is_empty()),
        ),
        (token, repo) => {
            let missing: Vec<&str> = [(TOKEN_VAR, token.is_none()), (REPO_VAR, repo.is_none())]
                .into_iter()
                .filter_map(|(name, missing)| missing.then_some(name))
                .collect();
            let msg = format!(
                "the real-GitHub test needs {} (a token and a scratch repository owner/name; \
                 see docs/github.md)",
                missing.join(" and ")
            );
            // The test is opt-in (`#[ignore]`): asked to run, it fails rather than pass unrun.
            panic!("{msg}");
        }
    }
}

/// git with the token in its environment only (as the forge itself hands it to git).
fn git(dir: &Path, token: &str, args: &[&str]) -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env(
            "GIT_CONFIG_VALUE_0",
            format!("Authorization: Basic {basic}"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {} failed: {}",
        args.first().copied().unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Closes pull request `number` through the REST API (the forge never closes one).
async fn close(config: &GitHubConfig, token: &str, number: u64) {
    let url = format!(
        "{}/repos/{}/{}/pulls/{number}",
        config.api_url, config.owner, config.repo
    );
    let response = reqwest::Client::new()
        .patch(url)
        .bearer_auth(token)
        .header("Accept", "application/vnd.github+json")
        .header("User-Agent", "atelier-real-github-test")
        .header("Content-Type", "application/json")
        .body(r#"{"state":"closed"}"#)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "closing pull request #{number}: {}",
        response.status()
    );
}

#[tokio::test]
#[ignore = "opt-in: talks to the real GitHub; needs ATELIER_REAL_GITHUB_TOKEN and ATELIER_REAL_GITHUB_REPO (docs/github.md), run with --ignored"]
async fn publishes_reads_closes_and_deletes_a_scratch_pull_request() {
    let (token, full_name, api_url) = target();
    let web = match &api_url {
        Some(api) => api
            .trim_end_matches('/')
            .trim_end_matches("/api/v3")
            .to_string(),
        None => "https://github.com".to_string(),
    };
    let remote = format!("{web}/{full_name}.git");
    let config = GitHubConfig::for_remote(
        &remote,
        api_url.as_deref(),
        GitHubAuth::Token(token.clone()),
    )
    .unwrap();
    let forge = GitHubForge::new(config.clone()).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    git(
        tmp.path(),
        &token,
        &["clone", "--quiet", "--depth", "1", &remote, "repo"],
    );
    let repo = tmp.path().join("repo");
    testkit::set_identity(&repo).unwrap();
    let base = git(&repo, &token, &["rev-parse", "--abbrev-ref", "HEAD"]);
    let branch = format!("atelier/real-test-{:016x}", rand_suffix());
    git(&repo, &token, &["checkout", "--quiet", "-b", &branch]);
    git(
        &repo,
        &token,
        &[
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            "Atelier real-GitHub test (scratch, closed at once)",
        ],
    );
    let head = git(&repo, &token, &["rev-parse", "HEAD"]);
    let request = PublishRequest {
        repo: repo.clone(),
        remote: "origin".into(),
        branch: branch.clone(),
        base: base.clone(),
        title: "Atelier real-GitHub test (scratch)".into(),
        body: "Opened by `crates/forge/tests/real_github.rs`; closed and deleted by it.".into(),
        existing: None,
    };

    let mut opened: Option<PullRequest> = None;
    let outcome = async {
        let pr = forge.publish(&request).await.map_err(|e| e.to_string())?;
        opened = Some(pr.clone());
        eprintln!("opened {} (#{:?}) from {branch}", pr.url, pr.number);
        if pr.head_sha != head {
            return Err(format!("published {} instead of {head}", pr.head_sha));
        }
        let again = forge
            .publish(&PublishRequest {
                existing: Some(pr.clone()),
                ..request.clone()
            })
            .await
            .map_err(|e| e.to_string())?;
        if again.number != pr.number {
            return Err(format!(
                "a second publish opened #{:?} beside #{:?}",
                again.number, pr.number
            ));
        }
        let state = forge
            .pr_state(&repo, &pr)
            .await
            .map_err(|e| e.to_string())?;
        if !state.open || state.merged || state.head_sha != head {
            return Err(format!("unexpected state {state:?}"));
        }
        let checks = forge
            .checks(&repo, &pr, &head)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("checks: {:?}", checks.overall());
        let comments = forge.comments(&pr).await.map_err(|e| e.to_string())?;
        eprintln!("comments: {}", comments.len());
        Ok::<_, String>(pr)
    }
    .await;

    // Cleanup whatever happened above.
    if let Some(number) = opened.as_ref().and_then(|pr| pr.number) {
        close(&config, &token, number).await;
    }
    let deleted = forge.delete_branch(&repo, "origin", &branch).await;

    let pr = outcome.unwrap_or_else(|e| panic!("the real-GitHub round trip failed: {e}"));
    assert!(
        deleted.unwrap(),
        "the scratch branch {branch} was not there to delete"
    );
    let state = forge.pr_state(&repo, &pr).await.unwrap();
    assert!(!state.open && !state.merged, "{state:?}");
    assert!(
        forge.merge(&repo, &pr).await.is_err(),
        "Atelier never merges on GitHub"
    );
}

fn rand_suffix() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}
