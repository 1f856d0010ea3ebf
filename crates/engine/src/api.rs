//! The engine's request and view types: what the HTTP API sends and receives and what the CLI
//! deserializes. Plain data, serde both ways.

use domain::{ProjectId, RunId, RunStatus, Signal, Stage, TaskId, TaskState, TranscriptEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Items per page of a list when the caller names no `limit`.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;
/// The largest `limit` of a list.
pub const MAX_PAGE_LIMIT: u32 = 500;

/// Which page of a list (`GET /api/tasks`, `GET /api/projects`): the items with an id above
/// `after` (an exclusive cursor; lists are in ascending id order), at most `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<i64>,
    /// 1 to [`MAX_PAGE_LIMIT`].
    pub limit: u32,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            after: None,
            limit: DEFAULT_PAGE_LIMIT,
        }
    }
}

/// One page of a list and the cursor of the next page (`None` on the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The `after` of the next page: the id of this page's last item, when more follow.
    pub next: Option<i64>,
}

/// Harness, model and effort for one role (stage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// `claude-code`, `codex`, `opencode` or `scripted`.
    pub harness: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// Scripted harness only: the scenario file this role plays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<PathBuf>,
    /// Wall-clock limit of one run of this stage, in seconds (default: the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Model endpoint for the harness (e.g. a self-hosted gateway or the test simulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Name of the variable (in `env`) that holds the endpoint's API key, where the harness
    /// needs one named by the operator (Codex, OpenCode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Retries the harness itself makes on a failing request before giving up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// `one-shot` (one process per turn) or `long-lived` (one process for the whole run, kept
    /// while it waits for an answer; Claude Code and Codex). Default: the harness's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<domain::SessionMode>,
    /// Extra environment of this role's agent (e.g. its credentials), passed explicitly: the
    /// agent inherits nothing else from the server.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// Per-project settings. Every field has a sensible default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectSettings {
    /// Role per stage; a stage of the standard pipeline (plan, implement, review, pr) without one
    /// gets Claude Code with model `sonnet` when the project is added. Without their own,
    /// `second_review` and `qa` use the `review` role, `refine` the `implement` role.
    pub roles: BTreeMap<Stage, RoleConfig>,
    /// The git remote branches are pushed to.
    pub remote: String,
    /// Files of the repository (relative paths, e.g. `.env`) linked into every worktree.
    pub env_files: Vec<String>,
    /// Shell command run in a new worktree (`sh -c`), with `ATELIER_PORT` set.
    pub setup_hook: Option<String>,
    pub setup_timeout_secs: u64,
    /// Agents of this project that may run at once.
    pub slots: u32,
    /// Ports reserved per task (`ATELIER_PORT` is the first).
    pub port_block: u16,
    pub max_review_rounds: u32,
    pub max_total_runs: u32,
    /// Keep the task branch on the remote when a task is deleted (by default deleting a task
    /// deletes the branch its pull request was pushed as).
    pub keep_remote_branch_on_delete: bool,
    /// What the project's agents may see and get beyond their own task.
    pub sandbox: SandboxSettings,
    /// Pr-stage runs that may start to fix failing checks before the task blocks `ci_failing`.
    pub max_ci_fix_rounds: u32,
    /// Pr-stage runs that may start to rebase on a moved base before the task blocks.
    pub max_conflict_rounds: u32,
    /// Where the project's pull requests live: the embedded local forge (default) or GitHub.
    pub forge: ForgeSettings,
    /// The same tool call with the same input this many times in a row interrupts the run
    /// with a nudge; twice in a row blocks the task `looping` (at least 2).
    pub max_repeated_tool_calls: u32,
    /// The pipeline a task runs when its creation names none: a built-in (`standard`: plan →
    /// gate → implement ⇄ review → pr; `full`: … → qa → refine → pr; `yolo`: implement → pr, no
    /// plan, no gate, no review) or one defined in `pipelines` (checked when the settings are
    /// saved). A pipeline of the repository's `.atelier/pipelines.toml` is chosen per task.
    pub default_pipeline: String,
    /// The project's own pipeline definitions: the TOML of a pipelines file (docs/pipelines.md),
    /// checked when the settings are saved. Prompt files they name are read from the
    /// repository's `.atelier/` folder on the base branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipelines: Option<String>,
    /// The project's own prompt texts, replacing the server's (and the built-in ones) for this
    /// project's tasks: keyed `plan`, `implement`, `review`, `qa`, `refine`, `pr` or
    /// `plan-template`, each checked when the settings are saved (an unknown `{{variable}}` is
    /// refused naming its line). A task keeps the texts it was created with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prompts: BTreeMap<String, String>,
}

/// Where a project's pull requests live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ForgeSettings {
    /// The embedded forge: a pull request is the task branch pushed to the project's remote.
    #[default]
    Local,
    /// GitHub or GitHub Enterprise Server.
    Github(Box<GitHubSettings>),
}

/// A project's GitHub repository, credentials and follow-up rules. Secrets (`token`,
/// `app_private_key`, `webhook_secret`) are stored sealed and never shown by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GitHubSettings {
    /// REST API base: `https://api.github.com`, or `https://HOST/api/v3` for Enterprise Server.
    pub api_url: String,
    pub owner: String,
    pub repo: String,
    /// The HTTPS URL the server pushes to and fetches from (with the token, given only to git).
    pub clone_url: String,
    /// A fine-grained personal access token (or classic token); or use the App fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
    /// The App's private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_private_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    /// The secret GitHub signs webhook deliveries with (`X-Hub-Signature-256`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// A comment must mention this to start a run.
    pub trigger: String,
    /// Author associations whose comments are acted on.
    pub trusted_associations: Vec<String>,
    /// Logins whose comments are acted on whatever their association.
    pub trusted_users: Vec<String>,
    /// Comments arriving within this many seconds of the first are batched into one run.
    pub comment_window_secs: u64,
    /// How often the pull request is polled (ETag-conditional, so an unchanged one is cheap).
    /// With a webhook it only catches missed deliveries.
    pub poll_secs: u64,
    /// Delete the task branch on GitHub once the pull request is merged.
    pub delete_branch_on_merge: bool,
    /// A pushed head with no checks at all counts as green only after this many seconds (CI
    /// registers its checks a moment after a push); checks required by branch protection are
    /// always waited for.
    pub checks_grace_secs: u64,
}

impl Default for GitHubSettings {
    fn default() -> Self {
        GitHubSettings {
            api_url: "https://api.github.com".into(),
            owner: String::new(),
            repo: String::new(),
            clone_url: String::new(),
            token: None,
            app_id: None,
            app_private_key: None,
            installation_id: None,
            webhook_secret: None,
            trigger: "@atelier".into(),
            trusted_associations: vec!["OWNER".into(), "MEMBER".into(), "COLLABORATOR".into()],
            trusted_users: vec![],
            comment_window_secs: 30,
            poll_secs: 60,
            delete_branch_on_merge: false,
            checks_grace_secs: 20,
        }
    }
}

/// A project's additions to its agents' sandbox. Paths are absolute, outside the data directory
/// and the agents' homes; each is mounted at the same path inside.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    /// Shown read-only (e.g. a toolchain: `/root/.rustup`, `/root/.cargo`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub read_only: Vec<std::path::PathBuf>,
    /// Shown writable (e.g. a package cache shared by the project's tasks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub writable: Vec<std::path::PathBuf>,
    /// Extra environment of every agent of the project (and of its setup hook).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

impl Default for ProjectSettings {
    fn default() -> Self {
        ProjectSettings {
            roles: BTreeMap::new(),
            remote: "origin".into(),
            env_files: vec![],
            setup_hook: None,
            setup_timeout_secs: 300,
            slots: 4,
            port_block: 10,
            max_review_rounds: 3,
            max_total_runs: 25,
            keep_remote_branch_on_delete: false,
            sandbox: SandboxSettings::default(),
            max_ci_fix_rounds: 3,
            max_conflict_rounds: 3,
            forge: ForgeSettings::Local,
            max_repeated_tool_calls: 5,
            default_pipeline: domain::Pipeline::default().name().into(),
            pipelines: None,
            prompts: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewProject {
    pub path: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub settings: Option<ProjectSettings>,
    /// Put the project's pull requests on GitHub: the repository is recognised from the
    /// project's remote (https or ssh form), these credentials are sealed at rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GitHubSetup>,
}

/// How to reach a project's GitHub repository (`atelier project add --forge github`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GitHubSetup {
    /// REST API base; derived from the remote's host when absent (`https://api.github.com` for
    /// github.com, `https://HOST/api/v3` for Enterprise Server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_private_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProjectView {
    pub id: ProjectId,
    pub name: String,
    pub path: String,
    pub default_branch: String,
    pub settings: ProjectSettings,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewTask {
    /// Project name or id.
    pub project: String,
    pub title: String,
    /// The request, in markdown.
    pub body: String,
    #[serde(default)]
    pub priority: i64,
    /// Technical owners review the plan; non-technical owners pass the gate automatically.
    #[serde(default = "yes")]
    pub technical: bool,
    /// The pipeline the task runs: a built-in (`standard`, `full`, `yolo`) or one the project
    /// defines (default: the project's `default_pipeline`). An unknown name, or a definition
    /// with problems, is refused with the reason.
    #[serde(default)]
    pub pipeline: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskView {
    pub id: TaskId,
    pub project: String,
    pub title: String,
    pub key: String,
    pub branch: String,
    pub state: TaskState,
    pub priority: i64,
    pub technical: bool,
    pub worktree: Option<String>,
    pub doc_path: String,
    pub port: u16,
    pub review_rounds: u32,
    pub runs_started: u32,
    pub created_at: i64,
    pub updated_at: i64,
    /// The pipeline the task runs (`standard`, `yolo`).
    pub pipeline: String,
    /// The address of the task's pull request once one is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request_url: Option<String>,
    /// Its checks (CI) together, for its head: `pending`, `passed`, `failed` or `none` (nothing
    /// reported, nothing required); `pending` too while a new head's checks are not read yet.
    /// Absent without a pull request, or before its checks were first read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunView {
    pub id: RunId,
    pub stage: Stage,
    pub status: RunStatus,
    pub iteration: u32,
    pub turns: u32,
    pub session: Option<String>,
    pub signal: Option<Signal>,
    pub reason: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// The harness the agent ran on (absent for runs recorded by older versions or not started).
    #[serde(default)]
    pub harness: Option<String>,
    /// The model the agent was given (the owner's own model for the stage over the role's).
    #[serde(default)]
    pub model: Option<String>,
    /// The commit a reviewer's verdict was given on (the task branch's head when it
    /// signalled); `None` for other runs and verdicts recorded before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_commit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PullRequestView {
    pub url: String,
    /// The title it was opened with on the forge (Atelier opens it with the task's title).
    #[serde(default)]
    pub title: String,
    pub branch: String,
    pub base: String,
    pub head_sha: String,
    pub merged: bool,
    pub created_at: i64,
    /// The checks (CI) the last follow-up read; absent until one has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<ChecksView>,
}

/// The checks (CI) last read for a pull request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChecksView {
    /// The commit they were read on: when it is not the pull request's head, they are an
    /// earlier push's and the new head's are not read yet.
    pub head_sha: String,
    /// `pending`, `passed` or `failed`: the checks that count, together; `pending` also while
    /// the first checks of a push are awaited; `none` when nothing reported and nothing is
    /// required (which counts as passed).
    pub overall: String,
    pub checks: Vec<CheckView>,
    /// When they were last read (ms since the epoch).
    pub read_at: i64,
}

/// One check of a pull request's commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CheckView {
    /// The check run's name or the commit status's context.
    pub name: String,
    /// `pending`, `passed` or `failed`.
    pub state: String,
    /// Where a human sees it, as the forge reported it.
    pub url: Option<String>,
    /// Whether it counts (branch protection requires it, or nothing is known to be required).
    pub counted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskDetail {
    pub task: TaskView,
    pub runs: Vec<RunView>,
    pub pull_request: Option<PullRequestView>,
    /// The task doc's current markdown.
    pub doc: String,
    /// Comments seen on the pull request: taken up by a run, waiting, or ignored and why.
    #[serde(default)]
    pub comments: Vec<CommentView>,
    /// Whether the task moves on without a human (an agent queued or running, or a pull request
    /// waiting for its checks); `task logs --follow` ends when it does not.
    #[serde(default)]
    pub in_motion: bool,
    /// What the caller may do to the task now: the actions the pipeline's rules accept in its
    /// current state (a user interface offers exactly these).
    #[serde(default)]
    pub actions: Vec<TaskAction>,
}

/// Something a user may do to a task (`TaskDetail.actions`), as `{"action": "…"}`; a run carries
/// its stage: `{"action": "run", "stage": "review"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum TaskAction {
    /// `POST /api/tasks/{id}/approve`.
    ApprovePlan,
    /// `POST /api/tasks/{id}/request-changes`.
    RequestPlanChanges,
    /// `POST /api/tasks/{id}/answer`.
    Answer,
    /// `POST /api/tasks/{id}/stop`.
    Stop,
    /// `POST /api/tasks/{id}/resume`.
    Resume,
    /// `POST /api/tasks/{id}/run` with `{"stage": …}`.
    Run { stage: Stage },
    /// `POST /api/tasks/{id}/merge`.
    Merge,
    /// `DELETE /api/tasks/{id}`.
    Delete,
    /// `PUT /api/tasks/{id}/doc`: the caller may edit the task doc now (the task's owner, the
    /// project's owners and administrators, while no agent of the task is at work).
    EditDoc,
}

impl From<domain::Action> for TaskAction {
    fn from(action: domain::Action) -> Self {
        match action {
            domain::Action::ApprovePlan => TaskAction::ApprovePlan,
            domain::Action::RequestPlanChanges => TaskAction::RequestPlanChanges,
            domain::Action::Answer => TaskAction::Answer,
            domain::Action::Stop => TaskAction::Stop,
            domain::Action::Resume => TaskAction::Resume,
            domain::Action::Run { stage } => TaskAction::Run { stage },
            domain::Action::Merge => TaskAction::Merge,
            domain::Action::Delete => TaskAction::Delete,
        }
    }
}

pub use crate::attachments::AttachmentView;
pub use crate::prompt_admin::PromptView;

/// The body of `PUT /api/prompts/{file}`: the override's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptUpdate {
    pub text: String,
}

/// The body of `PUT /api/tasks/{id}/attachments/{name}`: the file's content in base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentUpload {
    pub content_base64: String,
}

/// The body of `PUT /api/tasks/{id}/doc`: the task doc's new text (markdown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocUpdate {
    pub doc: String,
}

/// The body of `POST /api/tasks/{id}/request-changes`: what the planner should change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanChangesRequest {
    pub feedback: String,
}

/// A pull-request comment as Atelier saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CommentView {
    /// `issue`, `review` or `review_comment`.
    pub kind: String,
    pub id: u64,
    pub author: String,
    pub association: String,
    /// `pending` (waiting for its batching window or the live run), `taken` or `ignored`.
    pub status: String,
    /// Why an ignored comment was ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The run that took it up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunId>,
    pub acknowledged: bool,
    pub url: Option<String>,
}

/// One transcript event of a task's run, as streamed by `task logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LogEntry {
    pub run: RunId,
    pub stage: Stage,
    pub seq: i64,
    pub event: TranscriptEvent,
}

impl LogEntry {
    /// The NDJSON line of `FollowItem::Event` for an event already serialized as JSON: built
    /// without decoding the event, so one serialization serves every follower.
    pub fn line(run: RunId, stage: Stage, seq: i64, event_json: &str) -> String {
        let mut line = String::with_capacity(event_json.len() + 64);
        Self::push_line(&mut line, run, stage, seq, event_json);
        line
    }

    /// [`LogEntry::line`] appended to `out` (many lines in one buffer, no allocation each).
    pub fn push_line(out: &mut String, run: RunId, stage: Stage, seq: i64, event_json: &str) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "{{\"item\":\"event\",\"run\":{run},\"stage\":\"{stage}\",\"seq\":{seq},\"event\":{event_json}}}"
        );
    }
}

/// Transcript entries per page when the caller names no `limit`.
pub const DEFAULT_TRANSCRIPT_LIMIT: u32 = 300;
/// The largest `limit` of a transcript page.
pub const MAX_TRANSCRIPT_LIMIT: u32 = 2000;

/// A position in a task's transcript: an event of a run (entries are ordered by run, then seq).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct TranscriptCursor {
    pub run: RunId,
    pub seq: i64,
}

/// Which part of a task's transcript [`crate::Engine::transcript`] reads; `limit` is 1 to
/// [`MAX_TRANSCRIPT_LIMIT`] (default [`DEFAULT_TRANSCRIPT_LIMIT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum TranscriptQuery {
    /// The last `limit` events.
    Last { limit: u32 },
    /// The first `limit` events strictly after `cursor` (what happened since a page).
    After {
        cursor: TranscriptCursor,
        limit: u32,
    },
    /// The last `limit` events strictly before `cursor` (the page before).
    Before {
        cursor: TranscriptCursor,
        limit: u32,
    },
}

impl Default for TranscriptQuery {
    fn default() -> Self {
        TranscriptQuery::Last {
            limit: DEFAULT_TRANSCRIPT_LIMIT,
        }
    }
}

/// One event of a task's transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TranscriptEntry {
    pub run: RunId,
    pub stage: Stage,
    pub seq: i64,
    pub event: TranscriptEvent,
    /// When it was stored (ms since the epoch).
    pub at_ms: i64,
}

/// A page of a task's transcript, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TranscriptPage {
    pub entries: Vec<TranscriptEntry>,
    /// Whether the task has events before the first entry (before the cursor when the page is
    /// empty): a `Before` query from the first entry reads them.
    pub earlier: bool,
    /// The task's runs whose agent is at work now: a tool call of theirs without a result is
    /// still running (one of another run never got one).
    #[serde(default)]
    pub live_runs: Vec<RunId>,
}

/// The largest patch [`TaskDiff`] carries (bytes); a longer one is cut and `truncated`.
pub const MAX_DIFF_PATCH_BYTES: usize = 1_000_000;

/// A task's changes against the merge base of its branch and the project's default branch:
/// commits, uncommitted edits and untracked files (as added), as the worktree holds them now.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskDiff {
    /// The merge base (a commit id); empty without a worktree.
    pub base: String,
    pub files: Vec<DiffFile>,
    /// The unified diff, at most [`MAX_DIFF_PATCH_BYTES`].
    pub patch: String,
    /// Whether `patch` was cut.
    pub truncated: bool,
    /// Why the diff is empty when the task has no worktree (not created yet, or removed once
    /// the task ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One file a task changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DiffFile {
    pub path: String,
    /// The path before a rename.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    pub status: DiffStatus,
    pub additions: u32,
    pub deletions: u32,
    pub binary: bool,
}

/// How a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiffStatus {
    Added,
    Modified,
    Deleted,
    Renamed,
}

/// What is going on, for the caller's start page (`Engine::dashboard`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Dashboard {
    /// Agents queued or running, oldest run first.
    pub running: Vec<RunningAgent>,
    /// Usage of the runs started since midnight UTC today.
    pub usage_today: Usage,
    /// The newest changes (tasks created, changing state or deleted, runs starting and
    /// ending, pull requests recorded; transcript batches are left out), newest first.
    pub recent: Vec<RecentActivity>,
}

/// An agent queued or running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunningAgent {
    pub task: TaskId,
    pub title: String,
    pub project: String,
    pub run: RunId,
    pub stage: Stage,
    /// `queued` or `running`.
    pub status: RunStatus,
    /// The harness and model the run was started with (`None` while it is queued for the
    /// first time).
    pub harness: Option<String>,
    pub model: Option<String>,
    /// When its first turn started (ms since the epoch); `None` while queued for the first time.
    pub started_at: Option<i64>,
    /// When its newest transcript event was stored (ms since the epoch).
    pub last_event_at: Option<i64>,
}

/// Tokens and cost summed over runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// How many runs are summed.
    pub runs: u32,
}

/// One recent change of a task the caller may see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecentActivity {
    pub task: TaskId,
    pub title: String,
    pub project: String,
    /// `task`, `run` or `pull_request`.
    pub kind: String,
    /// When it happened (ms since the epoch).
    pub at_ms: i64,
    /// One line saying what happened (`now awaiting merge`, `implement run 12 completed`, …).
    pub summary: String,
}

/// An account as the API shows it (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UserView {
    pub id: i64,
    pub login: String,
    pub admin: bool,
    /// A non-technical user's tasks pass the plan gate automatically.
    pub technical: bool,
    pub disabled: bool,
    /// Whether the account can sign in with a password (the bootstrap administrator has only
    /// its token).
    pub has_password: bool,
    pub created_at: i64,
}

/// The body of `POST /api/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub login: String,
    /// At least 10 characters; absent for an account that signs in with tokens only.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub admin: bool,
    #[serde(default = "default_true")]
    pub technical: bool,
}

fn default_true() -> bool {
    true
}

/// The body of `PUT /api/users/{login}`: what an administrator changes about an account (absent
/// fields stay as they are).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    #[serde(default)]
    pub admin: Option<bool>,
    #[serde(default)]
    pub technical: Option<bool>,
    /// A disabled account cannot sign in; its tokens and sessions stop working at once.
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// The body of `POST /api/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub login: String,
    pub password: String,
}

/// A session opened by a login: the secret goes into an HttpOnly cookie, the CSRF token must be
/// echoed in `X-CSRF-Token` by every state-changing request made with the cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewSessionView {
    /// The session's secret: only ever in the `Set-Cookie` header, never in a body.
    #[serde(skip_serializing, default)]
    #[schemars(skip)]
    pub session: String,
    pub csrf: String,
    pub expires_at: i64,
    pub user: UserView,
}

/// The body of `POST /api/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    pub name: String,
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A new API token: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewTokenView {
    pub id: i64,
    pub name: String,
    pub token: String,
    pub expires_at: Option<i64>,
}

/// An API token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    /// The login of the account the token acts for.
    pub owner: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// Whether `expires_at` has passed (the token is refused).
    pub expired: bool,
    pub revoked: bool,
    /// Whether the owner's account is disabled (its tokens are refused while it stays so).
    pub owner_disabled: bool,
}

/// The body of `PUT /api/me/credentials/{harness}`: the caller's credentials for one harness,
/// replacing all they had for it. Write-only: the values are sealed at once and never shown
/// again (not even in `Debug`).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsRequest {
    /// Variables for the agent, e.g. `{"ANTHROPIC_API_KEY": "sk-ant-…"}`; which names a harness
    /// takes is checked (see `docs/security.md`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files for the agent's home; only codex's `auth.json` (its login file, written to
    /// `~/.codex/auth.json` of each run).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

impl std::fmt::Debug for CredentialsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsRequest")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The caller's credentials for one harness, as listed: names and when they were set, never
/// the values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CredentialView {
    pub harness: String,
    /// The variables (and files) set, by name.
    pub names: Vec<String>,
    /// When they were last set (ms since the epoch).
    pub updated_at: i64,
}

/// A user's model (and effort) for one stage, overriding the project's role for their tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserModel {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
}

/// The body and answer of `PUT`/`GET /api/me/models`: the caller's models per stage (the
/// whole set; a stage left out uses the project's role).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserModels {
    #[serde(default)]
    pub models: BTreeMap<Stage, UserModel>,
}

/// The body of `PUT /api/projects/{project}/members/{login}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    /// `owner` or `member`.
    pub role: String,
}

/// A member of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemberView {
    pub login: String,
    /// `owner` or `member`.
    pub role: String,
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditEntryView {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub via: String,
    pub action: String,
    pub target: String,
    pub detail: Option<String>,
}

/// What `task logs --follow` streams: events, then an end marker once no agent is live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "item", rename_all = "snake_case")]
pub enum FollowItem {
    Event(LogEntry),
    End { state: TaskState },
}

/// The body of `POST /api/signal` (the run token travels in the Authorization header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SignalRequest {
    pub task: TaskId,
    pub signal: Signal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prebuilt_log_line_is_the_serialized_follow_item() {
        let event = TranscriptEvent::ToolCall {
            id: Some("c1".into()),
            name: "shell".into(),
            input: serde_json::json!({"command": "echo \"hi\""}),
        };
        let entry = LogEntry {
            run: RunId(3),
            stage: Stage::Review,
            seq: 12,
            event: event.clone(),
        };
        let json = serde_json::to_string(&event).unwrap();
        let mut want = serde_json::to_string(&FollowItem::Event(entry.clone())).unwrap();
        want.push('\n');
        assert_eq!(LogEntry::line(RunId(3), Stage::Review, 12, &json), want);
        let parsed: FollowItem = serde_json::from_str(want.trim_end()).unwrap();
        assert_eq!(parsed, FollowItem::Event(entry));
    }
}

/// What `GET /api/status` reports: how this server runs agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServerStatus {
    pub version: String,
    pub sandbox: SandboxStatus,
    /// What `atelier doctor` prints, in order: each agent CLI (its version, or why it cannot
    /// start and how to install it), the sandbox, the data directory's permissions, git, and
    /// the remote of each project the caller sees.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Warm standby (successor processes started ahead of their run) since the server started.
    #[serde(default)]
    pub warm: WarmStatus,
}

/// Warm standby's limit and what it did since the server started: every warm process is either
/// still idle, used by its run, or shut down unused (`started = idle + used + wasted` once the
/// ones being shut down are gone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WarmStatus {
    /// At most this many idle processes at once (`--warm-limit`; 0: warm standby is off).
    pub limit: u64,
    /// An idle process is shut down after this many seconds unused (`--warm-idle-secs`).
    pub idle_secs: u64,
    /// Idle now, waiting for their run.
    pub idle: u64,
    pub started: u64,
    /// Handed to their run.
    pub used: u64,
    /// Shut down unused (the task took another path, was stopped, waited too long, the run
    /// was started differently, the server stopped).
    pub wasted: u64,
}

/// One thing that must hold for agents to run, as the server found it just now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Check {
    /// What was checked, e.g. `claude-code CLI`, `git`, `forge of web`.
    pub name: String,
    pub status: CheckStatus,
    /// What was found (a version, a path and its mode) or what is wrong and what to do.
    pub detail: String,
}

/// How a [`Check`] came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    /// Nothing needs it yet, but something may: e.g. the default role's CLI is missing while
    /// every project names its roles.
    Warning,
    /// Something needs it and it does not hold: agents will fail on it.
    Failed,
}

impl Check {
    pub fn ok(name: String, detail: String) -> Check {
        Check {
            name,
            status: CheckStatus::Ok,
            detail,
        }
    }

    pub fn warning(name: String, detail: String) -> Check {
        Check {
            name,
            status: CheckStatus::Warning,
            detail,
        }
    }

    pub fn failed(name: String, detail: String) -> Check {
        Check {
            name,
            status: CheckStatus::Failed,
            detail,
        }
    }
}

/// The agent sandbox as the server found it at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SandboxStatus {
    /// `bubblewrap` or `none` (the operator opted out: agents run unconfined).
    pub mode: String,
    /// Whether agents can start.
    pub ready: bool,
    /// Why they cannot, and how to fix it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A position in the live stream (`GET /api/stream`, `GET /api/tasks/{id}/stream`): the `id:` of
/// a Server-Sent Event, given back as `Last-Event-ID` (or `?after=`) to resume strictly after it.
/// Clients treat it as opaque; it is `<activity id>` for a change and `<activity id>-<seq>` for a
/// transcript event, ordered as pairs (a change's `seq` part is after every event's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamCursor {
    pub activity: i64,
    pub seq: i64,
}

impl StreamCursor {
    /// Before everything.
    pub const START: StreamCursor = StreamCursor {
        activity: 0,
        seq: i64::MAX,
    };

    /// Parses an event id this stream sent; the error says what a valid one looks like.
    pub fn parse(text: &str) -> Result<StreamCursor, String> {
        let bad = || {
            format!(
                "malformed event id {text:?}: give the `id` of an event this stream sent \
                 (such as `42` or `42-7`), or leave it out to start afresh"
            )
        };
        let number = |part: &str| -> Result<i64, String> {
            if part.is_empty() || part.len() > 18 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse().map_err(|_| bad())
        };
        match text.split_once('-') {
            None => Ok(StreamCursor {
                activity: number(text)?,
                seq: i64::MAX,
            }),
            Some((activity, seq)) => Ok(StreamCursor {
                activity: number(activity)?,
                seq: number(seq)?,
            }),
        }
    }
}

impl std::fmt::Display for StreamCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.seq == i64::MAX {
            write!(f, "{}", self.activity)
        } else {
            write!(f, "{}-{}", self.activity, self.seq)
        }
    }
}

#[cfg(test)]
mod cursor_tests {
    use super::StreamCursor;

    #[test]
    fn cursors_round_trip_and_bad_ones_say_why() {
        for text in ["0", "42", "42-7"] {
            assert_eq!(StreamCursor::parse(text).unwrap().to_string(), text);
        }
        assert!(StreamCursor::parse("42-7").unwrap() < StreamCursor::parse("42").unwrap());
        assert!(StreamCursor::parse("42").unwrap() < StreamCursor::parse("43-1").unwrap());
        for bad in [
            "",
            "x",
            "-1",
            "1-",
            "1-2-3",
            "+4",
            "1 ",
            "99999999999999999999",
        ] {
            let err = StreamCursor::parse(bad).unwrap_err();
            assert!(err.contains("malformed event id"), "{bad}: {err}");
        }
    }
}
