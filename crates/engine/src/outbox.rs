//! The outbox worker: carries out side-effect intents (push and open the pull request, merge it,
//! remove a workspace) recorded by committed decisions, and records each outcome. Intents without
//! an outcome — e.g. after a crash — are replayed; every action is idempotent (the forge verifies
//! an existing pull request instead of opening a second one, and a merge that already landed
//! counts as done).
//!
//! Intents of different tasks run concurrently, so one task's hung remote never holds up another
//! task's pull request: a scan of the pending intents starts one worker per task, which carries
//! out that task's intents one after another, in order. A task that already has a worker is
//! skipped by the scan and scanned again when its worker ends, so two workers never act on one
//! task and no intent is left pending with nobody working on it. Nothing is polled: scans run
//! when an intent is committed (the `outbox` notification) or when a skipped task's worker ends.
//!
//! A merge is carried out by the request that asked for it while it holds the task's claim; the
//! worker only replays merge intents nobody holds, i.e. those a crash left behind.

use crate::background::FORGE_CALL_LIMIT;
use crate::error::{EngineError, Result};
use crate::inner::{Busy, Inner};
use crate::transition::{after_commit, apply_in};
use crate::workspace;
use domain::{Event, TaskId, TaskState};
use std::collections::HashMap;
use std::sync::Arc;
use store::{Intent, IntentKind, PullRequestRow};
use tokio::task::JoinSet;

pub(crate) async fn run_outbox(inner: Arc<Inner>) {
    let mut workers: JoinSet<()> = JoinSet::new();
    // The task each worker acts on.
    let mut worker_task: HashMap<tokio::task::Id, TaskId> = HashMap::new();
    // Tasks with a worker, and whether a scan skipped them meanwhile (they are scanned again
    // when the worker ends: the skipped scan may have seen intents the worker was not given).
    let mut busy: HashMap<TaskId, bool> = HashMap::new();
    let mut scan = true;
    loop {
        if scan && !inner.shutdown.is_cancelled() {
            scan = false;
            for (task, intents) in pending_by_task(&inner) {
                match busy.get_mut(&task) {
                    Some(skipped) => *skipped = true,
                    None => {
                        busy.insert(task, false);
                        let worker = workers.spawn(work(Arc::clone(&inner), intents));
                        worker_task.insert(worker.id(), task);
                    }
                }
            }
        }
        tokio::select! {
            () = inner.shutdown.cancelled() => {
                // Workers stop after the intent they are carrying out (the rest is replayed at
                // the next start); the shutdown waits for them, bounded (see `Engine::shutdown`),
                // so no git command of theirs outlives the engine.
                while workers.join_next().await.is_some() {}
                return;
            }
            () = inner.outbox.notified() => scan = true,
            Some(ended) = workers.join_next_with_id() => {
                let id = match ended {
                    Ok((id, ())) => id,
                    Err(err) => {
                        tracing::error!(error = %err, "an outbox worker failed");
                        err.id()
                    }
                };
                if let Some(task) = worker_task.remove(&id)
                    && busy.remove(&task) == Some(true)
                {
                    scan = true;
                }
            }
        }
    }
}

/// The pending intents grouped by task, each group oldest first.
fn pending_by_task(inner: &Inner) -> Vec<(TaskId, Vec<Intent>)> {
    let pending = match inner.store.read(|tx| tx.pending_intents()) {
        Ok(pending) => pending,
        Err(err) => {
            tracing::error!(error = %err, "cannot read the outbox");
            Vec::new()
        }
    };
    let mut groups: Vec<(TaskId, Vec<Intent>)> = Vec::new();
    for intent in pending {
        match groups.iter_mut().find(|(task, _)| *task == intent.task_id) {
            Some((_, intents)) => intents.push(intent),
            None => groups.push((intent.task_id, vec![intent])),
        }
    }
    groups
}

/// One task's worker: its intents in order, until a shutdown.
async fn work(inner: Arc<Inner>, intents: Vec<Intent>) {
    for intent in intents {
        if inner.shutdown.is_cancelled() {
            return;
        }
        execute(&inner, &intent).await;
    }
}

async fn execute(inner: &Arc<Inner>, intent: &Intent) {
    let kind = match &intent.kind {
        Ok(kind) => *kind,
        Err(unknown) => {
            // Written by another version: recorded as failed once, never retried in a loop.
            tracing::error!(task = %intent.task_id, intent = intent.id, error = %unknown, "intent failed");
            let _ = inner.store.write(|tx| {
                tx.intent_attempted(intent.id)?;
                tx.complete_intent(intent.id, &format!("failed: {unknown}"))
            });
            inner.hub.changed(intent.task_id);
            return;
        }
    };
    // A merge being carried out by its request (or a delete in progress) owns the task.
    let _claim = if kind == IntentKind::MergePr {
        match inner.claim(intent.task_id, Busy::Merging) {
            Ok(claim) => Some(claim),
            Err(_) => return,
        }
    } else {
        None
    };
    if let Err(err) = inner.store.write(|tx| tx.intent_attempted(intent.id)) {
        tracing::error!(error = %err, "cannot record an outbox attempt");
        return;
    }
    let result = match kind {
        IntentKind::OpenPr => open_pull_request(inner, intent).await,
        IntentKind::RemoveWorkspace => remove_workspace(inner, intent).await,
        IntentKind::MergePr => merge_pull_request(inner, intent).await.map(|outcome| {
            tracing::info!(task = %intent.task_id, ?outcome, "replayed a merge");
        }),
    };
    if let Err(err) = result {
        tracing::error!(task = %intent.task_id, %kind, error = %err, "intent failed");
        let _ = inner
            .store
            .write(|tx| tx.complete_intent(intent.id, &format!("failed: {err}")));
    }
    inner.hub.changed(intent.task_id);
}

async fn open_pull_request(inner: &Arc<Inner>, intent: &Intent) -> Result<()> {
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
    let forge = inner.forge_for(&project)?;
    // The evidence bundle is the body, and is kept beside the task's other attachments (a
    // failure to keep it does not hold up the pull request).
    let body = crate::evidence::bundle(inner, &task)?;
    if let Err(err) = crate::evidence::keep(&task, &body) {
        tracing::warn!(task = %task.id, error = %err, "cannot keep the evidence bundle");
    }
    let request = forge::PublishRequest {
        repo: project.path.clone().into(),
        remote: settings.remote.clone(),
        branch: task.branch.clone(),
        base: project.default_branch.clone(),
        title: task.title.clone(),
        body,
        existing: existing.as_ref().map(crate::forge_pr),
    };
    // The forge's own git calls have deadlines; this bounds the whole call as well.
    let published = match tokio::time::timeout(FORGE_CALL_LIMIT, forge.publish(&request)).await {
        Ok(published) => published.map_err(|err| err.to_string()),
        Err(_) => Err(format!(
            "the forge did not answer within {} s; check the remote and run the pr stage again",
            FORGE_CALL_LIMIT.as_secs()
        )),
    };
    match published {
        Ok(pr) => {
            crate::crash::point("after-publish");
            let row = PullRequestRow {
                task_id: task.id,
                url: pr.url.clone(),
                title: request.title.clone(),
                number: pr.number,
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
            // Follow it up at once: its checks, comments waiting for this push, replies.
            crate::follow_up::request_sync(inner, task.id);
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

/// How a merge intent ended.
#[derive(Debug)]
pub(crate) enum MergeOutcome {
    /// The pull request is merged and the task done (its row after the commit).
    Merged(Box<store::TaskRow>),
    /// The merge failed; the task awaits a merge again with this reason.
    Failed(String),
    /// The task was no longer being merged (the merge watcher saw it land first).
    Skipped,
}

/// Carries out a merge intent of a task in `merging`; the caller holds the task's claim. Asks
/// the forge first, so a merge that already landed (before a crash, or merged by someone else)
/// counts as done and is never made twice; merges otherwise. The outcome, the pull request's
/// `merged` flag and `MergeSucceeded`/`MergeFailed` are committed together.
pub(crate) async fn merge_pull_request(inner: &Inner, intent: &Intent) -> Result<MergeOutcome> {
    let id = intent.task_id;
    let (task, project, pr) = inner.store.read(|tx| {
        let task = tx.task(id)?.ok_or_else(|| missing(id))?;
        let project = tx.project(task.project_id)?.ok_or_else(|| missing(id))?;
        Ok::<_, EngineError>((task, project, tx.pull_request(id)?))
    })?;
    if task.state != TaskState::Merging {
        let outcome = format!("skipped: the task is {}", task.state);
        inner
            .store
            .write(|tx| tx.complete_intent(intent.id, &outcome))?;
        return Ok(MergeOutcome::Skipped);
    }
    let landed = match &pr {
        Some(pr) => match inner.forge_for(&project) {
            Ok(forge) => {
                merge_on_forge(forge.as_ref(), std::path::Path::new(&project.path), pr).await
            }
            Err(err) => Err(err.to_string()),
        },
        None => Err(format!(
            "task {id} has no pull request record: run its pr stage again with `atelier task run {id}`"
        )),
    };
    let (row, applied) = inner.store.write(|tx| {
        let event = match &landed {
            Ok(()) => {
                if let Some(mut pr) = tx.pull_request(id)? {
                    pr.merged = true;
                    tx.upsert_pull_request(&pr)?;
                }
                tx.complete_intent(intent.id, "merged")?;
                Event::MergeSucceeded
            }
            Err(reason) => {
                tx.complete_intent(intent.id, &format!("failed: {reason}"))?;
                Event::MergeFailed {
                    reason: reason.clone(),
                }
            }
        };
        let task = tx.task(id)?.ok_or_else(|| missing(id))?;
        let (_, applied) = apply_in(tx, &task, &event)?;
        let row = tx.task(id)?.ok_or_else(|| missing(id))?;
        Ok::<_, EngineError>((row, applied))
    })?;
    after_commit(inner, applied);
    Ok(match landed {
        Ok(()) => MergeOutcome::Merged(Box::new(row)),
        Err(reason) => {
            tracing::warn!(task = %id, %reason, "merge failed; the task awaits a merge again");
            MergeOutcome::Failed(reason)
        }
    })
}

/// Merges the pull request unless the forge says it already is; each call under a deadline.
async fn merge_on_forge(
    forge: &dyn forge::Forge,
    repo: &std::path::Path,
    pr: &store::PullRequestRow,
) -> Result<(), String> {
    let pr = crate::forge_pr(pr);
    let late = || {
        format!(
            "the forge did not answer within {} s; check the remote and merge again",
            FORGE_CALL_LIMIT.as_secs()
        )
    };
    match tokio::time::timeout(FORGE_CALL_LIMIT, forge.is_merged(repo, &pr)).await {
        Ok(Ok(true)) => return Ok(()),
        Ok(Ok(false)) => {}
        // The merge itself says what is wrong with the remote, if anything.
        Ok(Err(err)) => tracing::warn!(branch = %pr.branch, error = %err, "merge check failed"),
        Err(_) => return Err(late()),
    }
    match tokio::time::timeout(FORGE_CALL_LIMIT, forge.merge(repo, &pr)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(late()),
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
    if let Some(worktree) = &task.worktree {
        let repo = git::Repo::open(std::path::Path::new(&project.path))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        let lock = inner.repo_locks.of(repo.path());
        workspace::remove(&repo, &lock, std::path::Path::new(worktree), &task.branch)
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
