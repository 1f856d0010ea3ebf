//! Task workflow states, the reasons a task stops or finishes, and run statuses.

use crate::stage::Stage;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a task is in its pipeline. Stored as JSON in the task row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TaskState {
    /// An agent of `stage` is queued or running.
    Running {
        stage: Stage,
    },
    /// The agent of `stage` asked a question; its run waits for the answer.
    NeedsInput {
        stage: Stage,
        question: String,
    },
    /// The plan is written; a human must approve it.
    PlanGate,
    /// The pull request is pushed; its checks (CI) have not all passed yet.
    AwaitingChecks,
    /// The pull request was closed without being merged; `resume` takes it up again.
    Closed,
    /// The pull request is open and green; a human merges it. `merge_error` says why the last merge
    /// through Atelier failed, if it did.
    AwaitingMerge {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        merge_error: Option<String>,
    },
    /// A merge requested through Atelier is under way on the forge. Merges, deletes and pr
    /// runs of the task are refused until it ends (back to `AwaitingMerge`, or `Done`).
    Merging,
    /// Stopped by a rule or an agent; `stage` is where `resume` continues.
    Blocked {
        stage: Stage,
        reason: BlockReason,
    },
    /// Stopped by a user; `stage` is where `resume` continues.
    Stopped {
        stage: Stage,
    },
    /// The last run of `stage` hit an infrastructure failure (rate limit, 5xx, network); a
    /// replacement starts at `retry_at` (ms since the epoch). Costs no review round, no run slot.
    Waiting {
        stage: Stage,
        reason: String,
        retry_at: i64,
        attempt: u32,
    },
    Done {
        reason: DoneReason,
    },
}

impl TaskState {
    /// Short machine name (`running`, `plan_gate` …) for lists and filters.
    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Running { .. } => "running",
            TaskState::NeedsInput { .. } => "needs_input",
            TaskState::PlanGate => "plan_gate",
            TaskState::AwaitingMerge { .. } => "awaiting_merge",
            TaskState::AwaitingChecks => "awaiting_checks",
            TaskState::Closed => "closed",
            TaskState::Merging => "merging",
            TaskState::Blocked { .. } => "blocked",
            TaskState::Stopped { .. } => "stopped",
            TaskState::Waiting { .. } => "waiting",
            TaskState::Done { .. } => "done",
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, TaskState::Done { .. })
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskState::Running { stage } => write!(f, "running {stage}"),
            TaskState::NeedsInput { stage, question } => {
                write!(f, "needs input ({stage}): {question}")
            }
            TaskState::PlanGate => f.write_str("plan ready: waiting for approval"),
            TaskState::AwaitingMerge { merge_error: None } => f.write_str("awaiting merge"),
            TaskState::AwaitingChecks => f.write_str("pull request open: waiting for its checks"),
            TaskState::Closed => f.write_str("pull request closed without merging"),
            TaskState::AwaitingMerge {
                merge_error: Some(error),
            } => write!(f, "awaiting merge (the last merge failed: {error})"),
            TaskState::Merging => f.write_str("being merged"),
            TaskState::Blocked { stage, reason } => write!(f, "blocked at {stage}: {reason}"),
            TaskState::Stopped { stage } => write!(f, "stopped at {stage}"),
            TaskState::Waiting {
                stage,
                reason,
                attempt,
                ..
            } => write!(f, "waiting to retry {stage} (attempt {attempt}): {reason}"),
            TaskState::Done { reason } => write!(f, "done ({reason})"),
        }
    }
}

/// The `detail` of every [`BlockReason`], borrowed as `reason` is.
macro_rules! detail_of {
    ($reason:expr) => {
        match $reason {
            BlockReason::MaxIterations { detail }
            | BlockReason::Agent { detail }
            | BlockReason::RunFailed { detail }
            | BlockReason::MissingSignal { detail }
            | BlockReason::Forge { detail }
            | BlockReason::CiFailing { detail }
            | BlockReason::Conflicts { detail }
            | BlockReason::NoProgress { detail }
            | BlockReason::Looping { detail } => detail,
        }
    };
}

/// Why a task is blocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum BlockReason {
    /// A review-round or total-run cap was reached.
    MaxIterations { detail: String },
    /// The reviewer said `blocked`.
    Agent { detail: String },
    /// The run failed (crash, stall, timeout, unreadable output …).
    RunFailed { detail: String },
    /// The agent ended its turn without the signal its stage requires.
    MissingSignal { detail: String },
    /// Publishing the pull request failed.
    Forge { detail: String },
    /// The pull request's checks kept failing through every fix round.
    CiFailing { detail: String },
    /// The pull request kept conflicting with its base through every rebase round.
    Conflicts { detail: String },
    /// Implement runs kept ending without a new commit or a newly checked to-do item, even
    /// after a nudge.
    NoProgress { detail: String },
    /// The agent kept repeating the same tool call with the same input, even after a nudge.
    Looping { detail: String },
}

impl BlockReason {
    pub fn code(&self) -> &'static str {
        match self {
            BlockReason::MaxIterations { .. } => "max_iterations",
            BlockReason::Agent { .. } => "agent_blocked",
            BlockReason::RunFailed { .. } => "run_failed",
            BlockReason::MissingSignal { .. } => "missing_signal",
            BlockReason::Forge { .. } => "forge_error",
            BlockReason::CiFailing { .. } => "ci_failing",
            BlockReason::Conflicts { .. } => "conflicts",
            BlockReason::NoProgress { .. } => "no_progress",
            BlockReason::Looping { .. } => "looping",
        }
    }

    pub fn detail(&self) -> &str {
        detail_of!(self)
    }

    /// The detail, to change in place (e.g. to hide server paths from a member).
    pub fn detail_mut(&mut self) -> &mut String {
        detail_of!(self)
    }
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.detail())
    }
}

/// Why a task is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DoneReason {
    Merged,
    NoChanges,
}

impl fmt::Display for DoneReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DoneReason::Merged => "merged",
            DoneReason::NoChanges => "no changes to submit",
        })
    }
}

/// Lifecycle of one run (one agent session of one stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for a concurrency slot.
    Queued,
    Running,
    /// Asked a question; resumes in the same session when answered.
    NeedsInput,
    Completed,
    Failed,
    Stopped,
    /// The server died while it ran; a replacement run was started.
    Interrupted,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::NeedsInput,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Stopped,
        RunStatus::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::NeedsInput => "needs_input",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Stopped => "stopped",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
    }

    /// A run that can still produce events or signals.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            RunStatus::Queued | RunStatus::Running | RunStatus::NeedsInput
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows stored before merges could fail keep reading, and a state without a merge error
    /// is written exactly as before.
    #[test]
    fn awaiting_merge_reads_and_writes_the_old_shape() {
        let old: TaskState = serde_json::from_str(r#"{"state":"awaiting_merge"}"#).unwrap();
        assert_eq!(old, TaskState::AwaitingMerge { merge_error: None });
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"state":"awaiting_merge"}"#
        );
        let failed = TaskState::AwaitingMerge {
            merge_error: Some("conflict".into()),
        };
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            serde_json::json!({"state": "awaiting_merge", "merge_error": "conflict"})
        );
        assert_eq!(
            serde_json::to_string(&TaskState::Merging).unwrap(),
            r#"{"state":"merging"}"#
        );
    }
}
