//! The subset of GitHub's REST API responses the forge reads, as serde structs. Fields GitHub
//! may omit or send as `null` are `Option` or defaulted; everything else is ignored.

use serde::Deserialize;

/// An error body: `{"message": …, "errors": [{"message"|"code": …}]}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ApiError {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub errors: Vec<ApiErrorDetail>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApiErrorDetail {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

/// `POST /app/installations/{id}/access_tokens`.
#[derive(Debug, Deserialize)]
pub(crate) struct AccessToken {
    pub token: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct User {
    pub login: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BranchRef {
    #[serde(rename = "ref")]
    pub name: String,
    pub sha: String,
}

/// A pull request (`GET /pulls/{n}`, or an item of `GET /pulls`, which lacks `merged` and the
/// mergeability fields).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Pull {
    pub number: u64,
    pub html_url: String,
    /// `open` or `closed`.
    pub state: String,
    #[serde(default)]
    pub merged: Option<bool>,
    #[serde(default)]
    pub merged_at: Option<String>,
    #[serde(default)]
    pub mergeable: Option<bool>,
    #[serde(default)]
    pub mergeable_state: Option<String>,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub head: BranchRef,
    pub base: BranchRef,
}

impl Pull {
    pub fn is_merged(&self) -> bool {
        self.merged.unwrap_or(false) || self.merged_at.is_some()
    }
}

/// `GET /commits/{sha}/check-runs`.
#[derive(Debug, Deserialize)]
pub(crate) struct CheckRunList {
    #[serde(default)]
    pub check_runs: Vec<CheckRun>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CheckRun {
    pub id: u64,
    pub name: String,
    /// `queued`, `in_progress`, `completed` (and `waiting`, `requested`, `pending`).
    pub status: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub details_url: Option<String>,
    #[serde(default)]
    pub output: Option<CheckOutput>,
    #[serde(default)]
    pub app: Option<App>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CheckOutput {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct App {
    #[serde(default)]
    pub slug: Option<String>,
}

/// `GET /commits/{sha}/status`.
#[derive(Debug, Deserialize)]
pub(crate) struct CombinedStatus {
    #[serde(default)]
    pub statuses: Vec<Status>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Status {
    #[serde(default)]
    pub id: u64,
    pub context: String,
    /// `success`, `failure`, `error`, `pending`.
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
}

/// `GET /branches/{b}/protection/required_status_checks`.
#[derive(Debug, Deserialize)]
pub(crate) struct RequiredChecks {
    #[serde(default)]
    pub contexts: Vec<String>,
    #[serde(default)]
    pub checks: Vec<RequiredCheck>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RequiredCheck {
    pub context: String,
}

/// An item of `GET /check-runs/{id}/annotations`.
#[derive(Debug, Deserialize)]
pub(crate) struct Annotation {
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub start_line: u64,
    #[serde(default)]
    pub end_line: u64,
    #[serde(default)]
    pub annotation_level: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub message: String,
}

/// `GET /actions/jobs/{id}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Job {
    #[serde(default)]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Step {
    pub name: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub number: u64,
}

/// An item of `GET /issues/{n}/comments`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct IssueComment {
    pub id: u64,
    pub user: Option<User>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub author_association: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// An item of `GET /pulls/{n}/reviews`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Review {
    pub id: u64,
    pub user: Option<User>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub author_association: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub submitted_at: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
}

/// An item of `GET /pulls/{n}/comments` (inline review comments).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ReviewComment {
    pub id: u64,
    pub user: Option<User>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub author_association: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(default)]
    pub original_line: Option<u64>,
    #[serde(default)]
    pub in_reply_to_id: Option<u64>,
}
