//! Creating a task, in named steps: the request validated ([`Validated`]); the base branch
//! found, the pipeline chosen and, on GitHub, the base fetched ([`Engine::open_base`]); a new
//! id and a free port block reserved (`ports`); the workspace prepared — agent home, worktree,
//! doc folder, setup hook in its sandbox ([`Engine::prepare_workspace`]); then the row inserted,
//! or what was made on disk undone ([`MadeOnDisk`]).
//!
//! Safe to repeat after a crash at any point: the id is committed before anything carries it on
//! disk, so a half-made workspace never shares its id with a later task, and startup recovery
//! removes workspaces no task owns.

use crate::api::{ForgeSettings, NewTask, ProjectSettings, TaskView};
use crate::error::{EngineError, Result};
use crate::facade::Engine;
use crate::repo_lock::RepoLock;
use crate::task_pipeline::Chosen;
use crate::transition::{after_commit, apply_in, not_found};
use crate::{background, confine, ports, views, workspace};
use domain::{Event, Stage, TaskId, TaskState, TaskTitle};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use store::{NewTaskRow, ProjectRow};

/// A creation request that passed the checks that need nothing but itself.
struct Validated {
    title: TaskTitle,
}

impl Validated {
    fn of(req: &NewTask) -> Result<Validated> {
        let title =
            TaskTitle::parse(&req.title).map_err(|e| EngineError::InvalidInput(e.to_string()))?;
        if req.body.trim().is_empty() {
            return Err(EngineError::InvalidInput(
                "the request is empty: describe the change (--body-file FILE or stdin)".into(),
            ));
        }
        Ok(Validated { title })
    }
}

/// The project's repository and what the task starts from.
struct Base {
    repo: git::Repo,
    chosen: Chosen,
}

/// What a creation made on disk before the task's row exists: removed again by
/// [`MadeOnDisk::undo`] when the row cannot be written.
struct MadeOnDisk {
    repo: git::Repo,
    lock: Arc<RepoLock>,
    workspace: workspace::Workspace,
    home: PathBuf,
}

impl MadeOnDisk {
    /// Removes the worktree, branch, doc folder and agent home: nothing half-created stays.
    async fn undo(self) {
        workspace::discard(&self.repo, &self.lock, &self.workspace).await;
        remove_home(&self.home);
    }
}

impl Engine {
    /// Creates a task: see the module's documentation for the steps.
    pub(crate) async fn create_task_to_the_end(&self, req: NewTask) -> Result<TaskView> {
        let valid = Validated::of(&req)?;
        let project = self
            .inner
            .store
            .read(|tx| self.visible_project(tx, &req.project))?;
        let settings = crate::settings::parse(&project.settings_json)?;
        let pipeline = req
            .pipeline
            .as_deref()
            .unwrap_or(&settings.default_pipeline);
        let base = self.open_base(&project, &settings, pipeline).await?;
        let (id, reservation) = ports::reserve_id_and_ports(&self.inner)?;
        let title = valid.title.as_str();
        let made = self
            .prepare_workspace(
                base.repo,
                &settings,
                id,
                title,
                &req.body,
                reservation.port(),
            )
            .await?;
        crate::crash::point("after-worktree");
        let worktree = made.workspace.worktree.display().to_string();
        let doc_path = made.workspace.doc_path.display().to_string();
        // The project's prompt overrides as read with its settings when this request began
        // (before the workspace and setup hook, which may take minutes; a change saved meanwhile
        // reaches the next task): the task keeps them.
        let project_prompts = match settings.prompts.is_empty() {
            true => None,
            false => Some(
                serde_json::to_string(&settings.prompts)
                    .map_err(|e| EngineError::Internal(e.to_string()))?,
            ),
        };
        let inserted = self.record_new_task(&NewTaskRow {
            id,
            project_id: project.id,
            title,
            body: &req.body,
            key: &made.workspace.key,
            branch: &made.workspace.branch,
            base: &made.workspace.base,
            state: &TaskState::Stopped { stage: Stage::Plan },
            priority: req.priority,
            // A non-technical owner's task skips the plan gate, whatever the request says.
            technical: req.technical && self.acting_user().is_none_or(|who| who.technical),
            worktree: &worktree,
            doc_path: &doc_path,
            port: reservation.port(),
            pipeline: base.chosen.pipeline.name(),
            pipeline_def: base.chosen.recorded.as_ref().map(|(def, _)| def.as_str()),
            pipeline_prompts: base
                .chosen
                .recorded
                .as_ref()
                .map(|(_, prompts)| prompts.as_str()),
            project_prompts: project_prompts.as_deref(),
        });
        match inserted {
            Ok((row, applied)) => {
                after_commit(&self.inner, applied);
                Ok(views::task(row, project.name))
            }
            Err(err) => {
                made.undo().await;
                Err(err)
            }
        }
    }

    /// Opens the project's repository, finds the base (the remote's default branch when it is
    /// known, else the local one) and chooses the pipeline from it; a GitHub project's base is
    /// fetched first, with the token given only to git (best effort, as the workspace's own
    /// fetch is).
    async fn open_base(
        &self,
        project: &ProjectRow,
        settings: &ProjectSettings,
        pipeline: &str,
    ) -> Result<Base> {
        let repo = git::Repo::open(Path::new(&project.path))
            .await
            .map_err(|e| EngineError::InvalidInput(e.to_string()))?
            .with_network_timeout(self.inner.config.forge_timeout);
        let remote_base = format!("{}/{}", settings.remote, project.default_branch);
        let base_rev = match repo.rev_parse(&remote_base).await {
            Ok(Some(_)) => remote_base,
            _ => project.default_branch.clone(),
        };
        let chosen = crate::task_pipeline::choose(&repo, &base_rev, settings, pipeline)
            .await
            .map_err(|e| match e {
                EngineError::InvalidInput(msg) => {
                    EngineError::InvalidInput(format!("cannot create the task: {msg}"))
                }
                other => other,
            })?;
        if matches!(settings.forge, ForgeSettings::Github(_)) {
            let forge = self.inner.forge_for(project)?;
            let fetched = forge.fetch_base(repo.path(), &settings.remote, &project.default_branch);
            match tokio::time::timeout(background::FORGE_CALL_LIMIT, fetched).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "cannot fetch the base branch from GitHub")
                }
                Err(_) => tracing::warn!("fetching the base branch from GitHub timed out"),
            }
        }
        Ok(Base { repo, chosen })
    }

    /// Makes the task's agent home and workspace (worktree, branch, doc folder, linked env
    /// files, the setup hook run in its sandbox). Creations run in parallel: only git's own
    /// steps are serialized, per repository (`repo_lock`). On failure nothing is left behind.
    async fn prepare_workspace(
        &self,
        repo: git::Repo,
        settings: &ProjectSettings,
        id: TaskId,
        title: &str,
        body: &str,
        port: u16,
    ) -> Result<MadeOnDisk> {
        let lock = self.inner.repo_locks.of(repo.path());
        let key = domain::slug::task_key(id, title);
        let branch = domain::slug::branch_name(id, title);
        let home = confine::ensure_home(&self.inner.config, &key).map_err(EngineError::Internal)?;
        let hook_env = confine::hook_env(&self.inner.config, &home, id, port, settings);
        let hook_sandbox = self
            .hook_sandbox(&repo, &key, &home, settings)
            .inspect_err(|_| remove_home(&home))?;
        let created = workspace::create(workspace::WorkspaceSpec {
            repo: &repo,
            lock: &lock,
            remote: &settings.remote,
            data_dir: &self.inner.config.data_dir,
            key: &key,
            branch: &branch,
            title,
            body,
            env_files: &settings.env_files,
            setup_hook: settings.setup_hook.as_deref(),
            setup_timeout: Duration::from_secs(settings.setup_timeout_secs),
            hook_env,
            hook_sandbox,
        })
        .await;
        match created {
            Ok(workspace) => Ok(MadeOnDisk {
                repo,
                lock,
                workspace,
                home,
            }),
            Err(e) => {
                remove_home(&home);
                Err(EngineError::InvalidInput(format!(
                    "cannot prepare the task's workspace: {e}"
                )))
            }
        }
    }

    /// The sandbox and mounts the project's setup hook runs in (`None`: no hook, or agents run
    /// unconfined); an error when the sandbox cannot be used.
    fn hook_sandbox(
        &self,
        repo: &git::Repo,
        key: &str,
        home: &Path,
        settings: &ProjectSettings,
    ) -> Result<Option<(harness::sandbox::Sandbox, harness::sandbox::Mounts)>> {
        match (&self.inner.sandbox, &settings.setup_hook) {
            (_, None) | (Ok(None), _) => Ok(None),
            (Ok(Some(sandbox)), Some(_)) => {
                let worktree = workspace::worktree_dir(repo.path(), key);
                let paths = confine::TaskPaths {
                    repo: repo.path(),
                    worktree: &worktree,
                    home,
                    doc_dir: None,
                };
                let mounts = confine::mounts(&self.inner.config, &paths, settings)
                    .map_err(EngineError::InvalidInput)?;
                Ok(Some((sandbox.clone(), mounts)))
            }
            (Err(err), Some(_)) => Err(EngineError::InvalidState(format!(
                "cannot run the project's setup hook: {err}"
            ))),
        }
    }

    /// Writes a new task's row (in a provisional state) and applies `Created` to it, in one
    /// transaction: the task appears in the state `Created` leads to, or not at all.
    fn record_new_task(
        &self,
        new: &NewTaskRow<'_>,
    ) -> Result<(store::TaskRow, crate::transition::Applied)> {
        let id = new.id;
        self.inner.store.write(|tx| {
            tx.insert_task(new)?;
            if let Some(owner) = self.acting_user() {
                tx.set_task_owner(id, owner.user)?;
            }
            self.audit_in(tx, "task.create", &format!("task {id}"), Some(new.title))?;
            let row = tx.task(id)?.ok_or_else(|| not_found(id))?;
            let (_, applied) = apply_in(tx, &row, &Event::Created)?;
            let row = tx.task(id)?.ok_or_else(|| not_found(id))?;
            Ok::<_, EngineError>((row, applied))
        })
    }
}

/// Removes a task's agent home that no task will own (a creation that failed).
fn remove_home(home: &Path) {
    if let Err(err) = std::fs::remove_dir_all(home)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(home = %home.display(), error = %err, "cannot remove an agent home");
    }
}
