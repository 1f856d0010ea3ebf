//! The default pipeline as a pure state machine: `decide(snapshot, event, policy)` returns the
//! task's next state, its counters and the effects the engine must carry out. The engine persists
//! the decision (state and effects in one transaction) before acting on any effect.

use crate::{
    ids::RunId,
    signal::{Signal, Verdict},
    stage::Stage,
    task::{BlockReason, DoneReason, RunStatus, TaskState},
};

/// Caps that keep a task from looping forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Review rounds that may end without `ready` before the task blocks.
    pub max_review_rounds: u32,
    /// Runs that may start (restarts after a crash excluded) before the task blocks.
    pub max_total_runs: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_review_rounds: 3,
            max_total_runs: 25,
        }
    }
}

/// Everything the rules need to know about a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSnapshot {
    pub state: TaskState,
    /// Review rounds that ended without `ready` since creation or the last resume.
    pub review_rounds: u32,
    /// Runs started since creation or the last resume.
    pub runs_started: u32,
    /// Non-technical owners pass the plan gate automatically.
    pub owner_technical: bool,
    /// The run that is queued, running or waiting for input, if any.
    pub live_run: Option<RunId>,
}

/// Something that happened to a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Created,
    PlanApproved,
    RunFinished {
        run: RunId,
        outcome: RunOutcome,
    },
    Answered {
        text: String,
    },
    StopRequested,
    ResumeRequested,
    /// `task run`: start an agent of `stage` (default: where the task stands).
    RunRequested {
        stage: Option<Stage>,
    },
    PullRequestFailed {
        reason: String,
    },
    /// The forge reports the pull request merged (by anyone, anywhere).
    Merged,
    /// A user asks Atelier to merge the task's pull request.
    MergeRequested,
    /// The merge Atelier carried out (or found already done) landed.
    MergeSucceeded,
    /// The merge Atelier tried failed; the task awaits a merge again.
    MergeFailed {
        reason: String,
    },
    /// A user asks to delete the task (checked, not applied: deletion removes the record).
    DeleteRequested,
    /// The backoff of a waiting task that was due at `retry_at` has elapsed.
    RetryDue {
        retry_at: i64,
    },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The turn ended normally; `signal` is the last signal the agent sent during the run.
    Ended {
        signal: Option<Signal>,
    },
    Failed {
        reason: String,
    },
    /// The agent emitted nothing for the stall window and was interrupted. The first stall
    /// of a stretch restarts the stage (continuing the session); a second one fails it.
    Stalled {
        reason: String,
        /// Stalled runs of the task right before this one.
        earlier_stalls: u32,
    },
    /// An infrastructure failure (rate limit, 5xx, network): retried at `retry_at` without
    /// counting against the task; `attempt` counts consecutive such failures.
    InfraFailed {
        reason: String,
        retry_at: i64,
        attempt: u32,
    },
    Stopped,
    /// The server died while the run was live.
    Interrupted,
}

impl RunOutcome {
    /// The status the finished run is recorded with.
    pub fn run_status(&self) -> RunStatus {
        match self {
            RunOutcome::Ended {
                signal: Some(Signal::Question { .. }),
            } => RunStatus::NeedsInput,
            RunOutcome::Ended { .. } => RunStatus::Completed,
            RunOutcome::Failed { .. }
            | RunOutcome::InfraFailed { .. }
            | RunOutcome::Stalled { .. } => RunStatus::Failed,
            RunOutcome::Stopped => RunStatus::Stopped,
            RunOutcome::Interrupted => RunStatus::Interrupted,
        }
    }
}

/// Work the engine carries out after the decision is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Queue a new run of `stage` (counted against the run cap).
    StartRun {
        stage: Stage,
    },
    /// Queue a replacement for a run the server lost in a crash (not counted).
    RestartRun {
        stage: Stage,
    },
    /// Resume the run's harness session with `input` as the next turn.
    ResumeRun {
        run: RunId,
        input: String,
    },
    StopRun {
        run: RunId,
    },
    /// Push the branch and open (or verify) the pull request; idempotent per task.
    OpenPullRequest,
    /// Remove the worktree and the local branch (never while a run is live).
    RemoveWorkspace,
    /// Merge the pull request on the forge (idempotent: a merge already done counts as done),
    /// then report `MergeSucceeded` or `MergeFailed`.
    MergePullRequest,
}

/// The outcome of an accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub state: TaskState,
    pub review_rounds: u32,
    pub runs_started: u32,
    pub effects: Vec<Effect>,
}

/// Why an event was refused; nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The request collides with live work (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// The request makes no sense in the task's state.
    #[error("{0}")]
    InvalidState(String),
}

/// Applies one event to a task.
pub fn decide(snap: &TaskSnapshot, event: &Event, policy: &Policy) -> Result<Decision, Rejection> {
    let unchanged = || Decision {
        state: snap.state.clone(),
        review_rounds: snap.review_rounds,
        runs_started: snap.runs_started,
        effects: vec![],
    };
    match event {
        Event::Created => Ok(start(snap, Stage::Plan, policy)),
        Event::PlanApproved => match snap.state {
            TaskState::PlanGate => Ok(start(snap, Stage::Implement, policy)),
            ref other => Err(Rejection::InvalidState(format!(
                "the task is not waiting for plan approval (it is {other})"
            ))),
        },
        Event::RunFinished { run, outcome } => {
            let TaskState::Running { stage } = snap.state else {
                return Ok(unchanged());
            };
            if snap.live_run != Some(*run) {
                return Ok(unchanged());
            }
            Ok(run_finished(snap, stage, outcome, policy))
        }
        Event::Answered { text } => match (&snap.state, snap.live_run) {
            (TaskState::NeedsInput { stage, .. }, Some(run)) => Ok(Decision {
                state: TaskState::Running { stage: *stage },
                effects: vec![Effect::ResumeRun {
                    run,
                    input: text.clone(),
                }],
                ..unchanged()
            }),
            (other, _) => Err(Rejection::InvalidState(format!(
                "the task has no open question (it is {other})"
            ))),
        },
        Event::StopRequested => match (&snap.state, snap.live_run) {
            (TaskState::Running { stage } | TaskState::NeedsInput { stage, .. }, Some(run)) => {
                Ok(Decision {
                    state: TaskState::Stopped { stage: *stage },
                    effects: vec![Effect::StopRun { run }],
                    ..unchanged()
                })
            }
            (TaskState::Waiting { stage, .. }, None) => Ok(Decision {
                state: TaskState::Stopped { stage: *stage },
                ..unchanged()
            }),
            (other, _) => Err(Rejection::InvalidState(format!(
                "no agent is running for this task (it is {other})"
            ))),
        },
        Event::ResumeRequested => match &snap.state {
            // A stopped run may still be exiting: one agent at a time per task.
            _ if snap.live_run.is_some() => Err(conflict(snap)),
            TaskState::Blocked { stage, .. }
            | TaskState::Stopped { stage }
            | TaskState::Waiting { stage, .. } => {
                // A resume is a human's decision to grant a fresh budget.
                let fresh = TaskSnapshot {
                    review_rounds: 0,
                    runs_started: 0,
                    ..snap.clone()
                };
                Ok(start(&fresh, *stage, policy))
            }
            TaskState::Running { .. } | TaskState::NeedsInput { .. } => Err(conflict(snap)),
            other => Err(Rejection::InvalidState(format!(
                "only a blocked or stopped task can be resumed (it is {other})"
            ))),
        },
        Event::RunRequested { stage } => {
            if snap.live_run.is_some()
                || matches!(
                    snap.state,
                    TaskState::Running { .. } | TaskState::NeedsInput { .. }
                )
            {
                return Err(conflict(snap));
            }
            let default_stage = match &snap.state {
                TaskState::Blocked { stage, .. }
                | TaskState::Stopped { stage }
                | TaskState::Waiting { stage, .. } => *stage,
                TaskState::PlanGate => Stage::Plan,
                TaskState::AwaitingMerge { .. } => Stage::Pr,
                TaskState::Merging => return Err(being_merged()),
                TaskState::Done { .. } => {
                    return Err(Rejection::InvalidState("the task is done".into()));
                }
                TaskState::Running { stage } | TaskState::NeedsInput { stage, .. } => *stage,
            };
            Ok(start(snap, stage.unwrap_or(default_stage), policy))
        }
        Event::PullRequestFailed { reason } => match snap.state {
            TaskState::AwaitingMerge { .. } => Ok(Decision {
                state: TaskState::Blocked {
                    stage: Stage::Pr,
                    reason: BlockReason::Forge {
                        detail: reason.clone(),
                    },
                },
                ..unchanged()
            }),
            _ => Ok(unchanged()),
        },
        Event::RetryDue { retry_at: due } => match snap.state {
            TaskState::Waiting {
                stage, retry_at, ..
            } if retry_at == *due => Ok(Decision {
                state: TaskState::Running { stage },
                effects: vec![Effect::RestartRun { stage }],
                ..unchanged()
            }),
            _ => Ok(unchanged()),
        },
        Event::Merged => match snap.state {
            TaskState::AwaitingMerge { .. } | TaskState::Merging => Ok(merged(snap)),
            ref other => Err(no_pull_request(other)),
        },
        Event::MergeRequested => match snap.state {
            TaskState::AwaitingMerge { .. } => Ok(Decision {
                state: TaskState::Merging,
                effects: vec![Effect::MergePullRequest],
                ..unchanged()
            }),
            TaskState::Merging => Err(being_merged()),
            TaskState::Done {
                reason: DoneReason::Merged,
            } => Err(Rejection::InvalidState("the task is already merged".into())),
            ref other => Err(no_pull_request(other)),
        },
        // Reports of a merge that no longer applies (the watcher saw it merged first) are
        // ignored, like a stale run's.
        Event::MergeSucceeded => match snap.state {
            TaskState::Merging => Ok(merged(snap)),
            _ => Ok(unchanged()),
        },
        Event::MergeFailed { reason } => match snap.state {
            TaskState::Merging => Ok(Decision {
                state: TaskState::AwaitingMerge {
                    merge_error: Some(reason.clone()),
                },
                ..unchanged()
            }),
            _ => Ok(unchanged()),
        },
        Event::DeleteRequested => match snap.state {
            TaskState::Merging => Err(Rejection::Conflict(
                "the task is being merged: wait for the merge to finish, then delete it".into(),
            )),
            _ if snap.live_run.is_some() => Err(conflict(snap)),
            _ => Ok(unchanged()),
        },
    }
}

fn merged(snap: &TaskSnapshot) -> Decision {
    Decision {
        state: TaskState::Done {
            reason: DoneReason::Merged,
        },
        review_rounds: snap.review_rounds,
        runs_started: snap.runs_started,
        effects: vec![Effect::RemoveWorkspace],
    }
}

fn no_pull_request(state: &TaskState) -> Rejection {
    Rejection::InvalidState(format!(
        "the task has no open pull request to merge (it is {state})"
    ))
}

fn being_merged() -> Rejection {
    Rejection::Conflict(
        "the task is already being merged: wait for that merge to finish (`atelier task show`)"
            .into(),
    )
}

fn conflict(snap: &TaskSnapshot) -> Rejection {
    let run = snap
        .live_run
        .map_or(String::new(), |run| format!(" (run {run})"));
    Rejection::Conflict(format!(
        "an agent is already running for this task{run}; stop it first or wait for it to finish"
    ))
}

/// Queues a run of `stage`, or blocks the task when the run cap is reached.
fn start(snap: &TaskSnapshot, stage: Stage, policy: &Policy) -> Decision {
    if snap.runs_started >= policy.max_total_runs {
        return Decision {
            state: TaskState::Blocked {
                stage,
                reason: BlockReason::MaxIterations {
                    detail: format!("reached the cap of {} runs per task", policy.max_total_runs),
                },
            },
            review_rounds: snap.review_rounds,
            runs_started: snap.runs_started,
            effects: vec![],
        };
    }
    Decision {
        state: TaskState::Running { stage },
        review_rounds: snap.review_rounds,
        runs_started: snap.runs_started + 1,
        effects: vec![Effect::StartRun { stage }],
    }
}

fn blocked(snap: &TaskSnapshot, stage: Stage, reason: BlockReason) -> Decision {
    Decision {
        state: TaskState::Blocked { stage, reason },
        review_rounds: snap.review_rounds,
        runs_started: snap.runs_started,
        effects: vec![],
    }
}

fn run_finished(
    snap: &TaskSnapshot,
    stage: Stage,
    outcome: &RunOutcome,
    policy: &Policy,
) -> Decision {
    let signal = match outcome {
        RunOutcome::Interrupted => {
            return Decision {
                state: TaskState::Running { stage },
                review_rounds: snap.review_rounds,
                runs_started: snap.runs_started,
                effects: vec![Effect::RestartRun { stage }],
            };
        }
        RunOutcome::Stopped => {
            return Decision {
                state: TaskState::Stopped { stage },
                review_rounds: snap.review_rounds,
                runs_started: snap.runs_started,
                effects: vec![],
            };
        }
        RunOutcome::Failed { reason } => {
            return blocked(
                snap,
                stage,
                BlockReason::RunFailed {
                    detail: reason.clone(),
                },
            );
        }
        RunOutcome::Stalled {
            reason,
            earlier_stalls,
        } => {
            if *earlier_stalls > 0 {
                return blocked(
                    snap,
                    stage,
                    BlockReason::RunFailed {
                        detail: format!(
                            "{reason}; it had stalled before, so it was not resumed again"
                        ),
                    },
                );
            }
            return Decision {
                state: TaskState::Running { stage },
                review_rounds: snap.review_rounds,
                runs_started: snap.runs_started,
                effects: vec![Effect::RestartRun { stage }],
            };
        }
        RunOutcome::InfraFailed {
            reason,
            retry_at,
            attempt,
        } => {
            return Decision {
                state: TaskState::Waiting {
                    stage,
                    reason: reason.clone(),
                    retry_at: *retry_at,
                    attempt: *attempt,
                },
                review_rounds: snap.review_rounds,
                runs_started: snap.runs_started,
                effects: vec![],
            };
        }
        RunOutcome::Ended { signal } => signal,
    };
    if let Some(Signal::Question { text }) = signal {
        return Decision {
            state: TaskState::NeedsInput {
                stage,
                question: text.clone(),
            },
            review_rounds: snap.review_rounds,
            runs_started: snap.runs_started,
            effects: vec![],
        };
    }
    match (stage, signal) {
        (Stage::Plan, Some(Signal::PlanReady)) if snap.owner_technical => Decision {
            state: TaskState::PlanGate,
            review_rounds: snap.review_rounds,
            runs_started: snap.runs_started,
            effects: vec![],
        },
        (Stage::Plan, Some(Signal::PlanReady)) => start(snap, Stage::Implement, policy),
        (Stage::Plan, _) => blocked(
            snap,
            Stage::Plan,
            BlockReason::MissingSignal {
                detail: "the planner ended without `atelier signal plan-ready`".into(),
            },
        ),
        (Stage::Implement, _) => start(snap, Stage::Review, policy),
        (
            Stage::Review,
            Some(Signal::Verdict {
                verdict: Verdict::Ready,
                ..
            }),
        ) => start(snap, Stage::Pr, policy),
        (
            Stage::Review,
            Some(Signal::Verdict {
                verdict: Verdict::Blocked,
                reason,
            }),
        ) => blocked(
            snap,
            Stage::Review,
            BlockReason::Agent {
                detail: reason.clone().unwrap_or_default(),
            },
        ),
        (Stage::Review, _) => {
            // needs-work, or a review that ended with no verdict.
            let rounds = snap.review_rounds + 1;
            let counted = TaskSnapshot {
                review_rounds: rounds,
                ..snap.clone()
            };
            if rounds >= policy.max_review_rounds {
                blocked(
                    &counted,
                    Stage::Implement,
                    BlockReason::MaxIterations {
                        detail: format!(
                            "review did not pass after {rounds} rounds (cap {})",
                            policy.max_review_rounds
                        ),
                    },
                )
            } else {
                start(&counted, Stage::Implement, policy)
            }
        }
        (Stage::Pr, Some(Signal::PrDone { no_changes: true })) => Decision {
            state: TaskState::Done {
                reason: DoneReason::NoChanges,
            },
            review_rounds: snap.review_rounds,
            runs_started: snap.runs_started,
            effects: vec![Effect::RemoveWorkspace],
        },
        (Stage::Pr, Some(Signal::PrDone { no_changes: false })) => Decision {
            state: TaskState::AwaitingMerge { merge_error: None },
            review_rounds: snap.review_rounds,
            runs_started: snap.runs_started,
            effects: vec![Effect::OpenPullRequest],
        },
        (Stage::Pr, _) => blocked(
            snap,
            Stage::Pr,
            BlockReason::MissingSignal {
                detail: "the pr stage ended without `atelier signal pr-done`".into(),
            },
        ),
    }
}

#[cfg(test)]
mod tests;
