//! The hub's data: repositories with their pull requests, comments, reviews, check runs and
//! statuses; credentials; webhook settings; the request and delivery logs; pending faults.
//! Everything sits behind one mutex; no lock is held across an `.await`.

use crate::{
    CiScript, CommentSnapshot, Fault, Options, PullSnapshot, RecordedRequest, auth, clock, webhooks,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::mpsc;

/// Aborts the hub's server and webhook tasks when the last handle goes.
pub(crate) struct TaskGuard(pub Vec<tokio::task::JoinHandle<()>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

pub(crate) struct Hub {
    pub opts: Options,
    pub addr: SocketAddr,
    /// Holds `repos/` (the git project root) and `home/` (git's HOME).
    pub dir: tempfile::TempDir,
    pub hooks: mpsc::UnboundedSender<webhooks::Job>,
    pub http: reqwest::Client,
    state: Mutex<State>,
}

impl Hub {
    pub fn new(opts: Options, addr: SocketAddr) -> (Hub, mpsc::UnboundedReceiver<webhooks::Job>) {
        let dir = tempfile::Builder::new()
            .prefix("fakehub-")
            .tempdir()
            .unwrap_or_else(|e| panic!("fakehub: creating its temp dir: {e}"));
        let _ = std::fs::create_dir_all(dir.path().join("repos"));
        let _ = std::fs::create_dir_all(dir.path().join("home"));
        let (tx, rx) = mpsc::unbounded_channel();
        let hub = Hub {
            opts,
            addr,
            dir,
            hooks: tx,
            http: reqwest::Client::new(),
            state: Mutex::new(State {
                next_id: 1000,
                rate_reset: clock::now_secs() + 3600,
                ..State::default()
            }),
        };
        (hub, rx)
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.lock())
    }

    pub fn web_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api_url(&self) -> String {
        format!("{}/api/v3", self.web_url())
    }

    pub fn repos_dir(&self) -> PathBuf {
        self.dir.path().join("repos")
    }

    pub fn bare_path(&self, owner: &str, repo: &str) -> PathBuf {
        self.repos_dir().join(owner).join(format!("{repo}.git"))
    }

    /// The environment every git command of the hub runs with (nothing inherited).
    pub fn git_env(&self) -> Vec<(String, String)> {
        let home = self.dir.path().join("home").display().to_string();
        vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), home),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
            ("GIT_TERMINAL_PROMPT".into(), "0".into()),
            ("GIT_AUTHOR_NAME".into(), "Fakehub".into()),
            ("GIT_AUTHOR_EMAIL".into(), "fakehub@example.invalid".into()),
            ("GIT_COMMITTER_NAME".into(), "Fakehub".into()),
            (
                "GIT_COMMITTER_EMAIL".into(),
                "fakehub@example.invalid".into(),
            ),
        ]
    }
}

#[derive(Default)]
pub(crate) struct State {
    next_id: u64,
    pub repos: BTreeMap<(String, String), Repo>,
    pub tokens: HashSet<String>,
    pub apps: Vec<auth::App>,
    /// Installation token → its expiry (unix seconds).
    pub installation_tokens: HashMap<String, u64>,
    pub tokens_issued: u32,
    pub webhook: Option<Webhook>,
    pub webhooks_enabled: bool,
    pub requests: Vec<RecordedRequest>,
    pub deliveries: Vec<webhooks::Recorded>,
    pub faults: Vec<Fault>,
    pub reactions: Vec<Reaction>,
    pub rate_used: u32,
    pub rate_reset: u64,
}

pub(crate) struct Webhook {
    pub url: String,
    pub secret: String,
}

impl State {
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn add_repo(&mut self, owner: &str, name: &str, default_branch: &str) {
        let id = self.next_id();
        self.repos.insert(
            (owner.to_string(), name.to_string()),
            Repo {
                id,
                owner: owner.to_string(),
                name: name.to_string(),
                default_branch: default_branch.to_string(),
                created_at: clock::now(),
                ..Repo::default()
            },
        );
    }

    pub fn find_repo(&self, owner: &str, name: &str) -> Option<&Repo> {
        self.repos.get(&(owner.to_string(), name.to_string()))
    }

    pub fn find_repo_mut(&mut self, owner: &str, name: &str) -> Option<&mut Repo> {
        self.repos.get_mut(&(owner.to_string(), name.to_string()))
    }

    /// For the control API: a repository the test must have created.
    pub fn repo(&self, owner: &str, name: &str) -> &Repo {
        self.find_repo(owner, name)
            .unwrap_or_else(|| panic!("fakehub: no repository {owner}/{name}"))
    }

    pub fn repo_mut(&mut self, owner: &str, name: &str) -> &mut Repo {
        self.find_repo_mut(owner, name)
            .unwrap_or_else(|| panic!("fakehub: no repository {owner}/{name}"))
    }

    pub fn pull_mut(&mut self, owner: &str, name: &str, number: u64) -> &mut Pull {
        self.repo_mut(owner, name).pull_mut(number)
    }

    pub fn installation_id(&self) -> Option<u64> {
        self.apps.first().map(|a| a.installation_id)
    }
}

#[derive(Default, Clone)]
pub(crate) struct Repo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub default_branch: String,
    pub created_at: String,
    pub pulls: Vec<Pull>,
    pub issue_comments: Vec<Comment>,
    pub review_comments: Vec<Comment>,
    pub reviews: Vec<Review>,
    pub check_runs: Vec<CheckRun>,
    pub statuses: Vec<Status>,
    pub ci: Vec<CiScript>,
    pub required_checks: HashMap<String, Vec<String>>,
}

impl Repo {
    pub fn find_pull(&self, number: u64) -> Option<&Pull> {
        self.pulls.iter().find(|p| p.number == number)
    }

    pub fn pull(&self, number: u64) -> &Pull {
        self.find_pull(number)
            .unwrap_or_else(|| panic!("fakehub: no PR #{number} in {}", self.name))
    }

    pub fn pull_mut(&mut self, number: u64) -> &mut Pull {
        let name = self.name.clone();
        self.pulls
            .iter_mut()
            .find(|p| p.number == number)
            .unwrap_or_else(|| panic!("fakehub: no PR #{number} in {name}"))
    }

    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Pull {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: String,
    pub user: String,
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    pub base_sha: String,
    /// "open" or "closed".
    pub state: String,
    pub merged: bool,
    pub merged_at: Option<String>,
    pub closed_at: Option<String>,
    pub merge_commit_sha: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub mergeable_override: Option<bool>,
    /// Every distinct head the PR has had, in order (the CI outcome index).
    pub heads: Vec<String>,
}

impl Pull {
    pub fn snapshot(&self) -> PullSnapshot {
        PullSnapshot {
            number: self.number,
            title: self.title.clone(),
            body: self.body.clone(),
            head_ref: self.head_ref.clone(),
            head_sha: self.head_sha.clone(),
            base_ref: self.base_ref.clone(),
            state: self.state.clone(),
            merged: self.merged,
        }
    }

    /// Opens or closes (unmerged).
    pub fn set_state(&mut self, state: &str) {
        let now = clock::now();
        self.state = state.to_string();
        self.closed_at = (state == "closed").then(|| now.clone());
        self.updated_at = now;
    }
}

/// Where a review comment sits.
#[derive(Clone, Debug)]
pub(crate) struct ReviewPlace {
    pub path: String,
    pub line: u64,
    pub commit_id: String,
    pub review_id: u64,
}

/// An issue comment, or a review comment when `review` is set.
#[derive(Clone, Debug)]
pub(crate) struct Comment {
    pub id: u64,
    pub pr: u64,
    pub user: String,
    pub association: String,
    pub body: String,
    pub created_at: String,
    pub updated_at: String,
    pub in_reply_to: Option<u64>,
    pub review: Option<ReviewPlace>,
}

impl Comment {
    pub fn new(id: u64, pr: u64, user: &str, association: &str, body: &str) -> Comment {
        let now = clock::now();
        Comment {
            id,
            pr,
            user: user.to_string(),
            association: association.to_string(),
            body: body.to_string(),
            created_at: now.clone(),
            updated_at: now,
            in_reply_to: None,
            review: None,
        }
    }

    pub fn snapshot(&self) -> CommentSnapshot {
        CommentSnapshot {
            id: self.id,
            author: self.user.clone(),
            body: self.body.clone(),
            in_reply_to: self.in_reply_to,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Review {
    pub id: u64,
    pub pr: u64,
    pub user: String,
    pub association: String,
    pub body: String,
    pub state: String,
    pub commit_id: String,
    pub submitted_at: String,
}

#[derive(Clone, Debug)]
pub(crate) struct Reaction {
    pub id: u64,
    /// "issue" or "review_comment".
    pub kind: String,
    pub comment_id: u64,
    pub user: String,
    pub content: String,
    pub created_at: String,
}

/// A GitHub Actions job, seen through the checks API as a check run (same id).
#[derive(Clone, Debug)]
pub(crate) struct CheckRun {
    pub id: u64,
    pub run_id: u64,
    pub suite_id: u64,
    pub name: String,
    pub head_sha: String,
    pub head_ref: String,
    pub pr: u64,
    /// "queued", "in_progress" or "completed".
    pub status: String,
    pub conclusion: Option<String>,
    pub started_at: String,
    pub completed_at: Option<String>,
    /// Set for a failure: the failing step, its log and annotations (path, line, message).
    pub failure: Option<Failure>,
}

#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub step: String,
    pub log: String,
    pub annotations: Vec<(String, u64, String)>,
}

#[derive(Clone, Debug)]
pub(crate) struct Status {
    pub id: u64,
    pub sha: String,
    pub context: String,
    /// "pending", "success", "failure" or "error".
    pub state: String,
    pub description: String,
    pub created_at: String,
    pub updated_at: String,
}
