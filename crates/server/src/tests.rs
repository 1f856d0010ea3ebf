//! Router tests against a fake backend: routing, authentication, request extraction and the
//! mapping of engine errors. (Tests with the real engine live in `tests/`.)

use crate::backend::Backend;
use crate::routes::router;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use bytes::Bytes;
use domain::{ProjectId, RunId, Signal, Stage, TaskId, TaskState, TranscriptEvent};
use engine::api::{
    FollowItem, LogEntry, NewProject, NewTask, Page, PageRequest, ProjectView, TaskDetail, TaskView,
};
use engine::{EngineError, Result};
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

const API_TOKEN: &str = "api-token-0123456789";
const RUN_TOKEN: &str = "run-token-abcdef";
/// The API token of `mo`, a project member who is not an administrator.
const MEMBER_TOKEN: &str = "atk_member-token-of-mo";
/// The one browser session the fake knows (a member, `ann`), and its CSRF token.
pub(crate) const SESSION: &str = "ats_fake_session";
pub(crate) const SESSION_CSRF: &str = "csrf-of-the-fake-session";
/// An administrator's browser session (`ada`).
pub(crate) const ADMIN_SESSION: &str = "ats_fake_admin_session";
/// Task 666 is full of hostile text: its title, doc and question carry markup and script.
pub(crate) const HOSTILE: &str = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=1\"><iframe src=\"https://evil.example\"></iframe>[x](javascript:window.__pwned=1)<a href=\"#\" onclick=\"window.__pwned=1\">y</a>";

/// An engine error carrying server details: an absolute path and a raw git command line.
const DETAILED_ERROR: &str = "cannot merge task 422: `git push --force origin atelier/422-x` \
     failed (exit code 1): fatal: cannot lock /srv/data/atelier.db: busy";

/// Records each call; task 422 fails with server details in the message; task 404 does not exist, task 500 fails internally, task 409 is busy.
#[derive(Clone, Default)]
pub(crate) struct Fake {
    calls: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
    pub(crate) fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn task_result(&self, call: &str, id: TaskId) -> Result<TaskView> {
        self.record(format!("{call} {id}"));
        match id.0 {
            404 => Err(EngineError::NotFound(format!("no task {id}"))),
            409 => Err(EngineError::Conflict("an agent is already running".into())),
            500 => Err(EngineError::Internal(
                "database is locked at /secret".into(),
            )),
            422 => Err(EngineError::InvalidState(DETAILED_ERROR.into())),
            _ => Ok(task_view(id)),
        }
    }
}

fn store_user(id: i64) -> engine::UserId {
    engine::UserId(id)
}

fn task_view(id: TaskId) -> TaskView {
    TaskView {
        id,
        project: "demo".into(),
        title: "Add a flag".into(),
        key: format!("T-{id}"),
        branch: format!("atelier/{id}-add-a-flag"),
        state: TaskState::PlanGate,
        priority: 0,
        technical: true,
        worktree: None,
        doc_path: "/data/docs/1.md".into(),
        port: 20000,
        review_rounds: 0,
        runs_started: 1,
        created_at: 1,
        updated_at: 2,
        pipeline: "standard".into(),
        // Task 2 has a pull request whose checks failed (the board's CI badge).
        pull_request_url: (id.0 == 2).then(|| "https://forge.example/pr/2".into()),
        checks: (id.0 == 2).then(|| "failed".into()),
    }
}

impl Backend for Fake {
    async fn add_project(&self, req: NewProject) -> Result<ProjectView> {
        self.record(format!("add_project {}", req.path));
        Ok(ProjectView {
            id: ProjectId(1),
            name: req.name.unwrap_or_else(|| "demo".into()),
            path: req.path,
            default_branch: "main".into(),
            settings: req.settings.unwrap_or_default(),
            created_at: 1,
        })
    }
    async fn list_projects(&self, _page: PageRequest) -> Result<Page<ProjectView>> {
        Ok(Page {
            items: vec![],
            next: None,
        })
    }
    async fn update_project_settings(
        &self,
        project: String,
        settings: engine::api::ProjectSettings,
    ) -> Result<ProjectView> {
        self.record(format!("update_project_settings {project}"));
        Ok(ProjectView {
            id: ProjectId(1),
            name: project,
            path: "/repo".into(),
            default_branch: "main".into(),
            settings,
            created_at: 1,
        })
    }
    fn acting_as(&self, _who: engine::Identity) -> Self {
        self.clone()
    }
    fn authenticate_token(&self, token: &str) -> Result<engine::Identity> {
        if token == MEMBER_TOKEN {
            return Ok(engine::Identity {
                user: store_user(3),
                login: "mo".into(),
                admin: false,
                technical: true,
                via: engine::Via::Token {
                    id: 3,
                    name: "mo's token".into(),
                },
            });
        }
        if token != API_TOKEN {
            return Err(EngineError::Unauthorized("invalid API token".into()));
        }
        Ok(engine::Identity {
            user: store_user(1),
            login: "admin".into(),
            admin: true,
            technical: true,
            via: engine::Via::Token {
                id: 1,
                name: "server api-token".into(),
            },
        })
    }
    fn authenticate_session(&self, secret: &str) -> Result<engine::Identity> {
        let admin = secret == ADMIN_SESSION;
        if secret != SESSION && !admin {
            return Err(EngineError::Unauthorized("no such session".into()));
        }
        Ok(engine::Identity {
            user: store_user(if admin { 1 } else { 2 }),
            login: if admin { "ada" } else { "ann" }.into(),
            admin,
            technical: true,
            via: engine::Via::Session {
                id: 1,
                csrf: SESSION_CSRF.into(),
            },
        })
    }
    async fn login(
        &self,
        login: String,
        _password: String,
        _from: std::net::IpAddr,
    ) -> Result<engine::api::NewSessionView> {
        self.record(format!("login {login}"));
        Err(EngineError::Unauthorized("wrong login or password".into()))
    }
    fn logout(&self) -> Result<()> {
        self.record("logout".into());
        Ok(())
    }
    fn me(&self) -> Result<engine::api::UserView> {
        Err(EngineError::NotFound("no users in the fake".into()))
    }
    fn list_users(&self) -> Result<Vec<engine::api::UserView>> {
        Ok(vec![])
    }
    fn update_user(
        &self,
        login: String,
        _update: engine::api::UserUpdate,
    ) -> Result<engine::api::UserView> {
        self.record(format!("update_user {login}"));
        Err(EngineError::Forbidden("not in the fake".into()))
    }
    async fn create_user(&self, req: engine::api::NewUser) -> Result<engine::api::UserView> {
        self.record(format!("create_user {}", req.login));
        Err(EngineError::Forbidden("not in the fake".into()))
    }
    fn create_token(
        &self,
        name: String,
        _expires_in_days: Option<u32>,
    ) -> Result<engine::api::NewTokenView> {
        self.record(format!("create_token {name}"));
        Err(EngineError::Forbidden("not in the fake".into()))
    }
    fn list_tokens(&self) -> Result<Vec<engine::api::TokenView>> {
        Ok(vec![])
    }
    fn list_all_tokens(&self) -> Result<Vec<engine::api::TokenView>> {
        Ok(vec![])
    }
    fn revoke_token(&self, id: i64) -> Result<()> {
        self.record(format!("revoke_token {id}"));
        Ok(())
    }
    fn set_member(&self, project: String, login: String, role: String) -> Result<()> {
        self.record(format!("set_member {project} {login} {role}"));
        Ok(())
    }
    fn remove_member(&self, project: String, login: String) -> Result<()> {
        self.record(format!("remove_member {project} {login}"));
        Ok(())
    }
    fn members(&self, _project: String) -> Result<Vec<engine::api::MemberView>> {
        Ok(vec![])
    }
    fn list_credentials(&self) -> Result<Vec<engine::api::CredentialView>> {
        Ok(vec![])
    }
    fn set_credentials(
        &self,
        harness: String,
        _req: engine::api::CredentialsRequest,
    ) -> Result<engine::api::CredentialView> {
        self.record(format!("set_credentials {harness}"));
        Err(EngineError::Forbidden("not in the fake".into()))
    }
    fn delete_credentials(&self, harness: String) -> Result<()> {
        self.record(format!("delete_credentials {harness}"));
        Ok(())
    }
    fn user_models(&self) -> Result<engine::api::UserModels> {
        Ok(engine::api::UserModels::default())
    }
    fn set_user_models(&self, req: engine::api::UserModels) -> Result<engine::api::UserModels> {
        self.record("set_user_models".into());
        Ok(req)
    }
    fn audit_log(
        &self,
        _before: Option<i64>,
        _limit: u32,
    ) -> Result<Vec<engine::api::AuditEntryView>> {
        Ok(vec![])
    }
    fn github_webhook(
        &self,
        delivery: engine::WebhookDelivery<'_>,
    ) -> Result<engine::WebhookOutcome> {
        self.record(format!(
            "github_webhook {:?} signed={}",
            delivery.event,
            delivery.signature.is_some()
        ));
        Ok(engine::WebhookOutcome::Ignored {
            event: delivery.event.unwrap_or_default().to_string(),
        })
    }
    async fn status(&self) -> engine::api::ServerStatus {
        engine::api::ServerStatus {
            version: "test".into(),
            sandbox: engine::api::SandboxStatus {
                mode: "bubblewrap".into(),
                ready: true,
                problem: None,
            },
            checks: Vec::new(),
            warm: Default::default(),
        }
    }
    async fn create_task(&self, req: NewTask) -> Result<TaskView> {
        self.record(format!(
            "create_task {} technical={}",
            req.title, req.technical
        ));
        Ok(task_view(TaskId(1)))
    }
    /// Five tasks, 1 to 5, paged as the engine does.
    async fn list_tasks(
        &self,
        project: Option<String>,
        page: PageRequest,
    ) -> Result<Page<TaskView>> {
        self.record(format!("list_tasks {project:?}"));
        let after = page.after.unwrap_or(0);
        let ids: Vec<i64> = (1..=5).filter(|id| *id > after).collect();
        let limit = page.limit as usize;
        let next = (ids.len() > limit).then(|| ids[limit - 1]);
        Ok(Page {
            items: ids
                .into_iter()
                .take(limit)
                .map(|id| task_view(TaskId(id)))
                .collect(),
            next,
        })
    }
    async fn task(&self, id: TaskId) -> Result<TaskDetail> {
        let mut task = self.task_result("task", id)?;
        let hostile = id.0 == 666;
        if hostile {
            task.title = HOSTILE.into();
            task.state = TaskState::NeedsInput {
                stage: Stage::Plan,
                question: HOSTILE.into(),
            };
        }
        // The hostile task's pull request has hostile checks too: a name with markup, a
        // `javascript:` address, and one real web address.
        let pull_request = hostile.then(|| engine::api::PullRequestView {
            url: "javascript:window.__pwned=1".into(),
            // Told apart from the task's title: the page shows the pull request's own.
            title: format!("The PR: {HOSTILE}"),
            branch: "atelier/666-x".into(),
            base: "main".into(),
            head_sha: "0123456789abcdef".into(),
            merged: false,
            created_at: 1,
            checks: Some(engine::api::ChecksView {
                head_sha: "0123456789abcdef".into(),
                overall: "failed".into(),
                read_at: 2,
                checks: vec![
                    engine::api::CheckView {
                        name: HOSTILE.into(),
                        state: "failed".into(),
                        url: Some("javascript:window.__pwned=1".into()),
                        counted: true,
                    },
                    engine::api::CheckView {
                        name: "lint".into(),
                        state: "passed".into(),
                        url: Some("https://ci.example/runs/7".into()),
                        counted: false,
                    },
                ],
            }),
        });
        Ok(TaskDetail {
            task,
            runs: vec![],
            pull_request,
            doc: if hostile {
                HOSTILE.into()
            } else {
                "# doc".into()
            },
            comments: vec![],
            in_motion: false,
            actions: vec![],
        })
    }
    fn states_and_actions(
        &self,
        ids: &[TaskId],
    ) -> Result<Vec<(TaskId, TaskState, Vec<engine::api::TaskAction>)>> {
        Ok(ids
            .iter()
            .filter_map(|&id| self.task_result("states_and_actions", id).ok())
            .map(|task| (task.id, task.state, vec![]))
            .collect())
    }
    async fn approve(&self, id: TaskId) -> Result<TaskView> {
        self.task_result("approve", id)
    }
    async fn answer(&self, id: TaskId, text: String) -> Result<TaskView> {
        self.task_result(&format!("answer {text:?}"), id)
    }
    async fn transcript(
        &self,
        id: TaskId,
        query: engine::api::TranscriptQuery,
    ) -> Result<engine::api::TranscriptPage> {
        self.task_result(&format!("transcript {query:?}"), id)?;
        // The hostile task's agent wrote markup everywhere it could: its messages, thoughts,
        // tool calls and their output.
        let hostile = [
            TranscriptEvent::Message {
                text: HOSTILE.into(),
            },
            TranscriptEvent::Thinking {
                text: HOSTILE.into(),
            },
            TranscriptEvent::ToolCall {
                id: Some("t1".into()),
                name: HOSTILE.into(),
                input: serde_json::json!({"command": HOSTILE, "file_path": HOSTILE}),
            },
            TranscriptEvent::ToolResult {
                id: Some("t1".into()),
                output: HOSTILE.into(),
                is_error: true,
            },
        ];
        let entries = if id.0 == 666 {
            hostile
                .into_iter()
                .zip(1..)
                .map(|(event, seq)| engine::api::TranscriptEntry {
                    run: RunId(1),
                    stage: Stage::Plan,
                    seq,
                    event,
                    at_ms: 1,
                })
                .collect()
        } else {
            vec![]
        };
        Ok(engine::api::TranscriptPage {
            entries,
            earlier: id.0 == 666,
            live_runs: vec![],
        })
    }
    fn dashboard(&self) -> Result<engine::api::Dashboard> {
        self.record("dashboard".into());
        Ok(engine::api::Dashboard {
            running: vec![],
            usage_today: engine::api::Usage::default(),
            recent: vec![],
        })
    }
    async fn task_diff(&self, id: TaskId) -> Result<engine::api::TaskDiff> {
        self.task_result("task_diff", id)?;
        if id.0 != 666 {
            return Ok(engine::api::TaskDiff::default());
        }
        // An agent names its files and writes their lines: markup in both.
        Ok(engine::api::TaskDiff {
            base: "0123456789abcdef".into(),
            files: vec![engine::api::DiffFile {
                path: HOSTILE.into(),
                old_path: Some(HOSTILE.into()),
                status: engine::api::DiffStatus::Renamed,
                additions: 1,
                deletions: 1,
                binary: false,
            }],
            patch: format!(
                "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-{HOSTILE}\n+{HOSTILE}\n"
            ),
            truncated: false,
            note: None,
        })
    }
    fn setup_needed(&self) -> bool {
        false
    }
    async fn setup_first_admin(
        &self,
        setup_token: String,
        login: String,
        _password: String,
    ) -> Result<engine::api::UserView> {
        self.record(format!("setup_first_admin {login}"));
        if setup_token != API_TOKEN {
            return Err(EngineError::Unauthorized("wrong setup token".into()));
        }
        Err(EngineError::Conflict("setup is already done".into()))
    }
    fn stream_head(&self) -> Result<String> {
        self.record("stream_head".into());
        Ok("42".into())
    }
    fn prompts(&self) -> Result<Vec<engine::api::PromptView>> {
        self.record("prompts".into());
        Ok(vec![])
    }
    fn project_prompts(&self, project: String) -> Result<Vec<engine::api::PromptView>> {
        self.record(format!("project_prompts {project}"));
        Ok(vec![])
    }
    fn set_prompt(&self, file: String, text: Option<String>) -> Result<engine::api::PromptView> {
        self.record(format!("set_prompt {file} {text:?}"));
        Ok(engine::api::PromptView {
            file,
            text: text.unwrap_or_default(),
            overridden: true,
            variables: vec![],
            error: None,
        })
    }
    fn attachments(&self, id: TaskId) -> Result<Vec<engine::api::AttachmentView>> {
        self.task_result("attachments", id)?;
        Ok(vec![])
    }
    fn attachment(&self, id: TaskId, name: String) -> Result<Vec<u8>> {
        self.task_result(&format!("attachment {name}"), id)?;
        Ok(b"<script>alert(1)</script>".to_vec())
    }
    fn add_attachment(
        &self,
        id: TaskId,
        name: String,
        bytes: Vec<u8>,
    ) -> Result<engine::api::AttachmentView> {
        self.task_result(&format!("add_attachment {name} {}", bytes.len()), id)?;
        Ok(engine::api::AttachmentView {
            name,
            size: bytes.len() as u64,
            modified_at: 1,
        })
    }
    async fn edit_doc(&self, id: TaskId, doc: String) -> Result<()> {
        self.task_result(&format!("edit_doc {doc:?}"), id)
            .map(|_| ())
    }
    async fn request_plan_changes(&self, id: TaskId, feedback: String) -> Result<TaskView> {
        self.task_result(&format!("request_plan_changes {feedback:?}"), id)
    }
    async fn run(&self, id: TaskId, stage: Option<Stage>) -> Result<TaskView> {
        self.task_result(&format!("run {stage:?}"), id)
    }
    async fn stop(&self, id: TaskId) -> Result<TaskView> {
        self.task_result("stop", id)
    }
    async fn resume(&self, id: TaskId) -> Result<TaskView> {
        self.task_result("resume", id)
    }
    async fn merge(&self, id: TaskId) -> Result<TaskView> {
        self.task_result("merge", id)
    }
    async fn delete(&self, id: TaskId) -> Result<TaskView> {
        self.task_result("delete", id)
    }
    async fn signal(&self, run_token: String, task: TaskId, signal: Signal) -> Result<()> {
        if run_token != RUN_TOKEN {
            return Err(EngineError::Unauthorized("invalid run token".into()));
        }
        if task.0 == 422 {
            return Err(EngineError::InvalidState(DETAILED_ERROR.into()));
        }
        self.record(format!("signal {task} {signal:?}"));
        Ok(())
    }
    async fn logs(&self, id: TaskId, follow: bool) -> Result<BoxStream<'static, Bytes>> {
        self.task_result(&format!("logs follow={follow}"), id)?;
        let items = vec![
            FollowItem::Event(LogEntry {
                run: RunId(3),
                stage: Stage::Review,
                seq: 12,
                event: TranscriptEvent::Message {
                    text: "looks good".into(),
                },
            }),
            FollowItem::End {
                state: TaskState::AwaitingMerge { merge_error: None },
            },
        ];
        let lines = items.into_iter().map(|item| {
            let mut line = serde_json::to_vec(&item).unwrap();
            line.push(b'\n');
            Bytes::from(line)
        });
        Ok(stream::iter(lines).boxed())
    }
    async fn stream(
        &self,
        task: Option<TaskId>,
        after: Option<engine::api::StreamCursor>,
        transcripts: bool,
    ) -> Result<BoxStream<'static, Bytes>> {
        let mut after = after.map_or_else(|| "none".to_string(), |c| c.to_string());
        if !transcripts {
            after.push_str(" without transcripts");
        }
        match task {
            Some(id) => {
                self.task_result(&format!("stream after={after}"), id)?;
            }
            None => self.record(format!("stream all after={after}")),
        }
        let message = "id: 7-2\nevent: transcript\ndata: {\"task\":3}\n\n";
        Ok(stream::iter([Bytes::from_static(message.as_bytes())]).boxed())
    }
}

pub(crate) fn app(fake: &Fake) -> Router {
    router(fake.clone(), crate::HttpOptions::default())
}

fn app_with_limit(fake: &Fake, max_body_bytes: usize) -> Router {
    router(fake.clone(), crate::HttpOptions { max_body_bytes })
}

/// A task request of exactly `len` bytes of JSON.
fn task_request_of(len: usize) -> String {
    let frame = r#"{"project": "demo", "title": "Big", "body": ""}"#;
    let body = "x".repeat(len - frame.len());
    let json = format!(r#"{{"project": "demo", "title": "Big", "body": "{body}"}}"#);
    assert_eq!(json.len(), len);
    json
}

/// Sends one request; `token` becomes a bearer header, `body` a JSON body.
async fn send(
    app: Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Body::from(body.unwrap_or_default().to_string()))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// The message of an error body, which must also carry a stable `code`.
fn error_of(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    let code = value["code"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        "an error body carries a machine-readable code: {body}"
    );
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field: {body}"))
        .to_string()
}

const ADMIN_ROUTES: [(&str, &str); 42] = [
    ("GET", "/api/projects"),
    ("POST", "/api/projects"),
    ("PUT", "/api/projects/web/settings"),
    ("GET", "/api/tasks"),
    ("POST", "/api/tasks"),
    ("GET", "/api/tasks/1"),
    ("POST", "/api/tasks/1/approve"),
    ("POST", "/api/tasks/1/answer"),
    ("POST", "/api/tasks/1/request-changes"),
    ("PUT", "/api/tasks/1/doc"),
    ("GET", "/api/tasks/1/attachments"),
    ("GET", "/api/tasks/1/attachments/a.txt"),
    ("PUT", "/api/tasks/1/attachments/a.txt"),
    ("GET", "/api/prompts"),
    ("PUT", "/api/prompts/review.md"),
    ("DELETE", "/api/prompts/review.md"),
    ("POST", "/api/tasks/1/run"),
    ("POST", "/api/tasks/1/stop"),
    ("POST", "/api/tasks/1/resume"),
    ("POST", "/api/tasks/1/merge"),
    ("DELETE", "/api/tasks/1"),
    ("GET", "/api/tasks/1/logs"),
    ("GET", "/api/tasks/1/stream"),
    ("GET", "/api/stream"),
    ("GET", "/api/me"),
    ("POST", "/api/logout"),
    ("GET", "/api/users"),
    ("POST", "/api/users"),
    ("GET", "/api/tokens"),
    ("GET", "/api/tokens/all"),
    ("POST", "/api/tokens"),
    ("DELETE", "/api/tokens/1"),
    ("PUT", "/api/projects/web/members/bob"),
    ("DELETE", "/api/projects/web/members/bob"),
    ("GET", "/api/projects/web/members"),
    ("PUT", "/api/users/bob"),
    ("GET", "/api/audit"),
    ("GET", "/api/me/credentials"),
    ("PUT", "/api/me/credentials/claude-code"),
    ("DELETE", "/api/me/credentials/claude-code"),
    ("GET", "/api/me/models"),
    ("PUT", "/api/me/models"),
];

#[tokio::test]
async fn healthz_needs_no_token() {
    let (status, _, body) = send(app(&Fake::default()), Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "ok"})
    );
}

#[tokio::test]
async fn admin_routes_reject_missing_wrong_and_run_tokens() {
    let fake = Fake::default();
    for (method, uri) in ADMIN_ROUTES {
        let method: Method = method.parse().unwrap();
        for token in [None, Some("wrong"), Some(RUN_TOKEN), Some("")] {
            let (status, _, body) = send(app(&fake), method.clone(), uri, token, None).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {token:?}"
            );
            assert!(error_of(&body).contains("Authorization") || error_of(&body).contains("token"));
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap()["code"],
                "unauthorized"
            );
        }
    }
    assert_eq!(
        fake.calls(),
        Vec::<String>::new(),
        "no request may reach the engine"
    );
}

#[tokio::test]
async fn bad_json_is_a_400_naming_the_problem() {
    let fake = Fake::default();
    let token = Some(API_TOKEN);
    let (status, _, body) = send(
        app(&fake),
        Method::POST,
        "/api/tasks",
        token,
        Some("{\"title\": "),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("JSON"), "{body}");

    let missing = r#"{"project": "demo", "body": "x"}"#;
    let (status, _, body) =
        send(app(&fake), Method::POST, "/api/tasks", token, Some(missing)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("title"), "{body}");

    let bad_stage = r#"{"stage": "deploy"}"#;
    let (status, _, body) = send(
        app(&fake),
        Method::POST,
        "/api/tasks/1/run",
        token,
        Some(bad_stage),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("deploy"), "{body}");
    assert_eq!(fake.calls(), Vec::<String>::new());
}

#[tokio::test]
async fn bad_path_ids_are_a_400() {
    for uri in [
        "/api/tasks/abc",
        "/api/tasks/0/approve",
        "/api/tasks/-1/logs",
    ] {
        let method = if uri.ends_with("approve") {
            Method::POST
        } else {
            Method::GET
        };
        let (status, _, body) =
            send(app(&Fake::default()), method, uri, Some(API_TOKEN), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(error_of(&body).contains("invalid task id"), "{body}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let (status, _, body) = send(
        app(&Fake::default()),
        Method::GET,
        "/api/nope",
        Some(API_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&body).contains("/api/nope"));
    let (status, _, body) = send(
        app(&Fake::default()),
        Method::DELETE,
        "/healthz",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(error_of(&body).contains("DELETE"));
}

#[tokio::test]
async fn routes_reach_the_engine_with_their_inputs() {
    let fake = Fake::default();
    let token = Some(API_TOKEN);
    let new_task = r#"{"project": "demo", "title": "Add a flag", "body": "please"}"#;
    let (status, _, body) = send(
        app(&fake),
        Method::POST,
        "/api/tasks",
        token,
        Some(new_task),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        serde_json::from_str::<TaskView>(&body).unwrap(),
        task_view(TaskId(1))
    );

    let new_project = r#"{"path": "/repo", "name": "demo"}"#;
    let (status, _, _) = send(
        app(&fake),
        Method::POST,
        "/api/projects",
        token,
        Some(new_project),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    send(
        app(&fake),
        Method::GET,
        "/api/tasks?project=demo",
        token,
        None,
    )
    .await;
    send(app(&fake), Method::POST, "/api/tasks/7/run", token, None).await;
    send(
        app(&fake),
        Method::POST,
        "/api/tasks/7/run",
        token,
        Some(r#"{"stage":"review"}"#),
    )
    .await;
    send(
        app(&fake),
        Method::POST,
        "/api/tasks/7/answer",
        token,
        Some(r#"{"text":"yes"}"#),
    )
    .await;
    send(
        app(&fake),
        Method::POST,
        "/api/tasks/7/request-changes",
        token,
        Some(r#"{"feedback":"smaller steps"}"#),
    )
    .await;
    send(app(&fake), Method::POST, "/api/tasks/7/merge", token, None).await;
    assert_eq!(
        fake.calls(),
        vec![
            "create_task Add a flag technical=true",
            "add_project /repo",
            "list_tasks Some(\"demo\")",
            "run None 7",
            "run Some(Review) 7",
            "answer \"yes\" 7",
            "request_plan_changes \"smaller steps\" 7",
            "merge 7",
        ]
    );
}

#[tokio::test]
async fn engine_errors_become_statuses_without_internals() {
    let token = Some(API_TOKEN);
    let cases = [
        (Method::GET, "/api/tasks/404", StatusCode::NOT_FOUND),
        (Method::POST, "/api/tasks/409/stop", StatusCode::CONFLICT),
        (
            Method::POST,
            "/api/tasks/500/resume",
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    ];
    for (method, uri, expected) in cases {
        let (status, _, body) = send(app(&Fake::default()), method, uri, token, None).await;
        assert_eq!(status, expected, "{uri}");
        assert!(!error_of(&body).contains("secret"), "{body}");
    }
}

#[tokio::test]
async fn logs_stream_ndjson_follow_items() {
    let fake = Fake::default();
    let uri = "/api/tasks/3/logs?follow=true";
    let (status, content_type, body) =
        send(app(&fake), Method::GET, uri, Some(API_TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("application/x-ndjson"));
    let items: Vec<FollowItem> = body
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[1],
        FollowItem::End {
            state: TaskState::AwaitingMerge { merge_error: None }
        }
    );
    assert_eq!(fake.calls(), vec!["logs follow=true 3"]);
}

#[tokio::test]
async fn signal_takes_the_run_token_only() {
    let fake = Fake::default();
    let body = r#"{"task": 4, "signal": {"kind": "plan-ready"}}"#;
    let (status, _, res) = send(
        app(&fake),
        Method::POST,
        "/api/signal",
        Some(RUN_TOKEN),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&res).unwrap(),
        json!({"ok": true})
    );
    for token in [Some(API_TOKEN), None] {
        let (status, _, res) =
            send(app(&fake), Method::POST, "/api/signal", token, Some(body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        error_of(&res);
    }
    assert_eq!(fake.calls(), vec!["signal 4 PlanReady"]);
}

#[tokio::test]
async fn serve_answers_on_a_bound_listener_and_shuts_down() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::serve(listener, app(&Fake::default()), async move {
        let _ = stop_rx.await;
    }));

    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");

    stop_tx.send(()).unwrap();
    let finished = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
    finished.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn bodies_over_the_limit_are_a_413_naming_the_limit() {
    let fake = Fake::default();
    let limit = crate::DEFAULT_MAX_BODY_BYTES;
    let over = task_request_of(limit + 1);
    let (status, content_type, body) = send(
        app(&fake),
        Method::POST,
        "/api/tasks",
        Some(API_TOKEN),
        Some(&over),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    assert_eq!(
        error_of(&body),
        "request body is larger than the 2 MB limit (2000000 bytes, max_body_bytes): send \
         less, or raise the limit with `atelier serve --max-body-bytes N` \
         (ATELIER_MAX_BODY_BYTES)"
    );
    assert_eq!(fake.calls(), Vec::<String>::new());

    let at_limit = task_request_of(limit);
    let (status, _, body) = send(
        app(&fake),
        Method::POST,
        "/api/tasks",
        Some(API_TOKEN),
        Some(&at_limit),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(fake.calls(), vec!["create_task Big technical=true"]);
}

#[tokio::test]
async fn the_body_limit_is_a_setting_and_covers_optional_bodies() {
    let fake = Fake::default();
    let run_body = format!(r#"{{"stage": "review"{}}}"#, " ".repeat(200));
    let (status, _, body) = send(
        app_with_limit(&fake, 100),
        Method::POST,
        "/api/tasks/7/run",
        Some(API_TOKEN),
        Some(&run_body),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        error_of(&body).contains("the 100 bytes limit (100 bytes, max_body_bytes)"),
        "{body}"
    );
    let (status, _, body) = send(
        app_with_limit(&fake, 100),
        Method::POST,
        "/api/tasks/7/answer",
        Some(API_TOKEN),
        Some(&format!(r#"{{"text": "{}"}}"#, "y".repeat(100))),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(fake.calls(), Vec::<String>::new());
}

#[tokio::test]
async fn error_details_are_redacted_for_members_and_run_tokens_and_kept_for_the_admin() {
    let fake = Fake::default();
    let (status, _, body) = send(
        app(&fake),
        Method::POST,
        "/api/tasks/422/merge",
        Some(API_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_of(&body), DETAILED_ERROR, "the admin sees everything");

    let redacted =
        "cannot merge task 422: `<command>` failed (exit code 1): fatal: cannot lock <path>: busy";
    let signal = r#"{"task": 422, "signal": {"kind": "plan-ready"}}"#;
    for (who, method, uri, token, body) in [
        (
            "a member",
            Method::POST,
            "/api/tasks/422/merge",
            MEMBER_TOKEN,
            None,
        ),
        (
            "a run token",
            Method::POST,
            "/api/signal",
            RUN_TOKEN,
            Some(signal),
        ),
    ] {
        let (status, _, body) = send(app(&fake), method, uri, Some(token), body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{who}");
        let shown = error_of(&body);
        assert_eq!(shown, redacted, "{who}");
        for secret in ["/srv", "atelier.db", "git push", "--force"] {
            assert!(!shown.contains(secret), "{secret} leaked to {who}: {shown}");
        }
    }
}

/// Sends a GET with the API token and extra headers.
async fn get_with(
    app: Router,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let mut req = Request::builder()
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {API_TOKEN}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn streams_are_server_sent_events_resuming_after_the_last_event_id() {
    let fake = Fake::default();
    let (status, content_type, body) = get_with(app(&fake), "/api/stream", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/event-stream");
    assert_eq!(body, "id: 7-2\nevent: transcript\ndata: {\"task\":3}\n\n");
    get_with(
        app(&fake),
        "/api/tasks/3/stream",
        &[("last-event-id", "7-2")],
    )
    .await;
    get_with(app(&fake), "/api/tasks/3/stream?after=41", &[]).await;
    // The header wins over the query; an empty header is no resume point.
    get_with(app(&fake), "/api/stream?after=5", &[("last-event-id", "6")]).await;
    get_with(app(&fake), "/api/stream", &[("last-event-id", "")]).await;
    get_with(app(&fake), "/api/stream?after=8&transcript=false", &[]).await;
    get_with(app(&fake), "/api/stream?transcript=true", &[]).await;
    let (status, _, body) = get_with(app(&fake), "/api/stream?transcript=no", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, _) = get_with(app(&fake), "/api/tasks/404/stream", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        fake.calls(),
        vec![
            "stream all after=none",
            "stream after=7-2 3",
            "stream after=41 3",
            "stream all after=6",
            "stream all after=none",
            "stream all after=8 without transcripts",
            "stream all after=none",
            "stream after=none 404",
        ]
    );
}

#[tokio::test]
async fn a_malformed_last_event_id_is_a_400_saying_what_an_id_looks_like() {
    let fake = Fake::default();
    for (uri, headers) in [
        ("/api/stream", vec![("last-event-id", "banana")]),
        ("/api/tasks/3/stream", vec![("last-event-id", "12-x")]),
        ("/api/tasks/3/stream", vec![("last-event-id", "-5")]),
        ("/api/stream?after=1-2-3", vec![]),
    ] {
        let (status, _, body) = get_with(app(&fake), uri, &headers).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri} {headers:?}: {body}");
        let error = error_of(&body);
        assert!(error.contains("malformed event id"), "{error}");
        let source = if headers.is_empty() {
            "`after` query parameter"
        } else {
            "Last-Event-ID header"
        };
        assert!(error.contains(source), "{error}");
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

/// Every route of the router is in the document and every documented route is served: the
/// documented methods reach a handler, the others are 405.
#[tokio::test]
async fn the_document_and_the_router_have_the_same_routes() {
    let document = crate::routes::openapi_document::<Fake>();
    let mut documented = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let mut served: Vec<String> = ADMIN_ROUTES
        .iter()
        .map(|(m, p)| format!("{m} {p}"))
        .chain(
            [
                "POST /api/signal",
                "POST /api/webhooks/github",
                "POST /api/login",
                "GET /api/status",
                "GET /api/openapi.json",
                "GET /healthz",
            ]
            .map(String::from),
        )
        .map(|route| {
            route
                .replace("/api/tasks/1", "/api/tasks/{id}")
                .replace("/projects/web/", "/projects/{project}/")
                .replace("/members/bob", "/members/{login}")
                .replace("/api/users/bob", "/api/users/{login}")
                .replace("/api/tokens/1", "/api/tokens/{token}")
                .replace("/credentials/claude-code", "/credentials/{harness}")
                .replace("/attachments/a.txt", "/attachments/{name}")
                .replace("/api/prompts/review.md", "/api/prompts/{file}")
        })
        .collect();
    served.sort();
    assert_eq!(
        documented, served,
        "the document lists exactly the served routes"
    );

    let fake = Fake::default();
    let all = ["GET", "POST", "PUT", "DELETE", "PATCH"];
    for (path, item) in document["paths"].as_object().unwrap() {
        let uri = path
            .replace("{id}", "1")
            .replace("{project}", "web")
            .replace("{harness}", "codex");
        for method in all {
            let listed = item.get(method.to_lowercase()).is_some();
            let (status, _, body) = send(
                app(&fake),
                method.parse().unwrap(),
                &uri,
                Some(API_TOKEN),
                None,
            )
            .await;
            let code = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["code"].as_str().map(String::from));
            if listed {
                assert!(
                    !matches!(code.as_deref(), Some("no_route" | "method_not_allowed")),
                    "{method} {uri} is documented but not served: {status} {body}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {uri} is served but not documented"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_openapi_document_is_served_without_a_token() {
    let (status, content_type, body) = send(
        app(&Fake::default()),
        Method::GET,
        "/api/openapi.json",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let document: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(document, crate::routes::openapi_document::<Fake>());
    assert_eq!(document["openapi"], "3.1.0");
    let task_view = &document["components"]["schemas"]["TaskView"];
    assert!(task_view["properties"]["state"].is_object(), "{task_view}");
    let logs = &document["paths"]["/api/tasks/{id}/logs"]["get"]["responses"]["200"];
    assert!(
        logs["content"]["application/x-ndjson"]["schema"].is_object(),
        "{logs}"
    );
    let signal = &document["paths"]["/api/signal"]["post"];
    assert_eq!(signal["security"], json!([{"runToken": []}]));
    assert_eq!(document["paths"]["/healthz"]["get"]["security"], json!([]));
}

/// Sends a GET with the API token; the status, the `Link` header and the body.
async fn get_page(uri: &str) -> (StatusCode, Option<String>, Value) {
    let req = Request::builder()
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {API_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let res = app(&Fake::default()).oneshot(req).await.unwrap();
    let status = res.status();
    let link = res
        .headers()
        .get(header::LINK)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, link, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn lists_are_pages_with_a_next_link() {
    let ids = |body: &Value| -> Vec<i64> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect()
    };
    let (status, link, body) = get_page("/api/tasks?project=my%20app&limit=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body), [1, 2]);
    assert_eq!(
        link.as_deref(),
        Some(r#"</api/tasks?project=my%20app&limit=2&after=2>; rel="next""#)
    );
    let (_, link, body) = get_page("/api/tasks?limit=2&after=2").await;
    assert_eq!(ids(&body), [3, 4]);
    assert_eq!(
        link.as_deref(),
        Some(r#"</api/tasks?limit=2&after=4>; rel="next""#)
    );
    let (_, link, body) = get_page("/api/tasks?limit=2&after=4").await;
    assert_eq!(ids(&body), [5]);
    assert_eq!(link, None, "the last page has no next link");
    let (_, link, body) = get_page("/api/tasks").await;
    assert_eq!(ids(&body), [1, 2, 3, 4, 5]);
    assert_eq!(link, None);

    for bad in [
        "/api/tasks?limit=0",
        "/api/tasks?limit=501",
        "/api/tasks?limit=ten",
        "/api/tasks?limit=",
        "/api/tasks?after=-1",
        "/api/tasks?after=x",
        "/api/projects?limit=1000",
        "/api/projects?after=1.5",
    ] {
        let (status, _, body) = get_page(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["code"], "bad_request", "{bad}");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains("invalid limit") || message.contains("invalid after"),
            "{bad}: {message}"
        );
    }
}

/// Found by the OpenAPI fuzz test: a webhook body over the limit was axum's plain-text 413.
#[tokio::test]
async fn a_webhook_body_over_the_limit_is_a_json_413() {
    let fake = Fake::default();
    let body = "y".repeat(2_000);
    let (status, content_type, body) = send(
        app_with_limit(&fake, 1_000),
        Method::POST,
        "/api/webhooks/github",
        None,
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    assert!(error_of(&body).contains("max_body_bytes"), "{body}");
    assert!(fake.calls().is_empty());
}
