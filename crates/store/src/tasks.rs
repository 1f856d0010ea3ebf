//! Task rows (workflow state as JSON plus counters) and their pull-request records.

use crate::{ActivityKind, Result, StoreError, Tx, from_json, now_ms, to_json};
use domain::{ProjectId, TaskId, TaskSnapshot, TaskState};
use rusqlite::{OptionalExtension, Row, params};

#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: TaskId,
    pub project_id: ProjectId,
    pub title: String,
    pub body: String,
    pub key: String,
    pub branch: String,
    pub base: String,
    pub state: TaskState,
    pub priority: i64,
    pub technical: bool,
    pub worktree: Option<String>,
    pub doc_path: String,
    pub port: u16,
    pub review_rounds: u32,
    pub runs_started: u32,
    pub created_at: i64,
    pub updated_at: i64,
    /// The name of the pipeline the task runs (migration 12; `standard` for older tasks).
    pub pipeline: String,
    pub qa_rounds: u32,
    /// The definition (JSON of `domain::pipeline_def::PipelineDef`) of a pipeline that is not
    /// built in, as the task was created with it; `None` for a built-in (found by name).
    pub pipeline_def: Option<String>,
    /// The texts of that definition's prompt files (JSON object: path → text).
    pub pipeline_prompts: Option<String>,
    /// The project's prompt overrides when the task was created (JSON object: key → text, as
    /// in the project's `prompts` setting); `None` when it had none.
    pub project_prompts: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewTaskRow<'a> {
    pub id: TaskId,
    pub project_id: ProjectId,
    pub title: &'a str,
    pub body: &'a str,
    pub key: &'a str,
    pub branch: &'a str,
    pub base: &'a str,
    pub state: &'a TaskState,
    pub priority: i64,
    pub technical: bool,
    pub worktree: &'a str,
    pub doc_path: &'a str,
    pub port: u16,
    /// The name of the pipeline the task runs (the engine checks it is runnable).
    pub pipeline: &'a str,
    /// A pipeline that is not built in: its definition and prompt texts (see [`TaskRow`]).
    pub pipeline_def: Option<&'a str>,
    pub pipeline_prompts: Option<&'a str>,
    /// The project's prompt overrides to keep for the task (see [`TaskRow`]).
    pub project_prompts: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestRow {
    pub task_id: TaskId,
    pub url: String,
    /// The title it was opened with on the forge.
    pub title: String,
    /// The forge's number for it (GitHub's PR number); `None` on the local forge.
    pub number: Option<u64>,
    pub branch: String,
    pub base: String,
    pub remote: String,
    pub head_sha: String,
    pub merged: bool,
    pub created_at: i64,
}

const COLUMNS: &str = "id, project_id, title, body, key, branch, base, state, priority, technical, \
     worktree, doc_path, port, review_rounds, runs_started, created_at, updated_at, pipeline, qa_rounds, pipeline_def, pipeline_prompts, \
     project_prompts";

fn task(row: &Row<'_>) -> rusqlite::Result<(TaskRow, String)> {
    let state_json: String = row.get(7)?;
    Ok((
        TaskRow {
            id: TaskId(row.get(0)?),
            project_id: ProjectId(row.get(1)?),
            title: row.get(2)?,
            body: row.get(3)?,
            key: row.get(4)?,
            branch: row.get(5)?,
            base: row.get(6)?,
            state: TaskState::PlanGate,
            priority: row.get(8)?,
            technical: row.get(9)?,
            worktree: row.get(10)?,
            doc_path: row.get(11)?,
            port: row.get(12)?,
            review_rounds: row.get(13)?,
            runs_started: row.get(14)?,
            created_at: row.get(15)?,
            updated_at: row.get(16)?,
            pipeline: row.get(17)?,
            qa_rounds: row.get(18)?,
            pipeline_def: row.get(19)?,
            pipeline_prompts: row.get(20)?,
            project_prompts: row.get(21)?,
        },
        state_json,
    ))
}

/// The pipeline a task runs: its recorded definition, or the built-in of its name.
pub fn task_pipeline(task: &TaskRow) -> Result<domain::Pipeline> {
    let corrupt = |e: String| StoreError::Corrupt(format!("task {}: {e}", task.id));
    match &task.pipeline_def {
        Some(json) => {
            let def = from_json::<domain::pipeline_def::PipelineDef>(json)?;
            domain::Pipeline::new(def).map_err(|e| corrupt(e.to_string()))
        }
        None => domain::Pipeline::parse_builtin(&task.pipeline).map_err(|e| corrupt(e.to_string())),
    }
}

fn finish((mut row, state_json): (TaskRow, String)) -> Result<TaskRow> {
    row.state = from_json(&state_json)?;
    Ok(row)
}

impl Tx<'_> {
    /// Takes the next task id for good. Ids come from a counter that only grows (it is committed
    /// before the task's folders are made, which carry the id), so an id is never handed out
    /// twice, even when a crash left the folders of a task whose row was never written, or a
    /// task was deleted.
    pub fn allocate_task_id(&self) -> Result<TaskId> {
        let id: i64 = self.tx.query_row(
            "UPDATE task_ids SET last = MAX(last, (SELECT COALESCE(MAX(id), 0) FROM tasks)) + 1 \
             RETURNING last",
            [],
            |r| r.get(0),
        )?;
        Ok(TaskId(id))
    }

    pub fn insert_task(&self, new: &NewTaskRow<'_>) -> Result<()> {
        let now = now_ms();
        self.tx.execute(
            &format!(
                "INSERT INTO tasks ({COLUMNS}, state_name) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 0, 0, ?14, ?14, ?16, 0, ?17, ?18, ?19, ?15)"
            ),
            params![
                new.id.0,
                new.project_id.0,
                new.title,
                new.body,
                new.key,
                new.branch,
                new.base,
                to_json(new.state)?,
                new.priority,
                new.technical,
                new.worktree,
                new.doc_path,
                new.port,
                now,
                new.state.name(),
                new.pipeline,
                new.pipeline_def,
                new.pipeline_prompts,
                new.project_prompts,
            ],
        )?;
        self.record_activity(
            new.id,
            ActivityKind::Task,
            serde_json::json!({ "change": "created", "title": new.title, "state": new.state }),
        )?;
        Ok(())
    }

    pub fn task(&self, id: TaskId) -> Result<Option<TaskRow>> {
        let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1");
        self.tx
            .query_row(&sql, [id.0], task)
            .optional()?
            .map(finish)
            .transpose()
    }

    /// All tasks (of one project when given), newest first.
    pub fn tasks(&self, project: Option<ProjectId>) -> Result<Vec<TaskRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tasks WHERE (?1 IS NULL OR project_id = ?1) ORDER BY id DESC"
        );
        let mut stmt = self.tx.prepare(&sql)?;
        let rows = stmt.query_map([project.map(|p| p.0)], task)?;
        rows.map(|row| finish(row?)).collect()
    }

    /// One page of tasks in ascending id order: at most `limit` tasks with an id above `after`,
    /// optionally of one project (a real `LIMIT`, not a slice of every row).
    pub fn tasks_page(
        &self,
        project: Option<ProjectId>,
        after: Option<TaskId>,
        limit: u32,
        member: Option<crate::UserId>,
    ) -> Result<Vec<TaskRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tasks WHERE (?1 IS NULL OR project_id = ?1) AND id > ?2 \
             AND (?4 IS NULL OR project_id IN (SELECT project_id FROM memberships WHERE user_id = ?4)) \
             ORDER BY id LIMIT ?3"
        );
        let mut stmt = self.tx.prepare(&sql)?;
        let rows = stmt.query_map(
            params![
                project.map(|p| p.0),
                after.map_or(0, |t| t.0),
                limit,
                member.map(|u| u.0)
            ],
            task,
        )?;
        rows.map(|row| finish(row?)).collect()
    }

    /// Tasks in a given state (`TaskState::name`).
    pub fn tasks_in_state(&self, state_name: &str) -> Result<Vec<TaskRow>> {
        let sql = format!("SELECT {COLUMNS} FROM tasks WHERE state_name = ?1 ORDER BY id");
        let mut stmt = self.tx.prepare(&sql)?;
        let rows = stmt.query_map([state_name], task)?;
        rows.map(|row| finish(row?)).collect()
    }

    /// Ports already handed to tasks that are not done.
    pub fn ports_in_use(&self) -> Result<Vec<u16>> {
        let mut stmt = self
            .tx
            .prepare("SELECT port FROM tasks WHERE state_name != 'done'")?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Writes a decision's state and counters.
    pub fn update_task_state(
        &self,
        id: TaskId,
        state: &TaskState,
        review_rounds: u32,
        qa_rounds: u32,
        runs_started: u32,
    ) -> Result<()> {
        let before: Option<String> = self
            .tx
            .query_row("SELECT state FROM tasks WHERE id = ?1", [id.0], |r| {
                r.get(0)
            })
            .optional()?;
        let state_json = to_json(state)?;
        let changed = self.tx.execute(
            "UPDATE tasks SET state = ?2, state_name = ?3, review_rounds = ?4, runs_started = ?5,
             updated_at = ?6, qa_rounds = ?7 WHERE id = ?1",
            params![
                id.0,
                state_json,
                state.name(),
                review_rounds,
                runs_started,
                now_ms(),
                qa_rounds
            ],
        )?;
        if changed == 0 {
            return Err(StoreError::Corrupt(format!("task {id} does not exist")));
        }
        if before.as_deref() != Some(state_json.as_str()) {
            self.record_activity(
                id,
                ActivityKind::Task,
                serde_json::json!({ "change": "state", "state": state }),
            )?;
        }
        Ok(())
    }

    /// Deletes a task and everything recorded about it (runs, events, signals, intents, its
    /// pull-request record).
    pub fn delete_task(&self, id: TaskId) -> Result<()> {
        for sql in [
            "DELETE FROM events WHERE run_id IN (SELECT id FROM runs WHERE task_id = ?1)",
            "DELETE FROM signals WHERE task_id = ?1",
            "DELETE FROM runs WHERE task_id = ?1",
            "DELETE FROM outbox WHERE task_id = ?1",
            "DELETE FROM pull_requests WHERE task_id = ?1",
            "DELETE FROM pr_checks WHERE task_id = ?1",
            "DELETE FROM pr_comments WHERE task_id = ?1",
            "DELETE FROM tasks WHERE id = ?1",
            "DELETE FROM activity WHERE task_id = ?1",
        ] {
            self.tx.execute(sql, [id.0])?;
        }
        // What was streamed of the task is gone with it; its followers learn it was deleted.
        self.record_activity(
            id,
            ActivityKind::Task,
            serde_json::json!({ "change": "deleted" }),
        )?;
        Ok(())
    }

    pub fn clear_worktree(&self, id: TaskId) -> Result<()> {
        self.tx
            .execute("UPDATE tasks SET worktree = NULL WHERE id = ?1", [id.0])?;
        Ok(())
    }

    /// The snapshot the pipeline rules decide on.
    pub fn snapshot(&self, task: &TaskRow) -> Result<TaskSnapshot> {
        Ok(TaskSnapshot {
            state: task.state.clone(),
            review_rounds: task.review_rounds,
            qa_rounds: task.qa_rounds,
            runs_started: task.runs_started,
            owner_technical: task.technical,
            live_run: self.live_run(task.id)?.map(|run| run.id),
            pr_rounds: self.pr_rounds(task.id)?,
            has_pull_request: self.pull_request(task.id)?.is_some(),
            history: self.stage_history(task.id)?,
            pipeline: task_pipeline(task)?,
        })
    }

    pub fn upsert_pull_request(&self, pr: &PullRequestRow) -> Result<()> {
        self.tx.execute(
            "INSERT INTO pull_requests (task_id, url, branch, base, remote, head_sha, merged, created_at, number, title)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(task_id) DO UPDATE SET url = ?2, head_sha = ?6, merged = ?7, number = ?9, title = ?10",
            params![
                pr.task_id.0,
                pr.url,
                pr.branch,
                pr.base,
                pr.remote,
                pr.head_sha,
                pr.merged,
                pr.created_at,
                pr.number.map(|n| n as i64),
                pr.title
            ],
        )?;
        self.record_activity(
            pr.task_id,
            ActivityKind::PullRequest,
            serde_json::json!({
                "url": pr.url,
                "number": pr.number,
                "branch": pr.branch,
                "head_sha": pr.head_sha,
                "merged": pr.merged,
            }),
        )?;
        Ok(())
    }

    pub fn pull_request(&self, task: TaskId) -> Result<Option<PullRequestRow>> {
        Ok(self
            .tx
            .query_row(
                "SELECT task_id, url, branch, base, remote, head_sha, merged, created_at, number, title
                 FROM pull_requests WHERE task_id = ?1",
                [task.0],
                |r| {
                    Ok(PullRequestRow {
                        task_id: TaskId(r.get(0)?),
                        url: r.get(1)?,
                        branch: r.get(2)?,
                        base: r.get(3)?,
                        remote: r.get(4)?,
                        head_sha: r.get(5)?,
                        merged: r.get(6)?,
                        created_at: r.get(7)?,
                        number: r.get::<_, Option<i64>>(8)?.map(|n| n as u64),
                        title: r.get(9)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn pull_request_count(&self, task: TaskId) -> Result<u32> {
        Ok(self.tx.query_row(
            "SELECT COUNT(*) FROM pull_requests WHERE task_id = ?1",
            [task.0],
            |r| r.get(0),
        )?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::{NewProjectRow, NewTaskRow, Store};
    use domain::{Stage, TaskId, TaskState};

    /// A project `p` (its id), for tests that need a task.
    pub(crate) fn project(store: &Store) -> domain::ProjectId {
        store
            .write(|tx| {
                tx.insert_project(&NewProjectRow {
                    name: "p",
                    path: "/p",
                    default_branch: "main",
                    settings_json: "{}",
                })
            })
            .unwrap()
            .id
    }

    /// Inserts task `id` of `project`, stopped at its plan.
    pub(crate) fn insert(store: &Store, id: TaskId, project: domain::ProjectId) {
        let key = format!("{}-t", id.0);
        store
            .write(|tx| {
                tx.insert_task(&NewTaskRow {
                    pipeline_prompts: None,
                    project_prompts: None,
                    pipeline_def: None,
                    id,
                    project_id: project,
                    title: "t",
                    body: "b",
                    key: &key,
                    branch: "atelier/t",
                    base: "main",
                    state: &TaskState::Stopped { stage: Stage::Plan },
                    priority: 0,
                    technical: false,
                    worktree: "/w",
                    doc_path: "/d",
                    port: 20000,
                    pipeline: "standard",
                })
            })
            .unwrap();
    }

    #[test]
    fn task_ids_are_never_handed_out_twice() {
        let store = Store::open_memory().unwrap();
        let project = project(&store);
        let next = || store.write(|tx| tx.allocate_task_id()).unwrap();
        // An id taken but never inserted (a crash before the row was written) stays taken.
        assert_eq!(next(), TaskId(1));
        let second = next();
        assert_eq!(second, TaskId(2));
        insert(&store, second, project);
        // A deleted task's id is not reused either.
        store.write(|tx| tx.delete_task(second)).unwrap();
        assert_eq!(next(), TaskId(3));
    }
}
