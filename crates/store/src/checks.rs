//! The checks (CI) the forge last reported for a task's pull request, kept so that people see
//! them — on the task page and the board — without asking the forge. One row per task: what
//! the last follow-up read, for the commit it read them on. Recording the same list again
//! changes nothing; a different one is written with a `pull_request` activity row, so the live
//! stream tells followers.

use crate::{ActivityKind, Result, StoreError, Tx, now_ms};
use domain::TaskId;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// One check of a commit, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRow {
    /// The check run's name or the commit status's context.
    pub name: String,
    /// `pending`, `passed` or `failed`.
    pub state: String,
    /// Where a human sees it, as the forge gave it (not validated here: whoever renders it
    /// links only web addresses).
    pub url: Option<String>,
    /// Whether it counts: branch protection requires it, or no requirement is known.
    pub counted: bool,
}

/// The checks last read for a task's pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrChecksRow {
    pub task_id: TaskId,
    /// The commit they were read on.
    pub head_sha: String,
    /// `pending`, `passed`, `failed` or `none` (nothing reported, nothing required).
    pub overall: String,
    pub checks: Vec<CheckRow>,
    /// When they were last read (ms since the epoch), changed or not.
    pub read_at: i64,
}

impl Tx<'_> {
    /// Records what the forge reported; `true` when it differs from what was recorded (then a
    /// `pull_request` activity row tells the live stream), `false` when only `read_at` moved.
    pub fn record_pr_checks(
        &self,
        task: TaskId,
        head_sha: &str,
        overall: &str,
        checks: &[CheckRow],
    ) -> Result<bool> {
        let json = serde_json::to_string(checks)
            .map_err(|err| StoreError::Corrupt(format!("cannot encode checks: {err}")))?;
        let now = now_ms();
        let before: Option<(String, String, String)> = self
            .tx
            .query_row(
                "SELECT head_sha, overall, checks FROM pr_checks WHERE task_id = ?1",
                [task.0],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let same = before
            .as_ref()
            .is_some_and(|(sha, was, list)| sha == head_sha && was == overall && *list == json);
        self.tx.execute(
            "INSERT INTO pr_checks (task_id, head_sha, overall, checks, read_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(task_id) DO UPDATE SET head_sha = ?2, overall = ?3, checks = ?4, read_at = ?5",
            params![task.0, head_sha, overall, json, now],
        )?;
        if same {
            return Ok(false);
        }
        self.record_activity(
            task,
            ActivityKind::PullRequest,
            serde_json::json!({
                "change": "checks",
                "head_sha": head_sha,
                "checks": overall,
            }),
        )?;
        Ok(true)
    }

    /// The checks last recorded for `task`'s pull request.
    pub fn pr_checks(&self, task: TaskId) -> Result<Option<PrChecksRow>> {
        let row: Option<(String, String, String, i64)> = self
            .tx
            .query_row(
                "SELECT head_sha, overall, checks, read_at FROM pr_checks WHERE task_id = ?1",
                [task.0],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        row.map(|(head_sha, overall, checks, read_at)| {
            let checks = serde_json::from_str(&checks).map_err(|err| {
                StoreError::Corrupt(format!("the checks of task {task} are unreadable: {err}"))
            })?;
            Ok(PrChecksRow {
                task_id: task,
                head_sha,
                overall,
                checks,
                read_at,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::CheckRow;
    use crate::tasks::tests::{insert, project};
    use crate::{ActivityKind, Store};
    use domain::TaskId;

    fn check(name: &str, state: &str) -> CheckRow {
        CheckRow {
            name: name.into(),
            state: state.into(),
            url: Some(format!("https://ci.example/{name}")),
            counted: true,
        }
    }

    #[test]
    fn a_changed_list_is_recorded_and_streamed_and_the_same_list_again_only_read() {
        let store = Store::open_memory().unwrap();
        let task = TaskId(1);
        insert(&store, task, project(&store));
        let streamed = || {
            store
                .read(|tx| tx.recent_activity(100, None))
                .unwrap()
                .into_iter()
                .filter(|a| a.kind == ActivityKind::PullRequest)
                .count()
        };
        assert_eq!(store.read(|tx| tx.pr_checks(task)).unwrap(), None);
        let pending = vec![check("build", "pending")];
        let record = |sha: &str, overall: &str, checks: &[CheckRow]| {
            store
                .write(|tx| tx.record_pr_checks(task, sha, overall, checks))
                .unwrap()
        };
        assert!(record("abc", "pending", &pending));
        assert_eq!(streamed(), 1);
        assert!(
            !record("abc", "pending", &pending),
            "the same list is no change"
        );
        assert_eq!(streamed(), 1, "and is not streamed again");
        let failed = vec![check("build", "failed")];
        assert!(record("abc", "failed", &failed));
        let row = store.read(|tx| tx.pr_checks(task)).unwrap().unwrap();
        assert_eq!(
            (row.head_sha.as_str(), row.overall.as_str(), &row.checks),
            ("abc", "failed", &failed)
        );
        assert!(record("def", "failed", &failed), "a new head is a change");
        assert_eq!(streamed(), 3);
        store.write(|tx| tx.delete_task(task)).unwrap();
        assert_eq!(store.read(|tx| tx.pr_checks(task)).unwrap(), None);
    }
}
