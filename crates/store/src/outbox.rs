//! The outbox: intents of side effects outside Atelier (push and open a PR, merge it, remove a
//! worktree), each with an idempotency key. Written in the same transaction as the state change
//! that produced them; an intent without an outcome is replayed after a crash.

use crate::{Result, Tx, now_ms};
use domain::TaskId;
use rusqlite::params;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIntent<'a> {
    pub task_id: TaskId,
    pub kind: &'a str,
    pub idem_key: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: i64,
    pub task_id: TaskId,
    pub kind: String,
    pub idem_key: String,
    pub attempts: u32,
    pub done_at: Option<i64>,
    pub outcome: Option<String>,
}

impl Tx<'_> {
    /// Records an intent; returns false when one with the same key already exists.
    pub fn insert_intent(&self, new: &NewIntent<'_>) -> Result<bool> {
        let inserted = self.tx.execute(
            "INSERT OR IGNORE INTO outbox (task_id, kind, idem_key, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![new.task_id.0, new.kind, new.idem_key, now_ms()],
        )?;
        Ok(inserted == 1)
    }

    fn intents_where(&self, clause: &str, p: impl rusqlite::Params) -> Result<Vec<Intent>> {
        let sql = format!(
            "SELECT id, task_id, kind, idem_key, attempts, done_at, outcome FROM outbox WHERE {clause} ORDER BY id"
        );
        let mut stmt = self.tx.prepare(&sql)?;
        let rows = stmt
            .query_map(p, |r| {
                Ok(Intent {
                    id: r.get(0)?,
                    task_id: TaskId(r.get(1)?),
                    kind: r.get(2)?,
                    idem_key: r.get(3)?,
                    attempts: r.get(4)?,
                    done_at: r.get(5)?,
                    outcome: r.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Intents with no recorded outcome, oldest first.
    pub fn pending_intents(&self) -> Result<Vec<Intent>> {
        self.intents_where("done_at IS NULL", [])
    }

    pub fn intents_of_task(&self, task: TaskId) -> Result<Vec<Intent>> {
        self.intents_where("task_id = ?1", [task.0])
    }

    pub fn intent_attempted(&self, id: i64) -> Result<()> {
        self.tx.execute(
            "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    pub fn complete_intent(&self, id: i64, outcome: &str) -> Result<()> {
        self.tx.execute(
            "UPDATE outbox SET done_at = ?2, outcome = ?3 WHERE id = ?1",
            params![id, now_ms(), outcome],
        )?;
        Ok(())
    }
}
