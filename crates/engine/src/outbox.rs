//! The outbox worker: carries out side-effect intents (push and open the pull request, remove a
//! workspace) recorded by committed decisions, and records each outcome. Intents without an
//! outcome — e.g. after a crash — are replayed; every action is idempotent (the forge verifies an
//! existing pull request instead of opening a second one).

use crate::error::{EngineError, Result};
use crate::inner::Inner;
use crate::transition::{OPEN_PR, REMOVE_WORKSPACE, after_commit, apply_in};
use crate::workspace;
use domain::{Event, TaskId};
use std::sync::Arc;
use store::{Intent, PullRequestRow};

pub(crate) async fn run_outbox(inner: Arc<Inner>) {
    loop {
        let pending = match inner.store.read(|tx| tx.pending_intents()) {
            Ok(pending) => pending,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the outbox");
                Vec::new()
            }
        };
        for intent in pending {
            if inner.shutdown.is_cancelled() {
                return;
            }
            execute(&inner, &intent).await;
        }
        tokio::select! {
            () = inner.shutdown.cancelled() => return,
            () = inner.outbox.notified() => {}
        }
    }
}

async fn execute(inner: &Inner, intent: &Intent) {
    if let Err(err) = inner.store.write(|tx| tx.intent_attempted(intent.id)) {
        tracing::error!(error = %err, "cannot record an outbox attempt");
        return;
    }
    let result = match intent.kind.as_str() {
        OPEN_PR => open_pull_request(inner, intent).await,
        REMOVE_WORKSPACE => remove_workspace(inner, intent).await,
        other => Err(EngineError::Internal(format!(
            "unknown intent kind {other}"
        ))),
    };
    if let Err(err) = result {
        tracing::error!(task = %intent.task_id, kind = %intent.kind, error = %err, "intent failed");
        let _ = inner
            .store
            .write(|tx| tx.complete_intent(intent.id, &format!("failed: {err}")));
    }
    inner.hub.changed(intent.task_id);
}

async fn open_pull_request(inner: &Inner, intent: &Intent) -> Result<()> {
    let (task, project, existing) = inner.store.read(|tx| {
        let task = tx
            .task(intent.task_id)?
            .ok_or_else(|| missing(intent.task_id))?;
        let project = tx
            .project(task.project_id)?
            .ok_or_else(|| missing(intent.task_id))?;
        let existing = tx.pull_request(task.id)?;
        Ok::<_, EngineError>((task, project, existing))
    })?;
    let settings = crate::settings::parse(&project.settings_json)?;
    let doc = std::fs::read_to_string(&task.doc_path).unwrap_or_default();
    let request = forge::PublishRequest {
        repo: project.path.clone().into(),
        remote: settings.remote.clone(),
        branch: task.branch.clone(),
        base: project.default_branch.clone(),
        title: task.title.clone(),
        body: format!("Task {} (Atelier)\n\n{doc}", task.id),
        existing: existing.as_ref().map(|pr| forge::PullRequest {
            url: pr.url.clone(),
            branch: pr.branch.clone(),
            base: pr.base.clone(),
            head_sha: pr.head_sha.clone(),
            remote: pr.remote.clone(),
        }),
    };
    match inner.forge.publish(&request).await {
        Ok(pr) => {
            let row = PullRequestRow {
                task_id: task.id,
                url: pr.url.clone(),
                branch: pr.branch,
                base: pr.base,
                remote: pr.remote,
                head_sha: pr.head_sha,
                merged: false,
                created_at: existing.map_or_else(store::now_ms, |e| e.created_at),
            };
            inner.store.write(|tx| {
                tx.upsert_pull_request(&row)?;
                tx.complete_intent(intent.id, &format!("opened {}", pr.url))
            })?;
            Ok(())
        }
        Err(err) => {
            let reason = format!("could not publish the branch {}: {err}", task.branch);
            let applied = inner.store.write(|tx| {
                tx.complete_intent(intent.id, &format!("failed: {reason}"))?;
                let task = tx.task(task.id)?.ok_or_else(|| missing(task.id))?;
                let (_, applied) = apply_in(tx, &task, &Event::PullRequestFailed { reason })?;
                Ok::<_, EngineError>(applied)
            })?;
            after_commit(inner, applied);
            Ok(())
        }
    }
}

async fn remove_workspace(inner: &Inner, intent: &Intent) -> Result<()> {
    let (task, project, live) = inner.store.read(|tx| {
        let task = tx
            .task(intent.task_id)?
            .ok_or_else(|| missing(intent.task_id))?;
        let project = tx
            .project(task.project_id)?
            .ok_or_else(|| missing(intent.task_id))?;
        let live = tx.live_run(task.id)?;
        Ok::<_, EngineError>((task, project, live))
    })?;
    if let Some(run) = live {
        // Never remove a workspace under a live run; the intent stays pending.
        tracing::warn!(task = %task.id, run = %run.id, "workspace removal waits for a live run");
        return Ok(());
    }
    let _exclusive = inner.workspace_lock.lock().await;
    if let Some(worktree) = &task.worktree {
        let repo = git::Repo::open(std::path::Path::new(&project.path))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        workspace::remove(&repo, std::path::Path::new(worktree), &task.branch)
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?;
    }
    // The agents' home folder of the task goes with it (the task doc archive stays).
    let home = crate::confine::home_dir(&inner.config, &task.key);
    if let Err(err) = std::fs::remove_dir_all(&home)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(task = %task.id, error = %err, "cannot remove the agents' home folder");
    }
    inner.store.write(|tx| {
        tx.clear_worktree(task.id)?;
        tx.complete_intent(intent.id, "removed")
    })?;
    Ok(())
}

fn missing(task: TaskId) -> EngineError {
    EngineError::Internal(format!("task {task} or its project vanished"))
}
