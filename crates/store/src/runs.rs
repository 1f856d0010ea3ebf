//! Run rows: one agent session of one stage, its status, token hash, session id, signal and
//! usage counters; plus the signals table.

use crate::{ActivityKind, Result, StoreError, Tx, from_json, now_ms, to_json};
use domain::{ProjectId, RunId, RunStatus, Signal, Stage, StageHistory, TaskId, Verdict};
use rusqlite::{OptionalExtension, Row, params};

#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: RunId,
    pub task_id: TaskId,
    pub stage: Stage,
    pub status: RunStatus,
    pub iteration: u32,
    pub turns: u32,
    pub session: Option<String>,
    /// Unique value put in the run's environment to find all its processes.
    pub mark: String,
    /// Follow-up input waiting to be delivered by the next turn.
    pub pending_input: Option<String>,
    pub signal: Option<Signal>,
    pub reason: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub spawned_us: Option<i64>,
    pub exited_us: Option<i64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// The harness the run's agent runs on (recorded when it starts; `None` before migration 10
    /// or before its first start).
    pub harness: Option<String>,
    /// The model the agent was given (the owner's own model for the stage over the role's), if
    /// any was named.
    pub model: Option<String>,
    /// The worktree's HEAD when the run (an implementer) first started, if it could be read
    /// (migration 11).
    pub start_head: Option<String>,
    /// How many to-do items of the task doc were checked when the run first started.
    pub start_checked: Option<u32>,
    /// The commit a reviewer's verdict was given on (the worktree's HEAD when it signalled).
    pub reviewed_commit: Option<String>,
}

/// A queued or running run with what an overview shows of its task.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRunRow {
    pub run: RunRow,
    pub title: String,
    pub project: String,
    /// When its newest transcript event was stored (ms), if it has one.
    pub last_event_at: Option<i64>,
}

/// Usage summed over runs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UsageSum {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub runs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRunRow<'a> {
    pub task_id: TaskId,
    pub stage: Stage,
    pub iteration: u32,
    pub mark: &'a str,
}

const COLUMNS: &str = "id, task_id, stage, status, iteration, turns, session, mark, pending_input, \
     signal, reason, created_at, started_at, ended_at, spawned_us, exited_us, input_tokens, \
     output_tokens, cost_usd, harness, model, start_head, start_checked, reviewed_commit";

/// How many columns [`COLUMNS`] names (a query's own columns come after them).
const COLUMN_COUNT: usize = 24;

struct Raw {
    row: RunRow,
    stage: String,
    status: String,
    signal: Option<String>,
}

fn raw(row: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        stage: row.get(2)?,
        status: row.get(3)?,
        signal: row.get(9)?,
        row: RunRow {
            id: RunId(row.get(0)?),
            task_id: TaskId(row.get(1)?),
            stage: Stage::Plan,
            status: RunStatus::Queued,
            iteration: row.get(4)?,
            turns: row.get(5)?,
            session: row.get(6)?,
            mark: row.get(7)?,
            pending_input: row.get(8)?,
            signal: None,
            reason: row.get(10)?,
            created_at: row.get(11)?,
            started_at: row.get(12)?,
            ended_at: row.get(13)?,
            spawned_us: row.get(14)?,
            exited_us: row.get(15)?,
            input_tokens: row.get::<_, i64>(16)? as u64,
            output_tokens: row.get::<_, i64>(17)? as u64,
            cost_usd: row.get(18)?,
            harness: row.get(19)?,
            model: row.get(20)?,
            start_head: row.get(21)?,
            start_checked: row.get(22)?,
            reviewed_commit: row.get(23)?,
        },
    })
}

fn finish(raw: Raw) -> Result<RunRow> {
    let mut row = raw.row;
    row.stage = raw
        .stage
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("{e}")))?;
    row.status = RunStatus::parse(&raw.status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown run status {}", raw.status)))?;
    row.signal = raw.signal.as_deref().map(from_json).transpose()?;
    Ok(row)
}

impl Tx<'_> {
    fn runs_where(&self, clause: &str, params: impl rusqlite::Params) -> Result<Vec<RunRow>> {
        let sql = format!("SELECT {COLUMNS} FROM runs WHERE {clause}");
        let mut stmt = self.tx.prepare(&sql)?;
        let rows = stmt.query_map(params, raw)?;
        rows.map(|r| finish(r?)).collect()
    }

    pub fn insert_run(&self, new: &NewRunRow<'_>) -> Result<RunId> {
        self.tx.execute(
            "INSERT INTO runs (task_id, stage, status, iteration, mark, created_at)
             VALUES (?1, ?2, 'queued', ?3, ?4, ?5)",
            params![
                new.task_id.0,
                new.stage.as_str(),
                new.iteration,
                new.mark,
                now_ms()
            ],
        )?;
        Ok(RunId(self.tx.last_insert_rowid()))
    }

    pub fn run(&self, id: RunId) -> Result<Option<RunRow>> {
        Ok(self.runs_where("id = ?1", [id.0])?.pop())
    }

    pub fn runs_of_task(&self, task: TaskId) -> Result<Vec<RunRow>> {
        self.runs_where("task_id = ?1 ORDER BY id", [task.0])
    }

    /// The run that is queued, running or waiting for input.
    pub fn live_run(&self, task: TaskId) -> Result<Option<RunRow>> {
        Ok(self
            .runs_where(
                "task_id = ?1 AND status IN ('queued', 'running', 'needs_input') ORDER BY id DESC",
                [task.0],
            )?
            .into_iter()
            .next())
    }

    pub fn runs_with_status(&self, status: RunStatus) -> Result<Vec<RunRow>> {
        self.runs_where("status = ?1 ORDER BY id", [status.as_str()])
    }

    /// Finished runs of a stage, which is the iteration number of the next one (runs lost to
    /// infrastructure failures do not count: their retry is the same iteration).
    pub fn finished_runs_of_stage(&self, task: TaskId, stage: Stage) -> Result<u32> {
        Ok(self.tx.query_row(
            "SELECT COUNT(*) FROM runs WHERE task_id = ?1 AND stage = ?2 AND infra = 0
             AND status IN ('completed', 'failed', 'stopped', 'needs_input')",
            params![task.0, stage.as_str()],
            |r| r.get(0),
        )?)
    }

    /// Queued runs in dispatch order (task priority, then age), with their project.
    pub fn queued_runs(&self) -> Result<Vec<(RunRow, ProjectId)>> {
        let sql = format!(
            "SELECT {}, t.project_id FROM runs r JOIN tasks t ON t.id = r.task_id
             WHERE r.status = 'queued' ORDER BY t.priority DESC, r.id",
            COLUMNS
                .split(", ")
                .map(|c| format!("r.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut stmt = self.tx.prepare(&sql)?;
        let rows = stmt.query_map([], |row| Ok((raw(row)?, ProjectId(row.get(COLUMN_COUNT)?))))?;
        rows.map(|r| {
            let (raw, project) = r?;
            Ok((finish(raw)?, project))
        })
        .collect()
    }

    /// Queued and running runs (oldest first) with their task's title, their project's name and
    /// when their newest transcript event was stored (ms) — of the projects `member` belongs to
    /// when given.
    pub fn live_runs_overview(&self, member: Option<crate::UserId>) -> Result<Vec<LiveRunRow>> {
        let sql = format!(
            "SELECT {}, t.title, p.name,
             (SELECT e.created_at FROM events e WHERE e.run_id = r.id ORDER BY e.seq DESC LIMIT 1)
             FROM runs r JOIN tasks t ON t.id = r.task_id JOIN projects p ON p.id = t.project_id
             WHERE r.status IN ('queued', 'running')
             AND (?1 IS NULL OR t.project_id IN (SELECT project_id FROM memberships WHERE user_id = ?1))
             ORDER BY r.id",
            COLUMNS
                .split(", ")
                .map(|c| format!("r.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut stmt = self.tx.prepare(&sql)?;
        let rows = stmt.query_map([member.map(|u| u.0)], |row| {
            Ok((
                raw(row)?,
                row.get(COLUMN_COUNT)?,
                row.get(COLUMN_COUNT + 1)?,
                row.get(COLUMN_COUNT + 2)?,
            ))
        })?;
        rows.map(|r| {
            let (raw, title, project, last_event_at) = r?;
            Ok(LiveRunRow {
                run: finish(raw)?,
                title,
                project,
                last_event_at,
            })
        })
        .collect()
    }

    /// Tokens, cost and count of the runs started at or after `since_ms` — of the projects
    /// `member` belongs to when given.
    pub fn usage_since(&self, since_ms: i64, member: Option<crate::UserId>) -> Result<UsageSum> {
        Ok(self.tx.query_row(
            "SELECT COALESCE(SUM(r.input_tokens), 0), COALESCE(SUM(r.output_tokens), 0),
             COALESCE(SUM(r.cost_usd), 0.0), COUNT(*)
             FROM runs r JOIN tasks t ON t.id = r.task_id
             WHERE r.started_at >= ?1
             AND (?2 IS NULL OR t.project_id IN (SELECT project_id FROM memberships WHERE user_id = ?2))",
            params![since_ms, member.map(|u| u.0)],
            |r| {
                Ok(UsageSum {
                    input_tokens: r.get::<_, i64>(0)? as u64,
                    output_tokens: r.get::<_, i64>(1)? as u64,
                    cost_usd: r.get(2)?,
                    runs: r.get(3)?,
                })
            },
        )?)
    }

    /// Running runs per project (for the concurrency caps).
    pub fn running_counts(&self) -> Result<Vec<(ProjectId, u32)>> {
        let mut stmt = self.tx.prepare(
            "SELECT t.project_id, COUNT(*) FROM runs r JOIN tasks t ON t.id = r.task_id
             WHERE r.status = 'running' GROUP BY t.project_id",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((ProjectId(r.get(0)?), r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The run a token belongs to (by the token's hash).
    pub fn run_by_token_hash(&self, hash: &str) -> Result<Option<RunRow>> {
        Ok(self.runs_where("token_hash = ?1", [hash])?.pop())
    }

    /// Marks a queued run as running with a fresh token (one per turn): one more turn.
    /// Recorded before the process is spawned, so recovery always knows about it. Returns false
    /// (and changes nothing) when the run is no longer queued, e.g. stopped meanwhile.
    /// A token an ended run held (a long-lived process handed from that run to this one, see
    /// the engine's nudges) is taken over: the ended run no longer answers to it.
    pub fn mark_run_started(&self, id: RunId, token_hash: &str) -> Result<bool> {
        self.tx.execute(
            "UPDATE runs SET token_hash = NULL
             WHERE token_hash = ?1 AND id != ?2 AND status != 'running'",
            params![token_hash, id.0],
        )?;
        let started: Option<(i64, String, u32)> = self
            .tx
            .query_row(
                "UPDATE runs SET status = 'running', turns = turns + 1, token_hash = ?3,
                 signal = NULL, started_at = COALESCE(started_at, ?2), ended_at = NULL
                 WHERE id = ?1 AND status = 'queued' RETURNING task_id, stage, turns",
                params![id.0, now_ms(), token_hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((task, stage, turn)) = started else {
            return Ok(false);
        };
        self.record_activity(
            TaskId(task),
            ActivityKind::Run,
            serde_json::json!({
                "change": "started", "run": id, "stage": stage, "status": "running", "turn": turn
            }),
        )?;
        Ok(true)
    }

    /// Gives a run the mark of the process that takes it over (a warm standby, `engine::warm`).
    pub fn set_run_mark(&self, id: RunId, mark: &str) -> Result<()> {
        self.tx.execute(
            "UPDATE runs SET mark = ?2 WHERE id = ?1",
            params![id.0, mark],
        )?;
        Ok(())
    }

    /// Records the harness and the model a run's agent is started with.
    pub fn set_run_agent(&self, id: RunId, harness: &str, model: Option<&str>) -> Result<()> {
        self.tx.execute(
            "UPDATE runs SET harness = ?2, model = ?3 WHERE id = ?1",
            params![id.0, harness, model],
        )?;
        Ok(())
    }

    /// Records when the process of the current turn was spawned (microseconds). The turn's
    /// input stays recorded: if the turn is lost in a crash, its replacement delivers it again.
    pub fn mark_run_spawned(&self, id: RunId, spawned_us: i64) -> Result<()> {
        self.tx.execute(
            "UPDATE runs SET spawned_us = ?2 WHERE id = ?1",
            params![id.0, spawned_us],
        )?;
        Ok(())
    }

    /// Records how a run (or its current turn) ended.
    /// Marks a finished run as an infrastructure failure (retried with backoff).
    pub fn mark_run_infra(&self, id: RunId) -> Result<()> {
        self.tx
            .execute("UPDATE runs SET infra = 1 WHERE id = ?1", [id.0])?;
        Ok(())
    }

    /// Marks a finished run as stalled.
    pub fn mark_run_stalled(&self, id: RunId) -> Result<()> {
        self.tx
            .execute("UPDATE runs SET stalled = 1 WHERE id = ?1", [id.0])?;
        Ok(())
    }

    /// How many of the task's most recent finished runs in a row stalled.
    pub fn consecutive_stalls(&self, task: TaskId) -> Result<u32> {
        self.consecutive_flagged(task, "stalled")
    }

    /// Records what an implement run starts from, once: a resumed turn of the same run keeps
    /// what its first turn found.
    pub fn set_run_start(&self, id: RunId, head: Option<&str>, checked: u32) -> Result<()> {
        self.tx.execute(
            "UPDATE runs SET start_head = ?2, start_checked = ?3
             WHERE id = ?1 AND start_checked IS NULL",
            params![id.0, head, checked],
        )?;
        Ok(())
    }

    /// Gives run `to` (which continues `from`'s session after a stop or a crash) what `from`
    /// started from: the work of the interrupted turn counts as the continued run's progress.
    pub fn inherit_run_start(&self, to: RunId, from: RunId) -> Result<()> {
        self.tx.execute(
            "UPDATE runs SET (start_head, start_checked) =
               (SELECT start_head, start_checked FROM runs WHERE id = ?2)
             WHERE id = ?1",
            params![to.0, from.0],
        )?;
        Ok(())
    }

    /// Records the commit a reviewer's verdict was given on.
    pub fn set_reviewed_commit(&self, id: RunId, commit: &str) -> Result<()> {
        self.tx.execute(
            "UPDATE runs SET reviewed_commit = ?2 WHERE id = ?1",
            params![id.0, commit],
        )?;
        Ok(())
    }

    /// Marks a run as having made no progress (a guard's finding).
    pub fn mark_run_no_progress(&self, id: RunId) -> Result<()> {
        self.tx
            .execute("UPDATE runs SET no_progress = 1 WHERE id = ?1", [id.0])?;
        Ok(())
    }

    /// How many of the task's most recent finished runs in a row made no progress.
    pub fn consecutive_no_progress(&self, task: TaskId) -> Result<u32> {
        self.consecutive_flagged(task, "no_progress")
    }

    /// Marks a run as interrupted for repeating the same tool call.
    pub fn mark_run_looping(&self, id: RunId) -> Result<()> {
        self.tx
            .execute("UPDATE runs SET looping = 1 WHERE id = ?1", [id.0])?;
        Ok(())
    }

    /// How many of the task's most recent finished runs in a row were interrupted for looping.
    pub fn consecutive_looping(&self, task: TaskId) -> Result<u32> {
        self.consecutive_flagged(task, "looping")
    }

    /// How many of the task's most recent finished runs in a row were infrastructure failures.
    pub fn consecutive_infra_failures(&self, task: TaskId) -> Result<u32> {
        self.consecutive_flagged(task, "infra")
    }

    /// Trailing finished runs of a task with the flag column `flag` set.
    fn consecutive_flagged(&self, task: TaskId, flag: &'static str) -> Result<u32> {
        let mut stmt = self.tx.prepare(&format!(
            "SELECT {flag} FROM runs WHERE task_id = ?1 AND status NOT IN ('queued', 'running')
             ORDER BY id DESC"
        ))?;
        let mut rows = stmt.query([task.0])?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            if !row.get::<_, bool>(0)? {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    pub fn finish_run(
        &self,
        id: RunId,
        status: RunStatus,
        reason: Option<&str>,
        exited_us: Option<i64>,
    ) -> Result<()> {
        let finished: Option<(i64, String)> = self
            .tx
            .query_row(
                "UPDATE runs SET status = ?2, reason = ?3, ended_at = ?4,
                 exited_us = COALESCE(?5, exited_us) WHERE id = ?1 RETURNING task_id, stage",
                params![id.0, status.as_str(), reason, now_ms(), exited_us],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((task, stage)) = finished {
            self.record_activity(
                TaskId(task),
                ActivityKind::Run,
                serde_json::json!({
                    "change": "finished", "run": id, "stage": stage,
                    "status": status.as_str(), "reason": reason
                }),
            )?;
        }
        Ok(())
    }

    /// Queues the next turn of a run waiting for input.
    pub fn queue_resume(&self, id: RunId, input: &str) -> Result<()> {
        self.tx.execute(
            "UPDATE runs SET status = 'queued', pending_input = ?2, ended_at = NULL WHERE id = ?1",
            params![id.0, input],
        )?;
        Ok(())
    }

    /// Makes a queued run continue an earlier harness session with `input` as its first turn;
    /// `turns` is how many turns the session already had (the next turn's index).
    pub fn continue_session(
        &self,
        id: RunId,
        session: &str,
        input: &str,
        turns: u32,
    ) -> Result<()> {
        self.tx.execute(
            "UPDATE runs SET session = ?2, pending_input = ?3, turns = ?4 WHERE id = ?1",
            params![id.0, session, input, turns],
        )?;
        Ok(())
    }

    pub fn set_run_session(&self, id: RunId, session: &str) -> Result<()> {
        self.tx.execute(
            "UPDATE runs SET session = ?2 WHERE id = ?1",
            params![id.0, session],
        )?;
        Ok(())
    }

    pub fn add_run_usage(&self, id: RunId, input: u64, output: u64, cost: f64) -> Result<()> {
        self.tx.execute(
            "UPDATE runs SET input_tokens = input_tokens + ?2, output_tokens = output_tokens + ?3,
             cost_usd = cost_usd + ?4 WHERE id = ?1",
            params![id.0, input as i64, output as i64, cost],
        )?;
        Ok(())
    }

    /// Sets the run's usage from a harness's running session totals (never lowering them).
    pub fn raise_run_usage(&self, id: RunId, input: u64, output: u64, cost: f64) -> Result<()> {
        self.tx.execute(
            "UPDATE runs SET input_tokens = MAX(input_tokens, ?2),
             output_tokens = MAX(output_tokens, ?3), cost_usd = MAX(cost_usd, ?4) WHERE id = ?1",
            params![id.0, input as i64, output as i64, cost],
        )?;
        Ok(())
    }

    /// Stores a signal: in the signals log and as the run's latest signal.
    pub fn record_signal(&self, run: RunId, task: TaskId, signal: &Signal) -> Result<()> {
        let body = to_json(signal)?;
        self.tx.execute(
            "INSERT INTO signals (run_id, task_id, body, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![run.0, task.0, body, now_ms()],
        )?;
        self.tx.execute(
            "UPDATE runs SET signal = ?2 WHERE id = ?1",
            params![run.0, body],
        )?;
        Ok(())
    }

    /// What the task's runs have done so far: whether an implement run completed, the latest
    /// review's verdict (both reviewers' when there are two) and the first reviewer's.
    pub fn stage_history(&self, task: TaskId) -> Result<StageHistory> {
        let implemented = self.tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE task_id = ?1 AND stage = 'implement'
             AND status = 'completed')",
            [task.0],
            |r| r.get(0),
        )?;
        Ok(StageHistory {
            implemented,
            last_verdict: self.latest_verdict(task)?.map(|(verdict, _)| verdict),
            first_review_verdict: self
                .latest_stage_verdict(task, Stage::Review)?
                .map(|(verdict, _, _)| verdict),
        })
    }

    /// The verdict of the task's latest review that gave one, and the commit it was given on
    /// (`None` for verdicts recorded before migration 11). When the latest verdict is a second
    /// reviewer's, it is combined with the first reviewer's before it: `ready` only when both
    /// said `ready`.
    pub fn latest_verdict(&self, task: TaskId) -> Result<Option<(Verdict, Option<String>)>> {
        let latest = [Stage::Review, Stage::SecondReview]
            .into_iter()
            .filter_map(|stage| self.latest_stage_verdict(task, stage).transpose())
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .max_by_key(|(_, _, run)| *run);
        let Some((verdict, commit, run)) = latest else {
            return Ok(None);
        };
        let first = self.latest_stage_verdict(task, Stage::Review)?;
        let combined = match first {
            Some((first, _, first_run)) if first_run < run && first != Verdict::Ready => first,
            _ => verdict,
        };
        Ok(Some((combined, commit)))
    }

    /// The commit a refine run signalled `refine-done` on, when it is the latest such run and
    /// came after the task's latest review verdict: what the refiner committed after the review
    /// (the one stage trusted to).
    pub fn refined_commit_after_review(&self, task: TaskId) -> Result<Option<String>> {
        Ok(self
            .tx
            .query_row(
                "SELECT reviewed_commit FROM runs WHERE task_id = ?1 AND stage = 'refine'
                 AND reviewed_commit IS NOT NULL AND id > COALESCE((SELECT MAX(id) FROM runs
                 WHERE task_id = ?1 AND stage IN ('review', 'second_review')
                 AND signal IS NOT NULL), 0)
                 ORDER BY id DESC LIMIT 1",
                [task.0],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The verdict of the task's latest run of `stage` that gave one, the commit it was given on
    /// and the run.
    fn latest_stage_verdict(
        &self,
        task: TaskId,
        stage: Stage,
    ) -> Result<Option<(Verdict, Option<String>, RunId)>> {
        let row: Option<(String, Option<String>, i64)> = self
            .tx
            .query_row(
                "SELECT signal, reviewed_commit, id FROM runs WHERE task_id = ?1 AND stage = ?2
                 AND signal IS NOT NULL ORDER BY id DESC LIMIT 1",
                params![task.0, stage.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((signal, commit, run)) = row else {
            return Ok(None);
        };
        Ok(match from_json::<Signal>(&signal)? {
            Signal::Verdict { verdict, .. } => Some((verdict, commit, RunId(run))),
            _ => None,
        })
    }

    pub fn signal_count(&self, task: TaskId) -> Result<u32> {
        Ok(self.tx.query_row(
            "SELECT COUNT(*) FROM signals WHERE task_id = ?1",
            [task.0],
            |r| r.get(0),
        )?)
    }

    /// Pairs of (previous run's exit, next run's spawn) in microseconds, per task, for the
    /// stage-transition latency benchmark.
    pub fn transition_latencies_us(&self) -> Result<Vec<i64>> {
        let mut stmt = self.tx.prepare(
            "SELECT task_id, exited_us, spawned_us FROM runs
             WHERE spawned_us IS NOT NULL ORDER BY task_id, id",
        )?;
        let rows: Vec<(i64, Option<i64>, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut latencies = Vec::new();
        for pair in rows.windows(2) {
            if let [(task_a, Some(exited), _), (task_b, _, spawned)] = pair
                && task_a == task_b
            {
                latencies.push(spawned - exited);
            }
        }
        Ok(latencies)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_column_count_is_the_number_of_columns() {
        assert_eq!(super::COLUMNS.split(", ").count(), super::COLUMN_COUNT);
    }
}
