//! Where pull requests live. The [`Forge`] trait is the engine's only view of a forge: publish a
//! task branch as a pull request (idempotently), follow it (state, mergeability, checks and their
//! failures, comments), answer comments, merge it where the forge lets Atelier merge, and delete
//! the pushed task branch. Each forge (the embedded [`LocalForge`], GitHub) is one
//! implementation; the engine never talks to a forge any other way.

mod error;
mod github;
mod local;

use std::path::{Path, PathBuf};

pub use error::ForgeError;
pub use github::{GitHubAuth, GitHubConfig, GitHubForge, parse_github_remote};
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

    /// The pull request as the forge sees it now: open/closed/merged, its head and whether it
    /// merges cleanly into its base.
    async fn pr_state(&self, repo: &Path, pr: &PullRequest) -> Result<PrState, ForgeError>;

    /// The checks (CI) reported for commit `head_sha` of the pull request. A forge without CI
    /// reports none, which counts as passed.
    async fn checks(
        &self,
        repo: &Path,
        pr: &PullRequest,
        head_sha: &str,
    ) -> Result<Checks, ForgeError>;

    /// What went wrong in the failed `checks`: their annotations and the failing job's log,
    /// trimmed to the failing step, so an agent can fix the real error.
    async fn check_failures(
        &self,
        pr: &PullRequest,
        failed: &[Check],
    ) -> Result<Vec<CheckFailure>, ForgeError>;

    /// Every comment on the pull request (conversation comments, review bodies and inline review
    /// comments), oldest first. The engine remembers which it has seen.
    async fn comments(&self, pr: &PullRequest) -> Result<Vec<Comment>, ForgeError>;

    /// Marks `comment` as received (on GitHub a 👀 reaction). Idempotent.
    async fn acknowledge(&self, pr: &PullRequest, comment: &Comment) -> Result<(), ForgeError>;

    /// Replies once to `comment` (in its thread where the forge has threads) with `body`.
    /// Idempotent per `key`: the reply carries a hidden marker made from `key`, and a reply
    /// with that marker already present is not posted again.
    async fn reply(
        &self,
        pr: &PullRequest,
        comment: &Comment,
        key: &str,
        body: &str,
    ) -> Result<(), ForgeError>;

    /// Fetches the base branch `base` of `remote` into `refs/remotes/<remote>/<base>` of the
    /// repository (with the forge's credentials, given only to that git process) and returns its
    /// commit, so an agent can rebase on it.
    async fn fetch_base(&self, repo: &Path, remote: &str, base: &str)
    -> Result<String, ForgeError>;
}

/// The hidden marker a reply idempotent per `key` carries (an HTML comment, invisible when
/// rendered).
pub fn reply_marker(key: &str) -> String {
    format!("{REPLY_MARKER_PREFIX}{key} -->")
}

/// How every reply marker starts (comments carrying it are Atelier's own).
pub const REPLY_MARKER_PREFIX: &str = "<!-- atelier:reply:";

/// A pull request's state on the forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrState {
    /// Open (not closed, not merged).
    pub open: bool,
    pub merged: bool,
    /// The commit the forge has as the pull request's head.
    pub head_sha: String,
    pub mergeable: Mergeable,
}

/// Whether a pull request merges cleanly into its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mergeable {
    Yes,
    /// The base moved and the branch conflicts with it.
    Conflicting,
    /// The forge has not computed it yet (GitHub computes it in the background).
    Unknown,
}

/// Where a check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    Pending,
    Passed,
    Failed,
}

/// What reported a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// A check run (GitHub Actions jobs are check runs whose id is the job id).
    CheckRun,
    /// A commit status (`context`).
    Status,
}

/// One check of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The check run's name or the status's context.
    pub name: String,
    pub kind: CheckKind,
    pub state: CheckState,
    /// The check run id (`None` for a status).
    pub id: Option<u64>,
    /// Where a human sees it.
    pub url: Option<String>,
}

/// The checks of one commit, and which of them are required.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checks {
    pub head_sha: String,
    pub checks: Vec<Check>,
    /// Names of the checks branch protection requires, when readable; `None` means every
    /// check counts.
    pub required: Option<Vec<String>>,
}

impl Checks {
    /// The checks that count: the required ones when known, else all.
    pub fn counted(&self) -> Vec<&Check> {
        match &self.required {
            Some(required) => self
                .checks
                .iter()
                .filter(|c| required.iter().any(|r| r == &c.name))
                .collect(),
            None => self.checks.iter().collect(),
        }
    }

    /// Failed when a counted check failed; pending while one is pending or a required check has
    /// not reported yet; passed otherwise (no checks at all is passed).
    pub fn overall(&self) -> CheckState {
        let counted = self.counted();
        if counted.iter().any(|c| c.state == CheckState::Failed) {
            return CheckState::Failed;
        }
        let missing_required = self.required.as_ref().is_some_and(|required| {
            required
                .iter()
                .any(|r| !self.checks.iter().any(|c| &c.name == r))
        });
        if missing_required || counted.iter().any(|c| c.state == CheckState::Pending) {
            return CheckState::Pending;
        }
        CheckState::Passed
    }

    /// The counted checks that failed.
    pub fn failed(&self) -> Vec<Check> {
        self.counted()
            .into_iter()
            .filter(|c| c.state == CheckState::Failed)
            .cloned()
            .collect()
    }
}

/// Why one check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    pub name: String,
    pub url: Option<String>,
    /// The check's own summary line, if it gave one.
    pub summary: Option<String>,
    pub annotations: Vec<Annotation>,
    /// The failing job's log, trimmed to the failing step (and to a size limit).
    pub log_excerpt: Option<String>,
}

/// One annotation of a check run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub path: String,
    pub start_line: u64,
    pub end_line: u64,
    /// `notice`, `warning` or `failure`.
    pub level: String,
    pub title: Option<String>,
    pub message: String,
}

/// Where a comment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommentKind {
    /// A conversation comment on the pull request.
    Issue,
    /// The body of a submitted review.
    Review,
    /// An inline comment on a line of the diff.
    ReviewComment,
}

impl CommentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CommentKind::Issue => "issue",
            CommentKind::Review => "review",
            CommentKind::ReviewComment => "review_comment",
        }
    }

    pub fn parse(s: &str) -> Option<CommentKind> {
        [
            CommentKind::Issue,
            CommentKind::Review,
            CommentKind::ReviewComment,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A comment on a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub kind: CommentKind,
    /// The forge's id (unique per kind).
    pub id: u64,
    /// The author's login.
    pub author: String,
    /// GitHub's author association (`OWNER`, `MEMBER`, `COLLABORATOR`, `CONTRIBUTOR`, `NONE` …).
    pub association: String,
    pub body: String,
    /// File and line of an inline review comment.
    pub path: Option<String>,
    pub line: Option<u64>,
    pub url: Option<String>,
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
    /// The forge's number for it (GitHub's PR number); `None` on the local forge.
    pub number: Option<u64>,
    pub branch: String,
    pub base: String,
    /// The commit last pushed for it.
    pub head_sha: String,
    pub remote: String,
}
