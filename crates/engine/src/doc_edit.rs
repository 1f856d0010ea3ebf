//! A person editing a task's doc (the plan, the to-do list, notes) from the web UI or the API.
//! The task's owner, the project's owners and administrators may; never while an agent of the
//! task is queued or running (it writes the same file), so an edit cannot be lost under an
//! agent's write or the other way round. The file is replaced atomically.

use crate::Engine;
use crate::accounts::Acting;
use crate::error::{EngineError, Result};
use domain::TaskId;
use std::path::Path;
use store::Tx;

/// The largest doc accepted (the request body limit is the outer bound).
pub const MAX_DOC_BYTES: usize = 1_000_000;

impl Engine {
    /// Replaces the task's doc with `text`.
    pub async fn edit_doc(&self, id: TaskId, text: String) -> Result<()> {
        if text.len() > MAX_DOC_BYTES {
            return Err(EngineError::InvalidInput(format!(
                "the doc is {} bytes; at most {MAX_DOC_BYTES} are accepted",
                text.len()
            )));
        }
        let doc_path = self.inner.store.read(|tx| {
            self.check_task(tx, id)?;
            let task = tx
                .task(id)?
                .ok_or_else(|| crate::transition::not_found(id))?;
            self.may_edit_doc(tx, &task)?;
            Ok::<_, EngineError>(task.doc_path)
        })?;
        crate::findings::replace_file(Path::new(&doc_path), text.as_bytes())
            .map_err(|e| EngineError::Internal(format!("cannot write the doc {doc_path}: {e}")))?;
        self.audit("task.edit_doc", &format!("task {id}"), None);
        Ok(())
    }

    /// Whether the caller may edit the task's doc now, and why not: the task's owner, the
    /// project's owners and administrators may, while no agent of the task is at work. The one
    /// rule for the edit itself and for the `edit_doc` action a task's detail offers.
    pub(crate) fn may_edit_doc(&self, tx: &Tx<'_>, task: &store::TaskRow) -> Result<()> {
        let owns_task = match &self.acting {
            Acting::User(who) => tx.task_owner(task.id)? == Some(who.user),
            Acting::System => true,
        };
        if !owns_task {
            self.require_owner(tx, task.project_id).map_err(|_| {
                EngineError::Forbidden(
                    "only the task's owner, the project's owners and administrators may edit its doc"
                        .into(),
                )
            })?;
        }
        let runs = tx.runs_of_task(task.id)?;
        if crate::views::in_motion(&runs, &task.state) {
            return Err(EngineError::Conflict(format!(
                "an agent of task {} is at work and writes this doc: stop it first (or wait), then edit",
                task.id
            )));
        }
        Ok(())
    }
}
