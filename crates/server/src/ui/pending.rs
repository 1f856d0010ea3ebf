//! TEMPORARY: engine entry points the UI uses that land with the engine branch.

use crate::backend::Backend;
use engine::Result;

pub(crate) trait Pending {
    fn setup_needed(&self) -> bool {
        false
    }
    async fn setup_first_admin(
        &self,
        _token: String,
        _login: String,
        _password: String,
    ) -> Result<()> {
        Err(engine::EngineError::Conflict(
            "setup is not available yet".into(),
        ))
    }
    async fn stream_head(&self) -> Result<String> {
        Ok(String::new())
    }
    async fn transcript(
        &self,
        _id: domain::TaskId,
        _q: api::TranscriptQuery,
    ) -> Result<api::TranscriptPage> {
        Ok(api::TranscriptPage::default())
    }
}

impl<B: Backend> Pending for B {}

/// TEMPORARY transcript types (the engine branch brings the real ones).
pub(crate) mod api {
    use domain::{RunId, Stage, TranscriptEvent};
    #[derive(Debug, Clone)]
    pub struct TranscriptEntry {
        pub run: RunId,
        pub stage: Stage,
        pub seq: i64,
        pub event: TranscriptEvent,
        pub at_ms: i64,
    }
    #[derive(Debug, Clone)]
    pub enum TranscriptQuery {
        Last { limit: u32 },
        After { run: RunId, seq: i64, limit: u32 },
        Before { run: RunId, seq: i64, limit: u32 },
    }
    #[derive(Debug, Clone, Default)]
    pub struct TranscriptPage {
        pub entries: Vec<TranscriptEntry>,
        pub earlier: bool,
    }
}

/// TEMPORARY allowed actions (the engine branch computes them from the state machine).
pub(crate) fn actions(state: &domain::TaskState) -> Vec<String> {
    use domain::TaskState::*;
    let list: &[&str] = match state {
        Running { .. } | NeedsInput { .. } | Waiting { .. } => &["stop", "answer"],
        PlanGate => &["approve", "request_changes", "stop"],
        Blocked { .. } | Stopped { .. } | Closed => &[
            "resume",
            "run:plan",
            "run:implement",
            "run:review",
            "run:pr",
        ],
        AwaitingMerge { .. } => &["merge", "run:pr"],
        _ => &[],
    };
    list.iter().map(|s| s.to_string()).collect()
}
