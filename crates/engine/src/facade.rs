//! The public entry points of the engine (what the HTTP layer calls).

use crate::api::*;
use crate::error::{EngineError, Result};
use crate::inner::{Busy, Inner, Parts, StopCause};
use crate::outbox::MergeOutcome;
use crate::secrets::SecretBox;
use crate::stream_access::AccessChange;
use crate::transition::{after_commit, apply_event, apply_in, decide_in, not_found};
use crate::{
    background, confine, dispatch, guards, logs, outbox, settings, tokens, views, workspace,
};
use domain::{Event, ProjectId, RunId, RunStatus, Signal, Stage, TaskId, TaskState};
use futures::stream::BoxStream;
use harness::sandbox::{Sandbox, SandboxError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use store::{IntentKind, NewProjectRow, Store};

/// Server-wide settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// The `atelier` binary: agents signal with it and the scripted agent runs it.
    pub atelier_bin: PathBuf,
    /// URL agents use to reach this server (always a loopback address).
    pub server_url: String,
    /// Agents that may run at once, all projects together.
    pub global_slots: usize,
    /// Successor processes kept warm at once (`crate::warm`), outside `global_slots`; 0: none.
    pub warm_limit: usize,
    /// How long a warm process may wait for its run before it is shut down.
    pub warm_idle: Duration,
    /// A run that emits nothing for this long is interrupted, then failed.
    pub stall_window: Duration,
    /// Default wall-clock limit of one run.
    pub stage_timeout: Duration,
    /// Time between a graceful interrupt and killing the process tree.
    pub stop_grace: Duration,
    /// How often the local forge checks the remote for merged branches.
    pub merge_poll: Duration,
    /// Longest one git command that talks to a project's remote (fetch, push, ls-remote) may
    /// take before it is killed and counts as failed (`git::Repo::with_network_timeout`).
    pub forge_timeout: Duration,
    /// First wait after an infrastructure failure; doubles per consecutive failure.
    pub retry_base: Duration,
    /// Longest wait between infrastructure retries.
    pub retry_cap: Duration,
    /// The agent CLIs' executables (`claude`, `codex`, `opencode` on the agents' PATH unless set).
    pub claude_bin: PathBuf,
    pub codex_bin: PathBuf,
    pub opencode_bin: PathBuf,
    /// How agents are confined (bubblewrap unless the operator opted out).
    pub sandbox: SandboxMode,
    /// Where the agents' home folders live (one per task, mode 0700), outside the data directory.
    pub homes_dir: PathBuf,
    /// The server's `api-token`: with no users yet it becomes the API token of a first
    /// administrator, so existing installations keep working.
    pub legacy_api_token: Option<String>,
}

/// How agent processes are confined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxMode {
    /// Every agent and setup hook runs inside a bubblewrap sandbox; `bwrap` is the executable (a
    /// bare name is looked up on `PATH`). When it is missing or cannot build a sandbox, agents
    /// do not start: their runs fail with the reason and how to fix it.
    Bubblewrap { bwrap: PathBuf },
    /// Agents run unconfined, as the server's user (`--sandbox=none`): a warning is logged at
    /// every start.
    None,
}

impl SandboxMode {
    /// The name shown in status output: `bubblewrap` or `none`.
    pub fn name(&self) -> &'static str {
        match self {
            SandboxMode::Bubblewrap { .. } => "bubblewrap",
            SandboxMode::None => "none",
        }
    }
}

/// The default folder of agent homes for a data directory: `$XDG_STATE_HOME/atelier/homes/<id>`
/// (`~/.local/state/...` without it), where `<id>` tells data directories apart.
pub fn default_homes_dir(data_dir: &Path) -> PathBuf {
    use sha2::Digest;
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    state.join("atelier/homes").join(hex::encode(&digest[..8]))
}

impl EngineConfig {
    pub fn new(data_dir: PathBuf, atelier_bin: PathBuf, server_url: String) -> Self {
        let homes_dir = default_homes_dir(&data_dir);
        EngineConfig {
            data_dir,
            atelier_bin,
            server_url,
            global_slots: 8,
            warm_limit: 2,
            warm_idle: Duration::from_secs(300),
            stall_window: Duration::from_secs(600),
            stage_timeout: Duration::from_secs(3600),
            stop_grace: Duration::from_secs(5),
            merge_poll: Duration::from_secs(30),
            forge_timeout: git::Repo::DEFAULT_NETWORK_TIMEOUT,
            retry_base: Duration::from_secs(10),
            retry_cap: Duration::from_secs(300),
            claude_bin: PathBuf::from("claude"),
            codex_bin: PathBuf::from("codex"),
            opencode_bin: PathBuf::from("opencode"),
            sandbox: SandboxMode::Bubblewrap {
                bwrap: PathBuf::from("bwrap"),
            },
            homes_dir,
            legacy_api_token: None,
        }
    }
}

/// Refuses to start while a stored project's role needs an agent CLI that cannot start: its
/// first task would fail on it. The error names the project, the CLI and what to do.
async fn require_stored_clis(store: &Store, config: &EngineConfig) -> Result<()> {
    let projects = store.read(|tx| tx.projects())?;
    let mut problems = Vec::new();
    for project in projects {
        let settings = settings::parse(&project.settings_json)?;
        if let Err(err) = crate::checks::require(config, &crate::checks::needed(&settings)).await {
            problems.push(format!("project `{}`: {err}", project.name));
        }
    }
    if problems.is_empty() {
        crate::checks::warn_about_default(config).await;
        Ok(())
    } else {
        Err(EngineError::InvalidInput(format!(
            "a project's roles need an agent CLI that cannot start: {}",
            problems.join("; ")
        )))
    }
}

/// Takes the data directory for this process: two servers on one data directory would each
/// "recover" the other's live runs and act twice on the same rows.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join("atelier.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| EngineError::InvalidInput(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(EngineError::Conflict(format!(
            "another Atelier server is already using the data directory {}: stop it, or give this one another --data-dir",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(EngineError::InvalidInput(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// Creates the data directory, or tightens an existing one, to mode 0700, and removes group and
/// other permissions from everything in it (files an older version wrote world-readable).
fn private_data_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let failed = |e: std::io::Error| {
        EngineError::InvalidInput(format!(
            "cannot make the data directory {} private (mode 0700): {e}",
            dir.display()
        ))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(failed)?;
    let mode = std::fs::metadata(dir).map_err(failed)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)?;
        tracing::warn!(data_dir = %dir.display(), "the data directory was mode {mode:o}; tightened to 700");
    }
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).map_err(failed)?.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.file_type().is_symlink() {
                continue;
            }
            if meta.is_dir() {
                pending.push(entry.path());
            }
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(
                    entry.path(),
                    std::fs::Permissions::from_mode(mode & !0o077),
                )
                .map_err(failed)?;
            }
        }
    }
    Ok(())
}

/// The sandbox agents will start in, found once at start (and from then on the server's own git
/// on project repositories: `git::confine_server_git`); the outcome is logged either way.
fn open_sandbox(mode: &SandboxMode) -> std::result::Result<Option<Sandbox>, SandboxError> {
    match mode {
        SandboxMode::Bubblewrap { bwrap } => match Sandbox::probe(bwrap) {
            Ok(sandbox) => {
                tracing::info!(bwrap = %sandbox.program().display(), "agents run in a bubblewrap sandbox");
                // Its own git on project repositories too: agents can plant links in `.git`.
                git::confine_server_git(sandbox.clone());
                Ok(Some(sandbox))
            }
            Err(err) => {
                tracing::error!("no agent can start: {err}");
                Err(err)
            }
        },
        SandboxMode::None => {
            tracing::warn!(
                "the agent sandbox is off (--sandbox=none): agents run unconfined as this server's \
                 user and can read its data directory, API token and credentials"
            );
            Ok(None)
        }
    }
}

/// Seals the role credentials an older version stored in plain text, then empties the WAL so
/// the plain values do not linger there.
fn seal_stored_credentials(store: &Store, secrets: &SecretBox) -> Result<()> {
    let sealed = store.write(|tx| {
        let mut sealed = Vec::new();
        for project in tx.projects()? {
            let mut settings = settings::parse(&project.settings_json)?;
            if secrets.seal_settings(&mut settings)? {
                let json = serde_json::to_string(&settings)
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                tx.set_project_settings(project.id, &json)?;
                sealed.push(project.name);
            }
        }
        Ok::<_, EngineError>(sealed)
    })?;
    if !sealed.is_empty() {
        store.checkpoint()?;
        tracing::info!(projects = ?sealed, "sealed role credentials stored in plain text by an older version");
    }
    Ok(())
}

/// Prefixes the message of a refusal with what was refused (`cannot merge task 3: …`).
fn in_context(what: &str, err: EngineError) -> EngineError {
    match err {
        EngineError::Conflict(msg) => EngineError::Conflict(format!("{what}: {msg}")),
        EngineError::InvalidState(msg) => EngineError::InvalidState(format!("{what}: {msg}")),
        other => other,
    }
}

/// Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
    /// Whom this handle acts for (see `accounts`): the server itself unless `acting_as`.
    pub(crate) acting: crate::accounts::Acting,
}

impl Engine {
    /// Opens the store in `config.data_dir`, recovers runs that were live when the server died,
    /// removes workspaces no task owns, replays unfinished intents and starts the background
    /// loops.
    pub async fn start(config: EngineConfig) -> Result<Engine> {
        // Everything the server writes from here on is private to its user.
        harness::process::set_private_umask();
        private_data_dir(&config.data_dir)?;
        let data_lock = lock_data_dir(&config.data_dir)?;
        let store = Store::open_in(&config.data_dir)?;
        require_stored_clis(&store, &config).await?;
        let registered: [Arc<dyn harness::Harness>; 4] = [
            Arc::new(harness::scripted::ScriptedHarness::new(
                config.atelier_bin.clone(),
            )),
            Arc::new(harness::claude::ClaudeHarness::new(
                config.claude_bin.clone(),
            )),
            // Long-lived Codex and OpenCode sessions run through `atelier codex-bridge` and
            // `atelier opencode-bridge`.
            Arc::new(
                harness::codex::CodexHarness::new(config.codex_bin.clone())
                    .with_bridge(config.atelier_bin.clone()),
            ),
            Arc::new(
                harness::opencode::OpenCodeHarness::new(config.opencode_bin.clone())
                    .with_bridge(config.atelier_bin.clone()),
            ),
        ];
        let harnesses: BTreeMap<&'static str, Arc<dyn harness::Harness>> =
            registered.into_iter().map(|h| (h.name(), h)).collect();
        let forge: Arc<dyn forge::Forge> =
            Arc::new(forge::LocalForge::new().with_network_timeout(config.forge_timeout));
        let prompts = crate::prompt::Prompts::with_overrides(&config.data_dir.join("prompts"))
            .map_err(|e| EngineError::InvalidInput(format!("prompt overrides: {e}")))?;
        let sandbox = open_sandbox(&config.sandbox);
        let secrets = SecretBox::open_or_create(&config.data_dir)?;
        seal_stored_credentials(&store, &secrets)?;
        crate::accounts::bootstrap(&store, config.legacy_api_token.as_deref())?;
        let inner = Arc::new(Inner::new(Parts {
            store,
            config,
            harnesses,
            forge,
            prompts,
            sandbox,
            secrets,
            data_lock,
        }));
        background::recover(&inner)?;
        background::remove_leftovers(&inner).await?;
        tokio::spawn(crate::ingest::run_flusher(Arc::clone(&inner)));
        tokio::spawn(dispatch::run_dispatcher(Arc::clone(&inner)));
        // Tracked with the pull-request syncs: a shutdown waits for both (they run git).
        inner
            .syncs
            .tracker
            .spawn(outbox::run_outbox(Arc::clone(&inner)));
        tokio::spawn(crate::follow_up::poll(Arc::clone(&inner)));
        tokio::spawn(background::run_retries(Arc::clone(&inner)));
        Ok(Engine {
            inner,
            acting: crate::accounts::Acting::System,
        })
    }

    pub async fn add_project(&self, req: NewProject) -> Result<ProjectView> {
        self.require_admin("add projects (they name folders on the server)")?;
        let given = Path::new(&req.path);
        let path = std::fs::canonicalize(given).map_err(|e| {
            EngineError::InvalidInput(format!("project path {}: {e}", given.display()))
        })?;
        let repo = git::Repo::open(&path)
            .await
            .map_err(|e| EngineError::InvalidInput(e.to_string()))?;
        let name = match req.name {
            Some(name) => name,
            None => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let name = domain::ProjectName::parse(&name)
            .map_err(|e| EngineError::InvalidInput(e.to_string()))?;
        let name = name.as_str();
        let mut settings = req.settings.unwrap_or_default();
        if let Some(setup) = &req.github {
            settings.forge = crate::forges::github_from_remote(&repo, &settings, setup).await?;
        }
        self.complete_and_check(&mut settings)?;
        crate::checks::require(&self.inner.config, &crate::checks::needed(&settings)).await?;
        let default_branch = repo
            .default_branch(&settings.remote)
            .await
            .map_err(|e| EngineError::InvalidInput(e.to_string()))?;
        self.inner.secrets.seal_settings(&mut settings)?;
        let settings_json =
            serde_json::to_string(&settings).map_err(|e| EngineError::Internal(e.to_string()))?;
        let path_text = repo.path().display().to_string();
        let row = self.inner.store.write(|tx| {
            if tx.project_by_name(name)?.is_some() {
                return Err(EngineError::Conflict(format!(
                    "a project named `{name}` already exists: choose another --name"
                )));
            }
            if let Some(existing) = tx.project_by_path(&path_text)? {
                return Err(EngineError::Conflict(format!(
                    "{path_text} is already the project `{}`",
                    existing.name
                )));
            }
            let row = tx.insert_project(&NewProjectRow {
                name,
                path: &path_text,
                default_branch: &default_branch,
                settings_json: &settings_json,
            })?;
            self.audit_in(tx, "project.add", name, Some(&path_text))?;
            Ok(row)
        })?;
        self.inner
            .streams
            .access_changed(AccessChange::Project(row.id));
        views::project(row)
    }

    /// Replaces a project's settings, validated as when it was added. Secrets are write-only:
    /// a role `env` value or a GitHub secret given as the API shows it (`(redacted)`) keeps the
    /// stored one; any other value replaces it (sealed at rest).
    pub async fn update_project_settings(
        &self,
        project: &str,
        mut settings: ProjectSettings,
    ) -> Result<ProjectView> {
        let current = self.inner.store.read(|tx| {
            let current = self.visible_project(tx, project)?;
            self.require_owner(tx, current.id)?;
            Ok::<_, EngineError>(current)
        })?;
        let stored = settings::parse(&current.settings_json)?;
        crate::forges::keep_redacted(&mut settings, &stored)?;
        self.complete_and_check(&mut settings)?;
        crate::checks::require(&self.inner.config, &crate::checks::needed(&settings)).await?;
        self.inner.secrets.seal_settings(&mut settings)?;
        let settings_json =
            serde_json::to_string(&settings).map_err(|e| EngineError::Internal(e.to_string()))?;
        let row = self.inner.store.write(|tx| {
            tx.set_project_settings(current.id, &settings_json)?;
            self.audit_in(tx, "project.settings", &current.name, None)?;
            tx.project(current.id)?.ok_or_else(|| {
                EngineError::NotFound(format!("project {project} was deleted meanwhile"))
            })
        })?;
        tracing::info!(project = %row.name, "project settings changed");
        self.inner
            .streams
            .access_changed(AccessChange::Project(row.id));
        views::project(row).map(|view| self.shown(view))
    }

    /// One page of projects in ascending id order.
    /// Gives every stage of the standard pipeline without a role the default one (the other
    /// stages fall back to one of these: `task_pipeline::role`), then checks the settings as a
    /// whole (roles against their harnesses, sandbox paths outside the data directory).
    fn complete_and_check(&self, settings: &mut ProjectSettings) -> Result<()> {
        for stage in Stage::STANDARD {
            settings
                .roles
                .entry(stage)
                .or_insert_with(settings::default_role);
        }
        settings::validate(settings, &self.inner.harnesses)?;
        confine::check_sandbox_paths(&self.inner.config, &settings.sandbox)
            .map_err(|e| EngineError::InvalidInput(format!("project settings: {e}")))
    }

    pub async fn list_projects(&self, page: PageRequest) -> Result<Page<ProjectView>> {
        let limit = check_page(page)?;
        let after = page.after.map(ProjectId);
        // One row more than asked tells whether another page follows.
        let rows = self
            .inner
            .store
            .read(|tx| tx.projects_page(after, limit + 1, self.member_filter()))?;
        let (rows, next) = cut_page(rows, limit, |row| row.id.0);
        Ok(self.shown(Page {
            items: rows
                .into_iter()
                .map(views::project)
                .collect::<Result<_>>()?,
            next,
        }))
    }

    pub async fn create_task(&self, req: NewTask) -> Result<TaskView> {
        // Creation runs to its end (or its rollback) even when the caller goes away: an HTTP
        // client that disconnects mid-way must not leave a half-made worktree behind.
        let engine = self.clone();
        let view = tokio::spawn(async move { engine.create_task_to_the_end(req).await })
            .await
            .map_err(|e| EngineError::Internal(format!("task creation panicked: {e}")))??;
        Ok(self.shown(view))
    }

    /// One page of tasks in ascending id order, optionally of one project (name or id).
    pub async fn list_tasks(
        &self,
        project: Option<String>,
        page: PageRequest,
    ) -> Result<Page<TaskView>> {
        let limit = check_page(page)?;
        let after = page.after.map(TaskId);
        self.inner.store.read(|tx| {
            let filter = project.map(|p| self.visible_project(tx, &p)).transpose()?;
            let names: BTreeMap<_, _> =
                tx.projects()?.into_iter().map(|p| (p.id, p.name)).collect();
            // One row more than asked tells whether another page follows.
            let rows =
                tx.tasks_page(filter.map(|p| p.id), after, limit + 1, self.member_filter())?;
            let (rows, next) = cut_page(rows, limit, |row| row.id.0);
            Ok(self.shown(Page {
                items: rows
                    .into_iter()
                    .map(|row| {
                        let name = names.get(&row.project_id).cloned().unwrap_or_default();
                        views::task_in(tx, row, name)
                    })
                    .collect::<Result<_>>()?,
                next,
            }))
        })
    }

    pub async fn task(&self, id: TaskId) -> Result<TaskDetail> {
        let detail = self.inner.store.read(|tx| {
            self.check_task(tx, id)?;
            let mut detail = views::detail(tx, id)?;
            let row = tx
                .task(id)?
                .ok_or_else(|| crate::transition::not_found(id))?;
            match self.may_edit_doc(tx, &row) {
                Ok(()) => detail.actions.push(TaskAction::EditDoc),
                // Not this caller, or not now: the doc is shown without its editor.
                Err(EngineError::Forbidden(_) | EngineError::Conflict(_)) => {}
                Err(err) => return Err(err),
            }
            Ok::<_, EngineError>(detail)
        })?;
        Ok(self.shown(detail))
    }

    /// Each task's state and what a user may do to it now, read together in one transaction —
    /// for pages that list many tasks (the inbox's unblocking actions) without reading each
    /// task whole. Tasks that are gone or not visible to the caller are left out.
    pub fn states_and_actions(
        &self,
        ids: &[TaskId],
    ) -> Result<Vec<(TaskId, TaskState, Vec<TaskAction>)>> {
        self.inner.store.read(|tx| {
            let mut found = Vec::with_capacity(ids.len());
            for &id in ids {
                match self.check_task(tx, id) {
                    Ok(()) => {}
                    Err(EngineError::NotFound(_)) => continue,
                    Err(err) => return Err(err),
                }
                let Some(row) = tx.task(id)? else { continue };
                let Some(project) = tx.project(row.project_id)? else {
                    continue;
                };
                let actions = views::actions(tx, &row, &project)?;
                found.push((id, row.state, actions));
            }
            Ok(found)
        })
    }

    async fn act(&self, id: TaskId, event: Event) -> Result<TaskView> {
        self.inner.store.read(|tx| self.check_task(tx, id))?;
        let action = match &event {
            Event::PlanApproved => "task.approve",
            Event::PlanChangesRequested { .. } => "task.request_changes",
            Event::Answered { .. } => "task.answer",
            Event::StopRequested => "task.stop",
            Event::ResumeRequested => "task.resume",
            Event::RunRequested { .. } => "task.run",
            _ => "task.event",
        };
        let row = apply_event(&self.inner, id, event).await?;
        self.audit(action, &format!("task {id}"), None);
        self.view(row)
    }

    /// Appends to the audit trail after the fact (a failure to record is logged, never undoes
    /// the action).
    pub(crate) fn audit(&self, action: &str, target: &str, detail: Option<&str>) {
        if let Err(err) = self
            .inner
            .store
            .write(|tx| self.audit_in(tx, action, target, detail))
        {
            tracing::error!(%action, %target, error = %err, "cannot append to the audit trail");
        }
    }

    fn view(&self, row: store::TaskRow) -> Result<TaskView> {
        self.inner.store.read(|tx| {
            let name = tx
                .project(row.project_id)?
                .map(|p| p.name)
                .unwrap_or_default();
            views::task_in(tx, row, name).map(|view| self.shown(view))
        })
    }

    pub async fn approve(&self, id: TaskId) -> Result<TaskView> {
        self.act(id, Event::PlanApproved).await
    }

    /// Sends the plan back to the planner at the plan gate: the task runs its plan stage again
    /// (a new plan iteration, counted against the run cap), continuing the planner's harness
    /// session with `feedback` as its next input (a fresh plan run with the feedback in its
    /// prompt when there is no session to continue). Empty feedback is refused.
    pub async fn request_plan_changes(&self, id: TaskId, feedback: String) -> Result<TaskView> {
        if feedback.trim().is_empty() {
            return Err(EngineError::InvalidInput(
                "the requested changes are empty: say what the plan should change".into(),
            ));
        }
        self.act(id, Event::PlanChangesRequested { feedback }).await
    }

    pub async fn answer(&self, id: TaskId, text: String) -> Result<TaskView> {
        if text.trim().is_empty() {
            return Err(EngineError::InvalidInput("the answer is empty".into()));
        }
        self.act(id, Event::Answered { text }).await
    }

    pub async fn run(&self, id: TaskId, stage: Option<Stage>) -> Result<TaskView> {
        self.act(id, Event::RunRequested { stage }).await
    }

    pub async fn stop(&self, id: TaskId) -> Result<TaskView> {
        self.act(id, Event::StopRequested).await
    }

    /// Takes a GitHub webhook delivery: refused unless signed by the webhook secret of a project
    /// of its repository, a replay of an accepted delivery changes nothing, and the pull requests
    /// it concerns are synced with GitHub in the background.
    pub fn github_webhook(
        &self,
        delivery: crate::WebhookDelivery<'_>,
    ) -> Result<crate::WebhookOutcome> {
        crate::webhook::receive(&self.inner, delivery)
    }

    pub async fn resume(&self, id: TaskId) -> Result<TaskView> {
        self.act(id, Event::ResumeRequested).await
    }

    /// Merges the task's pull request on the forge (local forge: into the remote default branch).
    ///
    /// The task goes to `merging` (with a merge intent in the outbox) before the forge is
    /// touched, so a second merge or a delete meanwhile is refused with a 409; a failed merge
    /// puts it back to awaiting merge with the reason, and a crash mid-way is finished by the
    /// outbox after the restart. Runs to its end even when the caller goes away.
    pub async fn merge(&self, id: TaskId) -> Result<TaskView> {
        self.inner.store.read(|tx| self.check_task(tx, id))?;
        self.audit("task.merge", &format!("task {id}"), None);
        let engine = self.clone();
        tokio::spawn(async move { engine.merge_to_the_end(id).await })
            .await
            .map_err(|e| EngineError::Internal(format!("the merge of task {id} panicked: {e}")))?
    }

    async fn merge_to_the_end(&self, id: TaskId) -> Result<TaskView> {
        let inner = &self.inner;
        let _claim = inner.claim(id, Busy::Merging).map_err(|busy| match busy {
            Busy::Merging => EngineError::Conflict(format!(
                "cannot merge task {id}: it is already being merged; wait for that merge to \
                 finish (`atelier task show {id}`)"
            )),
            Busy::Deleting => {
                EngineError::Conflict(format!("cannot merge task {id}: it is being deleted"))
            }
        })?;
        let (intent, applied) = inner.store.write(|tx| {
            let task = tx.task(id)?.ok_or_else(|| not_found(id))?;
            let project = tx.project(task.project_id)?.ok_or_else(|| not_found(id))?;
            if let crate::api::ForgeSettings::Github(github) =
                settings::parse(&project.settings_json)?.forge
            {
                let url = tx
                    .pull_request(id)?
                    .map_or_else(|| format!("{}/{}", github.owner, github.repo), |pr| pr.url);
                return Err(EngineError::InvalidState(format!(
                    "cannot merge task {id}: Atelier never merges on GitHub. Merge the pull \
                     request there ({url}); Atelier notices the merge and finishes the task"
                )));
            }
            if matches!(task.state, TaskState::AwaitingMerge { .. })
                && tx.pull_request(id)?.is_none()
            {
                return Err(EngineError::InvalidState(format!(
                    "the pull request of task {id} is still being opened; try again in a moment"
                )));
            }
            let (_, applied) = apply_in(tx, &task, &Event::MergeRequested)
                .map_err(|err| in_context(&format!("cannot merge task {id}"), err))?;
            let intent = tx
                .intents_of_task(id)?
                .into_iter()
                .rev()
                .find(|intent| intent.kind == Ok(IntentKind::MergePr) && intent.done_at.is_none())
                .ok_or_else(|| {
                    EngineError::Internal(format!("the merge intent of task {id} was not recorded"))
                })?;
            Ok::<_, EngineError>((intent, applied))
        })?;
        after_commit(inner, applied);
        match outbox::merge_pull_request(inner, &intent).await? {
            MergeOutcome::Merged(row) => self.view(*row),
            MergeOutcome::Failed(reason) => Err(EngineError::InvalidState(format!(
                "cannot merge task {id}: {reason}. The task awaits a merge again: fix the cause, \
                 then run `atelier task merge {id}` again"
            ))),
            MergeOutcome::Skipped => {
                let row = inner
                    .store
                    .read(|tx| tx.task(id))?
                    .ok_or_else(|| not_found(id))?;
                self.view(row)
            }
        }
    }

    /// Deletes a task: its branch on the remote (unless the project keeps it), its worktree and
    /// local branch, its doc archive, its agents' home and every record of it. Refused while an
    /// agent of the task is queued, running or waiting for an answer (stop it first), and while
    /// it is being merged. Returns the deleted task as it was.
    pub async fn delete(&self, id: TaskId) -> Result<TaskView> {
        self.inner.store.read(|tx| self.check_task(tx, id))?;
        self.audit("task.delete", &format!("task {id}"), None);
        // Deletion runs to its end even when the caller goes away (each step is idempotent, so
        // a failed one is fixed by deleting again).
        let engine = self.clone();
        tokio::spawn(async move { engine.delete_to_the_end(id).await })
            .await
            .map_err(|e| EngineError::Internal(format!("deleting task {id} panicked: {e}")))?
    }

    async fn delete_to_the_end(&self, id: TaskId) -> Result<TaskView> {
        let inner = &self.inner;
        let _claim = inner.claim(id, Busy::Deleting).map_err(|busy| match busy {
            Busy::Merging => EngineError::Conflict(format!(
                "cannot delete task {id}: it is being merged; wait for the merge to finish, then \
                 delete it"
            )),
            Busy::Deleting => EngineError::Conflict(format!("task {id} is already being deleted")),
        })?;
        let deletable = |tx: &store::Tx<'_>| {
            let task = tx.task(id)?.ok_or_else(|| not_found(id))?;
            if let Some(run) = tx.live_run(id)? {
                return Err(EngineError::Conflict(format!(
                    "task {id} has a live agent (run {}, {}): stop it with `atelier task stop {id}` first",
                    run.id, run.status
                )));
            }
            decide_in(tx, &task, &Event::DeleteRequested)
                .map_err(|err| in_context(&format!("cannot delete task {id}"), err))?;
            Ok::<_, EngineError>(task)
        };
        let (task, project, pr) = inner.store.read(|tx| {
            let task = deletable(tx)?;
            let project = tx.project(task.project_id)?.ok_or_else(|| not_found(id))?;
            Ok::<_, EngineError>((task, project, tx.pull_request(id)?))
        })?;
        let settings = settings::parse(&project.settings_json)?;
        // The remote branch goes first, then the workspace: if anything fails, the task is
        // still there to delete again.
        if !settings.keep_remote_branch_on_delete {
            let remote = pr.map_or(settings.remote.clone(), |pr| pr.remote);
            let forge = inner.forge_for(&project)?;
            let deleting = forge.delete_branch(Path::new(&project.path), &remote, &task.branch);
            let failed = match tokio::time::timeout(background::FORGE_CALL_LIMIT, deleting).await {
                Ok(Ok(_)) => None,
                Ok(Err(err)) => Some(err.to_string()),
                Err(_) => Some(format!(
                    "no answer within {} s",
                    background::FORGE_CALL_LIMIT.as_secs()
                )),
            };
            if let Some(reason) = failed {
                return Err(EngineError::InvalidState(format!(
                    "cannot delete task {id}: deleting its branch `{}` on the remote `{remote}` \
                     failed: {reason}. Fix the remote and delete again, or keep remote branches \
                     with the project setting `keep_remote_branch_on_delete`",
                    task.branch
                )));
            }
        }
        if let Some(worktree) = &task.worktree {
            let repo = git::Repo::open(Path::new(&project.path))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            let lock = inner.repo_locks.of(repo.path());
            workspace::remove(&repo, &lock, Path::new(worktree), &task.branch)
                .await
                .map_err(|e| EngineError::Internal(format!("cannot remove the worktree: {e}")))?;
        }
        inner.store.write(|tx| {
            deletable(tx)?;
            Ok::<_, EngineError>(tx.delete_task(id)?)
        })?;
        for dir in [
            Path::new(&task.doc_path).parent().map(Path::to_path_buf),
            Some(confine::home_dir(&inner.config, &task.key)),
        ]
        .into_iter()
        .flatten()
        {
            if let Err(err) = std::fs::remove_dir_all(&dir)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(task = %id, dir = %dir.display(), error = %err, "cannot remove a task folder");
            }
        }
        inner.hub.changed(id);
        Ok(self.shown(views::task(task, project.name)))
    }

    /// An agent's signal; `run_token` is the bearer token of the run.
    pub async fn signal(&self, run_token: &str, task: TaskId, signal: Signal) -> Result<()> {
        signal
            .validate()
            .map_err(|e| EngineError::InvalidInput(e.to_string()))?;
        let hash = tokens::hash_token(run_token);
        let check = |tx: &store::Tx<'_>| {
            let run = tx.run_by_token_hash(&hash)?.ok_or_else(|| {
                EngineError::Unauthorized(
                    "unknown run token: signals are accepted only from a live agent run".into(),
                )
            })?;
            if run.task_id != task {
                return Err(EngineError::Unauthorized(format!(
                    "this run token belongs to another task, not task {task}"
                )));
            }
            if run.status != RunStatus::Running {
                return Err(EngineError::InvalidState(format!(
                    "run {} has ended ({}); its signals are no longer accepted",
                    run.id, run.status
                )));
            }
            let row = tx.task(task)?.ok_or_else(|| not_found(task))?;
            let pipeline = views::pipeline(&row)?;
            if !views::signal_fits(&pipeline, run.stage, &signal) {
                return Err(EngineError::InvalidInput(format!(
                    "the {} stage of the `{pipeline}` pipeline does not take this signal ({})",
                    run.stage,
                    views::signal_name(&signal)
                )));
            }
            Ok::<_, EngineError>((run, row))
        };
        // The guards read the doc and the worktree outside the transaction; the run is checked
        // again when the signal is recorded.
        let (run, row) = self.inner.store.read(check)?;
        let reviewed = match guards::check_signal(&self.inner, &row, &signal).await {
            Ok(reviewed) => reviewed,
            Err(refusal) => {
                tracing::info!(task = %task, run = %run.id, signal = views::signal_name(&signal), reason = %refusal, "signal refused by a guard");
                return Err(refusal);
            }
        };
        let run = self.inner.store.write(|tx| {
            let (run, _) = check(tx)?;
            tx.record_signal(run.id, task, &signal)?;
            if let Some(commit) = &reviewed {
                tx.set_reviewed_commit(run.id, commit)?;
            }
            Ok::<_, EngineError>(run)
        })?;
        tracing::info!(task = %task, run = %run.id, signal = views::signal_name(&signal), "signal received");
        Ok(())
    }

    /// The task's transcript: the backlog, then (if `follow`) live events without gaps, ending
    /// with `FollowItem::End` once no agent of the task is queued or running.
    pub async fn logs(&self, id: TaskId, follow: bool) -> Result<BoxStream<'static, FollowItem>> {
        self.inner.store.read(|tx| self.check_task(tx, id))?;
        logs::typed(
            Arc::clone(&self.inner),
            id,
            follow,
            self.hides_server_details(),
        )
    }

    /// A page of the task's transcript (see [`TranscriptQuery`]), oldest first, each event
    /// decoded, with whether earlier events exist. Reads only the page's rows through the
    /// `(task, run, seq)` index, however long the transcript. An event this version cannot
    /// decode is shown as a `status` event saying so.
    pub async fn transcript(&self, id: TaskId, query: TranscriptQuery) -> Result<TranscriptPage> {
        let limit = match query {
            TranscriptQuery::Last { limit }
            | TranscriptQuery::After { limit, .. }
            | TranscriptQuery::Before { limit, .. } => limit,
        };
        if limit == 0 || limit > MAX_TRANSCRIPT_LIMIT {
            return Err(EngineError::InvalidInput(format!(
                "invalid limit {limit}: expected 1 to {MAX_TRANSCRIPT_LIMIT}"
            )));
        }
        let key = |c: TranscriptCursor| (c.run, c.seq);
        let (rows, earlier, live_runs) = self.inner.store.read(|tx| {
            self.check_task(tx, id)?;
            let live_runs: Vec<RunId> = tx
                .runs_of_task(id)?
                .into_iter()
                .filter(|r| r.status == RunStatus::Running)
                .map(|r| r.id)
                .collect();
            let (rows, earlier) = match query {
                TranscriptQuery::Last { .. } => {
                    let mut rows = tx.task_events_last(id, limit + 1)?;
                    let more = rows.len() > limit as usize;
                    if more {
                        rows.remove(0);
                    }
                    (rows, more)
                }
                TranscriptQuery::Before { cursor, .. } => {
                    let mut rows = tx.task_events_page_before(id, key(cursor), limit + 1)?;
                    let more = rows.len() > limit as usize;
                    if more {
                        rows.remove(0);
                    }
                    (rows, more)
                }
                TranscriptQuery::After { cursor, .. } => {
                    let rows = tx.task_events_page_after(id, key(cursor), limit)?;
                    let first = rows
                        .first()
                        .map_or((cursor.run, cursor.seq.saturating_add(1)), |e| {
                            (e.run, e.seq)
                        });
                    let earlier = tx.task_has_events_before(id, first)?;
                    (rows, earlier)
                }
            };
            Ok::<_, EngineError>((rows, earlier, live_runs))
        })?;
        let entries = rows
            .into_iter()
            .map(|row| TranscriptEntry {
                event: serde_json::from_str(&row.json).unwrap_or_else(|err| {
                    domain::TranscriptEvent::Status {
                        text: format!("(an event this version cannot read: {err})"),
                    }
                }),
                run: row.run,
                stage: row.stage,
                seq: row.seq,
                at_ms: row.at_ms,
            })
            .collect();
        Ok(TranscriptPage {
            entries,
            earlier,
            live_runs,
        })
    }

    /// The same as [`Engine::logs`] as NDJSON (one `FollowItem` per line), without decoding the
    /// stored events: what the HTTP API streams.
    pub async fn logs_ndjson(
        &self,
        id: TaskId,
        follow: bool,
    ) -> Result<BoxStream<'static, bytes::Bytes>> {
        self.inner.store.read(|tx| self.check_task(tx, id))?;
        logs::ndjson(
            Arc::clone(&self.inner),
            id,
            follow,
            self.hides_server_details(),
        )
    }

    /// The live stream as Server-Sent Events text: everything (`task` = `None`) or one task,
    /// strictly after `after` (see `stream`), endless, with keep-alive comments; without the
    /// agents' transcripts when `transcripts` is false.
    pub async fn stream(
        &self,
        task: Option<TaskId>,
        after: Option<crate::api::StreamCursor>,
        transcripts: bool,
    ) -> Result<BoxStream<'static, bytes::Bytes>> {
        if let Some(id) = task {
            self.inner.store.read(|tx| self.check_task(tx, id))?;
        }
        // A member's stream shows the tasks of their projects only; a user's streams check
        // their access again when projects, memberships or accounts change.
        let visible = self.acting_user().map(crate::stream_access::Visible::of);
        crate::stream::sse(Arc::clone(&self.inner), task, after, visible, transcripts)
    }

    /// Stops every live run's processes (graceful shutdown). The runs stay recorded as running,
    /// so the next start restarts them exactly like after a crash.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let runs: Vec<_> = self.inner.live().keys().copied().collect();
        for run in &runs {
            self.inner.stop_live(*run, StopCause::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.inner.live().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Pull-request syncs and outbox workers run git in the repositories: none may outlive
        // the engine.
        self.inner.syncs.drain(Duration::from_secs(10)).await;
        // The stopped runs' last events, if the ingest timer has not committed them yet.
        self.inner.store.commit_deferred();
    }

    /// How this server runs agents, and the checks `atelier doctor` prints (see
    /// `crate::checks`): every agent CLI, the sandbox, the data directory, git and the remote of
    /// each project the caller sees. A caller who is not an administrator sees them without
    /// the server's paths (`crate::shown`).
    pub async fn status(&self) -> ServerStatus {
        let config = &self.inner.config;
        let (ready, problem) = match &self.inner.sandbox {
            Ok(_) => (true, None),
            Err(err) => (false, Some(err.to_string())),
        };
        let sandbox = SandboxStatus {
            mode: config.sandbox.name().to_string(),
            ready,
            problem,
        };
        let projects = self
            .inner
            .store
            .read(|tx| {
                let mut seen = Vec::new();
                for row in tx.projects()? {
                    if self.sees_project(tx, row.id)? {
                        seen.push(row);
                    }
                }
                Ok::<_, EngineError>(seen)
            })
            .unwrap_or_default();
        let mut used = Vec::new();
        let mut stored = Vec::new();
        for row in projects {
            if let Ok(settings) = settings::parse(&row.settings_json) {
                used.extend(crate::checks::needed(&settings));
                stored.push((row, settings));
            }
        }
        let mut checks = crate::checks::cli_checks(config, &used).await;
        checks.push(match &sandbox.problem {
            None => Check::ok("sandbox".into(), format!("{} ready", sandbox.mode)),
            Some(problem) => Check::failed("sandbox".into(), problem.clone()),
        });
        checks.push(crate::checks::data_dir_check(&config.data_dir));
        checks.push(crate::checks::git_check(&config.data_dir).await);
        let forges = stored.iter().map(|(row, settings)| {
            crate::checks::forge_check(
                config,
                &row.name,
                Path::new(&row.path),
                &row.default_branch,
                settings,
            )
        });
        checks.extend(futures::future::join_all(forges).await);
        self.shown(ServerStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            sandbox,
            checks,
            warm: self.inner.warm.status(config),
        })
    }

    /// Stage-transition latencies (agent exit → next agent spawned) in microseconds.
    pub fn transition_latencies_us(&self) -> Result<Vec<i64>> {
        Ok(self.inner.store.read(|tx| tx.transition_latencies_us())?)
    }
}

/// The limit of a page request, refused outside 1 to [`MAX_PAGE_LIMIT`].
fn check_page(page: PageRequest) -> Result<u32> {
    if page.limit == 0 || page.limit > MAX_PAGE_LIMIT {
        return Err(EngineError::InvalidInput(format!(
            "invalid limit {}: expected 1 to {MAX_PAGE_LIMIT}",
            page.limit
        )));
    }
    Ok(page.limit)
}

/// Keeps the first `limit` of `rows` (fetched with one more) and the next cursor when the
/// extra row was there.
fn cut_page<T>(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> i64) -> (Vec<T>, Option<i64>) {
    let limit = limit as usize;
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(&id);
        (rows, next)
    } else {
        (rows, None)
    }
}
