//! Applying events to tasks: decide with the pure rules, then write the new state and the rows
//! of every effect (queued runs, resumed turns, intents) in the caller's transaction. Only after
//! the commit does [`after_commit`] wake the dispatcher, stop live runs and run intents — so
//! chaining happens as soon as the state change is durable, with no polling.

use crate::error::{EngineError, Result};
use crate::inner::{Inner, StopCause};
use crate::settings;
use crate::tokens::random_hex;
use domain::{Decision, Effect, Event, RunId, RunStatus, TaskId, TaskState};
use store::{IntentKind, NewIntent, NewRunRow, TaskRow, Tx};

/// What a committed decision still requires from the engine.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub task: Option<TaskId>,
    pub stop: Vec<RunId>,
    pub queued: bool,
    pub intents: bool,
    /// The task now waits to retry at this time (ms since the epoch).
    pub retry_at: Option<i64>,
}

impl Applied {
    pub fn merge(&mut self, other: Applied) {
        self.task = self.task.or(other.task);
        self.stop.extend(other.stop);
        self.queued |= other.queued;
        self.intents |= other.intents;
        self.retry_at = self.retry_at.or(other.retry_at);
    }
}

/// Decides `event` for `task` without writing anything (for requests that only need the rules'
/// verdict, such as a delete).
pub(crate) fn decide_in(tx: &Tx<'_>, task: &TaskRow, event: &Event) -> Result<Decision> {
    let project = tx
        .project(task.project_id)?
        .ok_or_else(|| EngineError::Internal(format!("project of task {} is missing", task.id)))?;
    let policy = settings::policy(&settings::parse(&project.settings_json)?);
    let snapshot = tx.snapshot(task)?;
    Ok(domain::decide(&snapshot, event, &policy)?)
}

/// Decides `event` for `task` and writes the outcome in `tx`.
pub(crate) fn apply_in(tx: &Tx<'_>, task: &TaskRow, event: &Event) -> Result<(Decision, Applied)> {
    let decision = decide_in(tx, task, event)?;
    tx.update_task_state(
        task.id,
        &decision.state,
        decision.review_rounds,
        decision.qa_rounds,
        decision.runs_started,
    )?;
    tx.set_pr_rounds(task.id, decision.pr_rounds)?;
    let mut applied = Applied {
        task: Some(task.id),
        ..Applied::default()
    };
    if let TaskState::Waiting { retry_at, .. } = decision.state {
        applied.retry_at = Some(retry_at);
    }
    for effect in &decision.effects {
        match effect {
            Effect::StartRun { stage } | Effect::RestartRun { stage, .. } => {
                // A run lost in a server crash, or interrupted after a first stall, continues
                // its session told why; a retry after an infrastructure failure starts afresh
                // (the failed request made no progress).
                let restart = match effect {
                    Effect::RestartRun { cause, .. } => cause.continuation(),
                    _ => None,
                };
                let continued = continued_session(tx, task, event, *stage, restart)?;
                let iteration = match &continued {
                    Some((earlier, _, _)) => earlier.iteration,
                    None => tx.finished_runs_of_stage(task.id, *stage)?,
                };
                let mark = random_hex(16);
                let run = tx.insert_run(&NewRunRow {
                    task_id: task.id,
                    stage: *stage,
                    iteration,
                    mark: &mark,
                })?;
                if let Some((earlier, session, input)) = continued {
                    tx.continue_session(run, &session, &input, earlier.turns)?;
                    // The same work goes on: what the interrupted turn did counts as progress.
                    tx.inherit_run_start(run, earlier.id)?;
                }
                applied.queued = true;
            }
            Effect::StartFollowUp { brief } => {
                let run = tx.insert_run(&NewRunRow {
                    task_id: task.id,
                    stage: domain::Stage::Pr,
                    iteration: tx.finished_runs_of_stage(task.id, domain::Stage::Pr)?,
                    mark: &random_hex(16),
                })?;
                tx.set_run_brief(run, brief)?;
                // The comments the brief carries belong to this run (its reply lists what it
                // changed); comments arriving from now on wait for the next run.
                if matches!(event, Event::CommentsReceived { .. }) {
                    tx.take_pending_comments(task.id, run)?;
                }
                applied.queued = true;
            }
            Effect::RevisePlan { feedback } => {
                revise_plan(tx, task, feedback)?;
                applied.queued = true;
            }
            Effect::Nudge { stage, input } => {
                nudge(tx, task, *stage, input)?;
                applied.queued = true;
            }
            Effect::ResumeRun { run, input } => {
                tx.queue_resume(*run, input)?;
                applied.queued = true;
            }
            Effect::StopRun { run } => {
                let status = tx.run(*run)?.map(|r| r.status);
                match status {
                    Some(RunStatus::Running) => applied.stop.push(*run),
                    Some(status @ (RunStatus::Queued | RunStatus::NeedsInput)) => {
                        tx.finish_run(*run, RunStatus::Stopped, Some("stopped by a user"), None)?;
                        // A long-lived process waiting for the answer is ended after the commit.
                        if status == RunStatus::NeedsInput {
                            applied.stop.push(*run);
                        }
                    }
                    _ => {}
                }
            }
            Effect::OpenPullRequest => {
                let origin = match event {
                    Event::RunFinished { run, .. } => format!("run-{run}"),
                    _ => format!("at-{}", store::now_us()),
                };
                let key = format!("{}:task-{}:{origin}", IntentKind::OpenPr, task.id);
                tx.insert_intent(&NewIntent {
                    task_id: task.id,
                    kind: IntentKind::OpenPr,
                    idem_key: &key,
                })?;
                applied.intents = true;
            }
            Effect::MergePullRequest => {
                // One intent per accepted request: a retry after a failed merge is a new one.
                let key = format!(
                    "{}:task-{}:at-{}",
                    IntentKind::MergePr,
                    task.id,
                    store::now_us()
                );
                tx.insert_intent(&NewIntent {
                    task_id: task.id,
                    kind: IntentKind::MergePr,
                    idem_key: &key,
                })?;
                applied.intents = true;
            }
            Effect::RecordFindings { stage } => {
                // The findings are also in the run records: a doc that cannot be written does
                // not hold the task up.
                if let Err(err) = crate::findings::record(tx, task, *stage) {
                    tracing::warn!(task = %task.id, error = %err, "cannot write the findings into the doc");
                }
            }
            Effect::RemoveWorkspace => {
                let key = format!("{}:task-{}", IntentKind::RemoveWorkspace, task.id);
                tx.insert_intent(&NewIntent {
                    task_id: task.id,
                    kind: IntentKind::RemoveWorkspace,
                    idem_key: &key,
                })?;
                applied.intents = true;
            }
        }
    }
    Ok((decision, applied))
}

/// What the planner is told when a human sends the plan back with `feedback`.
pub(crate) fn plan_changes_input(feedback: &str) -> String {
    format!(
        "The plan was reviewed and changes were requested:\n\n{}\n\nRevise the plan in the \
         task doc accordingly, then signal `atelier signal plan-ready` again.",
        feedback.trim()
    )
}

/// Queues the plan run of a `PlanChangesRequested`: a new plan iteration that continues the last
/// plan run's harness session with the feedback as its next input, or, when no plan run has a
/// session to continue, a fresh plan run whose prompt carries the feedback (its brief).
fn revise_plan(tx: &Tx<'_>, task: &TaskRow, feedback: &str) -> Result<RunId> {
    let stage = domain::Stage::Plan;
    let run = tx.insert_run(&NewRunRow {
        task_id: task.id,
        stage,
        iteration: tx.finished_runs_of_stage(task.id, stage)?,
        mark: &random_hex(16),
    })?;
    let input = plan_changes_input(feedback);
    let earlier = tx
        .runs_of_task(task.id)?
        .into_iter()
        .rev()
        .find(|r| r.id != run && r.stage == stage && r.session.is_some());
    match earlier {
        Some(store::RunRow {
            turns,
            session: Some(session),
            ..
        }) => tx.continue_session(run, &session, &input, turns)?,
        _ => tx.set_run_brief(run, &input)?,
    }
    Ok(run)
}

/// Queues the run of a guard's `Nudge`: it continues the session of the stage's latest run
/// (the one that just ended; same iteration, its turns carried over) with `input` as its next
/// turn, or — with no session to continue — starts afresh with `input` in its prompt.
fn nudge(tx: &Tx<'_>, task: &TaskRow, stage: domain::Stage, input: &str) -> Result<RunId> {
    let earlier = tx
        .runs_of_task(task.id)?
        .into_iter()
        .rev()
        .find(|r| r.stage == stage);
    let iteration = match &earlier {
        Some(run) => run.iteration,
        None => tx.finished_runs_of_stage(task.id, stage)?,
    };
    let run = tx.insert_run(&NewRunRow {
        task_id: task.id,
        stage,
        iteration,
        mark: &random_hex(16),
    })?;
    match earlier {
        Some(store::RunRow {
            turns,
            session: Some(session),
            ..
        }) => tx.continue_session(run, &session, input, turns)?,
        _ => tx.set_run_brief(run, input)?,
    }
    Ok(run)
}

/// The follow-up a resumed agent receives when its stopped session is continued.
const CONTINUE_AFTER_STOP: &str =
    "You were stopped by a user and have now been resumed. Continue the task where you left off.";

/// The earlier run whose harness session a new run continues, the session, and the first input:
/// resuming a task a user stopped, or restarting a run lost to a server crash, picks the same
/// session up again (its history intact) instead of starting from
/// scratch. An input the lost turn never finished with (an answer) is delivered again.
fn continued_session(
    tx: &Tx<'_>,
    task: &TaskRow,
    event: &Event,
    stage: domain::Stage,
    restart: Option<&str>,
) -> Result<Option<(store::RunRow, String, String)>> {
    let resumed_after_stop = matches!(
        (event, &task.state),
        (Event::ResumeRequested, TaskState::Stopped { .. })
    );
    if !resumed_after_stop && restart.is_none() {
        return Ok(None);
    }
    let Some(last) = tx.runs_of_task(task.id)?.pop() else {
        return Ok(None);
    };
    let Some(session) = last.session.clone().filter(|_| last.stage == stage) else {
        return Ok(None);
    };
    let input = if resumed_after_stop {
        if last.status != RunStatus::Stopped {
            return Ok(None);
        }
        CONTINUE_AFTER_STOP.to_string()
    } else {
        // An input still waiting for delivery (an answer) goes first; else why it restarted.
        match (&last.pending_input, restart) {
            (Some(input), _) => input.clone(),
            (None, Some(why)) => why.to_string(),
            (None, None) => return Ok(None),
        }
    };
    Ok(Some((last, session, input)))
}

/// Loads the task, applies `event` and commits; then carries out what the commit requires.
pub(crate) async fn apply_event(inner: &Inner, id: TaskId, event: Event) -> Result<TaskRow> {
    let (task, applied) = inner.store.write(|tx| {
        let task = tx.task(id)?.ok_or_else(|| not_found(id))?;
        let (_, applied) = apply_in(tx, &task, &event)?;
        let task = tx.task(id)?.ok_or_else(|| not_found(id))?;
        Ok::<_, EngineError>((task, applied))
    })?;
    after_commit(inner, applied);
    Ok(task)
}

pub(crate) fn not_found(id: TaskId) -> EngineError {
    EngineError::NotFound(format!("no task {id}: list tasks with `atelier task list`"))
}

/// Acts on a committed decision: never before the commit.
pub(crate) fn after_commit(inner: &Inner, applied: Applied) {
    for run in &applied.stop {
        inner.stop_live(*run, StopCause::User);
    }
    if applied.queued {
        inner.dispatch.notify_one();
    }
    if applied.intents {
        inner.outbox.notify_one();
    }
    if let Some(task) = applied.task {
        if let Some(retry_at) = applied.retry_at {
            inner.schedule_retry(task, retry_at);
        }
        inner.hub.changed(task);
    }
}
