//! Warm standby: the successor stage's agent process, started idle ahead of its run.
//!
//! When a run starts and its task's pipeline says which stage most likely follows (the stage
//! its first signal leads to: implement → review, review → pr …, never through a human gate;
//! plan → implement only for a non-technical owner's task, whose plan gate passes by itself),
//! and that stage's role is a long-lived session (any harness with one: `Harness::long_lived`),
//! [`after_start`] starts that role's CLI process as soon as the run's own agent is up (its
//! first event: two CLIs booting at once compete for the cores, and two OpenCode processes
//! initializing one fresh home race on its database), inside the same sandbox and with the same
//! environment the dispatcher would give it, but with nothing on its stdin: the CLI boots
//! (configuration, session, tools) and waits. When the successor run is dispatched, [`take`] and [`hand_off`] give it this
//! process: its prompt is written as the first stdin line and the run is supervised as usual.
//!
//! Safety of the idle process:
//! - its signal token is random and known to nobody: no run has its hash until the dispatcher
//!   records the successor run started with it (`mark_run_started`), so an idle process cannot
//!   signal for a run that does not exist yet; it has no `ATELIER_RUN_ID`;
//! - its mark (`ATELIER_RUN_MARK`) is its own, written to `<data_dir>/warm/<mark>` while no run
//!   row holds it, so that recovery after a crash kills it even without the sandbox; at the
//!   hand-off the run row takes the mark over;
//! - it counts against `--warm-limit` (default 2, 0 disables) and never against the slots;
//! - it is shut down (and counted as wasted) when the task takes another path (its starting
//!   run ended and no run of the warm stage is queued, or a run of another stage started), is
//!   stopped, when it waited longer than `--warm-idle-secs`, at shutdown, or when the hand-off
//!   finds it does not match the run any more (role, credentials or settings changed).
//!
//! Stale snapshot: Claude Code puts the repository's git status into its system prompt once, at
//! boot; for a warm process that is the state before the previous run's last commit. Warm
//! processes therefore run with the harness's `Harness::warm_env` (Claude Code's:
//! `CLAUDE_CODE_DISABLE_GIT_INSTRUCTIONS=1`, which turns the git status section off, together
//! with its built-in commit and PR instructions), and the
//! hand-off puts a fresh git status (branch, status, recent commits, taken at the hand-off) at
//! the top of the first user message instead.

use crate::confine::MARK_VAR;
use crate::inner::Inner;
use domain::{RunId, Stage, TaskId};
use harness::process::{AgentProcess, ProcessSpec};
use harness::{Harness, TurnRequest};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::RunRow;

/// An idle successor process.
pub(crate) struct Warm {
    id: u64,
    pub stage: Stage,
    /// The run whose start warmed it.
    after: RunId,
    pub token: String,
    pub mark: String,
    /// What it was started with, normalized ([`comparable`]): the hand-off uses it only when the
    /// run would be started exactly so.
    spec: ProcessSpec,
    pub process: AgentProcess,
    pub started: std::time::Instant,
}

/// The warm processes (one per task at most) and their counters.
#[derive(Default)]
pub(crate) struct Pool {
    entries: Mutex<HashMap<TaskId, Warm>>,
    next_id: AtomicU64,
    /// Started, handed to their run, shut down unused.
    pub started: AtomicU64,
    pub used: AtomicU64,
    pub wasted: AtomicU64,
}

impl Pool {
    fn entries(&self) -> MutexGuard<'_, HashMap<TaskId, Warm>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `started used wasted` counters, for logs and status.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.started.load(Ordering::Relaxed),
            self.used.load(Ordering::Relaxed),
            self.wasted.load(Ordering::Relaxed),
        )
    }
}

impl Pool {
    /// The limit and counters, as `GET /api/status` reports them.
    pub fn status(&self, config: &crate::EngineConfig) -> crate::api::WarmStatus {
        let (started, used, wasted) = self.counts();
        crate::api::WarmStatus {
            limit: config.warm_limit as u64,
            idle_secs: config.warm_idle.as_secs(),
            idle: self.entries().len() as u64,
            started,
            used,
            wasted,
        }
    }
}

fn marks_dir(inner: &Inner) -> PathBuf {
    inner.config.data_dir.join("warm")
}

/// Startup: kills every process of a warm standby the previous server left (a crash without the
/// sandbox; with it, bubblewrap's `--die-with-parent` already ended them).
pub(crate) fn recover(inner: &Inner) {
    let Ok(dir) = std::fs::read_dir(marks_dir(inner)) else {
        return;
    };
    for entry in dir.flatten() {
        let mark = entry.file_name().to_string_lossy().into_owned();
        let killed = harness::process::kill_marked(MARK_VAR, &mark);
        if killed > 0 {
            tracing::warn!(killed, "killed a warm standby left by the previous server");
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

/// The stage a run of `stage` most likely hands over to, if it is worth warming: the target of
/// the stage's first signal, when no human gate is in between — a gate the task passes by
/// itself (a non-technical owner's plan, `technical` false) is not one.
pub(crate) fn successor(
    pipeline: &domain::Pipeline,
    stage: Stage,
    technical: bool,
) -> Option<Stage> {
    if pipeline.gated(stage) && (technical || stage != Stage::Plan) {
        return None;
    }
    let signal = *pipeline.signals(stage).first()?;
    match pipeline.next(stage, signal)? {
        domain::Next::Stage(next) if next != stage => Some(next),
        _ => None,
    }
}

/// The spec a warm process is started with for `request`: the harness's own, with nothing on
/// stdin yet (kept open) and the boot-time git snapshot off.
pub(crate) fn warm_spec(
    harness: &dyn Harness,
    request: &TurnRequest,
) -> Result<ProcessSpec, String> {
    let mut spec = harness.command(request).map_err(|e| e.to_string())?;
    if !spec.stdin_open {
        return Err("not a long-lived session".into());
    }
    spec.stdin = Some(Vec::new());
    for (name, value) in harness.warm_env() {
        spec.env.retain(|(k, _)| *k != name);
        spec.env.push((name, value));
    }
    Ok(spec)
}

/// `spec` without what differs between two starts of the same role: the new session id and the
/// run's id.
fn comparable(spec: &ProcessSpec) -> ProcessSpec {
    let mut spec = spec.clone();
    if let Some(at) = spec.args.iter().position(|a| a == "--session-id")
        && at + 1 < spec.args.len()
    {
        spec.args[at + 1] = "-".into();
    }
    spec.env.retain(|(k, _)| k != "ATELIER_RUN_ID");
    spec.env.sort();
    spec
}

/// Everything the dispatcher knows about a run that just started, for warming its successor.
pub(crate) struct Started {
    pub run: RunRow,
    pub task: store::TaskRow,
    pub project_path: String,
    pub settings: crate::api::ProjectSettings,
    pub pipeline: domain::Pipeline,
    pub owner: Option<crate::credentials::Owner>,
}

/// After a run started: warms its successor if that is possible and allowed. Never fails the
/// run; a warm start that cannot happen is logged.
pub(crate) fn after_start(inner: &Arc<Inner>, started: Started) {
    if inner.config.warm_limit == 0 {
        return;
    }
    let Some(stage) = successor(&started.pipeline, started.run.stage, started.task.technical)
    else {
        return;
    };
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        if let Err(reason) = warm_up(&inner, &started, stage).await {
            tracing::debug!(task = %started.task.id, %stage, %reason, "no warm standby");
        }
    });
}

/// Waits until the run that warms a successor shows its agent is up (an event after Atelier's
/// own "agent started"), so that two CLIs do not boot at the same moment: on a small machine
/// they compete for the cores, and two OpenCode processes initializing one fresh agent home
/// race on its database (seen: one crashed on the other's migration). False when the run ended
/// first or the server shuts down; true after 30 s regardless.
async fn agent_is_up(inner: &Inner, task: TaskId, run: RunId) -> bool {
    let mut items = inner.hub.subscribe(task);
    let started = |inner: &Inner| {
        inner.store.read(|tx| {
            let seq = tx.last_seq(run)?;
            let running = tx
                .run(run)?
                .is_some_and(|r| r.status == domain::RunStatus::Running);
            Ok::<_, store::StoreError>((seq >= 2, running))
        })
    };
    let limit = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(limit);
    loop {
        match started(inner) {
            Ok((true, _)) => return true,
            Ok((false, false)) | Err(_) => return false,
            Ok((false, true)) => {}
        }
        tokio::select! {
            item = items.recv() => if let Err(tokio::sync::broadcast::error::RecvError::Closed) = item {
                return false;
            },
            () = &mut limit => return true,
            () = inner.shutdown.cancelled() => return false,
        }
    }
}

async fn warm_up(inner: &Arc<Inner>, s: &Started, stage: Stage) -> Result<(), String> {
    if !agent_is_up(inner, s.task.id, s.run.id).await {
        return Err("the run ended before its agent was up".into());
    }
    let role = crate::task_pipeline::role(&s.settings, &s.pipeline, stage)?;
    let harness = inner
        .harnesses
        .get(role.harness.as_str())
        .cloned()
        .ok_or("harness not available")?;
    if !harness.long_lived() || role.session != Some(domain::SessionMode::LongLived) {
        return Err("the successor's role is not a long-lived session".into());
    }
    let given = crate::credentials::for_run(
        &inner.secrets,
        &role,
        stage,
        s.owner.as_ref(),
        harness.as_ref(),
    )?;
    let worktree = s.task.worktree.clone().ok_or("no worktree")?;
    let token = crate::tokens::new_token();
    let mark = format!("warm-{}", crate::tokens::new_token());
    let home = crate::confine::ensure_home(&inner.config, &s.task.key)?;
    let mut run = s.run.clone();
    run.stage = stage;
    run.mark = mark.clone();
    let mut env = crate::confine::run_env(
        &inner.config,
        &home,
        &s.task,
        &run,
        &token,
        &worktree,
        &s.settings,
    );
    env.retain(|(k, _)| k != "ATELIER_RUN_ID");
    let request = request_for(&given, stage, &worktree, env)?;
    let spec = warm_spec(harness.as_ref(), &request)?;
    harness.prepare(&request).map_err(|e| e.to_string())?;
    let mut mounts = crate::confine::mounts(
        &inner.config,
        &crate::confine::TaskPaths {
            repo: Path::new(&s.project_path),
            worktree: Path::new(&worktree),
            home: &home,
            doc_dir: Path::new(&s.task.doc_path).parent(),
        },
        &s.settings,
    )?;
    for program in harness.sandbox_programs() {
        mounts.add_program(&program);
    }
    // Claimed before spawning, so two starts never exceed the limit.
    let id = inner.warm.next_id.fetch_add(1, Ordering::Relaxed);
    {
        let entries = inner.warm.entries();
        if entries.len() >= inner.config.warm_limit || entries.contains_key(&s.task.id) {
            return Err("warm limit reached".into());
        }
    }
    let dir = marks_dir(inner);
    crate::confine::ensure_dir(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(&mark), b"").map_err(|e| e.to_string())?;
    let spawned = match &inner.sandbox {
        Ok(Some(sandbox)) => AgentProcess::spawn_sandboxed(&spec, sandbox, &mounts),
        Ok(None) => AgentProcess::spawn(&spec),
        Err(err) => Err(std::io::Error::other(err.to_string())),
    };
    let process = match spawned {
        Ok(process) => process,
        Err(err) => {
            let _ = std::fs::remove_file(dir.join(&mark));
            return Err(err.to_string());
        }
    };
    let warm = Warm {
        id,
        stage,
        after: s.run.id,
        token,
        mark,
        spec: comparable(&spec),
        process,
        started: std::time::Instant::now(),
    };
    let refused = {
        let mut entries = inner.warm.entries();
        if entries.len() >= inner.config.warm_limit || entries.contains_key(&s.task.id) {
            Some(warm)
        } else {
            entries.insert(s.task.id, warm);
            None
        }
    };
    if let Some(warm) = refused {
        end(inner, warm).await;
        return Err("warm limit reached".into());
    }
    inner.warm.started.fetch_add(1, Ordering::Relaxed);
    tracing::info!(task = %s.task.id, %stage, "warm standby started for the next stage");
    let inner = Arc::clone(inner);
    let task = s.task.id;
    tokio::spawn(async move { watch(inner, task, id).await });
    Ok(())
}

/// The request the dispatcher would build for a fresh run of `stage` (the prompt comes later).
fn request_for(
    given: &crate::credentials::ForRun,
    stage: Stage,
    worktree: &str,
    env: Vec<(String, String)>,
) -> Result<TurnRequest, String> {
    Ok(TurnRequest {
        stage,
        iteration: 0,
        turn: 0,
        prompt: String::new(),
        workdir: worktree.into(),
        env,
        model: given.role.model.clone(),
        effort: given.role.effort.clone(),
        resume_session: None,
        settings: serde_json::to_value(&given.role).map_err(|e| e.to_string())?,
    })
}

/// Keeps a warm process while its task may still hand it over; shuts it down otherwise.
async fn watch(inner: Arc<Inner>, task: TaskId, id: u64) {
    let mut changes = inner.hub.subscribe(task);
    let idle = tokio::time::sleep(inner.config.warm_idle);
    tokio::pin!(idle);
    loop {
        let why = tokio::select! {
            () = &mut idle => "it waited longer than the warm idle limit",
            () = inner.shutdown.cancelled() => "the server shuts down",
            _ = changes.recv() => {
                match wanted(&inner, task, id) {
                    Some(true) => continue,
                    Some(false) => "the task took another path",
                    None => return, // handed over or already gone
                }
            }
        };
        discard(&inner, task, id, why).await;
        return;
    }
}

/// Whether warm process `id` of `task` may still be used: its starting run still runs, or a run
/// of its stage is queued. `None` when it is no longer in the pool.
fn wanted(inner: &Inner, task: TaskId, id: u64) -> Option<bool> {
    let (stage, after) = {
        let entries = inner.warm.entries();
        let warm = entries.get(&task).filter(|w| w.id == id)?;
        (warm.stage, warm.after)
    };
    let runs = inner
        .store
        .read(|tx| tx.runs_of_task(task))
        .unwrap_or_default();
    Some(runs.iter().any(|r| {
        (r.id == after && r.status == domain::RunStatus::Running)
            || (r.stage == stage && r.status == domain::RunStatus::Queued)
    }))
}

/// Removes warm process `id` of `task` from the pool and shuts it down, counted as wasted.
async fn discard(inner: &Inner, task: TaskId, id: u64, why: &str) {
    let warm = {
        let mut entries = inner.warm.entries();
        match entries.get(&task) {
            Some(w) if w.id == id => entries.remove(&task),
            _ => None,
        }
    };
    if let Some(warm) = warm {
        waste(inner, task, warm, why).await;
    }
}

async fn waste(inner: &Inner, task: TaskId, warm: Warm, why: &str) {
    inner.warm.wasted.fetch_add(1, Ordering::Relaxed);
    let (started, used, wasted) = inner.warm.counts();
    tracing::info!(
        %task, stage = %warm.stage, idle_ms = warm.started.elapsed().as_millis() as u64,
        warm_started = started, warm_used = used, warm_wasted = wasted,
        "warm standby shut down unused: {why}"
    );
    end(inner, warm).await;
}

/// Ends a warm process and everything it started.
async fn end(inner: &Inner, mut warm: Warm) {
    warm.process.close_input();
    // No scan of the host: the sandbox's PID namespace, or unconfined the agent's tree (it is
    // its subreaper) and then its process group.
    warm.process.kill_all().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), warm.process.wait()).await;
    warm.process.kill_leftovers().await;
    let _ = std::fs::remove_file(marks_dir(inner).join(&warm.mark));
}

/// For a run being dispatched: the task's warm process if it was warmed for this run's stage
/// and the run starts a new session; any other warm process of the task is shut down.
pub(crate) async fn take(inner: &Inner, run: &RunRow) -> Option<Warm> {
    let warm = inner.warm.entries().remove(&run.task_id)?;
    if warm.stage == run.stage && run.pending_input.is_none() && run.session.is_none() {
        return Some(warm);
    }
    waste(inner, run.task_id, warm, "a run of another stage started").await;
    None
}

/// The hand-off: when `request` would start exactly the process `warm` is, writes the prompt
/// (under a fresh git status) as its first line and returns it; otherwise shuts it down.
pub(crate) async fn hand_off(
    inner: &Inner,
    task: TaskId,
    repo: &Path,
    warm: Warm,
    harness: &dyn Harness,
    request: &TurnRequest,
) -> Option<AgentProcess> {
    let wanted = warm_spec(harness, request).map(|s| comparable(&s));
    if wanted.as_ref() != Ok(&warm.spec) {
        waste(inner, task, warm, "the run is started differently").await;
        return None;
    }
    let status = git_status(repo, &request.workdir).await;
    let prompt = format!("{status}\n\n{}", request.prompt);
    let input = harness.next_turn(&prompt)?;
    if let Err(err) = warm.process.write_input(input) {
        waste(
            inner,
            task,
            warm,
            &format!("cannot write its prompt: {err}"),
        )
        .await;
        return None;
    }
    inner.warm.used.fetch_add(1, Ordering::Relaxed);
    let (started, used, wasted) = inner.warm.counts();
    tracing::info!(
        %task, stage = %warm.stage, idle_ms = warm.started.elapsed().as_millis() as u64,
        warm_started = started, warm_used = used, warm_wasted = wasted,
        "run handed to its warm standby process"
    );
    // The run row holds the mark from now on (recovery finds it there).
    let _ = std::fs::remove_file(marks_dir(inner).join(&warm.mark));
    Some(warm.process)
}

/// The worktree's git status now, in the words Claude Code uses for its boot-time snapshot.
/// Through the git crate's recipe for a task's worktree (`git::TaskWorktree`): the worktree is
/// located from the repository at `repo`, never through its `.git` pointer, which its agent can
/// rewrite.
pub(crate) async fn git_status(repo: &Path, worktree: &Path) -> String {
    let unavailable = || "(unavailable)".to_string();
    let located = git::TaskWorktree::find(repo, worktree).ok();
    // At once, not one after the other: the hand-off waits for all three.
    let (branch, status, log) = match &located {
        Some(worktree) => {
            let (branch, status, log) = tokio::join!(
                worktree.branch(),
                worktree.short_status(),
                worktree.recent_commits(5),
            );
            (
                branch.unwrap_or_else(|_| unavailable()),
                status.unwrap_or_else(|_| unavailable()),
                log.unwrap_or_else(|_| unavailable()),
            )
        }
        None => (unavailable(), unavailable(), unavailable()),
    };
    format!(
        "This is the git status at the start of this run (taken now, not when your process \
         started):\nCurrent branch: {branch}\n\nStatus:\n{}\n\nRecent commits:\n{log}",
        if status.is_empty() {
            "(clean)"
        } else {
            &status
        }
    )
}

#[cfg(test)]
mod tests {
    use super::{git_status, successor};
    use domain::{Pipeline, Stage};

    /// The standard pipeline's likely successors: plan → implement only when the plan gate
    /// passes by itself (a non-technical owner), implement → review → pr, nothing after pr.
    #[test]
    fn successors_of_the_standard_pipeline() {
        let standard = Pipeline::standard();
        assert_eq!(successor(&standard, Stage::Plan, true), None);
        assert_eq!(
            successor(&standard, Stage::Plan, false),
            Some(Stage::Implement)
        );
        for technical in [true, false] {
            assert_eq!(
                successor(&standard, Stage::Implement, technical),
                Some(Stage::Review)
            );
            assert_eq!(
                successor(&standard, Stage::Review, technical),
                Some(Stage::Pr)
            );
            assert_eq!(successor(&standard, Stage::Pr, technical), None);
        }
    }

    /// The hand-off's git status runs the server's git on a worktree an agent wrote: a `.git`
    /// pointer or a `commondir` it rewrote to a git folder whose config names an fsmonitor
    /// command, or a submodule with a filter, must not make that git run the command.
    #[tokio::test]
    async fn the_hand_off_status_runs_nothing_an_agent_planted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = testkit::sample_repo(dir.path()).expect("sample repo");
        let worktree = dir.path().join("app-worktrees/1-task");
        testkit::git(
            &repo.path,
            &[
                "worktree",
                "add",
                "--quiet",
                "-b",
                "atelier/1-task",
                worktree.to_str().expect("utf-8"),
            ],
        )
        .expect("worktree");
        let markers: Vec<_> = ["pointer", "commondir", "submodule"]
            .iter()
            .map(|name| dir.path().join(format!("ran-{name}")))
            .collect();
        testkit::hostile::plant_submodule(&worktree, &markers[2]).expect("submodule");
        testkit::hostile::plant_commondir(&worktree, &markers[1]).expect("commondir");
        testkit::hostile::plant_pointer(&worktree, &markers[0]).expect("pointer");
        let status = git_status(&repo.path, &worktree).await;
        for marker in &markers {
            assert!(!marker.exists(), "{} was run:\n{status}", marker.display());
        }
        // The planted commondir makes the worktree unknown to the server, not followed.
        assert!(status.contains("Current branch: (unavailable)"), "{status}");
        std::fs::write(worktree.join(".git"), "gitdir: /nowhere\n").expect("pointer");
        let entry = repo.path.join(".git/worktrees/1-task");
        std::fs::write(entry.join("commondir"), "../..\n").expect("commondir");
        let status = git_status(&repo.path, &worktree).await;
        assert!(
            status.contains("Current branch: atelier/1-task"),
            "{status}"
        );
        assert!(status.contains("?? .evil/"), "{status}");
        assert!(!markers.iter().any(|m| m.exists()), "{status}");
    }
}
