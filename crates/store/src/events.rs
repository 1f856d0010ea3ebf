//! Transcript events, stored per run with a monotonic `seq`: appended in arrival order (the
//! table's rowid), found by `(run_id, seq)` (the `events_run` index), a task's through its runs.

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

/// A stored event with when it was written (a transcript page).
#[derive(Debug, Clone, PartialEq)]
pub struct TimedEvent {
    pub run: RunId,
    pub stage: Stage,
    pub seq: i64,
    /// The event as the JSON text it was written as.
    pub json: String,
    /// When it was stored (ms since the epoch).
    pub at_ms: i64,
}

/// A task's events, through its runs: the `runs_task` index gives the run ids in order, the
/// `events_run` index each run's events in order (no sort, no scan of other tasks' events).
const TIMED: &str = "SELECT e.run_id, r.stage, e.seq, e.body, e.created_at FROM runs r
     JOIN events e ON e.run_id = r.id WHERE r.task_id = ?1";

/// Events strictly after the cursor `(?2, ?3)` (run, seq) of a query over `runs r JOIN events e`.
/// Written so that the `events_run` index is searched from the cursor (`seq > ?`): the
/// row-value form `(e.run_id, e.seq) > (?2, ?3)` made SQLite read the cursor's run from its
/// first event, so a follower paging through a long run read it quadratically.
const AFTER_CURSOR: &str =
    "r.id >= ?2 AND e.seq > CASE WHEN r.id = ?2 THEN ?3 ELSE -9223372036854775808 END";
/// Events strictly before the cursor `(?2, ?3)`, as [`AFTER_CURSOR`].
const BEFORE_CURSOR: &str =
    "r.id <= ?2 AND e.seq < CASE WHEN r.id = ?2 THEN ?3 ELSE 9223372036854775807 END";

fn timed(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<TimedEvent>> {
    let rows = stmt.query_map(params, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get(2)?,
            r.get::<_, String>(3)?,
            r.get(4)?,
        ))
    })?;
    rows.map(|row| {
        let (run, stage, seq, json, at_ms) = row?;
        Ok(TimedEvent {
            run: RunId(run),
            stage: stage
                .parse()
                .map_err(|e| crate::StoreError::Corrupt(format!("{e}")))?,
            seq,
            json,
            at_ms,
        })
    })
    .collect()
}

impl Tx<'_> {
    /// A task's last `limit` events, in order (read newest first through the `runs_task` and
    /// `events_run` indexes, then reversed).
    pub fn task_events_last(&self, task: TaskId, limit: u32) -> Result<Vec<TimedEvent>> {
        let mut stmt = self
            .tx
            .prepare_cached(&format!("{TIMED} ORDER BY r.id DESC, e.seq DESC LIMIT ?2"))?;
        let mut rows = timed(&mut stmt, params![task.0, limit])?;
        rows.reverse();
        Ok(rows)
    }

    /// A task's first `limit` events strictly after the key `(run, seq)`, in order.
    pub fn task_events_page_after(
        &self,
        task: TaskId,
        after: (RunId, i64),
        limit: u32,
    ) -> Result<Vec<TimedEvent>> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "{TIMED} AND {AFTER_CURSOR} ORDER BY r.id, e.seq LIMIT ?4"
        ))?;
        timed(&mut stmt, params![task.0, after.0.0, after.1, limit])
    }

    /// A task's last `limit` events strictly before the key `(run, seq)`, in order.
    pub fn task_events_page_before(
        &self,
        task: TaskId,
        before: (RunId, i64),
        limit: u32,
    ) -> Result<Vec<TimedEvent>> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "{TIMED} AND {BEFORE_CURSOR} ORDER BY r.id DESC, e.seq DESC LIMIT ?4"
        ))?;
        let mut rows = timed(&mut stmt, params![task.0, before.0.0, before.1, limit])?;
        rows.reverse();
        Ok(rows)
    }

    /// Whether the task has an event strictly before the key `(run, seq)`.
    pub fn task_has_events_before(&self, task: TaskId, before: (RunId, i64)) -> Result<bool> {
        Ok(self.tx.query_row(
            &format!(
                "SELECT EXISTS(SELECT 1 FROM runs r JOIN events e ON e.run_id = r.id
                 WHERE r.task_id = ?1 AND {BEFORE_CURSOR})"
            ),
            params![task.0, before.0.0, before.1],
            |r| r.get(0),
        )?)
    }

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
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT e.run_id, r.stage, e.seq, e.body FROM runs r JOIN events e ON e.run_id = r.id
             WHERE r.task_id = ?1 AND {AFTER_CURSOR} ORDER BY r.id, e.seq LIMIT ?4"
        ))?;
        let rows = stmt.query_map(params![task.0, after.0.0, after.1, limit], event_columns)?;
        rows.map(stored_event).collect()
    }

    /// A task's events that can tell which commands its agents ran (`command_output`,
    /// `tool_call`, `tool_result`), in order, each as its JSON text with the `output` it carried
    /// left out (replaced by `""`): what the evidence bundle reads, without loading outputs.
    pub fn task_command_events(&self, task: TaskId) -> Result<Vec<StoredEvent>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT e.run_id, r.stage, e.seq, json_replace(e.body, '$.output', '')
             FROM runs r JOIN events e ON e.run_id = r.id
             WHERE r.task_id = ?1
               AND json_extract(e.body, '$.type') IN ('command_output', 'tool_call', 'tool_result')
             ORDER BY r.id, e.seq",
        )?;
        let rows = stmt.query_map(params![task.0], event_columns)?;
        rows.map(stored_event).collect()
    }

    pub fn event_count(&self, run: RunId) -> Result<u64> {
        Ok(self.tx.query_row(
            "SELECT COUNT(*) FROM events WHERE run_id = ?1",
            [run.0],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }
}

/// The columns `(run, stage, seq, body)` of an event query.
fn event_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, i64, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

/// A row of [`event_columns`] as a [`StoredEvent`].
fn stored_event(row: rusqlite::Result<(i64, String, i64, String)>) -> Result<StoredEvent> {
    let (run, stage, seq, json) = row?;
    Ok(StoredEvent {
        run: RunId(run),
        stage: stage
            .parse()
            .map_err(|e| crate::StoreError::Corrupt(format!("{e}")))?,
        seq,
        json,
    })
}

#[cfg(test)]
mod tests {
    use crate::{NewProjectRow, NewRunRow, NewTaskRow, Store, StoreError};
    use domain::{RunId, Stage, TaskId, TaskState};

    /// A task with two runs (plan, implement) of `per_run` events each.
    fn store_with_events(per_run: i64) -> (Store, TaskId, [RunId; 2]) {
        let store = Store::open_memory().unwrap();
        let made = store
            .write(|tx| {
                let project = tx.insert_project(&NewProjectRow {
                    name: "p",
                    path: "/p",
                    default_branch: "main",
                    settings_json: "{}",
                })?;
                let task = tx.allocate_task_id()?;
                tx.insert_task(&NewTaskRow {
                    pipeline_prompts: None,
                    project_prompts: None,
                    pipeline_def: None,
                    id: task,
                    project_id: project.id,
                    title: "t",
                    body: "b",
                    key: "1-t",
                    branch: "atelier/t",
                    base: "main",
                    state: &TaskState::PlanGate,
                    priority: 0,
                    technical: false,
                    worktree: "/w",
                    doc_path: "/d",
                    port: 20000,
                    pipeline: "standard",
                })?;
                let mut runs = [RunId(0); 2];
                for (i, stage) in [Stage::Plan, Stage::Implement].into_iter().enumerate() {
                    let run = tx.insert_run(&NewRunRow {
                        task_id: task,
                        stage,
                        iteration: 0,
                        mark: "m",
                    })?;
                    let events: Vec<(i64, String)> = (1..=per_run)
                        .map(|seq| (seq, format!(r#"{{"type":"message","text":"{seq}"}}"#)))
                        .collect();
                    tx.append_events(task, run, &events)?;
                    runs[i] = run;
                }
                Ok::<_, StoreError>((task, runs))
            })
            .unwrap();
        (store, made.0, made.1)
    }

    fn keys(rows: &[super::TimedEvent]) -> Vec<(i64, i64)> {
        rows.iter().map(|e| (e.run.0, e.seq)).collect()
    }

    #[test]
    fn transcript_pages_read_the_last_events_and_around_a_cursor() {
        let (store, task, [plan, implement]) = store_with_events(3);
        let (p, i) = (plan.0, implement.0);
        store
            .read(|tx| {
                assert_eq!(
                    keys(&tx.task_events_last(task, 4)?),
                    [(p, 3), (i, 1), (i, 2), (i, 3)]
                );
                assert_eq!(keys(&tx.task_events_last(task, 100)?).len(), 6);
                assert_eq!(
                    keys(&tx.task_events_page_after(task, (plan, 2), 2)?),
                    [(p, 3), (i, 1)]
                );
                assert_eq!(
                    keys(&tx.task_events_page_after(task, (RunId(0), 0), 1)?),
                    [(p, 1)]
                );
                assert!(
                    tx.task_events_page_after(task, (implement, 3), 10)?
                        .is_empty()
                );
                assert_eq!(
                    keys(&tx.task_events_page_before(task, (implement, 2), 2)?),
                    [(p, 3), (i, 1)]
                );
                assert_eq!(
                    keys(&tx.task_events_page_before(task, (implement, 1), 10)?),
                    [(p, 1), (p, 2), (p, 3)]
                );
                assert!(tx.task_has_events_before(task, (plan, 2))?);
                assert!(!tx.task_has_events_before(task, (plan, 1))?);
                assert!(tx.task_events_last(TaskId(99), 10)?.is_empty());
                let first = &tx.task_events_last(task, 1)?[0];
                assert_eq!(first.stage, Stage::Implement);
                assert!(first.at_ms > 0);
                assert_eq!(first.json, r#"{"type":"message","text":"3"}"#);
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }

    #[test]
    fn command_events_are_read_without_their_output() {
        let (store, task, [plan, implement]) = store_with_events(1);
        store
            .write(|tx| {
                tx.append_events(
                    task,
                    implement,
                    &[
                        (2, r#"{"type":"tool_call","id":"t1","name":"Bash","input":{"command":"make"}}"#.into()),
                        (3, r#"{"type":"tool_result","id":"t1","output":"lots","is_error":true}"#.into()),
                        (4, r#"{"type":"command_output","command":"make","output":"lots","exit_code":2}"#.into()),
                        (5, r#"{"type":"message","text":"done"}"#.into()),
                    ],
                )?;
                tx.append_events(
                    task,
                    plan,
                    &[(2, r#"{"type":"command_output","command":"ls","output":"x"}"#.into())],
                )
            })
            .unwrap();
        let rows = store.read(|tx| tx.task_command_events(task)).unwrap();
        let got: Vec<(i64, Stage, i64, &str)> = rows
            .iter()
            .map(|e| (e.run.0, e.stage, e.seq, e.json.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    plan.0,
                    Stage::Plan,
                    2,
                    r#"{"type":"command_output","command":"ls","output":""}"#
                ),
                (
                    implement.0,
                    Stage::Implement,
                    2,
                    r#"{"type":"tool_call","id":"t1","name":"Bash","input":{"command":"make"}}"#
                ),
                (
                    implement.0,
                    Stage::Implement,
                    3,
                    r#"{"type":"tool_result","id":"t1","output":"","is_error":true}"#
                ),
                (
                    implement.0,
                    Stage::Implement,
                    4,
                    r#"{"type":"command_output","command":"make","output":"","exit_code":2}"#
                ),
            ]
        );
    }

    /// The pages are index range scans: reading the last events of a task with 20,000 of them
    /// does not scan the task's events (the plans go through the `runs_task` and `events_run`
    /// indexes, never a sort).
    #[test]
    fn transcript_pages_use_the_indexes_without_sorting() {
        let (store, task, [plan, _]) = store_with_events(10_000);
        store
            .read(|tx| {
                for sql in [
                    format!("{} ORDER BY r.id DESC, e.seq DESC LIMIT 300", super::TIMED),
                    format!(
                        "{} AND {} ORDER BY r.id, e.seq LIMIT 300",
                        super::TIMED,
                        super::AFTER_CURSOR.replace("?2", "1").replace("?3", "5")
                    ),
                    format!(
                        "{} AND {} ORDER BY r.id DESC, e.seq DESC LIMIT 300",
                        super::TIMED,
                        super::BEFORE_CURSOR.replace("?2", "2").replace("?3", "5")
                    ),
                ] {
                    let plan: Vec<String> = tx
                        .tx
                        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?
                        .query_map([task.0], |r| r.get::<_, String>(3))?
                        .collect::<rusqlite::Result<_>>()?;
                    let plan = plan.join("; ");
                    assert!(plan.contains("runs_task"), "{sql}: {plan}");
                    assert!(plan.contains("events_run"), "{sql}: {plan}");
                    assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
                    if sql.contains("CASE") {
                        // The cursor bounds the index search: a page after (or before) a
                        // cursor deep in a long run does not read the run from its start.
                        assert!(
                            plan.contains("seq>?") || plan.contains("seq<?"),
                            "{sql}: {plan}"
                        );
                    }
                }
                let started = std::time::Instant::now();
                let last = tx.task_events_last(task, 2000)?;
                assert_eq!(last.len(), 2000);
                let before = tx.task_events_page_before(task, (last[0].run, last[0].seq), 2000)?;
                assert_eq!(before.len(), 2000);
                assert!(tx.task_has_events_before(task, (plan, 2))?);
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(2),
                    "{:?}",
                    started.elapsed()
                );
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }
}
