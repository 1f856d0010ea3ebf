//! Startup recovery, the retry timer, and recording a merge seen on the forge.
//!
//! Recovery: runs that were live when the server died are killed (every process still carrying
//! their mark) and recorded as interrupted; the pipeline rules then queue a replacement in the
//! same stage — never dropped, never started twice. Pending intents are replayed by the outbox.
//! Workspaces no task owns (a crash between making a task's workspace and writing its row) are
//! removed: worktrees, `atelier/*` branches and task folders.

use crate::confine::MARK_VAR;
use crate::error::{EngineError, Result};
use crate::inner::Inner;
use crate::supervisor::finish;
use crate::transition::{after_commit, apply_in};
use domain::{Event, RunOutcome, RunStatus};
use std::sync::Arc;

pub(crate) fn recover(inner: &Inner) -> Result<()> {
    crate::warm::recover(inner);
    let (running, queued) = inner.store.read(|tx| {
        Ok::<_, EngineError>((
            tx.runs_with_status(RunStatus::Running)?,
            tx.runs_with_status(RunStatus::Queued)?,
        ))
    })?;
    for run in running.iter().chain(&queued) {
        let killed = harness::process::kill_marked(MARK_VAR, &run.mark);
        if killed > 0 {
            tracing::warn!(run = %run.id, killed, "killed processes left by the previous server");
        }
    }
    for run in running {
        tracing::info!(run = %run.id, task = %run.task_id, stage = %run.stage, "restarting a run interrupted by a server stop");
        if !finish(inner, run.id, RunOutcome::Interrupted, None) {
            return Err(EngineError::Internal(format!(
                "cannot record run {} as interrupted",
                run.id
            )));
        }
    }
    let waiting = inner.store.read(|tx| tx.tasks_in_state("waiting"))?;
    for task in waiting {
        if let domain::TaskState::Waiting { retry_at, .. } = task.state {
            inner.schedule_retry(task.id, retry_at);
        }
    }
    inner.dispatch.notify_one();
    inner.outbox.notify_one();
    Ok(())
}

/// Removes the workspaces no task row owns, in every project's repository and in the data
/// directory, logging each. Runs at startup before anything can create a task; a failure is
/// logged, never fatal.
pub(crate) async fn remove_leftovers(inner: &Inner) -> Result<()> {
    let _exclusive = inner.workspace_lock.lock().await;
    let (projects, tasks) = inner
        .store
        .read(|tx| Ok::<_, EngineError>((tx.projects()?, tx.tasks(None)?)))?;
    let mut owned = crate::workspace::Owned::default();
    for task in tasks {
        owned.keys.insert(task.key);
        owned.branches.insert(task.branch);
    }
    for project in projects {
        match git::Repo::open(std::path::Path::new(&project.path)).await {
            Ok(repo) => {
                crate::workspace::remove_leftover_workspaces(&repo, &owned).await;
            }
            Err(err) => {
                tracing::warn!(project = %project.name, error = %err, "cannot open the project's repository to look for leftover worktrees");
            }
        }
    }
    let parents = [
        inner.config.data_dir.join("tasks"),
        inner.config.homes_dir.clone(),
    ];
    crate::workspace::remove_leftover_folders(&parents, &owned).await;
    Ok(())
}

/// Applies `RetryDue` to each waiting task when its backoff has elapsed.
pub(crate) async fn run_retries(inner: Arc<Inner>) {
    let Some(mut due) = inner.take_retries() else {
        return;
    };
    loop {
        let (task, retry_at) = tokio::select! {
            () = inner.shutdown.cancelled() => return,
            next = due.recv() => match next {
                Some(next) => next,
                None => return,
            },
        };
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            let wait = u64::try_from(retry_at - store::now_ms()).unwrap_or(0);
            tokio::select! {
                () = inner.shutdown.cancelled() => {}
                () = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {
                    let event = Event::RetryDue { retry_at };
                    if let Err(err) = crate::transition::apply_event(&inner, task, event).await {
                        tracing::warn!(%task, error = %err, "retry could not start");
                    }
                }
            }
        });
    }
}

/// Longest a single forge call (fetch, push, merge check) may take before it counts as failed.
pub(crate) const FORGE_CALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Records the merge and applies it to the task.
pub(crate) fn mark_merged(inner: &Inner, task: domain::TaskId) -> Result<store::TaskRow> {
    let (row, applied) = inner.store.write(|tx| {
        let row = tx
            .task(task)?
            .ok_or_else(|| crate::transition::not_found(task))?;
        if let Some(mut pr) = tx.pull_request(task)? {
            pr.merged = true;
            tx.upsert_pull_request(&pr)?;
        }
        let (_, applied) = apply_in(tx, &row, &Event::Merged)?;
        let row = tx
            .task(task)?
            .ok_or_else(|| crate::transition::not_found(task))?;
        Ok::<_, EngineError>((row, applied))
    })?;
    after_commit(inner, applied);
    Ok(row)
}
