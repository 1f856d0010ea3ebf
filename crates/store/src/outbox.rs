//! The outbox: intents of side effects outside Atelier (push and open a PR, merge it, remove a
//! worktree), each with an idempotency key. Written in the same transaction as the state change
//! that produced them; an intent without an outcome is replayed after a crash.

use crate::{Result, Tx, now_ms};
use domain::TaskId;
use rusqlite::params;

/// What an intent asks for: the closed set of side effects the outbox carries out.
///
/// It lives here, beside [`Intent`], rather than in `domain`: the rules speak of effects
/// (`domain::Effect`), and which effects become durable intents, under which stored names, is
/// the outbox's (this table's) vocabulary. [`IntentKind::as_str`] is the TEXT stored in the
/// `kind` column; the values are those of earlier versions, so no migration is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntentKind {
    /// Push the task branch and open (or update) its pull request: `open_pr`.
    OpenPr,
    /// Merge the task's pull request: `merge_pr`.
    MergePr,
    /// Remove the task's worktree, branch and agents' home: `remove_workspace`.
    RemoveWorkspace,
}

impl IntentKind {
    /// Every kind, for exhaustive checks.
    pub const ALL: [IntentKind; 3] = [
        IntentKind::OpenPr,
        IntentKind::MergePr,
        IntentKind::RemoveWorkspace,
    ];

    /// The name stored in the outbox's `kind` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            IntentKind::OpenPr => "open_pr",
            IntentKind::MergePr => "merge_pr",
            IntentKind::RemoveWorkspace => "remove_workspace",
        }
    }

    /// The kind a stored name stands for; an unknown name (written by a newer Atelier, or by
    /// hand) is an error naming it.
    pub fn parse(text: &str) -> Result<IntentKind, UnknownIntentKind> {
        IntentKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownIntentKind(text.to_string()))
    }
}

impl std::fmt::Display for IntentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored intent kind this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown intent kind `{0}` (known: open_pr, merge_pr, remove_workspace); it was written by \
     another version of Atelier and cannot be carried out by this one"
)]
pub struct UnknownIntentKind(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIntent<'a> {
    pub task_id: TaskId,
    pub kind: IntentKind,
    pub idem_key: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: i64,
    pub task_id: TaskId,
    /// The kind, or the stored name when this version does not know it: one unknown row must
    /// not hide the other intents, so it is reported per row instead of failing the read.
    pub kind: Result<IntentKind, UnknownIntentKind>,
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
            params![new.task_id.0, new.kind.as_str(), new.idem_key, now_ms()],
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
                    kind: IntentKind::parse(&r.get::<_, String>(2)?),
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

#[cfg(test)]
mod tests {
    use super::{IntentKind, NewIntent, UnknownIntentKind};
    use crate::{NewProjectRow, NewTaskRow, Store};
    use domain::{Stage, TaskId, TaskState};

    #[test]
    fn intent_kinds_round_trip_through_their_stored_names() {
        for kind in IntentKind::ALL {
            assert_eq!(IntentKind::parse(kind.as_str()), Ok(kind));
        }
        // The stored names are those earlier versions wrote.
        let names: Vec<&str> = IntentKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["open_pr", "merge_pr", "remove_workspace"]);
        let err = IntentKind::parse("launch_rocket").unwrap_err();
        assert_eq!(err, UnknownIntentKind("launch_rocket".into()));
        assert!(
            err.to_string()
                .starts_with("unknown intent kind `launch_rocket`"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_stored_kind_is_reported_on_its_row_without_hiding_the_others() {
        let store = Store::open_memory().unwrap();
        let task = store
            .write(|tx| {
                let project = tx.insert_project(&NewProjectRow {
                    name: "p",
                    path: "/p",
                    default_branch: "main",
                    settings_json: "{}",
                })?;
                let id = tx.allocate_task_id()?;
                tx.insert_task(&NewTaskRow {
                    pipeline_prompts: None,
                    project_prompts: None,
                    pipeline_def: None,
                    id,
                    project_id: project.id,
                    title: "t",
                    body: "b",
                    key: "1-t",
                    branch: "atelier/t",
                    base: "main",
                    state: &TaskState::Stopped { stage: Stage::Plan },
                    priority: 0,
                    technical: false,
                    worktree: "/w",
                    doc_path: "/d",
                    port: 20000,
                    pipeline: "standard",
                })?;
                Ok::<TaskId, crate::StoreError>(id)
            })
            .unwrap();
        store
            .write(|tx| {
                tx.insert_intent(&NewIntent {
                    task_id: task,
                    kind: IntentKind::OpenPr,
                    idem_key: "open_pr:1",
                })?;
                tx.tx.execute(
                    "INSERT INTO outbox (task_id, kind, idem_key, created_at) VALUES (?1, 'launch_rocket', 'x:1', 0)",
                    [task.0],
                )?;
                tx.insert_intent(&NewIntent {
                    task_id: task,
                    kind: IntentKind::RemoveWorkspace,
                    idem_key: "remove_workspace:1",
                })
            })
            .unwrap();
        let kinds: Vec<_> = store
            .read(|tx| tx.pending_intents())
            .unwrap()
            .into_iter()
            .map(|intent| intent.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                Ok(IntentKind::OpenPr),
                Err(UnknownIntentKind("launch_rocket".into())),
                Ok(IntentKind::RemoveWorkspace),
            ]
        );
        let stored: String = store
            .read(|tx| {
                tx.tx
                    .query_row("SELECT kind FROM outbox ORDER BY id LIMIT 1", [], |r| {
                        r.get(0)
                    })
                    .map_err(crate::StoreError::from)
            })
            .unwrap();
        assert_eq!(stored, "open_pr");
    }
}
