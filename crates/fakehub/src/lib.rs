//! A fake GitHub for tests: a real HTTP server on `127.0.0.1:0` that speaks GitHub's REST shapes
//! under `/api/v3` (as GitHub Enterprise Server does), git smart HTTP through `git http-backend`,
//! scripted CI (check runs, commit statuses, job logs) and signed webhook deliveries.
//!
//! Dev-only: it is used by tests as a dev-dependency and is never a dependency of production
//! code. Tests drive it through [`FakeHub`]: create repositories, add credentials, script CI,
//! play the humans (comments, reviews, merges) and inspect what the client did (recorded
//! requests, deliveries and Atelier's answers to them).
//!
//! Who is who: a personal token ([`FakeHub::add_token`]) acts as the user [`PAT_LOGIN`], an
//! installation token as the bot [`APP_BOT_LOGIN`].
//!
//! Modules: `state` holds the data, `shapes` renders it as GitHub's JSON, `rest` serves it,
//! `git_http` and `gitops` keep the bare repositories, `refs` reacts to moved branches, `ci`
//! plays the CI scripts, `webhooks` delivers events, `faults` injects failures, `auth` checks
//! credentials and `clock` writes GitHub's timestamps.

// The GitHub JSON shapes are large `json!` literals.
#![recursion_limit = "512"]

mod auth;
mod ci;
mod clock;
mod faults;
mod git_http;
mod gitops;
mod refs;
mod rest;
mod shapes;
mod state;
mod webhooks;

use serde_json::Value;
use state::{Comment, Hub, Pull, Review};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The private key of the test GitHub App (RSA 2048, PEM). A test key: it protects nothing.
pub const TEST_APP_PRIVATE_KEY: &str = include_str!("../fixtures/test-app-key.pem");
/// The public key matching [`TEST_APP_PRIVATE_KEY`], for [`FakeHub::register_app`].
pub const TEST_APP_PUBLIC_KEY: &str = include_str!("../fixtures/test-app-key.pub.pem");
/// The login a personal token acts as.
pub const PAT_LOGIN: &str = "fakehub-user";
/// The login an installation token acts as (a `Bot`).
pub const APP_BOT_LOGIN: &str = "fakehub-app[bot]";

/// How the hub behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Lifetime of the installation tokens it issues (default one hour).
    pub installation_token_ttl: Duration,
    /// Time between a CI run's start and its end (default 0: CI completes right after the push).
    pub ci_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            installation_token_ttl: Duration::from_secs(3600),
            ci_delay: Duration::ZERO,
        }
    }
}

/// The credentials a request carried, as the hub understood them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// `Authorization: Bearer x` or `token x` (not a JWT): the token `x`.
    Token(String),
    Basic {
        user: String,
        password: String,
    },
    /// A bearer JWT whose `iss` names an app (recorded whether or not it verifies).
    AppJwt {
        app_id: u64,
    },
}

/// One request the hub received. `status` is `None` while it has no answer (e.g. a hang).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub auth: Auth,
    pub status: Option<u16>,
}

/// One webhook delivery. `status` is Atelier's answer, `None` before it answered or when the
/// connection failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub event: String,
    pub action: Option<String>,
    pub status: Option<u16>,
    pub body: Value,
}

/// A failure injected before routing into the next `times` requests that match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `None` matches every method.
    pub method: Option<String>,
    /// Matches requests whose path contains this.
    pub path_contains: String,
    pub times: u32,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// This status with this body.
    Status { code: u16, body: String },
    /// 429 with `retry-after`.
    RateLimited { retry_after_secs: u64 },
    /// 403 "You have exceeded a secondary rate limit..." with `retry-after`.
    SecondaryLimit { retry_after_secs: u64 },
    /// 403 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset` this far ahead.
    PrimaryLimitExhausted { reset_in_secs: u64 },
    /// The request is accepted and never answered.
    Hang,
}

/// One CI check of a repository and what it does for each successive head of a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiScript {
    pub name: String,
    pub kind: CiKind,
    /// One per successive distinct head sha of a PR; the last repeats.
    pub outcomes: Vec<CiOutcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiKind {
    /// A GitHub Actions job: a check run with a job, steps and a log.
    CheckRun,
    /// A commit status (`context` = the name).
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CiOutcome {
    Pass,
    /// Stays in progress (pending).
    Pending,
    Fail {
        failing_step: String,
        log: String,
        /// (path, line, message)
        annotations: Vec<(String, u64, String)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSnapshot {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    /// "open" or "closed".
    pub state: String,
    pub merged: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentSnapshot {
    pub id: u64,
    pub author: String,
    pub body: String,
    pub in_reply_to: Option<u64>,
}

/// The handle on a running fake GitHub. Clones share the hub; the server stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct FakeHub {
    hub: Arc<Hub>,
    _guard: Arc<state::TaskGuard>,
}

impl FakeHub {
    /// Binds `127.0.0.1:0` and serves until the last handle is dropped.
    ///
    /// # Panics
    /// When the loopback port or the temp dir cannot be had (test support: nothing to recover).
    pub async fn start(opts: Options) -> FakeHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("fakehub: binding 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fakehub: local address: {e}"));
        let (hub, hooks_rx) = Hub::new(opts, addr);
        let hub = Arc::new(hub);
        let router = rest::router(hub.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let worker = tokio::spawn(webhooks::worker(hub.clone(), hooks_rx));
        FakeHub {
            hub,
            _guard: Arc::new(state::TaskGuard(vec![server, worker])),
        }
    }

    /// `http://127.0.0.1:PORT/api/v3`
    pub fn api_url(&self) -> String {
        self.hub.api_url()
    }

    /// `http://127.0.0.1:PORT`
    pub fn web_url(&self) -> String {
        self.hub.web_url()
    }

    /// `{web}/{owner}/{repo}.git`
    pub fn clone_url(&self, owner: &str, repo: &str) -> String {
        format!("{}/{owner}/{repo}.git", self.web_url())
    }

    /// Creates `owner/repo` as a bare repository owned by the hub, seeded with every branch of
    /// the local repository `from`, with `default_branch` as its default branch.
    ///
    /// # Panics
    /// When git fails.
    pub async fn create_repo(&self, owner: &str, repo: &str, from: &Path, default_branch: &str) {
        let bare = self.bare_path(owner, repo);
        if let Err(e) = gitops::create_bare(&self.hub.git_env(), &bare, from, default_branch).await
        {
            panic!("fakehub: creating {owner}/{repo}: {e}");
        }
        self.hub.with(|s| s.add_repo(owner, repo, default_branch));
    }

    /// The bare repository of `owner/repo` on disk.
    pub fn bare_path(&self, owner: &str, repo: &str) -> PathBuf {
        self.hub.bare_path(owner, repo)
    }

    /// Accepts `token` as a personal token (acting as [`PAT_LOGIN`]) for REST and git.
    pub fn add_token(&self, token: &str) {
        self.hub.with(|s| s.tokens.insert(token.to_string()));
    }

    /// Registers a GitHub App: JWTs with `iss` = `app_id` signed with the key matching
    /// `public_key_pem` may create tokens for `installation_id`.
    ///
    /// # Panics
    /// When the key is not an RSA public key in PEM.
    pub fn register_app(&self, app_id: u64, public_key_pem: &str, installation_id: u64) {
        let app = auth::App::new(app_id, public_key_pem, installation_id)
            .unwrap_or_else(|e| panic!("fakehub: registering app {app_id}: {e}"));
        self.hub.with(|s| s.apps.push(app));
    }

    /// How many installation tokens have been issued.
    pub fn installation_tokens_issued(&self) -> u32 {
        self.hub.with(|s| s.tokens_issued)
    }

    /// Delivers webhooks to `url`, signed with `secret` (enabled).
    pub fn set_webhook(&self, url: &str, secret: &str) {
        self.hub.with(|s| {
            s.webhook = Some(state::Webhook {
                url: url.to_string(),
                secret: secret.to_string(),
            });
            s.webhooks_enabled = true;
        });
    }

    /// Pauses (`false`) or resumes webhook deliveries; events while paused are not delivered.
    pub fn set_webhooks_enabled(&self, enabled: bool) {
        self.hub.with(|s| s.webhooks_enabled = enabled);
    }

    /// The CI checks of `owner/repo`, run for every new head of its pull requests.
    pub fn script_ci(&self, owner: &str, repo: &str, checks: Vec<CiScript>) {
        self.hub.with(|s| s.repo_mut(owner, repo).ci = checks);
    }

    /// The required status checks of `branch`; `None` makes the branch unprotected (404).
    pub fn set_required_checks(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
        required: Option<Vec<String>>,
    ) {
        self.hub.with(|s| {
            let r = s.repo_mut(owner, repo);
            match required {
                Some(checks) => r.required_checks.insert(branch.to_string(), checks),
                None => r.required_checks.remove(branch),
            };
        });
    }

    /// Overrides the mergeability of a PR; `None` computes it from the repository again.
    pub fn set_mergeable(&self, owner: &str, repo: &str, pr: u64, mergeable: Option<bool>) {
        self.hub
            .with(|s| s.pull_mut(owner, repo, pr).mergeable_override = mergeable);
    }

    /// Commits `path` = `content` on the default branch of the bare repository (as a human
    /// pushing to it would); returns the new commit's sha.
    ///
    /// # Panics
    /// When git fails.
    pub async fn commit_to_base(
        &self,
        owner: &str,
        repo: &str,
        path: &str,
        content: &str,
        message: &str,
    ) -> String {
        let branch = self
            .hub
            .with(|s| s.repo(owner, repo).default_branch.clone());
        let bare = self.bare_path(owner, repo);
        let before = refs::snapshot(&self.hub, &bare).await;
        let sha = gitops::commit_file(&self.hub.git_env(), &bare, &branch, path, content, message)
            .await
            .unwrap_or_else(|e| panic!("fakehub: committing to {owner}/{repo}: {e}"));
        refs::moved(&self.hub, owner, repo, &before, PAT_LOGIN).await;
        sha
    }

    /// A human comments on the PR's conversation (`issue_comment.created`); returns its id.
    pub fn comment(
        &self,
        owner: &str,
        repo: &str,
        pr: u64,
        author: &str,
        association: &str,
        body: &str,
    ) -> u64 {
        let comment = self.hub.with(|s| {
            let id = s.next_id();
            let c = Comment::new(id, pr, author, association, body);
            s.repo_mut(owner, repo).issue_comments.push(c.clone());
            c
        });
        webhooks::issue_comment(&self.hub, owner, repo, &comment, "created");
        comment.id
    }

    /// A human submits a review with state `COMMENTED` (`pull_request_review.submitted`).
    pub fn review(
        &self,
        owner: &str,
        repo: &str,
        pr: u64,
        author: &str,
        association: &str,
        body: &str,
    ) -> u64 {
        let review = self.hub.with(|s| {
            let id = s.next_id();
            let r = s.repo_mut(owner, repo);
            let commit_id = r.pull(pr).head_sha.clone();
            let review = Review {
                id,
                pr,
                user: author.to_string(),
                association: association.to_string(),
                body: body.to_string(),
                state: "COMMENTED".into(),
                commit_id,
                submitted_at: clock::now(),
            };
            r.reviews.push(review.clone());
            review
        });
        webhooks::review(&self.hub, owner, repo, &review);
        review.id
    }

    /// A human comments on `path`:`line` of the PR's diff, in a review of its own
    /// (`pull_request_review_comment.created`).
    #[allow(clippy::too_many_arguments)]
    pub fn review_comment(
        &self,
        owner: &str,
        repo: &str,
        pr: u64,
        author: &str,
        association: &str,
        path: &str,
        line: u64,
        body: &str,
    ) -> u64 {
        let comment = self.hub.with(|s| {
            let id = s.next_id();
            let review_id = s.next_id();
            let r = s.repo_mut(owner, repo);
            let head = r.pull(pr).head_sha.clone();
            let mut c = Comment::new(id, pr, author, association, body);
            c.review = Some(state::ReviewPlace {
                path: path.to_string(),
                line,
                commit_id: head.clone(),
                review_id,
            });
            r.reviews.push(Review {
                id: review_id,
                pr,
                user: author.to_string(),
                association: association.to_string(),
                body: String::new(),
                state: "COMMENTED".into(),
                commit_id: head,
                submitted_at: clock::now(),
            });
            r.review_comments.push(c.clone());
            c
        });
        webhooks::review_comment(&self.hub, owner, repo, &comment, "created");
        comment.id
    }

    /// A human merges the PR: a merge commit of head into base in the bare repository, the PR
    /// closed and merged, `pull_request.closed` with `merged: true`.
    ///
    /// # Panics
    /// When the PR is not open or git fails (e.g. a conflict).
    pub async fn merge(&self, owner: &str, repo: &str, pr: u64) {
        let pull = self.hub.with(|s| s.repo(owner, repo).pull(pr).clone());
        assert_eq!(
            pull.state, "open",
            "fakehub: merging PR #{pr}, which is closed"
        );
        let bare = self.bare_path(owner, repo);
        let before = refs::snapshot(&self.hub, &bare).await;
        let message = format!(
            "Merge pull request #{pr} from {owner}/{}\n\n{}",
            pull.head_ref, pull.title
        );
        let sha = gitops::merge(
            &self.hub.git_env(),
            &bare,
            &pull.base_ref,
            &pull.head_sha,
            &message,
        )
        .await
        .unwrap_or_else(|e| panic!("fakehub: merging PR #{pr} of {owner}/{repo}: {e}"));
        let pull = self.hub.with(|s| {
            let p = s.pull_mut(owner, repo, pr);
            let now = clock::now();
            p.state = "closed".into();
            p.merged = true;
            p.merged_at = Some(now.clone());
            p.closed_at = Some(now.clone());
            p.updated_at = now;
            p.merge_commit_sha = Some(sha);
            p.clone()
        });
        refs::moved(&self.hub, owner, repo, &before, PAT_LOGIN).await;
        webhooks::pull_request(&self.hub, owner, repo, &pull, "closed", PAT_LOGIN);
    }

    /// A human closes the PR unmerged (`pull_request.closed`, `merged: false`).
    pub fn close(&self, owner: &str, repo: &str, pr: u64) {
        let pull = self.hub.with(|s| {
            let p = s.pull_mut(owner, repo, pr);
            p.set_state("closed");
            p.clone()
        });
        webhooks::pull_request(&self.hub, owner, repo, &pull, "closed", PAT_LOGIN);
    }

    /// A human reopens the PR (`pull_request.reopened`).
    pub fn reopen(&self, owner: &str, repo: &str, pr: u64) {
        let pull = self.hub.with(|s| {
            let p = s.pull_mut(owner, repo, pr);
            p.set_state("open");
            p.clone()
        });
        webhooks::pull_request(&self.hub, owner, repo, &pull, "reopened", PAT_LOGIN);
    }

    /// The pull requests of `owner/repo`, oldest first.
    pub fn pulls(&self, owner: &str, repo: &str) -> Vec<PullSnapshot> {
        self.hub.with(|s| {
            s.repo(owner, repo)
                .pulls
                .iter()
                .map(Pull::snapshot)
                .collect()
        })
    }

    /// The conversation comments of a PR, bot replies included, oldest first.
    pub fn issue_comments(&self, owner: &str, repo: &str, pr: u64) -> Vec<CommentSnapshot> {
        self.hub.with(|s| {
            let r = s.repo(owner, repo);
            r.issue_comments
                .iter()
                .filter(|c| c.pr == pr)
                .map(Comment::snapshot)
                .collect()
        })
    }

    /// The review (diff) comments of a PR, replies included, oldest first.
    pub fn review_comments(&self, owner: &str, repo: &str, pr: u64) -> Vec<CommentSnapshot> {
        self.hub.with(|s| {
            let r = s.repo(owner, repo);
            r.review_comments
                .iter()
                .filter(|c| c.pr == pr)
                .map(Comment::snapshot)
                .collect()
        })
    }

    /// The reactions on a comment: `kind` is `"issue"` or `"review_comment"`; (user, content).
    pub fn reactions(&self, kind: &str, comment_id: u64) -> Vec<(String, String)> {
        self.hub.with(|s| {
            s.reactions
                .iter()
                .filter(|r| r.kind == kind && r.comment_id == comment_id)
                .map(|r| (r.user.clone(), r.content.clone()))
                .collect()
        })
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.hub.with(|s| s.requests.clone())
    }

    /// Every webhook delivery so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.hub
            .with(|s| s.deliveries.iter().map(|d| d.delivery.clone()).collect())
    }

    /// Sends a recorded delivery again (same id, body and signature, as GitHub's "Redeliver");
    /// returns Atelier's answer, `None` for an unknown id or a failed connection.
    pub async fn redeliver(&self, delivery_id: &str) -> Option<u16> {
        webhooks::redeliver(&self.hub, delivery_id).await
    }

    /// Posts `body` as event `event` with the given signature header (none when `None`);
    /// returns Atelier's answer (0 when the connection failed). For forged and unsigned tests.
    pub async fn deliver_raw(
        &self,
        event: &str,
        body: &[u8],
        signature: Option<&str>,
        delivery_id: &str,
    ) -> u16 {
        webhooks::deliver_raw(&self.hub, event, body, signature, delivery_id).await
    }

    /// Injects `fault` into the next matching requests (checked before routing).
    pub fn fail_next(&self, fault: Fault) {
        self.hub.with(|s| s.faults.push(fault));
    }
}
