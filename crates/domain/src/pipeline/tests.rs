//! Table-driven tests of every pipeline transition, then sequences that feed each decision back
//! as the next snapshot the way the engine does.
//!
//! Every case compares the whole `Result<Decision, Rejection>` (state, both counters, the effects
//! in order, and the rejection message), so a rule that changes anything shows up here.

use super::*;
use Stage::Pr;

/// The built-in pipeline `name`.
fn builtin(name: &str) -> Pipeline {
    Pipeline::builtin(name).expect("a built-in")
}

const RUN: RunId = RunId(7);
const OTHER_RUN: RunId = RunId(6);

/// A task the rules see for the first time: no counters, no run yet.
fn new_task() -> TaskSnapshot {
    TaskSnapshot {
        // The engine stores a new task as about to run its planner; `Created` ignores the state.
        state: TaskState::Running { stage: Stage::Plan },
        review_rounds: 0,
        qa_rounds: 0,
        runs_started: 0,
        owner_technical: true,
        live_run: None,
        pr_rounds: PrRounds::default(),
        has_pull_request: false,
        history: StageHistory::default(),
        pipeline: Pipeline::standard(),
    }
}

/// `snap` after an implement run completed and the latest review said `verdict` (if any).
fn after(snap: TaskSnapshot, last_verdict: Option<Verdict>) -> TaskSnapshot {
    TaskSnapshot {
        history: StageHistory {
            implemented: true,
            last_verdict,
            first_review_verdict: last_verdict,
        },
        ..snap
    }
}

/// A task in `state` with no live run.
fn at(state: TaskState) -> TaskSnapshot {
    TaskSnapshot {
        state,
        runs_started: 1,
        ..new_task()
    }
}

/// A task whose run `RUN` of `stage` is live.
fn running(stage: Stage) -> TaskSnapshot {
    TaskSnapshot {
        state: TaskState::Running { stage },
        live_run: Some(RUN),
        ..at(TaskState::PlanGate)
    }
}

fn with_counters(snap: TaskSnapshot, review_rounds: u32, runs_started: u32) -> TaskSnapshot {
    TaskSnapshot {
        review_rounds,
        runs_started,
        ..snap
    }
}

fn non_technical(snap: TaskSnapshot) -> TaskSnapshot {
    TaskSnapshot {
        owner_technical: false,
        ..snap
    }
}

fn ended(signal: Option<Signal>) -> Event {
    Event::RunFinished {
        run: RUN,
        outcome: RunOutcome::Ended { signal },
    }
}

fn finished(outcome: RunOutcome) -> Event {
    Event::RunFinished { run: RUN, outcome }
}

fn verdict(verdict: Verdict, reason: Option<&str>) -> Option<Signal> {
    Some(Signal::Verdict {
        verdict,
        reason: reason.map(str::to_string),
    })
}

fn decision(
    state: TaskState,
    review_rounds: u32,
    runs_started: u32,
    effects: Vec<Effect>,
) -> Result<Decision, Rejection> {
    Ok(Decision {
        state,
        review_rounds,
        qa_rounds: 0,
        runs_started,
        pr_rounds: PrRounds::default(),
        effects,
    })
}

/// The decision that changes nothing (an event that is ignored, not refused).
fn unchanged(snap: &TaskSnapshot) -> Result<Decision, Rejection> {
    Ok(Decision {
        state: snap.state.clone(),
        review_rounds: snap.review_rounds,
        qa_rounds: 0,
        runs_started: snap.runs_started,
        pr_rounds: snap.pr_rounds,
        effects: vec![],
    })
}

/// The decision that queues a run of `stage` and nothing else.
fn starts(stage: Stage, review_rounds: u32, runs_started: u32) -> Result<Decision, Rejection> {
    decision(
        TaskState::Running { stage },
        review_rounds,
        runs_started,
        vec![Effect::StartRun { stage }],
    )
}

/// The decision that blocks the task at `stage` without any effect.
fn blocks(
    stage: Stage,
    reason: BlockReason,
    review_rounds: u32,
    runs_started: u32,
) -> Result<Decision, Rejection> {
    decision(
        blocked_at(stage, reason),
        review_rounds,
        runs_started,
        vec![],
    )
}

fn max_iterations(detail: &str) -> BlockReason {
    BlockReason::MaxIterations {
        detail: detail.into(),
    }
}

fn missing_signal(detail: &str) -> BlockReason {
    BlockReason::MissingSignal {
        detail: detail.into(),
    }
}

fn forge_error(detail: &str) -> BlockReason {
    BlockReason::Forge {
        detail: detail.into(),
    }
}

fn run_failed(detail: &str) -> BlockReason {
    BlockReason::RunFailed {
        detail: detail.into(),
    }
}

fn agent_blocked(detail: &str) -> BlockReason {
    BlockReason::Agent {
        detail: detail.into(),
    }
}

fn blocked_at(stage: Stage, reason: BlockReason) -> TaskState {
    TaskState::Blocked { stage, reason }
}

fn conflict(run: RunId) -> Result<Decision, Rejection> {
    Err(Rejection::Conflict(format!(
        "an agent is already running for this task (run {run}); stop it first or wait for it to \
         finish"
    )))
}

fn invalid(msg: &str) -> Result<Decision, Rejection> {
    Err(Rejection::InvalidState(msg.to_string()))
}

const PLANNER_MISSING_SIGNAL: &str = "the planner ended without `atelier signal plan-ready`";
const PR_MISSING_SIGNAL: &str = "the pr stage ended without `atelier signal pr-done`";

struct Case {
    name: &'static str,
    snap: TaskSnapshot,
    event: Event,
    want: Result<Decision, Rejection>,
}

fn case(
    name: &'static str,
    snap: TaskSnapshot,
    event: Event,
    want: Result<Decision, Rejection>,
) -> Case {
    Case {
        name,
        snap,
        event,
        want,
    }
}

const ROUND_CAP: &str = "review did not pass after 3 rounds (cap 3)";
const RUN_CAP: &str = "reached the cap of 25 runs per task";

fn cases() -> Vec<Case> {
    use Stage::*;
    let awaiting_merge = at(TaskState::AwaitingMerge { merge_error: None });
    let merge_failed_before = at(TaskState::AwaitingMerge {
        merge_error: Some("`main` moved and the branch conflicts".into()),
    });
    let merging = at(TaskState::Merging);
    let done = at(TaskState::Done {
        reason: DoneReason::Merged,
    });
    let needs_input = TaskSnapshot {
        state: TaskState::NeedsInput {
            stage: Plan,
            question: "Postgres or SQLite?".into(),
        },
        ..running(Plan)
    };
    let stopping = TaskSnapshot {
        state: TaskState::Stopped { stage: Implement },
        ..running(Implement)
    };
    let stopped = at(TaskState::Stopped { stage: Review });
    let blocked_by_cap = with_counters(at(blocked_at(Implement, max_iterations(ROUND_CAP))), 3, 9);

    vec![
        // --- creation and the plan stage -----------------------------------------------------
        case(
            "created starts the planner",
            new_task(),
            Event::Created,
            starts(Plan, 0, 1),
        ),
        case(
            "plan ready stops at the gate for a technical owner",
            running(Plan),
            ended(Some(Signal::PlanReady)),
            decision(TaskState::PlanGate, 0, 1, vec![]),
        ),
        case(
            "plan ready passes the gate for a non-technical owner",
            non_technical(running(Plan)),
            ended(Some(Signal::PlanReady)),
            starts(Implement, 0, 2),
        ),
        case(
            "planner ending without a signal blocks with missing_signal",
            running(Plan),
            ended(None),
            blocks(Plan, missing_signal(PLANNER_MISSING_SIGNAL), 0, 1),
        ),
        case(
            "planner ending with another stage's signal blocks with missing_signal",
            running(Plan),
            ended(verdict(Verdict::Ready, None)),
            blocks(Plan, missing_signal(PLANNER_MISSING_SIGNAL), 0, 1),
        ),
        // --- the plan gate ---------------------------------------------------------------------
        case(
            "approving the plan starts the implementer",
            at(TaskState::PlanGate),
            Event::PlanApproved,
            starts(Implement, 0, 2),
        ),
        case(
            "approving while the planner runs is refused",
            running(Plan),
            Event::PlanApproved,
            invalid("the task is not waiting for plan approval (it is running plan)"),
        ),
        case(
            "approving an open pull request is refused",
            awaiting_merge.clone(),
            Event::PlanApproved,
            invalid("the task is not waiting for plan approval (it is awaiting merge)"),
        ),
        case(
            "requesting plan changes sends the planner back with the feedback",
            at(TaskState::PlanGate),
            Event::PlanChangesRequested {
                feedback: "split the migration out".into(),
            },
            decision(
                TaskState::Running { stage: Plan },
                0,
                2,
                vec![Effect::RevisePlan {
                    feedback: "split the migration out".into(),
                }],
            ),
        ),
        case(
            "requesting plan changes with empty feedback is refused",
            at(TaskState::PlanGate),
            Event::PlanChangesRequested {
                feedback: " \n ".into(),
            },
            invalid("the requested changes are empty: say what the plan should change"),
        ),
        case(
            "requesting plan changes while the planner runs is refused",
            running(Plan),
            Event::PlanChangesRequested {
                feedback: "more tests".into(),
            },
            invalid("the task is not waiting for plan approval (it is running plan)"),
        ),
        case(
            "requesting plan changes past the total-run cap blocks at plan",
            with_counters(at(TaskState::PlanGate), 0, 25),
            Event::PlanChangesRequested {
                feedback: "more tests".into(),
            },
            blocks(Plan, max_iterations(RUN_CAP), 0, 25),
        ),
        // --- guard: no progress ---------------------------------------------------------------
        case(
            "an implement run without progress nudges the implementer instead of starting review",
            with_counters(running(Implement), 0, 2),
            finished(RunOutcome::NoProgress {
                detail: "nothing changed".into(),
                earlier: 0,
            }),
            decision(
                TaskState::Running { stage: Implement },
                0,
                3,
                vec![Effect::Nudge {
                    stage: Implement,
                    input: NO_PROGRESS_NUDGE.into(),
                }],
            ),
        ),
        case(
            "a second implement run in a row without progress blocks the task",
            with_counters(running(Implement), 0, 3),
            finished(RunOutcome::NoProgress {
                detail: "nothing changed".into(),
                earlier: 1,
            }),
            blocks(
                Implement,
                BlockReason::NoProgress {
                    detail: "nothing changed; the implementer had been nudged after a run \
                             without progress, and made none again"
                        .into(),
                },
                0,
                3,
            ),
        ),
        case(
            "a nudge past the total-run cap blocks at the cap",
            with_counters(running(Implement), 0, 25),
            finished(RunOutcome::NoProgress {
                detail: "nothing changed".into(),
                earlier: 0,
            }),
            blocks(Implement, max_iterations(RUN_CAP), 0, 25),
        ),
        case(
            "no progress outside implement is a plain end (a review without a verdict)",
            with_counters(running(Review), 0, 3),
            finished(RunOutcome::NoProgress {
                detail: "nothing changed".into(),
                earlier: 3,
            }),
            starts(Implement, 1, 4),
        ),
        case(
            "a stale no-progress report is ignored",
            running(Implement),
            Event::RunFinished {
                run: OTHER_RUN,
                outcome: RunOutcome::NoProgress {
                    detail: "nothing changed".into(),
                    earlier: 0,
                },
            },
            unchanged(&running(Implement)),
        ),
        // --- guard: repetition ----------------------------------------------------------------
        case(
            "a run interrupted for looping continues its session with a nudge",
            with_counters(running(Review), 1, 4),
            finished(RunOutcome::Looping {
                detail: "`shell` 5 times".into(),
                earlier: 0,
            }),
            decision(
                TaskState::Running { stage: Review },
                1,
                5,
                vec![Effect::Nudge {
                    stage: Review,
                    input: LOOPING_NUDGE.into(),
                }],
            ),
        ),
        case(
            "looping twice in a row blocks the task",
            with_counters(running(Implement), 0, 5),
            finished(RunOutcome::Looping {
                detail: "`shell` 5 times".into(),
                earlier: 1,
            }),
            blocks(
                Implement,
                BlockReason::Looping {
                    detail: "`shell` 5 times; the agent had been interrupted and nudged for \
                             looping before"
                        .into(),
                },
                0,
                5,
            ),
        ),
        case(
            "a looping nudge past the total-run cap blocks at the cap",
            with_counters(running(Plan), 0, 25),
            finished(RunOutcome::Looping {
                detail: "`shell` 5 times".into(),
                earlier: 0,
            }),
            blocks(Plan, max_iterations(RUN_CAP), 0, 25),
        ),
        // --- guard: reviewed commit -----------------------------------------------------------
        case(
            "a pr run that committed after the review sends the task back to review",
            with_counters(running(Pr), 0, 4),
            finished(RunOutcome::Unreviewed {
                signal: None,
                detail: "head b is not the reviewed a".into(),
            }),
            starts(Review, 0, 5),
        ),
        case(
            "back to review even when the pr run signalled pr-done",
            with_counters(running(Pr), 1, 4),
            finished(RunOutcome::Unreviewed {
                signal: Some(Signal::PrDone { no_changes: false }),
                detail: "head b is not the reviewed a".into(),
            }),
            starts(Review, 1, 5),
        ),
        case(
            "back to review past the total-run cap blocks at review",
            with_counters(running(Pr), 0, 25),
            finished(RunOutcome::Unreviewed {
                signal: None,
                detail: "head b is not the reviewed a".into(),
            }),
            blocks(Review, max_iterations(RUN_CAP), 0, 25),
        ),
        case(
            "with a pull request open, a follow-up's commits are published as it signalled",
            TaskSnapshot {
                live_run: Some(RUN),
                ..with_pr(TaskState::Running { stage: Pr }, rounds(1, 0))
            },
            finished(RunOutcome::Unreviewed {
                signal: Some(Signal::PrDone { no_changes: false }),
                detail: "head b is not the reviewed a".into(),
            }),
            Ok(Decision {
                state: TaskState::AwaitingChecks,
                review_rounds: 1,
                qa_rounds: 0,
                runs_started: 6,
                pr_rounds: rounds(1, 0),
                effects: vec![Effect::OpenPullRequest],
            }),
        ),
        // --- implement ⇄ review ----------------------------------------------------------------
        case(
            "implementer ending its turn starts the reviewer",
            running(Implement),
            ended(None),
            starts(Review, 0, 2),
        ),
        case(
            "review ready starts the pr stage",
            with_counters(running(Review), 1, 5),
            ended(verdict(Verdict::Ready, None)),
            starts(Pr, 1, 6),
        ),
        case(
            "needs-work goes back to implement and counts a review round",
            with_counters(running(Review), 0, 3),
            ended(verdict(Verdict::NeedsWork, None)),
            starts(Implement, 1, 4),
        ),
        case(
            "a review with no verdict counts as needs-work",
            with_counters(running(Review), 1, 5),
            ended(None),
            starts(Implement, 2, 6),
        ),
        case(
            "a blocked verdict blocks the task with the reviewer's reason",
            with_counters(running(Review), 1, 5),
            ended(verdict(Verdict::Blocked, Some("needs a staging API key"))),
            blocks(Review, agent_blocked("needs a staging API key"), 1, 5),
        ),
        case(
            "the third review without ready hits the review-round cap, blocked at implement",
            with_counters(running(Review), 2, 7),
            ended(verdict(Verdict::NeedsWork, None)),
            blocks(Implement, max_iterations(ROUND_CAP), 3, 7),
        ),
        case(
            "a review with no verdict also counts towards the review-round cap",
            with_counters(running(Review), 2, 7),
            ended(None),
            blocks(Implement, max_iterations(ROUND_CAP), 3, 7),
        ),
        // --- the total-run cap -----------------------------------------------------------------
        case(
            "the 25th run may still start",
            with_counters(running(Implement), 0, 24),
            ended(None),
            starts(Review, 0, 25),
        ),
        case(
            "a 26th run is refused by the total-run cap, blocked where it would have run",
            with_counters(running(Implement), 0, 25),
            ended(None),
            blocks(Review, max_iterations(RUN_CAP), 0, 25),
        ),
        case(
            "approving the plan past the total-run cap blocks at implement",
            with_counters(at(TaskState::PlanGate), 0, 25),
            Event::PlanApproved,
            blocks(Implement, max_iterations(RUN_CAP), 0, 25),
        ),
        // --- stop --------------------------------------------------------------------------------
        case(
            "a user stop stops the live run",
            with_counters(running(Implement), 1, 4),
            Event::StopRequested,
            decision(
                TaskState::Stopped { stage: Implement },
                1,
                4,
                vec![Effect::StopRun { run: RUN }],
            ),
        ),
        case(
            "a user stop while waiting for an answer stops that run",
            needs_input.clone(),
            Event::StopRequested,
            decision(
                TaskState::Stopped { stage: Plan },
                0,
                1,
                vec![Effect::StopRun { run: RUN }],
            ),
        ),
        case(
            "stopping a task with no live agent is refused",
            at(TaskState::PlanGate),
            Event::StopRequested,
            invalid("no agent is running for this task (it is plan ready: waiting for approval)"),
        ),
        case(
            "the stopped run finishing as stopped does not chain",
            stopping.clone(),
            finished(RunOutcome::Stopped),
            unchanged(&stopping),
        ),
        case(
            "the stopped run finishing with a signal does not chain either",
            stopping.clone(),
            ended(verdict(Verdict::Ready, None)),
            unchanged(&stopping),
        ),
        // --- stale runs ------------------------------------------------------------------------
        case(
            "a stale run finishing is ignored",
            TaskSnapshot {
                live_run: Some(RUN),
                ..running(Review)
            },
            Event::RunFinished {
                run: OTHER_RUN,
                outcome: RunOutcome::Ended {
                    signal: verdict(Verdict::Ready, None),
                },
            },
            unchanged(&running(Review)),
        ),
        case(
            "a run finishing when none is live is ignored",
            TaskSnapshot {
                live_run: None,
                ..running(Review)
            },
            finished(RunOutcome::Failed {
                reason: "exit 1".into(),
            }),
            unchanged(&TaskSnapshot {
                live_run: None,
                ..running(Review)
            }),
        ),
        case(
            "a run finishing after the task is done is ignored",
            TaskSnapshot {
                live_run: Some(RUN),
                ..done.clone()
            },
            finished(RunOutcome::Interrupted),
            unchanged(&done),
        ),
        // --- questions -------------------------------------------------------------------------
        case(
            "a question pauses the task for input",
            running(Plan),
            ended(Some(Signal::Question {
                text: "Postgres or SQLite?".into(),
            })),
            decision(
                TaskState::NeedsInput {
                    stage: Plan,
                    question: "Postgres or SQLite?".into(),
                },
                0,
                1,
                vec![],
            ),
        ),
        case(
            "an answer resumes the same run without counting a new one",
            needs_input.clone(),
            Event::Answered {
                text: "SQLite".into(),
            },
            decision(
                TaskState::Running { stage: Plan },
                0,
                1,
                vec![Effect::ResumeRun {
                    run: RUN,
                    input: "SQLite".into(),
                }],
            ),
        ),
        case(
            "an answer without an open question is refused",
            running(Plan),
            Event::Answered {
                text: "SQLite".into(),
            },
            invalid("the task has no open question (it is running plan)"),
        ),
        // --- the pr stage and merging ----------------------------------------------------------
        case(
            "pr done opens the pull request and awaits its checks",
            with_counters(running(Pr), 1, 6),
            ended(Some(Signal::PrDone { no_changes: false })),
            decision(
                TaskState::AwaitingChecks,
                1,
                6,
                vec![Effect::OpenPullRequest],
            ),
        ),
        case(
            "pr done with no changes finishes the task and removes the workspace",
            with_counters(running(Pr), 0, 4),
            ended(Some(Signal::PrDone { no_changes: true })),
            decision(
                TaskState::Done {
                    reason: DoneReason::NoChanges,
                },
                0,
                4,
                vec![Effect::RemoveWorkspace],
            ),
        ),
        case(
            "pr stage ending without a signal blocks with missing_signal",
            with_counters(running(Pr), 0, 4),
            ended(None),
            blocks(Pr, missing_signal(PR_MISSING_SIGNAL), 0, 4),
        ),
        case(
            "merged finishes the task and removes the workspace",
            with_counters(awaiting_merge.clone(), 1, 6),
            Event::Merged,
            decision(
                TaskState::Done {
                    reason: DoneReason::Merged,
                },
                1,
                6,
                vec![Effect::RemoveWorkspace],
            ),
        ),
        case(
            "merged without an open pull request is refused",
            running(Review),
            Event::Merged,
            invalid("the task has no open pull request to merge (it is running review)"),
        ),
        case(
            "a failing pull request blocks the task with forge_error",
            with_counters(awaiting_merge.clone(), 1, 6),
            Event::PullRequestFailed {
                reason: "push rejected: remote unreachable".into(),
            },
            blocks(Pr, forge_error("push rejected: remote unreachable"), 1, 6),
        ),
        case(
            "a pull request failure reported outside awaiting merge is ignored",
            running(Pr),
            Event::PullRequestFailed {
                reason: "late report".into(),
            },
            unchanged(&running(Pr)),
        ),
        // --- merging through Atelier, and deleting ------------------------------------------------
        case(
            "a merge request moves the task to merging and merges on the forge",
            with_counters(awaiting_merge.clone(), 1, 6),
            Event::MergeRequested,
            decision(TaskState::Merging, 1, 6, vec![Effect::MergePullRequest]),
        ),
        case(
            "a merge request after a failed merge tries again",
            merge_failed_before.clone(),
            Event::MergeRequested,
            decision(TaskState::Merging, 0, 1, vec![Effect::MergePullRequest]),
        ),
        case(
            "a merge request while merging is a conflict",
            merging.clone(),
            Event::MergeRequested,
            Err(Rejection::Conflict(
                "the task is already being merged: wait for that merge to finish (`atelier task \
                 show`)"
                    .into(),
            )),
        ),
        case(
            "a merge request on a merged task is refused as already merged",
            done.clone(),
            Event::MergeRequested,
            invalid("the task is already merged"),
        ),
        case(
            "a merge request on a task finished without changes is refused",
            at(TaskState::Done {
                reason: DoneReason::NoChanges,
            }),
            Event::MergeRequested,
            invalid(
                "the task has no open pull request to merge (it is done (no changes to submit))",
            ),
        ),
        case(
            "a merge request before the pr stage is refused",
            running(Implement),
            Event::MergeRequested,
            invalid("the task has no open pull request to merge (it is running implement)"),
        ),
        case(
            "a successful merge finishes the task and removes the workspace",
            with_counters(merging.clone(), 1, 6),
            Event::MergeSucceeded,
            decision(
                TaskState::Done {
                    reason: DoneReason::Merged,
                },
                1,
                6,
                vec![Effect::RemoveWorkspace],
            ),
        ),
        case(
            "a merge success reported after the watcher saw the merge is ignored",
            done.clone(),
            Event::MergeSucceeded,
            unchanged(&done),
        ),
        case(
            "a failed merge awaits the merge again with the reason",
            with_counters(merging.clone(), 1, 6),
            Event::MergeFailed {
                reason: "`main` moved and the branch conflicts".into(),
            },
            decision(
                TaskState::AwaitingMerge {
                    merge_error: Some("`main` moved and the branch conflicts".into()),
                },
                1,
                6,
                vec![],
            ),
        ),
        case(
            "a merge failure reported outside merging is ignored",
            done.clone(),
            Event::MergeFailed {
                reason: "late".into(),
            },
            unchanged(&done),
        ),
        case(
            "a merge seen by the watcher while merging finishes the task",
            merging.clone(),
            Event::Merged,
            decision(
                TaskState::Done {
                    reason: DoneReason::Merged,
                },
                0,
                1,
                vec![Effect::RemoveWorkspace],
            ),
        ),
        case(
            "a merge seen by the watcher after a failed merge finishes the task",
            merge_failed_before.clone(),
            Event::Merged,
            decision(
                TaskState::Done {
                    reason: DoneReason::Merged,
                },
                0,
                1,
                vec![Effect::RemoveWorkspace],
            ),
        ),
        case(
            "a run requested while merging is a conflict",
            merging.clone(),
            Event::RunRequested { stage: Some(Pr) },
            Err(Rejection::Conflict(
                "the task is already being merged: wait for that merge to finish (`atelier task \
                 show`)"
                    .into(),
            )),
        ),
        case(
            "a run requested after a failed merge re-runs the pr stage",
            merge_failed_before.clone(),
            Event::RunRequested { stage: None },
            starts(Pr, 0, 2),
        ),
        case(
            "a pull request failure after a failed merge blocks the task",
            merge_failed_before.clone(),
            Event::PullRequestFailed {
                reason: "push rejected".into(),
            },
            blocks(Pr, forge_error("push rejected"), 0, 1),
        ),
        case(
            "a pull request failure reported while merging is ignored",
            merging.clone(),
            Event::PullRequestFailed {
                reason: "late report".into(),
            },
            unchanged(&merging),
        ),
        case(
            "stopping a task that is being merged is refused",
            merging.clone(),
            Event::StopRequested,
            invalid("no agent is running for this task (it is being merged)"),
        ),
        case(
            "resuming a task that is being merged is refused",
            merging.clone(),
            Event::ResumeRequested,
            invalid("only a blocked or stopped task can be resumed (it is being merged)"),
        ),
        case(
            "deleting a task that is being merged is a conflict",
            merging.clone(),
            Event::DeleteRequested,
            Err(Rejection::Conflict(
                "the task is being merged: wait for the merge to finish, then delete it".into(),
            )),
        ),
        case(
            "deleting a task with a live agent is a conflict",
            running(Review),
            Event::DeleteRequested,
            conflict(RUN),
        ),
        case(
            "deleting a task awaiting merge is allowed and changes nothing",
            awaiting_merge.clone(),
            Event::DeleteRequested,
            unchanged(&awaiting_merge),
        ),
        case(
            "deleting a merged task is allowed and changes nothing",
            done.clone(),
            Event::DeleteRequested,
            unchanged(&done),
        ),
        // --- failures and crashes --------------------------------------------------------------
        case(
            "an interrupted run restarts the same stage without counting a run",
            with_counters(running(Review), 1, 5),
            finished(RunOutcome::Interrupted),
            decision(
                TaskState::Running { stage: Review },
                1,
                5,
                vec![Effect::RestartRun {
                    stage: Review,
                    cause: RestartCause::ServerRestarted,
                }],
            ),
        ),
        case(
            "a failed run blocks the task with run_failed",
            with_counters(running(Implement), 1, 4),
            finished(RunOutcome::Failed {
                reason: "stalled for 600 s".into(),
            }),
            blocks(Implement, run_failed("stalled for 600 s"), 1, 4),
        ),
        case(
            "a run that stopped on its own stops the task without chaining",
            with_counters(running(Implement), 1, 4),
            finished(RunOutcome::Stopped),
            decision(TaskState::Stopped { stage: Implement }, 1, 4, vec![]),
        ),
        // --- resume ----------------------------------------------------------------------------
        case(
            "resuming a blocked task grants fresh counters and restarts the saved stage",
            blocked_by_cap.clone(),
            Event::ResumeRequested,
            starts(Implement, 0, 1),
        ),
        case(
            "resuming a task blocked by the total-run cap starts again",
            with_counters(at(blocked_at(Review, max_iterations(RUN_CAP))), 2, 25),
            Event::ResumeRequested,
            starts(Review, 0, 1),
        ),
        case(
            "resuming a stopped task grants fresh counters and restarts the saved stage",
            with_counters(stopped.clone(), 2, 11),
            Event::ResumeRequested,
            starts(Review, 0, 1),
        ),
        case(
            "resuming while an agent runs is a conflict",
            running(Implement),
            Event::ResumeRequested,
            conflict(RUN),
        ),
        case(
            "resuming while an agent waits for an answer is a conflict",
            needs_input.clone(),
            Event::ResumeRequested,
            conflict(RUN),
        ),
        case(
            "resuming a finished task is refused",
            done.clone(),
            Event::ResumeRequested,
            invalid("only a blocked or stopped task can be resumed (it is done (merged))"),
        ),
        case(
            "resuming at the plan gate is refused",
            at(TaskState::PlanGate),
            Event::ResumeRequested,
            invalid(
                "only a blocked or stopped task can be resumed (it is plan ready: waiting for \
                 approval)",
            ),
        ),
        // --- task run ----------------------------------------------------------------------------
        case(
            "a run requested while an agent runs is a conflict",
            running(Review),
            Event::RunRequested {
                stage: Some(Implement),
            },
            conflict(RUN),
        ),
        case(
            "a run requested while a stopped run is still being torn down is a conflict",
            stopping.clone(),
            Event::RunRequested { stage: None },
            conflict(RUN),
        ),
        case(
            "a run requested while waiting for an answer is a conflict",
            needs_input.clone(),
            Event::RunRequested { stage: None },
            conflict(RUN),
        ),
        case(
            "a run requested on a done task is refused",
            done.clone(),
            Event::RunRequested { stage: Some(Pr) },
            invalid("the task is done"),
        ),
        case(
            "a run requested on a stopped task continues at its stage, keeping the counters",
            with_counters(stopped.clone(), 1, 5),
            Event::RunRequested { stage: None },
            starts(Review, 1, 6),
        ),
        case(
            "a run requested on a blocked task continues at its stage",
            with_counters(at(blocked_at(Pr, forge_error("push rejected"))), 0, 5),
            Event::RunRequested { stage: None },
            starts(Pr, 0, 6),
        ),
        case(
            "a run requested at the plan gate re-runs the planner",
            at(TaskState::PlanGate),
            Event::RunRequested { stage: None },
            starts(Plan, 0, 2),
        ),
        case(
            "a run requested while awaiting merge re-runs the pr stage",
            awaiting_merge.clone(),
            Event::RunRequested { stage: None },
            starts(Pr, 0, 2),
        ),
        case(
            "a run requested with an explicit stage runs that stage",
            after(at(TaskState::PlanGate), None),
            Event::RunRequested {
                stage: Some(Review),
            },
            starts(Review, 0, 2),
        ),
        // --- guard: stages in order ----------------------------------------------------------
        case(
            "review requested before any implement run completed is refused",
            at(TaskState::PlanGate),
            Event::RunRequested {
                stage: Some(Review),
            },
            invalid(
                "review cannot start yet: no implement run has completed, so there is nothing \
                 to review; run the implement stage first",
            ),
        ),
        case(
            "review requested from a block at implement before any implement run completed is \
             refused",
            at(blocked_at(Implement, agent_blocked("why"))),
            Event::RunRequested {
                stage: Some(Review),
            },
            invalid(
                "review cannot start yet: no implement run has completed, so there is nothing \
                 to review; run the implement stage first",
            ),
        ),
        case(
            "pr requested before any verdict is refused",
            after(at(TaskState::Stopped { stage: Review }), None),
            Event::RunRequested { stage: Some(Pr) },
            invalid(
                "the pr stage cannot start yet: no review has given a verdict yet; a pull \
                 request is opened only after a reviewer says `ready` (run the review stage)",
            ),
        ),
        case(
            "pr requested after a needs-work verdict is refused",
            after(
                at(TaskState::Stopped { stage: Implement }),
                Some(Verdict::NeedsWork),
            ),
            Event::RunRequested { stage: Some(Pr) },
            invalid(
                "the pr stage cannot start yet: the last review verdict is `needs-work`; a pull \
                 request is opened only after a reviewer says `ready` (run the review stage)",
            ),
        ),
        case(
            "pr requested after a ready verdict starts",
            after(
                at(TaskState::Stopped { stage: Implement }),
                Some(Verdict::Ready),
            ),
            Event::RunRequested { stage: Some(Pr) },
            starts(Pr, 0, 2),
        ),
        case(
            "where the task stands is in order: a stopped review continues without a record of \
             implementation",
            at(TaskState::Stopped { stage: Review }),
            Event::RunRequested {
                stage: Some(Review),
            },
            starts(Review, 0, 2),
        ),
        case(
            "a run requested past the total-run cap blocks instead of starting",
            with_counters(stopped, 0, 25),
            Event::RunRequested { stage: None },
            blocks(Review, max_iterations(RUN_CAP), 0, 25),
        ),
    ]
    .into_iter()
    .chain(pull_request_cases())
    .collect()
}

/// A task whose pull request is open in `state`, with `pr_rounds` follow-ups so far.
fn with_pr(state: TaskState, pr_rounds: PrRounds) -> TaskSnapshot {
    TaskSnapshot {
        pr_rounds,
        has_pull_request: true,
        ..after(with_counters(at(state), 1, 6), Some(Verdict::Ready))
    }
}

fn rounds(ci_fixes: u32, conflicts: u32) -> PrRounds {
    PrRounds {
        ci_fixes,
        conflicts,
    }
}

/// The decision that queues a pr-stage follow-up run told `brief`.
fn follows_up_with(brief: &str, pr_rounds: PrRounds) -> Result<Decision, Rejection> {
    Ok(Decision {
        state: TaskState::Running { stage: Pr },
        review_rounds: 1,
        qa_rounds: 0,
        runs_started: 7,
        pr_rounds,
        effects: vec![Effect::StartFollowUp {
            brief: brief.into(),
        }],
    })
}

fn kept(
    snap: &TaskSnapshot,
    state: TaskState,
    effects: Vec<Effect>,
) -> Result<Decision, Rejection> {
    Ok(Decision {
        state,
        effects,
        ..unchanged(snap)?
    })
}

fn checks_failed() -> Event {
    Event::ChecksFailed {
        checks: vec!["test".into(), "lint".into()],
        brief: "test failed: assertion at src/lib.rs:3".into(),
    }
}

/// The pull request's life after it is opened: checks, conflicts, comments, merge and close.
fn pull_request_cases() -> Vec<Case> {
    let checking = with_pr(TaskState::AwaitingChecks, rounds(0, 0));
    let green = with_pr(TaskState::AwaitingMerge { merge_error: None }, rounds(0, 0));
    let closed = with_pr(TaskState::Closed, rounds(1, 1));
    let follow_up_live = TaskSnapshot {
        live_run: Some(RUN),
        ..with_pr(TaskState::Running { stage: Pr }, rounds(1, 0))
    };
    let ci_blocked = with_pr(
        blocked_at(Pr, BlockReason::CiFailing { detail: "x".into() }),
        rounds(3, 0),
    );
    vec![
        case(
            "passing checks make the pull request await its merge",
            checking.clone(),
            Event::ChecksPassed,
            kept(
                &checking,
                TaskState::AwaitingMerge { merge_error: None },
                vec![],
            ),
        ),
        case(
            "passing checks change nothing once the task moved on",
            follow_up_live.clone(),
            Event::ChecksPassed,
            unchanged(&follow_up_live),
        ),
        case(
            "failing checks start a fixing run that carries the failure",
            checking.clone(),
            checks_failed(),
            follows_up_with("test failed: assertion at src/lib.rs:3", rounds(1, 0)),
        ),
        case(
            "a check failing after the pull request went green also starts a fixing run",
            green.clone(),
            checks_failed(),
            follows_up_with("test failed: assertion at src/lib.rs:3", rounds(1, 0)),
        ),
        case(
            "failing checks past the fix-round cap block the task with ci_failing and the names",
            with_pr(TaskState::AwaitingChecks, rounds(3, 0)),
            checks_failed(),
            kept(
                &with_pr(TaskState::AwaitingChecks, rounds(3, 0)),
                blocked_at(
                    Pr,
                    BlockReason::CiFailing {
                        detail: "test, lint still failing after 3 fix rounds (cap 3)".into(),
                    },
                ),
                vec![],
            ),
        ),
        case(
            "failing checks are not acted on while a run is live",
            follow_up_live.clone(),
            checks_failed(),
            unchanged(&follow_up_live),
        ),
        case(
            "a conflict with the moved base starts a rebase run",
            green.clone(),
            Event::Conflicted {
                brief: "rebase on origin/main".into(),
            },
            follows_up_with("rebase on origin/main", rounds(0, 1)),
        ),
        case(
            "conflicts past their cap block the task with conflicts",
            with_pr(TaskState::AwaitingChecks, rounds(0, 3)),
            Event::Conflicted {
                brief: "rebase".into(),
            },
            kept(
                &with_pr(TaskState::AwaitingChecks, rounds(0, 3)),
                blocked_at(
                    Pr,
                    BlockReason::Conflicts {
                        detail: "the pull request still conflicts with its base after 3 rebase \
                                 rounds (cap 3)"
                            .into(),
                    },
                ),
                vec![],
            ),
        ),
        case(
            "trusted comments start a pr run that carries them",
            checking.clone(),
            Event::CommentsReceived {
                brief: "@atelier rename foo".into(),
            },
            follows_up_with("@atelier rename foo", rounds(0, 0)),
        ),
        case(
            "comments re-run a task blocked on failing checks (a human asked)",
            ci_blocked.clone(),
            Event::CommentsReceived {
                brief: "@atelier try again".into(),
            },
            follows_up_with("@atelier try again", rounds(3, 0)),
        ),
        case(
            "comments during a live run wait for the next run",
            follow_up_live.clone(),
            Event::CommentsReceived {
                brief: "later".into(),
            },
            conflict(RUN),
        ),
        case(
            "comments before the pull request is followed are refused",
            at(TaskState::PlanGate),
            Event::CommentsReceived {
                brief: "early".into(),
            },
            invalid(
                "pull-request comments are taken up once the pull request waits for checks or a \
                 merge (it is plan ready: waiting for approval)",
            ),
        ),
        case(
            "a follow-up run's pr-done publishes again and awaits the checks",
            follow_up_live.clone(),
            ended(Some(Signal::PrDone { no_changes: false })),
            kept(
                &follow_up_live,
                TaskState::AwaitingChecks,
                vec![Effect::OpenPullRequest],
            ),
        ),
        case(
            "with a pull request open, pr-done --no-changes verifies it instead of finishing",
            follow_up_live.clone(),
            ended(Some(Signal::PrDone { no_changes: true })),
            kept(
                &follow_up_live,
                TaskState::AwaitingChecks,
                vec![Effect::OpenPullRequest],
            ),
        ),
        case(
            "merged on the forge while a follow-up runs stops it and finishes",
            follow_up_live.clone(),
            Event::Merged,
            kept(
                &follow_up_live,
                TaskState::Done {
                    reason: DoneReason::Merged,
                },
                vec![Effect::StopRun { run: RUN }, Effect::RemoveWorkspace],
            ),
        ),
        case(
            "merged while waiting for checks finishes the task",
            checking.clone(),
            Event::Merged,
            kept(
                &checking,
                TaskState::Done {
                    reason: DoneReason::Merged,
                },
                vec![Effect::RemoveWorkspace],
            ),
        ),
        case(
            "a merge seen again after done changes nothing",
            at(TaskState::Done {
                reason: DoneReason::Merged,
            }),
            Event::Merged,
            unchanged(&at(TaskState::Done {
                reason: DoneReason::Merged,
            })),
        ),
        case(
            "a pull request closed unmerged parks the task",
            green.clone(),
            Event::PrClosed,
            kept(&green, TaskState::Closed, vec![]),
        ),
        case(
            "closing it during a follow-up run stops the run",
            follow_up_live.clone(),
            Event::PrClosed,
            kept(
                &follow_up_live,
                TaskState::Closed,
                vec![Effect::StopRun { run: RUN }],
            ),
        ),
        case(
            "a reopened pull request awaits its checks again",
            closed.clone(),
            Event::PrReopened,
            kept(&closed, TaskState::AwaitingChecks, vec![]),
        ),
        case(
            "resuming a closed task runs the pr stage afresh",
            closed.clone(),
            Event::ResumeRequested,
            Ok(Decision {
                state: TaskState::Running { stage: Pr },
                review_rounds: 0,
                qa_rounds: 0,
                runs_started: 1,
                pr_rounds: PrRounds::default(),
                effects: vec![Effect::StartRun { stage: Pr }],
            }),
        ),
        case(
            "resuming a task blocked on failing checks grants fresh fix rounds",
            ci_blocked.clone(),
            Event::ResumeRequested,
            Ok(Decision {
                state: TaskState::Running { stage: Pr },
                review_rounds: 0,
                qa_rounds: 0,
                runs_started: 1,
                pr_rounds: PrRounds::default(),
                effects: vec![Effect::StartRun { stage: Pr }],
            }),
        ),
        case(
            "a publish failure while awaiting checks blocks with forge_error",
            checking.clone(),
            Event::PullRequestFailed {
                reason: "push rejected".into(),
            },
            kept(
                &checking,
                blocked_at(Pr, forge_error("push rejected")),
                vec![],
            ),
        ),
    ]
}

#[test]
fn every_transition_matches_the_table() {
    check_table(cases(), &Policy::default());
}

/// Decides every case with `policy` and reports each whose decision differs from the table's.
fn check_table(cases: Vec<Case>, policy: &Policy) {
    let mut failures = Vec::new();
    for Case {
        name,
        snap,
        event,
        want,
    } in cases
    {
        let got = decide(&snap, &event, policy);
        if got != want {
            failures.push(format!(
                "case `{name}`\n  snapshot: {snap:?}\n  event:    {event:?}\n  want:     {want:?}\n  \
                 got:      {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn case_names_are_unique() {
    let mut names: Vec<_> = cases().into_iter().map(|case| case.name).collect();
    let total = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), total, "two table cases share a name");
}

#[test]
fn default_policy_caps_three_review_rounds_and_twenty_five_runs() {
    assert_eq!(
        Policy::default(),
        Policy {
            max_review_rounds: 3,
            max_total_runs: 25,
            max_ci_fix_rounds: 3,
            max_conflict_rounds: 3,
            max_repeated_tool_calls: 5,
        }
    );
}

#[test]
fn run_outcomes_map_to_run_statuses() {
    let table = [
        (RunOutcome::Ended { signal: None }, RunStatus::Completed),
        (
            RunOutcome::Ended {
                signal: Some(Signal::PlanReady),
            },
            RunStatus::Completed,
        ),
        (
            RunOutcome::Ended {
                signal: Some(Signal::Question { text: "?".into() }),
            },
            RunStatus::NeedsInput,
        ),
        (
            RunOutcome::Failed {
                reason: "exit 1".into(),
            },
            RunStatus::Failed,
        ),
        (RunOutcome::Stopped, RunStatus::Stopped),
        (RunOutcome::Interrupted, RunStatus::Interrupted),
        (
            RunOutcome::NoProgress {
                detail: "nothing changed".into(),
                earlier: 0,
            },
            RunStatus::Completed,
        ),
        (
            RunOutcome::Looping {
                detail: "repeated".into(),
                earlier: 0,
            },
            RunStatus::Failed,
        ),
        (
            RunOutcome::Unreviewed {
                signal: None,
                detail: "committed after the review".into(),
            },
            RunStatus::Completed,
        ),
    ];
    for (outcome, status) in table {
        assert_eq!(outcome.run_status(), status, "{outcome:?}");
    }
}

// --- sequences -------------------------------------------------------------------------------

/// Plays the engine's part: applies each accepted decision to the snapshot and keeps `live_run`
/// the way the engine records runs (a finished run leaves unless it waits for an answer; a stopped
/// run stays live until its `RunFinished` arrives; `StartRun`/`RestartRun` make a new run live).
struct Sim {
    snap: TaskSnapshot,
    policy: Policy,
    next_run: i64,
    /// Every effect, in order, for whole-value comparison at the end.
    effects: Vec<Effect>,
}

impl Sim {
    /// A task of `pipeline` owned by a technical user.
    fn of(pipeline: Pipeline) -> Sim {
        let mut sim = Sim::new(true, Policy::default());
        sim.snap.pipeline = pipeline;
        sim
    }

    /// The stage of the live run.
    fn stage(&self) -> Stage {
        match self.snap.state {
            TaskState::Running { stage } => stage,
            ref other => panic!("no run is live: the task is {other}"),
        }
    }

    fn new(owner_technical: bool, policy: Policy) -> Sim {
        Sim {
            snap: TaskSnapshot {
                owner_technical,
                ..new_task()
            },
            policy,
            next_run: 1,
            effects: vec![],
        }
    }

    fn send(&mut self, event: Event) -> Result<Decision, Rejection> {
        let decision = decide(&self.snap, &event, &self.policy)?;
        // Like the engine, which reads the history from the run rows.
        if let (
            Event::RunFinished {
                run,
                outcome: RunOutcome::Ended { signal },
            },
            TaskState::Running { stage },
        ) = (&event, &self.snap.state)
            && self.snap.live_run == Some(*run)
        {
            let history = &mut self.snap.history;
            match (stage, signal) {
                (Stage::Implement, _) => history.implemented = true,
                (Stage::Review, Some(Signal::Verdict { verdict, .. })) => {
                    history.last_verdict = Some(*verdict);
                    history.first_review_verdict = Some(*verdict);
                }
                (Stage::SecondReview, Some(Signal::Verdict { verdict, .. })) => {
                    history.last_verdict = match history.first_review_verdict {
                        Some(Verdict::Ready) | None => Some(*verdict),
                        first => first,
                    };
                }
                _ => {}
            }
        }
        if let Event::RunFinished { run, .. } = &event
            && self.snap.live_run == Some(*run)
            && !matches!(decision.state, TaskState::NeedsInput { .. })
        {
            self.snap.live_run = None;
        }
        for effect in &decision.effects {
            match effect {
                Effect::StartRun { .. }
                | Effect::RestartRun { .. }
                | Effect::RevisePlan { .. }
                | Effect::Nudge { .. }
                | Effect::StartFollowUp { .. } => {
                    self.snap.live_run = Some(RunId(self.next_run));
                    self.next_run += 1;
                }
                // Like the engine, which records the pull request once it is opened.
                Effect::OpenPullRequest => self.snap.has_pull_request = true,
                _ => {}
            }
        }
        self.snap.state = decision.state.clone();
        self.snap.review_rounds = decision.review_rounds;
        self.snap.qa_rounds = decision.qa_rounds;
        self.snap.runs_started = decision.runs_started;
        self.snap.pr_rounds = decision.pr_rounds;
        self.effects.extend(decision.effects.iter().cloned());
        Ok(decision)
    }

    /// Sends an event the rules must accept.
    fn ok(&mut self, event: Event) -> Decision {
        match self.send(event.clone()) {
            Ok(decision) => decision,
            Err(rejection) => panic!("{event:?} was refused in {:?}: {rejection}", self.snap),
        }
    }

    /// Ends the live run with `outcome`.
    fn finish(&mut self, outcome: RunOutcome) -> Decision {
        let run = self.live();
        self.ok(Event::RunFinished { run, outcome })
    }

    fn end(&mut self, signal: Option<Signal>) -> Decision {
        self.finish(RunOutcome::Ended { signal })
    }

    fn live(&self) -> RunId {
        match self.snap.live_run {
            Some(run) => run,
            None => panic!("no live run in {:?}", self.snap),
        }
    }

    fn state(&self) -> &TaskState {
        &self.snap.state
    }
}

#[test]
fn technical_happy_path_with_one_review_round() {
    use Stage::*;
    let mut sim = Sim::new(true, Policy::default());
    sim.ok(Event::Created);
    sim.end(Some(Signal::PlanReady));
    assert_eq!(sim.state(), &TaskState::PlanGate);
    assert_eq!(sim.snap.live_run, None, "the gate holds no live run");
    sim.ok(Event::PlanApproved);
    sim.end(None);
    sim.end(verdict(Verdict::NeedsWork, None));
    sim.end(None);
    sim.end(verdict(Verdict::Ready, None));
    sim.end(Some(Signal::PrDone { no_changes: false }));
    sim.ok(Event::ChecksPassed);
    sim.ok(Event::Merged);

    assert_eq!(
        sim.snap,
        TaskSnapshot {
            state: TaskState::Done {
                reason: DoneReason::Merged
            },
            review_rounds: 1,
            qa_rounds: 0,
            runs_started: 6,
            owner_technical: true,
            pipeline: Pipeline::standard(),
            live_run: None,
            pr_rounds: PrRounds::default(),
            has_pull_request: true,
            history: StageHistory {
                first_review_verdict: Some(Verdict::Ready),
                implemented: true,
                last_verdict: Some(Verdict::Ready)
            },
        }
    );
    assert_eq!(
        sim.effects,
        vec![
            Effect::StartRun { stage: Plan },
            Effect::StartRun { stage: Implement },
            Effect::StartRun { stage: Review },
            Effect::StartRun { stage: Implement },
            Effect::StartRun { stage: Review },
            Effect::StartRun { stage: Pr },
            Effect::OpenPullRequest,
            Effect::RemoveWorkspace,
        ]
    );
}

#[test]
fn non_technical_owner_passes_the_gate_and_can_finish_without_changes() {
    use Stage::*;
    let mut sim = Sim::new(false, Policy::default());
    sim.ok(Event::Created);
    sim.end(Some(Signal::PlanReady));
    sim.end(None);
    sim.end(verdict(Verdict::Ready, None));
    sim.end(Some(Signal::PrDone { no_changes: true }));
    assert_eq!(
        sim.state(),
        &TaskState::Done {
            reason: DoneReason::NoChanges
        }
    );
    assert_eq!(
        sim.effects,
        vec![
            Effect::StartRun { stage: Plan },
            Effect::StartRun { stage: Implement },
            Effect::StartRun { stage: Review },
            Effect::StartRun { stage: Pr },
            Effect::RemoveWorkspace,
        ]
    );
    assert_eq!(
        sim.send(Event::RunRequested { stage: None }),
        invalid("the task is done"),
        "a done task never runs again"
    );
}

#[test]
fn review_loop_blocks_after_three_rounds_and_resume_grants_a_fresh_budget() {
    use Stage::*;
    let mut sim = Sim::new(true, Policy::default());
    sim.ok(Event::Created);
    sim.end(Some(Signal::PlanReady));
    sim.ok(Event::PlanApproved);
    let mut reviews = 0;
    while let TaskState::Running { stage } = sim.state().clone() {
        match stage {
            Implement => sim.end(None),
            Review => {
                reviews += 1;
                // Alternate the two ways a review can fail: both count.
                let signal = if reviews % 2 == 0 {
                    None
                } else {
                    verdict(Verdict::NeedsWork, None)
                };
                sim.end(signal)
            }
            other => panic!("unexpected stage {other}"),
        };
        assert!(reviews <= 3, "the review loop ran past its cap");
    }
    assert_eq!(reviews, 3);
    assert_eq!(
        sim.snap,
        TaskSnapshot {
            state: blocked_at(Implement, max_iterations(ROUND_CAP)),
            review_rounds: 3,
            qa_rounds: 0,
            runs_started: 7,
            owner_technical: true,
            pipeline: Pipeline::standard(),
            live_run: None,
            pr_rounds: PrRounds::default(),
            has_pull_request: false,
            history: StageHistory {
                first_review_verdict: Some(Verdict::NeedsWork),
                implemented: true,
                last_verdict: Some(Verdict::NeedsWork)
            },
        }
    );

    let resumed = sim.ok(Event::ResumeRequested);
    assert_eq!(
        resumed,
        Decision {
            state: TaskState::Running { stage: Implement },
            review_rounds: 0,
            qa_rounds: 0,
            runs_started: 1,
            pr_rounds: PrRounds::default(),
            effects: vec![Effect::StartRun { stage: Implement }],
        }
    );
    sim.end(None);
    sim.end(verdict(Verdict::Ready, None));
    assert_eq!(sim.state(), &TaskState::Running { stage: Pr });
}

#[test]
fn total_run_cap_blocks_a_task_that_keeps_going_round() {
    use Stage::*;
    let policy = Policy {
        max_total_runs: 4,
        max_review_rounds: 100,
        ..Policy::default()
    };
    let mut sim = Sim::new(false, policy);
    sim.ok(Event::Created); // run 1
    sim.end(Some(Signal::PlanReady)); // run 2: implement
    sim.end(None); // run 3: review
    sim.end(verdict(Verdict::NeedsWork, None)); // run 4: implement
    let last = sim.end(None); // a 5th run (review) is over the cap
    assert_eq!(
        last,
        Decision {
            state: blocked_at(Review, max_iterations("reached the cap of 4 runs per task")),
            review_rounds: 1,
            qa_rounds: 0,
            runs_started: 4,
            pr_rounds: PrRounds::default(),
            effects: vec![],
        }
    );
    assert_eq!(sim.snap.live_run, None);
}

#[test]
fn a_stopped_run_never_chains_and_resume_starts_afresh() {
    use Stage::*;
    let mut sim = Sim::new(true, Policy::default());
    sim.ok(Event::Created);
    sim.end(Some(Signal::PlanReady));
    sim.ok(Event::PlanApproved);
    let implementer = sim.live();

    let stop = sim.ok(Event::StopRequested);
    assert_eq!(stop.effects, vec![Effect::StopRun { run: implementer }]);
    assert_eq!(sim.state(), &TaskState::Stopped { stage: Implement });
    assert_eq!(
        sim.send(Event::RunRequested { stage: None }),
        conflict(implementer),
        "the stopped agent is still being torn down"
    );

    // The killed implementer reports in; nothing chains onward.
    let after = sim.finish(RunOutcome::Stopped);
    assert_eq!(after.effects, vec![]);
    assert_eq!(sim.state(), &TaskState::Stopped { stage: Implement });
    assert_eq!(sim.snap.live_run, None);

    let resumed = sim.ok(Event::ResumeRequested);
    assert_eq!(resumed.effects, vec![Effect::StartRun { stage: Implement }]);
    assert_eq!((resumed.review_rounds, resumed.runs_started), (0, 1));
    assert_ne!(sim.live(), implementer);
}

#[test]
fn a_question_resumes_the_same_run_until_the_plan_is_ready() {
    use Stage::*;
    let mut sim = Sim::new(true, Policy::default());
    sim.ok(Event::Created);
    let planner = sim.live();
    sim.end(Some(Signal::Question {
        text: "Which database?".into(),
    }));
    assert_eq!(
        sim.state(),
        &TaskState::NeedsInput {
            stage: Plan,
            question: "Which database?".into()
        }
    );
    assert_eq!(
        sim.snap.live_run,
        Some(planner),
        "the run waits for its answer"
    );

    sim.ok(Event::Answered {
        text: "SQLite".into(),
    });
    sim.end(Some(Signal::Question {
        text: "WAL mode?".into(),
    }));
    sim.ok(Event::Answered { text: "yes".into() });
    assert_eq!(sim.live(), planner, "answers resume the same run");
    sim.end(Some(Signal::PlanReady));

    assert_eq!(
        sim.snap,
        TaskSnapshot {
            state: TaskState::PlanGate,
            review_rounds: 0,
            qa_rounds: 0,
            runs_started: 1,
            owner_technical: true,
            pipeline: Pipeline::standard(),
            live_run: None,
            pr_rounds: PrRounds::default(),
            has_pull_request: false,
            history: StageHistory::default(),
        }
    );
    assert_eq!(
        sim.effects,
        vec![
            Effect::StartRun { stage: Plan },
            Effect::ResumeRun {
                run: planner,
                input: "SQLite".into()
            },
            Effect::ResumeRun {
                run: planner,
                input: "yes".into()
            },
        ]
    );
}

#[test]
fn crash_restarts_are_not_counted_and_old_runs_are_stale() {
    use Stage::*;
    let mut sim = Sim::new(true, Policy::default());
    sim.ok(Event::Created);
    let first = sim.live();
    sim.finish(RunOutcome::Interrupted);
    let second = sim.live();
    sim.finish(RunOutcome::Interrupted);
    assert_eq!(sim.snap.runs_started, 1, "restarts after a crash are free");
    assert_eq!(sim.state(), &TaskState::Running { stage: Plan });

    // A late report from the first, replaced run changes nothing.
    let before = sim.snap.clone();
    let late = sim.ok(Event::RunFinished {
        run: first,
        outcome: RunOutcome::Ended {
            signal: Some(Signal::PlanReady),
        },
    });
    assert_eq!(Ok(late), unchanged(&before));
    assert_eq!(sim.snap, before);
    assert_ne!(sim.live(), second);

    sim.end(Some(Signal::PlanReady));
    assert_eq!(
        sim.effects,
        vec![
            Effect::StartRun { stage: Plan },
            Effect::RestartRun {
                stage: Plan,
                cause: RestartCause::ServerRestarted
            },
            Effect::RestartRun {
                stage: Plan,
                cause: RestartCause::ServerRestarted
            },
        ]
    );
}

#[test]
fn a_forge_failure_blocks_and_a_run_request_retries_the_pr_stage() {
    use Stage::*;
    let mut sim = Sim::new(false, Policy::default());
    sim.ok(Event::Created);
    sim.end(Some(Signal::PlanReady));
    sim.end(None);
    sim.end(verdict(Verdict::Ready, None));
    sim.end(Some(Signal::PrDone { no_changes: false }));
    sim.ok(Event::ChecksPassed);
    sim.ok(Event::PullRequestFailed {
        reason: "remote rejected the push".into(),
    });
    assert_eq!(
        sim.state(),
        &blocked_at(Pr, forge_error("remote rejected the push"))
    );
    sim.ok(Event::RunRequested { stage: None });
    sim.end(Some(Signal::PrDone { no_changes: false }));
    sim.ok(Event::ChecksPassed);
    sim.ok(Event::Merged);
    assert_eq!(
        sim.state(),
        &TaskState::Done {
            reason: DoneReason::Merged
        }
    );
    assert_eq!(sim.snap.runs_started, 5);
}

#[test]
fn a_failed_merge_awaits_the_merge_again_and_a_second_request_lands_once() {
    let mut sim = Sim::new(false, Policy::default());
    sim.ok(Event::Created);
    sim.end(Some(Signal::PlanReady));
    sim.end(None);
    sim.end(verdict(Verdict::Ready, None));
    sim.end(Some(Signal::PrDone { no_changes: false }));
    sim.ok(Event::ChecksPassed);
    sim.ok(Event::MergeRequested);
    assert!(
        sim.send(Event::MergeRequested).is_err(),
        "a second merge is refused"
    );
    assert!(sim.send(Event::DeleteRequested).is_err());
    sim.ok(Event::MergeFailed {
        reason: "remote unreachable".into(),
    });
    assert_eq!(
        sim.state(),
        &TaskState::AwaitingMerge {
            merge_error: Some("remote unreachable".into())
        }
    );
    sim.ok(Event::MergeRequested);
    sim.ok(Event::MergeSucceeded);
    assert_eq!(
        sim.send(Event::MergeRequested),
        invalid("the task is already merged")
    );
    assert_eq!(
        sim.state(),
        &TaskState::Done {
            reason: DoneReason::Merged
        }
    );
    let merges = sim
        .effects
        .iter()
        .filter(|e| **e == Effect::MergePullRequest)
        .count();
    assert_eq!(merges, 2, "one forge merge per accepted request");
    assert_eq!(sim.effects.last(), Some(&Effect::RemoveWorkspace));
}

/// After a stop, the stopped run stays live until its `RunFinished` arrives (the agent gets a
/// grace period before it is killed): resuming then would start a second agent in the worktree.
#[test]
fn resume_while_the_stopped_run_is_still_live_is_a_conflict() {
    let stopping = TaskSnapshot {
        state: TaskState::Stopped {
            stage: Stage::Implement,
        },
        ..running(Stage::Implement)
    };
    assert_eq!(
        decide(&stopping, &Event::ResumeRequested, &Policy::default()),
        conflict(RUN)
    );
}

fn waiting(stage: Stage, retry_at: i64) -> TaskState {
    TaskState::Waiting {
        stage,
        reason: "model endpoint unreachable".into(),
        retry_at,
        attempt: 2,
    }
}

#[test]
fn an_infrastructure_failure_waits_then_retries_without_counting() {
    let policy = Policy::default();
    let review = with_counters(running(Stage::Review), 2, 9);
    let failed = finished(RunOutcome::InfraFailed {
        reason: "model endpoint unreachable".into(),
        retry_at: 5_000,
        attempt: 2,
    });
    let decided = decide(&review, &failed, &policy);
    assert_eq!(
        decided,
        Ok(Decision {
            state: waiting(Stage::Review, 5_000),
            review_rounds: 2,
            qa_rounds: 0,
            runs_started: 9,
            pr_rounds: PrRounds::default(),
            effects: vec![],
        })
    );
    let waiting_task = TaskSnapshot {
        state: waiting(Stage::Review, 5_000),
        live_run: None,
        ..review.clone()
    };
    // A stale timer (another backoff period) changes nothing; the due one restarts the stage.
    assert_eq!(
        decide(&waiting_task, &Event::RetryDue { retry_at: 4_000 }, &policy),
        unchanged(&waiting_task)
    );
    assert_eq!(
        decide(&waiting_task, &Event::RetryDue { retry_at: 5_000 }, &policy),
        Ok(Decision {
            state: TaskState::Running {
                stage: Stage::Review
            },
            review_rounds: 2,
            qa_rounds: 0,
            runs_started: 9,
            pr_rounds: PrRounds::default(),
            effects: vec![Effect::RestartRun {
                stage: Stage::Review,
                cause: RestartCause::Retry,
            }],
        })
    );
    // A user can stop a waiting task, or retry it at once.
    assert_eq!(
        decide(&waiting_task, &Event::StopRequested, &policy),
        Ok(Decision {
            state: TaskState::Stopped {
                stage: Stage::Review
            },
            review_rounds: 2,
            qa_rounds: 0,
            runs_started: 9,
            pr_rounds: PrRounds::default(),
            effects: vec![],
        })
    );
    assert_eq!(
        decide(&waiting_task, &Event::RunRequested { stage: None }, &policy),
        starts(Stage::Review, 2, 10)
    );
}

#[test]
fn a_first_stall_restarts_the_stage_and_a_second_one_blocks() {
    let policy = Policy::default();
    let review = with_counters(running(Stage::Review), 1, 6);
    let stalled = |earlier_stalls| {
        finished(RunOutcome::Stalled {
            reason: "stalled: nothing for 600 s".into(),
            earlier_stalls,
        })
    };
    assert_eq!(
        decide(&review, &stalled(0), &policy),
        Ok(Decision {
            state: TaskState::Running {
                stage: Stage::Review
            },
            review_rounds: 1,
            qa_rounds: 0,
            runs_started: 6,
            pr_rounds: PrRounds::default(),
            effects: vec![Effect::RestartRun {
                stage: Stage::Review,
                cause: RestartCause::Stalled,
            }],
        })
    );
    // The replacement continues the session told about the stall, not about a restart.
    assert_eq!(
        RestartCause::Stalled.continuation(),
        Some(CONTINUE_AFTER_STALL)
    );
    assert_eq!(
        RestartCause::ServerRestarted.continuation(),
        Some(CONTINUE_AFTER_RESTART)
    );
    assert_eq!(RestartCause::Retry.continuation(), None);
    assert_eq!(
        decide(&review, &stalled(1), &policy),
        blocks(
            Stage::Review,
            run_failed(
                "stalled: nothing for 600 s; it had stalled before, so it was not resumed again"
            ),
            1,
            6
        )
    );
}

/// The actions offered in each state: exactly those whose events `decide` accepts.
#[test]
fn allowed_actions_are_the_events_the_rules_accept() {
    use Action::*;
    let run = |stage| Run { stage };
    let every_stage = || Stage::STANDARD.map(run).to_vec();
    let with = |mut first: Vec<Action>, rest: Vec<Action>| {
        first.extend(rest);
        first
    };
    let question = TaskSnapshot {
        state: TaskState::NeedsInput {
            stage: Stage::Plan,
            question: "which flag?".into(),
        },
        live_run: Some(RUN),
        ..at(TaskState::PlanGate)
    };
    let cases: Vec<(&str, TaskSnapshot, Vec<Action>)> = vec![
        (
            "plan gate",
            at(TaskState::PlanGate),
            vec![
                ApprovePlan,
                RequestPlanChanges,
                run(Stage::Plan),
                run(Stage::Implement),
                Delete,
            ],
        ),
        (
            "plan gate, implemented once",
            after(at(TaskState::PlanGate), Some(Verdict::NeedsWork)),
            vec![
                ApprovePlan,
                RequestPlanChanges,
                run(Stage::Plan),
                run(Stage::Implement),
                run(Stage::Review),
                Delete,
            ],
        ),
        ("an agent running", running(Stage::Implement), vec![Stop]),
        ("an open question", question, vec![Answer, Stop]),
        (
            "stopped",
            after(
                at(TaskState::Stopped {
                    stage: Stage::Review,
                }),
                None,
            ),
            vec![
                Resume,
                run(Stage::Plan),
                run(Stage::Implement),
                run(Stage::Review),
                Delete,
            ],
        ),
        (
            "blocked after a ready verdict",
            after(
                at(blocked_at(Stage::Review, agent_blocked("needs a key"))),
                Some(Verdict::Ready),
            ),
            with(vec![Resume], with(every_stage(), vec![Delete])),
        ),
        (
            "waiting to retry",
            at(waiting(Stage::Implement, 99)),
            vec![
                Stop,
                Resume,
                run(Stage::Plan),
                run(Stage::Implement),
                Delete,
            ],
        ),
        (
            "awaiting merge",
            with_pr(TaskState::AwaitingMerge { merge_error: None }, rounds(0, 0)),
            with(every_stage(), vec![Merge, Delete]),
        ),
        (
            "awaiting checks",
            with_pr(TaskState::AwaitingChecks, rounds(0, 0)),
            with(every_stage(), vec![Delete]),
        ),
        (
            "being merged",
            with_pr(TaskState::Merging, rounds(0, 0)),
            vec![],
        ),
        (
            "closed",
            with_pr(TaskState::Closed, rounds(0, 0)),
            with(vec![Resume], with(every_stage(), vec![Delete])),
        ),
        (
            "done",
            at(TaskState::Done {
                reason: DoneReason::Merged,
            }),
            vec![Delete],
        ),
    ];
    for (name, snap, want) in cases {
        assert_eq!(
            allowed_actions(&snap, &Policy::default()),
            want,
            "case `{name}`"
        );
    }
}

#[test]
fn actions_serialize_tagged_with_their_stage() {
    assert_eq!(
        serde_json::to_string(&Action::Run {
            stage: Stage::Review
        })
        .unwrap(),
        r#"{"action":"run","stage":"review"}"#
    );
    assert_eq!(
        serde_json::to_string(&Action::RequestPlanChanges).unwrap(),
        r#"{"action":"request_plan_changes"}"#
    );
}

#[test]
fn a_plan_sent_back_with_changes_comes_to_the_gate_again() {
    use Stage::*;
    let mut sim = Sim::new(true, Policy::default());
    sim.ok(Event::Created);
    sim.end(Some(Signal::PlanReady));
    sim.ok(Event::PlanChangesRequested {
        feedback: "add a rollback step".into(),
    });
    assert_eq!(sim.state(), &TaskState::Running { stage: Plan });
    sim.end(Some(Signal::PlanReady));
    assert_eq!(sim.state(), &TaskState::PlanGate);
    sim.ok(Event::PlanApproved);
    assert_eq!(
        sim.effects,
        vec![
            Effect::StartRun { stage: Plan },
            Effect::RevisePlan {
                feedback: "add a rollback step".into()
            },
            Effect::StartRun { stage: Implement },
        ]
    );
    assert_eq!(sim.snap.runs_started, 3);
}

#[test]
fn an_idle_implementer_is_nudged_once_then_blocked_and_review_never_starts() {
    use Stage::*;
    let mut sim = Sim::new(false, Policy::default());
    sim.ok(Event::Created);
    sim.end(Some(Signal::PlanReady));
    let idle = |earlier| RunOutcome::NoProgress {
        detail: "no new commit, no newly checked item".into(),
        earlier,
    };
    sim.finish(idle(0));
    assert_eq!(sim.state(), &TaskState::Running { stage: Implement });
    sim.finish(idle(1));
    assert_eq!(
        sim.state(),
        &TaskState::Blocked {
            stage: Implement,
            reason: BlockReason::NoProgress {
                detail: "no new commit, no newly checked item; the implementer had been nudged \
                         after a run without progress, and made none again"
                    .into()
            }
        }
    );
    assert_eq!(
        sim.effects,
        vec![
            Effect::StartRun { stage: Plan },
            Effect::StartRun { stage: Implement },
            Effect::Nudge {
                stage: Implement,
                input: NO_PROGRESS_NUDGE.into()
            },
        ]
    );
    // A resume grants a fresh start at implement; progress then reaches the reviewer.
    sim.ok(Event::ResumeRequested);
    sim.end(None);
    assert_eq!(sim.state(), &TaskState::Running { stage: Review });
}

// --- the yolo pipeline -------------------------------------------------------------------------

/// `snap` as a task of the yolo pipeline.
fn yolo(snap: TaskSnapshot) -> TaskSnapshot {
    TaskSnapshot {
        pipeline: builtin("yolo"),
        ..snap
    }
}

const YOLO_CAP: &str = "reached the cap of 5 implement runs of the `yolo` pipeline";

fn yolo_cases() -> Vec<Case> {
    use Stage::*;
    let pr_done = |no_changes| Some(Signal::PrDone { no_changes });
    vec![
        case(
            "a new yolo task starts at implement, with no plan and no gate",
            yolo(new_task()),
            Event::Created,
            starts(Implement, 0, 1),
        ),
        case(
            "a new yolo task of a non-technical owner starts at implement too",
            yolo(non_technical(new_task())),
            Event::Created,
            starts(Implement, 0, 1),
        ),
        case(
            "a yolo implementer's pr-done publishes the pull request with no review",
            yolo(running(Implement)),
            ended(pr_done(false)),
            decision(
                TaskState::AwaitingChecks,
                0,
                1,
                vec![Effect::OpenPullRequest],
            ),
        ),
        case(
            "a yolo implementer's pr-done --no-changes ends the task with nothing to publish",
            yolo(running(Implement)),
            ended(pr_done(true)),
            decision(
                TaskState::Done {
                    reason: DoneReason::NoChanges,
                },
                0,
                1,
                vec![Effect::RemoveWorkspace],
            ),
        ),
        case(
            "a yolo implementer's turn without pr-done continues its session with a nudge",
            yolo(running(Implement)),
            ended(None),
            decision(
                TaskState::Running { stage: Implement },
                0,
                2,
                vec![Effect::Nudge {
                    stage: Implement,
                    input: PR_DONE_NUDGE.into(),
                }],
            ),
        ),
        case(
            "a yolo implementer without progress is nudged to work and signal",
            yolo(running(Implement)),
            finished(RunOutcome::NoProgress {
                detail: "nothing changed".into(),
                earlier: 0,
            }),
            decision(
                TaskState::Running { stage: Implement },
                0,
                2,
                vec![Effect::Nudge {
                    stage: Implement,
                    input: YOLO_NO_PROGRESS_NUDGE.into(),
                }],
            ),
        ),
        case(
            "a yolo implementer's fifth run without pr-done blocks the task at the pipeline's cap",
            with_counters(yolo(running(Implement)), 0, 5),
            ended(None),
            blocks(Implement, max_iterations(YOLO_CAP), 0, 5),
        ),
        case(
            "a fourth run of a yolo implementer is still under the cap",
            with_counters(yolo(running(Implement)), 0, 4),
            ended(None),
            decision(
                TaskState::Running { stage: Implement },
                0,
                5,
                vec![Effect::Nudge {
                    stage: Implement,
                    input: PR_DONE_NUDGE.into(),
                }],
            ),
        ),
        case(
            "a stop of a yolo implementer stops its run",
            yolo(running(Implement)),
            Event::StopRequested,
            decision(
                TaskState::Stopped { stage: Implement },
                0,
                1,
                vec![Effect::StopRun { run: RUN }],
            ),
        ),
        case(
            "resuming a yolo task blocked at its cap grants a fresh budget at implement",
            with_counters(
                yolo(at(blocked_at(Implement, max_iterations(YOLO_CAP)))),
                0,
                5,
            ),
            Event::ResumeRequested,
            starts(Implement, 0, 1),
        ),
        case(
            "resuming a stopped yolo task continues at implement",
            yolo(at(TaskState::Stopped { stage: Implement })),
            Event::ResumeRequested,
            starts(Implement, 0, 1),
        ),
        case(
            "a yolo task has no review stage to run",
            yolo(after(at(TaskState::Stopped { stage: Implement }), None)),
            Event::RunRequested {
                stage: Some(Review),
            },
            invalid("the `yolo` pipeline has no review stage (its stages: implement, pr)"),
        ),
        case(
            "a yolo task has no plan stage to run",
            yolo(at(TaskState::Stopped { stage: Implement })),
            Event::RunRequested { stage: Some(Plan) },
            invalid("the `yolo` pipeline has no plan stage (its stages: implement, pr)"),
        ),
        case(
            "a yolo task's pr stage runs once an implement run completed, with no review",
            yolo(after(at(TaskState::Stopped { stage: Implement }), None)),
            Event::RunRequested { stage: Some(Pr) },
            starts(Pr, 0, 2),
        ),
        case(
            "a yolo task's pr stage waits for an implement run",
            yolo(at(TaskState::Stopped { stage: Implement })),
            Event::RunRequested { stage: Some(Pr) },
            invalid(
                "the pr stage cannot start yet: no implement run has completed, so there is \
                 nothing to publish; run the implement stage first",
            ),
        ),
        case(
            "a yolo pr run's pr-done publishes as the standard pr stage does",
            yolo(running(Pr)),
            ended(pr_done(false)),
            decision(
                TaskState::AwaitingChecks,
                0,
                1,
                vec![Effect::OpenPullRequest],
            ),
        ),
        case(
            "an unreviewed yolo pr run is not sent to a review stage it does not have",
            yolo(running(Pr)),
            finished(RunOutcome::Unreviewed {
                signal: pr_done(false),
                detail: "head moved".into(),
            }),
            decision(
                TaskState::AwaitingChecks,
                0,
                1,
                vec![Effect::OpenPullRequest],
            ),
        ),
        case(
            "a yolo implementer's question waits for a human",
            yolo(running(Implement)),
            ended(Some(Signal::Question {
                text: "which port?".into(),
            })),
            decision(
                TaskState::NeedsInput {
                    stage: Implement,
                    question: "which port?".into(),
                },
                0,
                1,
                vec![],
            ),
        ),
    ]
}

#[test]
fn every_yolo_transition_matches_the_table() {
    check_table(yolo_cases(), &Policy::default());
}

#[test]
fn yolo_case_names_are_unique() {
    let mut names: Vec<_> = yolo_cases().into_iter().map(|case| case.name).collect();
    let total = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), total, "two yolo table cases share a name");
}

#[test]
fn a_project_cap_below_the_yolo_cap_wins() {
    let policy = Policy {
        max_total_runs: 3,
        ..Policy::default()
    };
    check_table(
        vec![case(
            "the project's lower cap blocks a yolo implementer first",
            with_counters(yolo(running(Stage::Implement)), 0, 3),
            ended(None),
            blocks(
                Stage::Implement,
                max_iterations("reached the cap of 3 runs per task"),
                0,
                3,
            ),
        )],
        &policy,
    );
}

#[test]
fn yolo_runs_implement_then_publishes_then_merges() {
    use Stage::*;
    let mut sim = Sim {
        snap: yolo(new_task()),
        ..Sim::new(true, Policy::default())
    };
    sim.ok(Event::Created);
    sim.end(None);
    sim.end(Some(Signal::PrDone { no_changes: false }));
    assert_eq!(sim.state(), &TaskState::AwaitingChecks);
    sim.ok(Event::ChecksPassed);
    sim.ok(Event::MergeRequested);
    sim.ok(Event::MergeSucceeded);
    assert_eq!(
        sim.snap,
        TaskSnapshot {
            state: TaskState::Done {
                reason: DoneReason::Merged
            },
            review_rounds: 0,
            qa_rounds: 0,
            runs_started: 2,
            owner_technical: true,
            pipeline: builtin("yolo"),
            live_run: None,
            pr_rounds: PrRounds::default(),
            has_pull_request: true,
            history: StageHistory {
                first_review_verdict: None,
                implemented: true,
                last_verdict: None
            },
        }
    );
    assert_eq!(
        sim.effects,
        vec![
            Effect::StartRun { stage: Implement },
            Effect::Nudge {
                stage: Implement,
                input: PR_DONE_NUDGE.into()
            },
            Effect::OpenPullRequest,
            Effect::MergePullRequest,
            Effect::RemoveWorkspace,
        ]
    );
}

#[test]
fn a_yolo_task_offers_no_plan_or_review_actions() {
    use Stage::*;
    let snap = yolo(after(at(TaskState::Stopped { stage: Implement }), None));
    assert_eq!(
        allowed_actions(&snap, &Policy::default()),
        vec![
            Action::Resume,
            Action::Run { stage: Implement },
            Action::Run { stage: Pr },
            Action::Delete,
        ]
    );
}

#[test]
fn pipeline_names_parse_to_the_built_ins() {
    for name in ["standard", "full", "yolo"] {
        assert_eq!(
            Pipeline::parse_builtin(name).map(|p| p.name().to_string()),
            Ok(name.into())
        );
    }
    assert_eq!(
        Pipeline::parse_builtin("fast").map_err(|e| e.to_string()),
        Err("unknown pipeline `fast`: expected one of `standard`, `full`, `yolo`".into())
    );
    assert_eq!(builtin("yolo").runs_cap(Stage::Implement), Some(5));
    assert_eq!(Pipeline::standard().runs_cap(Stage::Implement), None);
    assert_eq!(Pipeline::default(), Pipeline::standard());
    assert_eq!(
        builtin("full").stages(),
        [
            Stage::Plan,
            Stage::Implement,
            Stage::Review,
            Stage::Qa,
            Stage::Refine,
            Pr
        ]
    );
}

// --- pipelines as data: full, a second reviewer, a project's own ------------------------------

fn qa(result: QaResult, reason: Option<&str>) -> Option<Signal> {
    Some(Signal::Qa {
        result,
        reason: reason.map(str::to_string),
    })
}

/// `standard` with a second reviewer on another model.
fn two_reviewers() -> Pipeline {
    let mut def = crate::pipeline_def::builtin("standard").expect("built in");
    def.name = "careful".into();
    for stage in &mut def.stages {
        if stage.kind == crate::pipeline_def::StageKind::Review {
            stage.role.harness = Some("claude-code".into());
            stage.second_reviewer = Some(crate::pipeline_def::Role {
                harness: Some("codex".into()),
                ..Default::default()
            });
        }
    }
    Pipeline::new(def).expect("runnable")
}

#[test]
fn full_runs_qa_then_refine_and_a_failed_qa_goes_back_with_its_findings() {
    use Stage::*;
    let mut sim = Sim::of(builtin("full"));
    sim.ok(Event::Created);
    sim.end(Some(Signal::PlanReady));
    assert_eq!(sim.state(), &TaskState::PlanGate, "full has the plan gate");
    sim.ok(Event::PlanApproved);
    let mut path = vec![sim.stage()];
    sim.end(None);
    path.push(sim.stage());
    sim.end(verdict(Verdict::Ready, None));
    path.push(sim.stage());
    let failed = sim.end(qa(QaResult::Fail, Some("the page is blank")));
    assert_eq!(
        failed.effects,
        [
            Effect::RecordFindings { stage: Qa },
            Effect::StartRun { stage: Implement }
        ],
        "the findings are written before the implementer starts"
    );
    assert_eq!(failed.qa_rounds, 1);
    for signal in [
        None,
        verdict(Verdict::Ready, None),
        qa(QaResult::Pass, None),
        Some(Signal::RefineDone),
    ] {
        path.push(sim.stage());
        sim.end(signal);
    }
    path.push(sim.stage());
    let published = sim.end(Some(Signal::PrDone { no_changes: false }));
    assert_eq!(published.effects, [Effect::OpenPullRequest]);
    assert_eq!(
        path,
        [Implement, Review, Qa, Implement, Review, Qa, Refine, Pr]
    );
    assert_eq!(sim.state(), &TaskState::AwaitingChecks);
}

#[test]
fn qa_is_bounded_and_a_qa_or_refine_run_without_its_signal_blocks() {
    use Stage::*;
    let at_qa = || {
        let mut sim = Sim::of(builtin("full"));
        sim.ok(Event::Created);
        sim.end(Some(Signal::PlanReady));
        sim.ok(Event::PlanApproved);
        sim.end(None);
        sim.end(verdict(Verdict::Ready, None));
        assert_eq!(sim.stage(), Qa);
        sim
    };
    // The built-in caps QA at 2 rounds: the second failure blocks, findings still written.
    let mut sim = at_qa();
    sim.end(qa(QaResult::Fail, Some("one")));
    sim.end(None);
    sim.end(verdict(Verdict::Ready, None));
    let blocked = sim.end(qa(QaResult::Fail, Some("two")));
    assert_eq!(
        blocked.state,
        TaskState::Blocked {
            stage: Implement,
            reason: BlockReason::MaxIterations {
                detail: "QA did not pass after 2 rounds (cap 2)".into()
            }
        }
    );
    assert_eq!(blocked.effects, [Effect::RecordFindings { stage: Qa }]);
    // A resume grants QA a fresh budget, like review rounds.
    let resumed = sim.ok(Event::ResumeRequested);
    assert_eq!(resumed.qa_rounds, 0);

    let mut sim = at_qa();
    let silent = sim.end(None);
    assert!(
        matches!(&silent.state, TaskState::Blocked { stage: Qa, reason: BlockReason::MissingSignal { detail } } if detail.contains("qa pass")),
        "{silent:?}"
    );
    let mut sim = at_qa();
    sim.end(qa(QaResult::Pass, None));
    assert_eq!(sim.stage(), Refine);
    let silent = sim.end(None);
    assert!(
        matches!(&silent.state, TaskState::Blocked { stage: Refine, reason: BlockReason::MissingSignal { detail } } if detail.contains("refine-done")),
        "{silent:?}"
    );
}

#[test]
fn two_reviewers_must_both_say_ready_and_either_needs_work_wins() {
    use Stage::*;
    let at_review = || {
        let mut sim = Sim::of(two_reviewers());
        sim.ok(Event::Created);
        sim.end(Some(Signal::PlanReady));
        sim.ok(Event::PlanApproved);
        sim.end(None);
        assert_eq!(sim.stage(), Review);
        sim
    };
    // The second reviewer runs whatever the first said; its needs-work wins over a ready.
    let mut sim = at_review();
    let first = sim.end(verdict(Verdict::Ready, None));
    assert_eq!(
        first.effects,
        [Effect::StartRun {
            stage: SecondReview
        }]
    );
    let second = sim.end(verdict(Verdict::NeedsWork, Some("no test")));
    assert_eq!(
        second.effects,
        [
            Effect::RecordFindings { stage: Review },
            Effect::StartRun { stage: Implement }
        ]
    );
    assert_eq!(second.review_rounds, 1);
    // And the first's needs-work wins over the second's ready.
    let mut sim = at_review();
    sim.end(verdict(Verdict::NeedsWork, Some("no docs")));
    assert_eq!(sim.stage(), SecondReview, "the second still reviews");
    let second = sim.end(verdict(Verdict::Ready, None));
    assert_eq!(second.state, TaskState::Running { stage: Implement });
    // Both ready: on to the pull request.
    let mut sim = at_review();
    sim.end(verdict(Verdict::Ready, None));
    sim.end(verdict(Verdict::Ready, None));
    assert_eq!(sim.stage(), Pr);
    // A blocked verdict from either waits for a human.
    let mut sim = at_review();
    sim.end(verdict(Verdict::Ready, None));
    let blocked = sim.end(verdict(Verdict::Blocked, Some("needs a key")));
    assert!(matches!(
        blocked.state,
        TaskState::Blocked {
            stage: SecondReview,
            ..
        }
    ));
}

#[test]
fn a_projects_own_pipeline_routes_gates_and_caps_as_defined() {
    use crate::pipeline_def::{StageKind, Target};
    use Stage::*;
    // No plan gate, no review: plan → implement → refine → pr, at most 3 runs in all.
    let mut def = crate::pipeline_def::builtin("full").expect("built in");
    def.name = "quick".into();
    def.max_runs = Some(3);
    def.stages
        .retain(|s| !matches!(s.kind, StageKind::Review | StageKind::Qa));
    for stage in &mut def.stages {
        stage.gate = false;
        for t in &mut stage.on {
            if t.to == Target::Stage("review".into()) {
                t.to = Target::Stage("refine".into());
            }
        }
    }
    let mut sim = Sim::of(Pipeline::new(def).expect("runnable"));
    sim.ok(Event::Created);
    sim.end(Some(Signal::PlanReady));
    assert_eq!(sim.stage(), Implement, "no gate even for a technical owner");
    sim.end(None);
    assert_eq!(sim.stage(), Refine);
    let capped = sim.end(Some(Signal::RefineDone));
    assert_eq!(
        capped.state,
        TaskState::Blocked {
            stage: Pr,
            reason: BlockReason::MaxIterations {
                detail: "reached the cap of 3 runs of the `quick` pipeline".into()
            }
        }
    );
    // Stages it does not have cannot be run.
    assert_eq!(
        sim.send(Event::RunRequested {
            stage: Some(Review)
        }),
        Err(Rejection::InvalidState(
            "the `quick` pipeline has no review stage (its stages: plan, implement, refine, pr)"
                .into()
        ))
    );
}

#[test]
fn qa_and_refine_start_only_after_a_ready_review() {
    use Stage::*;
    let full = |history: StageHistory| TaskSnapshot {
        pipeline: builtin("full"),
        history,
        ..at(TaskState::Stopped { stage: Implement })
    };
    let run = |snap: &TaskSnapshot, stage| {
        decide(
            snap,
            &Event::RunRequested { stage: Some(stage) },
            &Policy::default(),
        )
        .map(|d| d.state)
    };
    let nothing = full(StageHistory::default());
    assert_eq!(
        run(&nothing, Qa),
        Err(Rejection::InvalidState(
            "the qa stage cannot start yet: no implement run has completed, so there is nothing \
             to test; run the implement stage first"
                .into()
        ))
    );
    let unreviewed = full(StageHistory {
        implemented: true,
        ..StageHistory::default()
    });
    assert_eq!(
        run(&unreviewed, Refine),
        Err(Rejection::InvalidState(
            "the refine stage cannot start yet: no review has given a verdict yet; it starts \
             once the review says `ready` (run the review stage)"
                .into()
        ))
    );
    let reviewed = full(StageHistory {
        implemented: true,
        last_verdict: Some(Verdict::Ready),
        first_review_verdict: Some(Verdict::Ready),
    });
    assert_eq!(run(&reviewed, Qa), Ok(TaskState::Running { stage: Qa }));
    assert_eq!(
        run(&reviewed, Refine),
        Ok(TaskState::Running { stage: Refine })
    );
    // A standard task has neither.
    assert!(
        run(
            &TaskSnapshot {
                pipeline: Pipeline::standard(),
                ..reviewed
            },
            Qa
        )
        .is_err()
    );
}
