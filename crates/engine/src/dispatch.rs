//! The dispatcher: one task that starts queued runs under the global and per-project caps, in
//! priority-then-age order, whenever something may have freed a slot or queued a run.

use crate::error::{EngineError, Result};
use crate::inner::{Inner, LiveRun};
use crate::supervisor::{self, Turn};
use crate::{confine, credentials, guards, prompt, settings, tokens};
use domain::{ProjectId, RunOutcome};
use harness::TurnRequest;
use harness::process::AgentProcess;
use std::collections::HashMap;
use std::sync::Arc;
use store::RunRow;

/// Runs until shutdown, dispatching on every wake-up.
pub(crate) async fn run_dispatcher(inner: Arc<Inner>) {
    loop {
        tokio::select! {
            () = inner.shutdown.cancelled() => return,
            () = inner.dispatch.notified() => {}
        }
        if let Err(err) = dispatch_once(&inner).await {
            tracing::error!(error = %err, "dispatch failed");
        }
    }
}

async fn dispatch_once(inner: &Arc<Inner>) -> Result<()> {
    let (queued, counts, projects) = inner.store.read(|tx| {
        let projects = tx
            .projects()?
            .into_iter()
            .map(|p| Ok((p.id, settings::parse(&p.settings_json)?.slots)))
            .collect::<Result<HashMap<ProjectId, u32>>>()?;
        Ok::<_, EngineError>((tx.queued_runs()?, tx.running_counts()?, projects))
    })?;
    let mut running: HashMap<ProjectId, u32> = counts.into_iter().collect();
    let mut global: usize = running.values().map(|n| *n as usize).sum();
    for (run, project) in queued {
        if global >= inner.config.global_slots {
            break;
        }
        let used = running.entry(project).or_default();
        if *used >= projects.get(&project).copied().unwrap_or(1) {
            continue;
        }
        if inner.shutdown.is_cancelled() {
            return Ok(());
        }
        match start(inner, &run).await {
            Ok(true) => {
                *used += 1;
                global += 1;
            }
            Ok(false) => {}
            Err(reason) => {
                tracing::warn!(run = %run.id, task = %run.task_id, %reason, "run could not start");
                supervisor::finish_durably(inner, run.id, RunOutcome::Failed { reason }, None)
                    .await;
            }
        }
    }
    Ok(())
}

/// Removes a run's live entry unless the start went through.
struct LiveGuard<'a> {
    inner: &'a Inner,
    run: domain::RunId,
    armed: bool,
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.live().remove(&self.run);
        }
    }
}

/// Marks the run running (before anything is spawned, so recovery knows), spawns its process
/// and hands it to a supervising task. `Ok(false)` when the run is no longer queued (stopped
/// meanwhile); an `Err` is the reason the run fails.
async fn start(inner: &Arc<Inner>, run: &RunRow) -> Result<bool, String> {
    // A long-lived process waiting for this run's answer takes the turn (`crate::session`); it
    // keeps its token. Dropped on any error below, which ends that process.
    let parked = crate::session::take_parked(inner, run);
    // A successor process started ahead of this run (`crate::warm`): its token becomes the run's
    // (valid only from `mark_run_started` on) and the run takes its mark.
    let warm = match parked {
        None => crate::warm::take(inner, run).await,
        Some(_) => None,
    };
    let token = match (&parked, &warm) {
        (Some(p), _) => p.token.clone(),
        (None, Some(w)) => w.token.clone(),
        (None, None) => tokens::new_token(),
    };
    let mark = match (&parked, &warm) {
        (Some(p), _) => p.mark.clone(),
        (None, Some(w)) => w.mark.clone(),
        (None, None) => run.mark.clone(),
    };
    // The live entry exists before the run is recorded as running: a stop committed from then on
    // reaches the supervisor (the watch keeps it) instead of finding nothing to stop.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(None);
    inner.live().insert(run.id, LiveRun { stop: stop_tx });
    let mut guard = LiveGuard {
        inner,
        run: run.id,
        armed: true,
    };
    let started = inner
        .store
        .write(|tx| {
            let task = tx
                .task(run.task_id)?
                .ok_or_else(|| EngineError::Internal("task vanished".into()))?;
            let project = tx
                .project(task.project_id)?
                .ok_or_else(|| EngineError::Internal("project vanished".into()))?;
            let marked = tx.mark_run_started(run.id, &tokens::hash_token(&token))?;
            if marked && mark != run.mark {
                tx.set_run_mark(run.id, &mark)?;
            }
            let brief = tx.run_brief(run.id)?;
            let owner = credentials::owner_of(tx, task.id)?;
            Ok::<_, EngineError>(marked.then_some((task, project, brief, owner)))
        })
        .map_err(|e| e.to_string())?;
    let Some((task, project, brief, owner)) = started else {
        return Ok(false);
    };
    let settings = settings::parse(&project.settings_json).map_err(|e| e.to_string())?;
    let pipeline = crate::views::pipeline(&task).map_err(|e| e.to_string())?;
    let role = &crate::task_pipeline::role(&settings, &pipeline, run.stage)?;
    let harness = inner
        .harnesses
        .get(role.harness.as_str())
        .cloned()
        .ok_or_else(|| {
            format!(
                "harness `{}` is not available (available: {})",
                role.harness,
                inner.harness_names()
            )
        })?;
    // Credentials are opened only here, for the run that needs them: the role's `env`, then the
    // task owner's own credentials over it, and the owner's model for the stage.
    let given = credentials::for_run(
        &inner.secrets,
        role,
        run.stage,
        owner.as_ref(),
        harness.as_ref(),
    )?;
    inner
        .store
        .write(|tx| tx.set_run_agent(run.id, &role.harness, given.role.model.as_deref()))
        .map_err(|e| e.to_string())?;
    let worktree = task
        .worktree
        .clone()
        .ok_or_else(|| "the task's worktree has been removed; create a new task".to_string())?;
    crate::workspace::clear_stale_index_lock(
        std::path::Path::new(&project.path),
        std::path::Path::new(&worktree),
    )
    .await;
    if run.stage == domain::Stage::Implement && run.start_checked.is_none() {
        // What the implementer starts from, to tell at its end whether it made progress.
        let (head, checked) = guards::work_state(inner, &task).await;
        inner
            .store
            .write(|tx| tx.set_run_start(run.id, head.as_deref(), checked))
            .map_err(|e| e.to_string())?;
    }
    let home = confine::ensure_home(&inner.config, &task.key)?;
    if let Some(auth) = &given.codex_auth {
        confine::write_codex_auth(&home, auth)?;
    }
    let run_for_env = RunRow {
        mark: mark.clone(),
        ..run.clone()
    };
    let env = confine::run_env(
        &inner.config,
        &home,
        &task,
        &run_for_env,
        &token,
        &worktree,
        &settings,
    );
    let mut mounts = confine::mounts(
        &inner.config,
        &confine::TaskPaths {
            repo: std::path::Path::new(&project.path),
            worktree: std::path::Path::new(&worktree),
            home: &home,
            doc_dir: std::path::Path::new(&task.doc_path).parent(),
        },
        &settings,
    )?;
    // The scripted agent reads its scenario file.
    mounts.read_only.extend(role.scenario.clone());
    // A program the agent's process starts itself (the Codex bridge's `codex`).
    for program in harness.sandbox_programs() {
        mounts.add_program(&program);
    }
    let resuming = run.pending_input.is_some();
    // The planner of a non-technical owner's task asks in product terms only.
    let brief = brief.or_else(|| {
        (run.stage == domain::Stage::Plan && !task.technical)
            .then(|| crate::prompt::NON_TECHNICAL_PLAN.to_string())
    });
    // An implementer that publishes (its pipeline routes its `pr-done`: no reviewer after it)
    // is told so, and how.
    let publishes = run.stage == domain::Stage::Implement
        && pipeline
            .signals(run.stage)
            .contains(&domain::pipeline_def::StageSignal::PrDone);
    let brief = match brief {
        _ if !publishes => brief,
        Some(brief) => Some(format!("{}\n\n{brief}", crate::prompt::YOLO_IMPLEMENT)),
        None => Some(crate::prompt::YOLO_IMPLEMENT.to_string()),
    };
    let own_prompt = crate::task_pipeline::own_prompt(&task, &pipeline, run.stage)?;
    let vars = prompt::PromptVars::for_task(&task, run.iteration, settings.port_block);
    let request = TurnRequest {
        stage: run.stage,
        iteration: run.iteration,
        turn: run.turns,
        prompt: match &run.pending_input {
            Some(input) => input.clone(),
            None => crate::prompt::for_run(
                &inner.prompts(),
                &task,
                own_prompt.as_ref(),
                run.stage,
                &vars,
                brief.as_deref(),
            )?,
        },
        workdir: worktree.into(),
        env,
        model: given.role.model.clone(),
        effort: given.role.effort.clone(),
        resume_session: if resuming { run.session.clone() } else { None },
        settings: serde_json::to_value(&given.role).map_err(|e| e.to_string())?,
    };
    let timeout = role
        .timeout_secs
        .map_or(inner.config.stage_timeout, std::time::Duration::from_secs);
    if let (Some(parked), Some(input)) = (parked, harness.next_turn(&request.prompt)) {
        let resume = crate::session::Resume {
            run: run.id,
            input,
            stop: stop_rx,
        };
        match parked.resume.send(resume) {
            Ok(()) => {
                let spawned_us = store::now_us();
                inner
                    .store
                    .write(|tx| tx.mark_run_spawned(run.id, spawned_us))
                    .map_err(|e| e.to_string())?;
                guard.armed = false;
                inner.hub.changed(task.id);
                return Ok(true);
            }
            // The parked process ended meanwhile: a new one resumes the session.
            Err(resume) => stop_rx = resume.stop,
        }
    }
    let started = crate::warm::Started {
        run: run.clone(),
        task: task.clone(),
        project_path: project.path.clone(),
        settings: settings.clone(),
        pipeline: pipeline.clone(),
        owner: owner.clone(),
    };
    let handed = match warm {
        Some(warm) => {
            crate::warm::hand_off(
                inner,
                task.id,
                std::path::Path::new(&project.path),
                warm,
                harness.as_ref(),
                &request,
            )
            .await
        }
        None => None,
    };
    if let Some(process) = handed {
        let spawned_us = store::now_us();
        inner
            .store
            .write(|tx| tx.mark_run_spawned(run.id, spawned_us))
            .map_err(|e| e.to_string())?;
        guard.armed = false;
        inner.hub.changed(task.id);
        let turn = Turn {
            run: run.id,
            task: task.id,
            stage: run.stage,
            harness,
            process,
            stop: stop_rx,
            timeout,
            repeat_limit: settings.max_repeated_tool_calls,
            token: Some(token),
        };
        let inner2 = Arc::clone(inner);
        let future: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
            Box::pin(async move { supervisor::supervise(inner2, turn).await });
        tokio::spawn(future);
        crate::warm::after_start(inner, started);
        return Ok(true);
    }
    let spec = harness.command(&request).map_err(|e| e.to_string())?;
    // What the CLI needs in the agent's home (OpenCode: what keeps it off the npm registry).
    harness.prepare(&request).map_err(|e| e.to_string())?;
    let spawned = match &inner.sandbox {
        Ok(Some(sandbox)) => AgentProcess::spawn_sandboxed(&spec, sandbox, &mounts),
        Ok(None) => AgentProcess::spawn(&spec),
        Err(err) => return Err(err.to_string()),
    };
    let process = spawned.map_err(|e| {
        format!(
            "cannot start the {} agent ({}): {e}",
            role.harness,
            spec.program.display()
        )
    })?;
    let spawned_us = store::now_us();
    inner
        .store
        .write(|tx| tx.mark_run_spawned(run.id, spawned_us))
        .map_err(|e| e.to_string())?;
    guard.armed = false;
    inner.hub.changed(task.id);
    let long_lived = spec.stdin_open;
    let turn = Turn {
        run: run.id,
        task: task.id,
        stage: run.stage,
        harness,
        process,
        stop: stop_rx,
        timeout,
        repeat_limit: settings.max_repeated_tool_calls,
        token: long_lived.then_some(token),
    };
    let inner2 = Arc::clone(inner);
    let future: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        Box::pin(async move { supervisor::supervise(inner2, turn).await });
    tokio::spawn(future);
    // Only a fresh run warms its successor (not each later turn of the same run).
    if run.pending_input.is_none() {
        crate::warm::after_start(inner, started);
    }
    Ok(true)
}
