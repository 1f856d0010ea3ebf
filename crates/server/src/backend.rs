//! The seam between HTTP and the engine: the operations the routes call, as a trait implemented
//! by `engine::Engine`. It exists so the routing, auth and error mapping can be tested with a fake
//! while the real engine runs elsewhere; production code only ever uses `Engine` (see `app`).

use bytes::Bytes;
use domain::{Signal, Stage, TaskId, TaskState};
use engine::Result;
use engine::api::{
    AuditEntryView, CredentialView, CredentialsRequest, NewSessionView, NewTokenView, NewUser,
    TokenView, UserModels, UserView,
};
use engine::api::{Dashboard, TaskDiff, TranscriptPage, TranscriptQuery};
use engine::api::{
    NewProject, NewTask, Page, PageRequest, ProjectSettings, ProjectView, ServerStatus,
    StreamCursor, TaskAction, TaskDetail, TaskView,
};
use engine::{Engine, Identity, WebhookDelivery, WebhookOutcome};
use futures::stream::BoxStream;
use std::future::Future;
use std::net::IpAddr;

/// What the HTTP layer needs from the engine, one method per `Engine` entry point.
pub(crate) trait Backend: Clone + Send + Sync + 'static {
    fn add_project(&self, req: NewProject) -> impl Future<Output = Result<ProjectView>> + Send;
    fn list_projects(
        &self,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<ProjectView>>> + Send;
    fn update_project_settings(
        &self,
        project: String,
        settings: ProjectSettings,
    ) -> impl Future<Output = Result<ProjectView>> + Send;
    fn create_task(&self, req: NewTask) -> impl Future<Output = Result<TaskView>> + Send;
    fn list_tasks(
        &self,
        project: Option<String>,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<TaskView>>> + Send;
    fn task(&self, id: TaskId) -> impl Future<Output = Result<TaskDetail>> + Send;
    /// Each visible task's state and allowed actions, in one read (missing ones left out).
    fn states_and_actions(
        &self,
        ids: &[TaskId],
    ) -> Result<Vec<(TaskId, TaskState, Vec<TaskAction>)>>;
    fn approve(&self, id: TaskId) -> impl Future<Output = Result<TaskView>> + Send;
    fn answer(&self, id: TaskId, text: String) -> impl Future<Output = Result<TaskView>> + Send;
    /// The instance's prompts (administrators).
    fn prompts(&self) -> Result<Vec<engine::api::PromptView>>;
    /// The prompts in force for a project's new tasks (its members).
    fn project_prompts(&self, project: String) -> Result<Vec<engine::api::PromptView>>;
    /// Overrides a prompt, or resets it to the built-in text (`None`).
    fn set_prompt(&self, file: String, text: Option<String>) -> Result<engine::api::PromptView>;
    /// The task's attachments.
    fn attachments(&self, id: TaskId) -> Result<Vec<engine::api::AttachmentView>>;
    /// One attachment's bytes.
    fn attachment(&self, id: TaskId, name: String) -> Result<Vec<u8>>;
    /// Stores an attachment.
    fn add_attachment(
        &self,
        id: TaskId,
        name: String,
        bytes: Vec<u8>,
    ) -> Result<engine::api::AttachmentView>;
    /// Replaces the task's doc (its owner, the project's owners, administrators; no live agent).
    fn edit_doc(&self, id: TaskId, doc: String) -> impl Future<Output = Result<()>> + Send;
    /// Sends the plan back to the planner at the plan gate with `feedback`.
    fn request_plan_changes(
        &self,
        id: TaskId,
        feedback: String,
    ) -> impl Future<Output = Result<TaskView>> + Send;
    fn run(
        &self,
        id: TaskId,
        stage: Option<Stage>,
    ) -> impl Future<Output = Result<TaskView>> + Send;
    fn stop(&self, id: TaskId) -> impl Future<Output = Result<TaskView>> + Send;
    fn resume(&self, id: TaskId) -> impl Future<Output = Result<TaskView>> + Send;
    fn merge(&self, id: TaskId) -> impl Future<Output = Result<TaskView>> + Send;
    fn delete(&self, id: TaskId) -> impl Future<Output = Result<TaskView>> + Send;
    fn signal(
        &self,
        run_token: String,
        task: TaskId,
        signal: Signal,
    ) -> impl Future<Output = Result<()>> + Send;
    fn status(&self) -> impl Future<Output = ServerStatus> + Send;
    /// This backend acting for `who` (every later call checks what they may see and do).
    fn acting_as(&self, who: Identity) -> Self;
    fn authenticate_token(&self, token: &str) -> Result<Identity>;
    fn authenticate_session(&self, secret: &str) -> Result<Identity>;
    fn login(
        &self,
        login: String,
        password: String,
        from: IpAddr,
    ) -> impl Future<Output = Result<NewSessionView>> + Send;
    fn logout(&self) -> Result<()>;
    fn me(&self) -> Result<UserView>;
    fn list_users(&self) -> Result<Vec<UserView>>;
    fn update_user(&self, login: String, update: engine::api::UserUpdate) -> Result<UserView>;
    fn create_user(&self, req: NewUser) -> impl Future<Output = Result<UserView>> + Send;
    fn create_token(&self, name: String, expires_in_days: Option<u32>) -> Result<NewTokenView>;
    fn list_tokens(&self) -> Result<Vec<TokenView>>;
    /// Every account's tokens (administrators).
    fn list_all_tokens(&self) -> Result<Vec<TokenView>>;
    fn revoke_token(&self, id: i64) -> Result<()>;
    fn set_member(&self, project: String, login: String, role: String) -> Result<()>;
    fn remove_member(&self, project: String, login: String) -> Result<()>;
    fn members(&self, project: String) -> Result<Vec<engine::api::MemberView>>;
    fn list_credentials(&self) -> Result<Vec<CredentialView>>;
    fn set_credentials(&self, harness: String, req: CredentialsRequest) -> Result<CredentialView>;
    fn delete_credentials(&self, harness: String) -> Result<()>;
    fn user_models(&self) -> Result<UserModels>;
    fn set_user_models(&self, req: UserModels) -> Result<UserModels>;
    fn audit_log(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditEntryView>>;
    /// A GitHub webhook delivery (checked and deduplicated by the engine).
    fn github_webhook(&self, delivery: WebhookDelivery<'_>) -> Result<WebhookOutcome>;
    /// NDJSON lines of `FollowItem`s (each chunk holds whole lines).
    fn logs(
        &self,
        id: TaskId,
        follow: bool,
    ) -> impl Future<Output = Result<BoxStream<'static, Bytes>>> + Send;
    /// A page of a task's transcript.
    fn transcript(
        &self,
        id: TaskId,
        query: TranscriptQuery,
    ) -> impl Future<Output = Result<TranscriptPage>> + Send;
    /// The caller's dashboard: agents at work, today's usage, recent changes.
    fn dashboard(&self) -> Result<Dashboard>;
    /// The SSE id of the newest activity now (`?after=` of a stream opened by a page rendered
    /// now).
    fn stream_head(&self) -> Result<String>;
    /// The task's changes against the merge base with the project's default branch.
    fn task_diff(&self, id: TaskId) -> impl Future<Output = Result<TaskDiff>> + Send;
    /// Whether no account has a password yet (the first-run setup page is due).
    fn setup_needed(&self) -> bool;
    /// Creates the first administrator, proved by the server's api-token.
    fn setup_first_admin(
        &self,
        setup_token: String,
        login: String,
        password: String,
    ) -> impl Future<Output = Result<UserView>> + Send;
    /// Server-Sent Events text of everything (`task` = `None`) or one task, after `after`;
    /// without transcript events when `transcripts` is false.
    fn stream(
        &self,
        task: Option<TaskId>,
        after: Option<StreamCursor>,
        transcripts: bool,
    ) -> impl Future<Output = Result<BoxStream<'static, Bytes>>> + Send;
}

impl Backend for Engine {
    async fn status(&self) -> ServerStatus {
        Engine::status(self).await
    }
    fn github_webhook(&self, delivery: WebhookDelivery<'_>) -> Result<WebhookOutcome> {
        Engine::github_webhook(self, delivery)
    }
    fn acting_as(&self, who: Identity) -> Self {
        Engine::acting_as(self, who)
    }
    fn authenticate_token(&self, token: &str) -> Result<Identity> {
        Engine::authenticate_token(self, token)
    }
    fn authenticate_session(&self, secret: &str) -> Result<Identity> {
        Engine::authenticate_session(self, secret)
    }
    async fn login(&self, login: String, password: String, from: IpAddr) -> Result<NewSessionView> {
        Engine::login(self, &login, &password, from).await
    }
    fn logout(&self) -> Result<()> {
        Engine::logout(self)
    }
    fn me(&self) -> Result<UserView> {
        Engine::me(self)
    }
    fn list_users(&self) -> Result<Vec<UserView>> {
        Engine::list_users(self)
    }
    fn update_user(&self, login: String, update: engine::api::UserUpdate) -> Result<UserView> {
        Engine::update_user(self, &login, update)
    }
    async fn create_user(&self, req: NewUser) -> Result<UserView> {
        Engine::create_user(self, req).await
    }
    fn create_token(&self, name: String, expires_in_days: Option<u32>) -> Result<NewTokenView> {
        Engine::create_token(self, &name, expires_in_days)
    }
    fn list_tokens(&self) -> Result<Vec<TokenView>> {
        Engine::list_tokens(self)
    }
    fn list_all_tokens(&self) -> Result<Vec<TokenView>> {
        Engine::list_all_tokens(self)
    }
    fn revoke_token(&self, id: i64) -> Result<()> {
        Engine::revoke_token(self, id)
    }
    fn set_member(&self, project: String, login: String, role: String) -> Result<()> {
        Engine::set_member(self, &project, &login, &role)
    }
    fn remove_member(&self, project: String, login: String) -> Result<()> {
        Engine::remove_member(self, &project, &login)
    }
    fn members(&self, project: String) -> Result<Vec<engine::api::MemberView>> {
        Engine::members(self, &project)
    }
    fn list_credentials(&self) -> Result<Vec<CredentialView>> {
        Engine::list_credentials(self)
    }
    fn set_credentials(&self, harness: String, req: CredentialsRequest) -> Result<CredentialView> {
        Engine::set_credentials(self, &harness, &req)
    }
    fn delete_credentials(&self, harness: String) -> Result<()> {
        Engine::delete_credentials(self, &harness)
    }
    fn user_models(&self) -> Result<UserModels> {
        Engine::user_models(self)
    }
    fn set_user_models(&self, req: UserModels) -> Result<UserModels> {
        Engine::set_user_models(self, &req)
    }
    fn audit_log(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditEntryView>> {
        Engine::audit_log(self, before, limit)
    }
    fn add_project(&self, req: NewProject) -> impl Future<Output = Result<ProjectView>> + Send {
        Engine::add_project(self, req)
    }
    fn list_projects(
        &self,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<ProjectView>>> + Send {
        Engine::list_projects(self, page)
    }
    async fn update_project_settings(
        &self,
        project: String,
        settings: ProjectSettings,
    ) -> Result<ProjectView> {
        Engine::update_project_settings(self, &project, settings).await
    }
    fn create_task(&self, req: NewTask) -> impl Future<Output = Result<TaskView>> + Send {
        Engine::create_task(self, req)
    }
    fn list_tasks(
        &self,
        project: Option<String>,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<TaskView>>> + Send {
        Engine::list_tasks(self, project, page)
    }
    fn task(&self, id: TaskId) -> impl Future<Output = Result<TaskDetail>> + Send {
        Engine::task(self, id)
    }
    fn states_and_actions(
        &self,
        ids: &[TaskId],
    ) -> Result<Vec<(TaskId, TaskState, Vec<TaskAction>)>> {
        Engine::states_and_actions(self, ids)
    }
    fn approve(&self, id: TaskId) -> impl Future<Output = Result<TaskView>> + Send {
        Engine::approve(self, id)
    }
    fn answer(&self, id: TaskId, text: String) -> impl Future<Output = Result<TaskView>> + Send {
        Engine::answer(self, id, text)
    }
    fn edit_doc(&self, id: TaskId, doc: String) -> impl Future<Output = Result<()>> + Send {
        Engine::edit_doc(self, id, doc)
    }
    fn attachments(&self, id: TaskId) -> Result<Vec<engine::api::AttachmentView>> {
        Engine::attachments(self, id)
    }
    fn prompts(&self) -> Result<Vec<engine::api::PromptView>> {
        Engine::prompts(self)
    }
    fn set_prompt(&self, file: String, text: Option<String>) -> Result<engine::api::PromptView> {
        Engine::set_prompt(self, &file, text)
    }
    fn project_prompts(&self, project: String) -> Result<Vec<engine::api::PromptView>> {
        Engine::project_prompts(self, &project)
    }
    fn attachment(&self, id: TaskId, name: String) -> Result<Vec<u8>> {
        Engine::attachment(self, id, &name)
    }
    fn add_attachment(
        &self,
        id: TaskId,
        name: String,
        bytes: Vec<u8>,
    ) -> Result<engine::api::AttachmentView> {
        Engine::add_attachment(self, id, &name, &bytes)
    }
    fn request_plan_changes(
        &self,
        id: TaskId,
        feedback: String,
    ) -> impl Future<Output = Result<TaskView>> + Send {
        Engine::request_plan_changes(self, id, feedback)
    }
    fn run(
        &self,
        id: TaskId,
        stage: Option<Stage>,
    ) -> impl Future<Output = Result<TaskView>> + Send {
        Engine::run(self, id, stage)
    }
    fn stop(&self, id: TaskId) -> impl Future<Output = Result<TaskView>> + Send {
        Engine::stop(self, id)
    }
    fn resume(&self, id: TaskId) -> impl Future<Output = Result<TaskView>> + Send {
        Engine::resume(self, id)
    }
    fn merge(&self, id: TaskId) -> impl Future<Output = Result<TaskView>> + Send {
        Engine::merge(self, id)
    }
    fn delete(&self, id: TaskId) -> impl Future<Output = Result<TaskView>> + Send {
        Engine::delete(self, id)
    }
    async fn signal(&self, run_token: String, task: TaskId, signal: Signal) -> Result<()> {
        Engine::signal(self, &run_token, task, signal).await
    }
    fn logs(
        &self,
        id: TaskId,
        follow: bool,
    ) -> impl Future<Output = Result<BoxStream<'static, Bytes>>> + Send {
        Engine::logs_ndjson(self, id, follow)
    }
    fn stream(
        &self,
        task: Option<TaskId>,
        after: Option<StreamCursor>,
        transcripts: bool,
    ) -> impl Future<Output = Result<BoxStream<'static, Bytes>>> + Send {
        Engine::stream(self, task, after, transcripts)
    }
    fn transcript(
        &self,
        id: TaskId,
        query: TranscriptQuery,
    ) -> impl Future<Output = Result<TranscriptPage>> + Send {
        Engine::transcript(self, id, query)
    }
    fn dashboard(&self) -> Result<Dashboard> {
        Engine::dashboard(self)
    }
    fn stream_head(&self) -> Result<String> {
        Engine::stream_head(self)
    }
    fn task_diff(&self, id: TaskId) -> impl Future<Output = Result<TaskDiff>> + Send {
        Engine::task_diff(self, id)
    }
    fn setup_needed(&self) -> bool {
        Engine::setup_needed(self)
    }
    async fn setup_first_admin(
        &self,
        setup_token: String,
        login: String,
        password: String,
    ) -> Result<UserView> {
        Engine::setup_first_admin(self, &setup_token, &login, &password).await
    }
}
