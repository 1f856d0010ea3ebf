//! Transcript events, stored per run with a monotonic `seq`.

use crate::{Result, Tx, now_ms};
use domain::{RunId, Stage, TaskId};
use rusqlite::params;

/// A stored event with its body left as the JSON text it was written as (followers stream it
/// without decoding it).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub run: RunId,
    pub stage: Stage,
    pub seq: i64,
    pub json: String,
}

impl Tx<'_> {
    /// Appends events of one run, each already serialized as a JSON `TranscriptEvent` (callers
    /// assign consecutive `seq`s), and the batch's activity row.
    pub fn append_events(&self, task: TaskId, run: RunId, events: &[(i64, String)]) -> Result<()> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT INTO events (run_id, seq, task_id, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let now = now_ms();
        for (seq, event) in events {
            stmt.execute(params![run.0, seq, task.0, event, now])?;
        }
        self.record_transcript(task, run, events)
    }

    /// The highest `seq` of a run (0 when it has none).
    pub fn last_seq(&self, run: RunId) -> Result<i64> {
        Ok(self.tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?1",
            [run.0],
            |r| r.get(0),
        )?)
    }

    /// A task's events after the cursor `(run, seq)`, in order, at most `limit`.
    pub fn task_events_after(
        &self,
        task: TaskId,
        after: (RunId, i64),
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT e.run_id, r.stage, e.seq, e.body FROM events e JOIN runs r ON r.id = e.run_id
             WHERE e.task_id = ?1 AND (e.run_id, e.seq) > (?2, ?3)
             ORDER BY e.run_id, e.seq LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![task.0, after.0.0, after.1, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (run, stage, seq, body) = row?;
            Ok(StoredEvent {
                run: RunId(run),
                stage: stage
                    .parse()
                    .map_err(|e| crate::StoreError::Corrupt(format!("{e}")))?,
                seq,
                json: body,
            })
        })
        .collect()
    }

    pub fn event_count(&self, run: RunId) -> Result<u64> {
        Ok(self.tx.query_row(
            "SELECT COUNT(*) FROM events WHERE run_id = ?1",
            [run.0],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }
}
