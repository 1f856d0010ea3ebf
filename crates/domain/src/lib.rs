//! Atelier's pure model: ids, stages, signals, transcript events, task states and the pipeline
//! state machine `(state, event) → (state, effects)`. No I/O, no async, no clock: everything here
//! is a value, so every rule is testable with a table.

pub mod ids;
pub mod names;
pub mod pipeline;
pub mod pipeline_def;
pub mod signal;
pub mod slug;
pub mod stage;
pub mod task;
pub mod todo;
pub mod transcript;

pub use ids::{ProjectId, RunId, TaskId};
pub use names::{InvalidProjectName, InvalidTaskTitle, ProjectName, TaskTitle};
pub use pipeline::{
    Action, Decision, Effect, Event, Next, Pipeline, Policy, PrRounds, Rejection, RestartCause,
    RunOutcome, StageHistory, TaskSnapshot, UnknownPipeline, allowed_actions, decide,
};
pub use signal::{QaResult, Signal, Verdict};
pub use stage::Stage;
pub use task::{BlockReason, DoneReason, RunStatus, TaskState};
pub use todo::{TodoItem, checked_count, todo_items, unchecked_items};
pub use transcript::{SessionMode, TranscriptEvent};
