//! The runnable pipelines as a pure state machine: `decide(snapshot, event, policy)` returns the
//! task's next state, its counters and the effects the engine must carry out. The engine persists
//! the decision (state and effects in one transaction) before acting on any effect. The task's
//! pipeline ([`Pipeline`], a validated definition in the snapshot) decides where it starts, where
//! each stage's signals lead and what caps its loops: `standard` (plan → gate → implement ⇄
//! review → pr), `full` (… → qa → refine → pr), `yolo` (implement → publish) or a project's own.

mod runnable;

pub use runnable::{Next, Pipeline, UnknownPipeline};

use crate::{
    ids::RunId,
    pipeline_def::StageSignal,
    signal::{QaResult, Signal, Verdict},
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
    /// Pr-stage runs that may start to fix failing checks before the task blocks (`ci_failing`).
    pub max_ci_fix_rounds: u32,
    /// Pr-stage runs that may start to resolve conflicts with a moved base before the task
    /// blocks (`conflicts`).
    pub max_conflict_rounds: u32,
    /// The same tool call with the same input this many times in a row interrupts the run with
    /// a nudge; a second such run in a row blocks the task (`looping`). Enforced by the engine's
    /// supervisor over the decoded transcript.
    pub max_repeated_tool_calls: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_review_rounds: 3,
            max_total_runs: 25,
            max_ci_fix_rounds: 3,
            max_conflict_rounds: 3,
            max_repeated_tool_calls: 5,
        }
    }
}

/// Everything the rules need to know about a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSnapshot {
    pub state: TaskState,
    /// Review rounds that ended without `ready` since creation or the last resume.
    pub review_rounds: u32,
    /// QA rounds that ended with `qa fail` since creation or the last resume.
    pub qa_rounds: u32,
    /// Runs started since creation or the last resume.
    pub runs_started: u32,
    /// Non-technical owners pass the plan gate automatically.
    pub owner_technical: bool,
    /// The run that is queued, running or waiting for input, if any.
    pub live_run: Option<RunId>,
    /// Follow-up rounds of the pull request since creation or the last resume.
    pub pr_rounds: PrRounds,
    /// A pull request was opened for the task (the engine has its record).
    pub has_pull_request: bool,
    /// What the task's runs have done so far: what a stage started out of order would lack.
    pub history: StageHistory,
    /// The pipeline the task runs (its definition, recorded at creation).
    pub pipeline: Pipeline,
}

/// The facts about a task's past runs the order of its stages depends on (the engine reads them
/// from the run rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StageHistory {
    /// An implement run of the task has completed: there is work to review.
    pub implemented: bool,
    /// The verdict of the task's latest review (both reviewers' runs of a round, when the
    /// pipeline has two: `ready` only when both said it), if any.
    pub last_verdict: Option<Verdict>,
    /// The verdict of the latest run of the first reviewer (`review`), if it gave one: what the
    /// second reviewer's verdict is combined with.
    pub first_review_verdict: Option<Verdict>,
}

/// How many follow-up runs the pull request has needed, per cause; each is capped by the
/// [`Policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrRounds {
    /// Runs started because checks failed.
    pub ci_fixes: u32,
    /// Runs started because the pull request conflicted with its base.
    pub conflicts: u32,
}

/// Something that happened to a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Created,
    PlanApproved,
    /// At the plan gate, a human asks the planner to revise the plan: `feedback` is what to
    /// change (the engine refuses an empty one before it gets here).
    PlanChangesRequested {
        feedback: String,
    },
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
    /// Every check of the pull request's head passed (or it has none).
    ChecksPassed,
    /// Checks of the pull request's head failed; `brief` (names, annotations, log excerpts) is
    /// what the fixing run is told.
    ChecksFailed {
        checks: Vec<String>,
        brief: String,
    },
    /// The pull request no longer merges into its moved base; `brief` tells the run to rebase.
    Conflicted {
        brief: String,
    },
    /// Trusted comments asking for changes arrived (and their batching window passed); `brief`
    /// carries them to the run.
    CommentsReceived {
        brief: String,
    },
    /// The pull request was closed without being merged.
    PrClosed,
    /// The closed pull request was reopened.
    PrReopened,
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
    /// An implement run ended normally but changed nothing: no new commit on the task branch and
    /// no newly checked to-do item (the engine compares the worktree's HEAD and the doc's checked
    /// items with those at the run's start). The first time the implementer is nudged; after
    /// `earlier` such runs in a row the task blocks (`no_progress`).
    NoProgress {
        detail: String,
        /// Runs of the task right before this one that made no progress either.
        earlier: u32,
    },
    /// The agent made the same tool call with the same input
    /// [`Policy::max_repeated_tool_calls`] times in a row and was interrupted. The first time it
    /// is nudged (its session continued with a message saying so); after `earlier` such runs in
    /// a row the task blocks (`looping`).
    Looping {
        detail: String,
        /// Runs of the task right before this one that were interrupted for looping too.
        earlier: u32,
    },
    /// A pr run ended while the task branch's head is not the commit of the last `ready`
    /// verdict (it committed after the review), before any pull request was opened: what would
    /// be published was never reviewed, so the task goes back to review. `signal` is what the
    /// run signalled (its `pr-done` was refused).
    Unreviewed {
        signal: Option<Signal>,
        detail: String,
    },
}

impl RunOutcome {
    /// The status the finished run is recorded with.
    pub fn run_status(&self) -> RunStatus {
        match self {
            RunOutcome::Ended {
                signal: Some(Signal::Question { .. }),
            } => RunStatus::NeedsInput,
            RunOutcome::Ended { .. }
            | RunOutcome::NoProgress { .. }
            | RunOutcome::Unreviewed { .. } => RunStatus::Completed,
            RunOutcome::Failed { .. }
            | RunOutcome::InfraFailed { .. }
            | RunOutcome::Stalled { .. }
            | RunOutcome::Looping { .. } => RunStatus::Failed,
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
    /// Queue a replacement for a run that did not end by itself (not counted): `cause` says
    /// why, and so what the replacement is told when it continues the session.
    RestartRun {
        stage: Stage,
        cause: RestartCause,
    },
    /// Resume the run's harness session with `input` as the next turn.
    ResumeRun {
        run: RunId,
        input: String,
    },
    StopRun {
        run: RunId,
    },
    /// Queue a new run of `stage` (counted against the run cap) that continues the session of
    /// the run that just ended with `input` as its next turn — or, with no session to continue,
    /// a fresh run with `input` in its prompt. A guard's nudge: the agent is told what it did
    /// not do and gets one more chance.
    Nudge {
        stage: Stage,
        input: String,
    },
    /// Queue a new plan run (counted against the run cap, a new plan iteration) that continues
    /// the last plan run's harness session with `feedback` as its next input, or — when there is
    /// no session to continue — starts afresh with the feedback in its prompt.
    RevisePlan {
        feedback: String,
    },
    /// Push the branch and open (or verify) the pull request; idempotent per task.
    OpenPullRequest,
    /// Queue a pr-stage run that follows the pull request up (failing checks, a conflict,
    /// comments); `brief` says what for (counted against the run cap).
    StartFollowUp {
        brief: String,
    },
    /// Remove the worktree and the local branch (never while a run is live).
    RemoveWorkspace,
    /// Merge the pull request on the forge (idempotent: a merge already done counts as done),
    /// then report `MergeSucceeded` or `MergeFailed`.
    MergePullRequest,
    /// Write the findings of the round of `stage` that just ended (`review`: both reviewers'
    /// verdicts and reasons; `qa`: the QA agent's `qa fail` reason) into the task doc, before
    /// the run that works on them starts.
    RecordFindings {
        stage: Stage,
    },
}

/// Why a run is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartCause {
    /// The server died while the run was live: its session continues.
    ServerRestarted,
    /// The agent emitted nothing for the stall window and was interrupted: its session
    /// continues, told so.
    Stalled,
    /// The backoff after an infrastructure failure elapsed: a fresh run (the failed request made
    /// no progress).
    Retry,
}

/// What the replacement of a run lost to a server restart is told as its next turn.
pub const CONTINUE_AFTER_RESTART: &str = "Your previous turn was interrupted (the Atelier server \
     restarted). Continue the task where you left off.";

/// What the replacement of a stalled run is told as its next turn.
pub const CONTINUE_AFTER_STALL: &str = "You produced no output for a long time and were \
     interrupted. Continue the task where you left off; avoid commands that stay silent for long.";

impl RestartCause {
    /// The next turn of the session the replacement continues, or `None` for a fresh run.
    pub fn continuation(self) -> Option<&'static str> {
        match self {
            RestartCause::ServerRestarted => Some(CONTINUE_AFTER_RESTART),
            RestartCause::Stalled => Some(CONTINUE_AFTER_STALL),
            RestartCause::Retry => None,
        }
    }
}

/// The outcome of an accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub state: TaskState,
    pub review_rounds: u32,
    pub qa_rounds: u32,
    pub runs_started: u32,
    pub pr_rounds: PrRounds,
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
    let unchanged = || keep(snap, snap.state.clone(), vec![]);
    match event {
        Event::Created => Ok(start(snap, snap.pipeline.first_stage(), policy)),
        Event::PlanApproved => match snap.state {
            TaskState::PlanGate => Ok(go(snap, Stage::Plan, StageSignal::PlanReady, policy)),
            ref other => Err(Rejection::InvalidState(format!(
                "the task is not waiting for plan approval (it is {other})"
            ))),
        },
        Event::PlanChangesRequested { feedback } => match snap.state {
            TaskState::PlanGate if feedback.trim().is_empty() => Err(Rejection::InvalidState(
                "the requested changes are empty: say what the plan should change".into(),
            )),
            TaskState::PlanGate => {
                let mut decision = start(snap, Stage::Plan, policy);
                if let Some(effect) = decision.effects.first_mut() {
                    *effect = Effect::RevisePlan {
                        feedback: feedback.clone(),
                    };
                }
                Ok(decision)
            }
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
            | TaskState::Waiting { stage, .. } => Ok(start(&fresh(snap), *stage, policy)),
            // A closed pull request is taken up again by the pr stage, which reopens it.
            TaskState::Closed => Ok(start(&fresh(snap), Stage::Pr, policy)),
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
                TaskState::AwaitingMerge { .. } | TaskState::AwaitingChecks | TaskState::Closed => {
                    Stage::Pr
                }
                TaskState::Merging => return Err(being_merged()),
                TaskState::Done { .. } => {
                    return Err(Rejection::InvalidState("the task is done".into()));
                }
                TaskState::Running { stage } | TaskState::NeedsInput { stage, .. } => *stage,
            };
            let stage = stage.unwrap_or(default_stage);
            // Where the task stands is in order by construction; another stage must be reached.
            if stage != default_stage {
                in_order(snap, stage)?;
            }
            Ok(start(snap, stage, policy))
        }
        Event::PullRequestFailed { reason } => match snap.state {
            TaskState::AwaitingMerge { .. } | TaskState::AwaitingChecks => Ok(Decision {
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
                effects: vec![Effect::RestartRun {
                    stage,
                    cause: RestartCause::Retry,
                }],
                ..unchanged()
            }),
            _ => Ok(unchanged()),
        },
        // Whoever merged it, wherever: the task is done, and a run still working on it stops.
        Event::Merged => match (&snap.state, snap.live_run) {
            (TaskState::Done { .. }, _) => Ok(unchanged()),
            (
                TaskState::AwaitingChecks
                | TaskState::AwaitingMerge { .. }
                | TaskState::Merging
                | TaskState::Closed,
                None,
            ) => Ok(merged(snap)),
            (_, live) if snap.has_pull_request => {
                let mut decision = merged(snap);
                if let Some(run) = live {
                    decision.effects.insert(0, Effect::StopRun { run });
                }
                Ok(decision)
            }
            (other, _) => Err(no_pull_request(other)),
        },
        Event::ChecksPassed => match snap.state {
            TaskState::AwaitingChecks => Ok(Decision {
                state: TaskState::AwaitingMerge { merge_error: None },
                ..unchanged()
            }),
            _ => Ok(unchanged()),
        },
        Event::ChecksFailed { checks, brief } => {
            if !follows_up(snap) {
                return Ok(unchanged());
            }
            if snap.pr_rounds.ci_fixes >= policy.max_ci_fix_rounds {
                return Ok(blocked(
                    snap,
                    Stage::Pr,
                    BlockReason::CiFailing {
                        detail: format!(
                            "{} still failing after {} fix rounds (cap {})",
                            checks.join(", "),
                            snap.pr_rounds.ci_fixes,
                            policy.max_ci_fix_rounds
                        ),
                    },
                ));
            }
            let rounds = PrRounds {
                ci_fixes: snap.pr_rounds.ci_fixes + 1,
                ..snap.pr_rounds
            };
            Ok(follow_up(snap, rounds, brief, policy))
        }
        Event::Conflicted { brief } => {
            if !follows_up(snap) {
                return Ok(unchanged());
            }
            if snap.pr_rounds.conflicts >= policy.max_conflict_rounds {
                return Ok(blocked(
                    snap,
                    Stage::Pr,
                    BlockReason::Conflicts {
                        detail: format!(
                            "the pull request still conflicts with its base after {} rebase rounds (cap {})",
                            snap.pr_rounds.conflicts, policy.max_conflict_rounds
                        ),
                    },
                ));
            }
            let rounds = PrRounds {
                conflicts: snap.pr_rounds.conflicts + 1,
                ..snap.pr_rounds
            };
            Ok(follow_up(snap, rounds, brief, policy))
        }
        // A human asked for changes on the pull request: it runs even from a block of the pr
        // stage (the comment is the human's decision), never over a live run.
        Event::CommentsReceived { brief } => match &snap.state {
            _ if snap.live_run.is_some() => Err(conflict(snap)),
            TaskState::AwaitingChecks
            | TaskState::AwaitingMerge { .. }
            | TaskState::Blocked {
                stage: Stage::Pr, ..
            } => Ok(follow_up(snap, snap.pr_rounds, brief, policy)),
            other => Err(Rejection::InvalidState(format!(
                "pull-request comments are taken up once the pull request waits for checks or a merge (it is {other})"
            ))),
        },
        Event::PrClosed => match (&snap.state, snap.live_run) {
            (TaskState::Done { .. } | TaskState::Merging | TaskState::Closed, _) => Ok(unchanged()),
            (_, live) => Ok(Decision {
                state: TaskState::Closed,
                effects: live
                    .map(|run| Effect::StopRun { run })
                    .into_iter()
                    .collect(),
                ..unchanged()
            }),
        },
        Event::PrReopened => match snap.state {
            TaskState::Closed => Ok(Decision {
                state: TaskState::AwaitingChecks,
                ..unchanged()
            }),
            _ => Ok(unchanged()),
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

/// What a user may ask of a task (one button of a user interface each).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Approve the plan at the plan gate.
    ApprovePlan,
    /// Send the plan back to the planner with feedback.
    RequestPlanChanges,
    /// Answer the agent's open question.
    Answer,
    Stop,
    Resume,
    /// Start an agent of `stage`.
    Run {
        stage: Stage,
    },
    /// Merge the pull request.
    Merge,
    Delete,
}

impl Action {
    /// The event a user taking this action feeds to [`decide`] (texts are placeholders: what the
    /// rules check is whether the event is accepted in the task's state).
    pub fn event(self) -> Event {
        match self {
            Action::ApprovePlan => Event::PlanApproved,
            Action::RequestPlanChanges => Event::PlanChangesRequested {
                feedback: "changes".into(),
            },
            Action::Answer => Event::Answered {
                text: "answer".into(),
            },
            Action::Stop => Event::StopRequested,
            Action::Resume => Event::ResumeRequested,
            Action::Run { stage } => Event::RunRequested { stage: Some(stage) },
            Action::Merge => Event::MergeRequested,
            Action::Delete => Event::DeleteRequested,
        }
    }

    /// Every action, in the order a user interface lists them.
    pub fn all() -> Vec<Action> {
        let mut all = vec![
            Action::ApprovePlan,
            Action::RequestPlanChanges,
            Action::Answer,
            Action::Stop,
            Action::Resume,
        ];
        all.extend(Stage::ALL.map(|stage| Action::Run { stage }));
        all.extend([Action::Merge, Action::Delete]);
        all
    }
}

/// The actions the rules accept for the task now: each action's event is tried against
/// [`decide`] and kept unless rejected, so a user is never offered what would be refused.
pub fn allowed_actions(snap: &TaskSnapshot, policy: &Policy) -> Vec<Action> {
    Action::all()
        .into_iter()
        .filter(|action| decide(snap, &action.event(), policy).is_ok())
        .collect()
}

/// Refuses a stage a user or an API call would start before the work it stands on exists:
/// review before any implement run completed, pr before a reviewer said `ready` (unless a pull
/// request is already open, which a pr run follows up).
fn in_order(snap: &TaskSnapshot, stage: Stage) -> Result<(), Rejection> {
    if !snap.pipeline.has_stage(stage) {
        let stages: Vec<&str> = snap.pipeline.stages().iter().map(|s| s.as_str()).collect();
        return Err(Rejection::InvalidState(format!(
            "the `{}` pipeline has no {stage} stage (its stages: {})",
            snap.pipeline,
            stages.join(", ")
        )));
    }
    let implemented = snap.history.implemented;
    let reviews = snap.pipeline.has_stage(Stage::Review);
    let ready = snap.history.last_verdict == Some(Verdict::Ready);
    let refused = |why: String| Err(Rejection::InvalidState(why));
    match stage {
        Stage::Review | Stage::SecondReview if !implemented => refused(format!(
            "{stage} cannot start yet: no implement run has completed, so there is nothing to \
             review; run the implement stage first"
        )),
        Stage::Qa | Stage::Refine if !implemented => refused(format!(
            "the {stage} stage cannot start yet: no implement run has completed, so there is \
             nothing to {}; run the implement stage first",
            if stage == Stage::Qa { "test" } else { "refine" }
        )),
        Stage::Qa | Stage::Refine if reviews && !ready => refused(format!(
            "the {stage} stage cannot start yet: {}; it starts once the review says `ready` \
             (run the review stage)",
            last_verdict(snap)
        )),
        // Without a review stage, the pull request publishes what the implementer committed.
        Stage::Pr if !snap.has_pull_request && !reviews && !implemented => refused(
            "the pr stage cannot start yet: no implement run has completed, so there is \
             nothing to publish; run the implement stage first"
                .into(),
        ),
        Stage::Pr if !snap.has_pull_request && reviews && !ready => refused(format!(
            "the pr stage cannot start yet: {}; a pull request is opened only after a \
             reviewer says `ready` (run the review stage)",
            last_verdict(snap)
        )),
        _ => Ok(()),
    }
}

/// The latest review verdict, in words.
fn last_verdict(snap: &TaskSnapshot) -> String {
    match snap.history.last_verdict {
        Some(verdict) => format!("the last review verdict is `{verdict}`"),
        None => "no review has given a verdict yet".into(),
    }
}

/// What an implementer that changed nothing is told before its one more chance.
pub const NO_PROGRESS_NUDGE: &str = "Atelier guard: your last turn ended with no new commit on \
     the task branch and no newly checked item in the task doc's To-Do List, so the reviewer was \
     not started. Work the unchecked to-do items now: make the changes, commit them on the task \
     branch, and check each item in the doc once it is done. If the work is already done, commit \
     it and check its items; if an item cannot be done by an agent, write why under the item. \
     Ending another turn without a commit or a newly checked item blocks the task.";

/// An implement run made no progress: nudge the implementer once (the reviewer is not started
/// on nothing); a second run in a row without progress blocks the task.
fn no_progress(snap: &TaskSnapshot, detail: &str, earlier: u32, policy: &Policy) -> Decision {
    if earlier > 0 {
        return blocked(
            snap,
            Stage::Implement,
            BlockReason::NoProgress {
                detail: format!(
                    "{detail}; the implementer had been nudged after a run without progress, \
                     and made none again"
                ),
            },
        );
    }
    // An implementer whose turn's end leads on (to a reviewer) is nudged to do the work; one
    // that must signal `pr-done` (yolo) is told to signal too.
    let text = if snap
        .pipeline
        .next(Stage::Implement, StageSignal::Done)
        .is_some()
    {
        NO_PROGRESS_NUDGE
    } else {
        YOLO_NO_PROGRESS_NUDGE
    };
    nudge(snap, Stage::Implement, text, policy)
}

/// What a yolo implementer that changed nothing and did not signal `pr-done` is told.
pub const YOLO_NO_PROGRESS_NUDGE: &str = "Atelier guard: your last turn ended with no new commit \
     on the task branch, no newly checked item in the task doc's To-Do List and no `atelier signal \
     pr-done`. Do the work now: make the changes, test them, commit them on the task branch and \
     check each to-do item once it is done; then run `atelier signal pr-done` (or `atelier signal \
     pr-done --no-changes` if nothing needs to change). Ending another turn without a commit, a \
     newly checked item or `pr-done` blocks the task.";

/// What a yolo implementer whose turn ended without `pr-done` is told: its session continues
/// (a counted run, under the pipeline's cap on implement runs).
pub const PR_DONE_NUDGE: &str = "Atelier: your last turn ended without `atelier signal pr-done`. \
     This pipeline has no reviewer: the pull request is opened when you signal. If the work is \
     done, committed and its tests pass, run `atelier signal pr-done` now (or `atelier signal \
     pr-done --no-changes` if nothing needed to change); otherwise go on with the task and signal \
     when it is finished.";

/// What an agent interrupted for repeating itself is told when its session continues.
pub const LOOPING_NUDGE: &str = "Atelier guard: you made the same tool call with the same input \
     several times in a row, so your turn was interrupted. Repeating it will not give a different \
     result: read the output you already have, change your approach (another command, another \
     file, a smaller step), and go on with the task. Looping again blocks the task.";

/// A run interrupted for repeating the same tool call: nudge the agent once (its session
/// continues with a message saying so); a second such run in a row blocks the task.
fn looping(
    snap: &TaskSnapshot,
    stage: Stage,
    detail: &str,
    earlier: u32,
    policy: &Policy,
) -> Decision {
    if earlier > 0 {
        return blocked(
            snap,
            stage,
            BlockReason::Looping {
                detail: format!(
                    "{detail}; the agent had been interrupted and nudged for looping before"
                ),
            },
        );
    }
    nudge(snap, stage, LOOPING_NUDGE, policy)
}

/// Queues a nudged run of `stage` (a [`start`] whose run continues the session with `input`).
fn nudge(snap: &TaskSnapshot, stage: Stage, input: &str, policy: &Policy) -> Decision {
    let mut decision = start(snap, stage, policy);
    if let Some(effect) = decision.effects.first_mut() {
        *effect = Effect::Nudge {
            stage,
            input: input.to_string(),
        };
    }
    decision
}

/// A resume is a human's decision to grant a fresh budget.
fn fresh(snap: &TaskSnapshot) -> TaskSnapshot {
    TaskSnapshot {
        review_rounds: 0,
        qa_rounds: 0,
        runs_started: 0,
        pr_rounds: PrRounds::default(),
        ..snap.clone()
    }
}

/// Whether the task's open pull request is being followed (checks and conflicts lead to runs).
fn follows_up(snap: &TaskSnapshot) -> bool {
    snap.live_run.is_none()
        && matches!(
            snap.state,
            TaskState::AwaitingChecks | TaskState::AwaitingMerge { .. }
        )
}

/// Queues a pr-stage run carrying `brief` with the pull request's rounds now `rounds`, or blocks
/// the task when the run cap is reached.
fn follow_up(snap: &TaskSnapshot, rounds: PrRounds, brief: &str, policy: &Policy) -> Decision {
    let mut decision = start(snap, Stage::Pr, policy);
    decision.pr_rounds = rounds;
    if let Some(effect) = decision.effects.first_mut() {
        *effect = Effect::StartFollowUp {
            brief: brief.to_string(),
        };
    }
    decision
}

fn merged(snap: &TaskSnapshot) -> Decision {
    keep(
        snap,
        TaskState::Done {
            reason: DoneReason::Merged,
        },
        vec![Effect::RemoveWorkspace],
    )
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

/// A decision that keeps the snapshot's counters.
fn keep(snap: &TaskSnapshot, state: TaskState, effects: Vec<Effect>) -> Decision {
    Decision {
        state,
        review_rounds: snap.review_rounds,
        qa_rounds: snap.qa_rounds,
        runs_started: snap.runs_started,
        pr_rounds: snap.pr_rounds,
        effects,
    }
}

/// Queues a run of `stage`, or blocks the task when a run cap is reached: the project's cap on
/// all runs, the pipeline's (`max_runs`) and the stage's. A stage cap counts the task's runs
/// (yolo caps its implementer at 5: every run of a yolo task before its pull request opens is
/// an implement run). The lowest cap wins.
fn start(snap: &TaskSnapshot, stage: Stage, policy: &Policy) -> Decision {
    let caps = [
        (
            policy.max_total_runs,
            format!("reached the cap of {} runs per task", policy.max_total_runs),
        ),
        match snap.pipeline.total_runs_cap() {
            Some(cap) => (
                cap,
                format!(
                    "reached the cap of {cap} runs of the `{}` pipeline",
                    snap.pipeline
                ),
            ),
            None => (u32::MAX, String::new()),
        },
        match snap.pipeline.runs_cap(stage) {
            Some(cap) => (
                cap,
                format!(
                    "reached the cap of {cap} {stage} runs of the `{}` pipeline",
                    snap.pipeline
                ),
            ),
            None => (u32::MAX, String::new()),
        },
    ];
    if let Some((_, detail)) = caps
        .into_iter()
        .filter(|(cap, _)| snap.runs_started >= *cap)
        .min_by_key(|(cap, _)| *cap)
    {
        return keep(
            snap,
            TaskState::Blocked {
                stage,
                reason: BlockReason::MaxIterations { detail },
            },
            vec![],
        );
    }
    Decision {
        runs_started: snap.runs_started + 1,
        ..keep(
            snap,
            TaskState::Running { stage },
            vec![Effect::StartRun { stage }],
        )
    }
}

fn blocked(snap: &TaskSnapshot, stage: Stage, reason: BlockReason) -> Decision {
    keep(snap, TaskState::Blocked { stage, reason }, vec![])
}

fn run_finished(
    snap: &TaskSnapshot,
    stage: Stage,
    outcome: &RunOutcome,
    policy: &Policy,
) -> Decision {
    let signal = match outcome {
        RunOutcome::Interrupted => {
            return keep(
                snap,
                TaskState::Running { stage },
                vec![Effect::RestartRun {
                    stage,
                    cause: RestartCause::ServerRestarted,
                }],
            );
        }
        RunOutcome::Stopped => {
            return keep(snap, TaskState::Stopped { stage }, vec![]);
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
            return keep(
                snap,
                TaskState::Running { stage },
                vec![Effect::RestartRun {
                    stage,
                    cause: RestartCause::Stalled,
                }],
            );
        }
        RunOutcome::InfraFailed {
            reason,
            retry_at,
            attempt,
        } => {
            return keep(
                snap,
                TaskState::Waiting {
                    stage,
                    reason: reason.clone(),
                    retry_at: *retry_at,
                    attempt: *attempt,
                },
                vec![],
            );
        }
        RunOutcome::Looping { detail, earlier } => {
            return looping(snap, stage, detail, *earlier, policy);
        }
        RunOutcome::NoProgress { detail, earlier } if stage == Stage::Implement => {
            return no_progress(snap, detail, *earlier, policy);
        }
        // Only implementers are held to progress: anywhere else it is a plain end.
        RunOutcome::NoProgress { .. } => &None,
        // Commits after the review are reviewed before anything is published.
        RunOutcome::Unreviewed { .. }
            if stage == Stage::Pr
                && !snap.has_pull_request
                && snap.pipeline.has_stage(Stage::Review) =>
        {
            return start(snap, Stage::Review, policy);
        }
        // A pull request already open is followed up (checks, conflicts, comments), and its
        // human review is on the forge: the run ends as it signalled.
        RunOutcome::Unreviewed { signal, .. } => signal,
        RunOutcome::Ended { signal } => signal,
    };
    if let Some(Signal::Question { text }) = signal {
        return keep(
            snap,
            TaskState::NeedsInput {
                stage,
                question: text.clone(),
            },
            vec![],
        );
    }
    route(snap, stage, signal, policy)
}

/// Follows the pipeline's `on` table for how a run of `stage` ended (`signal`: the last signal
/// it sent; a question was handled before).
fn route(snap: &TaskSnapshot, stage: Stage, signal: &Option<Signal>, policy: &Policy) -> Decision {
    let missing = |detail: &str| {
        blocked(
            snap,
            stage,
            BlockReason::MissingSignal {
                detail: detail.into(),
            },
        )
    };
    match stage {
        Stage::Plan => match signal {
            Some(Signal::PlanReady) if snap.owner_technical && snap.pipeline.gated(stage) => {
                keep(snap, TaskState::PlanGate, vec![])
            }
            Some(Signal::PlanReady) => go(snap, stage, StageSignal::PlanReady, policy),
            _ => missing("the planner ended without `atelier signal plan-ready`"),
        },
        // An implementer's `pr-done` publishes what it committed (a pipeline without review,
        // as yolo); a turn that ends without it goes where `done` leads, or — when the stage
        // routes only `pr-done` — continues the session with a nudge.
        Stage::Implement => match (signal, snap.pipeline.next(stage, StageSignal::PrDone)) {
            (Some(Signal::PrDone { no_changes }), Some(Next::Stage(Stage::Pr))) => {
                publish(snap, *no_changes)
            }
            (Some(Signal::PrDone { .. }), Some(_)) => go(snap, stage, StageSignal::PrDone, policy),
            _ if snap.pipeline.next(stage, StageSignal::Done).is_some() => {
                go(snap, stage, StageSignal::Done, policy)
            }
            _ => nudge(snap, stage, PR_DONE_NUDGE, policy),
        },
        Stage::Review | Stage::SecondReview => review_finished(snap, stage, signal, policy),
        Stage::Qa => match signal {
            Some(Signal::Qa {
                result: QaResult::Pass,
                ..
            }) => go(snap, stage, StageSignal::Pass, policy),
            Some(Signal::Qa {
                result: QaResult::Fail,
                ..
            }) => qa_failed(snap, policy),
            _ => missing("the QA agent ended without `atelier signal qa pass` or `qa fail`"),
        },
        Stage::Refine => match signal {
            Some(Signal::RefineDone) => go(snap, stage, StageSignal::RefineDone, policy),
            _ => missing("the refine stage ended without `atelier signal refine-done`"),
        },
        Stage::Pr => match signal {
            Some(Signal::PrDone { no_changes }) => publish(snap, *no_changes),
            _ => missing("the pr stage ended without `atelier signal pr-done`"),
        },
    }
}

/// Starts the stage `signal` of `from` leads to, or publishes when it leads to `done`.
fn go(snap: &TaskSnapshot, from: Stage, signal: StageSignal, policy: &Policy) -> Decision {
    match snap.pipeline.next(from, signal) {
        Some(Next::Stage(stage)) => start(snap, stage, policy),
        Some(Next::Done) => publish(snap, false),
        None => blocked(
            snap,
            from,
            BlockReason::MissingSignal {
                detail: format!(
                    "the `{}` pipeline does not say where `{signal}` of its {from} stage leads",
                    snap.pipeline
                ),
            },
        ),
    }
}

/// A reviewer's run ended. With two reviewers the second reviews the same work whatever the
/// first said; the work passes only when both said `ready`, and either's `needs-work` (or a
/// review without a verdict) returns it with both findings written into the doc.
fn review_finished(
    snap: &TaskSnapshot,
    stage: Stage,
    signal: &Option<Signal>,
    policy: &Policy,
) -> Decision {
    let verdict = match signal {
        Some(Signal::Verdict {
            verdict: Verdict::Blocked,
            reason,
        }) => {
            return blocked(
                snap,
                stage,
                BlockReason::Agent {
                    detail: reason.clone().unwrap_or_default(),
                },
            );
        }
        Some(Signal::Verdict { verdict, .. }) => Some(*verdict),
        _ => None,
    };
    let two = snap.pipeline.has_second_reviewer();
    if stage == Stage::Review && two {
        return start(snap, Stage::SecondReview, policy);
    }
    let first_ready =
        stage == Stage::Review || snap.history.first_review_verdict == Some(Verdict::Ready);
    if verdict == Some(Verdict::Ready) && first_ready {
        return go(snap, Stage::Review, StageSignal::Ready, policy);
    }
    let rounds = snap.review_rounds + 1;
    let counted = TaskSnapshot {
        review_rounds: rounds,
        ..snap.clone()
    };
    let cap = snap
        .pipeline
        .rounds_cap(Stage::Review)
        .map_or(policy.max_review_rounds, |cap| {
            cap.min(policy.max_review_rounds)
        });
    let target = match snap.pipeline.next(Stage::Review, StageSignal::NeedsWork) {
        Some(Next::Stage(target)) => target,
        _ => Stage::Implement,
    };
    let mut decision = if rounds >= cap {
        blocked(
            &counted,
            target,
            BlockReason::MaxIterations {
                detail: format!("review did not pass after {rounds} rounds (cap {cap})"),
            },
        )
    } else {
        go(&counted, Stage::Review, StageSignal::NeedsWork, policy)
    };
    if two {
        decision.effects.insert(
            0,
            Effect::RecordFindings {
                stage: Stage::Review,
            },
        );
    }
    decision
}

/// QA failed: its findings go into the doc and the work goes back where `fail` leads, until the
/// QA stage's cap on rounds (`max_rounds`) blocks the task.
fn qa_failed(snap: &TaskSnapshot, policy: &Policy) -> Decision {
    let rounds = snap.qa_rounds + 1;
    let counted = TaskSnapshot {
        qa_rounds: rounds,
        ..snap.clone()
    };
    let target = match snap.pipeline.next(Stage::Qa, StageSignal::Fail) {
        Some(Next::Stage(target)) => target,
        _ => Stage::Implement,
    };
    let mut decision = match snap.pipeline.rounds_cap(Stage::Qa) {
        Some(cap) if rounds >= cap => blocked(
            &counted,
            target,
            BlockReason::MaxIterations {
                detail: format!("QA did not pass after {rounds} rounds (cap {cap})"),
            },
        ),
        _ => go(&counted, Stage::Qa, StageSignal::Fail, policy),
    };
    decision
        .effects
        .insert(0, Effect::RecordFindings { stage: Stage::Qa });
    decision
}

/// `pr-done`: publish the branch as a pull request (or verify the open one again), or, with
/// `--no-changes` and no pull request open, end the task with nothing to publish.
fn publish(snap: &TaskSnapshot, no_changes: bool) -> Decision {
    // With a pull request open, nothing new to push means it is verified and followed again.
    if no_changes && !snap.has_pull_request {
        return keep(
            snap,
            TaskState::Done {
                reason: DoneReason::NoChanges,
            },
            vec![Effect::RemoveWorkspace],
        );
    }
    keep(
        snap,
        TaskState::AwaitingChecks,
        vec![Effect::OpenPullRequest],
    )
}

#[cfg(test)]
mod tests;
