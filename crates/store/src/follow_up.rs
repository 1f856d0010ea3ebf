//! Following a pull request up after it opens: the task's follow-up rounds (CI fixes,
//! rebases), the brief a follow-up run is started with, the comments seen on the pull request
//! (taken up by a run, waiting for one, or ignored with the reason), and the log of webhook
//! deliveries (a delivery id accepted once is a replay the next time).

use crate::{Result, StoreError, Tx, now_ms};
use domain::{PrRounds, ProjectId, RunId, TaskId};
use rusqlite::{OptionalExtension, Row, params};

/// Where a comment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentStatus {
    /// Trusted and addressed to Atelier; waiting for its batching window or for the live run to end.
    Pending,
    /// Carried by a run (`run_id`).
    Taken,
    /// Not acted on; `reason` says why (untrusted author, no mention, Atelier's own reply).
    Ignored,
}

impl CommentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CommentStatus::Pending => "pending",
            CommentStatus::Taken => "taken",
            CommentStatus::Ignored => "ignored",
        }
    }

    fn parse(s: &str) -> Result<CommentStatus> {
        [
            CommentStatus::Pending,
            CommentStatus::Taken,
            CommentStatus::Ignored,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown comment status `{s}`")))
    }
}

/// A comment to record the first time it is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewComment<'a> {
    pub task_id: TaskId,
    /// `issue`, `review` or `review_comment`.
    pub kind: &'a str,
    pub comment_id: u64,
    pub author: &'a str,
    pub association: &'a str,
    pub body: &'a str,
    pub path: Option<&'a str>,
    pub line: Option<u64>,
    pub url: Option<&'a str>,
    pub status: CommentStatus,
    pub reason: Option<&'a str>,
}

/// A recorded comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentRow {
    pub task_id: TaskId,
    pub kind: String,
    pub comment_id: u64,
    pub author: String,
    pub association: String,
    pub body: String,
    pub path: Option<String>,
    pub line: Option<u64>,
    pub url: Option<String>,
    pub status: CommentStatus,
    pub reason: Option<String>,
    pub run_id: Option<RunId>,
    pub acknowledged: bool,
    pub received_at: i64,
}

const COMMENT_COLUMNS: &str = "task_id, kind, comment_id, author, association, body, path, line, \
     url, status, reason, run_id, acknowledged, received_at";

fn comment(row: &Row<'_>) -> rusqlite::Result<(CommentRow, String)> {
    let status: String = row.get(9)?;
    Ok((
        CommentRow {
            task_id: TaskId(row.get(0)?),
            kind: row.get(1)?,
            comment_id: row.get::<_, i64>(2)? as u64,
            author: row.get(3)?,
            association: row.get(4)?,
            body: row.get(5)?,
            path: row.get(6)?,
            line: row.get::<_, Option<i64>>(7)?.map(|l| l as u64),
            url: row.get(8)?,
            status: CommentStatus::Pending,
            reason: row.get(10)?,
            run_id: row.get::<_, Option<i64>>(11)?.map(RunId),
            acknowledged: row.get(12)?,
            received_at: row.get(13)?,
        },
        status,
    ))
}

impl Tx<'_> {
    /// The pull request's follow-up rounds since creation or the last resume.
    pub fn pr_rounds(&self, task: TaskId) -> Result<PrRounds> {
        Ok(self
            .tx
            .query_row(
                "SELECT ci_fix_rounds, conflict_rounds FROM tasks WHERE id = ?1",
                [task.0],
                |r| {
                    Ok(PrRounds {
                        ci_fixes: r.get(0)?,
                        conflicts: r.get(1)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    pub fn set_pr_rounds(&self, task: TaskId, rounds: PrRounds) -> Result<()> {
        self.tx.execute(
            "UPDATE tasks SET ci_fix_rounds = ?2, conflict_rounds = ?3 WHERE id = ?1",
            params![task.0, rounds.ci_fixes, rounds.conflicts],
        )?;
        Ok(())
    }

    /// Records what a follow-up run is for; its prompt carries it.
    pub fn set_run_brief(&self, run: RunId, brief: &str) -> Result<()> {
        self.tx.execute(
            "UPDATE runs SET brief = ?2 WHERE id = ?1",
            params![run.0, brief],
        )?;
        Ok(())
    }

    pub fn run_brief(&self, run: RunId) -> Result<Option<String>> {
        Ok(self
            .tx
            .query_row("SELECT brief FROM runs WHERE id = ?1", [run.0], |r| {
                r.get(0)
            })
            .optional()?
            .flatten())
    }

    /// Records a comment the first time it is seen; returns false when it was already known.
    pub fn insert_comment(&self, new: &NewComment<'_>) -> Result<bool> {
        let inserted = self.tx.execute(
            "INSERT OR IGNORE INTO pr_comments (task_id, kind, comment_id, author, association, body,
             path, line, url, status, reason, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                new.task_id.0,
                new.kind,
                new.comment_id as i64,
                new.author,
                new.association,
                new.body,
                new.path,
                new.line.map(|l| l as i64),
                new.url,
                new.status.as_str(),
                new.reason,
                now_ms()
            ],
        )?;
        Ok(inserted == 1)
    }

    fn comments_where(&self, clause: &str, p: impl rusqlite::Params) -> Result<Vec<CommentRow>> {
        let sql = format!(
            "SELECT {COMMENT_COLUMNS} FROM pr_comments WHERE {clause} ORDER BY received_at, rowid"
        );
        let mut stmt = self.tx.prepare(&sql)?;
        let rows = stmt.query_map(p, comment)?;
        rows.map(|r| {
            let (mut row, status) = r?;
            row.status = CommentStatus::parse(&status)?;
            Ok(row)
        })
        .collect()
    }

    /// Every comment recorded for the task, oldest first.
    pub fn comments(&self, task: TaskId) -> Result<Vec<CommentRow>> {
        self.comments_where("task_id = ?1", [task.0])
    }

    /// Trusted comments no run has taken up yet, oldest first.
    pub fn pending_comments(&self, task: TaskId) -> Result<Vec<CommentRow>> {
        self.comments_where("task_id = ?1 AND status = 'pending'", [task.0])
    }

    /// The comments `run` carried.
    pub fn comments_of_run(&self, run: RunId) -> Result<Vec<CommentRow>> {
        self.comments_where("run_id = ?1", [run.0])
    }

    /// Hands every pending comment of the task to `run`.
    pub fn take_pending_comments(&self, task: TaskId, run: RunId) -> Result<u32> {
        Ok(self.tx.execute(
            "UPDATE pr_comments SET status = 'taken', run_id = ?2
             WHERE task_id = ?1 AND status = 'pending'",
            params![task.0, run.0],
        )? as u32)
    }

    /// Pending or taken comments not yet acknowledged on the forge.
    pub fn unacknowledged_comments(&self, task: TaskId) -> Result<Vec<CommentRow>> {
        self.comments_where(
            "task_id = ?1 AND status IN ('pending', 'taken') AND acknowledged = 0",
            [task.0],
        )
    }

    pub fn mark_acknowledged(&self, task: TaskId, kind: &str, comment_id: u64) -> Result<()> {
        self.tx.execute(
            "UPDATE pr_comments SET acknowledged = 1
             WHERE task_id = ?1 AND kind = ?2 AND comment_id = ?3",
            params![task.0, kind, comment_id as i64],
        )?;
        Ok(())
    }

    /// Comments carried by a run that has ended and not answered yet.
    pub fn unanswered_comments(&self, task: TaskId) -> Result<Vec<CommentRow>> {
        self.comments_where(
            "task_id = ?1 AND status = 'taken' AND replied = 0 AND run_id IN
             (SELECT id FROM runs WHERE status NOT IN ('queued', 'running', 'needs_input'))",
            [task.0],
        )
    }

    pub fn mark_replied(&self, task: TaskId, kind: &str, comment_id: u64) -> Result<()> {
        self.tx.execute(
            "UPDATE pr_comments SET replied = 1
             WHERE task_id = ?1 AND kind = ?2 AND comment_id = ?3",
            params![task.0, kind, comment_id as i64],
        )?;
        Ok(())
    }

    /// The task whose pull request in `project` has this forge number.
    pub fn task_by_pr_number(&self, project: ProjectId, number: u64) -> Result<Option<TaskId>> {
        Ok(self
            .tx
            .query_row(
                "SELECT p.task_id FROM pull_requests p JOIN tasks t ON t.id = p.task_id
                 WHERE t.project_id = ?1 AND p.number = ?2",
                params![project.0, number as i64],
                |r| r.get(0),
            )
            .optional()?
            .map(TaskId))
    }

    /// The tasks of `project` whose pull request's head is `sha`.
    pub fn tasks_by_head_sha(&self, project: ProjectId, sha: &str) -> Result<Vec<TaskId>> {
        let mut stmt = self.tx.prepare(
            "SELECT p.task_id FROM pull_requests p JOIN tasks t ON t.id = p.task_id
             WHERE t.project_id = ?1 AND p.head_sha = ?2",
        )?;
        let rows = stmt.query_map(params![project.0, sha], |r| r.get(0))?;
        Ok(rows
            .collect::<rusqlite::Result<Vec<i64>>>()?
            .into_iter()
            .map(TaskId)
            .collect())
    }

    /// Tasks with a pull request that is not known merged and a task not done: the ones whose
    /// pull request is followed.
    pub fn tasks_to_follow(&self) -> Result<Vec<TaskId>> {
        let mut stmt = self.tx.prepare(
            "SELECT p.task_id FROM pull_requests p JOIN tasks t ON t.id = p.task_id
             WHERE p.merged = 0 AND t.state_name != 'done' ORDER BY p.task_id",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows
            .collect::<rusqlite::Result<Vec<i64>>>()?
            .into_iter()
            .map(TaskId)
            .collect())
    }

    /// Whether a webhook delivery with this id was accepted before (a replay if so).
    pub fn delivery_seen(&self, delivery: &str) -> Result<bool> {
        let found: Option<i64> = self
            .tx
            .query_row(
                "SELECT id FROM webhook_deliveries WHERE delivery = ?1 AND outcome = 'accepted'",
                [delivery],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }

    /// Logs a webhook delivery and what became of it (`accepted`, `replayed`, `rejected: …`).
    pub fn record_delivery(
        &self,
        delivery: Option<&str>,
        event: &str,
        project: Option<ProjectId>,
        outcome: &str,
    ) -> Result<()> {
        self.tx.execute(
            "INSERT INTO webhook_deliveries (delivery, event, project_id, outcome, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![delivery, event, project.map(|p| p.0), outcome, now_ms()],
        )?;
        Ok(())
    }

    /// The latest webhook deliveries, newest first: (delivery id, event, outcome).
    pub fn recent_deliveries(&self, limit: u32) -> Result<Vec<(Option<String>, String, String)>> {
        let mut stmt = self.tx.prepare(
            "SELECT delivery, event, outcome FROM webhook_deliveries ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
